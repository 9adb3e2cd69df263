"""Processes and clusters: joblib (loky) and Dask give the serial values; dead workers are
retried or reported."""

import functools
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb
from fitbridge._evaluate import evaluate
from fitbridge._explore import explore
from fitbridge._parallel import Payload, Task, WorkerLost, map_tasks

ROOT = Path(__file__).resolve().parents[1]


def build(scale: float = 1.0, die_once: str | None = None):
    """A small problem with a scan; ``die_once``: a marker file whose absence kills the worker."""
    if die_once is not None and not os.path.exists(die_once):
        Path(die_once).touch()
        os._exit(3)  # noqa: SLF001 (simulate a worker killed by the OOM killer)

    def loss(p, key):
        def step(s, _):
            return 0.9 * s + 0.1 * jnp.tanh(p["a"] * s + p["b"]), s

        s, trace = jax.lax.scan(step, jnp.ones(3), None, length=50)
        return scale * jnp.sum(trace ** 2), {"last": s[0]}

    free = {"a": fb.Free(0.5, bounds=(-2, 2)), "b": fb.Free([0.1, 0.2, 0.3], bounds=(-1, 1), regional=True)}
    return fb.Problem(loss, fb.ParameterSpace(free, n_regions=3), has_aux=True, spec={"scale": scale})


import jax  # noqa: E402 (used inside build's loss)


@pytest.fixture(scope="module")
def serial():
    X = np.random.default_rng(0).uniform(-1, 1, (13, 4))
    return X, evaluate(build(), X, chunk_size=4)


def test_joblib_processes_equal_serial_with_the_problem_or_a_recipe(serial):
    X, want = serial
    shipped = evaluate(build(), X, chunk_size=4, backend="joblib", n_jobs=2)
    np.testing.assert_array_equal(shipped.fun, want.fun)
    np.testing.assert_array_equal(shipped.aux["last"], want.aux["last"])
    recipe = evaluate(build(), X, chunk_size=4, backend="joblib", n_jobs=2, recipe=build)
    np.testing.assert_array_equal(recipe.fun, want.fun)
    with pytest.raises(fb.ConfigError, match="builds the same problem"):
        evaluate(build(), X, chunk_size=4, backend="joblib", n_jobs=2,
                 recipe=functools.partial(build, scale=2.0))


def _where(problem):
    """(worker pid, id of the problem object the worker rebuilt)."""
    return os.getpid(), id(problem)


def test_workers_keep_the_rebuilt_problem_and_its_kernels_from_one_call_to_the_next(serial):
    """A worker keeps one rebuilt problem (with its compiled kernels) per pickle hash: the
    hash must not change when the problem is used (its evaluation counter moves), or every
    call recompiles in every worker (measured: 1.3 s per call and worker, 4x the steady time)."""
    X, want = serial
    problem = build()
    token = Payload.of(problem).token
    evaluate(problem, X, chunk_size=4)
    assert problem.nfev == len(X)
    assert Payload.of(problem).token == token
    assert cloudpickle.loads(cloudpickle.dumps(problem)).nfev == 0

    tasks = [Task(i, ()) for i in range(6)]
    first = dict(map_tasks(problem, _where, tasks, backend="joblib", n_jobs=2))
    got = evaluate(problem, X, chunk_size=4, backend="joblib", n_jobs=2)
    np.testing.assert_array_equal(got.fun, want.fun)
    second = dict(map_tasks(problem, _where, tasks, backend="joblib", n_jobs=2))
    before = {pid: ident for pid, ident in first.values()}
    again = [(pid, ident) for pid, ident in second.values() if pid in before]
    assert again, "the loky workers were not reused between calls"
    assert all(before[pid] == ident for pid, ident in again)


def test_a_dead_worker_is_retried(serial, tmp_path):
    X, want = serial
    marker = str(tmp_path / "died")
    with pytest.warns(RuntimeWarning, match=r"worker died \(TerminatedWorkerError\); resubmitting"):
        got = evaluate(build(), X, chunk_size=4, backend="joblib", n_jobs=2,
                       recipe=functools.partial(build, die_once=marker))
    np.testing.assert_array_equal(got.fun, want.fun)
    assert os.path.exists(marker)


