"""`Simulation`: a network, a time grid, noise and a BOLD model, as one pure function.

``sim.forward(params, key)`` runs transient + recording in ONE traced call (no two-pass
setup) and returns BOLD frames (or a decimated trace without BOLD). ``params`` is the
pytree returned by ``sim.params`` (model, speed, sigma, bold), so any of its leaves can be
optimised, vmapped or differentiated. ``simulate(sim, ...)`` is the jitted NumPy
convenience wrapper.

Dtypes: the simulation runs in the dtype of its parameters; ``simulate`` and the problem
objects trace and call it under the scoped ``jax.enable_x64(True)`` so results are float64
without changing the global JAX configuration.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._bold import HRF, BalloonWindkessel, GammaHRF
from ._errors import fail
from ._integrate import STEPPERS, Loop, auto_group, coupling, make_delays, run_blocks
from ._network import Network
from ._pytree import pytree_dataclass

__all__ = ["AdditiveNoise", "Simulation", "SimulationResult", "simulate"]

_BOLD_TYPES = (HRF, GammaHRF, BalloonWindkessel)


@pytree_dataclass
class AdditiveNoise:
    """Additive white noise: each step adds ``sigma * sqrt(dt) * z`` (z ~ N(0, 1)) to the
    model's noisy state variables, identically in the Heun predictor and corrector.

    ``sigma`` is in state units per sqrt(ms); TVB's ``nsig`` equals ``sigma**2 / 2``.
    It may be a scalar or regional ``(n,)``.
    """

    sigma: float = 0.00283


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1, k2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), the hash behind ``jax.random``.

    Written out round by round so that XLA fuses the whole hash into one vectorised loop.
    ``jax.random`` lowers the same hash on CPU as a rolled 5-iteration ``while`` loop (to keep
    compile times short): one kernel per iteration, each reading and writing every counter
    from memory, with shift amounts read from a table. Inside the scan, where each group's
    noise is drawn, the hash alone measured ~6x slower that way (21 vs 3.3 ns per number) and
    a whole normal 1.3-2.6x slower (the float32 ``erf_inv``, ~7 ns, then dominates)."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1 = x1 + ks[0]
    x2 = x2 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
            x2 = x1 ^ x2
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _fast_normals_ok(key) -> bool:
    """Whether :func:`_threefry_normal_f32` reproduces ``jax.random.normal(key, ., float32)``."""
    return (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            and str(jax.random.key_impl(key)) == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def _threefry_normal_f32(key, shape):
    """Bit-for-bit ``jax.random.normal(key, shape, float32)`` for a threefry key (partitionable
    mode, jax's default): the same counters, hash, mantissa trick and ``erf_inv``."""
    data = jax.random.key_data(key)
    lo = jax.lax.iota(np.uint32, int(np.prod(shape))).reshape(shape)
    b1, b2 = _threefry2x32(data[..., 0], data[..., 1], jnp.zeros(shape, np.uint32), lo)
    mantissa = ((b1 ^ b2) >> np.uint32(9)) | np.uint32(0x3F800000)
    u01 = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)
    lo_v = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = jnp.maximum(lo_v, u01 * (np.float32(1.0) - lo_v) + lo_v)
    return np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(u)


def _normals(key, shape, dtype):
    """Standard normals for the noise, equal to ``jax.random.normal(key, shape, float32)`` cast
    to ``dtype``.

    Float32 (24-bit resolution) halves the cost and changes nothing measurable in an SDE whose
    increments are ``sigma sqrt(dt) z``. For threefry keys the numbers come from
    :func:`_threefry_normal_f32` (the same bits, computed in one fused kernel)."""
    if _fast_normals_ok(key):
        return _threefry_normal_f32(key, shape).astype(dtype)
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


class Carry(NamedTuple):
    x: jax.Array  # (n_svar, n)
    buf: jax.Array  # (L, n) delay ring buffer of the coupled variable, or (1, n) unused
    pos: jax.Array  # int32 index of the current value in buf
    c: jax.Array  # (n,) coupling of the last step (for rate observations)

    @property
    def source(self):
        return (self.x, self.c)


