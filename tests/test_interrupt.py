"""Interruptions and faults: a ``minimize``, an ``explore`` and a ``fitbridge run`` are killed
(SIGKILL) or interrupted (SIGINT) in a subprocess once they have provably done some
evaluations, then resumed: no evaluation is lost or computed twice, and the results equal
those of an uninterrupted run.

The children are forked by a multiprocessing forkserver that has imported fitbridge, JAX and
SciPy once (no JAX backend is started before the fork), so a child costs its run, not its
imports, and children share compiled kernels through JAX's persistent compilation cache. A
child waits at a barrier (a callback, or a patched writer, that waits for a file) so that the
parent knows how far it got without guessing from timings; where a second barrier follows a
few evaluations later, the parent releases the first and signals at once, so the signal lands
anywhere in between (mid-evaluation, mid-write ...) but never after the run's end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import fitbridge as fb
from fitbridge._cache import Cache
from fitbridge._evallog import EvalLog, read_log
from fitbridge._explore import explore, load
from fitbridge._minimize import minimize
from fitbridge._parallel import WorkerLost, _with_retries
from tests.spec_data import tiny_spec, write_data, write_spec

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120.0  # seconds a wait may take before the test fails (a healthy run needs a few)
SEED = 11


# ------------------------------------------------------------------------------ problems
def rosen(p, key):
    x = jnp.concatenate([p["a"][None], p["b"]])
    value = jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return value, {"r": jnp.tanh(value)}


def rosen_problem() -> fb.Problem:
    space = {"a": fb.Free(-1.2, bounds=(-2.0, 2.0)),
             "b": fb.Free([1.0, 0.5], bounds=(-2.0, 2.0), regional=True)}
    return fb.Problem(rosen, space, has_aux=True, spec={"test": "interrupt-rosen"})


def fc_problem() -> fb.FCProblem:
    """4 regions, 24 s of BOLD: a real simulation that compiles and runs in about a second."""
    rng = np.random.default_rng(3)
    n = 4
    W = rng.uniform(0, 1, (n, n))
    np.fill_diagonal(W, 0)
    net = fb.Network(fb.models.ReducedWongWang(), W, normalize="max")
    sim = fb.Simulation(net, dt=4.0, duration=24_000.0, transient=0.0, noise=fb.AdditiveNoise(0.003),
                        bold=fb.bold.HRF(tr=1000.0), seed=0)
    bold = rng.normal(size=(40, n)) @ rng.normal(size=(n, n))
    free = {"G": fb.Free(0.3, bounds=(0.05, 0.9)), "w": fb.Free(0.5, bounds=(0.3, 0.7))}
    return fb.FCProblem(sim, np.corrcoef(bold.T), loss="1-corr", free=free, skip=2)


GRID = {"G": np.linspace(0.1, 0.8, 4), "w": np.linspace(0.35, 0.65, 3)}  # 12 points, 6 chunks of 2


# ------------------------------------------------------------------------------ the children
def _hold(go: Path | None) -> None:
    """Wait until ``go`` exists (forever when None: until the parent's signal)."""
    deadline = time.monotonic() + TIMEOUT
    while go is None or not go.exists():
        if time.monotonic() > deadline:
            os._exit(3)  # the parent is gone: never linger
        time.sleep(0.005)


def _barriers(first: int, second: int, go: Path):
    """``arrived(n)``: hold at the ``first``-th event until ``go`` exists, for good at the ``second``."""

    def arrived(n: int) -> None:
        if n == first:
            _hold(go)
        elif n == second:
            _hold(None)

    return arrived


def _run(argv: list[str]) -> int:
    kind, out, first, second = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    arrived = _barriers(first, second, out.parent / "go")
    try:
        if kind == "minimize":
            method, budget = argv[4], None if argv[5] == "-" else int(argv[5])
            minimize(rosen_problem(), method, budget=budget, seed=SEED, log=out, progress=False,
                     callback=lambda row: arrived(row["eval"] + 1))
        elif kind == "explore":
            put, count = Cache.put, [0]

            def counted(self, parts, arrays):
                path = put(self, parts, arrays)
                count[0] += 1
                arrived(count[0])
                return path

            Cache.put = counted
            explore(fc_problem(), GRID, save_to=out, chunk_size=2, observables=("fc",), progress=False)
        elif kind == "cli":
            from fitbridge.cli import main

            write = EvalLog.write

            def logged(self, row):
                write(self, row)
                if self.path.name == argv[4]:
                    arrived(len(read_log(self.path)[1]))

            EvalLog.write = logged
            return main(["run", argv[5], "--out", str(out), "-q", *argv[6:]])
    except KeyboardInterrupt as err:
        print("\n".join(getattr(err, "__notes__", [])), file=sys.stderr)
        return 130
    return 0


def child(argv: list[str], err: str, jax_cache: str) -> None:
    """A forked child: stderr to ``err``, no figures, a shared compilation cache, then the run."""
    import jax

    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.close(fd)
    warnings.simplefilter("ignore")
    sys.modules["matplotlib"] = None  # figures are not what these tests check
    jax.config.update("jax_compilation_cache_dir", jax_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    sys.exit(_run(argv))


PRELOAD = ["tests.test_interrupt", "fitbridge.cli", "fitbridge._runner", "fitbridge.backends._scipy", "cma"]


class _Child:
    """A child process of :func:`child` with ``Popen``'s vocabulary."""

    def __init__(self, tmp: Path, *args):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # used when this process starts its forkserver
        self.err = tmp / "child.err"
        self.err.write_text("")
        cache = tmp.parent / "jax-cache"
        self.proc = ctx.Process(target=child, args=([str(a) for a in args], str(self.err), str(cache)))
        self.proc.start()

    def poll(self) -> int | None:
        return self.proc.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
            pytest.fail(f"the child did not exit within {timeout} s:\n{self.stderr()}")
        return self.proc.exitcode

    def stderr(self) -> str:
        return self.err.read_text()[-3000:]


def _wait_for(condition, proc: _Child, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the child exited ({proc.poll()}) before {what}:\n{proc.stderr()}")
        if time.monotonic() > deadline:
            proc.proc.kill()
            pytest.fail(f"no {what} within {TIMEOUT} s")
        time.sleep(0.01)


def _stop(proc: _Child, sig: int, go: Path | None = None) -> str:
    """Release the first barrier (touch ``go``), send ``sig`` at once, and wait for the exit."""
    if go is not None:
        go.touch()
    proc.send_signal(sig)
    code = proc.wait()
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130), proc.stderr()
    return proc.stderr()


def _rows(path: Path) -> int:
    try:
        return len(read_log(path)[1])
    except fb.ConfigError:  # not created yet
        return 0


def _same_rows(got: list[dict], want: list[dict]) -> None:
    assert [r["eval"] for r in got] == list(range(len(got)))
    for r, s in zip(got, want, strict=True):
        np.testing.assert_array_equal(r["x"], s["x"])
        assert (r["fun"], r["loss"], r["aux"]) == (s["fun"], s["loss"], s["aux"])


TORN = b'{"eval": 999, "x": [0.12345'  # what a crash in the middle of a write leaves


# ------------------------------------------------------------------------------ minimize
@pytest.mark.parametrize("method, budget, sig", [
    ("scipy:L-BFGS-B", None, signal.SIGINT),
    ("scipy:Nelder-Mead", 60, signal.SIGKILL),
    ("cma", 60, signal.SIGINT),
    ("nevergrad:NGOpt", 60, signal.SIGKILL),
], ids=lambda v: v.name if isinstance(v, signal.Signals) else None)
def test_killed_minimize_resumes_to_the_uninterrupted_result(tmp_path, method, budget, sig):
    log = tmp_path / "run.jsonl"
    proc = _Child(tmp_path, "minimize", log, 8, 14, method, "-" if budget is None else budget)
    problem = rosen_problem()
    full = minimize(problem, method, budget=budget, seed=SEED, log=tmp_path / "full.jsonl", progress=False)
    assert full.nfev > 14
    _wait_for(lambda: _rows(log) >= 8, proc, "8 logged evaluations")
    err = _stop(proc, sig, go=tmp_path / "go")
    _, ref = read_log(tmp_path / "full.jsonl")
    _, done = read_log(log)
    assert 8 <= len(done) <= 14
    _same_rows(done, ref[: len(done)])  # the log is valid JSON lines up to its last row
    if sig == signal.SIGINT:
        assert f"resume='{log}'" in err
    else:
        with open(log, "ab") as fh:
            fh.write(TORN)

    computed = problem.nfev
    resumed = minimize(problem, method, budget=budget, seed=SEED, resume=log, progress=False)
    assert problem.nfev - computed == full.nfev - len(done)  # only the missing evaluations
    np.testing.assert_array_equal(resumed.x, full.x)
    assert (resumed.fun, resumed.nfev, resumed.nit, resumed.status) == (full.fun, full.nfev, full.nit,
                                                                          full.status)
    cols = ["eval", "fun", "loss", "penalised", "r", *problem.names]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols])
    assert resumed.history["source"].tolist() == ["log"] * len(done) + ["computed"] * (full.nfev - len(done))
    _same_rows(read_log(log)[1], ref)  # every evaluation exactly once, the torn line gone


