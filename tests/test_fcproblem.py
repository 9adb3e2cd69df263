"""FCProblem: the simulate -> BOLD -> FC -> loss objective on the flat-vector interface."""

import numpy as np
import pytest

import fitbridge as fb
from tests import reference as ref


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(5)
    n = 6
    W = rng.uniform(0, 1, (n, n))
    np.fill_diagonal(W, 0)
    net = fb.Network(fb.models.ReducedWongWang(G=0.6, w=0.5), W, lengths=rng.uniform(10, 50, (n, n)), speed=4.0)
    sim = fb.Simulation(net, dt=2.0, duration=24_000.0, transient=4_000.0, noise=fb.AdditiveNoise(0.002),
                        bold=fb.bold.HRF(tr=1000.0))
    target = ref.fc(rng.normal(size=(50, n)))
    return sim, target


def test_loss_and_fc_r_equal_numpy_on_the_simulated_bold(small):
    sim, target = small
    for loss in ("1-corr", "rmse"):
        p = fb.FCProblem(sim, target, free={"G": fb.Free(0.6, bounds=(0, 2))}, loss=loss, skip=2)
        value, aux = p.fun_aux(p.x0)
        bold = p.simulate(p.x0)
        sim_fc = ref.fc(bold, skip=2)
        iu = np.triu_indices(6, 1)
        r = np.corrcoef(sim_fc[iu], target[iu])[0, 1]
        want = 1 - r if loss == "1-corr" else np.sqrt(np.mean((sim_fc[iu] - target[iu]) ** 2))
        assert value == pytest.approx(want, rel=1e-10)
        assert aux["fc_r"] == pytest.approx(r, rel=1e-10)
        assert p.fc_r(p.x0) == pytest.approx(r, rel=1e-10)


def test_free_speed_sizes_the_buffer_and_regional_parameters_work(small):
    sim, target = small
    p = fb.FCProblem(sim, target, free={"speed": fb.Free(4.0, bounds=(2.0, 10.0)),
                                        "w": fb.Free(0.5, bounds=(0, 1), regional=True)})
    assert p.sim.min_speed == 2.0 and p.names[0] == "speed" and p.names[1:] == [f"w[{i}]" for i in range(6)]
    f_slow = p.fun(np.r_[2.0, np.full(6, 0.5)])
    assert np.isfinite(f_slow)
    f, g = p.fun_and_jac(p.x0)
    assert g.shape == (7,) and np.all(np.isfinite(g))


@pytest.mark.parametrize("change", [{"initial_state": [0.9]}, {"checkpoint": 7}])
def test_the_spec_hash_sees_everything_that_changes_the_loss(small, change, tmp_path):
    """The spec hash keys the disk cache and the resume checks: a simulation that computes
    another loss (another initial state; another checkpoint block, which draws the noise
    differently) must give another hash, or a cached value of the first would be returned."""
    sim, target = small
    sim = sim.replace(transient=0.0)  # the initial state is otherwise forgotten before the BOLD
    free = {"G": fb.Free(0.6, bounds=(0, 2))}
    a = fb.FCProblem(sim, target, free=free, skip=2)
    b = fb.FCProblem(sim.replace(**change), target, free=free, skip=2)
    assert a.fun(a.x0) != b.fun(b.x0)
    assert a.spec_hash() != b.spec_hash()
    X = a.x0[None]
    np.testing.assert_array_equal(fb.evaluate(a, X, cache=tmp_path).fun, a.fun(a.x0))
    np.testing.assert_array_equal(fb.evaluate(b, X, cache=tmp_path).fun, b.fun(b.x0))


def test_noise_policies_on_a_stochastic_simulation(small):
    sim, target = small
    free = {"G": fb.Free(0.6, bounds=(0, 2))}
    fixed = fb.FCProblem(sim, target, free=free)
    assert fixed.fun(fixed.x0) == fixed.fun(fixed.x0)
    resample = fb.FCProblem(sim, target, free=free, noise="resample")
    assert resample.fun(resample.x0) != resample.fun(resample.x0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(free={"Gg": fb.Free(0.5, bounds=(0, 1))}), r"did you mean 'G'"),
    (dict(free={}), r"non-empty"),
    (dict(free={"speed": fb.Free(4.0, bounds=(0.0, 9.0))}), r"lower bound > 0"),
    (dict(free={"speed": fb.Free(4.0, bounds=(1.0, 9.0), regional=True)}), r"cannot be regional"),
    (dict(free={"G": fb.Free(5.0, bounds=(0, 1))}), r"init inside the bounds"),
    (dict(free={"G": fb.Free(0.5, bounds=(1, 0))}), r"lo < hi"),
    (dict(target=np.ones((5, 5))), r"\(6, 6\) FC matrix"),
    (dict(target=np.triu(np.ones((6, 6)))), r"symmetric FC"),
    (dict(target=np.full((6, 6), np.nan)), r"finite off-diagonal"),
    (dict(loss="mse"), r"one of \['1-corr', 'rmse'\]"),
    (dict(skip=100), r"at least 3 frames must remain"),
])
def test_bad_input(small, kwargs, match):
    sim, target = small
    args = {"free": {"G": fb.Free(0.5, bounds=(0, 1))}, "target": target, **kwargs}
    with pytest.raises(fb.ConfigError, match=match):
        fb.FCProblem(sim, args.pop("target"), **args)


def test_simulation_without_bold_is_refused(small):
    sim, target = small
    with pytest.raises(fb.ConfigError, match="with a BOLD model"):
        fb.FCProblem(sim.replace(bold=None), target, free={"G": fb.Free(0.5, bounds=(0, 1))})
