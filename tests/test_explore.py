"""explore: one row per point in space order; save/load round trips; the landscape figure."""

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import fitbridge as fb
from fitbridge import _spaces as spaces
from fitbridge._explore import explore, load, points_of, save


def bowl():
    def loss(p, key):
        value = (p["G"] - 1.0) ** 2 + jnp.sum((p["w"] - 0.3) ** 2)
        return value, {"fc_r": 1.0 - value}

    free = {"G": fb.Free(0.5, bounds=(0.0, 3.0)), "w": fb.Free(0.5, bounds=(0.0, 1.0), regional=True)}
    return fb.Problem(loss, fb.ParameterSpace(free, n_regions=3), has_aux=True)


def test_a_dict_is_a_product_grid_with_one_row_per_point():
    p = bowl()
    G, w = np.linspace(0, 3, 4), np.linspace(0, 1, 3)
    frame = explore(p, {"G": G, "w": w}, chunk_size=4)
    assert list(frame.columns) == ["G", "w", "loss", "fc_r"] and len(frame) == 12
    gg, ww = np.meshgrid(G, w, indexing="ij")
    np.testing.assert_array_equal(frame["G"], gg.ravel())
    np.testing.assert_array_equal(frame["w"], ww.ravel())
    want = (gg.ravel() - 1) ** 2 + 3 * (ww.ravel() - 0.3) ** 2
    np.testing.assert_allclose(frame["loss"], want, rtol=1e-14)
    np.testing.assert_allclose(frame["fc_r"], 1 - want, rtol=1e-14)
    meta = frame.attrs["fitbridge"]
    assert meta["spec_hash"] == p.spec_hash() and meta["parameter_columns"] == ["G", "w"]
    X = points_of(frame, p)
    np.testing.assert_allclose(p.batch(X), frame["loss"], rtol=1e-14)


def test_samplers_and_base_values():
    p = bowl()
    frame = explore(p, spaces.lhs(6, G=None, seed=2), base={"G": 0.0, "w": [0.1, 0.2, 0.3]})
    assert list(frame.columns) == ["G", "loss", "fc_r"]
    want = (frame["G"] - 1) ** 2 + 0.2 ** 2 + 0.1 ** 2
    np.testing.assert_allclose(frame["loss"], want, rtol=1e-13)


def frame_with_arrays():
    frame = pd.DataFrame({"G": [0.1, 0.2, 1 / 3], "loss": [np.nan, 0.5, 1e-300],
                          "fc_r": [np.pi, -0.0, 2.0 ** -60]})
    frame["fc"] = [np.full((2, 2), k + 0.1) for k in range(3)]
    frame.attrs["fitbridge"] = {"names": ["G"], "base": [0.5], "parameter_columns": ["G"]}
    return frame


def _same(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns) and a.attrs == b.attrs
    for c in a.columns:
        if a[c].dtype == object:
            for u, v in zip(a[c], b[c]):
                np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_array_equal(a[c].to_numpy(), b[c].to_numpy())  # bit-exact, NaN too


def test_csv_round_trip_is_exact(tmp_path):
    frame = frame_with_arrays()
    path = save(frame, tmp_path / "grid.csv")
    assert path.name == "grid.csv"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["grid.csv", "grid.csv.json", "grid.csv.npz"]
    _same(frame, load(path))
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary files left


def test_default_format_and_parquet(tmp_path):
    frame = frame_with_arrays()
    path = save(frame, tmp_path / "grid")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert path.suffix == ".csv"
        with pytest.raises(fb.ConfigError, match="pyarrow"):
            save(frame, tmp_path / "grid.parquet")
    else:
        assert path.suffix == ".parquet"
    _same(frame, load(path))
    with pytest.raises(fb.ConfigError, match="an existing file"):
        load(tmp_path / "nothing.csv")


def test_explore_save_to_writes_the_frame(tmp_path):
    p = bowl()
    frame = explore(p, spaces.zip(G=[0.5, 1.0], w=[0.2, 0.3]), save_to=tmp_path / "z.csv")
    back = load(tmp_path / "z.csv")
    _same(frame, back)
    assert json.loads((tmp_path / "z.csv.json").read_text())["attrs"]["fitbridge"]["names"] == p.names


def test_landscape_marks_the_best_point_and_draws_a_path(tmp_path):
    pytest.importorskip("matplotlib")
    from fitbridge import plots

    p = bowl()
    frame = explore(p, {"G": np.linspace(0, 2, 5), "w": np.linspace(0, 1, 4)})
    frame.loc[0, "fc_r"] = np.nan  # a saturated point is drawn grey, never the best
    two = fb.Problem(lambda q, k: (q["G"] - 1.0) ** 2 + (q["w"] - 0.3) ** 2,
                     {"G": fb.Free(0.2, bounds=(0, 2)), "w": fb.Free(0.9, bounds=(0, 1))})
    res = fb.minimize(two, "scipy:L-BFGS-B", progress=False)
    ax = plots.landscape(frame, x="G", y="w", value="fc_r", path=res)
    star = [line for line in ax.lines if line.get_marker() == "*"][0]
    i = frame["fc_r"].idxmax()
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (frame.loc[i, "G"], frame.loc[i, "w"])
    trail = ax.lines[1]
    np.testing.assert_array_equal(trail.get_xdata(), res.history["G"])
    ax.figure.savefig(tmp_path / "landscape.png")
    assert (tmp_path / "landscape.png").stat().st_size > 1000
    low = plots.landscape(frame, value="loss")
    star = [line for line in low.lines if line.get_marker() == "*"][0]
    assert star.get_xdata()[0] == 1.0
    with pytest.raises(fb.ConfigError, match="missing"):
        plots.landscape(frame, x="speed")
    with pytest.raises(fb.ConfigError, match=r"\(k, 2\) array"):
        plots.landscape(frame, path=np.zeros(3))
