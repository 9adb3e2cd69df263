"""Compare optimizers on one problem: a tidy table and best-so-far convergence curves.

Every run goes through :func:`fitbridge.minimize` with the same ``budget``. Runs are indexed
by ``(method, restart, seed)``: ``restart`` picks the starting point (restart 0 starts at
``x0``, restart ``r >= 1`` at the ``r``-th point of a scrambled Sobol sequence in the box,
the same points for every method), ``seed`` seeds the optimizer.

**Processes and clusters.** Every run is independent of the others, so with
``backend="joblib"`` (loky processes, or the backend of an active ``joblib.parallel_config``)
or ``backend="dask"`` each ``(method, restart, seed)`` run is one task on a worker
(:mod:`fitbridge._parallel`; ``n_jobs``, ``scheduler``, ``recipe``, ``retries`` as in
:func:`fitbridge.evaluate`). The table and the histories are the same as run here (only the
``wall_time`` column differs); a run whose worker dies is resubmitted or reported by
:class:`~fitbridge._parallel.WorkerLost`, never dropped.

**Logs and resuming** (``log=DIR``, ``resume=True``). Every run writes its own
:func:`fitbridge.minimize` log in the directory ``DIR`` as it goes,
``run-<index>-<method>-r<restart>-s<seed>.jsonl`` (e.g. ``run-003-scipy_L-BFGS-B-r1-s1.jsonl``;
workers write their own run's file, so ``DIR`` must be reachable from them at the same path),
beside ``manifest.json`` (methods, budget, restarts, seeds, options, ``x0`` and the problem's
hash, written atomically). After an interruption (Ctrl-C, a killed process, a lost worker)
the same call with ``resume=True`` reads the finished runs back from their logs (nothing is
evaluated again), continues an unfinished run through ``minimize(resume=...)`` and runs the
missing ones: the table and the histories equal those of an uninterrupted call (but
``wall_time``), no evaluation is lost or computed twice. Resuming with other arguments (or
another problem) is an error naming the first difference; a directory without a manifest
starts a new call.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from os import PathLike

import numpy as np
import pandas as pd

from . import backends
from ._errors import fail
from ._minimize import _start
from ._multistart import (_local_run, computed, interrupted, log_folder, open_runs,
                          runs_manifest, sobol_points)
from ._parallel import TASK_BACKENDS, Task, check_backend, map_tasks
from ._problem import Problem
from ._progress import progress_bar

__all__ = ["compare", "plot_convergence", "Histories", "TABLE_COLUMNS"]

TABLE_COLUMNS = ("method", "restart", "seed", "fun", "fc_r", "nfev", "wall_time", "success",
                 "status", "message", "x")
_HISTORY_COLUMNS = ("method", "restart", "seed", "eval", "fun", "best")


@dataclasses.dataclass(frozen=True, eq=False)
class Histories:
    """The per-evaluation histories of a :func:`compare` run, in ``table.attrs["histories"]``.

    ``frame`` has one row per evaluation: ``method, restart, seed, eval, fun, best`` (and
    ``fc_r`` when the loss reports it). The wrapper compares by identity and is never
    deep-copied, so pandas carries it cheaply through sorting and filtering, and
    concatenating tables from different runs drops it instead of failing.
    """

    frame: pd.DataFrame

    def __deepcopy__(self, memo):
        return self


def _check(problem, methods, budget, restarts, seeds, options=None, x0=None) -> list:
    if not isinstance(problem, Problem):
        fail("compare(problem=...)", "a fitbridge Problem", type(problem).__name__,
             "wrap your loss: Problem(loss, {'G': Free(...)})")
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        fail("compare(methods=...)", "a non-empty list of methods", repr(methods),
             "pass e.g. ['scipy:L-BFGS-B', 'cma']")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        fail("compare(budget=...)", "a positive int (evaluations per run)", repr(budget),
             "pass e.g. budget=300")
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        fail("compare(restarts=...)", "an int >= 1", repr(restarts), "pass restarts=4")
    if (isinstance(seeds, (int, np.integer, str)) or not isinstance(seeds, (Sequence, np.ndarray))
            or not len(seeds)
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds)):
        fail("compare(seeds=...)", "a non-empty sequence of ints >= 0", repr(seeds), "pass seeds=(0, 1)")
    if options is not None and not isinstance(options, Mapping):
        fail("compare(options=...)", "a dict {method: options}", type(options).__name__,
             "pass e.g. options={'cma': {'popsize': 8}}")
    if x0 is not None:
        _start(problem, x0)
    for method in methods:  # fail before anything runs
        if isinstance(method, str):
            reason = backends.incompatibility(backends.get(method), problem.space)
            if reason is not None:
                fail("compare(methods=...)", "methods that can handle this problem", method, reason)
    return list(methods)


def _starts(problem: Problem, x0, restarts: int) -> np.ndarray:
    x0 = problem.x0 if x0 is None else np.asarray(x0, dtype=np.float64)
    if restarts == 1:
        return x0[None]
    points = sobol_points(problem.space.lower, problem.space.upper, x0, restarts - 1, seed=0)
    return np.vstack([x0, points])


def _label(method) -> str:
    if isinstance(method, str):
        return backends.get(method).name
    return f"custom:{getattr(method, '__qualname__', type(method).__qualname__)}"


def _log_name(index: int, runs: int, label: str, restart: int, seed: int) -> str:
    """``run-003-scipy_L-BFGS-B-r1-s0.jsonl``: stable, and unique by the run's index."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "method"
    return f"run-{index:0{max(3, len(str(runs - 1)))}d}-{slug}-r{restart}-s{seed}.jsonl"


