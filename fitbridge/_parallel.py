"""Where work runs: this process (``"jax"``), joblib workers (``"joblib"``), a Dask cluster
(``"dask"``). Two kinds of work use the same machinery:

* **chunks** of :func:`fitbridge.evaluate` (every executor yields ``(chunk id, result)``), and
* **tasks** of :func:`map_tasks`: whole optimizer runs, e.g. each local run of
  :func:`fitbridge.multistart` or each ``(method, restart, seed)`` run of
  :func:`fitbridge.compare`, each one task ``fn(problem, *args)`` in a worker.

**joblib** (``backend="joblib"``): ``joblib.Parallel`` with the active joblib configuration,
loky processes by default. Each worker rebuilds the problem once (cached per process) and
compiles its own kernels. The problem travels as a cloudpickle blob made here (it pickles:
its JAX functions are re-traced in the worker), or, with ``recipe=``, as a picklable
zero-argument callable that builds it in the worker (e.g. ``functools.partial(build, ...)``
of a module-level function); the worker checks that the rebuilt problem has the same
``spec_hash()``. Inside ``with joblib.parallel_config(backend="dask"):`` and a
``dask.distributed.Client`` the same call runs on the Dask cluster.

**dask** (``backend="dask"``): shorthand for joblib's Dask backend. ``scheduler`` is a
``distributed.Client``, a scheduler address, or None for the current client. A real cluster::

    # on the cluster: dask scheduler  (prints tcp://10.0.0.5:8786)
    #                 dask worker tcp://10.0.0.5:8786 --nworkers 1 --nthreads 1  (per node/GPU)
    fb.explore(problem, grid, backend="dask", scheduler="tcp://10.0.0.5:8786")
    fb.multistart(problem, k=32, backend="dask", scheduler="tcp://10.0.0.5:8786")

Workers need fitbridge and the same package versions; scripts need the
``if __name__ == "__main__":`` guard.

**Failures.** A worker that dies (loky ``TerminatedWorkerError``, a broken process pool,
Dask ``KilledWorker``) loses only its chunks or tasks: they are resubmitted up to ``retries``
times, with a ``RuntimeWarning`` each time, and then :class:`WorkerLost` is raised naming
them; nothing is silently dropped. Errors raised by the problem itself propagate at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator

from . import _evaluate as ev
from ._errors import FitbridgeError, fail
from ._params import _did_you_mean

__all__ = ["EXECUTORS", "TASK_BACKENDS", "executor", "get_executor", "WorkerLost", "Payload",
           "Task", "map_tasks", "check_backend"]

#: backend name -> ``run(problem, chunks, settings, *, devices, **options)``
EXECUTORS: dict[str, Callable] = {}
TASK_BACKENDS = ("dask", "jax", "joblib")  #: what ``backend=`` accepts in map_tasks
_WORKER_PROBLEMS: dict[str, object] = {}  # per worker process: token -> rebuilt problem
_MAX_WORKER_PROBLEMS = 4


class WorkerLost(FitbridgeError):
    """Chunks or tasks whose worker died more often than ``retries`` allows."""


def executor(name: str):
    """Decorator registering an executor under ``name``."""

    def decorate(fn):
        if name in EXECUTORS:
            fail("executor", "a new backend name", repr(name), "choose another name")
        EXECUTORS[name] = fn
        return fn

    return decorate


def get_executor(name: str) -> Callable:
    check_backend(name, "evaluate")
    return EXECUTORS[name]


def check_backend(name, where: str, choices=EXECUTORS, **options) -> None:
    """Fail unless ``name`` is among ``choices``, worker options (``n_jobs``, ``scheduler``,
    ``recipe``) come only with worker backends, ``scheduler`` only with ``"dask"``, and
    ``retries`` (if given) is an int >= 0."""
    if not isinstance(name, str) or name not in choices:
        hint = _did_you_mean(str(name), choices) or f"choose among {sorted(choices)}"
        fail(f"{where}(backend=...)", f"one of {sorted(choices)}", repr(name), hint)
    unused = {k: v for k, v in options.items() if v is not None and k != "retries"}
    if name == "jax" and unused:
        fail(where, "n_jobs, scheduler and recipe only with backend='joblib' or 'dask'",
             sorted(unused), "pass backend='joblib' to use processes")
    if name == "joblib":
        _no_scheduler(options.get("scheduler"), where)
    if "retries" in options:
        _check_retries(options["retries"], where)


@executor("jax")
def run_local(problem, chunks, settings, *, devices, **options) -> Iterator[tuple[int, dict]]:
    """This process: chunk ``k + 1`` is dispatched before chunk ``k`` is collected."""
    check_backend("jax", "evaluate", **options)
    pending = None
    for chunk in chunks:
        out = ev.compute_chunk(problem, settings, chunk, devices)
        if pending is not None:
            yield pending[0].cid, ev.finish_chunk(pending[1], pending[0])
        pending = (chunk, out)
    if pending is not None:
        yield pending[0].cid, ev.finish_chunk(pending[1], pending[0])


# ------------------------------------------------------------------------- workers
@dataclasses.dataclass(frozen=True)
class Payload:
    """How a worker gets the problem: a cloudpickle ``blob`` or a ``recipe``, and a token."""

    token: str
    spec_hash: str
    blob: bytes | None = None
    recipe: Callable | None = None

    @classmethod
    def of(cls, problem, recipe=None) -> Payload:
        import cloudpickle

        spec = problem.spec_hash()
        if recipe is not None:
            if not callable(recipe):
                fail("evaluate(recipe=...)",
                     "a picklable zero-argument callable building the problem",
                     type(recipe).__name__, "pass functools.partial(build_problem, ...)")
            ident = hashlib.sha256(cloudpickle.dumps(recipe)).hexdigest()
            return cls(token=f"recipe:{ident}:{spec}", spec_hash=spec, recipe=recipe)
        blob = cloudpickle.dumps(problem)
        return cls(token=f"blob:{hashlib.sha256(blob).hexdigest()}", spec_hash=spec, blob=blob)

    def problem(self):
        """The problem in this process (built once per process and token)."""
        cached = _WORKER_PROBLEMS.get(self.token)
        if cached is not None:
            return cached
        if self.recipe is not None:
            problem = self.recipe()
        else:
            import cloudpickle

            problem = cloudpickle.loads(self.blob)
        if problem.spec_hash() != self.spec_hash:
            fail("evaluate(recipe=...)", "a recipe that builds the same problem in the worker",
                 f"spec_hash {problem.spec_hash()[:12]} instead of {self.spec_hash[:12]}",
                 "build the problem from the same data and settings (check seeds and paths)")
        while len(_WORKER_PROBLEMS) >= _MAX_WORKER_PROBLEMS:
            _WORKER_PROBLEMS.pop(next(iter(_WORKER_PROBLEMS)))
        _WORKER_PROBLEMS[self.token] = problem
        return problem


def _worker_devices(chunk: int) -> list:
    """The largest group of this worker's devices that divides the chunk."""
    import jax

    devices = jax.devices()
    k = max(g for g in range(1, len(devices) + 1) if chunk % g == 0)
    return devices[:k]


