"""Batch evaluation: many points of a problem as jit(vmap) over fixed-size padded chunks,
sharded across devices, in float64 or float32, in this process or on workers.

**Chunks.** ``X (n, d)`` is cut into chunks of ``chunk_size`` rows; the last one (and a batch
smaller than one chunk) is padded with its last row up to the smallest power of two per device
that holds it. So at most ``log2(chunk_size) + 1`` shapes exist per problem and setting, each
compiled once: once they have been seen a new ``n`` compiles nothing, and padding never more
than doubles the tail (on a CPU a padded row costs as much as a real one). A one-row chunk on
one device (a local optimizer's single point) runs the point function without ``vmap``. The
default ``chunk_size`` comes from a memory budget: :func:`bytes_per_point` (recorded samples x
nodes x itemsize x a factor, from the simulation plan) against a share of the device memory,
capped at 16 points per device on a CPU (batching does not pay there) and 1024 on GPUs/TPUs.

**One batching path.** :meth:`Problem.evaluate` (``fun``, ``fun_and_jac``, ``batch``: every
optimizer's points, CMA-ES generations, Nevergrad ``num_workers`` rounds, vectorized
differential evolution, lockstep restarts) calls :func:`evaluate` in this process, so
populations are chunked, padded and sharded exactly like grids.

**Devices.** Each chunk is split along the batch axis over a 1-D ``jax.make_mesh`` of the
devices (``NamedSharding(mesh, P("batch"))`` inputs, a ``shard_map`` of the vmapped kernel),
so every device runs the same vmapped code on its slice; one device takes the same path.
CPU cores count as one device unless you start Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` (fitbridge never sets it).

**Precision.** ``"float64"`` (default) traces under the scoped ``jax.enable_x64(True)``.
``"float32"`` traces and runs the whole simulation with x64 disabled (float32 state, BOLD
and FC); results come back as float64 NumPy. Meant for exploration: a 16 x 16 (G, w) grid
on the HCP data (80 nodes, 150 s) ran 2.9x faster on a 2-core CPU, with ``fc_r`` within
1e-5 of float64 (within 1.5e-4 and FC entries within 1e-3 on the tests' short 5-node runs).
Near the saturation edge a point may flip between finite and NaN. Gradients are float64 only.

**Observables** (``FCProblem`` only): ``"fc"`` ``(n, n)``, ``"bold"`` ``(frames, n)``,
``"bold_std"`` ``(n,)``, ``"mean_fc"`` and ``"fc_rmse"`` (scalars), computed in the same pass
as the loss and ``fc_r``. Register more with :func:`register_observable`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import fail
from ._observe import corr, fc, upper
from ._problem import Problem

__all__ = ["Batch", "Settings", "Chunk", "OBSERVABLES", "PRECISIONS", "register_observable",
           "bytes_per_point", "auto_chunk_size", "plan_chunks", "resolve_devices",
           "compute_chunk", "finish_chunk", "with_noise"]

#: precision -> (float dtype, index dtype, x64 enabled while tracing)
PRECISIONS = {"float64": (np.float64, np.int64, True), "float32": (np.float32, np.int32, False)}
_CAP_PER_DEVICE = {"cpu": 16}
_CAP_ACCELERATOR = 1024
_GENERIC_POINT_BYTES = 1 << 20  # a loss that is not a simulation: assume 1 MiB per point

#: observable name -> ``fn(ctx) -> array``; ``ctx`` has ``bold`` (frames, n), ``fc`` (n, n),
#: ``target`` (n, n) and ``skip`` (frames dropped before FC)
OBSERVABLES: dict[str, Callable[[dict], jax.Array]] = {}


def register_observable(name: str):
    """Decorator registering ``fn(ctx) -> array`` as an observable (module docstring)."""

    def decorate(fn):
        if name in OBSERVABLES:
            fail("register_observable", "a new observable name", repr(name), "choose another name")
        OBSERVABLES[name] = fn
        return fn

    return decorate


register_observable("fc")(lambda ctx: ctx["fc"])
register_observable("bold")(lambda ctx: ctx["bold"])
register_observable("bold_std")(lambda ctx: jnp.std(ctx["bold"][ctx["skip"]:], axis=0))
register_observable("mean_fc")(lambda ctx: jnp.mean(upper(ctx["fc"])))
register_observable("fc_rmse")(
    lambda ctx: jnp.sqrt(jnp.mean((upper(ctx["fc"]) - upper(ctx["target"])) ** 2)))


@dataclasses.dataclass(frozen=True)
class Batch:
    """Results of :func:`fitbridge.evaluate` for ``n`` points.

    Attributes
    ----------
    fun : ndarray (n,)
        Losses (NaN where the simulation saturated).
    jac : ndarray (n, d) or None
        Gradients (``grad=True``).
    aux : dict[str, ndarray (n,)]
        Aux values of the loss (``fc_r`` for an FCProblem).
    observables : dict[str, ndarray (n, ...)]
        Requested observables.
    info : dict
        ``chunk_size, n_chunks, n_devices, precision, backend, computed, cached, wall_time``.
    """

    fun: np.ndarray
    jac: np.ndarray | None
    aux: dict
    observables: dict
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a chunk computation needs besides the problem and its rows (hashable, picklable).

    ``chunk`` is the batch's full chunk length; a tail chunk may be shorter (its own rows).
    """

    precision: str = "float64"
    grad: bool = False
    observables: tuple[str, ...] = ()
    chunk: int = 16


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """Rows ``lo:hi`` of a batch, padded (``x``, ``index``; their length is the compiled shape)."""

    cid: int
    lo: int
    hi: int
    x: np.ndarray
    index: np.ndarray


