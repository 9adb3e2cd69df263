"""Where chunks run: this process (``"jax"``), joblib workers (``"joblib"``), a Dask cluster
(``"dask"``). Every executor evaluates whole chunks and yields ``(chunk id, result)``.

**joblib** (``backend="joblib"``): ``joblib.Parallel`` with the active joblib configuration,
loky processes by default. Each worker rebuilds the problem once (cached per process) and
compiles its own kernel. The problem travels as a cloudpickle blob made here (it pickles:
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

Workers need fitbridge and the same package versions; scripts need the
``if __name__ == "__main__":`` guard.

**Failures.** A worker that dies (loky ``TerminatedWorkerError``, a broken process pool,
Dask ``KilledWorker``) loses only its chunks: they are resubmitted up to ``retries`` times,
with a ``RuntimeWarning`` each time, and then :class:`WorkerLost` is raised naming them.
Errors raised by the problem itself propagate at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterator

from . import _evaluate as ev
from ._errors import FitbridgeError, fail
from ._params import _did_you_mean

__all__ = ["EXECUTORS", "executor", "get_executor", "WorkerLost", "Payload"]

#: backend name -> ``run(problem, chunks, settings, *, devices, **options)``
EXECUTORS: dict[str, Callable] = {}
_WORKER_PROBLEMS: dict[str, object] = {}  # per worker process: token -> rebuilt problem
_MAX_WORKER_PROBLEMS = 4


class WorkerLost(FitbridgeError):
    """Chunks whose worker died more often than ``retries`` allows."""


def executor(name: str):
    """Decorator registering an executor under ``name``."""

    def decorate(fn):
        if name in EXECUTORS:
            fail("executor", "a new backend name", repr(name), "choose another name")
        EXECUTORS[name] = fn
        return fn

    return decorate


def get_executor(name: str) -> Callable:
    if name not in EXECUTORS:
        hint = _did_you_mean(str(name), EXECUTORS) or f"choose among {sorted(EXECUTORS)}"
        fail("evaluate(backend=...)", f"one of {sorted(EXECUTORS)}", repr(name), hint)
    return EXECUTORS[name]


@executor("jax")
def run_local(problem, chunks, settings, *, devices, **options) -> Iterator[tuple[int, dict]]:
    """This process: chunk ``k + 1`` is dispatched before chunk ``k`` is collected."""
    unused = {k: v for k, v in options.items() if v is not None and k != "retries"}
    if unused:
        fail("evaluate", "n_jobs, scheduler and recipe only with backend='joblib' or 'dask'",
             sorted(unused), "pass backend='joblib' to use processes")
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
    out = ev.compute_chunk(problem, settings, chunk, _worker_devices(settings.chunk))
    return chunk.cid, ev.finish_chunk(out, chunk)


def _death_types() -> tuple[type, ...]:
    from concurrent.futures import BrokenExecutor

    types: list[type] = [BrokenExecutor]
    try:
        from distributed.scheduler import KilledWorker

        types.append(KilledWorker)
    except ImportError:
        pass
    return tuple(types)


def _with_retries(submit, chunks, retries: int) -> Iterator[tuple[int, dict]]:
    """Run ``submit(pending chunks)`` until every chunk is back; resubmit after a worker death."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        fail("evaluate(retries=...)", "an int >= 0", repr(retries), "pass retries=2")
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
                    f"a worker died ({type(exc).__name__}: {exc}) and chunks {lost} were not "
                    f"evaluated after {retries + 1} attempts. Fix: check the workers' memory "
                    "(lower chunk_size) and logs, or raise retries.") from exc
            warnings.warn(f"a worker died ({type(exc).__name__}); resubmitting {len(lost)} "
                          f"chunk(s) {lost} (attempt {attempt + 2} of {retries + 1})",
                          RuntimeWarning, stacklevel=2)


@executor("joblib")
def run_joblib(problem, chunks, settings, *, devices, n_jobs=None, scheduler=None, recipe=None,
               retries=2) -> Iterator[tuple[int, dict]]:
    """Chunks on joblib workers (loky processes, or the backend of an active
    ``joblib.parallel_config``)."""
    import joblib

    if scheduler is not None:
        fail("evaluate(scheduler=...)", "scheduler only with backend='dask'", repr(scheduler),
             "pass backend='dask'")
    payload = Payload.of(problem, recipe)

    def submit(pending):
        parallel = joblib.Parallel(n_jobs=-1 if n_jobs is None else n_jobs,
                                   return_as="generator_unordered")
        return parallel(joblib.delayed(work)(payload, settings, c) for c in pending)

    yield from _with_retries(submit, chunks, retries)


@executor("dask")
def run_dask(problem, chunks, settings, *, devices, n_jobs=None, scheduler=None, recipe=None,
             retries=2) -> Iterator[tuple[int, dict]]:
    """Chunks on a Dask cluster through joblib's Dask backend."""
    import joblib
    from distributed import Client, get_client

    owned = None
    if scheduler is None:
        try:
            client = get_client()
        except ValueError:
            fail("evaluate(backend='dask')", "a running dask.distributed Client or scheduler=",
                 "no client", "start Client(LocalCluster()) first, or pass "
                 "scheduler='tcp://host:8786'")
    elif isinstance(scheduler, Client):
        client = scheduler
    else:
        client = owned = Client(scheduler)
    try:
        with joblib.parallel_config(backend="dask", client=client):
            yield from run_joblib(problem, chunks, settings, devices=devices, n_jobs=n_jobs,
                                  recipe=recipe, retries=retries)
    finally:
        if owned is not None:
            owned.close()
