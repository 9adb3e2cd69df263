"""compare(): one row per (method, restart, seed), the same budget, histories and a plot."""

import numpy as np
import pytest

from fitbridge._compare import TABLE_COLUMNS, compare, plot_convergence
from fitbridge._errors import ConfigError
from fitbridge._params import Free
from fitbridge._problem import Problem

METHODS = ["scipy:L-BFGS-B", "cma"]


def bowl_with_r(p, key):
    loss = (p["a"] - 0.3) ** 2 + (p["b"] + 0.2) ** 2
    return loss, {"fc_r": 1.0 - loss}


@pytest.fixture(scope="module")
def bowl():
    return Problem(bowl_with_r, {"a": Free(0.9, bounds=(-1, 1)), "b": Free(0.9, bounds=(-1, 1))},
                   has_aux=True)


@pytest.fixture(scope="module")
def table(bowl):
    return compare(bowl, METHODS, budget=40, restarts=2, seeds=(0, 1))


def test_columns_and_one_row_per_run(table):
    assert list(table.columns) == list(TABLE_COLUMNS)
    keys = list(zip(table["method"], table["restart"], table["seed"]))
    assert keys == [(m, r, s) for m in METHODS for r in (0, 1) for s in (0, 1)]
    assert (table["nfev"] <= 40).all() and (table["nfev"][table["method"] == "cma"] == 40).all()
    assert table["success"].dtype == bool and table["wall_time"].gt(0).all()


def test_restarts_share_their_starts_across_methods(table, bowl):
    hist = table.attrs["histories"].frame
    first = hist.groupby(["method", "restart", "seed"]).head(1)
    lbfgs = first[first["method"] == "scipy:L-BFGS-B"]
    assert lbfgs["fun"].iloc[0] == pytest.approx(bowl.fun(bowl.x0))
    assert lbfgs["fun"].nunique() == 2  # restart 0 from x0, restart 1 from a Sobol point


def test_best_loss_and_fc_r(table):
    hist = table.attrs["histories"].frame
    assert len(hist) == table["nfev"].sum()
    for _, row in table.iterrows():
        runs = hist[(hist["method"] == row["method"]) & (hist["restart"] == row["restart"])
                    & (hist["seed"] == row["seed"])]
        assert row["fun"] == runs["fun"].min()
        assert row["fc_r"] == pytest.approx(1.0 - row["fun"])
    np.testing.assert_allclose(np.stack(table["x"][table["method"] == "scipy:L-BFGS-B"]),
                               [[0.3, -0.2]] * 4, atol=1e-6)


def test_fc_r_is_nan_without_aux():
    plain = Problem(lambda p, k: (p["a"] - 0.3) ** 2, {"a": Free(0.9, bounds=(-1, 1))})
    table = compare(plain, ["scipy:L-BFGS-B"], budget=20)
    assert len(table) == 1 and np.isnan(table["fc_r"][0])


def test_seeded_comparison_reproduces(bowl, table):
    again = compare(bowl, ["cma"], budget=40, restarts=2, seeds=(0, 1))
    np.testing.assert_array_equal(again["fun"], table["fun"][table["method"] == "cma"])


def test_plot_convergence(table, tmp_path):
    path = tmp_path / "convergence.png"
    fig = plot_convergence(table, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert [line.get_label().split(" ")[0] for line in ax.get_lines()] == METHODS
    assert ax.get_xlabel() == "evaluations"


@pytest.mark.parametrize("methods, kwargs, match", [
    ("cma", {"budget": 10}, "list of methods"),
    (["cmaa"], {"budget": 10}, "did you mean 'cma'"),
    (["cma"], {"budget": 0}, "budget"),
    (["cma"], {"budget": 10, "restarts": 0}, "restarts"),
    (["cma"], {"budget": 10, "seeds": ()}, "seeds"),
])
def test_bad_arguments(bowl, methods, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        compare(bowl, methods, **kwargs)


def test_incompatible_method_fails_before_running(bowl):
    with pytest.raises(ConfigError, match="bounds"):
        compare(bowl, ["cma", "scipy:BFGS"], budget=10)


def test_tables_concatenate_and_filter(bowl, table):
    import pandas as pd

    other = compare(bowl, ["scipy:L-BFGS-B"], budget=20)
    both = pd.concat([table, other], ignore_index=True)  # different histories: dropped
    assert len(both) == len(table) + 1 and "histories" not in both.attrs
    subset = table[table["method"] == "cma"]  # the same histories: carried, not copied
    assert subset.attrs["histories"] is table.attrs["histories"]
    assert [line.get_label() for line in plot_convergence(subset).axes[0].get_lines()] == [
        "cma (n=4)"]


def test_plot_rejects_other_frames():
    import pandas as pd

    with pytest.raises(ConfigError, match="compare"):
        plot_convergence(pd.DataFrame({"x": [1]}))

