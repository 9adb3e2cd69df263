"""Spaces: grids, zips and samplers resolved against a problem's layout."""

import itertools

import numpy as np
import pandas as pd
import pytest

import fitbridge as fb
from fitbridge import _spaces as spaces


@pytest.fixture(scope="module")
def problem():
    free = {"G": fb.Free(0.5, bounds=(0.0, 3.0)),
            "w": fb.Free([0.1, 0.2, 0.3], bounds=(0.0, 1.0), regional=True),
            "I_o": fb.Free(0.3, bounds=(0.2, 0.4))}
    return fb.Problem(lambda p, key: p["G"] + p["w"].sum() + p["I_o"], free)


def test_grid_is_the_product_first_axis_slowest(problem):
    G, w = [0.0, 1.0, 2.0], [0.25, 0.75]
    X, frame = spaces.grid(G=G, w=w).points(problem)
    want = list(itertools.product(G, w))
    assert list(frame.columns) == ["G", "w"] and len(frame) == 6
    np.testing.assert_array_equal(frame.to_numpy(), np.array(want))
    np.testing.assert_array_equal(X[:, 0], [g for g, _ in want])
    np.testing.assert_array_equal(X[:, 1:4], np.repeat([[w_] for _, w_ in want], 3, axis=1))
    np.testing.assert_array_equal(X[:, 4], 0.3)  # not swept: the base (x0)
    assert spaces.product is spaces.grid
    mesh = np.meshgrid(G, w, indexing="ij")
    np.testing.assert_array_equal(frame["G"], mesh[0].ravel())


def test_dict_means_grid_and_entries_and_base(problem):
    space = spaces.as_space({"w[1]": [0.5, 0.6]})
    X, frame = space.points(problem, base={"G": 1.0, "w": [0.0, 0.0, 0.0], "I_o": 0.25})
    np.testing.assert_array_equal(X, [[1.0, 0.0, 0.5, 0.0, 0.25], [1.0, 0.0, 0.6, 0.0, 0.25]])
    assert list(frame.columns) == ["w[1]"]


def test_zip_pairs_values(problem):
    X, frame = spaces.zip(G=[0.1, 0.2, 0.3], I_o=[0.2, 0.3, 0.4]).points(problem)
    np.testing.assert_array_equal(X[:, [0, 4]], [[0.1, 0.2], [0.2, 0.3], [0.3, 0.4]])
    with pytest.raises(fb.ConfigError, match="equal length"):
        spaces.zip(G=[0.1], I_o=[0.2, 0.3])


def test_random_is_seeded_and_in_bounds(problem):
    a, fa = spaces.random(50, G=None, w=(0.2, 0.4), seed=3).points(problem)
    b, _ = spaces.random(50, G=None, w=(0.2, 0.4), seed=3).points(problem)
    c, _ = spaces.random(50, G=None, w=(0.2, 0.4), seed=4).points(problem)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert fa["G"].between(0, 3).all() and fa["w"].between(0.2, 0.4).all()
    unit = np.random.default_rng(3).random((50, 2))
    np.testing.assert_allclose(fa.to_numpy(), [0, 0.2] + unit * [3.0, 0.2], rtol=1e-15)


def _strata(u, n):
    return np.floor(u * n).astype(int)


def test_lhs_stratifies_every_dimension(problem):
    n = 37
    X, frame = spaces.lhs(n, ["G", "w"], seed=1, per_region=True).points(problem)
    assert list(frame.columns) == ["G", "w[0]", "w[1]", "w[2]"]
    lo = np.array([0.0, 0, 0, 0])
    hi = np.array([3.0, 1, 1, 1])
    u = (frame.to_numpy() - lo) / (hi - lo)
    for j in range(u.shape[1]):
        assert sorted(_strata(u[:, j], n)) == list(range(n))


def test_sobol_is_balanced(problem):
    m = 5
    n = 2 ** m
    _, frame = spaces.sobol(n, G=(0.0, 1.0), I_o=(0.0, 1.0), seed=7).points(
        fb.Problem(lambda p, k: p["G"], {"G": fb.Free(0.5, bounds=(0, 1)), "I_o": fb.Free(0.5, bounds=(0, 1))}))
    u = frame.to_numpy()
    for j in range(2):  # each of the n dyadic strata of a dimension holds one point
        assert sorted(_strata(u[:, j], n)) == list(range(n))
    for k in range(m + 1):  # (0, m, 2)-net: every elementary box of volume 1/n holds one point
        cells = _strata(u[:, 0], 2 ** k) * 2 ** (m - k) + _strata(u[:, 1], 2 ** (m - k))
        assert sorted(cells) == list(range(n))


def test_sampler_defaults_to_every_free_parameter(problem):
    X, frame = spaces.sobol(8, seed=0).points(problem)
    assert list(frame.columns) == ["G", "w", "I_o"] and X.shape == (8, 5)
    assert len(spaces.sobol(8)) == 8 and "8 points" in repr(spaces.sobol(8))


@pytest.mark.parametrize("make,match", [
    (lambda: spaces.grid(Gg=[0.1]), r"did you mean 'G'"),
    (lambda: spaces.grid(G=[5.0]), r"outside \[0.0, 3.0\]"),
    (lambda: spaces.grid(G=[[0.1]]), r"1-D array"),
    (lambda: spaces.grid(), r"at least one axis"),
    (lambda: spaces.grid(w=[0.1], **{"w[0]": [0.2]}), r"swept once"),
    (lambda: spaces.grid(**{"G[0]": [0.2]}), r"entry of a regional"),
    (lambda: spaces.grid(**{"w[5]": [0.2]}), r"index < 3"),
    (lambda: spaces.sobol(0), r"positive number"),
    (lambda: spaces.lhs(4, G=(1.0,)), r"bounds \(lo, hi\)"),
    (lambda: spaces.random(4, G=(2.0, 1.0)), r"lo < hi"),
])
def test_bad_spaces(problem, make, match):
    with pytest.raises(fb.ConfigError, match=match):
        make().points(problem)


def test_infinite_bounds_need_explicit_sampling_bounds():
    p = fb.Problem(lambda q, k: q["a"], {"a": fb.Free(0.0)})
    with pytest.raises(fb.ConfigError, match="finite bounds"):
        spaces.random(4).points(p)
    X, _ = spaces.random(4, a=(-1.0, 1.0)).points(p)
    assert np.all(np.abs(X) <= 1)


def test_register_sampler_rejects_duplicates():
    with pytest.raises(fb.ConfigError, match="new sampler name"):
        spaces.register_sampler("sobol")(lambda n, d, seed: None)
    assert isinstance(spaces.as_space({"G": [0.1]}), spaces.Space)
    with pytest.raises(fb.ConfigError, match="a Space or a dict"):
        spaces.as_space([0.1])
    assert isinstance(spaces.grid(G=[0.1]).points(fb.Problem(
        lambda q, k: q["G"], {"G": fb.Free(0.1, bounds=(0, 1))}))[1], pd.DataFrame)