# ------------------------------------------------------------------------------ explore
def _chunk_rows(folder: Path) -> int:
    total = 0
    for entry in folder.glob("??/*.npz"):
        with np.load(entry) as npz:
            total += len(npz["fun"])
    return total


def _same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="fc"), b.drop(columns="fc"), check_exact=True)
    np.testing.assert_array_equal(np.stack(a["fc"]), np.stack(b["fc"]))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_explore_resumes_to_the_uninterrupted_frame(tmp_path, sig):
    table = tmp_path / "grid.csv"
    checkpoint = tmp_path / "grid.csv.chunks"
    proc = _Child(tmp_path, "explore", table, 2, 4)
    problem = fc_problem()
    full = explore(problem, GRID, chunk_size=2, observables=("fc",), progress=False)
    _wait_for(lambda: len(Cache(checkpoint)) >= 2, proc, "2 finished chunks")
    _stop(proc, sig, go=tmp_path / "go")
    kept = _chunk_rows(checkpoint)
    assert 4 <= kept <= 8 and not table.exists()

    with pytest.raises(fb.ConfigError, match="pass resume=True to reuse them"):
        explore(problem, GRID, save_to=table, chunk_size=2, observables=("fc",), progress=False)
    frame = explore(problem, GRID, save_to=table, resume=True, chunk_size=2, observables=("fc",),
                    progress=False)
    meta = frame.attrs["fitbridge"]
    assert (meta["reused"], meta["computed"]) == (kept, len(full) - kept)
    _same_frames(frame, full)
    _same_frames(load(table), full)
    assert not checkpoint.exists()


