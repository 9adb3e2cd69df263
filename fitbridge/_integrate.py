"""The time loop: coupling with optional delays, stochastic Heun / Euler-Maruyama, noise, checkpoints.

Everything here is pure and traceable. Shapes: state ``(n_svar, n)``; the delay ring buffer
``(L, n)`` holds the coupled variable, ``buf[pos]`` being the current value.

Time is organised as ``groups`` of ``samples`` of ``steps``:
- a *sample* is ``steps_per_sample`` integration steps whose observed signal is averaged
  (a decimated trace, or the 4 ms BOLD stock);
- a *group* is a checkpointed block of samples (``jax.checkpoint``): reverse mode stores one
  carry per group and recomputes inside, so memory grows like ``sqrt(steps)`` when the group
  size is ``~sqrt(samples)``;
- standard normal noise for a whole group is drawn at once from ``fold_in(key, group)``,
  inside the scan: no ``(steps, nodes)`` noise array ever exists.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Delays", "make_delays", "coupling", "heun_step", "euler_step", "run_blocks"]


class Delays(NamedTuple):
    """Per-edge delays in steps: integer part ``k0`` (n, n) and fraction ``frac`` (n, n)."""

    k0: jax.Array
    frac: jax.Array
    length: int  # ring buffer length (static)


def make_delays(lengths, speed, dt: float, length: int, mode: str) -> Delays:
    """Delays ``lengths / speed / dt`` in steps. ``mode="linear"`` interpolates between the two
    neighbouring steps (differentiable in ``speed``); ``"nearest"`` rounds like TVB (``rint``)."""
    steps = lengths / speed / dt
    if mode == "nearest":
        k0 = jnp.rint(steps)
        frac = jnp.zeros_like(steps)
    else:
        k0 = jnp.floor(steps)
        frac = steps - k0
    k0 = jnp.clip(k0, 0, length - 2).astype(jnp.int32)
    return Delays(k0, frac, length)


def coupling(weights, state, buf, pos, delays: Delays | None, cvar: int):
    """``c_i = sum_j W[i, j] x_j(t - tau_ij)``; without delays one matrix-vector product."""
    if delays is None:
        return weights @ state[cvar]
    n = weights.shape[0]
    L = delays.length
    col = jnp.arange(n)[None, :]
    flat = buf.reshape(-1)
    newer = flat[((pos - delays.k0) % L) * n + col]
    older = flat[((pos - delays.k0 - 1) % L) * n + col]
    delayed = newer + delays.frac * (older - newer)
    return jnp.sum(weights * delayed, axis=1)


def _clamp(x, lo, hi):
    return x if lo is None else jnp.clip(x, lo, hi)


def heun_step(dfun, x, c, inc, dt, lo, hi):
    """TVB's stochastic Heun: the same increment in predictor and corrector, clamp after both."""
    d0 = dfun(x, c)
    pred = _clamp(x + dt * d0 + inc, lo, hi)
    d1 = dfun(pred, c)
    return _clamp(x + 0.5 * dt * (d0 + d1) + inc, lo, hi)


def euler_step(dfun, x, c, inc, dt, lo, hi):
    """Euler-Maruyama: ``x + dt f(x) + increment``, clamped."""
    return _clamp(x + dt * dfun(x, c) + inc, lo, hi)


STEPPERS = {"heun": heun_step, "euler": euler_step}


class Loop(NamedTuple):
    """Static description of one stretch of the time loop."""

    n_samples: int
    steps_per_sample: int
    group: int  # samples per checkpointed group
    record: bool


def auto_group(n_samples: int, steps_per_sample: int) -> int:
    """Samples per checkpoint group so that groups ~ steps per group ~ sqrt(total steps)."""
    total = max(n_samples * steps_per_sample, 1)
    return max(1, min(n_samples, round(math.sqrt(total) / steps_per_sample)))


def run_blocks(step, observe, carry, loop: Loop, noise, step_offset: int):
    """Run ``loop.n_samples`` samples; return ``(carry, samples)`` (samples ``None`` if not recording).

    ``step(carry, inc) -> (carry, obs_source)``; ``observe(obs_source)`` gives the signal to
    average; ``noise(start_step, n_steps) -> (n_steps, n_svar, n)`` increments.
    """
    sps = loop.steps_per_sample

    def one_sample(carry, incs):
        def inner(state, inc):
            carry, acc = state
            carry, src = step(carry, inc)
            if loop.record:
                acc = acc + observe(src)
            return (carry, acc), None

        acc0 = jnp.zeros_like(observe(carry.source)) if loop.record else 0.0
        (carry, acc), _ = jax.lax.scan(inner, (carry, acc0), incs)
        return carry, (acc / sps if loop.record else None)

    def one_group(carry, g, size):
        start = step_offset + g * loop.group * sps
        incs = noise(start, size * sps)
        incs = incs.reshape((size, sps) + incs.shape[1:])
        return jax.lax.scan(one_sample, carry, incs)

    n_groups, rem = divmod(loop.n_samples, loop.group)
    outs = []
    if n_groups:
        body = jax.checkpoint(lambda c, g: one_group(c, g, loop.group), prevent_cse=False)
        carry, out = jax.lax.scan(body, carry, jnp.arange(n_groups))
        if loop.record:
            outs.append(out.reshape((-1,) + out.shape[2:]))
    if rem:
        carry, out = jax.checkpoint(lambda c: one_group(c, n_groups, rem), prevent_cse=False)(carry)
        if loop.record:
            outs.append(out)
    if not loop.record:
        return carry, None
    return carry, outs[0] if len(outs) == 1 else jnp.concatenate(outs)
