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
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._bold import HRF, GammaHRF
from ._errors import fail
from ._integrate import Loop, run_blocks
from ._models import WongWangEIB, WongWangExcInh
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
        finished chunk is kept and ``resume=`` continues from it.
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
        from ._fcproblem import FCProblem
        from ._params import Free

        sim = self.simulation
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
          seed, chunk, progress, resume):
    _check_sim(where, sim)
    iterations = _number(f"{where}.iterations", iterations, 1, integer=True, fix="pass e.g. iterations=500")
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
        from ._fcproblem import _check_target

        target_fc = _check_target(target_fc, n)
    if eib:
        eta = _number(f"{where}.eta", eta, 0.0, fix="use e.g. eta=0.005")
        warmup = _number(f"{where}.warmup", warmup, 0, integer=True, fix="use e.g. warmup=100")
        model = sim.network.model
        if not isinstance(model, WongWangEIB):  # the Exc-Inh model with wLRE = 1, wFFI = lamda
            fields = {k: getattr(model, k) for k in model.field_names}
            model = WongWangEIB(**fields, wLRE=1.0, wFFI=fields["lamda"]).replace(lamda=0.0)
            sim = sim.replace(network=sim.network.replace(model=model))
    settings = dict(eib=eib, fic_eta=fic_eta, fic_target=fic_target, form=form, rate=rate, eta=eta,
                    warmup=warmup, window=window, seed=seed)
    if resume is not None:
        if not isinstance(resume, TuningResult) or resume.settings != settings:
            fail(f"{where}.resume", "a TuningResult of the same tuning settings",
                 type(resume).__name__ if not isinstance(resume, TuningResult) else f"settings {resume.settings}",
                 "resume with the result of the interrupted call and the same arguments")
    tuner = _Tuner(sim, target_fc, **settings)
    rows, J_hist, S_hist = [], [], []
    interrupted = False
    with jax.enable_x64(True):
        dtype = jnp.float64
        state = tuner.initial(dtype) if resume is None else jax.tree_util.tree_map(jnp.asarray, resume.state)
        done0 = int(state.it)
        if resume is not None:
            rows.append(resume.history)
            J_hist.append(resume.J_i)
            S_hist.append(resume.S_e)
        run = jax.jit(tuner.run, static_argnums=1)
        left = iterations
        with progress_bar(iterations, progress=progress, desc=where, unit="TR") as bar:
            try:
                while left > 0:
                    size = min(chunk, left)
                    new, (row, J_i, S_e) = run(state, size)
                    jax.block_until_ready(new)
                    state, left = new, left - size
                    frame = pd.DataFrame({k: np.asarray(v) for k, v in zip(_COLUMNS, row)})
                    frame.insert(0, "iteration", np.arange(int(state.it) - size, int(state.it)) + 1)
                    rows.append(frame)
                    J_hist.append(np.asarray(J_i))
                    S_hist.append(np.asarray(S_e))
                    bar.update(size)
            except KeyboardInterrupt:
                interrupted = True
                warnings.warn(f"{where} interrupted after {int(state.it) - done0} of {iterations} iterations; "
                              "the result keeps them (pass it as resume= to continue)", stacklevel=3)
        host = jax.tree_util.tree_map(np.asarray, state)
        model = tuner._model(state)
        model = model.replace(**{k: np.asarray(getattr(model, k)) for k in ("J_i",) + (("wLRE", "wFFI") if eib else ())})
        window_fc = np.asarray(fc(state.frames)) if int(state.it) >= window else np.full((n, n), np.nan)
    tuned = sim.replace(network=sim.network.replace(model=model))
    history = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return TuningResult(model=model, simulation=tuned, history=history,
                        J_i=np.concatenate(J_hist) if J_hist else np.zeros((0, n)),
                        S_e=np.concatenate(S_hist) if S_hist else np.zeros((0, n)),
                        fc=window_fc, bold=np.roll(host.frames, -(int(host.it) % window), axis=0), iterations=int(host.it), interrupted=interrupted, state=host, settings=settings)


def fic(sim: Simulation, *, iterations: int = 500, eta: float = 0.1, target: float = 0.25, form: str = "gating",
        rate: float = 3.0, target_fc=None, window: int = 150, seed: int | None = None, chunk: int = 50,
        progress: bool | None = None, resume: TuningResult | None = None) -> TuningResult:
    """Feedback inhibition control: tune ``J_i`` per region so each region's excitatory
    activity reaches ``target`` (module docstring for the rule).

    Parameters
    ----------
    sim : a :class:`~fitbridge.Simulation` of a Wong-Wang Exc-Inh network with HRF BOLD. Its
        ``dt``, noise, delays and ``transient`` (simulated once, before the first update) are
        used; its ``duration`` is not (``iterations`` TRs are simulated).
    iterations : number of TRs simulated, one update after each.
    eta : learning rate of ``J_i``.
    target, form, rate : the gating target ``<S_e>`` (``form="gating"``) or the excitatory
        rate in Hz (``form="rate"``).
    target_fc : optional empirical FC: the history then reports the FC r and RMSE of the last
        ``window`` BOLD frames (nothing is tuned against it).
    seed : noise seed (default ``sim.seed``).
    chunk : iterations per compiled call (progress and interruption granularity).
    resume : a previous (e.g. interrupted) result of the same call: continue from its state.

    Examples
    --------
    >>> import numpy as np, fitbridge as fb
    >>> W = np.ones((4, 4)) - np.eye(4)
    >>> sim = fb.Simulation(fb.Network(fb.models.WongWangExcInh(G=0.5), W), dt=1.0,
    ...                     duration=10_000.0, bold=fb.bold.HRF(tr=720.0))
    >>> out = fb.fic(sim, iterations=100, eta=1.0, progress=False)
    >>> bool(abs(out.history["S_e"].iloc[-1] - 0.25) < abs(out.history["S_e"].iloc[0] - 0.25))
    True
    """
    return _tune("fic", sim, target_fc, iterations=iterations, eib=False, fic_eta=eta, fic_target=target,
                 form=form, rate=rate, eta=0.0, warmup=0, window=window,
                 seed=sim.seed if seed is None and isinstance(sim, Simulation) else (seed or 0),
                 chunk=chunk, progress=progress, resume=resume)


def eib(sim: Simulation, target_fc, *, iterations: int = 2000, eta: float = 0.005, warmup: int = 100,
        window: int = 150, fic_eta: float = 0.1, fic_target: float = 0.25, form: str = "gating",
        rate: float = 3.0, seed: int | None = None, chunk: int = 50, progress: bool | None = None,
        resume: TuningResult | None = None) -> TuningResult:
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
    seed, chunk, progress, resume : as in :func:`fic`.

    The tuned ``result.simulation`` can be fitted further with :class:`~fitbridge.FCProblem`
    (free ``J_i`` regional, ``wLRE``/``wFFI`` with ``Free(..., edges=True)``) and
    :func:`~fitbridge.minimize`.
    """
    return _tune("eib", sim, target_fc, iterations=iterations, eib=True, fic_eta=fic_eta, fic_target=fic_target,
                 form=form, rate=rate, eta=eta, warmup=warmup, window=window,
                 seed=sim.seed if seed is None and isinstance(sim, Simulation) else (seed or 0),
                 chunk=chunk, progress=progress, resume=resume)