def test_a_lost_worker_keeps_the_finished_chunks_for_the_resume(tmp_path, monkeypatch):
    """Workers that keep dying are reported (WorkerLost), never dropped; what the others
    finished is kept, and the resume computes only the lost chunks."""
    from concurrent.futures import BrokenExecutor

    from fitbridge import _parallel

    problem = rosen_problem()
    X = {"a": np.linspace(-1, 1, 5), "b[0]": [0.0, 0.5]}  # 10 points, 5 chunks of 2
    full = explore(problem, X, chunk_size=2, progress=False)

    def flaky(problem, chunks, settings, *, devices, retries=2, **_):
        def submit(pending):  # two chunks come back, then the pool breaks, every time
            for k, chunk in enumerate(pending):
                if k == 2:
                    raise BrokenExecutor("a worker was killed")
                yield from _parallel.run_local(problem, [chunk], settings, devices=devices)

        yield from _with_retries(submit, chunks, retries)

    monkeypatch.setitem(_parallel.EXECUTORS, "flaky", flaky)
    table = tmp_path / "grid.csv"
    with pytest.warns(RuntimeWarning, match="resubmitting 3 chunk"), pytest.raises(WorkerLost, match="chunks"):
        explore(problem, X, chunk_size=2, backend="flaky", retries=1, save_to=table, progress=False)
    frame = explore(problem, X, chunk_size=2, save_to=table, resume=True, progress=False)
    assert (frame.attrs["fitbridge"]["reused"], frame.attrs["fitbridge"]["computed"]) == (8, 2)
    pd.testing.assert_frame_equal(frame, full, check_exact=True)


