"""ParameterSpace: layout, flatten/unflatten, transforms, and every validation error."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds

from fitbridge._errors import ConfigError
from fitbridge._params import Free, ParameterSpace


def make_space(n_regions=3):
    return ParameterSpace(
        {
            "G": Free(0.5, bounds=(0.0, 3.0)),
            "w": Free(np.linspace(0.1, 0.3, n_regions), bounds=(0.0, 1.0), regional=True),
            "speed": Free(3.0, bounds=(0.0, math.inf), transform="log"),
        },
        n_regions=n_regions,
    )


def test_layout_names_bounds():
    space = make_space()
    assert space.names == ["G", "w[0]", "w[1]", "w[2]", "speed"]
    assert space.dim == 5
    np.testing.assert_array_equal(space.x0, [0.5, 0.1, 0.2, 0.3, 3.0])
    assert space.x0.dtype == np.float64
    assert isinstance(space.bounds, Bounds)
    np.testing.assert_array_equal(space.bounds.lb, [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(space.bounds.ub, [3, 1, 1, 1, np.inf])
    assert space.has_finite_bounds


def test_unflatten_shapes_and_params_dict_is_json():
    space = make_space()
    params = space.unflatten(space.x0)
    assert np.shape(params["G"]) == () and params["w"].shape == (3,)
    named = space.params_dict(space.x0)
    assert named == {"G": 0.5, "w": [0.1, 0.2, 0.3], "speed": 3.0}
    assert json.loads(json.dumps(named)) == named


def test_unflatten_works_on_traced_arrays():
    space = make_space()

    @jax.jit
    def f(x):
        p = space.unflatten(x)
        return p["G"] * jnp.sum(p["w"]) + p["speed"]

    with jax.enable_x64(True):
        assert float(f(jnp.asarray(space.x0))) == pytest.approx(0.5 * 0.6 + 3.0, rel=1e-15)


def test_scalar_regional_init_broadcasts_and_n_regions_is_inferred():
    space = ParameterSpace({"w": Free(0.2, bounds=(0, 1), regional=True)}, n_regions=4)
    np.testing.assert_array_equal(space.x0, [0.2] * 4)
    inferred = ParameterSpace({"w": Free([0.1, 0.2], bounds=(0, 1), regional=True)})
    assert inferred.n_regions == 2 and inferred.names == ["w[0]", "w[1]"]


@st.composite
def spaces_and_vectors(draw):
    n_regions = draw(st.integers(1, 5))
    entries = draw(
        st.lists(
            st.tuples(st.booleans(), st.sampled_from(["identity", "log", "logit"])),
            min_size=1,
            max_size=4,
        )
    )
    free = {}
    for i, (regional, transform) in enumerate(entries):
        lo = 0.0 if transform == "log" else -draw(st.floats(0.5, 10.0))
        hi = draw(st.floats(1.0, 10.0))
        free[f"p{i}"] = Free(0.5, bounds=(lo, hi), regional=regional, transform=transform)
    space = ParameterSpace(free, n_regions=n_regions)
    u = np.asarray(draw(st.lists(st.floats(0.01, 0.99), min_size=space.dim, max_size=space.dim)))
    return space, space.lower + u * (space.upper - space.lower)


@settings(max_examples=60, deadline=None)
@given(spaces_and_vectors())
def test_flatten_unflatten_round_trip(case):
    space, x = case
    params = space.unflatten(x)
    back = space.flatten(params)
    np.testing.assert_array_equal(back, x)  # bitwise
    again = space.unflatten(back)
    for name in params:
        np.testing.assert_array_equal(again[name], params[name])
    assert space.flatten(space.params_dict(x)).tolist() == x.tolist()


@settings(max_examples=60, deadline=None)
@given(spaces_and_vectors())
def test_transforms_round_trip(case):
    space, x = case
    z = space.to_unbounded(x)
    np.testing.assert_allclose(space.from_unbounded(z), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(space.to_unbounded(space.from_unbounded(z)), z, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(spaces_and_vectors(), st.lists(st.floats(-1e6, 1e6), min_size=20, max_size=20))
def test_from_unbounded_stays_in_bounds(case, zs):
    space, _ = case
    z = np.resize(np.asarray(zs), space.dim)
    x = space.from_unbounded(z)
    assert np.all(np.isfinite(x)) and np.all(x >= space.lower) and np.all(x <= space.upper)


def test_transform_derivatives_match_finite_differences():
    space = ParameterSpace(
        {
            "a": Free(0.3, bounds=(-1, 2), transform="logit"),
            "b": Free(2.0, bounds=(0, math.inf), transform="log"),
            "c": Free(0.0),
        }
    )
    z, h = np.array([0.4, 0.7, -1.3]), 1e-6
    eye = np.eye(3)
    fd1 = np.array(
        [
            (space.from_unbounded(z + h * e) - space.from_unbounded(z - h * e))[i] / (2 * h)
            for i, e in enumerate(eye)
        ]
    )
    fd2 = np.array(
        [
            (space.from_unbounded_jac(z + h * e) - space.from_unbounded_jac(z - h * e))[i] / (2 * h)
            for i, e in enumerate(eye)
        ]
    )
    np.testing.assert_allclose(space.from_unbounded_jac(z), fd1, rtol=1e-8)
    np.testing.assert_allclose(space.from_unbounded_jac2(z), fd2, rtol=1e-6, atol=1e-9)


def test_unbounded_mask():
    space = ParameterSpace(
        {
            "free": Free(0.0),
            "box": Free(0.5, bounds=(0, 1)),
            "pos": Free(1.0, bounds=(0, math.inf), transform="log"),
            "shifted": Free(2.0, bounds=(1, math.inf), transform="log"),
            "logit": Free(0.5, bounds=(0, 1), transform="logit"),
        }
    )
    assert space.unbounded_mask.tolist() == [True, False, True, False, True]
    # identity with a finite bound: from_unbounded projects onto the box (projected gradient)
    assert space.from_unbounded(np.array([5.0, 7.0, 0.0, -9.0, 0.0]))[1] == 1.0


def test_hash_is_stable_and_sensitive():
    assert make_space().hash() == make_space().hash()
    other = ParameterSpace({"G": Free(0.5, bounds=(0.0, 2.0))})
    assert other.hash() != make_space().hash()


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: ParameterSpace({}), ["non-empty", "at least one free parameter"]),
        (
            lambda: ParameterSpace({"Gg": Free(1.0)}, allowed=["G", "w", "I_o"]),
            ["'Gg'", "did you mean 'G'"],
        ),
        (
            lambda: ParameterSpace({"I_0": Free(1.0)}, allowed=["G", "w", "I_o"]),
            ["did you mean 'I_o'"],
        ),
        (lambda: ParameterSpace({"G": Free(1.0, bounds=(2.0, 1.0))}), ["lo < hi", "(2.0, 1.0)"]),
        (lambda: ParameterSpace({"G": Free(1.0, bounds=(1.0, 1.0))}), ["lo < hi"]),
        (
            lambda: ParameterSpace({"G": Free(5.0, bounds=(0, 3))}),
            ["'G'", "inside the bounds", "5.0"],
        ),
        (
            lambda: ParameterSpace({"w": Free([0.1, 2.0], bounds=(0, 1), regional=True)}),
            ["region 1"],
        ),
        (lambda: ParameterSpace({"w": Free(0.5, regional=True)}), ["n_regions"]),
        (
            lambda: ParameterSpace({"w": Free([1.0, 2.0, 3.0], regional=True)}, n_regions=2),
            ["(2,)", "shape (3,)"],
        ),
        (
            lambda: ParameterSpace({"G": Free([1.0, 2.0])}),
            ["scalar init for a global", "regional=True"],
        ),
        (
            lambda: ParameterSpace({"s": Free(1.0, bounds=(-1, 2), transform="log")}),
            ["lo >= 0", "log"],
        ),
        (lambda: ParameterSpace({"s": Free(0.0, bounds=(0, 2), transform="log")}), ["init > 0"]),
        (lambda: ParameterSpace({"s": Free(0.5, transform="logit")}), ["finite bounds", "logit"]),
        (lambda: ParameterSpace({"G": 0.5}), ["Free(...)", "float"]),
        (lambda: ParameterSpace({"G": Free(0.5)}, n_regions=0), ["positive integer"]),
        (lambda: Free(0.5, transform="logt"), ["did you mean 'logit'"]),
        (lambda: Free(0.5, bounds=(0, 1, 2)), ["pair of numbers"]),
        (lambda: Free(np.zeros((2, 2))), ["1-D array"]),
        (lambda: make_space().flatten({"G": 1.0}), ["missing", "'w'"]),
        (
            lambda: make_space().flatten({"G": 1.0, "w": [1.0, 2.0], "speed": 1.0}),
            ["shape (3,)", "shape (2,)"],
        ),
        (lambda: make_space().unflatten(np.zeros(4)), ["shape (5,)", "shape (4,)"]),
    ],
)
def test_bad_inputs_have_clear_errors(build, words):
    with pytest.raises(ConfigError) as err:
        build()
    for word in words:
        assert word in str(err.value), (word, str(err.value))
    assert "Fix:" in str(err.value)
