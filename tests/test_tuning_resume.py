"""Tuning files: ``TuningResult.save``/``load`` round-trip bitwise; ``checkpoint=`` keeps the
tuning after every chunk, so a tuning killed mid-way continues from the FILE, in a new call, to
exactly the uninterrupted result, every iteration computed once; the experiment runner's
``--resume`` continues its tuning from its checkpoints; bad paths fail before compiling.

A kill is injected in-process: the checkpoint writer raises a ``BaseException`` (nothing
catches it, like a SIGKILL nothing runs after) just after its k-th file is in place; only the
file survives into the next call. ``test_sigkilled_tuning_resumes_from_its_checkpoint`` kills
a real child process (forked as in tests/test_interrupt.py, with its barriers) at an arbitrary
point of its run.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import fitbridge as fb
from fitbridge import _runner, _tuning, _tuning_result
from tests.spec_data import tiny_spec, write_data, write_spec
from tests.test_interrupt import PRELOAD, _Child, _hold, _stop, _wait_for
from tests.test_tuning import N, sim_of

TARGET = np.corrcoef(np.random.default_rng(3).standard_normal((N, 40)))


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, nothing after it runs."""


def same(a: fb.TuningResult, b: fb.TuningResult) -> None:
    """Every field bitwise equal (arrays: dtype, shape and bytes, NaN included), but ``simulation``."""
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    for name in ("J_i", "S_e", "fc", "bold"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), name
    assert type(a.state) is type(b.state) and type(a.state.carry) is type(b.state.carry)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a.state), jax.tree_util.tree_leaves(b.state),
                            strict=True):
        assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), jax.tree_util.keystr(path)
    assert type(a.model) is type(b.model)
    for name in a.model.field_names:
        x, y = getattr(a.model, name), getattr(b.model, name)
        assert type(x) is type(y) and np.asarray(x).tobytes() == np.asarray(y).tobytes(), name
    assert (a.iterations, a.interrupted, a.settings, a.source) == (b.iterations, b.interrupted, b.settings, b.source)


class Counted:
    """A ``progress_bar`` stand-in: the iterations each tuning call computed (``desc``: fic or
    eib), and a KeyboardInterrupt (Ctrl-C) at the ``stop``-th chunk of ``at``."""

    def __init__(self, at: str | None = None, stop: int = 0):
        self.done, self.chunks, self.at, self.stop = collections.Counter(), collections.Counter(), at, stop

    def __call__(self, total, *, progress=None, desc="", unit=""):
        counted = self

        class Bar:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def update(self, k):
                counted.done[desc] += k
                counted.chunks[desc] += 1
                if desc == counted.at and counted.chunks[desc] == counted.stop:
                    raise KeyboardInterrupt

        return Bar()


def kill_after(monkeypatch, k: int, name: str | None = None) -> None:
    """The checkpoint writer raises Killed once its ``k``-th file (named ``name``) is in place."""
    write, count = _tuning._write, collections.Counter()

    def written(result, path):
        out = write(result, path)
        count[path.name] += 1
        if (name is None or path.name == name) and count[path.name] == k:
            raise Killed
        return out

    monkeypatch.setattr(_tuning, "_write", written)


# ------------------------------------------------------------------------------ save / load
def test_save_load_is_bitwise_and_a_loaded_result_resumes_exactly(tmp_path):
    kw = dict(eta=0.02, warmup=1, window=3, fic_eta=0.3, chunk=3, progress=False)
    sim = sim_of(noise=fb.AdditiveNoise(0.005))
    whole = fb.eib(sim, TARGET, iterations=6, **kw)
    first = fb.eib(sim, TARGET, iterations=3, **kw)
    assert np.isfinite(first.fc).all() and first.history["fc_r"].notna().any()  # a full window is stored
    path = first.save(tmp_path / "eib.npz")
    with np.load(path, allow_pickle=False) as npz:  # plain arrays and one JSON string: nothing pickled
        assert all(npz[k].dtype != object for k in npz.files)
    back = fb.TuningResult.load(path, sim=sim)
    same(back, first)
    assert back.simulation.network.model is back.model and type(back.model) is fb.models.WongWangEIB
    np.testing.assert_array_equal(back.simulation.network.weights, first.simulation.network.weights)
    bare = fb.TuningResult.load(str(path))  # without sim: everything but the simulation
    same(bare, first)
    assert bare.simulation is None
    with pytest.raises(fb.ConfigError, match="TuningResult.problem: expected a result with its simulation"):
        bare.problem(TARGET)
    same(fb.TuningResult.load(bare.save(tmp_path / "again.npz")), first)  # a loaded result saves the same
    rest = fb.eib(sim, TARGET, iterations=3, resume=bare, **kw)
    same(rest, whole)
    with pytest.raises(fb.ConfigError, match=r"TuningResult.load.sim: expected the simulation the tuning"):
        fb.TuningResult.load(path, sim=sim_of(noise=fb.AdditiveNoise(0.006)))


