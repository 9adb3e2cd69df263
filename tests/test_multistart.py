"""Multistart: Sobol exploration in one batch, TikTak starts, lockstep equals serial runs."""

import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge.backends._optax  # noqa: F401  registers optax:<name>
from fitbridge import _multistart
from fitbridge._errors import ConfigError
from fitbridge._minimize import minimize
from fitbridge._multistart import multistart, sobol_points, tiktak_weights
from fitbridge._params import Free
from fitbridge._problem import Problem


def rastrigin(p, key):
    x = jnp.stack([p["a"], p["b"]])
    return 20.0 + jnp.sum(x ** 2 - 10.0 * jnp.cos(2.0 * jnp.pi * x))


@pytest.fixture(scope="module")
def rastr():
    return Problem(rastrigin, {"a": Free(3.2, bounds=(-5.12, 5.12)),
                               "b": Free(-2.1, bounds=(-5.12, 5.12))})


def counting(problem, monkeypatch):
    """(rows, grad) of every batched call: the exploration's evaluate, then the problem's."""
    calls, evaluate, batch = [], problem.evaluate, _multistart.evaluate
    monkeypatch.setattr(problem, "evaluate",
                        lambda X, **kw: (calls.append((len(X), kw.get("grad", False))),
                                         evaluate(X, **kw))[1])
    monkeypatch.setattr(_multistart, "evaluate",
                        lambda p, X, **kw: (calls.append((len(X), kw.get("grad", False))),
                                            batch(p, X, **kw))[1])
    return calls


@pytest.mark.parametrize("lockstep", [False, True])
def test_finds_the_global_optimum_where_one_local_run_does_not(rastr, lockstep):
    single = minimize(rastr, "scipy:L-BFGS-B", progress=False)
    assert single.fun > 1.0  # a local minimum of Rastrigin near x0
    res = multistart(rastr, "scipy:L-BFGS-B", n_explore=128, k=8, seed=0, lockstep=lockstep)
    assert res.fun < 1e-8
    np.testing.assert_allclose(res.x, [0.0, 0.0], atol=1e-6)
    assert len(res.runs) == 8 and res.nfev == len(res.history)
    assert res.nfev == 128 + res.runs["nfev"].sum()


def test_exploration_is_one_batch_of_seeded_sobol_points(rastr, monkeypatch):
    calls = counting(rastr, monkeypatch)
    res = multistart(rastr, n_explore=32, k=2, seed=5)
    assert calls[0] == (32, False)
    X = res.exploration[rastr.names].to_numpy()
    np.testing.assert_array_equal(X, sobol_points(rastr.space.lower, rastr.space.upper,
                                                  rastr.x0, 32, seed=5))
    assert np.all(np.abs(X) <= 5.12)
    again = sobol_points(rastr.space.lower, rastr.space.upper, rastr.x0, 32, seed=6)
    assert not np.array_equal(X, again)


def test_sobol_points_with_open_bounds():
    X = sobol_points([0.0, -np.inf], [np.inf, np.inf], [3.0, 0.5], 64, seed=0, spread=2.0)
    assert X[:, 0].min() >= 0.0 and X[:, 0].max() <= 3.0 + 6.0
    assert X[:, 1].min() >= 0.5 - 2.0 and X[:, 1].max() <= 0.5 + 2.0


def test_tiktak_weights_and_starts(rastr):
    np.testing.assert_allclose(tiktak_weights(4), [0.1, 0.5, np.sqrt(0.5), np.sqrt(0.75)])
    res = multistart(rastr, n_explore=16, k=4, seed=0, lockstep=True)
    explore = res.exploration.sort_values("fun", kind="stable")
    P = explore[rastr.names].to_numpy()[:4]
    theta = tiktak_weights(4)[:, None]
    starts = (1 - theta) * P + theta * P[0]  # lockstep: the incumbent is the best Sobol point
    np.testing.assert_allclose(np.stack(res.runs["x0"]), starts)