def work(payload: Payload, settings, chunk) -> tuple[int, dict]:
    """Evaluate one chunk in a worker."""
    problem = payload.problem()
    out = ev.compute_chunk(problem, settings, chunk, _worker_devices(len(chunk.x)))
    return chunk.cid, ev.finish_chunk(out, chunk)


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of :func:`map_tasks`: ``fn(problem, *args)``, identified by ``cid``."""

    cid: int
    args: tuple


def run_task(payload: Payload, fn: Callable, task: Task) -> tuple[int, object]:
    """Run one task in a worker."""
    return task.cid, fn(payload.problem(), *task.args)


def _death_types() -> tuple[type, ...]:
    from concurrent.futures import BrokenExecutor

    types: list[type] = [BrokenExecutor]
    try:
        from distributed.scheduler import KilledWorker

        types.append(KilledWorker)
    except ImportError:
        pass
    return tuple(types)


def _check_retries(retries, where: str) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        fail(f"{where}(retries=...)", "an int >= 0", repr(retries), "pass retries=2")


def _with_retries(submit, chunks, retries: int, noun: str = "chunk") -> Iterator[tuple[int, dict]]:
    """Run ``submit(pending items)`` until every item (with a ``cid``) is back; resubmit the
    missing ones after a worker death, then raise :class:`WorkerLost`."""
    _check_retries(retries, "evaluate")
    pending = {c.cid: c for c in chunks}
    deaths = _death_types()
    for attempt in range(retries + 1):
        try:
            for cid, out in submit(list(pending.values())):
                pending.pop(cid)
                yield cid, out
            return
        except deaths as exc:
            lost = sorted(pending)
            if attempt == retries:
                raise WorkerLost(
                    f"a worker died ({type(exc).__name__}: {exc}) and {noun}s {lost} were not "
                    f"evaluated after {retries + 1} attempts. Fix: check the workers' memory "
                    "(lower chunk_size) and logs, or raise retries.") from exc
            warnings.warn(f"a worker died ({type(exc).__name__}); resubmitting {len(lost)} "
                          f"{noun}(s) {lost} (attempt {attempt + 2} of {retries + 1})",
                          RuntimeWarning, stacklevel=2)


def _joblib_submit(n_jobs, work_fn: Callable, *head) -> Callable:
    """``submit(pending)``: ``work_fn(*head, item)`` for each item on joblib's active backend,
    results as they finish."""
    import joblib

    def submit(pending):
        parallel = joblib.Parallel(n_jobs=-1 if n_jobs is None else n_jobs,
                                   return_as="generator_unordered")
        return parallel(joblib.delayed(work_fn)(*head, item) for item in pending)

    return submit


@contextlib.contextmanager
def _dask(scheduler, where: str):
    """joblib's Dask backend on ``scheduler`` (a Client, an address, or the current client)."""
    import joblib
    from distributed import Client, get_client

    owned = None
    if scheduler is None:
        try:
            client = get_client()
        except ValueError:
            fail(f"{where}(backend='dask')", "a running dask.distributed Client or scheduler=",
                 "no client", "start Client(LocalCluster()) first, or pass "
                 "scheduler='tcp://host:8786'")
    elif isinstance(scheduler, Client):
        client = scheduler
    else:
        client = owned = Client(scheduler)
    try:
        with joblib.parallel_config(backend="dask", client=client):
            yield client
    finally:
        if owned is not None:
            owned.close()


