"""BOLD, FC, FCD and losses against independent NumPy / SciPy implementations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import ks_2samp

import fitbridge as fb
from tests import reference as ref


@pytest.mark.parametrize("stride,newest0,frames", [(180, 5179, 12), (250, 100, 9), (7, 3, 40), (180, 10000, 5)])
def test_strided_convolution_equals_direct_hrf_sum(rng, stride, newest0, frames):
    stock = rng.uniform(0, 1, (newest0 + stride * (frames - 1) + 1, 3))
    hrf = fb.bold.HRF(tr=4.0 * stride)
    got = hrf.frames(jnp.asarray(stock), newest0, frames)
    want = ref.hrf_bold(stock, [newest0 + k * stride for k in range(frames)])
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


def test_gamma_kernel_is_tvb_gamma(rng):
    g = fb.bold.GammaHRF(tr=720.0)
    t = np.arange(5000) * 0.004
    np.testing.assert_allclose(g.kernel(), (t / 1.08) ** 2 * np.exp(-t / 1.08) / (1.08 * 2), rtol=1e-12)


def test_balloon_windkessel_equals_numpy_euler(rng):
    r = rng.uniform(0, 5, (3000, 4))
    bw = fb.bold.BalloonWindkessel(tr=720.0)
    got = bw.frames(jnp.asarray(r), 179, 16)
    want = ref.balloon(r, 0.004)[179::180][:16]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert np.ptp(want) > 1e-3


def test_simulated_bold_equals_reference_pipeline(rng):
    """Simulation -> 4 ms stock -> HRF frames, against the NumPy loop on the same trace."""
    n, dt = 4, 1.0
    W = rng.uniform(0, 1, (n, n))
    net = fb.Network(fb.models.ReducedWongWang(G=0.7), W)
    sim = fb.Simulation(net, dt=dt, duration=30_000.0, transient=6_000.0, bold=fb.bold.HRF(tr=1000.0))
    trace_sim = sim.replace(bold=None, record_period=4.0, transient=0.0)
    trace = fb.simulate(trace_sim).data[:, 0, :]  # 4 ms means from t=0
    bold = fb.simulate(sim).data
    newest = [6000 // 4 - 1 + 250 * (k + 1) for k in range(24)]
    np.testing.assert_allclose(bold, ref.hrf_bold(trace, newest), rtol=1e-10)


def test_fc_matches_numpy_and_drops_first_frames(rng):
    bold = rng.normal(size=(60, 7))
    np.testing.assert_allclose(fb.losses.fc(jnp.asarray(bold), skip=5), ref.fc(bold, skip=5), rtol=1e-12)


def test_fc_is_nan_for_a_flat_region_and_invariant_to_affine_scaling(rng):
    bold = rng.normal(size=(40, 4))
    np.testing.assert_allclose(fb.losses.fc(jnp.asarray(3.0 * bold + 7.0)), fb.losses.fc(jnp.asarray(bold)),
                               rtol=1e-12)
    bold[:, 2] = 1.0
    assert np.isnan(np.asarray(fb.losses.fc(jnp.asarray(bold)))[2, 0])


def test_losses_match_numpy(rng):
    a, b = ref.fc(rng.normal(size=(50, 8))), ref.fc(rng.normal(size=(50, 8)))
    iu = np.triu_indices(8, 1)
    r = np.corrcoef(a[iu], b[iu])[0, 1]
    assert float(fb.losses.one_minus_corr(a, b)) == pytest.approx(1 - r, rel=1e-12)
    assert float(fb.losses.rmse(a, b)) == pytest.approx(np.sqrt(np.mean((a[iu] - b[iu]) ** 2)), rel=1e-12)
    za, zb = np.arctanh(a[iu]), np.arctanh(b[iu])
    assert float(fb.losses.rmse(a, b, fisher=True)) == pytest.approx(np.sqrt(np.mean((za - zb) ** 2)), rel=1e-9)
    assert float(fb.losses.one_minus_corr(a, b, fisher=True)) == pytest.approx(
        1 - np.corrcoef(za, zb)[0, 1], rel=1e-9)
    both = fb.losses.combine((2.0, fb.losses.one_minus_corr), (0.5, fb.losses.rmse))
    assert float(both(a, b)) == pytest.approx(2 * (1 - r) + 0.5 * float(fb.losses.rmse(a, b)), rel=1e-12)


def test_fcd_and_ks_match_numpy_scipy(rng):
    bold = rng.normal(size=(80, 6))
    window, step = 20, 5
    iu = np.triu_indices(6, 1)
    fcs = np.array([np.corrcoef(bold[s:s + window].T)[iu] for s in range(0, 61, step)])
    np.testing.assert_allclose(fb.losses.fcd(jnp.asarray(bold), window, step), np.corrcoef(fcs), rtol=1e-10)
    x, y = rng.normal(size=200), rng.normal(0.3, 1, size=150)
    assert float(fb.losses.ks_distance(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(
        ks_2samp(x, y).statistic, abs=1e-12)


def test_safe_h_value_and_gradient_at_the_singularity():
    for d in (154.0, 0.16):
        assert float(fb.models.safe_h(0.0, d)) == pytest.approx(1 / d, rel=1e-15)
        g = jax.grad(fb.models.safe_h)(0.0, d)
        assert float(g) == pytest.approx(0.5, rel=1e-12)  # d/dy [y/(1-exp(-dy))] at 0 is 1/2
        # near the singularity the plain formula loses ~1e-16/|d*y| relative accuracy, no more
        for z in (1e-2, 1e-4, -1e-4, 1e-7, -1e-7):
            exact = (z / d) / -math.expm1(-z)
            assert float(fb.models.safe_h(z / d, d)) == pytest.approx(exact, rel=1e-15 / abs(z))