def test_a_dask_killed_worker_is_retried():
    distributed = pytest.importorskip("distributed")
    from types import SimpleNamespace

    chunks = [SimpleNamespace(cid=k) for k in range(3)]
    attempts = []

    def submit(pending):
        attempts.append([c.cid for c in pending])
        for c in pending:
            if len(attempts) == 1 and c.cid == 1:
                raise distributed.scheduler.KilledWorker("chunk-1", None, 3)
            yield c.cid, {"fun": c.cid}

    with pytest.warns(RuntimeWarning, match=r"worker died \(KilledWorker\); resubmitting 2 chunk"):
        got = [cid for cid, _ in _with_retries(submit, chunks, retries=2)]
    assert sorted(got) == [0, 1, 2] and attempts == [[0, 1, 2], [1, 2]]


# ------------------------------------------------------------------------------ the command line
def _strip(path: Path, drop: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in drop if c in frame.columns])


def test_killed_cli_run_resumes_to_the_uninterrupted_results(tmp_path, capsys):
    """Every run in a child, one after the other: they share compiled kernels through JAX's
    persistent cache, which keeps this test short."""
    from fitbridge.cli import main

    write_data(tmp_path)
    spec = tiny_spec(optimize=[{"method": "scipy:Nelder-Mead", "budget": 6, "start": "explore"},
                               {"method": "scipy:Powell", "budget": 6, "start": "previous", "free": ["G"]}])
    spec["integration"]["duration"] = 7200
    path = write_spec(tmp_path, spec)
    out, ref, stage1 = tmp_path / "out", tmp_path / "ref", tmp_path / "out" / "logs" / "optimize-1.jsonl"

    def cli(folder, first, *extra):
        return _Child(tmp_path, "cli", folder, first, 0, stage1.name, path, *extra)

    def done(proc):
        assert proc.wait() == 0, proc.stderr()

    done(cli(ref, 0))

    # SIGKILL while optimize[1] runs (2 rows logged); then a torn last line, as a crash mid-write leaves
    proc = cli(out, 2)
    _wait_for(lambda: _rows(stage1) >= 2, proc, "2 evaluations of optimize[1]")
    _stop(proc, signal.SIGKILL)
    with open(stage1, "ab") as fh:
        fh.write(TORN)
    assert main(["run", str(path), "--out", str(out), "-q"]) == 2  # never silently thrown away
    assert "add --resume to continue it" in capsys.readouterr().err

    # --resume, interrupted again (SIGINT) at the 4th evaluation of optimize[1]
    proc = cli(out, 4, "--resume")
    _wait_for(lambda: _rows(stage1) >= 4, proc, "4 evaluations of optimize[1]")
    assert "--resume to continue" in _stop(proc, signal.SIGINT)

    # --resume to the end: nothing recomputed but the last 2 evaluations of optimize[1]
    done(cli(out, 0, "--resume"))
    history = pd.read_csv(out / "history.csv")
    assert history["source"].tolist() == ["log"] * 10 + ["computed"] * 2
    explored = json.loads((out / "exploration.csv.json").read_text())["attrs"]["fitbridge"]
    assert (explored["computed"], explored["reused"]) == (0, 4)
    for name in ("optimize-0.jsonl", "optimize-1.jsonl"):  # every evaluation once, as uninterrupted
        _same_rows(read_log(out / "logs" / name)[1], read_log(ref / "logs" / name)[1])

    assert json.loads((out / "params.json").read_text()) == json.loads((ref / "params.json").read_text())
    got, want = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert got.pop("wall_time_s") > 0 and want.pop("wall_time_s") > 0 and got == want
    pd.testing.assert_frame_equal(_strip(out / "summary.csv", ("wall_time",)),
                                  _strip(ref / "summary.csv", ("wall_time",)), check_exact=True)
    pd.testing.assert_frame_equal(_strip(out / "history.csv", ("time", "source")),
                                  _strip(ref / "history.csv", ("time", "source")), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(out / "exploration.csv"), pd.read_csv(ref / "exploration.csv"),
                                  check_exact=True)
    assert json.loads((out / "logs" / "state.json").read_text())["finished"] is True
