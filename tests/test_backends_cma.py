"""CMA-ES backend: known optima, exact budget, one batch per generation, seeds, silence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fitbridge._errors import ConfigError
from fitbridge._minimize import minimize
from fitbridge._params import Free
from fitbridge._problem import Problem
from fitbridge.backends._cma import box_scale

CENTER = np.array([0.5, -0.3])


def rosenbrock(p, key):
    return (1.0 - p["a"]) ** 2 + 100.0 * (p["b"] - p["a"] ** 2) ** 2


def on_bound(p, key):  # optimum (2, -0.5): a sits on its upper bound
    return (p["a"] - 3.0) ** 2 + (p["b"] + 0.5) ** 2


def noisy_sphere(p, key):
    x = jnp.stack([p["a"], p["b"]])
    return jnp.sum((x - CENTER) ** 2) + 0.01 * jax.random.normal(key)


@pytest.fixture(scope="module")
def rosen():
    return Problem(rosenbrock, {"a": Free(-1.0, bounds=(-2, 2)), "b": Free(1.0, bounds=(-1, 3))})


@pytest.fixture(scope="module")
def boxed():
    return Problem(on_bound, {"a": Free(0.5, bounds=(0, 2)), "b": Free(0.5, bounds=(-1, 1))})


def counting(problem, monkeypatch):
    """Record the number of rows of every compiled-evaluation call of ``problem``."""
    sizes, evaluate = [], problem.evaluate

    def spy(X, **kwargs):
        sizes.append(len(X))
        return evaluate(X, **kwargs)

    monkeypatch.setattr(problem, "evaluate", spy)
    return sizes


def test_rosenbrock_optimum(rosen):
    res = minimize(rosen, "cma", budget=2000, progress=False)
    assert res.success and res.status == 0
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)  # tolerance: 1e-4 in 2000 evals
    assert res.nfev <= 2000


def test_optimum_on_a_bound(boxed):
    res = minimize(boxed, "cma", budget=1000, progress=False)
    np.testing.assert_allclose(res.x, [2.0, -0.5], atol=1e-4)
    X = res.history[boxed.names].to_numpy()
    assert np.all(X >= boxed.space.lower) and np.all(X <= boxed.space.upper)


def test_budget_is_exact(rosen):
    res = minimize(rosen, "cma", budget=37, options={"popsize": 6}, progress=False)
    assert res.nfev == 37 and len(res.history) == 37
    assert res.status == 1 and not res.success


def test_each_generation_is_one_batch(rosen, monkeypatch):
    sizes = counting(rosen, monkeypatch)
    res = minimize(rosen, "cma", options={"popsize": 6, "tolfun": 1e-6}, progress=False)
    assert res.status == 0 and len(sizes) == res.nit
    assert sizes == [6] * res.nit and res.nfev == 6 * res.nit


def test_seeded_runs_reproduce(rosen):
    runs = [minimize(rosen, "cma", budget=60, seed=s, progress=False) for s in (0, 0, 1)]
    cols = ["fun", *rosen.names]
    np.testing.assert_array_equal(runs[0].history[cols], runs[1].history[cols])
    assert not np.array_equal(runs[0].history[cols], runs[2].history[cols])


def test_global_numpy_random_state_untouched(rosen):
    state = np.random.get_state()[1].copy()
    minimize(rosen, "cma", budget=30, seed=3, progress=False)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_no_files_written(rosen, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    minimize(rosen, "cma", budget=50, options={"noise_handling": True}, progress=False)
    assert list(tmp_path.iterdir()) == []  # in particular no outcmaes/


def test_sigma0_is_relative_to_the_box(monkeypatch):
    wide = Problem(lambda p, k: p["a"] ** 2 + p["b"] ** 2,
                   {"a": Free(0.0, bounds=(-1000, 1000)), "b": Free(0.0, bounds=(-1, 1))})
    first = []
    evaluate = wide.evaluate
    monkeypatch.setattr(wide, "evaluate", lambda X, **kw: (first.append(np.array(X)),
                                                          evaluate(X, **kw))[1])
    minimize(wide, "cma", budget=400, options={"popsize": 400, "sigma0": 0.01}, progress=False)
    std = first[0].std(axis=0)
    np.testing.assert_allclose(std / [2000.0, 2.0], 0.01, rtol=0.15)


def test_box_scale_for_open_bounds():
    scale = box_scale(np.array([0.0, -np.inf, 0.0]), np.array([3.0, np.inf, np.inf]),
                      np.array([1.0, 0.2, 5.0]))
    np.testing.assert_array_equal(scale, [3.0, 1.0, 5.0])


def test_noise_handler_on_a_noisy_sphere(monkeypatch):
    space = {"a": Free(-1.5, bounds=(-2, 2)), "b": Free(1.5, bounds=(-2, 2))}
    problem = Problem(noisy_sphere, space, stochastic=True, noise="resample")
    sizes = counting(problem, monkeypatch)
    res = minimize(problem, "cma", budget=1000, seed=0,
                   options={"noise_handling": {"maxevals": [1, 1, 30]}}, progress=False)
    assert res.nfev == 1000
    assert np.linalg.norm(res.x - CENTER) < 0.06  # the distribution mean, 1000 noisy evals
    assert len(sizes) <= 2 * res.nit + 1  # population batch + re-evaluation batch
    assert max(sizes) > 6  # the handler raised the evaluations per point (repeats)


@pytest.mark.parametrize("options, match", [
    ({"popsiz": 8}, "popsize"),
    ({"seed": 3}, "seed"),
    ({"sigma0": -1.0}, "positive"),
    ({"popsize": 1}, "popsize"),
    ({"noise_handling": "yes"}, "noise_handling"),
])
def test_bad_options(rosen, options, match):
    with pytest.raises(ConfigError, match=match):
        minimize(rosen, "cma", budget=10, options=options, progress=False)


@pytest.mark.parametrize("x0", [0.0, 0.6, 1.0])
def test_one_dimensional_problem_starting_anywhere_in_the_box(x0):
    """pycma 4.5 crashes in 1-D when CMA_stds is passed (seen from a bound start)."""
    from fitbridge import Free, Problem, minimize

    p = Problem(lambda q, k: (q["a"] - 0.3) ** 2, {"a": Free(x0, bounds=(0.0, 1.0))})
    res = minimize(p, "cma", budget=60, seed=0)
    assert abs(res.x[0] - 0.3) < 1e-2