# ------------------------------------------------------------------------------ checkpoint=
def test_a_killed_tuning_resumes_from_its_checkpoint_file(tmp_path, monkeypatch):
    sim = sim_of()
    kw = dict(eta=1.0, chunk=2, progress=False)
    whole = fb.fic(sim, iterations=6, checkpoint=tmp_path / "whole.npz", **kw)
    same(fb.TuningResult.load(tmp_path / "whole.npz"), whole)  # the last chunk's file is the result

    path = tmp_path / "fic.npz"
    kill_after(monkeypatch, 2)  # killed once the 2nd chunk's file is written: 4 iterations computed
    with pytest.raises(Killed):
        fb.fic(sim, iterations=6, checkpoint=path, **kw)
    monkeypatch.undo()
    kept = fb.TuningResult.load(path, sim=sim)
    assert kept.iterations == 4 and kept.interrupted  # nothing computed was lost
    pd.testing.assert_frame_equal(kept.history, whole.history.iloc[:4], check_exact=True)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind

    # the file is never thrown away or continued with anything else, all checked before compiling
    monkeypatch.setattr(_tuning._Tuner, "initial", lambda *a: pytest.fail("compiled before the checks"))
    with pytest.raises(fb.ConfigError, match=r"fic.checkpoint: expected a path without an earlier tuning .*"
                                             r"holding 4 iterations .* pass resume="):
        fb.fic(sim, iterations=2, checkpoint=path, **kw)
    with pytest.raises(fb.ConfigError, match=r"fic.resume: expected a TuningResult of the same tuning settings"):
        fb.fic(sim, iterations=2, resume=path, **{**kw, "eta": 0.5})
    with pytest.raises(fb.ConfigError, match=r"fic.resume: expected a tuning of the same simulation"):
        fb.fic(sim_of(model=fb.models.WongWangExcInh(G=0.7)), iterations=2, resume=path, **kw)
    with pytest.raises(fb.ConfigError, match=r"fic.resume: expected a tuning of the same target FC"):
        fb.fic(sim, iterations=2, resume=path, target_fc=TARGET, **kw)
    monkeypatch.undo()

    counted = Counted()
    monkeypatch.setattr(_tuning, "progress_bar", counted)
    rest = fb.fic(sim, iterations=2, resume=os.fspath(path), checkpoint=path, **kw)  # a new call, from the file
    assert counted.done["fic"] == whole.iterations - kept.iterations  # nothing computed twice
    same(rest, whole)
    same(fb.TuningResult.load(path), whole)

    # Ctrl-C after the 1st chunk: the call returns what the file holds, and the file says so
    monkeypatch.setattr(_tuning, "progress_bar", Counted(at="fic", stop=1))
    with pytest.warns(UserWarning, match=r"interrupted after 2 of 6 iterations; the result keeps them and so does"):
        part = fb.fic(sim, iterations=6, checkpoint=tmp_path / "part.npz", **kw)
    assert part.interrupted and part.iterations == 2
    same(fb.TuningResult.load(tmp_path / "part.npz"), part)
    monkeypatch.setattr(_tuning._Tuner, "run", lambda *a: pytest.fail("0 more iterations computed some"))
    back = fb.fic(sim, iterations=0, resume=tmp_path / "part.npz", **kw)  # 0 more: read back, nothing compiled
    same(back, dataclasses.replace(part, interrupted=False))


