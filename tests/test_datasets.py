"""The embedded HCP data and the user-data loaders."""

import numpy as np
import pytest
import scipy.io

import fitbridge as fb


@pytest.fixture(scope="module")
def hcp():
    return fb.datasets.load("hcp")


def test_embedded_hcp_shapes_and_provenance_facts(hcp):
    assert hcp.weights.shape == (80, 80) and hcp.lengths.shape == (80, 80)
    assert hcp.subject_weights.shape == (7, 80, 80) and hcp.bold.shape == (7, 1200, 80)
    assert hcp.tr == 720.0 and len(hcp.subjects) == 7 and hcp.subjects[0] == "101309"
    np.testing.assert_allclose(hcp.weights, hcp.weights.T)
    assert np.all(np.diag(hcp.weights) == 0)
    iu = np.triu_indices(80, 1)
    # README facts, recomputed independently: SC-FC r 0.34 and split-half group FC r 0.88
    w = hcp.weights / hcp.weights.max()
    assert np.corrcoef(w[iu], hcp.fc[iu])[0, 1] == pytest.approx(0.34, abs=0.01)
    fcs = np.array([np.corrcoef(b.T) for b in hcp.bold])
    np.testing.assert_allclose(hcp.subject_fc, fcs)
    np.testing.assert_allclose(hcp.fc, fcs.mean(0))
    np.testing.assert_allclose(hcp.group_fc([0, 2]), fcs[[0, 2]].mean(0))


def test_unknown_dataset_gets_did_you_mean():
    with pytest.raises(fb.ConfigError, match="did you mean 'hcp'"):
        fb.datasets.load("hpc")
    assert fb.datasets.available() == ["hcp"]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mat", ".csv", ".txt"])
def test_load_matrix_round_trips(tmp_path, rng, suffix):
    m = rng.uniform(size=(5, 5))
    path = tmp_path / f"w{suffix}"
    if suffix == ".npy":
        np.save(path, m)
    elif suffix == ".npz":
        np.savez(path, weights=m)
    elif suffix == ".mat":
        scipy.io.savemat(path, {"weights": m})
    elif suffix == ".csv":
        np.savetxt(path, m, delimiter=",")
    else:
        np.savetxt(path, m)
    np.testing.assert_allclose(fb.datasets.load_matrix(path), m, rtol=1e-15 if suffix != ".csv" else 1e-12)


@pytest.mark.parametrize("content,match", [
    (lambda p: np.save(p.with_suffix(".npy"), np.ones((2, 3))), r"square 2-D matrix.*shape \(2, 3\)"),
    (lambda p: np.save(p.with_suffix(".npy"), np.full((2, 2), np.nan)), r"finite values.*4 NaN"),
    (lambda p: np.savez(p.with_suffix(".npz"), a=np.eye(2), b=np.eye(2)), r"key= naming.*\['a', 'b'\]"),
    (lambda p: p.with_suffix(".csv").write_text("1,2\nx,4\n"), r"readable numeric .csv"),
    (lambda p: p.with_suffix(".xlsx").write_text("?"), r"\.npy, \.npz, \.mat, \.csv"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([{"a": 1}], dtype=object)), r"npy file \(fitbridge never unpickles"),
])
def test_load_matrix_errors(tmp_path, content, match):
    content(tmp_path / "m")
    path = next(tmp_path.iterdir())
    with pytest.raises(fb.ConfigError, match=match):
        fb.datasets.load_matrix(path)


def test_missing_file():
    with pytest.raises(fb.ConfigError, match="an existing file"):
        fb.datasets.load_matrix("/nonexistent/w.npy")


def test_from_arrays_validates(rng):
    d = fb.datasets.from_arrays(np.ones((3, 3)), bold=rng.normal(size=(50, 3)), tr=2000.0)
    assert d.fc.shape == (3, 3) and d.tr == 2000.0
    with pytest.raises(fb.ConfigError, match="transpose region-first BOLD"):
        fb.datasets.from_arrays(np.ones((3, 3)), bold=rng.normal(size=(3, 50)), tr=2000.0)
    with pytest.raises(fb.ConfigError, match="repetition time"):
        fb.datasets.from_arrays(np.ones((3, 3)), bold=rng.normal(size=(50, 3)))
