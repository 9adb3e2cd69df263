"""`FCProblem`: simulate -> BOLD -> FC -> loss against an empirical FC, as a flat-vector problem."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import fail
from ._observe import corr, fc, get_loss, upper
from ._params import Free, ParameterSpace
from ._problem import Problem
from ._simulate import Simulation

__all__ = ["FCProblem"]


def _check_target(target, n: int, where: str = "FCProblem.target") -> np.ndarray:
    raw = np.asarray(target)
    if raw.dtype.kind not in "biuf" and raw.dtype != object:
        fail(where, "a real-valued (n, n) FC matrix", f"dtype {raw.dtype}",
             "pass the FC as a float array (np.corrcoef(bold.T))")
    try:
        t = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        fail(where, "a real-valued (n, n) FC matrix", f"{type(target).__name__} of non-numbers",
             "pass the FC as a float array (np.corrcoef(bold.T))")
    if t.shape != (n, n):
        fail(where, f"an ({n}, {n}) FC matrix matching the network", f"shape {t.shape}",
             "pass the empirical FC of the same parcellation (e.g. data.fc)")
    iu = np.triu_indices(n, 1)
    if not np.all(np.isfinite(t[iu])) or not np.all(np.isfinite(t.T[iu])):
        fail(where, "finite off-diagonal FC values", f"{np.sum(~np.isfinite(t))} NaN/inf entries",
             "drop regions with flat BOLD before computing FC")
    if not np.allclose(t, t.T, atol=1e-8):
        fail(where, "a symmetric FC matrix", f"max |FC - FC.T| = {np.max(np.abs(t - t.T)):.3g}",
             "symmetrise it with (FC + FC.T) / 2 if the asymmetry is numerical")
    return t


def _digest(arr) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float64).tobytes()).hexdigest()[:16]


def simulation_spec(sim: Simulation, duration: bool = True) -> dict:
    """JSON-able description of what ``sim`` computes (arrays by digest): the simulation part of
    an FCProblem's spec, and what a tuning file's fingerprint hashes (``duration=False``: tuning
    simulates its own number of TRs)."""
    net = sim.network
    out = {"model": type(net.model).__name__,
           "model_params": {k: np.asarray(getattr(net.model, k)).tolist() for k in net.model.field_names},
           "weights": _digest(net.weights), "lengths": None if net.lengths is None else _digest(net.lengths),
           "speed": net.speed, "dt": sim.dt, "transient": sim.transient,
           "sigma": None if sim.noise is None else np.asarray(sim.noise.sigma).tolist(),
           "bold": repr(sim.bold), "method": sim.method, "delay_mode": sim.delay_mode,
           "min_speed": sim.min_speed, "checkpoint": sim.checkpoint,  # the noise is drawn per checkpoint block
           "initial_state": None if sim.initial_state is None else np.asarray(sim.initial_state).tolist()}
    if duration:
        out["duration"] = sim.duration
    return out


class FCProblem(Problem):
    """Fit simulated FC to an empirical FC: ``loss(FC(BOLD(simulate(params))), target)``.

    Parameters
    ----------
    sim : Simulation
        Must have a BOLD model (``bold=fb.bold.HRF(...)`` or another).
    target : (n, n) array
        Empirical FC (symmetric, finite off the diagonal).
    free : dict[str, Free]
        Free parameters by name: model parameters (``G``, ``w``, ``I_o``, ``J_i`` ..., global or
        ``regional=True``), ``sigma`` (noise), ``speed`` (delays) and BOLD constants
        (``bold.tau_s`` ...). Everything else stays as set in ``sim``.
    loss : ``"1-corr"`` (default), ``"rmse"`` or a callable ``(sim_fc, target_fc) -> scalar``.
    skip : BOLD frames dropped before FC. Default: none when the transient covers the 20 s
        HRF, else as many frames as the HRF needs to fill.
    fisher : compare Fisher-z transformed FC (built-in losses only).
    noise, seed, mode, chunk_size : see :class:`~fitbridge.Problem`. ``seed`` defaults to ``sim.seed``.

    The history records ``fc_r``, the Pearson r between the upper triangles of simulated
    and empirical FC, for every evaluation. A simulation that saturates (flat BOLD) gives a
    NaN FC and NaN loss; optimizers see the documented penalty instead.

    Examples
    --------
    >>> import fitbridge as fb
    >>> data = fb.datasets.load("hcp")
    >>> net = fb.Network(fb.models.ReducedWongWang(), data.weights)
    >>> sim = fb.Simulation(net, dt=4.0, duration=60_000.0, transient=20_000.0,
    ...                     noise=fb.AdditiveNoise(0.00283), bold=fb.bold.HRF(tr=720.0))
    >>> problem = fb.FCProblem(sim, data.fc, free={"G": fb.Free(0.3, bounds=(0.0, 1.0))})
    >>> problem.names
    ['G']
    """

    def __init__(self, sim: Simulation, target, *, free: Mapping[str, Free], loss: str | Callable = "1-corr",
                 skip: int | None = None, fisher: bool = False, noise: str | int = "fixed",
                 seed: int | None = None, mode: str = "auto", chunk_size: int | None = None):
        if not isinstance(sim, Simulation):
            fail("FCProblem.sim", "a fitbridge.Simulation", type(sim).__name__, "build one with fb.Simulation(...)")
        if sim.bold is None:
            fail("FCProblem.sim", "a simulation with a BOLD model", "bold=None",
                 "pass bold=fb.bold.HRF(tr=...) to the Simulation")
        n = sim.network.n_nodes
        target = _check_target(target, n)
        allowed = sim.parameter_names()
        edge_fields = getattr(sim.network.model, "edge_fields", ())
        self.edge_index = tuple(np.nonzero(sim.network.weights))  # (rows, cols) of per-edge parameters
        space = (ParameterSpace(free, n_regions=n, allowed=allowed, edges=self.edge_index)
                 if isinstance(free, Mapping) else free)
        for name, spec in space.free.items():
            if spec.regional and (not allowed[name] or name in edge_fields):
                fail(f"FCProblem.free[{name!r}]", "a global value (this parameter cannot be regional)",
                     "regional=True", "set regional=False" + (", or edges=True" if name in edge_fields else ""))
            if spec.edges and name not in edge_fields:
                fail(f"FCProblem.free[{name!r}]", f"edges=True only for per-edge parameters {list(edge_fields)}",
                     "edges=True", "use regional=True for a per-region value")
        self._edge_names = [k for k, f in space.free.items() if f.edges]
        if "speed" in space.free:
            lo = space.free["speed"].bounds[0]
            if not lo > 0:
                fail("FCProblem.free['speed']", "a lower bound > 0 (it sizes the delay buffer)", f"lo={lo}",
                     "use bounds such as (1.0, 20.0) mm/ms")
            sim = sim.replace(min_speed=lo)
        n_frames = sim.plan["n_frames"]
        if skip is None:
            skip = 0 if sim.transient >= 20_000.0 else min(math.ceil(20_000.0 / sim.bold.tr), n_frames - 3)
        if not isinstance(skip, (int, np.integer)) or not 0 <= skip <= n_frames - 3:
            fail("FCProblem.skip", f"an int in [0, {n_frames - 3}] (at least 3 frames must remain)", repr(skip),
                 "lower skip or lengthen the simulation")
        if fisher and callable(loss):
            fail("FCProblem.fisher", "a built-in loss name with fisher=True", "a callable loss",
                 "apply fb.losses.fisher_z inside your own loss")
        self.sim, self.target, self.skip = sim, target, int(skip)
        loss_fn = get_loss(loss)
        # read by fitbridge._evaluate to compute loss, fc_r and observables in one pass
        self.loss_fn, self.fisher = loss_fn, bool(fisher)
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
        target_j = np.asarray(target)

        def fc_loss(values, key):
            values = self._matrices(values)
            base = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
            bold, _ = sim.forward(sim.with_values(base, values), key)
            sim_fc = fc(bold, self.skip)
            value = loss_fn(sim_fc, target_j, fisher=True) if fisher else loss_fn(sim_fc, target_j)
            return value, {"fc_r": corr(upper(sim_fc), upper(target_j))}

        super().__init__(fc_loss, space, stochastic=sim.noise is not None, noise=noise,
                         seed=sim.seed if seed is None else seed, mode=mode, chunk_size=chunk_size,
                         has_aux=True, spec=self._spec(sim, target, loss, fisher))

    def _spec(self, sim, target, loss, fisher) -> dict:
        return {**simulation_spec(sim), "target": _digest(target),
                "loss": loss if isinstance(loss, str) else repr(loss), "fisher": fisher, "skip": self.skip}

    def _matrices(self, values: dict) -> dict:
        """Per-edge vectors -> ``(n, n)`` matrices oriented like the weights (0 off the edges)."""
        if not self._edge_names:
            return values
        values, (rows, cols), n = dict(values), self.edge_index, self.sim.network.n_nodes
        for k in self._edge_names:
            values[k] = jnp.zeros((n, n), values[k].dtype).at[rows, cols].set(values[k])
        return values

    # ------------------------------------------------------------ inspection helpers
    def simulate(self, x, key=None) -> np.ndarray:
        """BOLD ``(frames, n)`` at the parameter vector ``x`` (float64 NumPy)."""
        x = self._vector(x, "FCProblem.simulate")
        with jax.enable_x64(True):
            key = jax.random.key(self.seed) if key is None else key
            fn = self._compiled.get("bold")
            if fn is None:
                base = lambda: jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), self.sim.params)  # noqa
                fn = jax.jit(lambda x, k: self.sim.forward(self.sim.with_values(base(), self._matrices(self.space.unflatten(x))), k)[0])
                self._compiled["bold"] = fn
            return np.asarray(fn(x, key), dtype=np.float64)

    def fc(self, x, key=None) -> np.ndarray:
        """Simulated FC ``(n, n)`` at ``x`` (after dropping ``skip`` frames)."""
        return np.corrcoef(self.simulate(x, key)[self.skip:].T)

    def fc_r(self, x, key=None) -> float:
        """Pearson r between the upper triangles of simulated and empirical FC at ``x``."""
        iu = np.triu_indices(self.target.shape[0], 1)
        return float(np.corrcoef(self.fc(x, key)[iu], self.target[iu])[0, 1])