def _row(label, restart, seed, res) -> dict:
    hist = res.history
    fc_r = np.nan
    if "fc_r" in hist.columns and len(hist):
        fc_r = float(hist["fc_r"].iloc[int(np.argmin(hist["fun"].to_numpy()))])
    return {"method": label, "restart": restart, "seed": int(seed), "fun": float(res.fun),
            "fc_r": fc_r, "nfev": int(res.nfev), "wall_time": float(res.wall_time),
            "success": bool(res.success), "status": int(res.status), "message": res.message,
            "x": np.asarray(res.x, dtype=np.float64)}


def _history(label, restart, seed, res) -> pd.DataFrame:
    aux = [c for c in res.history.columns if c == "fc_r"]
    frame = res.history[["eval", "fun", "best", *aux]].copy()
    frame.insert(0, "seed", int(seed))
    frame.insert(0, "restart", restart)
    frame.insert(0, "method", label)
    return frame


def compare(problem: Problem, methods, *, budget: int, restarts: int = 1,
            seeds: Sequence[int] = (0,), options: dict | None = None, x0=None,
            progress: bool = False, backend: str = "jax", n_jobs: int | None = None,
            scheduler=None, recipe=None, retries: int = 2, log: str | PathLike | None = None,
            resume: bool = False) -> pd.DataFrame:
    """Run every method ``restarts x len(seeds)`` times with the same budget; tabulate.

    Parameters
    ----------
    problem : Problem
    methods : list of str or callable
        Methods for :func:`fitbridge.minimize`.
    budget : int
        Evaluations per run, the same for every method.
    restarts : int
        Starting points per method (module docstring).
    seeds : sequence of int
        Optimizer seeds; each restart runs once per seed.
    options : dict, optional
        ``{method: options}`` passed to ``minimize`` for that method.
    x0 : array, optional
        Start of restart 0 (default ``problem.x0``).
    progress : bool
        Progress bars (runs here: each run's; on workers: one over the finished runs).
    backend : {"jax", "joblib", "dask"}
        Run here one after the other, or each run as one task on joblib workers or a Dask
        cluster (module docstring). Runs elsewhere leave ``problem.nfev`` advanced by what
        they evaluated.
    n_jobs, scheduler, recipe, retries
        As in :func:`fitbridge.evaluate` (workers, Dask client or address, a picklable
        zero-argument builder of the problem, resubmissions after a worker death).
    log : path, optional
        A directory that keeps one :func:`fitbridge.minimize` log per run, written as the
        run evaluates, and a manifest of the call (module docstring, "Logs and resuming").
        Without ``resume`` it must be new or hold no earlier call's logs.
    resume : bool
        Continue the call logged in ``log`` (same arguments; ``backend``, ``n_jobs`` and
        ``progress`` may differ): finished runs are read back from their logs, not evaluated
        again, an unfinished run continues, missing ones run. The table equals that of an
        uninterrupted call. A ``log`` without a manifest starts a new call.

    Returns
    -------
    pandas.DataFrame
        One row per ``(method, restart, seed)`` with columns :data:`TABLE_COLUMNS`: the best
        loss ``fun``, ``fc_r`` at that evaluation (NaN when the loss reports none), ``nfev``,
        ``wall_time`` (s), ``success``, ``status``, ``message`` and ``x``. The per-evaluation
        histories are in ``table.attrs["histories"].frame`` (see :class:`Histories`), which
        :func:`plot_convergence` draws.

    Examples
    --------
    >>> from fitbridge import Free, Problem
    >>> bowl = Problem(lambda p, key: (p["a"] - 0.3) ** 2, {"a": Free(0.0, bounds=(-1, 1))})
    >>> table = compare(bowl, ["scipy:L-BFGS-B", "cma"], budget=40, restarts=2)
    >>> table[["method", "restart"]].values.tolist()
    [['scipy:L-BFGS-B', 0], ['scipy:L-BFGS-B', 1], ['cma', 0], ['cma', 1]]
    >>> table.attrs["histories"].frame.columns.tolist()
    ['method', 'restart', 'seed', 'eval', 'fun', 'best']

    The same runs in two worker processes give the same table (but ``wall_time``):

    >>> table = compare(bowl, ["cma"], budget=40, backend="joblib", n_jobs=2)  # doctest: +SKIP

    An interrupted comparison continues where it stopped (``log`` names a directory):

    >>> table = compare(bowl, ["cma"], budget=40, log="runs/bowl")  # doctest: +SKIP
    >>> table = compare(bowl, ["cma"], budget=40, log="runs/bowl", resume=True)  # doctest: +SKIP
    """
    methods = _check(problem, methods, budget, restarts, seeds, options, x0)
    check_backend(backend, "compare", TASK_BACKENDS, n_jobs=n_jobs, scheduler=scheduler,
                  recipe=recipe, retries=retries)
    folder = log_folder("compare", log, resume)
    options = dict(options or {})
    starts = _starts(problem, x0, restarts)
    here = backend == "jax"
    runs, plan = [], []
    for method in methods:
        label = _label(method)
        opts = options.get(method, options.get(label, {}))
        for restart, start in enumerate(starts):
            for seed in seeds:
                runs.append((label, restart, int(seed)))
                plan.append((method, start, budget, int(seed), opts, progress and here))
    names = [_log_name(i, len(runs), *run) for i, run in enumerate(runs)]
    if folder is not None:  # before anything is evaluated
        open_runs(folder, resume, runs_manifest(
            "compare", problem, methods=[_label(m) for m in methods], budget=int(budget),
            restarts=int(restarts), seeds=[int(s) for s in seeds],
            options=[options.get(m, options.get(_label(m), {})) for m in methods],
            x0=starts[0].tolist(), runs=names))
    tasks = [Task(i, (*args, None if folder is None else str(folder / names[i])))
             for i, args in enumerate(plan)]
    results = {}
    try:
        with progress_bar(len(tasks), progress=None if progress and not here else False,
                          desc="compare", unit="run") as bar:
            for i, res in map_tasks(problem, _local_run, tasks, backend=backend, n_jobs=n_jobs,
                                    scheduler=scheduler, recipe=recipe, retries=retries,
                                    where="compare", noun="run"):
                results[i] = res
                bar.update(1)
    except KeyboardInterrupt as err:
        interrupted(err, "compare", folder)
        raise
    if not here:  # the workers counted on their copies of the problem
        problem.nfev += sum(computed(r) for r in results.values())
    rows = [_row(*run, results[i]) for i, run in enumerate(runs)]
    histories = [_history(*run, results[i]) for i, run in enumerate(runs)]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table.attrs["histories"] = Histories(pd.concat(histories, ignore_index=True))
    return table


