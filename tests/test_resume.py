"""Durable log + resume: an interrupted run, resumed, equals the uninterrupted one."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from fitbridge._errors import ConfigError
from fitbridge._evallog import read_log
from fitbridge._minimize import minimize
from fitbridge._objective import ResumeMismatch
from fitbridge._params import Free
from fitbridge._problem import Problem


def rosen(p, key):
    x = jnp.concatenate([p["a"][None], p["b"]])
    value = jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return value, {"r": jnp.tanh(value)}


SPACE = {
    "a": Free(-1.2, bounds=(-2.0, 2.0)),
    "b": Free([1.0, 0.5], bounds=(-2.0, 2.0), regional=True),
}


@pytest.fixture(scope="module")
def problem():
    return Problem(rosen, SPACE, has_aux=True)


def interrupt_after(n):
    def callback(row):
        if row["eval"] == n - 1:
            raise KeyboardInterrupt

    return callback


def assert_same_run(a, b, names):
    np.testing.assert_array_equal(a.x, b.x)
    assert (a.fun, a.nfev, a.njev, a.nit, a.status, a.success, a.message) == (
        b.fun,
        b.nfev,
        b.njev,
        b.nit,
        b.status,
        b.success,
        b.message,
    )
    cols = ["eval", "fun", "loss", "penalised", "r", *names]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])


@pytest.mark.parametrize(
    "method, budget",
    [
        ("scipy:L-BFGS-B", None),
        ("scipy:Nelder-Mead", 150),
        ("scipy:differential_evolution", 200),
        ("cma", 120),
    ],
)
def test_interrupted_then_resumed_equals_uninterrupted(problem, tmp_path, method, budget):
    full = minimize(
        problem, method, budget=budget, seed=7, log=tmp_path / "full.jsonl", progress=False
    )
    path = tmp_path / "cut.jsonl"
    with pytest.raises(KeyboardInterrupt):
        minimize(
            problem,
            method,
            budget=budget,
            seed=7,
            log=path,
            callback=interrupt_after(7),
            progress=False,
        )
    assert len(read_log(path)[1]) == 7

    computed_before = problem.nfev
    resumed = minimize(problem, method, budget=budget, seed=7, resume=path, progress=False)
    assert (
        problem.nfev - computed_before == full.nfev - 7
    )  # the 7 logged points were not recomputed
    assert_same_run(resumed, full, problem.names)
    assert resumed.history["source"].tolist() == ["log"] * 7 + ["computed"] * (full.nfev - 7)

    # the log now holds every evaluation exactly once, identical to the uninterrupted log
    _, rows = read_log(path)
    _, ref = read_log(tmp_path / "full.jsonl")
    assert [r["eval"] for r in rows] == list(range(full.nfev))
    for r, s in zip(rows, ref, strict=True):
        assert r["x"].tolist() == s["x"].tolist() and r["fun"] == s["fun"] and r["aux"] == s["aux"]


def test_budget_stop_then_resume_with_more_budget(problem, tmp_path):
    full = minimize(problem, "scipy:L-BFGS-B", seed=1, progress=False)
    path = tmp_path / "run.jsonl"
    short = minimize(problem, "scipy:L-BFGS-B", seed=1, budget=10, log=path, progress=False)
    assert short.nfev == 10 and short.status == 1
    resumed = minimize(problem, "scipy:L-BFGS-B", seed=1, resume=path, progress=False)
    assert_same_run(resumed, full, problem.names)


def test_resume_into_another_file_copies_the_served_rows(problem, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with pytest.raises(KeyboardInterrupt):
        minimize(
            problem,
            "scipy:Nelder-Mead",
            budget=40,
            log=first,
            callback=interrupt_after(5),
            progress=False,
        )
    res = minimize(
        problem, "scipy:Nelder-Mead", budget=40, resume=first, log=second, progress=False
    )
    assert len(read_log(first)[1]) == 5
    manifest, rows = read_log(second)
    assert len(rows) == res.nfev == 40 and manifest["method"] == "scipy:Nelder-Mead"


def test_resampled_noise_resumes_identically(tmp_path):
    noisy = Problem(
        lambda p, k: (p["a"] - 0.3) ** 2 + 0.01 * jax.random.normal(k),
        {"a": Free(0.0, bounds=(-1.0, 1.0))},
        stochastic=True,
        noise="resample",
    )
    full = minimize(noisy, "scipy:Nelder-Mead", budget=30, progress=False)
    path = tmp_path / "n.jsonl"
    with pytest.raises(KeyboardInterrupt):
        minimize(
            noisy,
            "scipy:Nelder-Mead",
            budget=30,
            log=path,
            callback=interrupt_after(9),
            progress=False,
        )
    resumed = minimize(noisy, "scipy:Nelder-Mead", budget=30, resume=path, progress=False)
    np.testing.assert_array_equal(resumed.history["fun"], full.history["fun"])
    np.testing.assert_array_equal(resumed.x, full.x)


def test_header_records_the_manifest(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    res = minimize(
        problem, "scipy:L-BFGS-B", seed=3, budget=5, options={"maxcor": 5}, log=path, progress=False
    )
    header = json.loads(path.read_text().splitlines()[0])
    assert header["fitbridge_log"] == 1
    for key in ("method", "seed", "budget", "options", "problem_hash", "names", "packages"):
        assert header["manifest"][key] == res.manifest[key]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"seed": 2}, "seed"),
        ({"method": "scipy:TNC"}, "method"),
        ({"options": {"maxcor": 3}}, "options"),
        ({"x0": [0.0, 0.0, 0.0]}, "x0"),
    ],
)
def test_resume_refuses_a_different_run(problem, tmp_path, change, field):
    path = tmp_path / "run.jsonl"
    minimize(problem, "scipy:L-BFGS-B", seed=1, budget=5, log=path, progress=False)
    kwargs = {"method": "scipy:L-BFGS-B", "seed": 1, "budget": 5, **change}
    with pytest.raises(ConfigError) as err:
        minimize(problem, resume=path, progress=False, **kwargs)
    assert f"the logged run's {field}" in str(err.value) and "Fix:" in str(err.value)


def test_resume_refuses_a_different_problem(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    minimize(problem, "scipy:L-BFGS-B", budget=5, log=path, progress=False)
    other = Problem(rosen, {**SPACE, "a": Free(-1.2, bounds=(-3.0, 2.0))}, has_aux=True)
    with pytest.raises(ConfigError, match="problem_hash"):
        minimize(other, "scipy:L-BFGS-B", budget=5, resume=path, progress=False)


def test_a_diverging_replay_is_a_clear_error(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    minimize(problem, "scipy:Nelder-Mead", budget=6, log=path, progress=False)
    lines = path.read_text().splitlines()
    row = json.loads(lines[3])
    row["x"][0] += 1e-6  # as if another optimizer version had produced the log
    lines[3] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResumeMismatch, match="evaluation 2 asked for x="):
        minimize(problem, "scipy:Nelder-Mead", budget=6, resume=path, progress=False)


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["existing fitbridge log", "missing"]),
        ("", ["header line", "empty file"]),
        ('{"hello": 1}\n', ["header line"]),
    ],
)
def test_bad_resume_files(problem, tmp_path, content, words):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        minimize(problem, "scipy:L-BFGS-B", resume=path, progress=False)
    for word in words:
        assert word in str(err.value)
