"""The integrator against an independent NumPy loop: fractional delays, Euler, transient, noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb
from tests import reference as ref


def _net(rng, n=5, speed=None, **params):
    W = rng.uniform(0, 1, (n, n)) * (rng.uniform(size=(n, n)) < 0.7)
    np.fill_diagonal(W, 0)
    L = rng.uniform(5, 40, (n, n))
    return fb.Network(fb.models.ReducedWongWang(**params), W, lengths=L if speed else None, speed=speed,
                      normalize=None), W, L


def _forward(sim, increments=None, key=None):
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
    out, final = jax.jit(sim.forward)(params, key, increments)
    return np.asarray(out), np.asarray(final)


@pytest.mark.parametrize("method", ["heun", "euler"])
@pytest.mark.parametrize("speed", [None, 2.3])
def test_matches_numpy_loop_with_fractional_delays(rng, method, speed):
    net, W, L = _net(rng, speed=speed, G=0.9, w=0.7)
    dt, n_steps = 0.7, 300
    x0 = rng.uniform(0.05, 0.5, (1, 5))
    inc = rng.normal(0, 0.01, (n_steps, 1, 5))
    sim = fb.Simulation(net, dt=dt, duration=n_steps * dt, bold=None, method=method, initial_state=x0,
                        noise=fb.AdditiveNoise(0.0), checkpoint=7)
    got, final = _forward(sim, inc)
    delays = None if speed is None else L / speed / dt
    want = ref.heun(lambda S, c: ref.dfun_rww(S, c, {**ref.RWW, "G": 0.9, "w": 0.7}), x0, W, dt, n_steps, inc,
                    delays=delays, method=method)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(final, want[-1], rtol=1e-12)


def test_transient_is_discarded_in_the_same_call(rng):
    net, *_ = _net(rng, speed=3.0, G=0.8)
    full = fb.Simulation(net, dt=0.5, duration=100.0, transient=0.0, record_period=0.5, checkpoint=9)
    cut = full.replace(transient=40.0)
    a, _ = _forward(full)
    b, _ = _forward(cut)
    np.testing.assert_allclose(b, a[80:], rtol=1e-13, atol=1e-15)


def test_decimated_trace_is_the_block_mean(rng):
    net, *_ = _net(rng, G=0.8)
    every = fb.Simulation(net, dt=0.5, duration=60.0)
    dec = every.replace(record_period=5.0)
    a, _ = _forward(every)
    b, _ = _forward(dec)
    assert b.shape == (12, 1, 5)
    np.testing.assert_allclose(b, a.reshape(12, 10, 1, 5).mean(axis=1), rtol=1e-12)


def test_checkpoint_block_size_does_not_change_results(rng):
    net, *_ = _net(rng, speed=2.0, G=0.8)
    base = fb.Simulation(net, dt=0.5, duration=50.0, record_period=0.5, noise=fb.AdditiveNoise(0.0))
    inc = rng.normal(0, 0.01, (100, 1, 5))
    outs = [_forward(base.replace(checkpoint=c), inc)[0] for c in (1, 7, 100, "auto")]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-14)


def test_noise_is_seeded_and_has_the_stated_scale(rng):
    # With a flat vector field (gamma=0, tau_s huge) Euler steps are pure increments sigma*sqrt(dt)*z.
    model = fb.models.ReducedWongWang(gamma=0.0, tau_s=1e12, G=0.0)
    net = fb.Network(model, np.zeros((50, 50)))
    sim = fb.Simulation(net, dt=0.25, duration=500.0, method="euler", initial_state=[0.5],
                        noise=fb.AdditiveNoise(0.001), seed=3)
    a, _ = _forward(sim, key=jax.random.key(3))
    b, _ = _forward(sim, key=jax.random.key(3))
    c, _ = _forward(sim, key=jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    steps = np.diff(a[:, 0, :], axis=0)
    assert abs(steps.std() / (0.001 * np.sqrt(0.25)) - 1) < 0.02
    assert abs(steps.mean()) < 3 * 0.001 * np.sqrt(0.25) / np.sqrt(steps.size)


def test_simulate_wrapper_returns_float64_numpy_and_times():
    net = fb.Network(fb.models.WongWangExcInh(), np.ones((4, 4)) - np.eye(4))
    sim = fb.Simulation(net, dt=0.5, duration=3000.0, transient=1000.0, bold=fb.bold.HRF(tr=500.0))
    out = fb.simulate(sim, G=0.5)
    assert out.data.dtype == np.float64 and out.data.shape == (4, 4)
    np.testing.assert_allclose(out.time, [1500.0, 2000.0, 2500.0, 3000.0])
    assert out.final_state.shape == (2, 4)


@pytest.mark.parametrize("model", [fb.models.ReducedWongWang(), fb.models.WongWangExcInh(),
                                   fb.models.WilsonCowan()])
def test_models_are_pytrees_with_regional_parameters(model):
    n = 3
    leaves = jax.tree_util.tree_leaves(model)
    assert len(leaves) == len(model.field_names)
    regional = model.replace(G=np.full(n, 0.3))
    state = jnp.full((len(model.state_names), n), 0.2)
    out = regional.dfun(state, jnp.ones(n))
    assert out.shape == state.shape and np.all(np.isfinite(out))


def test_wilson_cowan_ou_noise_enters_only_the_ou_variables(rng):
    net = fb.Network(fb.models.WilsonCowan(), rng.uniform(0, 1, (4, 4)))
    sim = fb.Simulation(net, dt=0.1, duration=200.0, noise=fb.AdditiveNoise(0.05), record_period=1.0)
    out, _ = _forward(sim, key=jax.random.key(0))
    assert out.shape == (200, 4, 4)
    u = out[:, 2:]
    # stationary OU std: sigma * sqrt(tau_ou / 2)
    assert 0.3 < u[50:].std() / (0.05 * np.sqrt(5.0 / 2)) < 1.7
    assert np.all((out[:, :2] >= 0) & (out[:, :2] <= 1))
