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

Results, their files and checkpoints: :mod:`fitbridge._tuning_result`.
"""

from __future__ import annotations

import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._cache import digest
from ._errors import fail
from ._fcproblem import _check_target
from ._integrate import Loop, run_blocks
from ._observe import corr, fc, upper
from ._progress import progress_bar
from ._simulate import Simulation
from ._tuning_result import (
    _WHAT,
    TuningResult,
    _check_checkpoint,
    _check_sim,
    _eib_sim,
    _fingerprint,
    _load,
    _State,
    _write,
)

__all__ = ["fic", "eib", "TuningResult"]


_COLUMNS = ("S_e", "S_i", "S_e_min", "S_e_max", "r_e", "J_i", "fc_r", "rmse")


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
