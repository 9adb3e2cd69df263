"""Objective: counting, history, penalty, budget, callback, durable log and replay."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from fitbridge._errors import ConfigError
from fitbridge._evallog import EvalLog, read_log
from fitbridge._objective import PENALTY, BudgetExhausted, Objective, ResumeMismatch, StopRequested
from fitbridge._params import Free
from fitbridge._problem import Problem


def loss(p, key):
    """NaN for a < 0 (a 'diverging simulation'), smooth elsewhere; aux r."""
    value = jnp.sqrt(p["a"]) + (p["b"] - 0.5) ** 2
    return value, {"r": p["b"] * 2.0}


@pytest.fixture(scope="module")
def problem():
    return Problem(
        loss, {"a": Free(1.0, bounds=(-1.0, 4.0)), "b": Free(0.0, bounds=(-2.0, 2.0))}, has_aux=True
    )


def test_counts_and_history(problem):
    obj = Objective(problem)
    obj.fun([1.0, 0.0])
    obj.fun_and_jac([4.0, 1.0])
    obj.batch([[1.0, 1.0], [0.25, 0.5], [2.0, 0.0]])
    obj.batch_fun_and_jac([[1.0, 0.5]])
    obj.jac([1.0, 0.0])
    assert (obj.nfev, obj.njev, obj.nhev) == (7, 3, 0)
    h = obj.history
    assert len(h) == 7 and h["eval"].tolist() == list(range(7))
    assert list(h.columns[-2:]) == ["a", "b"] and h["a"].dtype == np.float64
    np.testing.assert_allclose(
        h["fun"], [1.25, 2.25, 1.25, 0.5, np.sqrt(2) + 0.25, 1.0, 1.25], rtol=1e-15
    )
    np.testing.assert_allclose(h["r"], 2 * h["b"], rtol=0, atol=0)
    assert h["best"].tolist() == list(np.minimum.accumulate(h["fun"]))
    assert (h["source"] == "computed").all() and not h["penalised"].any()
    assert h["time"].is_monotonic_increasing
    assert obj.best_fun == 0.5 and obj.best_x.tolist() == [0.25, 0.5]


def test_nan_loss_is_penalised_with_zero_gradient(problem):
    obj = Objective(problem)
    f, g = obj.fun_and_jac([-0.5, 0.0])
    assert f == PENALTY == 1e6 and g.tolist() == [0.0, 0.0]
    assert obj.fun([-0.5, 0.0]) == PENALTY
    F, G = obj.batch_fun_and_jac([[-1.0, 0.0], [1.0, 0.5]])
    assert F.tolist() == [PENALTY, 1.0] and G[0].tolist() == [0.0, 0.0] and G[1][1] == 0.0
    h = obj.history
    assert h["penalised"].tolist() == [True, True, True, False]
    assert np.isnan(h["loss"][:3]).all() and obj.npenalised == 3
    assert obj.best_fun == 1.0


def test_non_finite_gradient_with_finite_loss_is_penalised(problem):
    obj = Objective(problem, penalty=123.0)
    f, g = obj.fun_and_jac([0.0, 0.5])  # sqrt at 0: value 0, gradient inf
    assert f == 123.0 and g.tolist() == [0.0, 0.0]
    assert obj.fun([0.0, 0.5]) == 0.0  # the loss alone is fine
    assert obj.history["penalised"].tolist() == [True, False]


def test_budget_is_exact(problem):
    obj = Objective(problem, budget=5)
    obj.fun([1.0, 0.0])
    obj.fun_and_jac([1.0, 0.0])
    with pytest.raises(BudgetExhausted):
        obj.batch(np.ones((6, 2)))  # only 3 fit: evaluated, recorded, then raise
    assert obj.nfev == 5 == len(obj.history) and obj.remaining == 0
    for call in (
        lambda: obj.fun([1.0, 0.0]),
        lambda: obj.batch(np.ones((1, 2))),
        lambda: obj.jac([1.0, 0.0]),
    ):
        with pytest.raises(BudgetExhausted):
            call()
    assert obj.nfev == 5
    assert obj.batch(np.zeros((0, 2))).shape == (0,)  # nothing asked, nothing spent


def test_record_counts_penalises_and_respects_budget(problem):
    obj = Objective(problem, budget=3)
    out = obj.record([[1.0, 0.0], [2.0, 0.0]], [0.5, np.inf], aux={"r": [1.0, 2.0]})
    assert out.tolist() == [0.5, PENALTY] and obj.nfev == 2
    with pytest.raises(BudgetExhausted):
        obj.record([[1.0, 1.0], [3.0, 0.0]], [0.1, 0.2])
    assert obj.nfev == 3 and obj.best_fun == 0.1
    assert obj.history["source"].tolist() == ["backend"] * 3


def test_hessian_products_are_counted_apart(problem):
    obj = Objective(problem)
    obj.hessp([1.0, 0.0], [1.0, 0.0])
    obj.hess([1.0, 0.0])
    assert (obj.nfev, obj.nhev) == (0, 2)


def test_callback_sees_each_row_and_can_stop(problem):
    seen = []

    def callback(row):
        seen.append(row)
        return row["eval"] == 3

    obj = Objective(problem, callback=callback)
    obj.batch([[1.0, 0.0], [2.0, 0.0]])
    with pytest.raises(StopRequested):
        obj.batch([[1.0, 0.1], [1.0, 0.2], [1.0, 0.3]])  # stop asked at eval 3: the batch is kept
    assert [r["eval"] for r in seen] == [0, 1, 2, 3, 4] and obj.nfev == 5
    assert set(seen[0]) >= {"eval", "x", "fun", "loss", "penalised", "aux", "time", "best"}
    assert seen[0]["aux"] == {"r": 0.0}


def test_rows_are_logged_as_they_happen_and_read_back_bitwise(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    log = EvalLog(path, {"method": "test"})
    obj = Objective(problem, log=log)
    x = [1.0 / 3.0, 0.1 + 0.2]
    obj.fun_and_jac(x)
    obj.batch([[-0.5, 0.0], [2.0, 1e-300]])
    assert len(path.read_text().splitlines()) == 4  # written before the run ends
    log.close()
    manifest, rows = read_log(path)
    assert manifest == {"method": "test"} and len(rows) == 3
    assert rows[0]["x"].tolist() == x and rows[0]["fun"] == obj.history["fun"][0]
    np.testing.assert_array_equal(rows[0]["jac"], obj.jac_at(np.array(x)))
    assert rows[1]["penalised"] and np.isnan(rows[1]["loss"]) and rows[1]["fun"] == PENALTY
    assert rows[2]["x"][1] == 1e-300 and rows[2]["aux"] == {"r": 2e-300} and rows[2]["jac"] is None
    json.loads(path.read_text().splitlines()[1])  # strict JSON (no NaN tokens)
    assert "NaN" not in path.read_text()


def test_replay_serves_logged_rows_without_recomputing(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    log = EvalLog(path, {})
    first = Objective(problem, log=log)
    X = np.array([[1.0, 0.0], [-1.0, 0.3], [2.0, 0.7]])
    F1, G1 = first.batch_fun_and_jac(X)
    log.close()
    _, rows = read_log(path)
    before = problem.nfev
    again = Objective(problem, replay=rows)
    F2, G2 = again.batch_fun_and_jac(X)
    assert problem.nfev == before  # nothing recomputed
    np.testing.assert_array_equal(F1, F2)
    np.testing.assert_array_equal(G1, G2)
    assert again.history["source"].tolist() == ["log"] * 3
    assert (
        again.fun([3.0, 0.0]) == pytest.approx(np.sqrt(3.0) + 0.25) and problem.nfev == before + 1
    )


def test_replay_mismatch_is_a_clear_error(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    log = EvalLog(path, {})
    Objective(problem, log=log).fun([1.0, 0.0])
    log.close()
    _, rows = read_log(path)
    with pytest.raises(
        ResumeMismatch, match=r"evaluation 0 asked for x=\[1.0, 0.5\].*log has x=\[1.0, 0.0\]"
    ):
        Objective(problem, replay=rows).fun([1.0, 0.5])
    with pytest.raises(ResumeMismatch, match="needs a gradient"):
        Objective(problem, replay=rows).fun_and_jac([1.0, 0.0])


def test_torn_last_line_is_ignored_and_cut_before_appending(problem, tmp_path):
    path = tmp_path / "run.jsonl"
    log = EvalLog(path, {"m": 1})
    Objective(problem, log=log).batch([[1.0, 0.0], [2.0, 0.0]])
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"eval": 2, "x": [1.0,')  # a crash in the middle of a row
    _, rows = read_log(path)
    assert len(rows) == 2
    log = EvalLog(path, {"m": 1}, append=True)
    Objective(problem, log=log, replay=rows).batch([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    log.close()
    _, rows = read_log(path)
    assert [r["eval"] for r in rows] == [0, 1, 2] and rows[2]["x"].tolist() == [3.0, 0.0]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"budget": 0}, ["positive int", "budget"]),
        ({"budget": 2.5}, ["positive int"]),
        ({"budget": True}, ["positive int"]),
        ({"penalty": float("nan")}, ["finite float"]),
    ],
)
def test_bad_settings(problem, kwargs, words):
    with pytest.raises(ConfigError) as err:
        Objective(problem, **kwargs)
    assert all(w in str(err.value) for w in words)


def test_bad_points(problem):
    obj = Objective(problem)
    with pytest.raises(ConfigError, match=r"vector of 2 values.*shape \(3,\)"):
        obj.fun([1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match=r"shape \(n, 2\)"):
        obj.batch([1.0, 2.0])
    with pytest.raises(ConfigError, match="one loss per row"):
        obj.record([[1.0, 0.0]], [1.0, 2.0])
