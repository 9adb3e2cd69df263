"""The backend registry: a dict plus a decorator, with capability flags and "did you mean".

A backend is a function ::

    run(obj: Objective, x0: np.ndarray, *, budget: int | None, seed: int, options: dict,
        method: str) -> BackendOutcome

that talks only to the :class:`~fitbridge._objective.Objective` (which counts, records,
penalises and enforces the budget) and imports its optional library inside ``run``.
Families (``"nevergrad:<name>"``) register one ``run`` for every name a library knows.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Collection

import numpy as np

from .._errors import fail

__all__ = [
    "BackendInfo",
    "BackendOutcome",
    "register",
    "register_family",
    "get",
    "available",
    "incompatibility",
]


@dataclasses.dataclass(frozen=True)
class BackendOutcome:
    """What a backend returns; ``minimize`` adds the counts and the history.

    ``x`` is the backend's answer and ``fun`` its loss as evaluated by the Objective (NaN if the
    backend never evaluated ``x``, e.g. a noisy optimizer's recommendation).
    """

    x: np.ndarray
    fun: float
    success: bool = True
    status: int = 0
    message: str = ""
    nit: int = 0


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """A registered backend and what it can do.

    Attributes
    ----------
    needs_jac : uses gradients (``fun_and_jac``).
    supports_bounds : honours finite bounds. A backend without it runs in the space's unbounded
        coordinate ``z`` and is refused for a box that the transforms do not remove.
    needs_bounds : needs finite bounds on every parameter (sampling the box).
    is_global : a global (exploring) method.
    batched : evaluates populations through ``batch`` in one call.
    uses_hessian : uses ``hessp``/``hess`` (outside the evaluation budget).
    library : the optional library it imports.
    """

    name: str
    run: Callable = dataclasses.field(repr=False)
    needs_jac: bool = False
    supports_bounds: bool = True
    needs_bounds: bool = False
    is_global: bool = False
    batched: bool = False
    uses_hessian: bool = False
    library: str = ""


@dataclasses.dataclass(frozen=True)
class _Family:
    prefix: str
    run: Callable
    choices: Callable[[], Collection[str]]  # lazily lists the library's names
    examples: tuple[str, ...]
    flags: dict


_REGISTRY: dict[str, BackendInfo] = {}
_FAMILIES: dict[str, _Family] = {}


def register(name: str, **flags) -> Callable[[Callable], Callable]:
    """Decorator registering ``run`` under ``name`` with capability flags (see BackendInfo).

    Examples
    --------
    >>> @register("example:noop", library="none")
    ... def run(obj, x0, *, budget, seed, options, method):
    ...     return BackendOutcome(x0, obj.fun(x0))
    >>> get("example:noop").library
    'none'
    >>> _ = _REGISTRY.pop("example:noop")
    """

    def deco(run: Callable) -> Callable:
        if name in _REGISTRY or name.split(":")[0] in _FAMILIES and ":" in name:
            fail(
                "backends.register",
                "a new backend name",
                f"{name!r} (already registered)",
                "pick another name",
            )
        _REGISTRY[name] = BackendInfo(name=name, run=run, **flags)
        return run

    return deco


def register_family(
    prefix: str,
    run: Callable,
    *,
    choices: Callable[[], Collection[str]],
    examples: Collection[str] = (),
    **flags,
) -> None:
    """Register ``"<prefix>:<name>"`` for every ``name`` in ``choices()`` (called lazily).

    ``examples`` are the names listed by :func:`available` (and exercised by the tests).
    """
    if prefix in _FAMILIES or any(n.startswith(prefix + ":") for n in _REGISTRY):
        fail(
            "backends.register_family",
            "a new family prefix",
            f"{prefix!r} (already used)",
            "pick another prefix",
        )
    _FAMILIES[prefix] = _Family(prefix, run, choices, tuple(examples), dict(flags))


def _did_you_mean(name: str, names: Collection[str]) -> str:
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    if not close:  # "lbfgsb" -> "scipy:L-BFGS-B": compare without prefix and punctuation
        squash = lambda s: "".join(c for c in s.split(":")[-1].lower() if c.isalnum())  # noqa: E731
        close = [k for k in lowered if squash(k) == squash(name)][:3]
    return " or ".join(repr(lowered[c]) for c in close)


def get(name: str) -> BackendInfo:
    """The backend called ``name`` (case-insensitive); unknown names get "did you mean ...?"."""
    if not isinstance(name, str):
        fail(
            "minimize(method=...)",
            "a backend name or a callable run(...)",
            type(name).__name__,
            "pass e.g. method='scipy:L-BFGS-B'",
        )
    if name in _REGISTRY:
        return _REGISTRY[name]
    by_lower = {n.lower(): n for n in _REGISTRY}
    if name.lower() in by_lower:
        return _REGISTRY[by_lower[name.lower()]]
    prefix, _, sub = name.partition(":")
    family = _FAMILIES.get(prefix.lower())
    if family is not None and sub:
        known = {c.lower(): c for c in family.choices()}
        if sub.lower() in known:
            full = f"{family.prefix}:{known[sub.lower()]}"
            return BackendInfo(name=full, run=family.run, **family.flags)
        hint = _did_you_mean(sub, known.values())
        fail(
            "minimize(method=...)",
            f"a {family.prefix} optimizer name",
            repr(sub),
            f"did you mean {hint}" if hint else f"see {family.prefix}'s list of optimizers",
        )
    names = [*_REGISTRY, *(f"{f.prefix}:{e}" for f in _FAMILIES.values() for e in f.examples)]
    hint = _did_you_mean(name, names)
    fail(
        "minimize(method=...)",
        "a registered backend name",
        repr(name),
        f"did you mean {hint}" if hint else "see fitbridge.backends.available()",
    )


def available() -> list[BackendInfo]:
    """Every registered backend, with the examples of each family, sorted by name."""
    infos = list(_REGISTRY.values())
    for fam in _FAMILIES.values():
        infos += [
            BackendInfo(name=f"{fam.prefix}:{e}", run=fam.run, **fam.flags) for e in fam.examples
        ]
    return sorted(infos, key=lambda i: i.name.lower())


def incompatibility(info: BackendInfo, space) -> str | None:
    """Why ``info`` cannot run on ``space`` (a ParameterSpace), or None if it can."""
    if not info.supports_bounds and not space.unbounded_mask.all():
        boxed = [n for n, ok in zip(space.names, space.unbounded_mask, strict=True) if not ok]
        return (
            f"{info.name} ignores bounds, and {boxed[:3]} have bounds that their transform "
            "does not remove; use scipy:L-BFGS-B, or transform='logit' so it runs unbounded"
        )
    if info.needs_bounds and not (
        np.isfinite(space.lower).all() and np.isfinite(space.upper).all()
    ):
        open_ = [
            n
            for n, lo, hi in zip(space.names, space.lower, space.upper, strict=True)
            if not (np.isfinite(lo) and np.isfinite(hi))
        ]
        return f"{info.name} samples the box and needs finite bounds; {open_[:3]} are unbounded"
    return None
