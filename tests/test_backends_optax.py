"""Optax backends: unbounded coordinates, steps vs evaluations, lbfgs line search, lockstep."""

import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge.backends._optax  # noqa: F401  registers optax:<name>
from fitbridge._errors import ConfigError
from fitbridge._minimize import minimize
from fitbridge._objective import Objective
from fitbridge._params import Free
from fitbridge._problem import Problem
from fitbridge.backends._optax import run_lockstep


def rosenbrock(p, key):
    return (1.0 - p["a"]) ** 2 + 100.0 * (p["b"] - p["a"] ** 2) ** 2


@pytest.fixture(scope="module")
def rosen():
    return Problem(rosenbrock, {"a": Free(-1.0, bounds=(-2, 2), transform="logit"),
                                "b": Free(1.0, bounds=(-1, 3), transform="logit")})


@pytest.fixture(scope="module")
def boxed():  # optimum (2, -0.5): a on its upper bound, identity transform -> projection
    return Problem(lambda p, k: (p["a"] - 3.0) ** 2 + (p["b"] + 0.5) ** 2,
                   {"a": Free(0.5, bounds=(0, 2)), "b": Free(0.5, bounds=(-1, 1))})


@pytest.fixture(scope="module")
def bowl():
    return Problem(lambda p, k: (p["a"] - 0.3) ** 2 + 2.0 * (p["b"] + 0.2) ** 2,
                   {"a": Free(1.0), "b": Free(1.0)})


def counting(problem, monkeypatch):
    sizes, evaluate = [], problem.evaluate
    monkeypatch.setattr(problem, "evaluate",
                        lambda X, **kw: (sizes.append(len(X)), evaluate(X, **kw))[1])
    return sizes


def test_adam_rosenbrock(rosen):
    res = minimize(rosen, "optax:adam", budget=3000, options={"learning_rate": 0.05},
                   progress=False)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-5)
    assert res.nfev == res.njev <= 3000


def test_lbfgs_rosenbrock_counts_line_search_evaluations(rosen):
    res = minimize(rosen, "optax:lbfgs", budget=300, progress=False)
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-8)
    assert res.nit <= res.nfev <= 300  # one evaluation per line-search trial


def test_lbfgs_stops_exactly_at_the_budget(rosen):
    res = minimize(rosen, "optax:lbfgs", budget=7, progress=False)
    assert res.nfev == 7 and res.status == 1


def test_projection_reaches_an_optimum_on_a_bound(boxed):
    res = minimize(boxed, "optax:adam", budget=2000, options={"learning_rate": 0.05},
                   progress=False)
    np.testing.assert_allclose(res.x, [2.0, -0.5], atol=1e-6)
    assert res.history["a"].max() <= 2.0


def test_one_evaluation_per_step(bowl):
    res = minimize(bowl, "optax:sgd", options={"steps": 25, "learning_rate": 0.01},
                   progress=False)
    assert res.nfev == 25 and res.nit == 25 and not res.success
    res = minimize(bowl, "optax:sgd", budget=30, options={"steps": 1000}, progress=False)
    assert res.nfev == 30 and res.status == 1


def test_gtol_stop(bowl):
    res = minimize(bowl, "optax:sgd", options={"learning_rate": 0.2, "gtol": 1e-10},
                   progress=False)
    assert res.success and res.nfev < 200
    np.testing.assert_allclose(res.x, [0.3, -0.2], atol=1e-10)


def test_noisy_sgd_takes_the_seed(bowl):
    runs = [minimize(bowl, "optax:noisy_sgd", options={"steps": 20}, seed=s, progress=False)
            for s in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0].history["fun"], runs[1].history["fun"])
    assert not np.array_equal(runs[0].history["fun"], runs[2].history["fun"])


def test_lockstep_equals_serial_runs(bowl, monkeypatch):
    starts = np.array([[1.0, 1.0], [-2.0, 0.5], [0.3, 3.0]])
    options = {"learning_rate": 0.05, "steps": 40}
    serial = [minimize(bowl, "optax:adam", x0, options=options, progress=False) for x0 in starts]
    sizes = counting(bowl, monkeypatch)
    runs = run_lockstep(Objective(bowl), starts, method="optax:adam", options=options)
    assert sizes == [3] * 40  # one batched fun_and_jac per step
    for one, run in zip(serial, runs):
        np.testing.assert_allclose(run.x, one.x, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(run.fun, one.fun, rtol=1e-12, atol=1e-14)
        assert len(run.evals) == one.nfev == 40


def test_lockstep_budget_and_early_finishers(bowl):
    starts = np.array([[0.3, -0.2], [1.0, 1.0]])  # the first start is already optimal
    obj = Objective(bowl, budget=21)
    runs = run_lockstep(obj, starts, method="optax:sgd", options={"learning_rate": 0.1})
    assert runs[0].success and runs[0].nit == 1 and len(runs[0].evals) == 1
    assert obj.nfev == 21 and len(runs[1].evals) == 20 and "budget" in runs[1].message


def test_lockstep_refuses_lbfgs(bowl):
    with pytest.raises(ConfigError, match="first-order"):
        run_lockstep(Objective(bowl), np.zeros((2, 2)), method="optax:lbfgs")


@pytest.mark.parametrize("method, options, match", [
    ("optax:adamm", {}, "did you mean 'optax:adam'|did you mean 'adam'"),
    ("optax:adam", {"b3": 0.1}, "b3"),
    ("optax:adam", {"steps": 0}, "steps"),
])
def test_bad_names_and_options(bowl, method, options, match):
    with pytest.raises(ConfigError, match=match):
        minimize(bowl, method, budget=5, options=options, progress=False)


def test_pure_jax_loss_in_float64():
    problem = Problem(lambda p, k: jnp.sum((p["w"] - 0.25) ** 2),
                      {"w": Free(0.9, bounds=(0, 1), transform="logit")})
    res = minimize(problem, "optax:rmsprop", budget=500, options={"learning_rate": 0.05},
                   progress=False)
    assert res.x.dtype == np.float64
    np.testing.assert_allclose(res.x, [0.25], atol=1e-3)