# --------------------------------------------------------------------------- planning
def resolve_devices(devices=None) -> list:
    """``None``: every device of the default backend; an int ``k``: the first ``k``; or a list."""
    available = jax.devices()
    if devices is None:
        return list(available)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            fail("evaluate(devices=...)", f"between 1 and {len(available)} devices", repr(devices),
                 "pass devices=None to use them all")
        return list(available[:devices])
    devs = list(devices)
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        fail("evaluate(devices=...)", "None, an int or a list of jax devices", repr(devices),
             "pass e.g. devices=jax.devices()[:2]")
    return devs


def bytes_per_point(problem: Problem, *, precision: str = "float64", grad: bool = False) -> int:
    """Estimated device memory of one point: recorded samples x nodes x itemsize x a factor.

    The factor (4 for values, ``4 (d + 1)`` in forward mode and 16 in reverse mode for
    gradients) covers the recorded trace, BOLD, FC and the intermediates of one evaluation.
    Problems that are not simulations count 1 MiB per point.
    """
    from ._fcproblem import FCProblem

    if not isinstance(problem, FCProblem):
        return _GENERIC_POINT_BYTES
    itemsize = np.dtype(PRECISIONS[precision][0]).itemsize
    plan, n = problem.sim.plan, problem.sim.network.n_nodes
    factor = 4 if not grad else (4 * (problem.dim + 1) if problem.mode == "forward" else 16)
    return int(itemsize * n * (plan["n_samples"] * factor + 4 * n + 64))


