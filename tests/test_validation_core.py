"""Bad input to the core gets a clear error, raised when objects are built (before any compile)."""

import numpy as np
import pytest

import fitbridge as fb

W = np.ones((4, 4)) - np.eye(4)
RWW = fb.models.ReducedWongWang()


def net(**kw):
    return fb.Network(kw.pop("model", RWW), kw.pop("weights", W), **kw)


@pytest.mark.parametrize("build,match", [
    (lambda: net(weights=np.ones((3, 4))), r"square \(n, n\).*shape \(3, 4\)"),
    (lambda: net(weights=np.ones(4)), r"square \(n, n\).*shape \(4,\)"),
    (lambda: net(weights=np.where(np.eye(4) > 0, np.nan, 1.0)), r"finite values.*4 non-finite"),
    (lambda: net(weights=-W), r"non-negative weights"),
    (lambda: net(weights=[["a", "b"], ["c", "d"]]), r"numeric"),
    (lambda: net(lengths=-W, speed=3.0), r"lengths >= 0"),
    (lambda: net(lengths=np.ones((3, 3)), speed=3.0), r"shape \(4, 4\) like the weights"),
    (lambda: net(lengths=W, speed=0.0), r"speed > 0"),
    (lambda: net(lengths=W, speed=-1.0), r"speed > 0"),
    (lambda: net(speed=3.0), r"lengths when a speed is given"),
    (lambda: net(model=RWW.replace(G=np.ones(3))), r"ReducedWongWang.G: expected a scalar or a regional \(4,\)"),
    (lambda: net(model=RWW.replace(w=np.nan)), r"ReducedWongWang.w: expected finite"),
    (lambda: net(model="rww"), r"a model from fitbridge.models"),
    (lambda: net(normalize="sum"), r"'max', None or a callable"),
])
def test_network_errors(build, match):
    with pytest.raises(fb.ConfigError, match=match):
        build()


@pytest.mark.parametrize("kw,match", [
    (dict(dt=0.0), r"Simulation.dt: expected a finite number > 0, got 0.0"),
    (dict(dt=-1.0), r"Simulation.dt: expected a finite number > 0"),
    (dict(duration=float("nan")), r"Simulation.duration"),
    (dict(transient=-5.0), r"Simulation.transient: expected a time >= 0"),
    (dict(duration=10_000.0, transient=9_000.0, bold=fb.bold.HRF(tr=720.0)),
     r"Simulation.duration: expected >= transient \+ 3 TR = 11160 ms"),
    (dict(duration=100.0, transient=100.0), r"more than transient \+ one record period"),
    (dict(dt=0.3, bold=fb.bold.HRF(tr=720.0)), r"HRF.period: expected a multiple of dt = 0.3 ms, got 4 ms"),
    (dict(bold=fb.bold.HRF(tr=722.0)), r"HRF.tr: expected a multiple of the BOLD averaging period"),
    (dict(method="rk4"), r"Simulation.method: expected one of \['euler', 'heun'\], got 'rk4'"),
    (dict(noise=0.01), r"AdditiveNoise\(sigma\) or None"),
    (dict(bold="hrf"), r"HRF, GammaHRF, BalloonWindkessel or None"),
    (dict(initial_state=[0.1, 0.2]), r"shape \(1,\) or \(1, 4\) for state \('S',\)"),
    (dict(checkpoint=0), r"'auto' or a positive int"),
    (dict(delay_mode="cubic"), r"'linear' or 'nearest'"),
])
def test_simulation_errors(kw, match):
    with pytest.raises(fb.ConfigError, match=match):
        fb.Simulation(net(), **{"dt": 1.0, "duration": 60_000.0, **kw})


def test_simulation_needs_a_network():
    with pytest.raises(fb.ConfigError, match="a fitbridge.Network"):
        fb.Simulation(W)


def test_simulate_rejects_unknown_parameter_names():
    sim = fb.Simulation(net(), dt=1.0, duration=100.0)
    with pytest.raises(fb.ConfigError, match=r"parameter names among .*\['Gg'\]"):
        fb.simulate(sim, Gg=0.3)


def test_unknown_loss_name():
    with pytest.raises(fb.ConfigError, match=r"one of \['1-corr', 'rmse'\]"):
        fb.losses.get_loss("corr")


def test_errors_are_raised_before_anything_compiles(monkeypatch):
    import jax

    def no_jit(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", no_jit)
    with pytest.raises(fb.ConfigError):
        fb.Simulation(net(), dt=-1.0)