class SimulationResult(NamedTuple):
    """NumPy output of :func:`simulate`: ``data`` is BOLD ``(frames, n)`` or a trace
    ``(samples, n_svar, n)``; ``time`` in ms; ``final_state`` ``(n_svar, n)``."""

    data: np.ndarray
    time: np.ndarray
    final_state: np.ndarray


def _positive(where, value, fix):
    if not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value) or value <= 0:
        fail(where, "a finite number > 0", repr(value), fix)


def _multiple(where, value, of, what):
    ratio = value / of
    if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
        fail(where, f"a multiple of {what} = {of:g} ms", f"{value:g} ms", f"choose a value divisible by {of:g}")
    return round(ratio)


@dataclasses.dataclass(frozen=True, eq=False)
class Simulation:
    """Time grid, noise, observation and seed around a :class:`~fitbridge.Network`.

    Parameters
    ----------
    network : the model on its connectome.
    dt : integration step in ms.
    duration : total simulated time in ms, transient included.
    transient : ms simulated first and discarded (in the same call).
    noise : :class:`AdditiveNoise` or ``None`` (deterministic).
    bold : :class:`~fitbridge.bold.HRF`, :class:`~fitbridge.bold.GammaHRF`,
        :class:`~fitbridge.bold.BalloonWindkessel` or ``None`` (return decimated traces).
    method : ``"heun"`` (stochastic Heun, TVB scheme) or ``"euler"`` (Euler-Maruyama).
    seed : seed of the default noise key.
    initial_state : ``(n_svar,)`` or ``(n_svar, n)``; also the constant delay history.
        Defaults to the model's ``default_initial``.
    record_period : without BOLD, average the trace over this many ms (default ``dt``: every
        step). This is the decimation option: memory ``duration / record_period``.
    delay_mode : ``"linear"`` (interpolated, differentiable in speed) or ``"nearest"`` (TVB).
    min_speed : slowest speed the delay buffer must hold (set by problems that free ``speed``).
    checkpoint : samples per checkpointed block, or ``"auto"`` (``~sqrt(steps)``).
    """

    network: Network
    dt: float = 1.0
    duration: float = 60_000.0
    transient: float = 0.0
    noise: AdditiveNoise | None = None
    bold: Any = None
    method: str = "heun"
    seed: int = 0
    initial_state: Any = None
    record_period: float | None = None
    delay_mode: str = "linear"
    min_speed: float | None = None
    checkpoint: int | str = "auto"

    def __post_init__(self):
        if not isinstance(self.network, Network):
            fail("Simulation.network", "a fitbridge.Network", type(self.network).__name__,
                 "build one with fb.Network(model, weights)")
        _positive("Simulation.dt", self.dt, "use a step such as dt=0.1 (ms)")
        _positive("Simulation.duration", self.duration, "give the simulated time in ms")
        if not np.isfinite(self.transient) or self.transient < 0:
            fail("Simulation.transient", "a time >= 0 in ms", self.transient, "use transient=0 for none")
        if self.method not in STEPPERS:
            fail("Simulation.method", f"one of {sorted(STEPPERS)}", repr(self.method), "use 'heun'")
        if self.delay_mode not in ("linear", "nearest"):
            fail("Simulation.delay_mode", "'linear' or 'nearest'", repr(self.delay_mode), "use 'linear'")
        if self.noise is not None and not isinstance(self.noise, AdditiveNoise):
            fail("Simulation.noise", "AdditiveNoise(sigma) or None", type(self.noise).__name__,
                 "pass noise=fb.AdditiveNoise(sigma=0.00283)")
        if self.bold is not None and not isinstance(self.bold, _BOLD_TYPES):
            fail("Simulation.bold", "HRF, GammaHRF, BalloonWindkessel or None", type(self.bold).__name__,
                 "pass bold=fb.bold.HRF(tr=720.0)")
        if self.checkpoint != "auto" and (not isinstance(self.checkpoint, int) or self.checkpoint < 1):
            fail("Simulation.checkpoint", "'auto' or a positive int", repr(self.checkpoint), "use 'auto'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            fail("Simulation.seed", "an int", repr(self.seed), "pass seed=0")
        self._check_noise_and_bold()
        _multiple("Simulation.transient", self.transient, self.dt, "dt")
        self._check_initial_state()
        self.plan  # validates the time grid eagerly

    def _check_noise_and_bold(self):
        if self.noise is not None and not isinstance(self.noise.sigma, jax.core.Tracer):
            try:
                sigma = np.asarray(self.noise.sigma, dtype=np.float64)
            except (TypeError, ValueError):
                sigma = np.asarray(np.nan)
            if sigma.shape not in ((), (self.network.n_nodes,)) or not np.all(np.isfinite(sigma)) \
                    or np.any(sigma < 0):
                fail("AdditiveNoise.sigma", f"a finite number >= 0 or ({self.network.n_nodes},) of them",
                     repr(self.noise.sigma), "pass e.g. AdditiveNoise(sigma=0.00283)")
        if self.bold is not None:
            name = type(self.bold).__name__
            _positive(f"{name}.tr", self.bold.tr, "give the repetition time in ms, e.g. tr=720.0")
            _positive(f"{name}.period", self.bold.period, "use the default period=4.0 (ms)")
        if self.record_period is not None:
            _positive("Simulation.record_period", self.record_period, "pass e.g. record_period=10.0 (ms)")

    def _check_initial_state(self):
        if self.initial_state is None:
            return
        model = self.network.model
        n_svar, n = len(model.state_names), self.network.n_nodes
        shape = np.shape(self.initial_state)
        if shape not in ((n_svar,), (n_svar, n)) or not np.all(np.isfinite(self.initial_state)):
            fail("Simulation.initial_state", f"finite values of shape ({n_svar},) or ({n_svar}, {n}) "
                 f"for state {model.state_names}", f"shape {shape}", "give one value per state variable")

    def replace(self, **changes) -> "Simulation":
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- static plan
    @property
    def plan(self) -> dict:
        """Static integers of the time grid (steps, samples, frames); validated."""
        dt, bold = self.dt, self.bold
        n_transient = round(self.transient / dt)
        recorded = self.duration - self.transient
        if bold is None:
            period = self.record_period if self.record_period is not None else dt
            sps = _multiple("Simulation.record_period", period, dt, "dt")
            n_samples = int(recorded // period + 1e-9)
            if n_samples < 1:
                fail("Simulation.duration", f"more than transient + one record period ({self.transient + period:g} ms)",
                     f"{self.duration:g} ms", "lengthen duration or shorten the transient")
            return dict(n_pre=n_transient, n_hist=0, sps=sps, n_samples=n_samples, newest0=0, n_frames=0,
                        period=period)
        sps = _multiple(f"{type(bold).__name__}.period", bold.period, dt, "dt")
        stride = _multiple(f"{type(bold).__name__}.tr", bold.tr, bold.period, "the BOLD averaging period")
        n_frames = int(recorded // bold.tr + 1e-9)
        if n_frames < 3:
            fail("Simulation.duration", f">= transient + 3 TR = {self.transient + 3 * bold.tr:g} ms "
                 "(one BOLD window of at least 3 frames)", f"{self.duration:g} ms",
                 "lengthen duration, shorten the transient or the TR")
        history = getattr(bold, "length", 20_000.0)
        n_hist = min(int(history // bold.period), int(self.transient // bold.period))
        n_pre = n_transient - n_hist * sps
        return dict(n_pre=n_pre, n_hist=n_hist, sps=sps, n_samples=n_hist + n_frames * stride,
                    newest0=n_hist + stride - 1, n_frames=n_frames, period=bold.period)

    # ---------------------------------------------------------------- parameters
    @property
    def params(self) -> dict:
        """The differentiable parameter pytree: ``{"model", "sigma", "speed", "bold"}``."""
        sigma = self.noise.sigma if self.noise is not None else 0.0
        return {"model": self.network.model, "sigma": sigma, "speed": self.network.speed, "bold": self.bold}

    def parameter_names(self) -> dict[str, bool]:
        """Names that can be set or freed, mapped to whether a regional ``(n,)`` value is allowed."""
        names = {name: True for name in self.network.model.field_names}
        if self.noise is not None:
            names["sigma"] = True
        if self.network.has_delays:
            names["speed"] = False
        if self.bold is not None:
            names.update({f"bold.{f}": False for f in self.bold.field_names})
        return names

    def with_values(self, params: dict, values: dict) -> dict:
        """Return ``params`` with named values (``"G"``, ``"speed"``, ``"bold.tau_s"`` ...) replaced.

        Pure and traceable: used by problems to insert free parameters.
        """
        model_changes = {k: v for k, v in values.items() if k in params["model"].field_names}
        bold_changes = {k[5:]: v for k, v in values.items() if k.startswith("bold.")}
        out = dict(params)
        if model_changes:
            out["model"] = params["model"].replace(**model_changes)
        if bold_changes:
            out["bold"] = params["bold"].replace(**bold_changes)
        for k in ("sigma", "speed"):
            if k in values:
                out[k] = values[k]
        return out

    def key(self):
        return jax.random.key(self.seed)

    # ---------------------------------------------------------------- the pure function
    def forward(self, params: dict, key=None, increments=None):
        """Simulate and observe: returns ``(data, final_state)``, traceable and differentiable.

        ``increments`` (tests only): ``(total_steps, n_svar, n)`` noise increments replacing the
        generated ones, to replay an external realisation exactly.
        """
        plan, model = self.plan, params["model"]
        dtype = jnp.result_type(float)
        weights = self._weights(model, dtype)
        delays, L = self._delays(params["speed"], dtype)
        carry = self._carry0(model, weights, L, dtype)
        step = self._stepper(model, weights, delays, L)
        noise = self._noise(params, key, increments, dtype)
        carry, _ = run_blocks(step, None, carry, Loop(plan["n_pre"], 1, self._group(plan["n_pre"], 1), False),
                              noise, 0)
        observe = self._observer(model)
        rec = Loop(plan["n_samples"], plan["sps"], self._group(plan["n_samples"], plan["sps"]), True)
        bold = params["bold"]
        if hasattr(bold, "block_frames"):  # convolution BOLD: reduced group by group, no stock array
            frames = bold.block_frames(plan["newest0"], plan["n_frames"], rec.group, dtype)
            carry, out = run_blocks(step, observe, carry, rec, noise, plan["n_pre"], reduce=frames)
            return out, carry.x
        carry, samples = run_blocks(step, observe, carry, rec, noise, plan["n_pre"])
        if self.bold is None:
            return samples, carry.x
        return bold.frames(samples, plan["newest0"], plan["n_frames"]), carry.x

    def _weights(self, model, dtype):
        """The coupling weights: ``(n, n)``, or the model's ``effective_weights`` (per-edge
        parameters, computed once per call so gradients reach them)."""
        weights = jnp.asarray(self.network.weights, dtype)
        if hasattr(model, "effective_weights"):
            weights = model.effective_weights(weights)
        return weights

    def _delays(self, speed, dtype):
        """``(Delays or None, ring buffer length)`` of the network at conduction ``speed``."""
        net = self.network
        if not net.has_delays:
            return None, 1
        L = self._buffer_length()
        return make_delays(jnp.asarray(net.lengths, dtype), speed, self.dt, L, self.delay_mode), L

    def _carry0(self, model, weights, L: int, dtype) -> "Carry":
        """The starting carry: initial state, a constant delay history, zero coupling."""
        x0 = self._initial(dtype)
        buf0 = jnp.broadcast_to(x0[model.coupling_var], (L, self.network.n_nodes)).astype(dtype)
        return Carry(x0, buf0, jnp.zeros((), jnp.int32), jnp.zeros(weights.shape[:-1], dtype))

    def _initial(self, dtype):
        model = self.network.model
        init = self.initial_state if self.initial_state is not None else model.default_initial
        init = jnp.asarray(init, dtype)
        if init.ndim == 1:
            init = init[:, None]
        return jnp.broadcast_to(init, (len(model.state_names), self.network.n_nodes))

    def _buffer_length(self) -> int:
        slowest = self.min_speed if self.min_speed is not None else self.network.speed
        return int(np.ceil(np.max(self.network.lengths) / slowest / self.dt)) + 2

    def _group(self, n_samples: int, sps: int) -> int:
        if n_samples == 0:
            return 1
        return auto_group(n_samples, sps) if self.checkpoint == "auto" else min(self.checkpoint, n_samples)

    def _stepper(self, model, weights, delays, L):
        bounds = model.state_bounds
        lo = jnp.asarray([b[0] if b else -jnp.inf for b in bounds])[:, None]
        hi = jnp.asarray([b[1] if b else jnp.inf for b in bounds])[:, None]
        if all(b is None for b in bounds):
            lo = hi = None
        integrator, dt, cvar = STEPPERS[self.method], self.dt, model.coupling_var

        def step(carry: Carry, inc):
            c = coupling(weights, carry.x, carry.buf, carry.pos, delays, cvar)
            x = integrator(model.dfun, carry.x, c, inc, dt, lo, hi)
            if delays is None:
                return Carry(x, carry.buf, carry.pos, c), (x, c)
            pos = (carry.pos + 1) % L
            buf = jax.lax.dynamic_update_index_in_dim(carry.buf, x[cvar], pos, 0)
            return Carry(x, buf, pos, c), (x, c)

        return step

    def _noise(self, params, key, increments, dtype):
        model, n = self.network.model, self.network.n_nodes
        n_svar = len(model.state_names)
        if increments is not None:
            increments = jnp.asarray(increments, dtype)
            return lambda start, size: jax.lax.dynamic_slice_in_dim(increments, start, size)
        if self.noise is None:
            return lambda start, size: None
        mask = np.zeros((n_svar, 1))
        mask[list(model.noise_vars)] = 1.0
        scale = jnp.asarray(mask, dtype) * params["sigma"] * np.sqrt(self.dt)
        key = self.key() if key is None else key
        scale = jnp.broadcast_to(scale, (n_svar, n))[None]
        return lambda start, size: scale * _normals(jax.random.fold_in(key, start), (size, n_svar, n), dtype)

    def _observer(self, model):
        if self.bold is None:
            return lambda src: src[0]
        if self.bold.input == "rate":
            return lambda src: model.rate(src[0], src[1])
        return lambda src: src[0][0]

    @functools.cached_property
    def _jitted_forward(self):
        return jax.jit(lambda p, k, v: self.forward(self.with_values(p, v), k))

    def times(self) -> np.ndarray:
        """Times (ms) of the returned frames or samples."""
        plan = self.plan
        if self.bold is None:
            return self.transient + plan["period"] * np.arange(1, plan["n_samples"] + 1)
        return self.transient + self.bold.tr * np.arange(1, plan["n_frames"] + 1)


def _check_values(sim: Simulation, values: dict) -> None:
    """Named values are finite numbers of an allowed shape (checked before anything compiles)."""
    n, regional = sim.network.n_nodes, sim.parameter_names()
    edges = getattr(sim.network.model, "edge_fields", ())
    for name, value in values.items():
        try:
            v = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            fail(f"simulate({name}=...)", "a number or an array of numbers", repr(value), "pass e.g. 0.3")
        shapes = [()] + ([(n,)] if regional[name] else []) + ([(n, n)] if name in edges else [])
        if v.shape not in shapes or not np.all(np.isfinite(v)):
            fail(f"simulate({name}=...)", f"finite values of shape {' or '.join(map(str, shapes))}",
                 f"shape {v.shape}" if v.shape not in shapes else "non-finite values",
                 "give one number, or one per region of the network")


def simulate(sim: Simulation, key=None, **values) -> SimulationResult:
    """Run ``sim`` (optionally with named values, e.g. ``G=0.3``) and return NumPy arrays (float64).

    Examples
    --------
    >>> import numpy as np, fitbridge as fb
    >>> net = fb.Network(fb.models.ReducedWongWang(), np.ones((4, 4)) - np.eye(4))
    >>> sim = fb.Simulation(net, dt=1.0, duration=100.0, record_period=10.0)
    >>> out = fb.simulate(sim, G=0.2)
    >>> out.data.shape
    (10, 1, 4)
    """
    unknown = set(values) - set(sim.parameter_names())
    if unknown:
        fail("simulate", f"parameter names among {sorted(sim.parameter_names())}", sorted(unknown),
             "check the spelling, or add noise/delays/BOLD to the simulation first")
    _check_values(sim, values)
    with jax.enable_x64(True):
        key = sim.key() if key is None else key
        vals = {k: jnp.asarray(v, jnp.float64) for k, v in values.items()}
        params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
        data, final = sim._jitted_forward(params, key, vals)
        return SimulationResult(np.asarray(data), sim.times(), np.asarray(final))
