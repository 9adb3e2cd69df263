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
  inside the scan: no ``(steps, nodes)`` noise array ever exists;
- a BOLD convolution consumes each group's samples as soon as they exist
  (:class:`~fitbridge._bold.BlockFrames`), so no ``(samples, nodes)`` stock exists either.

Performance notes (XLA CPU, measured with ``benchmarks/bench_kernel.py`` and
``benchmarks/README.md``): a step is one coupling product and one fused elementwise kernel
(the whole Heun step). That kernel is a single dependency chain per vector (two vector-field
evaluations, one division each since :func:`~fitbridge.models.safe_h` merges the ``exp``
into the quotient) and is latency-bound (~13 ns per element in float64 at every size, 6x its
instruction throughput), so it costs the same per element at every batch size: batching over
parameter sets amortises only the per-step costs (loop and kernel dispatch, the
matrix-vector product becoming a matrix product, noise drawn once for a shared key). Every
HLO kernel of the loop body costs a dispatch per step (~0.1-0.3 us): a forward step has six
(two copies, the loop counter, the record's update, the product, the Heun kernel); the
reverse step is dominated by how many kernels XLA splits the backward Heun step into (no
multi-output fusion on CPU), which is why the clamps avoid ``jnp.clip``'s derivative
(:func:`clamp`) and ``safe_h`` returns its value and slope from one kernel.
Under ``vmap`` the coupling is written ``x @ W.T`` so that the product's batch axis stays
leading like the state's (``W @ x`` puts it last and every Heun kernel then reads the
coupling transposed).
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
    """``c_i = sum_j W[i, j] x_j(t - tau_ij)``; without delays one matrix-vector product.

    ``weights`` may also be ``(k, n, n)`` (a model's ``effective_weights``, e.g. the excitatory
    and inhibitory couplings of :class:`~fitbridge.models.WongWangEIB`): the result is ``(k, n)``."""
    if delays is None:
        if weights.ndim == 3:  # several weighted couplings of the same variable (k, n, n) -> (k, n)
            return jnp.einsum("kij,j->ki", weights, state[cvar])
        # ``x @ W.T`` rather than ``W @ x``: under ``vmap`` the batch axis of the product then
        # stays leading, like the state's, and the Heun fusion reads it without a transpose.
        return state[cvar] @ weights.T
    n = weights.shape[-1]
    L = delays.length
    col = jnp.arange(n)[None, :]
    flat = buf.reshape(-1)
    newer = flat[((pos - delays.k0) % L) * n + col]
    older = flat[((pos - delays.k0 - 1) % L) * n + col]
    delayed = newer + delays.frac * (older - newer)
    return jnp.sum(weights * delayed, axis=-1)  # (n,) or, for (k, n, n) weights, (k, n)


def clamp(x, lo, hi):
    """``clip(x, lo, hi)`` written with ``where``: the same values (NaN stays NaN), but a derivative
    without ``jnp.clip``'s tie-splitting division (``max``/``min`` give 1/2 at ``x == lo``), which
    XLA treats as an expensive shared value and materialises in separate kernels (four of the
    ~31 kernels of one backward Heun step). At an exact tie the derivative here is 1 (also a
    valid subgradient)."""
    return jnp.where(x < lo, lo, jnp.where(x > hi, hi, x))


def _clamp(x, lo, hi):
    return x if lo is None else clamp(x, lo, hi)


def _add(x, inc):
    return x if inc is None else x + inc


def heun_step(dfun, x, c, inc, dt, lo, hi):
    """TVB's stochastic Heun: the same increment in predictor and corrector, clamp after both.
    ``inc=None``: deterministic."""
    d0 = dfun(x, c)
    pred = _clamp(_add(x + dt * d0, inc), lo, hi)
    d1 = dfun(pred, c)
    return _clamp(_add(x + 0.5 * dt * (d0 + d1), inc), lo, hi)


def euler_step(dfun, x, c, inc, dt, lo, hi):
    """Euler-Maruyama: ``x + dt f(x) + increment``, clamped."""
    return _clamp(_add(x + dt * dfun(x, c), inc), lo, hi)


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


