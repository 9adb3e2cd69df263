"""compare(log=..., resume=True) and multistart(log=..., resume=True): an interrupted call,
resumed, equals the uninterrupted one, and no evaluation is lost or computed twice.

Every point a problem computes goes through an executor of :mod:`fitbridge._parallel`; the
tests wrap the in-process one to count the points it delivers and, at a chosen count, to
raise KeyboardInterrupt *instead of* delivering the next chunk (a Ctrl-C in the middle of an
evaluation: that chunk was computed but never arrived). The oracle: the points delivered by
the interrupted call(s) and the resume add up to those of one uninterrupted call, and the
results and every run's log equal the uninterrupted ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import fitbridge as fb
from fitbridge import _parallel
from fitbridge._evallog import read_log

TORN = b'{"eval": 999, "x": [0.12345'  # what a kill in the middle of a write leaves


# ------------------------------------------------------------------------------ problems
def bowl_with_r(p, key):
    loss = (p["a"] - 0.3) ** 2 + (p["b"] + 0.2) ** 2
    return loss, {"fc_r": 1.0 - loss}


def rastrigin(p, key):
    x = jnp.stack([p["a"], p["b"]])
    return 20.0 + jnp.sum(x ** 2 - 10.0 * jnp.cos(2.0 * jnp.pi * x))


@pytest.fixture(scope="module")
def bowl():
    return fb.Problem(bowl_with_r, {"a": fb.Free(0.9, bounds=(-1, 1)),
                                    "b": fb.Free(0.9, bounds=(-1, 1))}, has_aux=True)


@pytest.fixture(scope="module")
def rastr():
    # chunks of 4 points: the exploration of 16 points arrives in 4 chunks
    return fb.Problem(rastrigin, {"a": fb.Free(3.2, bounds=(-5.12, 5.12)),
                                  "b": fb.Free(-2.1, bounds=(-5.12, 5.12))}, chunk_size=4)


class Counter:
    """Counts the points the in-process executor delivers; ``stop_after=n`` raises
    KeyboardInterrupt in place of the chunk that would take the count past ``n``."""

    def __init__(self, monkeypatch):
        self.n, self.stop_after = 0, None
        run = _parallel.EXECUTORS["jax"]

        def counted(problem, chunks, settings, **options):
            rows = {c.cid: c.hi - c.lo for c in chunks}
            for cid, out in run(problem, chunks, settings, **options):
                if self.stop_after is not None and self.n + rows[cid] > self.stop_after:
                    raise KeyboardInterrupt
                self.n += rows[cid]
                yield cid, out

        monkeypatch.setitem(_parallel.EXECUTORS, "jax", counted)

    def __call__(self, fn, *args, stop_after=None, **kwargs):
        """``(result or the KeyboardInterrupt, points delivered)`` of one call."""
        self.n, self.stop_after = 0, stop_after
        try:
            out = fn(*args, **kwargs)
        except KeyboardInterrupt as err:
            out = err
        finally:
            self.stop_after = None
        return out, self.n


def same_logs(got: Path, want: Path) -> None:
    """The same run logs, each holding every evaluation exactly once, as uninterrupted."""
    names = sorted(p.name for p in want.glob("*.jsonl"))
    assert sorted(p.name for p in got.glob("*.jsonl")) == names and names
    for name in names:
        rows, ref = read_log(got / name)[1], read_log(want / name)[1]
        assert [r["eval"] for r in rows] == list(range(len(ref)))
        for r, s in zip(rows, ref, strict=True):
            np.testing.assert_array_equal(r["x"], s["x"])
            assert (r["fun"], r["loss"], r["aux"], r["jac"] is None) == (
                s["fun"], s["loss"], s["aux"], s["jac"] is None)


def tear_newest_log(folder: Path) -> None:
    """A torn last line in the log written last (as a SIGKILL mid-write leaves it)."""
    newest = max(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
    with open(newest, "ab") as fh:
        fh.write(TORN)


# ------------------------------------------------------------------------------ compare
COMPARE = dict(methods=["scipy:L-BFGS-B", "cma"], budget=30, restarts=2, seeds=(0, 1),
               options={"cma": {"popsize": 6}})


def same_tables(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got.drop(columns=["wall_time", "x"]),
                                  want.drop(columns=["wall_time", "x"]), check_exact=True)
    np.testing.assert_array_equal(np.stack(got["x"]), np.stack(want["x"]))
    pd.testing.assert_frame_equal(got.attrs["histories"].frame, want.attrs["histories"].frame,
                                  check_exact=True)


@pytest.fixture(scope="module")
def full_compare(bowl, tmp_path_factory):
    """The uninterrupted, logged comparison and the points it evaluated."""
    folder = tmp_path_factory.mktemp("compare") / "full"
    with pytest.MonkeyPatch.context() as mp:
        table, n = Counter(mp)(fb.compare, bowl, log=folder, **COMPARE)
    assert n == table["nfev"].sum() > 0
    return table, n, folder


def test_interrupted_compare_resumes_to_the_uninterrupted_table(bowl, full_compare, tmp_path,
                                                                monkeypatch):
    full, total, full_logs = full_compare
    count, folder = Counter(monkeypatch), tmp_path / "cut"
    # Ctrl-C a third of the way in (in run 3 of 8), then, resumed, two thirds of the way in
    first, n1 = count(fb.compare, bowl, log=folder, stop_after=total // 3, **COMPARE)
    assert isinstance(first, KeyboardInterrupt) and 0 < n1 <= total // 3
    assert f"compare(..., log={str(folder)!r}, resume=True)" in "\n".join(first.__notes__)
    tear_newest_log(folder)  # and the interrupted run's log ends in a torn line
    second, n2 = count(fb.compare, bowl, log=folder, resume=True,
                       stop_after=2 * total // 3 - n1, **COMPARE)
    assert isinstance(second, KeyboardInterrupt) and n2 > 0
    table, n3 = count(fb.compare, bowl, log=folder, resume=True, **COMPARE)
    assert n3 > 0 and n1 + n2 + n3 == total  # nothing lost, nothing computed twice
    same_tables(table, full)
    same_logs(folder, full_logs)
    assert {p.name for p in folder.iterdir()} == {p.name for p in full_logs.iterdir()}


def test_resuming_a_finished_compare_evaluates_nothing(bowl, full_compare, monkeypatch):
    full, _, folder = full_compare
    before = bowl.nfev
    table, n = Counter(monkeypatch)(fb.compare, bowl, log=folder, resume=True, **COMPARE)
    assert n == 0 and bowl.nfev == before
    same_tables(table, full)


def test_compare_log_names_runs_and_manifest(full_compare):
    _, _, folder = full_compare
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "manifest.json" and names[1:] == [
        f"run-{i:03d}-{m}-r{r}-s{s}.jsonl" for i, (m, r, s) in enumerate(
            (m, r, s) for m in ("scipy_L-BFGS-B", "cma") for r in (0, 1) for s in (0, 1))]
    manifest, rows = read_log(folder / "run-006-cma-r1-s0.jsonl")
    assert (manifest["method"], manifest["seed"], manifest["options"], len(rows)) == (
        "cma", 0, {"popsize": 6}, 30)


def test_compare_workers_write_and_resume_their_own_logs(full_compare, tmp_path):
    """A directory as a killed run leaves it (finished runs, a half-logged run ending in a
    torn line, runs never started), resumed on joblib workers: each worker continues or
    starts its own run's log; the workers compute exactly the missing evaluations.

    joblib's threading backend keeps this test short; it takes the same path as loky
    processes (the problem is pickled to the workers, each task picks log or resume where it
    runs, the workers' evaluations are counted here)."""
    joblib = pytest.importorskip("joblib")
    full, _, full_logs = full_compare
    folder = tmp_path / "cut"
    shutil.copytree(full_logs, folder)
    runs = sorted(folder.glob("run-*.jsonl"))
    for path in runs[5:]:
        path.unlink()
    lines = runs[4].read_bytes().splitlines(keepends=True)
    runs[4].write_bytes(b"".join(lines[:12]) + TORN)  # header + 11 evaluations
    missing = int(full["nfev"].iloc[4:].sum()) - 11
    problem = fb.Problem(bowl_with_r, {"a": fb.Free(0.9, bounds=(-1, 1)),
                                       "b": fb.Free(0.9, bounds=(-1, 1))}, has_aux=True)
    with joblib.parallel_config(backend="threading"):
        table = fb.compare(problem, log=folder, resume=True, backend="joblib", n_jobs=2,
                           **COMPARE)
    assert problem.nfev == missing  # counted on the workers, added here
    same_tables(table, full)
    same_logs(folder, full_logs)


@pytest.mark.parametrize("change, match", [
    ({"budget": 31}, r"the budget of the compare logged in .*, 30, got budget=31"),
    ({"seeds": (0, 2)}, r"the seeds of .*\[0, 1\], got seeds=\[0, 2\]"),
    ({"restarts": 3}, r"the restarts of .*, 2, got restarts=3"),
    ({"methods": ["cma", "scipy:L-BFGS-B"]}, "the methods of"),
    ({"options": {}}, "the options of"),
    ({"x0": [0.5, 0.5]}, r"the x0 of .*\[0.9, 0.9\]"),
])
def test_compare_resumed_with_other_arguments_fails_before_evaluating(bowl, full_compare, change,
                                                                      match, monkeypatch):
    _, _, folder = full_compare
    count = Counter(monkeypatch)
    kwargs = {**COMPARE, **change}
    with pytest.raises(fb.ConfigError, match=match) as err:
        count(fb.compare, bowl, log=folder, resume=True, **kwargs)
    assert "use a new log directory to start over" in str(err.value)
    assert count.n == 0


def test_compare_log_and_resume_arguments(bowl, full_compare, tmp_path, monkeypatch):
    _, _, folder = full_compare
    count = Counter(monkeypatch)
    other = fb.Problem(bowl_with_r, {"a": fb.Free(0.9, bounds=(-1, 1)),
                                     "b": fb.Free(0.9, bounds=(-1, 2))}, has_aux=True)
    with pytest.raises(fb.ConfigError, match=r"expected the problem of the compare logged in"):
        count(fb.compare, other, log=folder, resume=True, **{**COMPARE, "x0": [0.9, 0.9]})
    with pytest.raises(fb.ConfigError, match=r"pass resume=True to continue .* or choose a new"):
        count(fb.compare, bowl, log=folder, **COMPARE)  # never silently mixed or overwritten
    with pytest.raises(fb.ConfigError, match=r"compare\(resume=True\): expected log= naming"):
        count(fb.compare, bowl, resume=True, **COMPARE)
    with pytest.raises(fb.ConfigError, match=r"compare\(resume=\.\.\.\): expected True or False"):
        count(fb.compare, bowl, log=folder, resume="yes", **COMPARE)
    (tmp_path / "file").write_text("")
    with pytest.raises(fb.ConfigError, match=r"expected a directory .* an existing file"):
        count(fb.compare, bowl, log=tmp_path / "file", **COMPARE)
    with pytest.raises(fb.ConfigError, match=r"compare\(log=\.\.\.\): expected a directory path"):
        count(fb.compare, bowl, log=3, **COMPARE)
    with pytest.raises(fb.ConfigError, match=r"expected the call of the compare logged in .*, got call=.multistart."):
        count(fb.multistart, bowl, log=folder, resume=True)
    assert count.n == 0
    # resume=True in a new directory starts a new call (as explore and `fitbridge run` do)
    table, n = count(fb.compare, bowl, log=tmp_path / "new", resume=True, methods=["cma"],
                     budget=6)
    assert n == 6 == table["nfev"].sum() and (tmp_path / "new" / "manifest.json").exists()


# ------------------------------------------------------------------------------ multistart
MODES = {"sequential": {}, "independent": {"independent": True}, "lockstep": {"lockstep": True}}
MS = dict(n_explore=16, k=3, budget=16 + 3 * 12, seed=3)


def same_multistart(got, want) -> None:
    np.testing.assert_array_equal(got.x, want.x)
    assert (got.fun, got.nfev) == (want.fun, want.nfev)
    pd.testing.assert_frame_equal(got.runs, want.runs, check_exact=True)
    drop = ["time", "source"]
    pd.testing.assert_frame_equal(got.history.drop(columns=drop), want.history.drop(columns=drop),
                                  check_exact=True)
    pd.testing.assert_frame_equal(got.exploration.drop(columns=drop),
                                  want.exploration.drop(columns=drop), check_exact=True)


@pytest.fixture(scope="module")
def full_multistart(rastr, tmp_path_factory):
    """The uninterrupted, logged multistart of every mode, and the points each evaluated."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        count = Counter(mp)
        for mode, kwargs in MODES.items():
            folder = tmp_path_factory.mktemp("multistart") / mode
            res, n = count(fb.multistart, rastr, log=folder, **MS, **kwargs)
            assert n == res.nfev <= MS["budget"]
            out[mode] = res, n, folder
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_interrupted_multistart_resumes_to_the_uninterrupted_result(rastr, full_multistart, mode,
                                                                    tmp_path, monkeypatch):
    full, total, full_logs = full_multistart[mode]
    count, folder, kwargs = Counter(monkeypatch), tmp_path / "cut", {**MS, **MODES[mode]}
    # Ctrl-C in the exploration's 3rd chunk: 2 chunks of 4 points were delivered (and kept)
    first, n1 = count(fb.multistart, rastr, log=folder, stop_after=10, **kwargs)
    assert isinstance(first, KeyboardInterrupt) and n1 == 8
    assert f"multistart(..., log={str(folder)!r}, resume=True)" in "\n".join(first.__notes__)
    assert read_log(folder / "explore.jsonl")[1] == []  # recorded as a whole, once evaluated
    # resumed: the 8 missing exploration points, then Ctrl-C half-way through the local runs
    second, n2 = count(fb.multistart, rastr, log=folder, resume=True, stop_after=8 + 18, **kwargs)
    assert isinstance(second, KeyboardInterrupt) and 8 < n2 <= 8 + 18
    assert len(read_log(folder / "explore.jsonl")[1]) == 16
    assert not (folder / "explore.chunks").exists()
    tear_newest_log(folder)
    res, n3 = count(fb.multistart, rastr, log=folder, resume=True, **kwargs)
    assert n3 > 0 and n1 + n2 + n3 == total  # nothing lost, nothing computed twice
    same_multistart(res, full)
    same_logs(folder, full_logs)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in full_logs.iterdir())


def test_resuming_a_finished_multistart_evaluates_nothing(rastr, full_multistart, monkeypatch):
    count = Counter(monkeypatch)
    for mode, (full, _, folder) in full_multistart.items():
        before = rastr.nfev
        res, n = count(fb.multistart, rastr, log=folder, resume=True, **MS, **MODES[mode])
        assert n == 0 and rastr.nfev == before, mode
        same_multistart(res, full)
        assert set(res.history["source"]) == {"log"}


def test_multistart_log_files(full_multistart):
    names = {mode: sorted(p.name for p in folder.iterdir())
             for mode, (_, _, folder) in full_multistart.items()}
    local = ["local-0.jsonl", "local-1.jsonl", "local-2.jsonl"]
    assert names == {"sequential": ["explore.jsonl", *local, "manifest.json"],
                     "independent": ["explore.jsonl", *local, "manifest.json"],
                     "lockstep": ["explore.jsonl", "lockstep.jsonl", "manifest.json"]}


@pytest.mark.parametrize("change, match", [
    ({"independent": True}, r"the mode of the multistart .*'sequential', got mode='independent'. "
                              r"Fix: pass independent=False to continue it"),
    ({"k": 2}, r"the k of .*, 3, got k=2"),
    ({"n_explore": 20}, r"the n_explore of .*, 16, got n_explore=20"),
    ({"budget": None}, r"the budget of .*, 52, got budget=None"),
    ({"seed": 4}, r"the seed of .*, 3, got seed=4"),
    ({"method": "scipy:TNC"}, r"the method of .*'scipy:L-BFGS-B', got method='scipy:TNC'"),
    ({"options": {"maxiter": 5}}, r"the options of .*\{\}, got options=\{'maxiter': 5\}"),
    ({"spread": 1.0}, r"the spread of"),
])
def test_multistart_resumed_with_other_arguments_fails_before_evaluating(
        rastr, full_multistart, change, match, monkeypatch):
    _, _, folder = full_multistart["sequential"]
    count = Counter(monkeypatch)
    with pytest.raises(fb.ConfigError, match=match) as err:
        count(fb.multistart, rastr, log=folder, resume=True, **{**MS, **change})
    assert "use a new log directory to start over" in str(err.value)
    assert count.n == 0
    with pytest.raises(fb.ConfigError, match=r"pass resume=True to continue"):
        count(fb.multistart, rastr, log=folder, **MS)
    with pytest.raises(fb.ConfigError, match=r"multistart\(resume=True\): expected log= naming"):
        count(fb.multistart, rastr, resume=True, **MS)
    assert count.n == 0
