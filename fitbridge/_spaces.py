"""Sets of points over named parameters of a problem: grids, zipped lists and samplers.

A :class:`Space` is declared without a problem (``grid(G=..., w=...)``) and resolved against
one with :meth:`Space.points`, which returns the ``(n, d)`` matrix in the problem's layout
(parameters that are not swept keep their ``base`` value, default ``problem.x0``) and a
DataFrame of the swept columns. A parameter is named in one of three ways:

``"G"``
    A global parameter: one column.
``"w"`` (regional)
    One scalar per point broadcast to every region: one column ``w``. With
    ``per_region=True`` (samplers only) every region is its own dimension: columns
    ``w[0] ... w[n-1]``.
``"w[3]"``
    One entry of a regional parameter; the other regions keep their base value.

Kinds: :func:`grid` (alias :func:`product`; the Cartesian product, first axis slowest, as
``itertools.product`` and ``np.meshgrid(indexing="ij")``), :func:`zip` (the i-th values of
every axis together), and the samplers :func:`random` (uniform, seeded), :func:`sobol`
(scrambled Sobol, balanced for powers of two) and :func:`lhs` (Latin hypercube: each of the
``n`` equal strata of each dimension holds one point). A sampler's axes are bounds
``(lo, hi)``, or None for the problem's (finite) bounds. New samplers register with
:func:`register_sampler`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._errors import fail
from ._params import _did_you_mean

__all__ = ["Space", "grid", "product", "zip", "random", "sobol", "lhs", "as_space",
           "register_sampler", "SAMPLERS"]

# NB: this module defines `zip` and `random` (as spaces.zip / spaces.random); it does not use
# the builtins of those names below their definitions.
#: sampler name -> ``fn(n, d, seed) -> (n, d)`` points in the unit cube
SAMPLERS: dict[str, Callable[[int, int, int], np.ndarray]] = {}
_ENTRY = re.compile(r"^(?P<name>.+)\[(?P<i>\d+)\]$")


def register_sampler(name: str):
    """Decorator registering ``fn(n, d, seed) -> (n, d)`` unit-cube points under ``name``."""

    def decorate(fn):
        if name in SAMPLERS:
            fail("register_sampler", "a new sampler name", repr(name), "choose another name")
        SAMPLERS[name] = fn
        return fn

    return decorate


@register_sampler("random")
def _uniform(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d))


@register_sampler("sobol")
def _sobol(n: int, d: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    m = max(0, math.ceil(math.log2(n)))
    return qmc.Sobol(d=d, scramble=True, rng=np.random.default_rng(seed)).random_base2(m)[:n]


@register_sampler("lhs")
def _lhs(n: int, d: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.LatinHypercube(d=d, rng=np.random.default_rng(seed)).random(n)


@dataclasses.dataclass(frozen=True, eq=False)
class Space:
    """Points over named parameters; build with :func:`grid`, :func:`zip` or a sampler.

    Attributes
    ----------
    kind : str
        ``"grid"``, ``"zip"`` or a sampler name (``"random"``, ``"sobol"``, ``"lhs"``).
    axes : tuple of (name, values)
        Values per axis (grid, zip) or bounds ``(lo, hi)`` / None (samplers).
    n : int or None
        Number of points of a sampler.
    seed : int
    per_region : bool
        Samplers: a bare regional name is sampled region by region.
    """

    kind: str
    axes: tuple
    n: int | None = None
    seed: int = 0
    per_region: bool = False

    def __len__(self) -> int:
        if self.kind == "grid":
            return math.prod(len(v) for _, v in self.axes)
        if self.kind == "zip":
            return len(self.axes[0][1])
        return int(self.n)

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.axes) or "all free parameters"
        return f"Space({self.kind}: {names}; {len(self)} points)"

    # ------------------------------------------------------------------ resolve
    def points(self, problem, base=None) -> tuple[np.ndarray, pd.DataFrame]:
        """The ``(n, d)`` float64 matrix in ``problem``'s layout and the swept columns.

        ``base`` (a vector ``(d,)`` or a parameter dict) fills what is not swept;
        default ``problem.x0``.
        """
        space = problem.space
        x0 = _base(space, base)
        columns = self._columns(space)
        values = self._values(space, columns)
        X = np.repeat(x0[None], len(values), axis=0)
        for j, (col, idx) in enumerate(columns):
            X[:, idx] = values[:, j, None]
        _inside(space, X)
        return X, pd.DataFrame(values, columns=[c for c, _ in columns])

    def _columns(self, space) -> list[tuple[str, np.ndarray]]:
        """(column name, entry indices of the flat vector) per swept dimension."""
        axes = self.axes or tuple((name, None) for name in space.free)
        out, taken = [], {}
        for name, _ in axes:
            for col, idx in _resolve(space, name, self.per_region and self.kind in SAMPLERS):
                clash = [c for c, used in taken.items() if set(used) & set(idx.tolist())]
                if clash:
                    fail(f"spaces[{col!r}]", "each parameter entry swept once",
                         f"{col!r} overlaps {clash[0]!r}", "drop one of the two axes")
                taken[col] = idx.tolist()
                out.append((col, idx))
        return out

    def _values(self, space, columns) -> np.ndarray:
        if self.kind == "grid":
            axes = [np.asarray(v, float) for _, v in self.axes]
            return np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, len(axes))
        if self.kind == "zip":
            return np.stack([np.asarray(v, float) for _, v in self.axes], axis=1)
        given = dict(self.axes)
        lo, hi = np.empty(len(columns)), np.empty(len(columns))
        for j, (col, idx) in enumerate(columns):
            name = _ENTRY.sub(r"\g<name>", col)
            bounds = given.get(col, given.get(name))
            if bounds is None:
                bounds = (space.lower[idx].min(), space.upper[idx].max())
            lo[j], hi[j] = bounds
            if not (np.isfinite(lo[j]) and np.isfinite(hi[j]) and lo[j] < hi[j]):
                fail(f"spaces.{self.kind}[{col!r}]", "finite bounds lo < hi to sample in",
                     f"({lo[j]}, {hi[j]})", f"pass {name}=(lo, hi) to the sampler")
        unit = SAMPLERS[self.kind](int(self.n), len(columns), int(self.seed))
        return lo + unit * (hi - lo)


def _base(space, base) -> np.ndarray:
    if base is None:
        return space.x0.copy()
    if isinstance(base, Mapping):
        return space.flatten(base)
    x = np.asarray(base, dtype=float)
    if x.shape != (space.dim,):
        fail("Space.points(base=...)", f"a vector of shape ({space.dim},) or a parameter dict",
             f"shape {x.shape}", "pass problem.x0-like values")
    return x


def _resolve(space, name: str, per_region: bool) -> list[tuple[str, np.ndarray]]:
    """Column names and flat indices of an axis name (``G``, ``w``, ``w[3]``)."""
    m = _ENTRY.match(name) if isinstance(name, str) else None
    root = m.group("name") if m else name
    if root not in space.free:
        hint = _did_you_mean(str(root), list(space.free)) or f"choose among {list(space.free)}"
        fail("spaces", "names of the problem's free parameters", repr(name), hint)
    sl = space._slices[root]
    idx = np.arange(sl.start, sl.stop)
    if m:
        i = int(m.group("i"))
        if not space.free[root].regional or i >= idx.size:
            fail(f"spaces[{name!r}]", f"an entry of a regional parameter, index < {idx.size}",
                 repr(name),
                 f"use {root!r}" if not space.free[root].regional else "lower the index")
        return [(name, idx[i:i + 1])]
    if per_region and space.free[root].regional:
        return [(f"{root}[{i}]", idx[i:i + 1]) for i in range(idx.size)]
    return [(root, idx)]


def _inside(space, X: np.ndarray) -> None:
    bad = (X < space.lower) | (X > space.upper)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        fail("spaces", "points inside the problem's bounds",
             f"{space.names[col]} = {X[row, col]!r} outside "
             f"[{space.lower[col]}, {space.upper[col]}]",
             "restrict the axis values or widen the bounds in Free(...)")


# ---------------------------------------------------------------------- constructors
def _axes(axes, named, where: str) -> tuple:
    merged = {**dict(axes or {}), **named}
    if not merged and where in ("grid", "zip"):
        fail(f"spaces.{where}", "at least one axis", "none", "pass e.g. G=np.linspace(0, 3, 16)")
    return tuple(merged.items())


def _values_axis(where: str, name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        fail(f"spaces.{where}[{name!r}]", "a non-empty 1-D array of finite values",
             f"shape {v.shape}" if v.ndim != 1 or v.size == 0 else "non-finite values",
             "pass e.g. np.linspace(0, 3, 16)")
    v.setflags(write=False)
    return v


def grid(axes: Mapping | None = None, /, **named) -> Space:
    """The Cartesian product of value lists, first axis slowest.

    Examples
    --------
    >>> s = grid(G=[0.1, 0.2], w=[0.3, 0.4, 0.5])
    >>> len(s)
    6
    """
    ax = _axes(axes, named, "grid")
    return Space("grid", tuple((k, _values_axis("grid", k, v)) for k, v in ax))


product = grid


def zip(axes: Mapping | None = None, /, **named) -> Space:  # noqa: A001 (spaces.zip)
    """Points made of the i-th value of every axis (all axes of equal length).

    Examples
    --------
    >>> len(zip(G=[0.1, 0.2, 0.3], w=[0.5, 0.4, 0.3]))
    3
    """
    ax = tuple((k, _values_axis("zip", k, v)) for k, v in _axes(axes, named, "zip"))
    sizes = {k: len(v) for k, v in ax}
    if len(set(sizes.values())) != 1:
        fail("spaces.zip", "axes of equal length", sizes, "pass value lists of one length")
    return Space("zip", ax)


def _sampler(kind: str, n, axes, named, seed, per_region) -> Space:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        fail(f"spaces.{kind}(n=...)", "a positive number of points", repr(n), "pass e.g. 64")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        fail(f"spaces.{kind}(seed=...)", "an int", repr(seed), "pass seed=0")
    if isinstance(axes, Sequence) and not isinstance(axes, (str, Mapping)):
        axes = dict.fromkeys(axes)
    ax = []
    for k, b in _axes(axes, named, kind):
        if b is not None:
            try:
                lo, hi = (float(v) for v in b)
            except (TypeError, ValueError):
                fail(f"spaces.{kind}[{k!r}]", "bounds (lo, hi) or None", repr(b),
                     "pass e.g. G=(0.0, 3.0)")
            b = (lo, hi)
        ax.append((k, b))
    return Space(kind, tuple(ax), n=int(n), seed=int(seed), per_region=bool(per_region))


def random(n: int, axes: Mapping | Sequence[str] | None = None, /, *, seed: int = 0,  # noqa: A001
           per_region: bool = False, **named) -> Space:
    """``n`` uniform random points (``numpy.random.default_rng(seed)``) in the bounds.

    Axes are ``name=(lo, hi)`` or ``name=None`` (the problem's bounds); no axes means every
    free parameter within its bounds.

    Examples
    --------
    >>> len(random(5, G=(0.0, 1.0), seed=1))
    5
    """
    return _sampler("random", n, axes, named, seed, per_region)


def sobol(n: int, axes: Mapping | Sequence[str] | None = None, /, *, seed: int = 0,
          per_region: bool = False, **named) -> Space:
    """The first ``n`` of ``2**ceil(log2 n)`` scrambled Sobol points (balanced when ``n`` is a
    power of two: each of the ``n`` dyadic strata of a dimension holds one point).

    Examples
    --------
    >>> len(sobol(16, ["G", "w"]))
    16
    """
    return _sampler("sobol", n, axes, named, seed, per_region)


def lhs(n: int, axes: Mapping | Sequence[str] | None = None, /, *, seed: int = 0,
        per_region: bool = False, **named) -> Space:
    """A Latin hypercube of ``n`` points (``scipy.stats.qmc.LatinHypercube``): each of the ``n``
    equal-width strata of every dimension holds exactly one point.

    Examples
    --------
    >>> len(lhs(10, G=(0.0, 3.0), w=None))
    10
    """
    return _sampler("lhs", n, axes, named, seed, per_region)


def as_space(obj) -> Space:
    """A :class:`Space` as it is, or a dict ``{name: values}`` as a :func:`grid`."""
    if isinstance(obj, Space):
        return obj
    if isinstance(obj, Mapping):
        return grid(obj)
    fail("explore(space=...)", "a Space or a dict {name: values} (a grid)", type(obj).__name__,
         "pass e.g. {'G': np.linspace(0, 3, 16), 'w': np.linspace(0, 1, 16)}")