def test_sequential_starts_lean_to_the_incumbent(rastr):
    res = multistart(rastr, n_explore=16, k=3, seed=0)
    P = res.exploration.sort_values("fun", kind="stable")[rastr.names].to_numpy()[:3]
    theta = tiktak_weights(3)
    x0 = np.stack(res.runs["x0"])
    np.testing.assert_allclose(x0[0], P[0])  # the best point mixed with itself
    best = np.stack(res.runs["x"])[np.argmin(res.runs["fun"].to_numpy()[:2])]
    incumbent = best if res.runs["fun"][:2].min() < res.exploration["fun"].min() else P[0]
    np.testing.assert_allclose(x0[2], (1 - theta[2]) * P[2] + theta[2] * incumbent)


def test_independent_runs_start_from_the_best_sobol_point_with_fixed_shares(rastr):
    res = multistart(rastr, "scipy:Nelder-Mead", n_explore=16, k=3, budget=16 + 3 * 10 + 2,
                     seed=0, independent=True)
    P = res.exploration.sort_values("fun", kind="stable")[rastr.names].to_numpy()[:3]
    theta = tiktak_weights(3)[:, None]
    np.testing.assert_allclose(np.stack(res.runs["x0"]), (1 - theta) * P + theta * P[0])
    assert res.runs["nfev"].tolist() == [11, 11, 10]  # 32 split up front, the rest first
    assert res.nfev == 48 == len(res.history) and rastr.nfev >= 48
    for _, row in res.runs.iterrows():  # each run is an ordinary minimize from its start
        one = minimize(rastr, "scipy:Nelder-Mead", row["x0"], budget=row["nfev"],
                       seed=row["start"], progress=False)
        np.testing.assert_array_equal(one.x, row["x"])


def test_lockstep_scipy_equals_independent_serial_runs(rastr, monkeypatch):
    calls = counting(rastr, monkeypatch)
    res = multistart(rastr, "scipy:L-BFGS-B", n_explore=32, k=4, seed=1, lockstep=True)
    local = calls[1:]
    assert all(grad for _, grad in local)  # every round is one batched fun_and_jac
    assert len(local) == res.runs["nfev"].max()
    assert [n for n, _ in local] == sorted((n for n, _ in local), reverse=True)  # early finishers
    for _, row in res.runs.iterrows():
        one = minimize(rastr, "scipy:L-BFGS-B", row["x0"], progress=False)
        np.testing.assert_array_equal(one.x, row["x"])
        assert one.fun == row["fun"] and one.nfev == row["nfev"] and one.nit == row["nit"]


def test_budget_covers_everything(rastr):
    for lockstep in (False, True):
        res = multistart(rastr, n_explore=16, k=4, budget=30, seed=0, lockstep=lockstep)
        assert res.nfev == 30 == len(res.history)
        assert res.history["best"].is_monotonic_decreasing


def test_lockstep_optax(rastr, monkeypatch):
    calls = counting(rastr, monkeypatch)
    res = multistart(rastr, "optax:adam", n_explore=16, k=3, budget=16 + 3 * 50, lockstep=True,
                     options={"learning_rate": 0.02})
    assert calls[0] == (16, False) and set(calls[1:]) == {(3, True)} and len(calls) == 51
    assert res.nfev == 166 and res.best.status == 1
    assert res.runs["nfev"].tolist() == [50, 50, 50]
    assert res.fun <= res.exploration["fun"].min()


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 10, "n_explore": 8}, "k"),
    ({"budget": 16, "n_explore": 16}, "budget"),
    ({"method": "scipy:Nelder-Mead", "lockstep": True}, "gradient"),
    ({"method": "scipy:trust-exact", "lockstep": True}, "gradient"),
    ({"n_explore": 0}, "n_explore"),
])
def test_bad_arguments(rastr, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        multistart(rastr, **kwargs)