def run_blocks(step, observe, carry, loop: Loop, noise, step_offset: int, reduce=None):
    """Run ``loop.n_samples`` samples; return ``(carry, samples)`` (samples ``None`` if not recording).

    ``step(carry, inc) -> (carry, obs_source)``; ``observe(obs_source)`` gives the signal to
    average; ``noise(start_step, n_steps) -> (n_steps, n_svar, n)`` increments, or ``None``
    when there is no noise (the steps then take ``inc=None`` and scan over nothing).
    ``reduce`` (optional, e.g. :class:`~fitbridge._bold.BlockFrames`) consumes the samples
    group by group: ``reduce.block(samples, first_index)`` inside the group, and
    ``reduce.assemble(stacked, first_indices)`` at the end gives the returned ``samples``, so
    the full ``(n_samples, ...)`` record never exists.

    Layout of the loop, chosen from XLA CPU profiles (``benchmarks/bench_kernel.py``):

    - one ``scan`` per checkpointed group, over its steps, with no per-sample nesting unless a
      sample averages several steps;
    - when every step is a sample (``steps_per_sample == 1``: the 4 ms BOLD stock at
      ``dt = 4``), each iteration records the state it *starts* from and the samples are
      shifted by one at the end. Recording the state it ends with gives the step's result a
      second consumer (the output's ``dynamic-update-slice``); XLA then refuses to duplicate
      the ``exp`` and divisions into both and splits the Heun step into five kernels that
      spill to memory (measured ~1.4x slower per step). Averaged samples sum the starting
      states for the same reason, and ``scan(unroll=k)`` is slower (1.3-2x) because an
      unrolled body again records states produced inside it;
    - the transient records nothing and is a single flat scan per group;
    - each step is itself rematerialised in reverse mode (below).
    """
    sps = loop.steps_per_sample
    lagged = loop.record and sps == 1
    shift = 1 if lagged else 0  # index of a group's first recorded sample is g * group - shift

    # Each step is rematerialised too: the group's recomputation in reverse mode then stores one
    # carry per step instead of ~20 intermediates (each its own dynamic-update-slice kernel),
    # and the backward step recomputes its Heun stage in one fused kernel (measured 3-5% faster
    # reverse at B = 1, and less memory at large B). The coupling product is the exception: its
    # result (n values per step) is saved, so the backward step does not recompute it (the
    # product is ~n^2 work per step: reverse measured 7% faster at 84 nodes, 22% at 379, 13% at
    # 998).
    advance = jax.checkpoint(lambda carry, inc: step(carry, inc)[0], prevent_cse=False,
                             policy=jax.checkpoint_policies.dots_saveable)

    def one_group(carry, g, size):
        start = step_offset + g * loop.group * sps
        incs = noise(start, size * sps)
        if not loop.record:
            carry, _ = jax.lax.scan(lambda c, inc: (advance(c, inc), None), carry, incs, length=size * sps)
            return carry, None
        if lagged:
            carry, out = jax.lax.scan(lambda c, inc: (advance(c, inc), observe(c.source)), carry, incs,
                                      length=size)
        else:
            def one_sample(carry, incs):
                # sum the states each step starts from, minus the first, plus the last: the same
                # sum (in the same order) as adding each step's result, without a second use
                # of the step's result splitting its fusion
                def inner(state, inc):
                    carry, acc = state
                    return (advance(carry, inc), acc + observe(carry.source)), None

                acc0 = -observe(carry.source)
                (carry, acc), _ = jax.lax.scan(inner, (carry, acc0), incs, length=sps)
                return carry, (acc + observe(carry.source)) / sps

            if incs is not None:
                incs = incs.reshape((size, sps) + incs.shape[1:])
            carry, out = jax.lax.scan(one_sample, carry, incs, length=size)
        if reduce is not None:
            out = reduce.block(out, g * loop.group - shift)
        return carry, out

    n_groups, rem = divmod(loop.n_samples, loop.group)
    outs, firsts = [], []
    if n_groups:
        body = jax.checkpoint(lambda c, g: one_group(c, g, loop.group), prevent_cse=False)
        carry, out = jax.lax.scan(body, carry, jnp.arange(n_groups))
        if loop.record:
            outs.append(out if reduce is not None else out.reshape((-1,) + out.shape[2:]))
            firsts += [g * loop.group - shift for g in range(n_groups)]
    if rem:
        carry, out = jax.checkpoint(lambda c: one_group(c, n_groups, rem), prevent_cse=False)(carry)
        if loop.record:
            outs.append(out[None] if reduce is not None else out)
            firsts.append(n_groups * loop.group - shift)
    if not loop.record:
        return carry, None
    if lagged:  # the last sample is the final state, which no group recorded
        last = observe(carry.source)[None]
        if reduce is not None:
            outs.append(reduce.block(last, loop.n_samples - 1)[None])
            firsts.append(loop.n_samples - 1)
        else:
            outs.append(last)
    samples = outs[0] if len(outs) == 1 else jnp.concatenate(outs)
    if reduce is not None:
        return carry, reduce.assemble(samples, firsts)
    return carry, samples[1:] if lagged else samples
