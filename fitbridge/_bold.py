"""BOLD observation models, applied to a decimated neural signal (the "stock").

The simulation averages the monitored signal over ``period`` ms (4 ms, as TVB's Bold
monitor) and hands the resulting stock ``(n_samples, n_nodes)`` to a BOLD model together
with the index of the newest stock sample of the first frame; frames follow every
``tr / period`` samples. Kernel times are in seconds, TR and periods in ms.

- :class:`HRF`: convolution with TVB's first-order Volterra kernel,
  ``G(t) = 1/3 exp(-t/(2 tau_s)) sin(w t)/w``, ``w = sqrt(1/tau_f - 1/(4 tau_s**2))``,
  ``bold = k1*V0*(sum_j G(t_j) x(T - t_j) - 1)`` (TVB's scale, no ``dt`` factor).
  TVB's own monitor weights the newest sample by ``G(t_max)`` and lags the rest by one
  sample (a roll off-by-one); here lag ``j`` gets ``G(j*period)``. FC is unaffected by the
  affine scale.
- :class:`GammaHRF`: TVB's Gamma kernel ``(t/tau)**(n-1) exp(-t/tau) / (tau (n-1)!)``.
- :class:`BalloonWindkessel`: the Friston (2000, 2003) hemodynamic ODE in seconds, integrated
  with explicit Euler on the stock, driven by the firing rate in Hz.

The convolution models also provide :meth:`~_Convolved.block_frames` (:class:`BlockFrames`):
the same frames computed from the stock block by block, which the simulation uses so that
the stock never exists as one array (under ``vmap`` the whole-stock convolution was half the
cost of a batched simulation: a transposing copy of the stock and a batched matrix product).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import pytree_dataclass, static

__all__ = ["HRF", "GammaHRF", "BalloonWindkessel", "strided_convolution"]


def strided_convolution(stock, kernel, newest0: int, stride: int, n_frames: int):
    """``out[k] = sum_j kernel[j] * stock[newest0 + k*stride - j]`` (zeros before the start).

    Computed as one matrix product over blocks of ``stride`` samples plus a diagonal sum,
    so the cost is that of the direct sum with no ``(frames, taps, nodes)`` intermediate.
    """
    n_taps = kernel.shape[0]
    m = -(-n_taps // stride)
    k_pad = m * stride
    reversed_kernel = jnp.pad(kernel, (0, k_pad - n_taps))[::-1].reshape(m, stride)
    offset = k_pad - 1 - newest0
    length = (n_frames + m - 1) * stride
    if offset >= 0:
        padded = jnp.concatenate([jnp.zeros((offset,) + stock.shape[1:], stock.dtype), stock])
    else:
        padded = stock[-offset:]
    padded = padded[:length]
    if padded.shape[0] < length:
        padded = jnp.pad(padded, ((0, length - padded.shape[0]), (0, 0)))
    blocks = padded.reshape(n_frames + m - 1, stride, stock.shape[1])
    partial = jnp.einsum("Bqn,bq->Bbn", blocks, reversed_kernel)
    frame = jnp.arange(n_frames)[:, None] + jnp.arange(m)[None, :]
    return partial[frame, jnp.arange(m)[None, :]].sum(axis=1)


class BlockFrames:
    """The strided convolution of :func:`strided_convolution`, fed block by block.

    A simulation that produces its stock in consecutive blocks (its checkpointed groups)
    calls :meth:`block` on each block as soon as it exists and :meth:`assemble` once at the
    end, so the whole ``(n_samples, ...)`` stock never exists: ``block`` returns the
    contribution of the block's samples to the ``rows`` frames that can see them (a
    ``(rows, block) @ (block, ...)`` product with weights gathered from the kernel), and
    ``assemble`` adds the contributions at their frames. The result equals
    ``strided_convolution`` up to the order of the sums (~1e-16 relative).

    ``block_size`` is the largest block; ``first`` (the stock index of a block's first
    sample) may be a traced integer inside a scan and negative (samples before the stock
    start are ignored).
    """

    def __init__(self, kernel, newest0: int, stride: int, n_frames: int, block_size: int, finish):
        self.kernel, self.newest0, self.stride, self.n_frames = kernel, newest0, stride, n_frames
        self.finish = finish
        self.rows = (block_size + kernel.shape[0] - 2) // stride + 2

    def first_frame(self, first, xp=jnp):
        """Index of the first frame a block starting at stock index ``first`` contributes to."""
        return xp.clip(-((self.newest0 - first) // self.stride), 0, self.n_frames - 1)

    def block(self, samples, first):
        """Contribution ``(rows, *samples.shape[1:])`` of ``samples`` (stock ``first, first+1, ...``)."""
        n_taps = self.kernel.shape[0]
        k = self.first_frame(first) + jnp.arange(self.rows)
        t = first + jnp.arange(samples.shape[0])
        lag = self.newest0 + k[:, None] * self.stride - t[None, :]
        inside = (lag >= 0) & (lag < n_taps) & (t[None, :] >= 0)
        weights = jnp.where(inside, self.kernel[jnp.clip(lag, 0, n_taps - 1)], 0.0).astype(samples.dtype)
        return jnp.tensordot(weights, samples, axes=1)

    def assemble(self, contributions, firsts):
        """Frames from stacked block contributions ``(n_blocks, rows, ...)`` and the blocks' static
        first indices."""
        rows = self.first_frame(np.asarray(firsts), xp=np)[:, None] + np.arange(self.rows)[None, :]
        shape = (self.n_frames + self.rows,) + contributions.shape[2:]
        out = jnp.zeros(shape, contributions.dtype).at[rows.reshape(-1)].add(
            contributions.reshape((-1,) + contributions.shape[2:]))
        return self.finish(out[: self.n_frames])


class _Convolved:
    def frames(self, stock, newest0: int, n_frames: int):
        stride = round(self.tr / self.period)
        out = strided_convolution(stock, self.kernel(stock.dtype), newest0, stride, n_frames)
        return self.finish(out)

    def block_frames(self, newest0: int, n_frames: int, block_size: int, dtype=jnp.float64) -> BlockFrames:
        """The same frames from a stock fed in blocks of at most ``block_size`` (see :class:`BlockFrames`)."""
        return BlockFrames(self.kernel(dtype), newest0, round(self.tr / self.period), n_frames, block_size,
                           self.finish)


@pytree_dataclass
class HRF(_Convolved):
    """BOLD by convolution with TVB's first-order Volterra kernel (Friston et al. 2000).

    Parameters
    ----------
    tr : repetition time in ms (a multiple of ``period``).
    length : kernel length in ms (20 s).
    period : averaging period of the neural signal in ms (4 ms).
    input : ``"state"`` (the model's first state variable, as TVB) or ``"rate"``.
    tau_s, tau_f : s, signal decay and autoregulation time constants.
    k1, V0 : scale of the BOLD signal.
    """

    tr: float = static(720.0)
    length: float = static(20_000.0)
    period: float = static(4.0)
    input: str = static("state")
    tau_s: float = 0.8
    tau_f: float = 0.4
    k1: float = 5.6
    V0: float = 0.02

    def kernel(self, dtype=jnp.float64):
        t = jnp.arange(round(self.length / self.period), dtype=dtype) * (self.period / 1000.0)
        w = jnp.sqrt(1.0 / self.tau_f - 1.0 / (4.0 * self.tau_s**2))
        return (1.0 / 3.0) * jnp.exp(-0.5 * t / self.tau_s) * jnp.sin(w * t) / w

    def finish(self, conv):
        return self.k1 * self.V0 * (conv - 1.0)


@pytree_dataclass
class GammaHRF(_Convolved):
    """BOLD by convolution with TVB's Gamma kernel ``(t/tau)**(n-1) exp(-t/tau) / (tau (n-1)!)``.

    ``tau`` in s (1.08), ``n`` the (static, integer) shape (3). Output is the plain convolution.
    """

    tr: float = static(720.0)
    length: float = static(20_000.0)
    period: float = static(4.0)
    input: str = static("state")
    n: int = static(3)
    tau: float = 1.08

    def kernel(self, dtype=jnp.float64):
        t = jnp.arange(round(self.length / self.period), dtype=dtype) * (self.period / 1000.0)
        return (t / self.tau) ** (self.n - 1) * jnp.exp(-t / self.tau) / (self.tau * math.factorial(self.n - 1))

    def finish(self, conv):
        return conv


@pytree_dataclass
class BalloonWindkessel:
    """Balloon-Windkessel hemodynamics (Friston et al. 2000; Stephan et al. 2007 constants).

    In seconds: ``ds = r - s/tau_s - (f - 1)/tau_f``, ``df = s``, ``dv = (f - v**(1/alpha))/tau_o``,
    ``dq = (f (1 - (1 - E0)**(1/f))/E0 - v**(1/alpha - 1) q)/tau_o``, from rest ``s=0, f=v=q=1``;
    ``BOLD = V0 (k1 (1 - q) + k2 (1 - q/v) + k3 (1 - v))`` with ``k1 = 4.3*40.3*E0*TE``,
    ``k2 = 25*E0*TE``, ``k3 = 1``. The input ``r`` is the model's rate in Hz times ``input_scale``.
    ``f`` and ``v`` are kept above ``1e-6`` so the powers stay finite.
    """

    tr: float = static(720.0)
    period: float = static(4.0)
    input: str = static("rate")
    tau_s: float = 0.65
    tau_f: float = 0.41
    tau_o: float = 0.98
    alpha: float = 0.32
    E0: float = 0.4
    V0: float = 0.04
    TE: float = 0.04
    k3: float = 1.0
    input_scale: float = 1.0

    def frames(self, stock, newest0: int, n_frames: int):
        dt = self.period / 1000.0
        k1 = 4.3 * 40.3 * self.E0 * self.TE
        k2 = 25.0 * self.E0 * self.TE
        one = jnp.ones(stock.shape[1:], stock.dtype)

        def step(carry, r):
            s, f, v, q = carry
            f_safe = jnp.maximum(f, 1e-6)
            v_safe = jnp.maximum(v, 1e-6)
            ds = self.input_scale * r - s / self.tau_s - (f - 1.0) / self.tau_f
            dv = (f - v_safe ** (1.0 / self.alpha)) / self.tau_o
            extraction = (1.0 - (1.0 - self.E0) ** (1.0 / f_safe)) / self.E0
            dq = (f * extraction - v_safe ** (1.0 / self.alpha - 1.0) * q) / self.tau_o
            new = (s + dt * ds, f + dt * s, v + dt * dv, q + dt * dq)
            v_new = jnp.maximum(new[2], 1e-6)
            bold = self.V0 * (k1 * (1.0 - new[3]) + k2 * (1.0 - new[3] / v_new) + self.k3 * (1.0 - v_new))
            return new, bold

        _, bold = jax.lax.scan(step, (0.0 * one, one, one, one), stock)
        stride = round(self.tr / self.period)
        return bold[newest0 + stride * jnp.arange(n_frames)]
