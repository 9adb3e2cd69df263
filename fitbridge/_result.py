"""The one result type every optimizer run returns, with SciPy's field names."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import time

import numpy as np
import pandas as pd

__all__ = ["OptimizeResult", "build_manifest", "problem_hash"]

_PACKAGES = ("fitbridge", "numpy", "scipy", "jax", "jaxlib", "pandas")


@dataclasses.dataclass(frozen=True, eq=False)
class OptimizeResult:
    """Outcome of :func:`fitbridge.minimize`.

    Attributes
    ----------
    x : ndarray (d,)
        Best parameter vector (the lowest loss seen for deterministic losses; the optimizer's
        recommendation under ``noise="resample"``).
    fun : float
        Loss at ``x`` as the optimizer saw it (non-finite losses appear as the penalty).
    jac : ndarray (d,) or None
        Gradient at ``x`` if one was computed there.
    success, status, message : bool, int, str
        The optimizer's verdict; a run stopped by the budget has status 1, by the callback 99.
    nfev, njev, nhev, nit : int
        Points evaluated, points whose gradient was computed, Hessian products, iterations.
    params : dict
        ``x`` by parameter name (``{"G": 0.5, "w": [...]}``).
    method : str
        The backend's name.
    wall_time : float
        Seconds, from the call to the return.
    history : pandas.DataFrame
        One row per evaluation: ``eval, fun, best, loss, penalised, source, time``, aux values
        (e.g. ``fc_r``) and one column per entry of ``problem.names``.
    manifest : dict
        Reproducibility record: package versions, seed, problem hash, method, options, budget.
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray | None
    success: bool
    status: int
    message: str
    nfev: int
    njev: int
    nhev: int
    nit: int
    params: dict
    method: str
    wall_time: float
    history: pd.DataFrame = dataclasses.field(repr=False)
    manifest: dict = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return (
            f"OptimizeResult({self.method}: fun={self.fun:.6g}, {params}, success={self.success}, "
            f"nfev={self.nfev}, nit={self.nit}, message={self.message!r})"
        )


def _short(value) -> str:
    if isinstance(value, list):
        return (
            f"[{value[0]:.4g}, ... ({len(value)})]"
            if len(value) > 3
            else str([float(f"{v:.4g}") for v in value])
        )
    return f"{value:.6g}"


def _versions(library: str) -> dict[str, str | None]:
    out = {}
    for name in (*_PACKAGES, *([library] if library else [])):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def problem_hash(problem) -> str:
    """SHA-256 of the space, the problem's ``spec_hash()`` and its noise policy."""
    blob = {"space": problem.space.hash(), "spec": problem.spec_hash(), "noise": str(problem.noise)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def build_manifest(
    problem,
    *,
    method: str,
    library: str,
    seed: int,
    options: dict,
    budget: int | None,
    penalty: float,
    x0: np.ndarray,
) -> dict:
    """The JSON-able reproducibility record of one run (also the log file's header)."""
    return {
        "method": method,
        "seed": int(seed),
        "budget": budget,
        "penalty": float(penalty),
        "options": json.loads(json.dumps(options, sort_keys=True, default=repr)),
        "problem_hash": problem_hash(problem),
        "names": list(problem.names),
        "x0": [float(v) for v in x0],
        "noise": str(problem.noise),
        "packages": _versions(library),
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
