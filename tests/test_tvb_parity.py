"""Trajectories equal classic TVB (tvb-library 2.10.0) to <= 1e-8 relative, float64.

Fixtures come from ``scripts/make_tvb_fixtures.py`` (see tests/fixtures/README.md): 6 nodes,
asymmetric weights, RWW and Exc-Inh, with and without delays, deterministic and with the
same noise increments injected into both implementations.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("tvb_*.npz"))
MODELS = {"rww": fb.models.ReducedWongWang, "excinh": fb.models.WongWangExcInh}


def _simulation(fx, delay_mode):
    names = [str(n) for n in fx["param_names"]]
    params = {n: float(v) for n, v in zip(names, fx["param_values"]) if n in MODELS[str(fx["model"])].field_names}
    if str(fx["model"]) == "rww":
        params["G"] = float(fx["coupling_a"])  # TVB applies RWW's G through Linear(a=G)
    else:
        assert float(fx["coupling_a"]) == 1.0  # Exc-Inh applies G in the model
    assert float(fx["coupling_b"]) == 0.0
    speed = float(fx["speed"])
    delays = np.isfinite(speed)
    net = fb.Network(MODELS[str(fx["model"])](**params), fx["weights"], lengths=fx["lengths"] if delays else None,
                     speed=speed if delays else None, normalize=None)
    dt, n_steps = float(fx["dt"]), int(fx["n_steps"])
    return fb.Simulation(net, dt=dt, duration=n_steps * dt, transient=0.0, bold=None, record_period=dt,
                         initial_state=fx["initial_state"], delay_mode=delay_mode,
                         noise=fb.AdditiveNoise(0.0) if np.any(fx["noise"]) else None)


@pytest.mark.parametrize("delay_mode", ["nearest", "linear"])
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_trajectory_matches_tvb(path, delay_mode):
    fx = np.load(path, allow_pickle=False)
    sim = _simulation(fx, delay_mode)
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
    traj, _ = jax.jit(sim.forward)(params, None, fx["noise"])
    ref = fx["trajectory"]
    assert traj.shape == ref.shape
    assert np.ptp(ref) > 0.05  # the dynamics move: the comparison is not of constants
    rel = np.max(np.abs(np.asarray(traj) - ref)) / np.max(np.abs(ref))
    assert rel <= 1e-8, f"{path.stem}: max relative error {rel:.2e}"


def test_fixtures_present():
    assert len(FIXTURES) == 6, "regenerate with scripts/make_tvb_fixtures.py"
