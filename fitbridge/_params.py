"""Free parameters and the map between a parameter dict and a flat float64 vector.

A :class:`ParameterSpace` is the one place that knows how named parameters (``G``, a
regional ``w`` ...) are laid out in the flat vector ``x`` that optimizers see, their box
bounds, and the transform to an unbounded coordinate ``z`` used by optimizers that want
one (optax, and scipy's bounds-free methods).

Transforms (elementwise; ``x`` is the natural value, ``z`` the optimizer's coordinate):

=============  ==============================  ===============================================
transform      ``x = from_unbounded(z)``       removes the bounds when
=============  ==============================  ===============================================
``identity``   ``clip(z, lo, hi)``             both bounds are infinite
``log``        ``clip(exp(z), lo, hi)``        ``lo == 0`` and ``hi == inf`` (needs lo >= 0)
``logit``      ``lo + (hi - lo) * sigmoid(z)`` always (needs finite ``lo < hi``)
=============  ==============================  ===============================================

Where a transform does not remove a bound, ``from_unbounded`` projects onto the box and
``from_unbounded_jac`` is the straight-through derivative of the unclipped map, so that a
gradient method in ``z`` followed by ``z <- to_unbounded(from_unbounded(z))`` is projected
gradient descent. :attr:`ParameterSpace.unbounded_mask` says which entries are truly free.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Collection, Mapping

import numpy as np
from scipy.optimize import Bounds

from ._errors import fail

__all__ = ["Free", "ParameterSpace", "TRANSFORMS", "RESERVED_NAMES"]

TRANSFORMS = ("identity", "log", "logit")
#: column names of the evaluation history, which parameter and aux names may not use
RESERVED_NAMES = ("eval", "fun", "best", "loss", "penalised", "source", "time")
_LOGIT_EPS = 1e-15  # logit inputs are clipped to [eps, 1 - eps] so bounds map to finite z


@dataclasses.dataclass(frozen=True)
class Free:
    """One free parameter: initial value, box bounds, global or regional, transform.

    Parameters
    ----------
    init : float or array of shape (n_regions,)
        Initial value. A scalar init of a regional parameter is broadcast to every region.
    bounds : (lo, hi)
        Box bounds, the same for every region; ``+-inf`` means unbounded on that side.
    regional : bool
        One value per region (``w[0] ... w[n-1]``) instead of one global value.
    edges : bool
        One value per structural connection (``wLRE[i,j]`` for each edge of the connectome,
        row-major order of ``np.nonzero(weights)``), for the per-edge parameters of a model
        (e.g. :class:`~fitbridge.models.WongWangEIB`). ``init`` is a scalar or one value per edge.
    transform : {"identity", "log", "logit"}
        Coordinate used by optimizers that work in an unbounded space (module docstring).

    Examples
    --------
    >>> Free(0.5, bounds=(0.0, 3.0))
    Free(init=0.5, bounds=(0.0, 3.0), regional=False, transform='identity', edges=False)
    >>> Free(0.01, bounds=(0.0, 1.0), regional=True, transform="logit").regional
    True
    """

    init: float | tuple[float, ...]
    bounds: tuple[float, float] = (-math.inf, math.inf)
    regional: bool = False
    transform: str = "identity"
    edges: bool = False

    def __post_init__(self):
        try:
            init = np.asarray(self.init, dtype=np.float64)
        except (TypeError, ValueError):
            fail("Free.init", "a number or an (n_regions,) array of numbers", repr(self.init),
                 "pass e.g. Free(0.5, bounds=(0.0, 1.0))")
        if init.ndim > 1:
            fail(
                "Free.init",
                "a scalar or a 1-D array of regional values",
                f"an array of shape {init.shape}",
                "pass a float or an (n_regions,) array",
            )
        object.__setattr__(self, "init", float(init) if init.ndim == 0 else tuple(init.tolist()))
        try:
            lo, hi = (float(b) for b in self.bounds)
        except (TypeError, ValueError):
            fail(
                "Free.bounds",
                "a pair of numbers (lo, hi)",
                repr(self.bounds),
                "pass bounds=(0.0, 3.0); use math.inf for an open side",
            )
        object.__setattr__(self, "bounds", (lo, hi))
        if not isinstance(self.regional, (bool, np.bool_)):
            fail("Free.regional", "True or False", repr(self.regional), "pass regional=True")
        object.__setattr__(self, "regional", bool(self.regional))
        if not isinstance(self.edges, (bool, np.bool_)):
            fail("Free.edges", "True or False", repr(self.edges), "pass edges=True for a per-edge parameter")
        object.__setattr__(self, "edges", bool(self.edges))
        if self.edges and self.regional:
            fail("Free", "either regional=True or edges=True", "both", "a parameter is per region or per edge")
        if self.transform not in TRANSFORMS:
            fail(
                "Free.transform",
                f"one of {TRANSFORMS}",
                repr(self.transform),
                _did_you_mean(str(self.transform), TRANSFORMS) or "use 'identity'",
            )


def _did_you_mean(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"did you mean {' or '.join(map(repr, close))}" if close else ""


def _check_entry(name: str, free: Free, n_regions: int | None, n_edges: int | None = None) -> np.ndarray:
    """Validate one named entry; return its init as a float64 vector of its length."""
    where = f"ParameterSpace[{name!r}]"
    lo, hi = free.bounds
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        fail(where, "bounds with lo < hi", f"bounds=({lo}, {hi})", "swap or widen the bounds")
    if free.transform == "log" and lo < 0:
        fail(
            where,
            "lo >= 0 for transform='log'",
            f"lo={lo}",
            "shift the parameter or use 'identity'",
        )
    if free.transform == "logit" and not (math.isfinite(lo) and math.isfinite(hi)):
        fail(
            where,
            "finite bounds for transform='logit'",
            f"bounds=({lo}, {hi})",
            "give finite bounds or use transform='log'/'identity'",
        )
    init = np.asarray(free.init, dtype=np.float64)
    if free.edges:
        if n_edges is None:
            fail(where, "the connectome's edges for a per-edge parameter", "edges=None",
                 "build the problem with fb.FCProblem, or pass ParameterSpace(..., edges=np.nonzero(W))")
        if init.ndim == 0:
            init = np.full(n_edges, float(init))
        if init.shape != (n_edges,):
            fail(where, f"a scalar or one value per edge ({n_edges},)", f"shape {init.shape}",
                 "take the values at the edges: value[np.nonzero(weights)]")
    elif free.regional:
        if n_regions is None:
            fail(
                where,
                "n_regions for a regional parameter",
                "n_regions=None",
                "pass ParameterSpace(..., n_regions=network.n_nodes)",
            )
        if init.ndim == 0:
            init = np.full(n_regions, float(init))
        if init.shape != (n_regions,):
            fail(
                where,
                f"a scalar or shape ({n_regions},) init for a regional parameter",
                f"shape {init.shape}",
                f"pass one value per region ({n_regions})",
            )
    elif init.ndim != 0:
        fail(
            where,
            "a scalar init for a global parameter",
            f"shape {init.shape}",
            "pass a float, or set regional=True",
        )
    init = np.atleast_1d(init)
    bad = ~((init >= lo) & (init <= hi))
    if bad.any():
        fail(
            where,
            f"an init inside the bounds [{lo}, {hi}]",
            f"init={float(init[bad][0])!r}"
            + (f" at region {np.flatnonzero(bad)[0]}" if free.regional else "")
            + (f" at edge {np.flatnonzero(bad)[0]}" if free.edges else ""),
            "move the init inside the bounds or widen them",
        )
    if free.transform == "log" and np.any(init <= 0):
        fail(
            where,
            "init > 0 for transform='log'",
            f"init={float(init.min())!r}",
            "start from a positive value",
        )
    return init


class ParameterSpace:
    """Named free parameters laid out as one flat float64 vector.

    Parameters
    ----------
    free : dict[str, Free]
        The free parameters, in the order they appear in ``x``.
    n_regions : int, optional
        Length of regional parameters (inferred from regional array inits when omitted).
    allowed : collection of str, optional
        Names the model accepts; unknown names are rejected with a "did you mean".
    edges : (rows, cols) index arrays, optional
        The structural connections of per-edge parameters (``Free(..., edges=True)``).

    Examples
    --------
    >>> space = ParameterSpace({"G": Free(0.5, bounds=(0, 3)),
    ...                         "w": Free(0.4, bounds=(0, 1), regional=True)}, n_regions=2)
    >>> space.names
    ['G', 'w[0]', 'w[1]']
    >>> space.unflatten(space.x0)["w"]
    array([0.4, 0.4])
    >>> space.params_dict([1.0, 0.2, 0.3])
    {'G': 1.0, 'w': [0.2, 0.3]}
    """

    def __init__(
        self,
        free: Mapping[str, Free],
        *,
        n_regions: int | None = None,
        allowed: Collection[str] | None = None,
        edges: tuple | None = None,
    ):
        if not isinstance(free, Mapping) or len(free) == 0:
            fail(
                "ParameterSpace.free",
                "a non-empty dict {name: Free(...)}",
                repr(free),
                "declare at least one free parameter, e.g. {'G': Free(0.5, bounds=(0, 3))}",
            )
        if n_regions is not None and (int(n_regions) != n_regions or n_regions < 1):
            fail(
                "ParameterSpace.n_regions",
                "a positive integer",
                repr(n_regions),
                "pass the node count",
            )
        self.free: dict[str, Free] = dict(free)
        if n_regions is None:  # infer it from regional array inits when they agree
            sizes = {
                len(f.init)
                for f in self.free.values()
                if isinstance(f, Free) and f.regional and isinstance(f.init, tuple)
            }
            n_regions = sizes.pop() if len(sizes) == 1 else None
        self.n_regions = None if n_regions is None else int(n_regions)
        if edges is not None:
            rows, cols = (np.asarray(e, dtype=np.int64).ravel() for e in edges)
            if rows.shape != cols.shape:
                fail("ParameterSpace.edges", "(rows, cols) index arrays of one length",
                     f"lengths {rows.size} and {cols.size}", "pass np.nonzero(weights)")
            edges = (rows, cols)
        self.edges = edges
        n_edges = None if edges is None else edges[0].size
        slices, inits, lows, highs, kinds, names = {}, [], [], [], [], []
        for name, spec in self.free.items():
            self._check_name(name, spec, allowed)
            init = _check_entry(name, spec, self.n_regions, n_edges)
            slices[name] = slice(len(names), len(names) + init.size)
            if spec.edges:
                names += [f"{name}[{i},{j}]" for i, j in zip(*edges)]
            else:
                names += [f"{name}[{i}]" for i in range(init.size)] if spec.regional else [name]
            inits.append(init)
            lows.append(np.full(init.size, spec.bounds[0]))
            highs.append(np.full(init.size, spec.bounds[1]))
            kinds += [TRANSFORMS.index(spec.transform)] * init.size
        self._slices = slices
        self.names: list[str] = names
        self.x0 = np.concatenate(inits)
        self.lower = np.concatenate(lows)
        self.upper = np.concatenate(highs)
        self._kind = np.asarray(kinds)
        for arr in (self.x0, self.lower, self.upper):
            arr.setflags(write=False)

    @staticmethod
    def _check_name(name, spec, allowed):
        if not isinstance(name, str) or not name or name in RESERVED_NAMES:
            fail(
                "ParameterSpace.free",
                f"string parameter names other than {RESERVED_NAMES}",
                repr(name),
                "use names like 'G' (the others are history columns)",
            )
        if not isinstance(spec, Free):
            fail(
                f"ParameterSpace[{name!r}]",
                "a Free(...) declaration",
                type(spec).__name__,
                f"write {{{name!r}: Free(init, bounds=(lo, hi))}}",
            )
        if allowed is not None and name not in allowed:
            hint = _did_you_mean(name, allowed) or f"choose among {sorted(allowed)}"
            fail("ParameterSpace.free", "names of the model's parameters", repr(name), hint)

    # ------------------------------------------------------------------ layout
    @property
    def dim(self) -> int:
        """Length of the flat vector."""
        return self.x0.size

    @property
    def bounds(self) -> Bounds:
        """The box as :class:`scipy.optimize.Bounds`."""
        return Bounds(self.lower.copy(), self.upper.copy())

    @property
    def has_finite_bounds(self) -> bool:
        """True when any entry has a finite lower or upper bound."""
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())

    def unflatten(self, x):
        """Flat vector -> ``{name: scalar or (n_regions,)}`` (NumPy or traced, as given)."""
        if x.shape != (self.dim,):
            fail(
                "ParameterSpace.unflatten",
                f"a vector of shape ({self.dim},)",
                f"shape {x.shape}",
                f"pass one value per entry of names ({self.dim})",
            )
        return {
            name: x[s] if self.free[name].regional or self.free[name].edges else x[s.start]
            for name, s in self._slices.items()
        }

    def flatten(self, params: Mapping[str, object]) -> np.ndarray:
        """``{name: value}`` -> float64 vector (a scalar of a regional entry is broadcast)."""
        if set(params) != set(self._slices):
            missing, extra = set(self._slices) - set(params), set(params) - set(self._slices)
            fail(
                "ParameterSpace.flatten",
                f"exactly the free names {list(self._slices)}",
                f"missing {sorted(missing)}, unexpected {sorted(extra)}",
                "pass one value per free name",
            )
        x = np.empty(self.dim)
        for name, s in self._slices.items():
            value = np.asarray(params[name], dtype=np.float64)
            if value.ndim != 0 and value.shape != (s.stop - s.start,):
                fail(
                    f"ParameterSpace.flatten[{name!r}]",
                    f"a scalar or shape ({s.stop - s.start},)",
                    f"shape {value.shape}",
                    "pass one value per region",
                )
            x[s] = value
        return x

    def params_dict(self, x) -> dict[str, float | list[float]]:
        """JSON-able named values of a flat vector."""
        x = np.asarray(x, dtype=np.float64)
        return {k: (v.tolist() if np.ndim(v) else float(v)) for k, v in self.unflatten(x).items()}

    def describe(self) -> dict:
        """A JSON-able description (used for hashing and manifests)."""
        out = {
            "n_regions": self.n_regions,
            "free": {k: dataclasses.asdict(v) for k, v in self.free.items()},
        }
        if self.edges is not None:
            out["edges"] = hashlib.sha256(np.stack(self.edges).tobytes()).hexdigest()[:16]
        return out

    def hash(self) -> str:
        """SHA-256 of :meth:`describe` (stable across processes)."""
        text = json.dumps(self.describe(), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{k}{f'[{s.stop - s.start}]' if self.free[k].regional or self.free[k].edges else ''}"
            for k, s in self._slices.items()
        )
        return f"ParameterSpace({parts}; dim={self.dim})"

    # ------------------------------------------------------------- transforms
    @property
    def unbounded_mask(self) -> np.ndarray:
        """Entries whose transform removes both bounds (``z`` is free on the whole real line)."""
        ident = (self._kind == 0) & np.isinf(self.lower) & np.isinf(self.upper)
        log = (self._kind == 1) & (self.lower == 0) & np.isposinf(self.upper)
        return ident | log | (self._kind == 2)

    def _parts(self, v):
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.dim,):
            fail(
                "ParameterSpace transform",
                f"a vector of shape ({self.dim},)",
                f"shape {v.shape}",
                "pass a flat parameter vector",
            )
        return v, self._kind == 0, self._kind == 1, self._kind == 2

    def to_unbounded(self, x) -> np.ndarray:
        """Natural ``x`` -> optimizer coordinate ``z`` (see the module docstring)."""
        x, ident, log, logit = self._parts(x)
        lo, hi = self.lower, self.upper
        z = np.where(ident, x, 0.0)
        z[log] = np.log(np.maximum(x[log], np.finfo(float).tiny))
        u = np.clip((x[logit] - lo[logit]) / (hi[logit] - lo[logit]), _LOGIT_EPS, 1 - _LOGIT_EPS)
        z[logit] = np.log(u) - np.log1p(-u)
        return z

    def from_unbounded(self, z) -> np.ndarray:
        """Optimizer coordinate ``z`` -> natural ``x`` (always inside the bounds)."""
        z, ident, log, logit = self._parts(z)
        lo, hi = self.lower, self.upper
        x = np.where(ident, z, 0.0)
        x[log] = np.exp(np.minimum(z[log], 709.0))
        x[logit] = lo[logit] + (hi[logit] - lo[logit]) * _sigmoid(z[logit])
        return np.clip(x, lo, hi)

    def from_unbounded_jac(self, z) -> np.ndarray:
        """Elementwise ``dx/dz`` (straight-through where ``from_unbounded`` clips)."""
        z, ident, log, logit = self._parts(z)
        d = np.where(ident, 1.0, 0.0)
        d[log] = np.exp(np.minimum(z[log], 709.0))
        s = _sigmoid(z[logit])
        d[logit] = (self.upper[logit] - self.lower[logit]) * s * (1 - s)
        return d

    def from_unbounded_jac2(self, z) -> np.ndarray:
        """Elementwise ``d2x/dz2`` (for Hessians in ``z``: ``J H J + diag(g * d2x/dz2)``)."""
        z, ident, log, logit = self._parts(z)
        d = np.zeros(self.dim)
        d[log] = np.exp(np.minimum(z[log], 709.0))
        s = _sigmoid(z[logit])
        d[logit] = (self.upper[logit] - self.lower[logit]) * s * (1 - s) * (1 - 2 * s)
        return d


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