def _no_scheduler(scheduler, where: str) -> None:
    if scheduler is not None:
        fail(f"{where}(scheduler=...)", "scheduler only with backend='dask'", repr(scheduler),
             "pass backend='dask'")


@executor("joblib")
def run_joblib(problem, chunks, settings, *, devices, n_jobs=None, scheduler=None, recipe=None,
               retries=2) -> Iterator[tuple[int, dict]]:
    """Chunks on joblib workers (loky processes, or the backend of an active
    ``joblib.parallel_config``)."""
    _no_scheduler(scheduler, "evaluate")
    submit = _joblib_submit(n_jobs, work, Payload.of(problem, recipe), settings)
    yield from _with_retries(submit, chunks, retries)


@executor("dask")
def run_dask(problem, chunks, settings, *, devices, n_jobs=None, scheduler=None, recipe=None,
             retries=2) -> Iterator[tuple[int, dict]]:
    """Chunks on a Dask cluster through joblib's Dask backend."""
    with _dask(scheduler, "evaluate"):
        yield from run_joblib(problem, chunks, settings, devices=devices, n_jobs=n_jobs,
                              recipe=recipe, retries=retries)


def map_tasks(problem, fn: Callable, tasks: Iterable[Task], *, backend: str = "jax",
              n_jobs: int | None = None, scheduler=None, recipe: Callable | None = None,
              retries: int = 2, where: str = "map_tasks",
              noun: str = "task") -> Iterator[tuple[int, object]]:
    """Yield ``(task.cid, fn(problem, *task.args))`` for every task, in completion order.

    ``backend="jax"`` runs them one after the other in this process (on ``problem`` itself);
    ``"joblib"`` and ``"dask"`` run each in a worker on the problem rebuilt there (module
    docstring), with ``fn`` and the results pickled, and retry the tasks of dead workers.
    ``fn`` must be picklable (a module-level function) and pure given its arguments, so a
    task gives the same result wherever it runs.
    """
    tasks = list(tasks)
    check_backend(backend, where, TASK_BACKENDS, n_jobs=n_jobs, scheduler=scheduler,
                  recipe=recipe, retries=retries)
    if backend == "jax":
        for task in tasks:
            yield task.cid, fn(problem, *task.args)
        return
    submit = _joblib_submit(n_jobs, run_task, Payload.of(problem, recipe), fn)
    if backend == "dask":
        with _dask(scheduler, where):
            yield from _with_retries(submit, tasks, retries, noun)
    else:
        yield from _with_retries(submit, tasks, retries, noun)
