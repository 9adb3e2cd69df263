"""Feedback inhibition control (FIC) and excitation-inhibition balance (EIB) tuning.

Both are online learning rules run *during* a simulation: the network is simulated one BOLD
TR at a time, the state (gates, delay buffer, the last 20 s of the BOLD input) carried from
one iteration to the next, and the parameters are updated between iterations. All of it is
one jitted ``lax.scan`` per chunk of iterations (compiled once per chunk length); the host
sees the parameters and a history row per iteration.

**FIC** (Deco et al. 2014, J Neurosci 34:7886) tunes the local inhibitory weight ``J_i`` of
each region so that its excitatory activity sits at a target: in the gating form
(default) ``J_i += eta * <S_i> * (<S_e> - target)`` with ``target = 0.25``, in the rate form
``J_i += eta * <S_i> * (<r_e> - rate) / rate`` with ``rate = 3`` Hz; ``<.>`` is the mean over
the iteration's TR and ``J_i`` is kept >= 0.

**EIB** (Schirner et al. 2023, Nat Commun 14:2792) tunes, per structural edge ``(i, j)``, the
long-range excitation ``wLRE`` and feed-forward inhibition ``wFFI`` of
:class:`~fitbridge.models.WongWangEIB` from the FC of a sliding window of the last
``window`` BOLD frames: with ``D = FC_emp - FC_sim`` and ``e_i`` the RMSE of row ``i`` of
``D``, ``wLRE += lr * D * e[:, None]`` and ``wFFI -= lr * D * e[:, None]``, both clipped at 0
and kept on the edges of the connectome. Updates start once the window is full, and the
learning rate ramps linearly from 0 to ``eta`` over ``warmup`` iterations. FIC runs
alongside (``fic_eta``; 0 disables it).

The results carry the tuned model, a ready :class:`~fitbridge.Simulation` using it, and the
history (pandas) of mean ``S_e``, ``S_i``, ``J_i``, window FC r and RMSE per iteration.

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
import warnings
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._bold import HRF, GammaHRF
from ._cache import digest, versions
from ._errors import fail
from ._fcproblem import FCProblem, _check_target, simulation_spec
from ._files import atomic_write
from ._integrate import Loop, run_blocks
from ._models import MODELS, WongWangEIB, WongWangExcInh
from ._observe import corr, fc, upper
from ._progress import progress_bar
from ._simulate import Carry, Simulation

__all__ = ["fic", "eib", "TuningResult"]


_COLUMNS = ("S_e", "S_i", "S_e_min", "S_e_max", "r_e", "J_i", "fc_r", "rmse")


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


def _number(where, value, lo, hi=math.inf, integer=False, fix=""):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value) and lo <= value <= hi and (not integer or int(value) == value)
    if not ok:
        kind = "an integer" if integer else "a number"
        fail(where, f"{kind} in [{lo}, {hi}]", repr(value), fix or f"pass a value between {lo} and {hi}")
    return int(value) if integer else float(value)


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


class _Tuner:
    """The compiled iteration of one tuning setup (see the module docstring)."""

    def __init__(self, sim: Simulation, target_fc, *, eib: bool, fic_eta: float, fic_target: float,
                 form: str, rate: float, eta: float, warmup: int, window: int, seed: int):
        self.sim, self.eib, self.window = sim, eib, window
        self.fic_eta, self.fic_target, self.form, self.rate = fic_eta, fic_target, form, rate
        self.eta, self.warmup, self.seed = eta, warmup, seed
        net, bold = sim.network, sim.bold
        self.n = net.n_nodes
        self.sps = round(bold.period / sim.dt)
        self.per_tr = round(bold.tr / bold.period)
        self.n_hist = max(round(getattr(bold, "length", 20_000.0) / bold.period), self.per_tr)
        self.n_transient = round(sim.transient / sim.dt)
        self.target = None if target_fc is None else np.asarray(target_fc, np.float64)
        self.mask = (net.weights > 0).astype(np.float64)

    # ---------------------------------------------------------------- traced pieces
    def _model(self, state: _State):
        model = self.sim.network.model.replace(J_i=state.J_i)
        if self.eib:
            model = model.replace(wLRE=state.wLRE, wFFI=state.wFFI)
        return model

    def _stepper(self, model, dtype):
        sim = self.sim
        delays, L = sim._delays(sim.network.speed, dtype)
        return sim._stepper(model, sim._weights(model, dtype), delays, L)

    def _noise(self, model, dtype):
        params = dict(self.sim.params, model=model)
        return self.sim._noise(params, jax.random.key(self.seed), None, dtype)

    def initial(self, dtype) -> _State:
        sim, net, n = self.sim, self.sim.network, self.n
        model = net.model
        carry = sim._carry0(model, sim._weights(model, dtype), sim._delays(net.speed, dtype)[1], dtype)
        J_i = jnp.broadcast_to(jnp.asarray(model.J_i, dtype), (n,))
        if self.eib:
            mask = jnp.asarray(self.mask, dtype)
            wLRE = jnp.broadcast_to(jnp.asarray(model.wLRE, dtype), (n, n)) * mask
            wFFI = jnp.broadcast_to(jnp.asarray(model.wFFI, dtype), (n, n)) * mask
        else:
            wLRE = wFFI = jnp.zeros((0,), dtype)
        state = _State(carry, jnp.zeros((self.n_hist, n), dtype), jnp.zeros((self.window, n), dtype),
                       J_i, wLRE, wFFI, jnp.zeros((), jnp.int32))
        model = self._model(state)
        if self.n_transient:
            carry, _ = run_blocks(self._stepper(model, dtype), None, carry,
                                  Loop(self.n_transient, 1, max(1, round(math.sqrt(self.n_transient))), False),
                                  self._noise(model, dtype), 0)
        signal = self._signal(model, carry.x, carry.c)
        return state._replace(carry=carry, hist=jnp.broadcast_to(signal, (self.n_hist, n)).astype(dtype))

    def _signal(self, model, x, c):
        return model.rate(x, c) if self.sim.bold.input == "rate" else x[0]

    def iterate(self, state: _State, _):
        dtype = state.hist.dtype
        model = self._model(state)
        step = self._stepper(model, dtype)

        def observe(src):
            x, c = src
            return jnp.stack([x[0], x[1], model.rate(x, c), self._signal(model, x, c)])

        loop = Loop(self.per_tr, self.sps, self.per_tr, True)
        offset = self.n_transient + state.it * (self.per_tr * self.sps)
        carry, samples = run_blocks(step, observe, state.carry, loop, self._noise(model, dtype), offset)
        mean = jnp.mean(samples, axis=0)  # (4, n): S_e, S_i, r_e, BOLD input
        hist = jnp.concatenate([state.hist[self.per_tr:], samples[:, 3]])
        frame = self.sim.bold.frames(hist, self.n_hist - 1, 1)[0]
        frames = state.frames.at[state.it % self.window].set(frame)
        it = state.it + 1
        full = it >= self.window
        J_i = state.J_i
        if self.fic_eta:
            error = mean[0] - self.fic_target if self.form == "gating" else (mean[2] - self.rate) / self.rate
            J_i = jnp.maximum(J_i + self.fic_eta * mean[1] * error, 0.0)
        sim_fc = fc(frames)
        nan = jnp.asarray(jnp.nan, dtype)
        r = rmse = nan
        wLRE, wFFI = state.wLRE, state.wFFI
        if self.target is not None:
            target = jnp.asarray(self.target, dtype)
            a, b = upper(sim_fc), upper(target)
            r = jnp.where(full, corr(a, b), nan)
            rmse = jnp.where(full, jnp.sqrt(jnp.mean((a - b) ** 2)), nan)
            if self.eib:
                diff = jnp.where(full, target - sim_fc, 0.0) * (1.0 - jnp.eye(self.n, dtype=dtype))
                row = jnp.sqrt(jnp.sum(diff ** 2, axis=1) / (self.n - 1))
                ramp = jnp.clip((it - self.window) / max(self.warmup, 1), 0.0, 1.0)
                delta = self.eta * ramp * diff * row[:, None]
                delta = jnp.where(jnp.isfinite(delta), delta, 0.0)  # a flat window: no update
                mask = jnp.asarray(self.mask, dtype)
                wLRE = jnp.maximum(wLRE + delta, 0.0) * mask
                wFFI = jnp.maximum(wFFI - delta, 0.0) * mask
        row_out = (jnp.mean(mean[0]), jnp.mean(mean[1]), jnp.min(mean[0]), jnp.max(mean[0]), jnp.mean(mean[2]),
                   jnp.mean(J_i), r, rmse)
        new = _State(carry, hist, frames, J_i, wLRE, wFFI, it)
        return new, (row_out, J_i, mean[0])

    def run(self, state: _State, n_iter: int):
        return jax.lax.scan(self.iterate, state, None, length=n_iter)


def _tune(where, sim, target_fc, *, iterations, eib, fic_eta, fic_target, form, rate, eta, warmup, window,
          seed, chunk, progress, resume, checkpoint):
    _check_sim(where, sim)
    iterations = _number(f"{where}.iterations", iterations, 0 if resume is not None else 1, integer=True,
                         fix="pass e.g. iterations=500")
    chunk = _number(f"{where}.chunk", chunk, 1, integer=True, fix="pass e.g. chunk=50")
    window = _number(f"{where}.window", window, 3, integer=True, fix="use e.g. window=150 frames")
    fic_eta = _number(f"{where}.fic_eta", fic_eta, 0.0, fix="use e.g. 0.1, or 0 to switch FIC off")
    seed = _number(f"{where}.seed", seed, 0, integer=True, fix="pass an int seed")
    if form not in ("gating", "rate"):
        fail(f"{where}.form", "'gating' (target <S_e>) or 'rate' (target r_e in Hz)", repr(form), "use 'gating'")
    fic_target = _number(f"{where}.target", fic_target, 0.0, 1.0, fix="the gating target is a fraction, e.g. 0.25")
    rate = _number(f"{where}.rate", rate, 1e-9, fix="use e.g. rate=3.0 (Hz)")
    n = sim.network.n_nodes
    if target_fc is not None:

        target_fc = _check_target(target_fc, n)
    if eib:
        eta = _number(f"{where}.eta", eta, 0.0, fix="use e.g. eta=0.005")
        warmup = _number(f"{where}.warmup", warmup, 0, integer=True, fix="use e.g. warmup=100")
        sim = _eib_sim(sim)
    settings = dict(eib=eib, fic_eta=fic_eta, fic_target=fic_target, form=form, rate=rate, eta=eta,
                    warmup=warmup, window=window, seed=seed)
    source = {"simulation": _fingerprint(sim), "target": None if target_fc is None else digest(target_fc)}
    if isinstance(resume, (str, os.PathLike)):
        resume = _load(f"{where}.resume", resume)
    if resume is not None:
        if not isinstance(resume, TuningResult):
            fail(f"{where}.resume", f"a TuningResult or the path of {_WHAT}", type(resume).__name__,
                 "resume with the result of the interrupted call, or its checkpoint file")
        if resume.settings != settings:
            fail(f"{where}.resume", "a TuningResult of the same tuning settings", f"settings {resume.settings}",
                 "resume with the result of the interrupted call and the same arguments")
        for key, what in (("simulation", "simulation (model parameters, connectome, integration, noise, BOLD)"),
                          ("target", "target FC")):
            if resume.source and resume.source.get(key) != source[key]:
                fail(f"{where}.resume", f"a tuning of the same {what}", f"a tuning of another {what.split(' (')[0]}",
                     "resume with the sim and target_fc of the interrupted call")
    checkpoint = _check_checkpoint(where, checkpoint, resume)
    tuner = _Tuner(sim, target_fc, **settings)
    interrupted, saved = False, None
    with jax.enable_x64(True):
        dtype = jnp.float64
        state = tuner.initial(dtype) if resume is None else jax.tree_util.tree_map(jnp.asarray, resume.state)
        done0 = int(state.it)
        # everything done so far, as ONE reference: (state, history frames, J_i, S_e). A chunk is
        # committed by one assignment, so a Ctrl-C between two statements never splits it.
        done = (state, (), (), ()) if resume is None else (state, (resume.history,), (resume.J_i,), (resume.S_e,))

        def result(done, interrupted: bool) -> TuningResult:
            state, rows, J_hist, S_hist = done
            host = jax.tree_util.tree_map(np.asarray, state)
            model = tuner._model(state)
            model = model.replace(**{k: np.asarray(getattr(model, k))
                                     for k in ("J_i",) + (("wLRE", "wFFI") if eib else ())})
            window_fc = np.asarray(fc(state.frames)) if int(host.it) >= window else np.full((n, n), np.nan)
            return TuningResult(model=model, simulation=sim.replace(network=sim.network.replace(model=model)),
                                history=pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
                                J_i=np.concatenate(J_hist) if J_hist else np.zeros((0, n)),
                                S_e=np.concatenate(S_hist) if S_hist else np.zeros((0, n)), fc=window_fc,
                                bold=np.roll(host.frames, -(int(host.it) % window), axis=0),
                                iterations=int(host.it), interrupted=interrupted, state=host, settings=settings,
                                source=source)

        run = jax.jit(tuner.run, static_argnums=1)
        with progress_bar(iterations, progress=progress, desc=where, unit="TR") as bar:
            try:
                while (left := iterations - (int(done[0].it) - done0)) > 0:
                    size = min(chunk, left)
                    new, (row, J_i, S_e) = run(done[0], size)
                    jax.block_until_ready(new)
                    frame = pd.DataFrame({k: np.asarray(v) for k, v in zip(_COLUMNS, row)})
                    frame.insert(0, "iteration", np.arange(int(new.it) - size, int(new.it)) + 1)
                    done = (new, done[1] + (frame,), done[2] + (np.asarray(J_i),), done[3] + (np.asarray(S_e),))
                    if checkpoint is not None:  # "interrupted" until the call's last chunk
                        snap = result(done, left > size)
                        _write(snap, checkpoint)
                        saved = (snap.iterations, snap.interrupted)
                        done = (new, (snap.history,), (snap.J_i,), (snap.S_e,))  # the same, concatenated
                    bar.update(size)
            except KeyboardInterrupt:
                interrupted = True
                kept = "" if checkpoint is None else f" and so does {checkpoint}"
                warnings.warn(f"{where} interrupted after {int(done[0].it) - done0} of {iterations} iterations; "
                              f"the result keeps them{kept} (pass it as resume= to continue)", stacklevel=3)
        out = result(done, interrupted)
    if checkpoint is not None and out.iterations and saved != (out.iterations, interrupted):
        _write(out, checkpoint)  # not written yet: e.g. a Ctrl-C during the last write, or iterations=0
    return out


def fic(sim: Simulation, *, iterations: int = 500, eta: float = 0.1, target: float = 0.25, form: str = "gating",
        rate: float = 3.0, target_fc=None, window: int = 150, seed: int | None = None, chunk: int = 50,
        progress: bool | None = None, resume: TuningResult | str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None) -> TuningResult:
    """Feedback inhibition control: tune ``J_i`` per region so each region's excitatory
    activity reaches ``target`` (module docstring for the rule).

    Parameters
    ----------
    sim : a :class:`~fitbridge.Simulation` of a Wong-Wang Exc-Inh network with HRF BOLD. Its
        ``dt``, noise, delays and ``transient`` (simulated once, before the first update) are
        used; its ``duration`` is not (``iterations`` TRs are simulated).
    iterations : number of TRs simulated, one update after each (with ``resume=``: more
        iterations; 0 just reads the result back).
    eta : learning rate of ``J_i``.
    target, form, rate : the gating target ``<S_e>`` (``form="gating"``) or the excitatory
        rate in Hz (``form="rate"``).
    target_fc : optional empirical FC: the history then reports the FC r and RMSE of the last
        ``window`` BOLD frames (nothing is tuned against it).
    seed : noise seed (default ``sim.seed``).
    chunk : iterations per compiled call (progress, interruption and checkpoint granularity).
    resume : a previous (e.g. interrupted) result of the same call, or the path of its file
        (``checkpoint=``, :meth:`TuningResult.save`): continue from its state, bit-identically
        to one uninterrupted call. The settings, ``sim`` and ``target_fc`` must be those of the
        call that made it.
    checkpoint : path of a file the result so far is written to after every chunk (atomically,
        one ``.npz``; :meth:`TuningResult.load` reads it): a killed process loses at most the
        chunk it was computing, and ``resume=checkpoint`` continues it. Its folder must exist;
        a file already there must be a tuning file, and only ``resume=`` may continue it (it
        is never overwritten otherwise). Costs one file write per chunk (the state, the
        history and the per-iteration ``J_i``/``S_e``).

    Examples
    --------
    >>> import numpy as np, fitbridge as fb
    >>> W = np.ones((4, 4)) - np.eye(4)
    >>> sim = fb.Simulation(fb.Network(fb.models.WongWangExcInh(G=0.5), W), dt=1.0,
    ...                     duration=10_000.0, bold=fb.bold.HRF(tr=720.0))
    >>> out = fb.fic(sim, iterations=100, eta=1.0, progress=False)
    >>> bool(abs(out.history["S_e"].iloc[-1] - 0.25) < abs(out.history["S_e"].iloc[0] - 0.25))
    True

    A job that may be killed keeps its tuning in a file and, started again, continues it::

        done = fb.TuningResult.load(path).iterations if os.path.exists(path) else 0
        out = fb.fic(sim, iterations=500 - done, checkpoint=path, resume=path if done else None)
    """
    return _tune("fic", sim, target_fc, iterations=iterations, eib=False, fic_eta=eta, fic_target=target,
                 form=form, rate=rate, eta=0.0, warmup=0, window=window,
                 seed=sim.seed if seed is None and isinstance(sim, Simulation) else (seed or 0),
                 chunk=chunk, progress=progress, resume=resume, checkpoint=checkpoint)


def eib(sim: Simulation, target_fc, *, iterations: int = 2000, eta: float = 0.005, warmup: int = 100,
        window: int = 150, fic_eta: float = 0.1, fic_target: float = 0.25, form: str = "gating",
        rate: float = 3.0, seed: int | None = None, chunk: int = 50, progress: bool | None = None,
        resume: TuningResult | str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None) -> TuningResult:
    """Excitation-inhibition balance: tune per-edge ``wLRE``/``wFFI`` towards ``target_fc``,
    together with FIC (module docstring for the rules).

    Parameters
    ----------
    sim : a :class:`~fitbridge.Simulation` of a :class:`~fitbridge.models.WongWangEIB` network
        (a ``WongWangExcInh`` network is converted with ``wLRE = 1``, ``wFFI = lamda``), HRF BOLD.
    target_fc : empirical FC ``(n, n)``.
    iterations : TRs simulated (the first ``window`` only fill the FC window).
    eta, warmup : EIB learning rate and the number of iterations over which it ramps up.
    window : BOLD frames in the sliding-window FC.
    fic_eta, fic_target, form, rate : the FIC rule run alongside (``fic_eta=0``: off).
    seed, chunk, progress, resume, checkpoint : as in :func:`fic`.

    The tuned ``result.simulation`` can be fitted further with :class:`~fitbridge.FCProblem`
    (free ``J_i`` regional, ``wLRE``/``wFFI`` with ``Free(..., edges=True)``) and
    :func:`~fitbridge.minimize`.
    """
    return _tune("eib", sim, target_fc, iterations=iterations, eib=True, fic_eta=fic_eta, fic_target=fic_target,
                 form=form, rate=rate, eta=eta, warmup=warmup, window=window,
                 seed=sim.seed if seed is None and isinstance(sim, Simulation) else (seed or 0),
                 chunk=chunk, progress=progress, resume=resume, checkpoint=checkpoint)
