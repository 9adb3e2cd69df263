"""``minimize``: one entry point for every optimizer backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path

import numpy as np

from . import backends
from ._errors import fail
from ._evallog import EvalLog, check_resumable, read_log
from ._objective import (PENALTY, BudgetExhausted, Objective, StopRequested, check_budget,
                         check_penalty)
from ._problem import Problem
from ._result import OptimizeResult, build_manifest

__all__ = ["minimize"]


def minimize(
    problem: Problem,
    method: str | Callable | backends.BackendInfo = "scipy:L-BFGS-B",
    x0=None,
    *,
    budget: int | None = None,
    seed: int = 0,
    callback: Callable[[dict], object] | None = None,
    options: Mapping | None = None,
    progress: bool = True,
    log: str | PathLike | None = None,
    resume: str | PathLike | None = None,
    penalty: float = PENALTY,
) -> OptimizeResult:
    """Minimize a problem's loss with any registered optimizer.

    Parameters
    ----------
    problem : Problem
        The objective (e.g. an ``FCProblem``).
    method : str or callable
        A registered name (``"scipy:L-BFGS-B"``, ``"cma"``, ``"nevergrad:NGOpt"`` ...; see
        ``fitbridge.backends.available()``), or a function
        ``run(obj, x0, *, budget, seed, options, method) -> BackendOutcome``.
    x0 : array (d,), optional
        Start; default ``problem.x0``. Must lie inside the bounds.
    budget : int, optional
        Maximum number of loss evaluations (points), the same meaning for every backend; the
        run then returns the best point seen (``status=1``).
    seed : int
        Seed of the optimizer's randomness (the loss's noise is seeded by the problem).
    callback : callable, optional
        ``callback(row)`` after every evaluation with the history row as a dict; returning
        ``True`` stops the run (``status=99``). Exceptions propagate (the log stays valid).
    options : dict, optional
        Passed to the backend (e.g. scipy's ``options``, cma's ``popsize``).
    progress : bool
        Show a tqdm progress bar when tqdm is installed and stderr is a terminal.
    log : path, optional
        Append every evaluation to this new JSON-lines file as it happens (see
        :mod:`fitbridge._evallog`).
    resume : path, optional
        A log of an interrupted run: the same optimizer is re-run with the same seed, logged
        evaluations are served from the file (verifying ``x`` to 1e-12) instead of recomputed,
        and new ones are appended (to ``log`` if given, else to ``resume``). The result equals
        that of an uninterrupted run.
    penalty : float
        Loss seen by the optimizer where the loss or its gradient is NaN/inf (default 1e6).

    Returns
    -------
    OptimizeResult

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from fitbridge import Free, Problem
    >>> problem = Problem(lambda p, key: (p["G"] - 1.0) ** 2 + jnp.sum((p["w"] - 0.2) ** 2),
    ...                   {"G": Free(0.5, bounds=(0, 3)), "w": Free([0.5, 0.5], bounds=(0, 1),
    ...                                                             regional=True)})
    >>> res = minimize(problem, "scipy:L-BFGS-B", progress=False)
    >>> res.success, {k: np.round(v, 6).tolist() for k, v in res.params.items()}
    (True, {'G': 1.0, 'w': [0.2, 0.2]})
    """
    start = time.perf_counter()
    if not isinstance(problem, Problem):
        fail(
            "minimize(problem=...)",
            "a fitbridge Problem (e.g. FCProblem)",
            type(problem).__name__,
            "wrap your loss: Problem(loss, {'G': Free(...)})",
        )
    info = _backend(method)
    reason = backends.incompatibility(info, problem.space)
    if reason is not None:
        fail(
            "minimize(method=...)",
            "a method that can handle this problem's bounds",
            info.name,
            reason,
        )
    x0 = _start(problem, x0)
    seed, options = _seed(seed), _options(options)
    check_budget(budget)  # before a log file is opened
    check_penalty(penalty)
    if callback is not None and not callable(callback):
        fail(
            "minimize(callback=...)",
            "a callable callback(row) or None",
            type(callback).__name__,
            "pass a function",
        )
    manifest = build_manifest(
        problem,
        method=info.name,
        library=info.library,
        seed=seed,
        options=options,
        budget=budget,
        penalty=penalty,
        x0=x0,
    )
    writer, replay, log_replayed = _open_log(log, resume, manifest)
    obj = Objective(
        problem,
        budget=budget,
        seed=seed,
        penalty=penalty,
        callback=callback,
        log=writer,
        replay=replay,
        log_replayed=log_replayed,
        progress=progress,
    )
    outcome, stop = None, None
    try:
        outcome = info.run(
            obj, x0.copy(), budget=obj.budget, seed=seed, options=dict(options), method=info.name
        )
    except BudgetExhausted:
        stop = (
            1,
            f"stopped: the budget of {obj.budget} evaluations is used up (best point returned)",
        )
    except StopRequested:
        stop = (99, "stopped: the callback returned True (best point returned)")
    except KeyboardInterrupt as err:
        if writer is not None:
            err.add_note(f"fitbridge: the {obj.nfev} evaluations so far are in {writer.path}; "
                         f"continue with minimize(..., resume={str(writer.path)!r})")
        raise
    finally:
        obj.close()
        if writer is not None:
            writer.close()
    return _result(obj, info.name, outcome, stop, manifest, time.perf_counter() - start)


def _backend(method) -> backends.BackendInfo:
    if isinstance(method, backends.BackendInfo):
        return method
    if callable(method):
        name = getattr(method, "__qualname__", type(method).__qualname__)
        return backends.BackendInfo(name=f"custom:{name}", run=method)
    return backends.get(method)


def _start(problem: Problem, x0) -> np.ndarray:
    if x0 is None:
        return problem.x0
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.shape != (problem.dim,):
        fail(
            "minimize(x0=...)",
            f"a vector of shape ({problem.dim},) ordered as problem.names",
            f"shape {x0.shape}",
            "use problem.space.flatten({...}) to build it",
        )
    outside = ~((x0 >= problem.space.lower) & (x0 <= problem.space.upper))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        fail(
            "minimize(x0=...)",
            "a start inside the bounds",
            f"{problem.names[i]}={float(x0[i])!r} outside "
            f"[{problem.space.lower[i]}, {problem.space.upper[i]}]",
            "clip x0 to the bounds (np.clip(x0, problem.bounds.lb, problem.bounds.ub))",
        )
    return x0


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        fail("minimize(seed=...)", "a non-negative int", repr(seed), "pass seed=0")
    return int(seed)


def _options(options) -> dict:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        fail(
            "minimize(options=...)",
            "a dict of backend options",
            type(options).__name__,
            "pass options={'maxiter': 100}",
        )
    return dict(options)


def _open_log(log, resume, manifest) -> tuple[EvalLog | None, list[dict], bool]:
    """(writer, rows to replay, whether served rows are written too)."""
    if resume is None:
        return (None if log is None else EvalLog(log, manifest)), [], False
    logged, rows = read_log(resume)
    check_resumable(logged, manifest)
    if log is None or Path(log).resolve() == Path(resume).resolve():
        return EvalLog(resume, manifest, append=True), rows, False
    return EvalLog(log, manifest), rows, True


def _result(obj: Objective, method: str, outcome, stop, manifest, wall: float) -> OptimizeResult:
    # deterministic losses: the lowest loss seen wins; noisy ones: the optimizer's answer
    keep_own = outcome is not None and (
        obj.problem.noise == "resample" or outcome.fun <= obj.best_fun
    )
    x = np.asarray(outcome.x, dtype=np.float64) if keep_own else obj.best_x
    fun = float(outcome.fun) if keep_own else float(obj.best_fun)
    status, message = stop if stop else (outcome.status, outcome.message)
    success = stop is None and bool(outcome.success)
    if obj.nfev and obj.npenalised == obj.nfev:
        success, message = False, message + " (every evaluation was non-finite and penalised)"
    return OptimizeResult(
        x=x,
        fun=fun,
        jac=obj.jac_at(x),
        success=success,
        status=int(status),
        message=message,
        nfev=obj.nfev,
        njev=obj.njev,
        nhev=obj.nhev,
        nit=0 if outcome is None else outcome.nit,
        params=obj.space.params_dict(x),
        method=method,
        wall_time=wall,
        history=obj.history,
        manifest=manifest,
    )
