"""The result of a FIC/EIB tuning (:class:`TuningResult`) and its file.

**Files.** :meth:`TuningResult.save` writes a result, the carried state included, to ONE
``.npz`` file (arrays plus a JSON manifest stored as a string array, like a
:class:`~fitbridge.Cache` entry), atomically (a temporary file beside it, fsynced, then
``os.replace``); :meth:`TuningResult.load` reads it back with ``allow_pickle=False``, bitwise.
``checkpoint=PATH`` saves the result so far after every finished chunk, and ``resume=PATH``
continues from such a file exactly as from the in-memory result: a killed process loses at most
the chunk it was computing. The file records the tuning settings and a fingerprint of the
simulation and target FC; resuming with others is an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd

from ._bold import HRF, GammaHRF
from ._cache import versions
from ._errors import fail
from ._fcproblem import FCProblem, simulation_spec
from ._files import atomic_write
from ._models import MODELS, WongWangEIB, WongWangExcInh
from ._simulate import Carry, Simulation


class _State(NamedTuple):
    carry: Carry  # simulation state: gates, delay buffer, last coupling
    hist: jax.Array  # (n_hist, n) last 20 s of the BOLD input, oldest first
    frames: jax.Array  # (window, n) ring of the last BOLD frames
    J_i: jax.Array  # (n,)
    wLRE: jax.Array  # (n, n), or (0,) when EIB is off
    wFFI: jax.Array
    it: jax.Array  # iterations done (int32)


@dataclasses.dataclass(frozen=True, eq=False)
class TuningResult:
    """Outcome of :func:`fic` or :func:`eib`.

    Attributes
    ----------
    model : the tuned model (``J_i`` per region; ``wLRE``, ``wFFI`` per edge after EIB).
    simulation : the input simulation with the tuned model on its network.
    history : one row per iteration: ``iteration``, ``S_e``, ``S_i`` (means over regions and
        the TR), ``S_e_min``, ``S_e_max`` (over regions), ``J_i`` (mean), ``fc_r`` and ``rmse``
        of the window FC against the target (NaN until the window is full or without target).
    J_i : ``(iterations, n)`` ``J_i`` after each iteration.
    S_e : ``(iterations, n)`` mean ``S_e`` of each region over each iteration.
    fc : the last window FC ``(n, n)`` (NaN without a full window).
    bold : the last ``window`` BOLD frames ``(window, n)``, oldest first (zeros before they exist).
    iterations : iterations done (less than asked when interrupted).
    interrupted : the run was stopped by KeyboardInterrupt; everything up to the last
        finished chunk is kept and ``resume=`` continues from it. In a checkpoint file: the
        call had iterations left to do when the file was written.
    state : host (NumPy) copy of the carried state (simulation carry, BOLD input history,
        FC window, ``J_i``, ``wLRE``, ``wFFI``, iteration count): what ``resume=`` continues.
    settings : the tuning settings (learning rates, targets, window, seed, ...); ``resume=``
        requires equal ones.
    source : fingerprints of the simulation the tuning started from and of the target FC;
        ``resume=`` requires equal ones.

    A result loaded with :meth:`load` without ``sim=`` has ``simulation=None`` (a file holds
    no :class:`~fitbridge.Simulation`); everything else is as saved.
    """

    model: Any
    simulation: Simulation
    history: pd.DataFrame
    J_i: np.ndarray
    S_e: np.ndarray
    fc: np.ndarray
    bold: np.ndarray
    iterations: int
    interrupted: bool
    state: Any = dataclasses.field(repr=False)  # host copy of the carried state, for resume=
    settings: dict = dataclasses.field(repr=False, default_factory=dict)
    source: dict = dataclasses.field(repr=False, default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this result to ``path`` (one ``.npz`` file, module docstring), atomically.

        Every field but ``simulation`` is stored (the history columns, ``J_i``, ``S_e``, ``fc``,
        ``bold``, the carried ``state``, the tuned model's parameters, the settings, the
        fingerprints); :meth:`load` gives them back bitwise. The folder is created if missing;
        no suffix is added. Returns the path.

        Examples
        --------
        >>> import os, tempfile, numpy as np, fitbridge as fb
        >>> W = np.ones((4, 4)) - np.eye(4)
        >>> sim = fb.Simulation(fb.Network(fb.models.WongWangExcInh(G=0.5), W), dt=1.0,
        ...                     bold=fb.bold.HRF(tr=720.0))
        >>> out = fb.fic(sim, iterations=4, eta=1.0, progress=False)
        >>> path = out.save(os.path.join(tempfile.mkdtemp(), "fic.npz"))
        >>> back = fb.TuningResult.load(path, sim=sim)
        >>> bool(np.array_equal(back.J_i, out.J_i)), back.iterations
        (True, 4)

        ``fb.fic(sim, iterations=2, eta=1.0, resume=path)`` would continue it.
        """
        if not isinstance(path, (str, os.PathLike)):
            fail("TuningResult.save", "a file path (str or PathLike)", type(path).__name__,
                 "pass e.g. 'fic.npz'")
        return _write(self, Path(path).expanduser())

    @classmethod
    def load(cls, path: str | os.PathLike, sim: Simulation | None = None) -> TuningResult:
        """Read a result written by :meth:`save` or by ``checkpoint=`` (never unpickles).

        Parameters
        ----------
        path : the ``.npz`` file.
        sim : optional: the simulation the tuning started from (the ``sim`` passed to
            :func:`fic`/:func:`eib`). With it the result's ``simulation`` is rebuilt (the tuned
            model on its network), after checking it is the simulation of the file; without it,
            ``simulation`` is None. Resuming does not need it (``resume=`` takes the file or the
            loaded result together with the call's ``sim``).
        """
        return _load("TuningResult.load", path, sim)

    def __repr__(self) -> str:
        kind = "EIB" if self.settings.get("eib") else "FIC"
        last = self.history.iloc[-1] if len(self.history) else None
        tail = "" if last is None else (f", S_e={last['S_e']:.3f}, J_i={last['J_i']:.3f}"
                                        + ("" if math.isnan(last["fc_r"]) else f", fc_r={last['fc_r']:.3f}"))
        return (f"TuningResult({kind}, iterations={self.iterations}{tail}"
                f"{', interrupted' if self.interrupted else ''})")

    def problem(self, target_fc, *, free=("J_i", "wLRE", "wFFI"), bounds=None, duration=None,
                transient=None, **options):
        """The gradient refinement stage: an :class:`~fitbridge.FCProblem` on the tuned
        simulation whose free parameters (``J_i`` per region, ``wLRE``/``wFFI`` per edge) start at
        the tuned values; pass it to :func:`~fitbridge.minimize`.

        ``bounds`` maps names to ``(lo, hi)`` (default ``J_i`` in ``(0, 10)``, edge weights in
        ``(0, 10)``); ``duration``/``transient`` (ms) set the simulated time of each evaluation
        (default: the simulation's); ``options`` go to :class:`~fitbridge.FCProblem` (``loss``,
        ``skip``, ``noise``, ...).
        """
        from ._params import Free

        sim = self.simulation
        if sim is None:
            fail("TuningResult.problem", "a result with its simulation", "a result loaded without sim=",
                 "load it with TuningResult.load(path, sim=<the simulation the tuning started from>)")
        if duration is not None or transient is not None:
            sim = sim.replace(duration=sim.duration if duration is None else duration,
                              transient=sim.transient if transient is None else transient)
        model, rows_cols = sim.network.model, np.nonzero(sim.network.weights)
        bounds = {"J_i": (0.0, 10.0), "wLRE": (0.0, 10.0), "wFFI": (0.0, 10.0), **(bounds or {})}
        spec = {}
        for name in free:
            value = np.asarray(getattr(model, name), np.float64)
            lo, hi = bounds[name]
            if name in getattr(model, "edge_fields", ()):
                value = np.broadcast_to(value, sim.network.weights.shape)[rows_cols]
                spec[name] = Free(np.clip(value, lo, hi), bounds=(lo, hi), edges=True)
            else:
                value = np.broadcast_to(value, (sim.network.n_nodes,))
                spec[name] = Free(np.clip(value, lo, hi), bounds=(lo, hi), regional=True)
        return FCProblem(sim, target_fc, free=spec, **options)

    @property
    def fc_r(self) -> float:
        """Window FC r of the last iteration (NaN without target or full window)."""
        return float(self.history["fc_r"].iloc[-1]) if len(self.history) else math.nan