def test_chunks_of_workers_that_keep_dying_are_reported_never_dropped():
    from concurrent.futures import BrokenExecutor

    from fitbridge._parallel import _with_retries

    chunks = [SimpleNamespace(cid=k) for k in range(4)]
    seen = []

    def submit(pending):  # chunk 0 comes back, then the pool breaks, every time
        seen.append([c.cid for c in pending])
        for c in pending:
            if c.cid >= 1:
                raise BrokenExecutor("worker killed")
            yield c.cid, {"fun": c.cid}

    got = []
    with pytest.warns(RuntimeWarning, match=r"resubmitting 3 chunk\(s\) \[1, 2, 3\] \(attempt 2 of 2\)"):
        with pytest.raises(WorkerLost, match=r"chunks \[1, 2, 3\] were not evaluated after 2 attempts"):
            for cid, _ in _with_retries(submit, chunks, retries=1):
                got.append(cid)
    assert got == [0] and seen == [[0, 1, 2, 3], [1, 2, 3]]

    def fails(pending):  # an error of the problem itself is not retried
        raise fb.ConfigError("bad problem")
        yield

    with pytest.raises(fb.ConfigError, match="bad problem"):
        list(_with_retries(fails, chunks, retries=3))


def test_dask_local_cluster_equals_serial(serial):
    distributed = pytest.importorskip("distributed")
    import joblib

    X, want = serial
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            via_config = evaluate(build(), X, chunk_size=4, backend="joblib")
        direct = explore(build(), {"a": [0.1, 0.5], "b": [0.0, 0.3]}, backend="dask",
                         scheduler=client, chunk_size=4)
        by_address = evaluate(build(), X[:4], backend="dask", scheduler=cluster.scheduler_address)
    np.testing.assert_array_equal(by_address.fun, want.fun[:4])
    np.testing.assert_array_equal(via_config.fun, want.fun)
    np.testing.assert_array_equal(via_config.aux["last"], want.aux["last"])
    np.testing.assert_array_equal(direct["loss"], explore(build(), {"a": [0.1, 0.5], "b": [0.0, 0.3]},
                                                          chunk_size=4)["loss"])


def test_dask_without_a_client_says_how_to_get_one():
    pytest.importorskip("distributed")
    with pytest.raises(fb.ConfigError, match="scheduler='tcp://host:8786'"):
        evaluate(build(), np.zeros((2, 4)), backend="dask")


