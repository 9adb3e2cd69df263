"""Multi-restart: a Sobol exploration evaluated as one batch, then local runs (TikTak).

1. **Exploration.** ``n_explore`` scrambled Sobol points (``scipy.stats.qmc.Sobol``, seeded,
   the first ``n_explore`` of ``2**ceil(log2(n_explore))``) scaled to the box, evaluated in
   ONE ``batch`` call. A side with an infinite bound is replaced by
   ``x0 -+ spread * max(1, |x0|)`` (default ``spread=2``).
2. **Local runs** from the ``k`` best exploration points ``p_0 <= p_1 <= ...`` (by loss). In
   the TikTak fashion (Arnoud, Guvenen & Kleineberg 2019) run ``i`` starts from the convex
   combination ``s_i = (1 - theta_i) p_i + theta_i x_best`` with
   ``theta_i = clip(sqrt(i / k), 0.1, 0.995)``, where ``x_best`` is the best point found so far
   (exploration and the finished local runs), so later starts lean towards the incumbent.
3. **Lockstep** (``lockstep=True``, gradient methods): the ``k`` starts run together and each
   round is ONE ``batch_fun_and_jac`` call; ``x_best`` is then the exploration's best point.
   ``optax:<name>`` methods advance natively (``jit(vmap(update))``); a scipy method runs
   ``k`` minimizers in ``k`` threads whose evaluation requests are gathered at a barrier and
   served in one batch per round (a minimizer that finishes early leaves the round smaller).
4. **Independent** (``independent=True``, the default with ``backend="joblib"``/``"dask"``):
   the ``k`` runs do not wait for one another: ``x_best`` is the exploration's best point
   (as in lockstep) and run ``i`` gets a fixed share of the budget, so each run is one task
   that can go to a worker process or a Dask cluster (:mod:`fitbridge._parallel`). The result
   is the same wherever the runs go (``backend="jax"`` runs them here, one after the other).

The budget (evaluations) covers everything: ``n_explore`` for the exploration, the rest shared
by the local runs (each sequential run gets an equal share of what is left, so budget that an
early finisher leaves flows to the later ones; independent runs get ``left // k`` each, the
first ``left % k`` one more; lockstep runs draw from one pool).

**Processes and clusters.** ``backend``, ``n_jobs``, ``scheduler``, ``recipe`` and ``retries``
mean what they mean in :func:`fitbridge.evaluate`: the exploration's chunks and then the
independent local runs go to joblib (loky) workers or a Dask cluster; each worker rebuilds
the problem once. A run whose worker dies is resubmitted (``retries``) or reported by
:class:`~fitbridge._parallel.WorkerLost`, never dropped.

**Logs and resuming** (``log=DIR``, ``resume=True``). Everything evaluated is kept in the
directory ``DIR`` as it finishes: ``manifest.json`` (the call's arguments and the problem's
hash, written atomically), ``explore.jsonl`` (the exploration, a :func:`fitbridge.minimize`
log; while it is evaluated its finished chunks are kept in ``explore.chunks/``, a
:class:`~fitbridge.Cache` folder removed once the log is written), and one minimize log per
local run: ``local-<i>.jsonl`` (sequential and independent runs; workers write their own
run's file, so ``DIR`` must be reachable from them at the same path) or ``lockstep.jsonl``
(the lockstep runs share one log). After an interruption (Ctrl-C, a killed process, a lost
worker) the same call with ``resume=True`` reads the finished work back and computes only
what is missing (a run stopped half-way continues through ``minimize(resume=...)``): the result
equals that of an uninterrupted call, no evaluation is lost or computed twice. Resuming with
other arguments (or another problem) is an error naming the first difference; a directory
without a manifest starts a new call.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from . import backends
from ._cache import Cache
from ._errors import fail
from ._evallog import read_log
from ._evaluate import evaluate
from ._files import atomic_write
from ._lockstep import lockstep_scipy
from ._minimize import _backend, _options, _seed, _start, minimize
from ._objective import BudgetExhausted, check_budget
from ._parallel import TASK_BACKENDS, Task, check_backend, map_tasks
from ._problem import Problem
from ._progress import progress_bar
from ._result import OptimizeResult, problem_hash

__all__ = ["multistart", "MultistartResult", "sobol_points", "tiktak_weights"]


@dataclasses.dataclass(frozen=True, eq=False)
class MultistartResult:
    """Outcome of :func:`multistart`.

    Attributes
    ----------
    best : OptimizeResult
        The best local run (for lockstep runs: the shared run, at the best point).
    runs : pandas.DataFrame
        One row per local run: ``start, theta, fun, nfev, nit, success, message`` and the
        arrays ``x0`` (its start) and ``x`` (its answer).
    exploration : pandas.DataFrame
        The exploration's history (one row per Sobol point).
    history : pandas.DataFrame
        Every evaluation in order, with ``stage`` ("explore"/"local") and ``start`` (-1 for
        the exploration) columns; ``eval`` and ``best`` run over the whole multistart.
    nfev : int
        Evaluations in total.
    wall_time : float
    """

    best: OptimizeResult
    runs: pd.DataFrame = dataclasses.field(repr=False)
    exploration: pd.DataFrame = dataclasses.field(repr=False)
    history: pd.DataFrame = dataclasses.field(repr=False)
    nfev: int
    wall_time: float

    x = property(lambda self: self.best.x, doc="Best point.")
    fun = property(lambda self: self.best.fun, doc="Loss at the best point.")
    params = property(lambda self: self.best.params, doc="Best point by parameter name.")


def tiktak_weights(k: int) -> np.ndarray:
    """``theta_i = clip(sqrt(i / k), 0.1, 0.995)`` for ``i = 0 .. k-1``."""
    return np.clip(np.sqrt(np.arange(k) / max(k, 1)), 0.1, 0.995)


def sobol_points(lower, upper, x0, n: int, *, seed: int = 0, spread: float = 2.0) -> np.ndarray:
    """``n`` scrambled Sobol points in the box (infinite sides: ``x0 -+ spread*max(1,|x0|)``).

    Examples
    --------
    >>> sobol_points([0.0, -np.inf], [1.0, np.inf], [0.5, 0.0], 4, seed=0).shape
    (4, 2)
    """
    from scipy.stats import qmc

    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    x0 = np.asarray(x0, float)
    reach = spread * np.maximum(1.0, np.abs(x0))
    lo = np.where(np.isfinite(lower), lower, np.minimum(x0, upper) - reach)
    hi = np.where(np.isfinite(upper), upper, np.maximum(x0, lo) + reach)
    m = max(0, math.ceil(math.log2(max(n, 1))))
    unit = qmc.Sobol(d=x0.size, scramble=True, rng=np.random.default_rng(seed)).random_base2(m)
    return lo + unit[:n] * (hi - lo)


def _explore_backend(X: np.ndarray, parallel: dict, *, cache: Cache | None = None,
                     logged: int = 0) -> backends.BackendInfo:
    """The exploration as a backend: ONE :func:`fitbridge.evaluate` call (here or on the
    workers of ``parallel``), recorded like a batch.

    ``cache`` keeps finished chunks (an interrupted exploration resumes from them; points read
    from it are not counted in ``problem.nfev``); ``logged`` rows of a resumed log: when they
    cover ``X`` the exploration is served from the log and nothing is evaluated."""

    def run(obj, x0, *, budget, seed, options, method):
        if logged >= len(X):  # a finished exploration, read back from its log
            F = obj.batch(X)
        else:
            extra = {} if cache is None else {"cache": cache}
            out = evaluate(obj.problem, X, index=obj.nfev, chunk_size=obj.problem._chunk_size(),
                           progress=False, **parallel, **extra)
            obj.problem.nfev -= int(out.info.get("cached", 0))  # read back, not evaluated
            F = obj.record(X, out.fun, out.aux)
        i = int(np.argmin(F))
        return backends.BackendOutcome(X[i].copy(), float(F[i]), True, 0, "Sobol exploration", 1)

    return backends.BackendInfo(name="sobol", run=run, is_global=True, batched=True)


def _check(problem, n_explore, k, budget, *, method="scipy:L-BFGS-B", lockstep=False, seed=0, x0=None,
           spread=2.0, options=None) -> None:
    """Every argument, before the exploration runs (nothing compiles on bad input)."""
    if not isinstance(problem, Problem):
        fail("multistart(problem=...)", "a fitbridge Problem", type(problem).__name__,
             "wrap your loss: Problem(loss, {'G': Free(...)})")
    info = _lockstep_method(method) if lockstep else _backend(method)
    reason = backends.incompatibility(info, problem.space)
    if reason is not None:
        fail("multistart(method=...)", "a method that can handle this problem's bounds", info.name, reason)
    _seed(seed)
    _options(options)
    if x0 is not None:
        _start(problem, x0)
    if (isinstance(spread, bool) or not isinstance(spread, (int, float, np.integer, np.floating))
            or not np.isfinite(spread) or spread <= 0):
        fail("multistart(spread=...)", "a finite number > 0", repr(spread), "pass spread=2.0")
    check_budget(budget, "multistart(budget=...)")
    for name, value, low in (("n_explore", n_explore, 1), ("k", k, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            fail(f"multistart({name}=...)", f"an int >= {low}", repr(value), f"pass e.g. {name}=4")
    if k > n_explore:
        fail("multistart(k=...)", f"at most n_explore={n_explore} local runs", repr(k),
             "lower k or raise n_explore")
    if budget is not None and budget <= n_explore:
        fail("multistart(budget=...)", f"more than n_explore={n_explore} evaluations",
             repr(budget), f"raise the budget above {n_explore} or lower n_explore")


def multistart(problem: Problem, method="scipy:L-BFGS-B", *, n_explore: int = 64, k: int = 4,
               budget: int | None = None, seed: int = 0, lockstep: bool = False,
               independent: bool | None = None, options: dict | None = None, x0=None,
               spread: float = 2.0, progress: bool = False, backend: str = "jax",
               n_jobs: int | None = None, scheduler=None, recipe=None,
               retries: int = 2, log: str | PathLike | None = None,
               resume: bool = False) -> MultistartResult:
    """Sobol exploration, then ``k`` local runs from the best points (TikTak); see the module.

    Parameters
    ----------
    problem : Problem
    method : str or callable
        The local method (any ``minimize`` method; lockstep: a gradient method).
    n_explore : int
        Sobol points, evaluated as one batch.
    k : int
        Local runs.
    budget : int, optional
        Evaluations in total (exploration included).
    seed : int
        Seeds the Sobol scrambling and (``seed + i``) local run ``i``.
    lockstep : bool
        Advance the ``k`` runs together, one batched ``fun_and_jac`` per round.
    independent : bool, optional
        Runs that do not depend on one another (module docstring, item 4). Default: True with
        ``backend="joblib"``/``"dask"``, else False (TikTak's running incumbent).
    options : dict, optional
        Passed to every local run.
    x0 : array, optional
        Centre for infinite bounds (default ``problem.x0``).
    spread : float
        Half-width, in units of ``max(1, |x0|)``, explored where a bound is infinite.
    progress : bool
        Progress bars (runs here: each run's; on workers: one over the finished runs).
    backend : {"jax", "joblib", "dask"}
        Where the exploration's chunks and the independent local runs go: this process,
        joblib workers (loky, or the backend of an active ``joblib.parallel_config``), or a
        Dask cluster. Runs elsewhere leave ``problem.nfev`` advanced by what they evaluated.
    n_jobs, scheduler, recipe, retries
        As in :func:`fitbridge.evaluate` (workers, Dask client or address, a picklable
        zero-argument builder of the problem, resubmissions after a worker death).
    log : path, optional
        A directory that keeps everything evaluated as it finishes: the exploration and one
        :func:`fitbridge.minimize` log per local run (module docstring, "Logs and resuming").
        Without ``resume`` it must be new or hold no earlier call's logs.
    resume : bool
        Continue the call logged in ``log`` (same arguments; ``backend``, ``n_jobs`` and
        ``progress`` may differ): finished work is read back, not evaluated again, an
        unfinished run continues, missing ones run. The result equals that of an
        uninterrupted call. A ``log`` without a manifest starts a new call.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from fitbridge import Free, Problem
    >>> well = Problem(lambda p, key: (p["a"] ** 2 - 1.0) ** 2 + 0.3 * p["a"],
    ...                {"a": Free(1.0, bounds=(-2.0, 2.0))})
    >>> res = multistart(well, n_explore=16, k=2)
    >>> bool(res.x[0] < 0), len(res.runs)
    (True, 2)

    The same independent runs in two worker processes give the same result:

    >>> res = multistart(well, n_explore=16, k=2, backend="joblib", n_jobs=2)  # doctest: +SKIP

    A killed or interrupted call continues where it stopped (``log`` names a directory):

    >>> res = multistart(well, n_explore=16, k=2, log="runs/well")  # doctest: +SKIP
    >>> res = multistart(well, n_explore=16, k=2, log="runs/well", resume=True)  # doctest: +SKIP
    """
    start_time = time.perf_counter()
    _check(problem, n_explore, k, budget, method=method, lockstep=lockstep, seed=seed, x0=x0, spread=spread,
           options=options)
    parallel = {"backend": backend, "n_jobs": n_jobs, "scheduler": scheduler, "recipe": recipe,
                "retries": retries}
    independent = _check_parallel(parallel, lockstep, independent)
    folder = log_folder("multistart", log, resume)
    center = problem.x0 if x0 is None else np.asarray(x0, dtype=np.float64)
    if folder is not None:  # before anything is evaluated
        mode = "lockstep" if lockstep else "independent" if independent else "sequential"
        label = f"lockstep:{_lockstep_method(method).name}" if lockstep else _backend(method).name
        open_runs(folder, resume, runs_manifest(
            "multistart", problem, method=label, mode=mode, n_explore=int(n_explore), k=int(k),
            budget=None if budget is None else int(budget), seed=int(seed),
            options=dict(options or {}), x0=center.tolist(), spread=float(spread)))
    X = sobol_points(problem.space.lower, problem.space.upper, center, n_explore, seed=seed,
                     spread=spread)
    try:
        explore = _exploration(problem, X, parallel, seed, folder)
        F = explore.history["fun"].to_numpy()
        order = np.argsort(F, kind="stable")[:k]
        left = None if budget is None else budget - n_explore
        local = _lockstep if lockstep else _independent if independent else _sequential
        extra = {"parallel": parallel} if independent else {}
        best, runs, local_history = local(problem, method, X[order], explore, left=left,
                                          seed=seed, options=dict(options or {}),
                                          progress=progress, logs=folder, **extra)
    except KeyboardInterrupt as err:
        interrupted(err, "multistart", folder)
        raise
    history = _joined_history(explore.history, local_history)
    return MultistartResult(best=best, runs=runs, exploration=explore.history,
                            history=history, nfev=int(len(history)),
                            wall_time=time.perf_counter() - start_time)


def _exploration(problem, X, parallel, seed, folder) -> OptimizeResult:
    """The Sobol exploration as one minimize run, logged to ``folder/explore.jsonl``."""
    if folder is None:
        return minimize(problem, _explore_backend(X, parallel), budget=len(X), seed=seed,
                        progress=False)
    path, chunks = folder / "explore.jsonl", folder / "explore.chunks"
    logged = len(read_log(path)[1]) if path.exists() else 0
    backend = _explore_backend(X, parallel, cache=Cache(chunks, stale="recompute"), logged=logged)
    res = minimize(problem, backend, budget=len(X), seed=seed, progress=False,
                   **log_or_resume(path))
    shutil.rmtree(chunks, ignore_errors=True)  # every point is in the log now
    return res


def _sequential(problem, method, P, explore, *, left, seed, options, progress, logs=None):
    """Local runs one after the other, each from ``(1 - theta) p_i + theta x_best``."""
    theta = tiktak_weights(len(P))
    x_best, f_best = explore.x, explore.fun
    results, rows = [], []
    for i, p in enumerate(P):
        start = (1 - theta[i]) * p + theta[i] * x_best
        if left is not None and left < 1:
            break
        share = None if left is None else max(1, left // (len(P) - i))
        res = minimize(problem, method, start, budget=share, seed=seed + i, options=options,
                       progress=progress, **log_or_resume(_local_log(logs, i)))
        left = None if left is None else left - res.nfev
        if res.fun < f_best:
            x_best, f_best = res.x, res.fun
        results.append(res)
        rows.append(_row(i, theta[i], start, res.x, res.fun, res.nfev, res.nit, res.success,
                         res.message))
    best = min(results, key=lambda r: r.fun)
    history = pd.concat([r.history.assign(start=i) for i, r in enumerate(results)],
                        ignore_index=True)
    return best, pd.DataFrame(rows), history


def _check_parallel(parallel: dict, lockstep: bool, independent) -> bool:
    """Validate the worker options; return whether the local runs are independent."""
    check_backend(parallel["backend"], "multistart", TASK_BACKENDS,
                  **{k: v for k, v in parallel.items() if k != "backend"})
    remote = parallel["backend"] != "jax"
    if independent is None:
        independent = remote and not lockstep
    if not isinstance(independent, bool):
        fail("multistart(independent=...)", "True, False or None", repr(independent),
             "pass independent=True")
    if lockstep and (independent or remote):
        fail("multistart(lockstep=True)", "backend='jax' and independent=False (lockstep runs "
             "share one batched evaluation per round in this process)",
             f"backend={parallel['backend']!r}, independent={independent}",
             "drop lockstep=True to send the runs to workers")
    if remote and not independent:
        fail("multistart(independent=False)", "independent runs with "
             f"backend={parallel['backend']!r} (a worker cannot wait for the others' incumbent)",
             "independent=False", "drop independent=False, or use backend='jax'")
    return independent


def _local_run(problem, method, start, budget, seed, options, progress, log=None):
    """One local run (a task of :func:`fitbridge._parallel.map_tasks`); with ``log``, the run
    is logged there, or continued (or read back) from it when it exists. The choice is made
    where the task runs, so a task resubmitted after its worker died continues its log."""
    return minimize(problem, method, start, budget=budget, seed=seed, options=options,
                    progress=progress, **log_or_resume(log))


def _local_log(logs: Path | None, i: int) -> str | None:
    return None if logs is None else str(logs / f"local-{i}.jsonl")


def _independent(problem, method, P, explore, *, left, seed, options, progress, parallel,
                 logs=None):
    """Runs that do not depend on one another (here, or one task each on workers)."""
    k = len(P)
    theta = tiktak_weights(k)
    starts = (1 - theta[:, None]) * P + theta[:, None] * explore.x
    shares = [None] * k if left is None else [left // k + (i < left % k) for i in range(k)]
    here = parallel["backend"] == "jax"
    tasks = [Task(i, (method, starts[i], shares[i], seed + i, options, progress and here,
                      _local_log(logs, i)))
             for i in range(k) if shares[i] is None or shares[i] >= 1]
    results = {}
    with progress_bar(len(tasks), progress=None if progress and not here else False,
                      desc="multistart", unit="run") as bar:
        for i, res in map_tasks(problem, _local_run, tasks, where="multistart", noun="run",
                                **parallel):
            results[i] = res
            bar.update(1)
    if not here:  # the workers counted on their copies of the problem
        problem.nfev += sum(computed(r) for r in results.values())
    order = sorted(results)
    rows = [_row(i, theta[i], starts[i], results[i].x, results[i].fun, results[i].nfev,
                 results[i].nit, results[i].success, results[i].message) for i in order]
    best = min((results[i] for i in order), key=lambda r: r.fun)
    history = pd.concat([results[i].history.assign(start=i) for i in order], ignore_index=True)
    return best, pd.DataFrame(rows), history


def _row(i, theta, x0, x, fun, nfev, nit, success, message) -> dict:
    return {"start": i, "theta": float(theta), "fun": float(fun), "nfev": int(nfev),
            "nit": int(nit), "success": bool(success), "message": str(message),
            "x0": np.asarray(x0, float), "x": np.asarray(x, float)}


def _lockstep_method(method) -> backends.BackendInfo:
    info = backends.get(method) if isinstance(method, str) else None
    if info is None or not info.needs_jac or info.uses_hessian:
        fail("multistart(lockstep=True)", "a gradient method without Hessians "
             "('scipy:L-BFGS-B', 'scipy:TNC', 'scipy:SLSQP', 'optax:adam' ...)", repr(method),
             "use lockstep=False for other methods")
    return info


def _lockstep(problem, method, P, explore, *, left, seed, options, progress, logs=None):
    """All starts together; ``x_best`` is the exploration's best point."""
    info = _lockstep_method(method)
    theta = tiktak_weights(len(P))
    starts = (1 - theta[:, None]) * P + theta[:, None] * explore.x
    sink: dict = {}

    def run(obj, x0, *, budget, seed, options, method):
        if info.name.startswith("optax:"):
            from .backends._optax import run_lockstep

            sink["runs"] = run_lockstep(obj, starts, method=info.name, options=options, seed=seed)
        else:
            sink["runs"] = lockstep_scipy(obj, starts, info, options=options, seed=seed)
        if obj.remaining == 0:
            raise BudgetExhausted(f"budget of {obj.budget} evaluations used up")
        i = int(np.argmin([r.fun for r in sink["runs"]]))
        return backends.BackendOutcome(sink["runs"][i].x, sink["runs"][i].fun, True, 0,
                                       f"lockstep {info.name}: {len(starts)} starts", 0)

    shared = dataclasses.replace(info, name=f"lockstep:{info.name}", run=run)
    log = None if logs is None else logs / "lockstep.jsonl"  # rounds are served in start order,
    best = minimize(problem, shared, starts[0], budget=left, seed=seed, options=options,
                    progress=progress, **log_or_resume(log))  # so the log replays
    runs = sink.get("runs", [])
    rows = [_row(i, theta[i], r.x0, r.x, r.fun, len(r.evals), r.nit, r.success, r.message)
            for i, r in enumerate(runs)]
    labels = np.full(best.nfev, -1)
    for i, r in enumerate(runs):
        labels[list(r.evals)] = i
    return best, pd.DataFrame(rows), best.history.assign(start=labels)


def _joined_history(explore: pd.DataFrame, local: pd.DataFrame) -> pd.DataFrame:
    """Exploration rows then local rows; ``eval`` and ``best`` renumbered over both."""
    frame = pd.concat([explore.assign(stage="explore", start=-1), local.assign(stage="local")],
                      ignore_index=True)
    frame["eval"] = np.arange(len(frame))
    frame["best"] = frame["fun"].cummin()
    return frame


# ------------------------------------------------------------------------------ logs and resume
RUNS_VERSION = 1  #: version of the ``manifest.json`` of a multistart / compare log directory
MANIFEST = "manifest.json"


def log_folder(call: str, log, resume) -> Path | None:
    """Validate ``log=`` (a directory) and ``resume=`` of ``call``; the directory or None."""
    if not isinstance(resume, bool):
        fail(f"{call}(resume=...)", "True or False", repr(resume), "pass resume=True")
    if log is None:
        if resume:
            fail(f"{call}(resume=True)", "log= naming the directory of the interrupted call",
                 "log=None", "pass the log directory that the interrupted call used")
        return None
    if not isinstance(log, (str, PathLike)):
        fail(f"{call}(log=...)", "a directory path (str or os.PathLike) or None",
             type(log).__name__, "pass e.g. log='runs/fit-1'")
    folder = Path(log).expanduser().absolute()  # workers may run elsewhere
    if folder.exists() and not folder.is_dir():
        fail(f"{call}(log=...)", "a directory (it holds one log file per run)",
             f"{str(folder)!r}, an existing file", "pass the path of a new or existing directory")
    return folder


def runs_manifest(call: str, problem, **arguments) -> dict:
    """The JSON manifest of a log directory: the call, its arguments, the problem's hash."""
    blob = {"fitbridge_runs": RUNS_VERSION, "call": call, "problem_hash": problem_hash(problem),
            "names": list(problem.names), **arguments}
    return json.loads(json.dumps(blob, default=repr))


def open_runs(folder: Path, resume: bool, manifest: dict) -> None:
    """Check ``folder`` against an earlier call (same arguments to resume; nothing left over
    without ``resume``), then write the manifest atomically if there is none."""
    call, path = manifest["call"], folder / MANIFEST
    logged = _read_manifest(path, call) if path.exists() else None
    if not resume:
        kept = sorted(p.name for p in (folder.iterdir() if folder.is_dir() else ())
                      if p.name == MANIFEST or p.suffix == ".jsonl" or p.name.endswith(".chunks"))
        if kept:
            shown = ", ".join(kept[:3]) + (f" and {len(kept) - 3} more" if len(kept) > 3 else "")
            fail(f"{call}(log=...)", "a new directory, or one without the logs of an earlier call",
                 f"{str(folder)!r} holding {shown}",
                 "pass resume=True to continue (or read back) that call with the same arguments, "
                 "or choose a new log directory to start over")
    if logged is None:
        text = json.dumps(manifest, indent=1)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
        return
    for key in dict.fromkeys([*manifest, *logged]):
        have, want = logged.get(key), manifest.get(key)
        if json.dumps(have, sort_keys=True) == json.dumps(want, sort_keys=True):
            continue
        where = f"{logged.get('call')} logged in {str(folder)!r}"
        if key == "problem_hash":
            expected = f"the problem of the {where} (hash {str(have)[:12]})"
            got = f"a problem with hash {str(want)[:12]}"
        else:
            expected, got = f"the {key} of the {where}, {have!r}", f"{key}={want!r}"
        hint = {"independent": "pass independent=True (the default only with backend='joblib' or 'dask')",
                "sequential": "pass independent=False", "lockstep": "pass lockstep=True"}
        fix = f"{hint[have]} to continue it; or " if key == "mode" and have in hint else ""
        fail(f"{call}(resume=True)", expected, got,
             f"{fix}call {call} with the arguments and problem of the logged call to continue "
             "it, or use a new log directory to start over")


def _read_manifest(path: Path, call: str) -> dict:
    try:
        logged = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logged = {"error": str(err)}
    if not isinstance(logged, dict) or logged.get("fitbridge_runs") != RUNS_VERSION:
        fail(f"{call}(log=...)", f"a manifest written by fitbridge (version {RUNS_VERSION})",
             f"{str(path)!r}: {str(logged)[:80]}", "use the directory of a multistart or compare "
             "call, or a new one")
    return logged


def log_or_resume(path) -> dict:
    """minimize's keywords for the log ``path``: continue it if it exists, else start it."""
    if path is None:
        return {}
    return {"resume": path} if Path(path).exists() else {"log": path}


def computed(res: OptimizeResult) -> int:
    """Evaluations of a run that were computed (not served from a resumed log)."""
    return int((res.history["source"] != "log").sum()) if "source" in res.history else res.nfev


def interrupted(err: BaseException, call: str, folder: Path | None) -> None:
    """Tell the user how to continue an interrupted logged call."""
    if folder is not None:  # in place of minimize's note on its own log (one run of many)
        notes = [n for n in getattr(err, "__notes__", []) if "minimize(..., resume=" not in n]
        if hasattr(err, "__notes__"):
            err.__notes__[:] = notes
        err.add_note(f"fitbridge: what {call} finished, and every evaluation so far, is in "
                     f"{str(folder)!r}; continue with {call}(..., log={str(folder)!r}, "
                     "resume=True)")