def _check_sim(where: str, sim) -> None:
    if not isinstance(sim, Simulation):
        fail(f"{where}.sim", "a fitbridge.Simulation", type(sim).__name__, "build one with fb.Simulation(...)")
    if not isinstance(sim.network.model, WongWangExcInh):
        fail(f"{where}.sim", "a Wong-Wang Exc-Inh network (fb.models.WongWangExcInh or WongWangEIB)",
             type(sim.network.model).__name__, "FIC tunes J_i, which only the Exc-Inh models have")
    if not isinstance(sim.bold, (HRF, GammaHRF)):
        fail(f"{where}.sim.bold", "an HRF or GammaHRF BOLD model (the tuning convolves TR by TR)",
             type(sim.bold).__name__, "pass bold=fb.bold.HRF(tr=720.0) to the simulation")


# ------------------------------------------------------------------------------ files
_FORMAT, _VERSION, _META = "fitbridge.tuning", 1, "__meta__"
_WHAT = "a tuning file written by TuningResult.save or checkpoint="


def _eib_sim(sim: Simulation) -> Simulation:
    """``sim`` with a :class:`WongWangEIB` model (an Exc-Inh model: ``wLRE = 1``, ``wFFI = lamda``)."""
    model = sim.network.model
    if isinstance(model, WongWangEIB):
        return sim
    fields = {k: getattr(model, k) for k in model.field_names}
    model = WongWangEIB(**fields, wLRE=1.0, wFFI=fields["lamda"]).replace(lamda=0.0)
    return sim.replace(network=sim.network.replace(model=model))