def test_dask_scaleout_example_quick(tmp_path, capsys):
    pytest.importorskip("distributed")
    spec = importlib.util.spec_from_file_location("dask_scaleout", ROOT / "examples" / "dask_scaleout.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)  # its __main__ guard keeps the import side-effect free
    assert example.main(["--quick", "--out", str(tmp_path)]) == 0
    (table,) = [f for f in tmp_path.glob("grid.*") if f.suffix in (".csv", ".parquet")]
    frame = fb._explore.load(table)
    assert len(frame) == 4 and {"G", "w", "loss", "fc_r"} <= set(frame.columns)
    assert "evaluations/s" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["points"] == 4 and summary["best"]["fc_r"] == pytest.approx(frame["fc_r"].max())
    if importlib.util.find_spec("matplotlib"):
        assert summary["figures"] == ["landscape.png"] and (tmp_path / "landscape.png").exists()


# ------------------------------------------------------------- multistart and compare runs
def dying_lbfgsb(obj, x0, *, budget, seed, options, method, marker=None, always=False):
    """L-BFGS-B, but the worker process dies on the first call (``marker`` absent) or always."""
    if always or (marker is not None and not os.path.exists(marker)):
        if marker is not None:
            Path(marker).touch()
        os._exit(3)  # noqa: SLF001 (a worker killed in the middle of a run)
    info = fb.backends.get("scipy:L-BFGS-B")
    return info.run(obj, x0, budget=budget, seed=seed, options=options, method=info.name)


def same_runs(got, want):
    """Equal multistart results: best point, runs and every history column but the clock."""
    np.testing.assert_array_equal(got.x, want.x)
    assert got.fun == want.fun and got.nfev == want.nfev
    cols = [c for c in want.runs.columns if c not in ("x0", "x")]
    assert got.runs[cols].equals(want.runs[cols])
    np.testing.assert_array_equal(np.stack(got.runs["x"]), np.stack(want.runs["x"]))
    np.testing.assert_array_equal(np.stack(got.runs["x0"]), np.stack(want.runs["x0"]))
    assert got.history.drop(columns="time").equals(want.history.drop(columns="time"))


MS = dict(n_explore=8, k=3, budget=8 + 3 * 15, seed=2, independent=True)


@pytest.fixture(scope="module")
def serial_multistart():
    problem = build()
    res = fb.multistart(problem, "scipy:L-BFGS-B", **MS)
    assert problem.nfev == res.nfev == len(res.history)
    return res


def test_multistart_runs_in_processes_and_on_dask_equal_serial(serial_multistart):
    distributed = pytest.importorskip("distributed")
    problem = build()
    loky = fb.multistart(problem, "scipy:L-BFGS-B", backend="joblib", n_jobs=2, **MS)
    same_runs(loky, serial_multistart)
    assert problem.nfev == loky.nfev  # the workers' evaluations are counted here too
    assert set(loky.history["stage"]) == {"explore", "local"}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = fb.multistart(build(), "scipy:L-BFGS-B", backend="dask", scheduler=client,
                             recipe=build, **MS)
    same_runs(dask, serial_multistart)


def test_a_multistart_run_whose_worker_dies_is_retried_or_reported(tmp_path):
    marker = str(tmp_path / "died")
    Path(marker).touch()
    want = fb.multistart(build(), functools.partial(dying_lbfgsb, marker=marker), **MS)
    os.remove(marker)
    with pytest.warns(RuntimeWarning, match=r"worker died \(TerminatedWorkerError\); "
                                            r"resubmitting \d run\(s\)"):
        got = fb.multistart(build(), functools.partial(dying_lbfgsb, marker=marker),
                            backend="joblib", n_jobs=2, **MS)
    assert os.path.exists(marker)
    same_runs(got, want)
    with pytest.raises(WorkerLost, match=r"runs \[0, 1, 2\] were not evaluated after 1 attempts"):
        fb.multistart(build(), functools.partial(dying_lbfgsb, always=True), backend="joblib",
                      n_jobs=2, retries=0, **MS)


def test_compare_runs_in_processes_and_on_dask_equal_serial():
    distributed = pytest.importorskip("distributed")
    args = (["scipy:L-BFGS-B", "cma"],)
    kw = dict(budget=16, restarts=2, seeds=(0, 3), options={"cma": {"popsize": 4}})
    problem = build()
    want = fb.compare(problem, *args, **kw)
    serial_nfev = problem.nfev
    loky_problem = build()
    loky = fb.compare(loky_problem, *args, backend="joblib", n_jobs=2, **kw)
    assert loky_problem.nfev == serial_nfev == want["nfev"].sum()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        dask = fb.compare(build(), *args, backend="dask", **kw)  # the current client
    for got in (loky, dask):
        assert got.drop(columns=["wall_time", "x"]).equals(want.drop(columns=["wall_time", "x"]))
        np.testing.assert_array_equal(np.stack(got["x"]), np.stack(want["x"]))
        assert got.attrs["histories"].frame.equals(want.attrs["histories"].frame)


@pytest.mark.parametrize("call, match", [
    (lambda p: fb.multistart(p, lockstep=True, backend="joblib"), "drop lockstep=True"),
    (lambda p: fb.multistart(p, independent=False, backend="joblib"), "drop independent=False"),
    (lambda p: fb.multistart(p, n_jobs=2), "only with backend='joblib' or 'dask'"),
    (lambda p: fb.multistart(p, backend="jobilb"), "did you mean 'joblib'"),
    (lambda p: fb.multistart(p, backend="joblib", scheduler="tcp://x:1"),
     "only with backend='dask'"),
    (lambda p: fb.compare(p, ["cma"], budget=4, backend="daskk"), "did you mean 'dask'"),
    (lambda p: fb.compare(p, ["cma"], budget=4, recipe=build), "only with backend='joblib'"),
    (lambda p: fb.compare(p, ["cma"], budget=4, backend="joblib", retries=-1), "an int >= 0"),
])
def test_bad_worker_options_fail_before_anything_runs(call, match):
    problem = build()
    with pytest.raises(fb.ConfigError, match=match):
        call(problem)
    assert problem.nfev == 0