@pytest.mark.parametrize("case, match", [
    ("missing folder", r"fic.checkpoint: expected a file in an existing folder, got .*no folder"),
    ("under a file", r"fic.checkpoint: expected a file in an existing folder"),
    ("a folder", r"fic.checkpoint: expected a file path, got .* \(a folder\)"),
    ("not a path", r"fic.checkpoint: expected a file path \(str or PathLike\) or None, got int"),
    ("read-only folder", r"fic.checkpoint: expected a file in a folder you can write to, got .*denied"),
    ("someone's data", r"fic.checkpoint: expected a tuning file .*, got .*data.npz, which is not one.*another"),
    ("resume: no file", r"fic.resume: expected a TuningResult or the path of a tuning file .*no such file"),
    ("resume: plain npz", r"fic.resume: expected a tuning file written by .*, got .*data.npz, which is not one"),
    ("resume: cache entry", r"fic.resume: expected a tuning file .*which is not one"),
    ("resume: text", r"fic.resume: expected a tuning file .*notes.txt, which is not one"),
    ("resume: not a path", r"fic.resume: expected a TuningResult or the path of a tuning file .*got float"),
    ("load: no file", r"TuningResult.load: expected a TuningResult or the path of a tuning file .*no such file"),
])
def test_bad_checkpoint_and_resume_paths_fail_before_compiling(tmp_path, monkeypatch, case, match):
    monkeypatch.setattr(_tuning._Tuner, "__init__", lambda *a, **k: pytest.fail("compiled before the checks"))
    np.savez(tmp_path / "data.npz", x=np.arange(3.0))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cache_entry = fb.Cache(tmp_path / "cache").put({"k": 1}, {"y": np.ones(2)})
    locked = tmp_path / "locked"
    locked.mkdir()
    if case == "read-only folder":
        locked.chmod(0o500)
        if os.access(locked, os.W_OK):  # root ignores the mode: stand in for the refusal
            monkeypatch.setattr(_tuning_result.tempfile, "mkstemp",
                                lambda **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    calls = {
        "missing folder": lambda: fb.fic(sim_of(), checkpoint=tmp_path / "nope" / "fic.npz"),
        "under a file": lambda: fb.fic(sim_of(), checkpoint=tmp_path / "notes.txt" / "fic.npz"),
        "a folder": lambda: fb.fic(sim_of(), checkpoint=tmp_path),
        "not a path": lambda: fb.fic(sim_of(), checkpoint=3),
        "read-only folder": lambda: fb.fic(sim_of(), checkpoint=locked / "fic.npz"),
        "someone's data": lambda: fb.fic(sim_of(), checkpoint=tmp_path / "data.npz"),
        "resume: no file": lambda: fb.fic(sim_of(), resume=tmp_path / "nope.npz"),
        "resume: plain npz": lambda: fb.fic(sim_of(), resume=tmp_path / "data.npz"),
        "resume: cache entry": lambda: fb.fic(sim_of(), resume=cache_entry),
        "resume: text": lambda: fb.fic(sim_of(), resume=str(tmp_path / "notes.txt")),
        "resume: not a path": lambda: fb.fic(sim_of(), resume=1.5),
        "load: no file": lambda: fb.TuningResult.load(tmp_path / "nope.npz"),
    }
    try:
        with pytest.raises(fb.ConfigError, match=match):
            calls[case]()
    finally:
        locked.chmod(0o700)
    with np.load(tmp_path / "data.npz") as npz:  # never overwritten
        np.testing.assert_array_equal(npz["x"], np.arange(3.0))


def _killed_child(path: str, err: str, jax_cache: str) -> None:
    """A forked child: fic of 8 TRs in chunks of 2 with a checkpoint; it waits after its 1st
    file for the parent's ``go`` file, and for good after its 3rd."""
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.close(fd)
    jax.config.update("jax_compilation_cache_dir", jax_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    write, count = _tuning._write, [0]

    def written(result, target):
        out = write(result, target)
        count[0] += 1
        if count[0] in (1, 3):
            _hold(Path(path).parent / "go" if count[0] == 1 else None)
        return out

    _tuning._write = written
    fb.fic(sim_of(), iterations=8, eta=1.0, chunk=2, checkpoint=path, progress=False)
    sys.exit(0)


class _TuningChild(_Child):
    def __init__(self, tmp: Path, path: Path):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        self.err = tmp / "child.err"
        self.err.write_text("")
        self.proc = ctx.Process(target=_killed_child, args=(str(path), str(self.err), str(tmp.parent / "jax-cache")))
        self.proc.start()


def test_sigkilled_tuning_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A real SIGKILL, released anywhere between the 1st chunk's file and the 3rd's (mid-chunk,
    mid-write ...): the file holds 2, 4 or 6 whole iterations and continues to the result of one
    uninterrupted call."""
    path = tmp_path / "fic.npz"
    proc = _TuningChild(tmp_path, path)
    whole = fb.fic(sim_of(), iterations=8, eta=1.0, chunk=2, progress=False)
    _wait_for(path.exists, proc, "the 1st checkpoint")
    _stop(proc, signal.SIGKILL, go=tmp_path / "go")
    kept = fb.TuningResult.load(path)
    assert kept.iterations in (2, 4, 6) and kept.interrupted
    counted = Counted()
    monkeypatch.setattr(_tuning, "progress_bar", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rest = fb.fic(sim_of(), iterations=8 - kept.iterations, eta=1.0, chunk=2, progress=False,
                      resume=path, checkpoint=path)
    assert counted.done["fic"] == 8 - kept.iterations
    same(rest, whole)


# ------------------------------------------------------------------------------ the runner
def test_run_resumes_its_tuning_from_the_checkpoints(tmp_path, monkeypatch):
    """``run_spec`` with FIC (4 TRs) and EIB (6 TRs) in chunks of 2: Ctrl-C during FIC, then
    --resume killed during EIB, then --resume to the end: the tables and fitted values equal an
    uninterrupted run's, FIC is never recomputed once finished and EIB continues after its last
    written chunk."""
    write_data(tmp_path)
    spec = tiny_spec(
        model={"name": "eib", "parameters": {"G": 0.8, "J_i": {"value": 1.0, "domain": [0.0, 10.0], "free": True},
                                             "wLRE": {"value": 1.0, "domain": [0.0, 10.0], "free": True},
                                             "wFFI": {"value": 0.0, "domain": [0.0, 10.0], "free": True}}},
        exploration=None, optimize=[],
        tuning={"fic": {"eta": 0.5, "iterations": 4},
                "eib": {"eta": 0.05, "fic_eta": 0.5, "warmup": 1, "window": 3, "iterations": 6}})
    spec["integration"] = {"dt": 1.0, "duration": 3600, "sigma": 0.01}
    spec["observation"]["fc_skip"] = 0
    path = write_spec(tmp_path, spec)
    monkeypatch.setattr(_runner, "_TUNING_CHUNK", 2)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # figures are not what this test checks
    ref, out, write = tmp_path / "ref", tmp_path / "out", _tuning._write

    def run(folder, **kw):
        return fb.run_spec(path, out=folder, **kw)

    run(ref)

    first = Counted(at="fic", stop=1)  # Ctrl-C after FIC's 1st chunk: the run stops (no partial tuning used)
    monkeypatch.setattr(_tuning, "progress_bar", first)
    with pytest.warns(UserWarning, match="fic interrupted after 2 of 4"), pytest.raises(KeyboardInterrupt):
        run(out)
    assert fb.TuningResult.load(out / "logs" / "tuning-fic.npz").iterations == 2
    assert not (out / "logs" / "tuning-eib.npz").exists() and not (out / "tuning.csv").exists()

    second = Counted()  # --resume: FIC's last 2 TRs, then killed once EIB's 2nd chunk is written
    monkeypatch.setattr(_tuning, "progress_bar", second)
    kill_after(monkeypatch, 2, "tuning-eib.npz")
    with pytest.raises(Killed):
        run(out, resume=True)
    assert second.done["fic"] == 2
    assert fb.TuningResult.load(out / "logs" / "tuning-eib.npz").iterations == 4
    monkeypatch.setattr(_tuning, "_write", write)

    third = Counted()
    monkeypatch.setattr(_tuning, "progress_bar", third)
    result = run(out, resume=True)
    assert (third.done["fic"], third.done["eib"]) == (0, 2)  # FIC read back, EIB's last chunk only

    pd.testing.assert_frame_equal(pd.read_csv(out / "tuning.csv"), pd.read_csv(ref / "tuning.csv"), check_exact=True)
    pd.testing.assert_frame_equal(result.tables["tuning"], pd.read_csv(ref / "tuning.csv"), check_exact=True,
                                  check_dtype=False)
    assert json.loads((out / "params.json").read_text()) == json.loads((ref / "params.json").read_text())
    got, want = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert got.pop("wall_time_s") > 0 and want.pop("wall_time_s") > 0 and got == want
    for step in ("fic", "eib"):
        same(*(fb.TuningResult.load(d / "logs" / f"tuning-{step}.npz") for d in (out, ref)))
        assert f"logs/tuning-{step}.npz" in result.manifest["files"]
    assert json.loads((out / "logs" / "state.json").read_text())["finished"] is True