def _fingerprint(sim: Simulation) -> str:
    """SHA-256 of what determines the tuning besides its settings: the simulation as an
    FCProblem's spec describes it (model, connectome, delays, integration, noise, BOLD, initial
    state; not ``duration``, which tuning does not use)."""
    blob = simulation_spec(sim, duration=False)
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=repr).encode()).hexdigest()


def _pack(result: TuningResult) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a result: every field but the simulation."""
    arrays = {"J_i": result.J_i, "S_e": result.S_e, "fc": result.fc, "bold": result.bold}
    history = result.history
    arrays.update({f"history/{c}": history[c].to_numpy() for c in history.columns})
    state = result.state
    arrays.update({f"state/carry/{k}": v for k, v in state.carry._asdict().items()})
    arrays.update({f"state/{k}": v for k, v in state._asdict().items() if k != "carry"})
    kinds = {}
    for k in result.model.field_names:
        v = getattr(result.model, k)
        kinds[k] = "float" if isinstance(v, float) else "int" if isinstance(v, int) else "array"
        arrays[f"model/{k}"] = v
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    meta = {"format": _FORMAT, "version": _VERSION, "iterations": int(result.iterations),
            "interrupted": bool(result.interrupted), "settings": result.settings, "source": result.source,
            "history": [str(c) for c in history.columns],
            "model": {"class": type(result.model).__name__, "fields": kinds},
            "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return meta, arrays


def _write(result: TuningResult, path: Path) -> Path:
    meta, arrays = _pack(result)
    text = np.asarray(json.dumps(meta, allow_nan=False))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays, **{_META: text})

    return atomic_write(path, write)


def _read(where: str, path, arrays: bool = True, fix: str = "pass the file of checkpoint= or of TuningResult.save"
          ) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a tuning file (only the meta with ``arrays=False``); a clear
    ConfigError for anything else."""
    if not isinstance(path, (str, os.PathLike)):
        fail(where, f"a TuningResult or the path of {_WHAT}", type(path).__name__,
             "pass the interrupted call's result or its checkpoint file")
    path = Path(path).expanduser()
    if not path.is_file():
        fail(where, f"a TuningResult or the path of {_WHAT}", f"{str(path)!r} (no such file)",
             "check the path (the file of checkpoint=, or of TuningResult.save)")
    meta, out = None, {}
    try:
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as npz:
                if _META in npz.files:
                    meta = json.loads(str(npz[_META]))
                if arrays and isinstance(meta, dict) and meta.get("format") == _FORMAT:
                    out = {k: npz[k] for k in npz.files if k != _META}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        fail(where, _WHAT, f"{path} ({type(err).__name__}: {err})", fix)
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        fail(where, _WHAT, f"{path}, which is not one", fix)
    if meta.get("version") != _VERSION:
        fail(where, f"{_WHAT} (format version {_VERSION})", f"version {meta.get('version')!r} in {path}",
             "read it with the fitbridge version that wrote it")
    return meta, out


