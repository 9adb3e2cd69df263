"""Running specs: the results folder, equality with the equivalent Python calls, held-out r by
NumPy, warm starts, and every example spec in a shortened (smoke) form."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fitbridge as fb
from fitbridge._experiment import fc_skip
from fitbridge._runner import _best, _fitted, _Point, run_spec
from fitbridge._spec import load_spec, spec_hash
from tests.spec_data import tiny_spec, write_data, write_spec

EXAMPLES = Path(__file__).parents[1] / "examples" / "specs"
PROMISED = {"spec.yaml", "manifest.json", "summary.csv", "summary.json", "history.csv", "params.json",
            "validation.csv", "fc_sim.npy", "exploration.csv", "figures/fc_matrices.png",
            "figures/fc_scatter.png", "figures/convergence.png", "figures/landscape.png"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    arrays = write_data(folder)
    path = write_spec(folder, tiny_spec())
    result = run_spec(path, out=folder / "out")
    return folder, arrays, path, result


def _upper_r(a, b):
    iu = np.triu_indices(a.shape[0], 1)
    return np.corrcoef(a[iu], b[iu])[0, 1]


def test_run_writes_every_promised_file(tiny):
    folder, _, path, result = tiny
    out = folder / "out"
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert PROMISED <= files
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec_hash"] == spec_hash(load_spec(path)) and manifest["seed"] == 3
    assert manifest["wall_time_s"] > 0 and manifest["packages"]["jax"] and set(manifest["files"]) <= files
    assert len(manifest["data_files"]) == 5  # weights, lengths, 3 BOLD files
    copy = load_spec(out / "spec.yaml")  # the copy reruns with the same hash
    assert spec_hash(copy) == manifest["spec_hash"]
    summary = pd.read_csv(out / "summary.csv")
    assert summary["stage"].tolist() == ["explore", "optimize[0]", "optimize[1]"]
    assert summary["fitted"].sum() == 1
    history = pd.read_csv(out / "history.csv")
    assert history.groupby("stage").size().to_dict() == {"optimize[0]": 5, "optimize[1]": 6}


def test_fitted_parameters_equal_the_python_calls(tiny):
    folder, arrays, _, result = tiny
    out = folder / "out"
    from fitbridge._explore import load

    explored = load(out / "exploration.csv")
    best = explored.loc[explored["loss"].idxmin()]
    data = fb.datasets.from_arrays(arrays["weights"], arrays["lengths"], bold=arrays["bold"], tr=720.0)

    def problem(free, **model):
        net = fb.Network(fb.models.ReducedWongWang(**model), arrays["weights"], normalize="max")
        sim = fb.Simulation(net, dt=4.0, duration=14_400.0, noise=fb.AdditiveNoise(0.01),
                            bold=fb.bold.HRF(tr=720.0), seed=3)
        return fb.FCProblem(sim, data.group_fc([0, 1]), free=free, skip=2)

    p1 = problem({"G": fb.Free(0.4, bounds=(0.1, 0.9)), "w": fb.Free(0.5, bounds=(0.3, 0.7))})
    r1 = fb.minimize(p1, "scipy:L-BFGS-B", [best["G"], best["w"]], budget=5, seed=3, progress=False)
    p2 = problem({"G": fb.Free(0.4, bounds=(0.1, 0.9))}, w=r1.params["w"])
    r2 = fb.minimize(p2, "scipy:Nelder-Mead", [r1.params["G"]], budget=6, seed=3, progress=False)
    summary = result.summary.set_index("stage")
    assert summary.loc["optimize[0]", "G"] == r1.params["G"] and summary.loc["optimize[0]", "w"] == r1.params["w"]
    assert summary.loc["optimize[1]", "G"] == r2.params["G"] and summary.loc["optimize[1]", "w"] == r1.params["w"]
    params = json.loads((out / "params.json").read_text())
    stage2_wins = r2.fun < r1.fun  # the fitted stage has the lowest loss (noise="fixed": fun is that loss)
    assert summary["fitted"].tolist() == [False, not stage2_wins, stage2_wins]
    assert params["fitted"] == ({**r1.params, **r2.params} if stage2_wins else r1.params)
    expected_fc = p2.fc(r2.x) if stage2_wins else p1.fc(r1.x)
    np.testing.assert_allclose(np.load(out / "fc_sim.npy"), expected_fc, atol=1e-12)


def test_heldout_r_by_numpy(tiny):
    folder, arrays, _, _ = tiny
    out = folder / "out"
    sim_fc = np.load(out / "fc_sim.npy")
    subject_fc = [np.corrcoef(b.T) for b in arrays["bold"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_subjects"] == [0, 1] and summary["heldout_subjects"] == [2]
    assert summary["fc_r_train"] == pytest.approx(_upper_r(sim_fc, (subject_fc[0] + subject_fc[1]) / 2), abs=1e-12)
    assert summary["fc_r_heldout"] == pytest.approx(_upper_r(sim_fc, subject_fc[2]), abs=1e-12)
    per = pd.read_csv(out / "validation.csv")
    assert per["split"].tolist() == ["train", "train", "heldout"]
    np.testing.assert_allclose(per["fc_r"], [_upper_r(sim_fc, f) for f in subject_fc], atol=1e-12)
    assert summary["fc_r_train_subjects"] == pytest.approx(per["fc_r"][:2].mean(), abs=1e-12)


def test_fc_skip_rule_matches_fcproblem():
    net = fb.Network(fb.models.ReducedWongWang(), np.ones((3, 3)) - np.eye(3))
    for transient, duration in ((0.0, 30_000.0), (0.0, 60_000.0), (20_000.0, 40_000.0)):
        sim = fb.Simulation(net, dt=4.0, duration=duration, transient=transient, bold=fb.bold.HRF(tr=720.0))
        problem = fb.FCProblem(sim, np.eye(3), free={"G": fb.Free(0.5, bounds=(0, 1))})
        assert fc_skip(sim, None) == problem.skip
        assert fc_skip(sim, 4) == 4


def test_fitted_is_the_lowest_assessed_loss():
    def point(label, loss):
        return _Point(label, {}, None, None, {"loss": loss})

    assert _fitted([point("explore", 0.1), point("optimize[0]", 0.5), point("optimize[1]", 0.3)]).label == "optimize[1]"
    assert _fitted([point("optimize[0]", np.nan), point("optimize[1]", 0.9)]).label == "optimize[1]"
    assert _fitted([point("optimize[0]", 0.2), point("optimize[1]", 0.2)]).label == "optimize[1]"
    assert _fitted([point("explore", 0.4)]).label == "explore"
    assert _best([point("explore", 0.1), point("optimize[0]", 0.5)]).label == "explore"  # start: best


# ------------------------------------------------------------------------------ examples, shortened
# SMOKE SETTING: --quick (<= 40 TRs, 4 evaluations per stage, 4 explored points, 5 tuning
# iterations) and, here, 5 TRs with no transient and no frames skipped. These runs check that
# each example spec runs end to end; they are not fits. Each costs 10-50 s on 2 shared cores,
# almost all of it XLA compilation (4-6 kernels per spec).
SHORT = {"integration.duration": 3600.0, "integration.transient": 0.0, "observation.fc_skip": 0}


@pytest.mark.parametrize("name", ["rww_fit", "rww_regional", "wilson_cowan_delays", "compare_noisy", "fic_eib"])
def test_example_spec_runs_shortened(name, tmp_path):
    result = run_spec(EXAMPLES / f"{name}.yaml", overrides=SHORT, quick=True, out=tmp_path)
    spec = result.spec
    assert result.manifest["quick"] and spec.integration.duration == 3600.0
    assert all(s.budget <= 4 for s in spec.optimize)
    summary = result.summary
    assert summary["stage"].tolist()[-len(spec.optimize):] == [f"optimize[{i}]" for i in range(len(spec.optimize))]
    assert (tmp_path / "params.json").is_file() and (tmp_path / "figures" / "fc_matrices.png").is_file()
    assert np.isfinite(summary["fc_r_heldout"]).any()
    if name == "rww_regional":  # the regional stage starts from the global fit (warm start)
        history = result.tables["history"]
        glob = summary.set_index("stage").loc["optimize[0]"]
        first = history[history["stage"] == "optimize[1]"].iloc[0]
        w = first[[f"w[{i}]" for i in range(80)]].to_numpy(dtype=float)
        np.testing.assert_allclose(w, glob["w"], rtol=0, atol=0)
        assert np.ndim(result.params["values"]["w"]) == 1 and result.params["values"]["G"] == glob["G"]
        assert (tmp_path / "figures" / "regional_w.png").is_file()
    if name == "fic_eib":  # tuning, then the refinement starts from the tuned values
        assert summary["stage"].tolist() == ["tuning", "optimize[0]"]
        tuning = result.tables["tuning"]
        assert tuning["step"].tolist() == ["fic"] * 5 + ["eib"] * 5
        values = result.params["values"]
        assert np.shape(values["J_i"]) == (80,) and np.shape(values["wLRE"]) == (80, 80)
        assert (tmp_path / "figures" / "tuning.png").is_file() and (tmp_path / "tuning.csv").is_file()
        history = result.tables["history"]
        first = history[history["stage"] == "optimize[0]"].iloc[0]
        start = first[[f"J_i[{i}]" for i in range(80)]].to_numpy(dtype=float)
        assert np.mean(start) == pytest.approx(tuning["J_i"].iloc[-1], rel=1e-12)  # warm start from tuning
