"""minimize(): the result type, method resolution, budget, callback, NaN regions, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from fitbridge import backends
from fitbridge._errors import ConfigError
from fitbridge._minimize import minimize
from fitbridge._objective import PENALTY
from fitbridge._params import Free
from fitbridge._problem import Problem
from fitbridge._result import OptimizeResult
from fitbridge.backends import BackendOutcome


def bowl(p, key):
    return (p["G"] - 1.0) ** 2 + jnp.sum((p["w"] - jnp.array([0.2, 0.4])) ** 2), {
        "fc_r": 1.0 - p["G"] / 10
    }


@pytest.fixture(scope="module")
def problem():
    return Problem(
        bowl,
        {
            "G": Free(0.5, bounds=(0.0, 3.0)),
            "w": Free([0.5, 0.5], bounds=(0.0, 1.0), regional=True),
        },
        has_aux=True,
    )


def test_result_fields(problem):
    res = minimize(problem, "scipy:L-BFGS-B", progress=False)
    assert isinstance(res, OptimizeResult)
    np.testing.assert_allclose(res.x, [1.0, 0.2, 0.4], atol=1e-7)
    assert res.x.dtype == np.float64 and isinstance(res.fun, float) and res.fun < 1e-12
    assert res.jac is not None and np.max(np.abs(res.jac)) < 1e-5
    assert res.success and res.status == 0 and "CONVERGENCE" in res.message
    assert res.nfev == res.njev == len(res.history) and res.nit > 0 and res.nhev == 0
    assert res.params == {
        "G": pytest.approx(1.0, abs=1e-7),
        "w": [pytest.approx(0.2, abs=1e-7), pytest.approx(0.4, abs=1e-7)],
    }
    assert res.method == "scipy:L-BFGS-B" and res.wall_time > 0
    assert isinstance(res.history, pd.DataFrame)
    assert {"eval", "fun", "best", "loss", "penalised", "time", "fc_r", "G", "w[0]", "w[1]"} <= set(
        res.history
    )
    m = res.manifest
    assert m["method"] == "scipy:L-BFGS-B" and m["seed"] == 0 and m["budget"] is None
    assert m["packages"]["scipy"] and m["packages"]["jax"] and len(m["problem_hash"]) == 64
    assert m["names"] == ["G", "w[0]", "w[1]"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.fun = 0.0
    assert "scipy:L-BFGS-B" in repr(res)


def test_problem_hash_is_stable_and_sensitive(problem):
    again = Problem(bowl, problem.space, has_aux=True)
    h = lambda p: minimize(p, "scipy:L-BFGS-B", budget=1, progress=False).manifest["problem_hash"]  # noqa: E731
    assert h(problem) == h(again)
    assert h(problem) != h(Problem(bowl, problem.space, has_aux=True, spec={"dt": 0.1}))


def test_x0_and_options_pass_through(problem):
    res = minimize(
        problem, "scipy:L-BFGS-B", x0=[2.0, 0.9, 0.9], options={"maxiter": 1}, progress=False
    )
    assert res.history[problem.names].iloc[0].tolist() == [2.0, 0.9, 0.9]
    assert res.nit == 1 and not res.success


def test_method_names_resolve_case_insensitively():
    assert backends.get("scipy:l-bfgs-b").name == "scipy:L-BFGS-B"
    assert backends.get("SCIPY:nelder-mead").name == "scipy:Nelder-Mead"


@pytest.mark.parametrize(
    "name, hint",
    [
        ("scipy:LBFGSB", "did you mean 'scipy:L-BFGS-B'"),
        ("scipy:nelder_mead", "did you mean 'scipy:Nelder-Mead'"),
        ("cmaa", "did you mean 'cma'"),
        ("nevergrad:NGOp", "did you mean 'NGOpt'"),
    ],
)
def test_unknown_method_did_you_mean(problem, name, hint):
    with pytest.raises(ConfigError) as err:
        minimize(problem, name, progress=False)
    assert hint in str(err.value) and name.split(":")[-1] + "'" in str(err.value)


def test_callable_method_and_backend_info(problem):
    def grid_search(obj, x0, *, budget, seed, options, method):
        X = np.array([[g, 0.2, 0.4] for g in np.linspace(0, 3, options["n"])])
        F = obj.batch(X)
        return BackendOutcome(X[np.argmin(F)], float(F.min()), message="grid done", nit=1)

    res = minimize(problem, grid_search, options={"n": 7}, progress=False)
    assert res.method.startswith("custom:") and res.message == "grid done"
    assert res.nfev == 7 and res.x.tolist() == [1.0, 0.2, 0.4]
    info = backends.BackendInfo(name="grid", run=grid_search)
    assert minimize(problem, info, options={"n": 4}, progress=False).nfev == 4


def test_bounds_free_methods_are_refused_on_a_box_the_transforms_keep(problem):
    with pytest.raises(ConfigError) as err:
        minimize(problem, "scipy:BFGS", progress=False)
    assert "ignores bounds" in str(err.value) and "scipy:L-BFGS-B" in str(err.value)
    assert "transform='logit'" in str(err.value)
    logit = Problem(
        bowl,
        {
            "G": Free(0.5, bounds=(0.0, 3.0), transform="logit"),
            "w": Free([0.5, 0.5], bounds=(0.0, 1.0), regional=True, transform="logit"),
        },
        has_aux=True,
    )
    res = minimize(logit, "scipy:BFGS", progress=False)  # runs in the unbounded coordinate
    np.testing.assert_allclose(res.x, [1.0, 0.2, 0.4], atol=1e-5)


def test_box_sampling_methods_need_finite_bounds():
    open_problem = Problem(lambda p, k: p["a"] ** 2, {"a": Free(1.0)})
    with pytest.raises(ConfigError, match="needs finite bounds"):
        minimize(open_problem, "scipy:differential_evolution", progress=False)


def rosen(p, key):
    x = jnp.concatenate([p["a"][None], p["b"]])
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize(
    "method, budget",
    [
        ("scipy:L-BFGS-B", 7),
        ("scipy:Nelder-Mead", 9),
        ("scipy:differential_evolution", 37),
        ("cma", 13),
    ],
)
def test_budget_is_exact(method, budget):
    problem = Problem(
        rosen,
        {
            "a": Free(-1.2, bounds=(-2.0, 2.0)),
            "b": Free([1.0, 0.5], bounds=(-2.0, 2.0), regional=True),
        },
    )
    res = minimize(problem, method, budget=budget, progress=False)
    assert res.nfev == budget == len(res.history)
    assert (
        res.status == 1 and not res.success
    )  # stopped by the budget (or scipy's own limit = budget)
    assert res.fun == res.history["fun"].min()


def test_callback_can_stop_and_exceptions_propagate(problem, tmp_path):
    rows = []
    res = minimize(
        problem,
        "scipy:Nelder-Mead",
        callback=lambda r: rows.append(r) or r["eval"] == 4,
        progress=False,
    )
    assert res.nfev == 5 == len(rows) and res.status == 99 and "callback" in res.message
    assert rows[2]["x"].tolist() == res.history[problem.names].iloc[2].tolist()

    def boom(row):
        if row["eval"] == 2:
            raise RuntimeError("user code failed")

    with pytest.raises(RuntimeError, match="user code failed"):
        minimize(
            problem, "scipy:Nelder-Mead", callback=boom, log=tmp_path / "log.jsonl", progress=False
        )
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 1 + 3  # header + 3 rows


def nan_region_loss(p, key):
    """Like a diverging simulation: NaN for G > 1.2, best fit at the edge G = 1.1."""
    value = (p["G"] - 1.1) ** 2 + (p["w"] - 0.3) ** 2
    return jnp.where(p["G"] > 1.2, jnp.nan, value)


@pytest.mark.parametrize("method", ["scipy:L-BFGS-B", "scipy:Nelder-Mead"])
def test_nan_region_never_crashes_a_run(method):
    problem = Problem(
        nan_region_loss, {"G": Free(2.0, bounds=(0.0, 3.0)), "w": Free(0.9, bounds=(0.0, 1.0))}
    )
    res = minimize(problem, method, x0=[1.0, 0.9], progress=False)
    h = res.history
    assert np.isfinite(res.fun) and res.fun < 1e-6 and abs(res.x[0] - 1.1) < 1e-3
    if h["penalised"].any():
        assert (h.loc[h["penalised"], "fun"] == PENALTY).all() and h.loc[
            h["penalised"], "loss"
        ].isna().all()
    start_in_nan = minimize(problem, method, x0=[2.0, 0.9], budget=200, progress=False)
    assert start_in_nan.nfev <= 200 and start_in_nan.history["penalised"].iloc[0]


def test_all_nan_loss_is_reported_not_raised():
    problem = Problem(lambda p, k: jnp.nan * p["a"], {"a": Free(0.5, bounds=(0.0, 1.0))})
    res = minimize(problem, "scipy:Nelder-Mead", budget=20, progress=False)
    assert not res.success and "non-finite" in res.message and res.fun == PENALTY


def test_seed_makes_stochastic_backends_reproducible(problem):
    runs = [
        minimize(problem, "scipy:differential_evolution", budget=60, seed=s, progress=False)
        for s in (3, 3, 4)
    ]
    cols = ["fun", *problem.names]
    pd.testing.assert_frame_equal(runs[0].history[cols], runs[1].history[cols])
    assert not runs[0].history[cols].equals(runs[2].history[cols])


def test_resample_noise_returns_the_optimizer_answer():
    noisy = Problem(
        lambda p, k: (p["a"] - 1.0) ** 2 + 0.5 * jax.random.normal(k),
        {"a": Free(0.0, bounds=(-2.0, 2.0))},
        stochastic=True,
        noise="resample",
    )

    def answer_one(obj, x0, *, budget, seed, options, method):
        F = obj.batch(np.linspace(-2, 2, 9)[:, None])
        return BackendOutcome(np.array([1.0]), float("nan"), message=f"{F.size} points")

    res = minimize(noisy, answer_one, progress=False)
    assert res.x.tolist() == [1.0] and np.isnan(res.fun)  # not the luckiest noisy sample


def test_progress_is_silent_without_a_terminal(problem, capsys):
    minimize(problem, "scipy:L-BFGS-B", progress=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"x0": [5.0, 0.5, 0.5]}, ["inside the bounds", "G=5.0", "np.clip"]),
        ({"x0": [0.5, 0.5]}, ["shape (3,)", "shape (2,)"]),
        ({"seed": -1}, ["non-negative int"]),
        ({"seed": 1.5}, ["non-negative int"]),
        ({"options": [("maxiter", 3)]}, ["dict of backend options"]),
        ({"callback": "print"}, ["callable callback"]),
        ({"budget": 0}, ["positive int"]),
        ({"method": 3}, ["backend name or a callable"]),
    ],
)
def test_bad_inputs(problem, kwargs, words):
    kwargs = {"method": "scipy:L-BFGS-B", **kwargs}
    with pytest.raises(ConfigError) as err:
        minimize(problem, progress=False, **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_not_a_problem_and_existing_log_are_errors(problem, tmp_path):
    with pytest.raises(ConfigError, match="a fitbridge Problem"):
        minimize(lambda x: x, "scipy:L-BFGS-B")
    path = tmp_path / "log.jsonl"
    minimize(problem, "scipy:L-BFGS-B", budget=3, log=path, progress=False)
    with pytest.raises(ConfigError, match="already exists.*resume=path"):
        minimize(problem, "scipy:L-BFGS-B", budget=3, log=path, progress=False)