def _curves(histories: pd.DataFrame, method: str) -> np.ndarray:
    """(runs, evaluations) best-so-far losses of one method, each run carried to the longest."""
    runs = [g["best"].to_numpy(dtype=np.float64)
            for _, g in histories[histories["method"] == method].groupby(["restart", "seed"])]
    length = max(len(r) for r in runs)
    return np.stack([np.concatenate([r, np.full(length - len(r), r[-1])]) for r in runs])


def _histories_of(obj):
    """The histories frame of a table (only its rows' runs), a Histories, or a frame."""
    if isinstance(obj, pd.DataFrame) and isinstance(obj.attrs.get("histories"), Histories):
        keys = ["method", "restart", "seed"]
        runs = obj[keys].drop_duplicates()
        return obj.attrs["histories"].frame.merge(runs, on=keys, how="inner")
    return obj.frame if isinstance(obj, Histories) else obj


def plot_convergence(table_or_histories: pd.DataFrame, path: str | PathLike | None = None, *,
                     ax=None, band: tuple[float, float] = (25.0, 75.0), log: bool | None = None):
    """Best-so-far loss vs evaluations, one line per method (median over runs, with a band).

    Parameters
    ----------
    table_or_histories : DataFrame or Histories
        A :func:`compare` table (the runs of its rows are drawn, so a filtered table draws
        fewer), its ``attrs["histories"]``, or a histories frame.
    path : path, optional
        Save the figure there (PNG by the suffix).
    ax : matplotlib Axes, optional
        Draw into it; default a new figure (no pyplot state is touched).
    band : (low, high)
        Percentiles of the shaded band across restarts and seeds.
    log : bool, optional
        Log-scaled loss axis; default when every loss is positive.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    frame = _histories_of(table_or_histories)
    if not isinstance(frame, pd.DataFrame) or not {"method", "eval", "best"} <= set(frame.columns):
        got = list(frame.columns)[:6] if isinstance(frame, pd.DataFrame) else type(frame).__name__
        fail("plot_convergence", "a compare() table or its attrs['histories']", got,
             "pass the table that compare() returned")
    if ax is None:
        ax = Figure(figsize=(6.4, 4.2), layout="constrained").add_subplot()
    _draw(ax, frame, band)
    if log if log is not None else bool((frame["best"] > 0).all()):
        ax.set_yscale("log")
    if path is not None:
        ax.figure.savefig(path, dpi=120)
    return ax.figure


def _draw(ax, frame: pd.DataFrame, band) -> None:
    """One median line and percentile band per method."""
    for method in dict.fromkeys(frame["method"]):
        curves = _curves(frame, method)
        x = np.arange(1, curves.shape[1] + 1)
        line, = ax.plot(x, np.median(curves, axis=0), label=f"{method} (n={len(curves)})")
        lo, hi = np.percentile(curves, band, axis=0)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best loss so far")
    ax.legend(frameon=False)
