"""A model on a structural connectome: weights, conduction delays, normalisation.

Weights are oriented ``W[target, source]``: the input of node ``i`` is
``c_i = sum_j W[i, j] * S_j(t - tau_ij)`` with ``tau_ij = lengths[i, j] / speed`` (ms, when
lengths are in mm and speed in mm/ms = m/s). ``speed=None`` means no delays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ._errors import fail

__all__ = ["Network", "normalize_weights"]


def normalize_weights(weights: np.ndarray, how: str | Callable | None) -> np.ndarray:
    """Normalise a connectome: ``"max"`` (divide by the largest weight), ``None``, or a callable."""
    if how is None or how == "none":
        return weights
    if how == "max":
        top = np.max(np.abs(weights))
        return weights / top if top > 0 else weights
    if callable(how):
        out = np.asarray(how(weights), dtype=np.float64)
        if out.shape != weights.shape or not np.all(np.isfinite(out)):
            fail("Network.normalize", "a callable returning a finite array of the weights' shape",
                 f"shape {out.shape}", "return an (n, n) finite matrix from your normalisation")
        return out
    fail("Network.normalize", "'max', None or a callable W -> W'", repr(how), "pass normalize='max'")


def _matrix(name: str, value, n: int | None = None) -> np.ndarray:
    if np.iscomplexobj(value):
        fail(f"Network.{name}", "a real-valued (n, n) matrix", "complex values",
             "pass np.real(...) or np.abs(...)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"Network.{name}", "a numeric (n, n) matrix", type(value).__name__, "pass a NumPy array")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.size == 0:
        fail(f"Network.{name}", "a square (n, n) matrix oriented [target, source]",
             f"shape {arr.shape}", "pass one subject's matrix, e.g. data.weights")
    if n is not None and arr.shape[0] != n:
        fail(f"Network.{name}", f"shape ({n}, {n}) like the weights", f"shape {arr.shape}",
             "use the lengths of the same parcellation as the weights")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        fail(f"Network.{name}", "finite values", f"{bad.sum()} non-finite entries (first at [{i}, {j}])",
             "replace NaN/inf (e.g. np.nan_to_num) before building the network")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A neural mass model placed on a structural connectome.

    Parameters
    ----------
    model : a model from :mod:`fitbridge.models` (its parameters may be scalars or ``(n,)``).
    weights : (n, n) array, ``W[target, source]``, finite, non-negative.
    lengths : (n, n) array of tract lengths in mm, finite and >= 0 (needed when ``speed`` is set).
    speed : conduction speed in mm/ms (= m/s); ``None`` disables delays.
    normalize : ``"max"`` (default, ``W / max(W)``), ``None``, or a callable ``W -> W'``.

    Examples
    --------
    >>> import numpy as np, fitbridge as fb
    >>> net = fb.Network(fb.models.ReducedWongWang(), np.ones((3, 3)) - np.eye(3))
    >>> net.n_nodes, net.has_delays
    (3, False)
    """

    model: object
    weights: np.ndarray
    lengths: np.ndarray | None = None
    speed: float | None = None
    normalize: str | Callable | None = "max"

    def __post_init__(self):
        w = _matrix("weights", self.weights)
        if (w < 0).any():
            fail("Network.weights", "non-negative weights", f"min {w.min():.3g}",
                 "structural connectomes are non-negative; take np.abs or clip at 0")
        n = w.shape[0]
        object.__setattr__(self, "weights", normalize_weights(w, self.normalize))
        if self.lengths is not None:
            lengths = _matrix("lengths", self.lengths, n)
            if (lengths < 0).any():
                fail("Network.lengths", "tract lengths >= 0 (mm)", f"min {lengths.min():.3g}",
                     "check the file: lengths are distances")
            object.__setattr__(self, "lengths", lengths)
        if self.speed is not None:
            try:
                speed = float("nan") if isinstance(self.speed, (str, bool)) else float(self.speed)
            except (TypeError, ValueError):
                speed = float("nan")
            if not np.isfinite(speed) or speed <= 0:
                fail("Network.speed", "a conduction speed > 0 in mm/ms (m/s)", self.speed,
                     "pass e.g. speed=3.0, or speed=None for no delays")
            if self.lengths is None:
                fail("Network.speed", "lengths when a speed is given", "lengths=None",
                     "pass lengths=data.lengths, or speed=None")
            object.__setattr__(self, "speed", speed)
        _check_model_params(self.model, n)

    @property
    def n_nodes(self) -> int:
        return self.weights.shape[0]

    @property
    def has_delays(self) -> bool:
        return self.speed is not None

    def replace(self, **changes) -> "Network":
        return dataclasses.replace(self, **changes)


def _check_model_params(model, n: int) -> None:
    names = getattr(model, "field_names", None)
    if names is None or not hasattr(model, "dfun"):
        fail("Network.model", "a model from fitbridge.models (e.g. ReducedWongWang())",
             type(model).__name__, "build the model first: fb.models.ReducedWongWang(G=0.5)")
    edges = getattr(model, "edge_fields", ())
    for name in names:
        value = np.asarray(getattr(model, name))
        if name in edges and value.shape not in ((), (n, n)):
            fail(f"{type(model).__name__}.{name}", f"a scalar or a per-edge ({n}, {n}) array",
                 f"shape {value.shape}", "give one value per connection, oriented like the weights")
        if name not in edges and value.shape not in ((), (n,)):
            fail(f"{type(model).__name__}.{name}", f"a scalar or a regional ({n},) array",
                 f"shape {value.shape}", f"give one value per region ({n}) or a single number")
        if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
            fail(f"{type(model).__name__}.{name}", "finite values", value, "replace NaN/inf")
