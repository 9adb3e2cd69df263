"""The fast paths of the time loop equal their plain definitions: block-fed BOLD frames, the
unrolled threefry normals, lagged recording, and the batched (vmapped) forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb
from fitbridge._bold import strided_convolution
from fitbridge._simulate import _normals


@pytest.mark.parametrize("block,shift", [(37, 1), (250, 0), (1000, 1)])
@pytest.mark.parametrize("model", [fb.bold.HRF(tr=720.0), fb.bold.GammaHRF(tr=1000.0)])
def test_block_frames_equal_the_strided_convolution(rng, model, block, shift):
    stride = round(model.tr / model.period)
    n_frames, newest0 = 9, 1234
    n = newest0 + stride * (n_frames - 1) + 1
    stock = rng.uniform(0, 1, (n, 3))
    want = model.finish(strided_convolution(jnp.asarray(stock), model.kernel(), newest0, stride, n_frames))
    frames = model.block_frames(newest0, n_frames, block)
    firsts = list(range(-shift, n, block))
    padded = np.concatenate([np.full((shift, 3), 99.0), stock, np.zeros((block, 3))])  # index -1: ignored
    block_fn = jax.jit(frames.block)
    blocks = [block_fn(jnp.asarray(padded[f + shift:f + shift + block]), f) for f in firsts]
    got = frames.assemble(jnp.stack(blocks), firsts)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_fast_normals_are_jax_random_normal():
    key = jax.random.key(11)
    for shape in [(87, 1, 84), (5,), (3, 2, 7)]:
        k = jax.random.fold_in(key, 123)
        want = jax.random.normal(k, shape, jnp.float32).astype(jnp.float64)
        np.testing.assert_array_equal(jax.jit(_normals, static_argnums=(1, 2))(k, shape, jnp.float64), want)
    keys = jax.random.split(key, 4)
    got = jax.vmap(lambda k: _normals(k, (6, 2), jnp.float32))(keys)
    np.testing.assert_array_equal(got, jax.vmap(lambda k: jax.random.normal(k, (6, 2), jnp.float32))(keys))


def test_lagged_stock_and_batched_forward_match_single_runs(rng):
    W = rng.uniform(0, 1, (6, 6))
    net = fb.Network(fb.models.ReducedWongWang(G=0.4), W)
    sim = fb.Simulation(net, dt=4.0, duration=30_000.0, transient=4_000.0, noise=fb.AdditiveNoise(0.003),
                        bold=fb.bold.HRF(tr=1000.0), seed=3)
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
    key = jax.random.key(3)
    fwd = jax.jit(lambda G: sim.forward(sim.with_values(params, {"G": G}), key)[0])
    Gs = jnp.asarray([0.3, 0.4, 0.5])
    batched = jax.jit(jax.vmap(lambda G: sim.forward(sim.with_values(params, {"G": G}), key)[0]))(Gs)
    for G, b in zip(Gs, batched):
        np.testing.assert_allclose(b, fwd(G), rtol=1e-12)
    # the stock recorded every step (lagged inside the loop) gives the same frames
    trace = fb.simulate(sim.replace(bold=None, record_period=4.0, transient=0.0)).data[:, 0]
    want = fb.bold.HRF(tr=1000.0).frames(jnp.asarray(trace), 4000 // 4 + 249, 26)
    np.testing.assert_allclose(fb.simulate(sim).data, want, rtol=1e-12)