def _device_memory(device) -> int:
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] // 2)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def auto_chunk_size(problem: Problem, devices: list, *, precision: str = "float64",
                    grad: bool = False, memory: int | None = None) -> int:
    """Chunk size from a memory budget: a power of two per device, times the device count.

    ``memory`` is the budget in bytes per device (default: half a GPU's memory, or a quarter
    of the host's RAM shared by the host devices).
    """
    per_point = bytes_per_point(problem, precision=precision, grad=grad)
    if memory is None:
        memory = _device_memory(devices[0])
        memory //= len(devices) if devices[0].platform == "cpu" else 1
    cap = _CAP_PER_DEVICE.get(devices[0].platform, _CAP_ACCELERATOR)
    per_device = int(min(cap, max(1, memory // per_point)))
    return len(devices) * (1 << (per_device.bit_length() - 1))


def plan_chunks(n: int, n_devices: int, chunk_size: int) -> int:
    """The chunk length of a batch of ``n``: ``chunk_size``, or for small batches the smallest
    power of two per device that holds them."""
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1 or chunk_size % n_devices):
        fail("evaluate(chunk_size=...)", f"a positive multiple of the device count ({n_devices})",
             repr(chunk_size), f"pass e.g. chunk_size={16 * n_devices}")
    need = -(-max(n, 1) // n_devices)
    return n_devices * min(chunk_size // n_devices, 1 << (need - 1).bit_length())


def make_chunks(X: np.ndarray, index: np.ndarray, chunk: int, n_devices: int = 1) -> list[Chunk]:
    """Consecutive chunks of ``chunk`` rows; the last padded with its last row to
    ``plan_chunks(rows left, n_devices, chunk)`` rows."""
    out = []
    for cid, lo in enumerate(range(0, X.shape[0], chunk)):
        hi = min(X.shape[0], lo + chunk)
        pad = plan_chunks(hi - lo, n_devices, chunk) - (hi - lo)
        x, i = X[lo:hi], index[lo:hi]
        if pad:
            x = np.concatenate([x, np.repeat(X[hi - 1:hi], pad, axis=0)])
            i = np.concatenate([i, np.repeat(index[hi - 1:hi], pad)])
        out.append(Chunk(cid, lo, hi, x, i))
    return out


# --------------------------------------------------------------------------- kernels
_KERNELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _tracing(precision: str):
    """x64 on or off for the precision; float32 tracing silences JAX's float64 truncation notes."""
    with jax.enable_x64(PRECISIONS[precision][2]), warnings.catch_warnings():
        if precision == "float32":
            warnings.filterwarnings("ignore", message="Explicitly requested dtype",
                                    category=UserWarning)
        yield


def with_noise(problem: Problem, one: Callable) -> Callable:
    """``(x, i) -> one(params, key)`` under the problem's noise policy, exactly as
    ``Problem._core`` draws keys (fixed, ``fold_in(key, i)``, or the mean over K keys)."""

    def point(x, i):
        params = problem.space.unflatten(x)
        base = jax.random.key(problem.seed)
        if problem._k > 0:
            keys = jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(problem._k))
            values = jax.vmap(lambda k: one(params, k))(keys)
            return jax.tree.map(lambda a: jnp.mean(a, axis=0), values)
        return one(params, jax.random.fold_in(base, i) if problem._k < 0 else base)

    return point


def _fc_point(problem, names: tuple[str, ...]) -> Callable:
    """``(x, i) -> (loss, None, aux, observables)`` of an FCProblem in ONE simulation pass
    (the same operations as the problem's own loss, plus the observables)."""
    sim, target, skip = problem.sim, np.asarray(problem.target), problem.skip

    def one(values, key):
        base = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
        bold, _ = sim.forward(sim.with_values(base, problem._matrices(values)), key)
        sim_fc = fc(bold, skip)
        value = (problem.loss_fn(sim_fc, target, fisher=True) if problem.fisher
                 else problem.loss_fn(sim_fc, target))
        ctx = {"bold": bold, "fc": sim_fc, "target": target, "skip": skip}
        obs = {name: jnp.asarray(OBSERVABLES[name](ctx), jnp.float64) for name in names}
        aux = {"fc_r": jnp.asarray(corr(upper(sim_fc), upper(target)), jnp.float64)}
        return jnp.asarray(value).astype(jnp.float64), aux, obs

    noisy = with_noise(problem, one)

    def point(x, i):
        value, aux, obs = noisy(x, i)
        return value, None, aux, obs

    return point


def _point(problem: Problem, settings: Settings) -> Callable:
    if settings.observables:
        return _fc_point(problem, settings.observables)
    if settings.grad:
        return lambda x, i: _with_grad(problem, x, i)

    def value(x, i):
        v, aux = problem._core(x, i)
        return v, None, aux, {}

    return value


def _with_grad(problem, x, i):
    v, g, aux = problem._value_and_grad(x, i)
    return v, g, aux, {}


def _single(point: Callable) -> Callable:
    """A one-row chunk: the point function itself (no ``vmap``), with a batch axis added."""

    def one(x, i):
        return jax.tree.map(lambda a: a[None], point(x[0], i[0]))

    return one


def _kernel(problem: Problem, settings: Settings, devices: list, rows: int):
    """The compiled sharded kernel of ``rows``-row chunks (built once per problem and key)."""
    from jax.sharding import NamedSharding, PartitionSpec

    # every Settings field but the batch's chunk length: one kernel per shape, whatever the batch
    key = (settings.precision, settings.grad, settings.observables, rows,
           tuple(d.id for d in devices), devices[0].platform)
    table = _KERNELS.setdefault(problem, {})
    if key not in table:
        ftype, itype, _ = PRECISIONS[settings.precision]
        # Auto axes: with jax's default (Explicit) the one-row kernel below, which runs the point
        # function on ``x[0]`` outside shard_map, carries the batch sharding into the scan, where
        # updates of unsharded carries (the delay buffer) fail to type-check.
        mesh = jax.make_mesh((len(devices),), ("batch",), devices=devices,
                             axis_types=(jax.sharding.AxisType.Auto,))
        spec = PartitionSpec("batch")
        point = _point(problem, settings)
        if rows == 1:
            mapped = _single(point)
        else:
            mapped = jax.shard_map(jax.vmap(point), mesh=mesh, in_specs=(spec, spec),
                                   out_specs=spec, check_vma=False)
        sharding = NamedSharding(mesh, spec)
        shapes = (jax.ShapeDtypeStruct((rows, problem.dim), ftype, sharding=sharding),
                  jax.ShapeDtypeStruct((rows,), itype, sharding=sharding))
        with _tracing(settings.precision):
            lowered = jax.jit(mapped).lower(*shapes)
            table[key] = lowered.compile(compiler_options=_compiler_options(devices, rows))
    return table[key]


def _compiler_options(devices: list, rows: int) -> dict:
    """XLA options of a batched kernel: on CPU with >= 4 points per device, prefer 512-bit
    vectors (``xla_cpu_prefer_vector_width``; where the CPU has no AVX-512 LLVM caps the width
    at what it has). Measured on the project's AVX-512 machine (``benchmarks/README.md``): the
    elementwise Heun kernel of a (B, n) batch runs ~10% cheaper from B = 16; at B = 1 the
    84 x 84 matvec is slower with it, so the one-row and small chunks keep XLA's default."""
    if devices[0].platform == "cpu" and rows // len(devices) >= 4:
        return {"xla_cpu_prefer_vector_width": "512"}
    return {}


def compute_chunk(problem: Problem, settings: Settings, chunk: Chunk, devices: list):
    """Start one chunk on the devices (asynchronous); :func:`finish_chunk` collects it."""
    compiled = _kernel(problem, settings, devices, len(chunk.x))
    ftype, itype, x64 = PRECISIONS[settings.precision]
    with jax.enable_x64(x64):  # NumPy in: the executable places it by its input sharding
        return compiled(np.asarray(chunk.x, ftype), np.asarray(chunk.index, itype))


def finish_chunk(out, chunk: Chunk) -> dict:
    """Device outputs -> float64 NumPy without the padding rows."""
    m = chunk.hi - chunk.lo
    take = lambda a: np.asarray(a, dtype=np.float64)[:m]  # noqa: E731
    fun, jac, aux, obs = out
    return {"fun": take(fun), "jac": None if jac is None else take(jac),
            "aux": {k: take(v) for k, v in aux.items()},
            "obs": {k: take(v) for k, v in obs.items()}}


# --------------------------------------------------------------------------- entry point
def _check(problem, X, precision, grad, observables) -> np.ndarray:
    from ._fcproblem import FCProblem

    if not isinstance(problem, Problem):
        fail("evaluate(problem=...)", "a fitbridge Problem", type(problem).__name__,
             "wrap your loss: Problem(loss, {'G': Free(...)})")
    if precision not in PRECISIONS:
        fail("evaluate(precision=...)", f"one of {sorted(PRECISIONS)}", repr(precision),
             "use 'float32' for fast exploration, 'float64' otherwise")
    if grad and precision != "float64":
        fail("evaluate(grad=True)", "precision='float64' (gradients stay float64)",
             repr(precision), "drop precision= or grad=")
    if (isinstance(observables, str) or not isinstance(observables, (tuple, list))
            or not all(isinstance(o, str) for o in observables)):
        fail("evaluate(observables=...)", "a tuple of observable names", repr(observables),
             "pass e.g. observables=('fc',)")
    unknown = [o for o in observables if o not in OBSERVABLES]
    if unknown:
        fail("evaluate(observables=...)", f"names among {sorted(OBSERVABLES)}", unknown,
             "check the spelling or register_observable(...) your own")
    if observables and (grad or not isinstance(problem, FCProblem)):
        fail("evaluate(observables=...)", "an FCProblem evaluated without gradients",
             type(problem).__name__ + (" with grad=True" if grad else ""),
             "drop observables, or evaluate values only")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        fail("evaluate(X=...)", f"a numeric array of shape (n_points, {problem.dim})",
             type(X).__name__ + " of non-numbers", "stack one float parameter vector per row")
    if X.ndim != 2 or X.shape[1] != problem.dim:
        fail("evaluate(X=...)", f"an array of shape (n_points, {problem.dim}) ordered as "
             "problem.names", f"shape {X.shape}", "stack one parameter vector per row")
    return X


def evaluate(problem: Problem, X, *, grad: bool = False, chunk_size: int | None = None,
             devices=None, precision: str = "float64", observables: tuple[str, ...] = (),
             progress: bool | None = None, backend: str = "jax", n_jobs: int | None = None,
             scheduler=None, recipe: Callable | None = None, retries: int = 2, cache=None,
             redo: bool = False, index: int | None = None, memory: int | None = None) -> Batch:
    """Evaluate the rows of ``X`` ``(n, d)``: losses, aux (``fc_r``), optional gradients and
    observables, as jit(vmap) over fixed-size padded chunks sharded across devices.

    Parameters
    ----------
    problem : Problem
        E.g. an ``FCProblem``. Its evaluation counter advances by ``n`` (``index=None``).
    X : array (n, d)
        Points in the layout of ``problem.names`` (see :mod:`fitbridge.spaces`).
    grad : bool
        Also return gradients (float64 only).
    chunk_size : int, optional
        Points compiled per call (a multiple of the device count); default from a memory
        budget (module docstring), ``memory`` bytes per device if given.
    devices : None, int or list of jax devices
        Devices to shard each chunk over (default: all of the default backend).
    precision : {"float64", "float32"}
        ``"float32"`` runs the simulation in single precision (exploration; module docstring).
    observables : tuple of str
        FCProblem outputs per point, e.g. ``("fc", "bold_std")``.
    progress : bool or None
        tqdm bar over points; None shows it only on an interactive stderr.
    backend : {"jax", "joblib", "dask"}
        This process, joblib workers (loky processes, or the backend of an active
        ``joblib.parallel_config``), or a Dask cluster; see :mod:`fitbridge._parallel`.
    n_jobs : int, optional
        joblib/Dask workers (default -1: every core or every Dask worker thread; 1 runs here).
    scheduler : distributed.Client or str, optional
        ``backend="dask"``: a client or a scheduler address (``"tcp://host:8786"``); default
        the current client.
    recipe : callable, optional
        Picklable zero-argument callable that rebuilds the problem in each worker (default:
        the problem itself is pickled with cloudpickle and sent).
    retries : int
        Times the chunks of a dead worker are resubmitted before :class:`WorkerLost`.
    cache : path or Cache, optional
        Memoise chunk results on disk (:class:`fitbridge.Cache`); ``redo=True`` recomputes.
    index : int, optional
        Evaluation index of the first row (``noise="resample"``); default the problem's counter.
    memory : int, optional
        Memory budget per device in bytes for the automatic ``chunk_size``.

    Returns
    -------
    Batch
        ``fun (n,)``, ``jac (n, d)`` or None, ``aux``, ``observables``, ``info``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from fitbridge import Free, Problem
    >>> p = Problem(lambda q, key: (q["a"] - 1.0) ** 2, {"a": Free(0.0, bounds=(-2, 2))})
    >>> evaluate(p, [[0.0], [1.0], [3.0]], chunk_size=2).fun
    array([1., 0., 4.])
    """
    from ._cache import as_cache, chunk_parts, pack, unpack
    from ._parallel import check_backend, get_executor
    from ._progress import progress_bar

    start = time.perf_counter()
    X = _check(problem, X, precision, grad, observables)
    check_backend(backend, "evaluate", n_jobs=n_jobs, scheduler=scheduler, recipe=recipe,
                  retries=retries)
    run = get_executor(backend)
    devs = resolve_devices(devices)
    n = X.shape[0]
    idx = problem._indices(n, index)
    if chunk_size is None:
        chunk_size = auto_chunk_size(problem, devs, precision=precision, grad=grad, memory=memory)
    chunk = plan_chunks(n, len(devs), chunk_size)
    settings = Settings(precision, bool(grad), tuple(observables), chunk)
    chunks = make_chunks(X, idx, settings.chunk, len(devs))
    store = as_cache(cache)
    results = {}
    for c in chunks if store is not None else ():
        hit = store.get(chunk_parts(problem, settings, c), redo=redo)
        if hit is not None:
            results[c.cid] = unpack(hit)
    todo = [c for c in chunks if c.cid not in results]
    with progress_bar(n, progress=progress, desc="evaluate") as bar:
        bar.update(n - sum(c.hi - c.lo for c in todo))
        for cid, out in run(problem, todo, settings, devices=devs, n_jobs=n_jobs,
                            scheduler=scheduler, recipe=recipe, retries=retries):
            results[cid] = out
            if store is not None:
                store.put(chunk_parts(problem, settings, chunks[cid]), pack(out))
            bar.update(chunks[cid].hi - chunks[cid].lo)
    info = {"chunk_size": settings.chunk, "n_chunks": len(chunks), "n_devices": len(devs),
            "precision": precision, "backend": backend, "computed": sum(c.hi - c.lo for c in todo),
            "cached": n - sum(c.hi - c.lo for c in todo)}
    return _assemble([results[c.cid] for c in chunks], problem.dim, grad, info, start)


def _assemble(parts: list[dict], dim: int, grad: bool, info: dict, start: float) -> Batch:
    if not parts:
        return Batch(np.zeros(0), np.zeros((0, dim)) if grad else None, {}, {},
                     {**info, "wall_time": time.perf_counter() - start})

    def cat(key):
        return {k: np.concatenate([p[key][k] for p in parts]) for k in parts[0][key]}

    return Batch(fun=np.concatenate([p["fun"] for p in parts]),
                 jac=np.concatenate([p["jac"] for p in parts]) if grad else None,
                 aux=cat("aux"), observables=cat("obs"),
                 info={**info, "wall_time": time.perf_counter() - start})
