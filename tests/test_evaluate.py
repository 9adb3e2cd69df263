"""evaluate: batched equals looped, padding and chunking change nothing, one compile per shape,
sharded equals unsharded, float32 close to float64, observables in the same pass."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb
from fitbridge import _evaluate
from fitbridge._evaluate import evaluate
from tests import reference as ref


def small_fc_problem(noise="fixed", free_w_regional=True):
    rng = np.random.default_rng(5)
    n = 5
    W = rng.uniform(0, 1, (n, n))
    np.fill_diagonal(W, 0)
    net = fb.Network(fb.models.ReducedWongWang(G=0.6, w=0.5), W)
    sim = fb.Simulation(net, dt=1.0, duration=8_000.0, transient=2_000.0,
                        noise=fb.AdditiveNoise(0.002), bold=fb.bold.HRF(tr=500.0))
    target = ref.fc(rng.normal(size=(50, n)))
    free = {"G": fb.Free(0.6, bounds=(0.0, 2.0)),
            "w": fb.Free(0.5, bounds=(0.0, 1.0), regional=free_w_regional)}
    return fb.FCProblem(sim, target, free=free, skip=2, noise=noise)


def points(problem, k):
    X = np.repeat(problem.x0[None], k, axis=0)
    X[:, 0] = np.linspace(0.1, 1.2, k)
    X[:, 1:] = np.linspace(0.25, 0.55, k)[:, None]
    return X


@pytest.fixture(scope="module")
def fcp():
    return small_fc_problem()


@pytest.fixture(scope="module")
def fc_batch(fcp):
    X = points(fcp, 5)
    return X, evaluate(fcp, X, chunk_size=4, observables=("fc", "bold_std", "mean_fc"))


def test_evaluate_equals_the_numpy_loss_of_each_simulation(fcp, fc_batch):
    X, batch = fc_batch
    iu = np.triu_indices(5, 1)
    for x, f, r in zip(X, batch.fun, batch.aux["fc_r"]):
        sim_fc = ref.fc(fcp.simulate(x), skip=2)  # one point at a time, NumPy FC and loss
        want = np.corrcoef(sim_fc[iu], fcp.target[iu])[0, 1]
        assert r == pytest.approx(want, abs=1e-12) and f == pytest.approx(1 - want, abs=1e-12)
    assert batch.info["chunk_size"] == 4 and batch.info["n_chunks"] == 2


def test_observables_come_from_the_same_pass(fcp, fc_batch):
    X, batch = fc_batch
    plain = evaluate(fcp, X, chunk_size=4)
    np.testing.assert_array_equal(plain.fun, batch.fun)  # same loss with or without observables
    np.testing.assert_array_equal(plain.aux["fc_r"], batch.aux["fc_r"])
    assert batch.observables["fc"].shape == (5, 5, 5)
    for x, sim_fc, sd, mean in zip(X, batch.observables["fc"], batch.observables["bold_std"],
                                   batch.observables["mean_fc"]):
        bold = fcp.simulate(x)
        np.testing.assert_allclose(sim_fc, ref.fc(bold, skip=2), atol=1e-12)
        np.testing.assert_allclose(sd, bold[2:].std(axis=0), rtol=1e-10)
        assert mean == pytest.approx(sim_fc[np.triu_indices(5, 1)].mean(), abs=1e-12)


def test_float32_fc_is_close_to_float64_and_gradients_stay_float64(fcp, fc_batch):
    X, batch = fc_batch
    low = evaluate(fcp, X, chunk_size=4, precision="float32", observables=("fc",))
    assert low.fun.dtype == np.float64
    assert np.max(np.abs(low.observables["fc"] - batch.observables["fc"])) < 1e-3
    assert np.max(np.abs(low.aux["fc_r"] - batch.aux["fc_r"])) < 1e-3
    assert not np.array_equal(low.fun, batch.fun)  # it really ran in float32
    with pytest.raises(fb.ConfigError, match="gradients stay float64"):
        evaluate(fcp, X, grad=True, precision="float32")


@pytest.mark.parametrize("noise", ["fixed", "resample", "average=3"])
def test_observables_draw_noise_keys_like_the_problem(noise):
    p = fb.Problem(lambda q, key: q["a"] * jax.random.normal(key), {"a": fb.Free(1.0, bounds=(0, 2))},
                   stochastic=True, noise=noise, seed=4)
    mirrored = _evaluate.with_noise(p, p._call)  # the key logic of the one-pass FC kernel
    for x, i in ((np.array([1.0]), 0), (np.array([1.5]), 9)):
        with jax.enable_x64(True):
            want, got = p._core(jnp.asarray(x), i), mirrored(jnp.asarray(x), i)
        assert float(got[0]) == float(want[0])


def counting_problem():
    calls = {"traces": 0}

    def loss(p, key):
        calls["traces"] += 1  # runs once per trace, never per evaluation
        return jnp.sum((p["x"] - 0.5) ** 2) + jnp.sin(p["y"]), {"half": 0.5 * p["y"]}

    free = {"x": fb.Free([0.1, 0.2], bounds=(-3, 3), regional=True), "y": fb.Free(0.0, bounds=(-3, 3))}
    return fb.Problem(loss, fb.ParameterSpace(free, n_regions=2), has_aux=True), calls


def test_new_sizes_never_recompile_and_padding_changes_nothing(rng):
    p, calls = counting_problem()
    X = rng.uniform(-1, 1, (23, 3))
    full = evaluate(p, X, chunk_size=8)  # 8 + 8 + a tail of 7 padded to 8
    assert calls["traces"] == 1 and full.info["n_chunks"] == 3
    for n in (8, 16, 23, 24, 15):
        part = evaluate(p, X[:n], chunk_size=8)
        np.testing.assert_array_equal(part.fun, full.fun[:n])  # bitwise: padding is inert
        np.testing.assert_array_equal(part.aux["half"], 0.5 * X[:n, 2])
    assert calls["traces"] == 1
    evaluate(p, X[:11], chunk_size=8)  # a tail of 3: the smallest power of two (4)
    evaluate(p, X[:4], chunk_size=8)  # below one chunk: the same shape
    assert calls["traces"] == 2
    for n in range(1, 24):  # every shape is a power of two <= 8: 1, 2, 4, 8
        np.testing.assert_array_equal(evaluate(p, X[:n], chunk_size=8).fun, full.fun[:n])
    assert calls["traces"] == 4
    for n in (31, 45, 3, 17):
        evaluate(p, np.resize(X, (n, 3)), chunk_size=8)
    assert calls["traces"] == 4
    want = np.sum((X[:, :2] - 0.5) ** 2, axis=1) + np.sin(X[:, 2])
    np.testing.assert_allclose(full.fun, want, rtol=1e-14)
    np.testing.assert_allclose(full.fun, [p.fun(x) for x in X], rtol=0, atol=1e-12)
    assert evaluate(p, np.zeros((0, 3))).fun.shape == (0,)


def test_gradients_match_the_problem(rng):
    p, _ = counting_problem()
    X = rng.uniform(-1, 1, (5, 3))
    batch = evaluate(p, X, grad=True, chunk_size=4)
    f, g = p.batch_fun_and_jac(X)
    np.testing.assert_allclose(batch.fun, f, rtol=0, atol=1e-12)
    np.testing.assert_allclose(batch.jac, g, rtol=0, atol=1e-12)
    np.testing.assert_allclose(batch.jac[:, 2], np.cos(X[:, 2]), rtol=1e-12)


def test_resample_noise_uses_evaluation_indices_like_the_problem(rng):
    p = fb.Problem(lambda q, key: q["a"] + jax.random.normal(key), {"a": fb.Free(0.0, bounds=(-1, 1))},
                   stochastic=True, noise="resample")
    X = rng.uniform(-1, 1, (6, 1))
    batch = evaluate(p, X, index=7, chunk_size=4)
    np.testing.assert_allclose(batch.fun, p.batch(X, index=7), rtol=0, atol=1e-12)
    assert not np.allclose(evaluate(p, X, index=8).fun, batch.fun)
    np.testing.assert_allclose(evaluate(p, X[3:], index=10).fun, batch.fun[3:], atol=1e-12)


def test_counter_advances_like_problem_batch(rng):
    p, _ = counting_problem()
    evaluate(p, rng.uniform(size=(5, 3)), chunk_size=4)
    assert p.nfev == 5


def test_chunk_size_from_a_memory_budget(fcp):
    cpu = jax.devices()[:1]
    per_point = _evaluate.bytes_per_point(fcp)
    plan = fcp.sim.plan
    assert per_point >= 8 * 5 * plan["n_samples"]
    assert _evaluate.bytes_per_point(fcp, precision="float32") < per_point
    assert _evaluate.auto_chunk_size(fcp, cpu, memory=5 * per_point) == 4
    assert _evaluate.auto_chunk_size(fcp, cpu, memory=10 ** 15) == 16  # CPU cap
    assert _evaluate.auto_chunk_size(fcp, cpu, memory=1) == 1
    assert _evaluate.plan_chunks(3, 1, 16) == 4 and _evaluate.plan_chunks(100, 1, 16) == 16
    assert _evaluate.plan_chunks(3, 2, 16) == 4 and _evaluate.plan_chunks(5, 2, 16) == 8


@pytest.mark.parametrize("kwargs,match", [
    (dict(precision="float16"), r"one of \['float32', 'float64'\]"),
    (dict(chunk_size=0), r"positive multiple"),
    (dict(observables=("fcx",)), r"names among"),
    (dict(observables="fc"), r"tuple of observable names"),
    (dict(backend="lokyy"), r"one of \['dask', 'jax', 'joblib'\]"),
    (dict(n_jobs=2), r"only with backend='joblib'"),
    (dict(devices=99), r"between 1 and"),
    (dict(progress="yes"), r"True, False or None"),
])
def test_bad_input(kwargs, match):
    p, _ = counting_problem()
    with pytest.raises(fb.ConfigError, match=match):
        evaluate(p, np.zeros((2, 3)), **kwargs)


def test_bad_points_and_observables_on_plain_problems():
    p, _ = counting_problem()
    with pytest.raises(fb.ConfigError, match=r"shape \(n_points, 3\)"):
        evaluate(p, np.zeros((2, 4)))
    with pytest.raises(fb.ConfigError, match="an FCProblem"):
        evaluate(p, np.zeros((2, 3)), observables=("fc",))
    with pytest.raises(fb.ConfigError, match="a fitbridge Problem"):
        evaluate(lambda x: x, np.zeros((2, 3)))


def test_progress_bar_only_when_asked(capsys):
    p, _ = counting_problem()
    evaluate(p, np.zeros((6, 3)), chunk_size=2)  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    evaluate(p, np.zeros((6, 3)), chunk_size=2, progress=True)
    assert "evaluate" in capsys.readouterr().err


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    from tests.test_evaluate import small_fc_problem, points
    from fitbridge._evaluate import evaluate
    assert len(jax.devices()) == 2, jax.devices()
    p = small_fc_problem()
    X = points(p, 6)
    one = evaluate(p, X, chunk_size=4, devices=1)
    two = evaluate(p, X, chunk_size=4, devices=2)
    assert two.info["n_devices"] == 2 and one.info["n_devices"] == 1
    print("DIFF", np.max(np.abs(one.fun - two.fun)), np.max(np.abs(one.aux["fc_r"] - two.aux["fc_r"])))
""")


def test_sharded_across_two_devices_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    diffs = [float(v) for v in out.stdout.split("DIFF")[1].split()]
    assert max(diffs) <= 1e-12, diffs
