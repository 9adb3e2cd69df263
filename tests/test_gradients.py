"""Gradients of the FC loss equal central finite differences (float64), and stay finite at
the H singularity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb


def _loss_fn(sim, target, skip=2):
    base = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
    key = jax.random.key(7)

    def loss(values):
        bold, _ = sim.forward(sim.with_values(base, values), key)
        return fb.losses.one_minus_corr(fb.losses.fc(bold, skip), target)

    return jax.jit(loss)


def _setup(model, rng, n=6, speed=None, dt=0.5, sigma=0.002):
    W = rng.uniform(0, 1, (n, n))
    np.fill_diagonal(W, 0)
    L = rng.uniform(10, 60, (n, n))
    net = fb.Network(model, W, lengths=L if speed else None, speed=speed)
    sim = fb.Simulation(net, dt=dt, duration=9_000.0, transient=1_000.0, noise=fb.AdditiveNoise(sigma),
                        bold=fb.bold.HRF(tr=500.0), min_speed=speed)
    target = np.corrcoef(rng.normal(size=(40, n)).T) * 0.5 + 0.5 * np.corrcoef(W)
    np.fill_diagonal(target, 1.0)
    return sim, target


def _check(loss, values, name, rel_step=1e-5, tol=1e-5, grad=None):
    g = jax.grad(loss)(values)[name] if grad is None else grad
    x = values[name]
    h = rel_step * max(abs(float(x)), 1e-3)
    fd = (loss({**values, name: x + h}) - loss({**values, name: x - h})) / (2 * h)
    rel = abs(float(g) - float(fd)) / max(abs(float(fd)), 1e-12)
    assert abs(float(fd)) > 1e-6, f"{name}: loss is flat here, the check would be vacuous"
    assert rel <= tol, f"d loss / d {name}: autodiff {float(g):.10g} vs FD {float(fd):.10g} (rel {rel:.2e})"
    return rel


@pytest.fixture(scope="module")
def rww():
    sim, target = _setup(fb.models.ReducedWongWang(G=0.8, w=0.5), np.random.default_rng(3))
    loss = _loss_fn(sim, target)
    values = {"G": jnp.float64(0.8), "w": jnp.float64(0.5), "I_o": jnp.float64(0.33)}
    return loss, values, jax.jit(jax.grad(loss))(values)


@pytest.mark.parametrize("name", ["G", "w", "I_o"])
def test_rww_gradient_matches_central_differences(rww, name):
    loss, values, grad = rww
    _check(loss, values, name, grad=grad[name])


def test_speed_gradient_with_interpolated_delays(rng):
    sim, target = _setup(fb.models.ReducedWongWang(G=0.9, w=0.5), rng, speed=3.0)
    loss = _loss_fn(sim, target)
    _check(loss, {"speed": jnp.float64(3.0)}, "speed", rel_step=1e-4)


def test_excinh_regional_J_i_directional_derivative(rng):
    n = 6
    sim, target = _setup(fb.models.WongWangExcInh(G=1.0), rng, n=n, dt=0.5, sigma=0.001)
    loss = _loss_fn(sim, target)
    J = jnp.asarray(rng.uniform(0.9, 1.1, n))
    direction = jnp.asarray(rng.normal(size=n))
    g = jax.grad(loss)({"J_i": J})["J_i"]
    h = 1e-6
    fd = (loss({"J_i": J + h * direction}) - loss({"J_i": J - h * direction})) / (2 * h)
    assert abs(float(fd)) > 1e-6
    assert abs(float(g @ direction) - float(fd)) / abs(float(fd)) <= 1e-5


def test_forward_mode_equals_reverse_mode(rww):
    loss, values, rev = rww
    fwd = jax.jit(jax.jacfwd(loss))(values)
    for k in values:
        assert float(fwd[k]) == pytest.approx(float(rev[k]), rel=1e-10)


def test_gradient_is_finite_at_the_h_singularity():
    """Start every node exactly at a*x - b = 0 (G = 0, S0 chosen), where naive autodiff gives NaN."""
    p = fb.models.ReducedWongWang(G=0.0, w=0.5)
    S0 = 0.2
    I_o = p.b / p.a - p.w * p.J_N * S0
    net = fb.Network(p.replace(I_o=I_o), np.ones((3, 3)) - np.eye(3))
    sim = fb.Simulation(net, dt=1.0, duration=10.0, initial_state=[S0])
    base = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)

    def first_step(values):
        trace, _ = sim.forward(sim.with_values(base, values))
        return jnp.sum(trace[0])

    g = jax.grad(first_step)({"I_o": jnp.float64(I_o), "w": jnp.float64(0.5)})
    assert all(np.isfinite(float(v)) for v in g.values())
