"""Problem: the JAX <-> NumPy boundary (derivatives, batching, compilation, noise, errors)."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fitbridge._errors import ConfigError
from fitbridge._params import Free, ParameterSpace
from fitbridge._problem import Problem

SPACE = ParameterSpace(
    {
        "G": Free(0.5, bounds=(0.0, 3.0)),
        "w": Free([0.2, 0.4, 0.6], bounds=(0.0, 1.0), regional=True),
        "s": Free(1.5, bounds=(0.0, np.inf), transform="log"),
    }
)


def smooth_loss(p, key):
    """A non-separable smooth loss with an aux value."""
    w = p["w"]
    value = (
        jnp.sin(p["G"] * jnp.sum(w)) ** 2
        + jnp.sum((w - 0.3) ** 2) * p["s"]
        + jnp.log1p(p["s"] * p["G"] ** 2)
    )
    return value, {"fc_r": jnp.tanh(p["G"] - jnp.mean(w))}


def make(mode="reverse", **kw):
    return Problem(smooth_loss, SPACE, has_aux=True, mode=mode, **kw)


def points(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(0, 3, n), rng.uniform(0, 1, (n, 3)), rng.uniform(0.1, 4, n)]
    )


@pytest.fixture(scope="module", params=["reverse", "forward"])
def problem(request):
    return make(request.param, chunk_size=4)


def test_flat_view(problem):
    assert problem.names == ["G", "w[0]", "w[1]", "w[2]", "s"] and problem.dim == 5
    np.testing.assert_array_equal(problem.x0, SPACE.x0)
    assert problem.x0.dtype == np.float64
    np.testing.assert_array_equal(problem.bounds.ub, SPACE.upper)


def test_fun_and_jac_equals_fun_and_jac(problem):
    for x in points(4):
        f, g = problem.fun_and_jac(x)
        assert isinstance(f, float) and g.dtype == np.float64 and g.shape == (5,)
        assert f == pytest.approx(problem.fun(x), rel=1e-14, abs=0)
        np.testing.assert_allclose(g, problem.jac(x), rtol=1e-14, atol=0)


def test_batch_equals_looped_fun(problem):
    for n in (1, 3, 4, 9):  # below, at and above chunk_size=4
        X = points(n, seed=n)
        F, aux = problem.batch_aux(X)
        looped = [problem.fun_aux(x) for x in X]
        np.testing.assert_allclose(F, [f for f, _ in looped], rtol=1e-12, atol=0)
        np.testing.assert_allclose(aux["fc_r"], [a["fc_r"] for _, a in looped], rtol=1e-12, atol=0)
        Fb, Gb = problem.batch_fun_and_jac(X)
        np.testing.assert_allclose(Fb, F, rtol=1e-12, atol=0)
        np.testing.assert_allclose(Gb, [problem.jac(x) for x in X], rtol=1e-12, atol=1e-15)
    assert problem.batch(np.zeros((0, 5))).shape == (0,)


def test_forward_equals_reverse():
    fwd, rev = make("forward"), make("reverse")
    X = points(5, seed=3)
    np.testing.assert_allclose(
        fwd.batch_fun_and_jac(X)[1], rev.batch_fun_and_jac(X)[1], rtol=1e-12, atol=1e-15
    )
    for x in X:
        np.testing.assert_allclose(fwd.jac(x), rev.jac(x), rtol=1e-12, atol=1e-15)
    assert make("auto").mode == "reverse"  # dim 5 > 4
    assert Problem(lambda p, k: p["a"] ** 2, {"a": Free(1.0)}).mode == "forward"


def test_jac_matches_central_differences(problem):
    x, h = points(1, seed=7)[0], 1e-6
    fd = [(problem.fun(x + h * e) - problem.fun(x - h * e)) / (2 * h) for e in np.eye(5)]
    np.testing.assert_allclose(problem.jac(x), fd, rtol=1e-7, atol=1e-8)


def test_hessp_and_hess_match_differences_of_jac(problem):
    x, p, h = points(1, seed=8)[0], np.array([0.3, -1.0, 0.5, 0.2, 0.7]), 1e-6
    fd = (problem.jac(x + h * p) - problem.jac(x - h * p)) / (2 * h)
    np.testing.assert_allclose(problem.hessp(x, p), fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(problem.hess(x) @ p, problem.hessp(x, p), rtol=1e-12, atol=1e-14)


def test_non_finite_losses_pass_through():
    p = Problem(lambda q, k: jnp.log(q["a"]), {"a": Free(1.0, bounds=(-1, 1))})
    assert np.isnan(p.fun([-0.5]))
    assert np.isnan(p.batch([[-0.5], [0.5]])[0])


def test_compiled_once_no_recompile_for_new_batch_sizes():
    traces = []

    def loss(p, key):
        traces.append(1)  # runs only while tracing
        return jnp.sum(p["w"] ** 2)

    problem = Problem(loss, {"w": Free([0.1, 0.2], bounds=(-1, 1), regional=True)}, chunk_size=8)
    for _ in range(3):
        problem.fun(problem.x0)
    assert len(traces) == 1
    for n in range(2, 30):
        problem.batch(points(n)[:, 1:3])
    first_sweep = len(traces) - 1
    assert first_sweep <= 4  # chunk shapes 2, 4, 8 (and nothing else)
    for n in (31, 45, 64, 100, 3, 5):
        problem.batch(points(n)[:, 1:3])
    assert len(traces) - 1 == first_sweep
    assert problem.nfev == 3 + sum(range(2, 30)) + 31 + 45 + 64 + 100 + 3 + 5


# ----------------------------------------------------------------------- noise
def noisy_loss(p, key):
    return (p["a"] - 1.0) ** 2 + 0.1 * jax.random.normal(key)


def test_fixed_noise_is_deterministic():
    p = Problem(noisy_loss, {"a": Free(0.0)}, stochastic=True, noise="fixed", seed=3)
    values = [p.fun([0.2]) for _ in range(3)] + [p.fun([0.2], index=99)]
    assert len(set(values)) == 1
    assert p.batch([[0.2]] * 3).tolist() == [values[0]] * 3


def test_resample_noise_is_fresh_per_evaluation_and_reproducible():
    p = Problem(noisy_loss, {"a": Free(0.0)}, stochastic=True, noise="resample", seed=3)
    values = [p.fun([0.2]) for _ in range(4)]
    assert len(set(values)) == 4
    q = Problem(noisy_loss, {"a": Free(0.0)}, stochastic=True, noise="resample", seed=3)
    assert [q.fun([0.2], index=i) for i in range(4)] == values  # same index, same draw
    np.testing.assert_allclose(q.batch([[0.2]] * 4, index=0), values, rtol=1e-14)


@pytest.mark.parametrize("noise", ["average=4", 4])
def test_average_k_is_mean_of_k_single_key_evaluations(noise):
    p = Problem(noisy_loss, {"a": Free(0.0)}, stochastic=True, noise=noise, seed=5)
    with jax.enable_x64(True):
        keys = [jax.random.fold_in(jax.random.key(5), k) for k in range(4)]
        singles = [float(noisy_loss({"a": jnp.float64(0.2)}, key)) for key in keys]
    assert p.fun([0.2]) == pytest.approx(np.mean(singles), rel=1e-14)
    assert p.fun([0.2]) == p.fun([0.2])  # deterministic


def test_aux_plumbing():
    p = make()
    f, aux = p.fun_aux(p.x0)
    assert set(aux) == {"fc_r"} and isinstance(aux["fc_r"], float)
    assert aux["fc_r"] == pytest.approx(np.tanh(0.5 - 0.4), rel=1e-14)


def test_spec_hash():
    assert make().spec_hash() == make().spec_hash()
    assert make(seed=1).spec_hash() != make().spec_hash()
    assert (
        Problem(smooth_loss, SPACE, has_aux=True, spec={"sim": 1}).spec_hash()
        != Problem(smooth_loss, SPACE, has_aux=True, spec={"sim": 2}).spec_hash()
    )


def test_float64_without_global_x64_and_no_import_side_effects():
    code = textwrap.dedent("""
        import jax
        before = (jax.config.jax_enable_x64, jax.config.jax_numpy_rank_promotion)
        import fitbridge, jax.numpy as jnp
        from fitbridge import Free, Problem
        p = Problem(lambda q, k: q["a"] ** 2 / 3.0, {"a": Free(0.1)})
        f, g = p.fun_and_jac(p.x0)
        assert (jax.config.jax_enable_x64, jax.config.jax_numpy_rank_promotion) == before
        assert before[0] is False
        assert f == 0.1 ** 2 / 3.0, f           # float64 arithmetic, not float32
        assert g.dtype.name == "float64" and p.batch([[0.1], [0.2]]).dtype.name == "float64"
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: Problem("loss", SPACE), ["callable loss"]),
        (
            lambda: Problem(noisy_loss, SPACE, noise="resampel", stochastic=True),
            ["'fixed', 'resample'", "'resampel'"],
        ),
        (lambda: Problem(noisy_loss, SPACE, noise="average=0", stochastic=True), ["average=K"]),
        (lambda: Problem(noisy_loss, SPACE, noise="resample"), ["stochastic=True"]),
        (lambda: Problem(noisy_loss, SPACE, mode="backward"), ["'auto', 'reverse' or 'forward'"]),
        (lambda: Problem(noisy_loss, SPACE, chunk_size=0), ["positive int"]),
        (lambda: Problem(noisy_loss, SPACE, seed=1.5), ["an int"]),
        (
            lambda: Problem(lambda p, k: p["w"], SPACE).fun(SPACE.x0),
            ["scalar loss", "shape (3,)", "jnp.mean"],
        ),
        (
            lambda: Problem(lambda p, k: (p["G"], {"r": p["w"]}), SPACE, has_aux=True).fun(
                SPACE.x0
            ),
            ["dict of scalars"],
        ),
        (lambda: make().fun(np.zeros(4)), ["shape (5,)", "shape (4,)"]),
        (lambda: make().batch(np.zeros(5)), ["(n_points, 5)", "shape (5,)"]),
        (lambda: make().hessp(np.zeros(5), np.zeros(2)), ["shape (5,)"]),
        (lambda: Problem(noisy_loss, {"G": Free(5.0, bounds=(0, 1))}), ["inside the bounds"]),
    ],
)
def test_bad_inputs_have_clear_errors(build, words):
    with pytest.raises(ConfigError) as err:
        build()
    for word in words:
        assert word in str(err.value), (word, str(err.value))
