"""Functional connectivity, FCD and losses. Pure JAX; every loss is ``(sim, target) -> scalar``.

- :func:`fc`: Pearson correlation between regions of a BOLD array ``(frames, n)`` after
  dropping the first ``skip`` frames. A region with zero variance (e.g. activity saturated
  at S = 1) gives NaN entries, which the problem objects turn into a penalty.
- Losses compare the upper triangles (``k=1``): :func:`one_minus_corr`, :func:`rmse`, with an
  optional Fisher z transform; :func:`ks_fcd` is the Kolmogorov-Smirnov distance between two
  FCD value distributions; :func:`combine` builds weighted sums.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from ._errors import fail

__all__ = ["fc", "fcd", "upper", "corr", "fisher_z", "one_minus_corr", "rmse", "ks_distance",
           "ks_fcd", "combine", "LOSSES", "get_loss"]


def fc(bold, skip: int = 0):
    """Functional connectivity ``(n, n)`` of ``bold`` ``(frames, n)`` without the first ``skip`` frames."""
    x = bold[skip:]
    x = x - jnp.mean(x, axis=0, keepdims=True)
    cov = x.T @ x
    sd = jnp.sqrt(jnp.diagonal(cov))
    return cov / (sd[:, None] * sd[None, :])


def upper(mat, k: int = 1):
    """Upper-triangle entries (above the diagonal by ``k``) as a vector."""
    mat = jnp.asarray(mat)
    i, j = np.triu_indices(mat.shape[-1], k=k)
    return mat[..., i, j]


def corr(a, b):
    """Pearson correlation of two vectors."""
    a = a - jnp.mean(a)
    b = b - jnp.mean(b)
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


def fisher_z(r, clip: float = 1.0 - 1e-7):
    """``arctanh`` of correlations, clipped away from +-1."""
    return jnp.arctanh(jnp.clip(r, -clip, clip))


def one_minus_corr(sim_fc, target_fc, fisher: bool = False):
    """``1 - corr(triu(sim), triu(target))``: 0 for a perfect pattern match, up to 2."""
    a, b = upper(sim_fc), upper(target_fc)
    if fisher:
        a, b = fisher_z(a), fisher_z(b)
    return 1.0 - corr(a, b)


def rmse(sim_fc, target_fc, fisher: bool = False):
    """Root mean squared difference of the upper triangles."""
    a, b = upper(sim_fc), upper(target_fc)
    if fisher:
        a, b = fisher_z(a), fisher_z(b)
    return jnp.sqrt(jnp.mean((a - b) ** 2))


def fcd(bold, window: int, step: int = 1, skip: int = 0):
    """Functional connectivity dynamics: correlation matrix ``(n_win, n_win)`` between the
    upper triangles of sliding-window FCs (``window`` frames, moved by ``step``)."""
    x = bold[skip:]
    starts = range(0, x.shape[0] - window + 1, step)
    fcs = jnp.stack([upper(fc(x[s:s + window])) for s in starts])
    z = fcs - fcs.mean(axis=1, keepdims=True)
    z = z / jnp.sqrt(jnp.sum(z * z, axis=1, keepdims=True))
    return z @ z.T


def ks_distance(a, b):
    """Two-sample Kolmogorov-Smirnov statistic ``max |F_a - F_b|`` of two value sets."""
    a, b = jnp.sort(a.ravel()), jnp.sort(b.ravel())
    grid = jnp.concatenate([a, b])
    fa = jnp.searchsorted(a, grid, side="right").astype(a.dtype) / a.size
    fb = jnp.searchsorted(b, grid, side="right").astype(b.dtype) / b.size
    return jnp.max(jnp.abs(fa - fb))


def ks_fcd(sim_fcd, target_fcd):
    """KS distance between the upper-triangle value distributions of two FCD matrices."""
    return ks_distance(upper(sim_fcd), upper(target_fcd))


def combine(*terms: tuple[float, Callable]) -> Callable:
    """Weighted sum of losses: ``combine((1.0, one_minus_corr), (0.5, rmse))``."""
    for term in terms:
        if not (isinstance(term, tuple) and len(term) == 2 and callable(term[1])):
            fail("losses.combine", "(weight, loss_fn) pairs", repr(term), "pass e.g. (1.0, fb.losses.rmse)")

    def loss(sim, target):
        return sum(w * f(sim, target) for w, f in terms)

    return loss


LOSSES: dict[str, Callable] = {"1-corr": one_minus_corr, "rmse": rmse}


def get_loss(loss: str | Callable) -> Callable:
    """Resolve a loss name (``"1-corr"``, ``"rmse"``) or pass a callable through."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        fail("loss", f"one of {sorted(LOSSES)} or a callable (sim_fc, target_fc) -> scalar", repr(loss),
             "use loss='1-corr'")
    return LOSSES[loss]