def _load(where: str, path, sim: Simulation | None = None) -> TuningResult:
    meta, a = _read(where, path)
    try:
        carry = Carry(**{k: a[f"state/carry/{k}"] for k in Carry._fields})
        state = _State(carry=carry, **{k: a[f"state/{k}"] for k in _State._fields if k != "carry"})
        history = pd.DataFrame({c: a[f"history/{c}"] for c in meta["history"]}) if meta["history"] else pd.DataFrame()
        kinds = meta["model"]["fields"]
        fields = {k: float(a[f"model/{k}"]) if kind == "float" else int(a[f"model/{k}"]) if kind == "int"
                  else a[f"model/{k}"] for k, kind in kinds.items()}
        settings, source = dict(meta["settings"]), dict(meta["source"])
        arrays = {k: a[k] for k in ("J_i", "S_e", "fc", "bold")}
        name, iterations, interrupted = meta["model"]["class"], int(meta["iterations"]), bool(meta["interrupted"])
    except (KeyError, TypeError, ValueError) as err:
        fail(where, f"a complete {_WHAT[2:]}", f"{path} (missing or bad {err})",
             "the file is damaged; resume from another checkpoint or start over")
    if sim is not None:
        _check_sim(f"{where}.sim", sim)
        sim = _eib_sim(sim) if settings.get("eib") else sim
        if _fingerprint(sim) != source.get("simulation"):
            fail(f"{where}.sim", "the simulation the tuning in the file started from",
                 "another simulation (its model parameters, connectome, integration, noise or BOLD differ)",
                 "pass the sim given to fic/eib, or load without sim=")
        model = sim.network.model.replace(**fields)
        sim = sim.replace(network=sim.network.replace(model=model))
    else:
        cls = {c.__name__: c for c in MODELS.values()}.get(name)
        if cls is None:
            fail(f"{where}.sim", f"the simulation the tuning started from, to rebuild its {name} model",
                 "none", "pass sim=<the simulation given to fic/eib>")
        model = cls(**fields)
    return TuningResult(model=model, simulation=sim, history=history, **arrays, iterations=iterations,
                        interrupted=interrupted, state=state, settings=settings, source=source)


def _check_checkpoint(where: str, checkpoint, resume) -> Path | None:
    """The checkpoint path, checked before anything is computed: a file in an existing,
    writable folder, not holding anything ``resume=`` does not continue."""
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)):
        fail(f"{where}.checkpoint", "a file path (str or PathLike) or None", type(checkpoint).__name__,
             "pass e.g. checkpoint='fic.npz'")
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        fail(f"{where}.checkpoint", "a file path", f"{path} (a folder)", f"pass e.g. checkpoint='{path / 'tuning.npz'}'")
    folder = path.parent
    if not folder.is_dir():
        fail(f"{where}.checkpoint", "a file in an existing folder", f"{path} (no folder {folder})",
             "create the folder first, or choose another path")
    try:  # what atomic_write will do: a temporary file beside it
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        fail(f"{where}.checkpoint", "a file in a folder you can write to", f"{path} ({err.strerror or err})",
             "choose another folder")
    if path.exists():
        meta, _ = _read(f"{where}.checkpoint", path, arrays=False,  # never overwrite anything else
                        fix="choose another path: checkpoints would overwrite this file")
        if resume is None:
            fail(f"{where}.checkpoint", "a path without an earlier tuning (or resume= from it)",
                 f"{path}, holding {meta['iterations']} iterations of tuning",
                 f"pass resume={str(path)!r} to continue them, or delete the file to start over")
    return path
