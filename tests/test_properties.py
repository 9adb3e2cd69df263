"""Property tests (hypothesis): parameter layouts and transforms, FC and loss invariants, and
spec parsing (canonical hash stable under re-ordering and round trips; junk gets a ConfigError,
never another exception)."""

from __future__ import annotations

import copy
import json
import math

import jax
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fitbridge as fb
from fitbridge._params import TRANSFORMS
from fitbridge._spec import dump_yaml, load_spec, spec_hash, to_dict

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


# ------------------------------------------------------------------------------ parameter spaces
@st.composite
def free_entries(draw, n_regions):
    transform = draw(st.sampled_from(TRANSFORMS))
    lo_finite = transform != "identity" or draw(st.booleans())
    hi_finite = transform == "logit" or draw(st.booleans())
    lo = draw(st.floats(0.0 if transform == "log" else -100.0, 100.0)) if lo_finite else -math.inf
    if transform == "log" and draw(st.booleans()):
        lo = 0.0
    hi = lo + draw(st.floats(1e-2, 100.0)) if hi_finite and math.isfinite(lo) else (
        draw(finite) if hi_finite else math.inf)
    regional = draw(st.booleans())

    def one():
        if math.isfinite(lo) and math.isfinite(hi):
            value = lo + draw(st.floats(0.0, 1.0)) * (hi - lo)
        elif math.isfinite(lo):
            value = lo + draw(st.floats(0.0, 100.0))
        elif math.isfinite(hi):
            value = hi - draw(st.floats(0.0, 100.0))
        else:
            value = draw(finite)
        if transform == "log" and value <= 0:
            value = min(hi, lo + 1e-3) if lo == 0 else value
        return float(np.clip(value, lo, hi))

    init = [one() for _ in range(n_regions)] if regional else one()
    assume(transform != "log" or np.all(np.asarray(init) > 0))
    return fb.Free(init, bounds=(lo, hi), regional=regional, transform=transform)


@st.composite
def parameter_spaces(draw):
    n = draw(st.integers(1, 5))
    names = draw(st.lists(st.sampled_from(["G", "w", "I_o", "J_i", "sigma", "speed"]), min_size=1,
                          max_size=4, unique=True))
    return fb.ParameterSpace({name: draw(free_entries(n)) for name in names}, n_regions=n)


@st.composite
def space_and_z(draw, bound=10.0):
    space = draw(parameter_spaces())
    z = np.array(draw(st.lists(st.floats(-bound, bound), min_size=space.dim, max_size=space.dim)))
    return space, z


@FAST
@given(space_and_z(bound=1e3))
def test_flatten_unflatten_round_trip(case):
    space, x = case
    values = space.unflatten(x)
    for name, free in space.free.items():
        assert np.shape(values[name]) == ((space.n_regions,) if free.regional else ())
    np.testing.assert_array_equal(space.flatten(values), x)
    named = space.params_dict(x)
    json.dumps(named)  # JSON-able
    np.testing.assert_array_equal(space.flatten(named), x)
    assert len(space.names) == space.dim == x.size


@FAST
@given(parameter_spaces())
def test_space_layout_and_hash_are_stable(space):
    assert np.all((space.x0 >= space.lower) & (space.x0 <= space.upper))
    again = fb.ParameterSpace(dict(space.free), n_regions=space.n_regions)
    assert again.hash() == space.hash() and again.names == space.names


@FAST
@given(space_and_z(bound=50.0))
def test_from_unbounded_lands_in_the_bounds(case):
    space, z = case
    x = space.from_unbounded(z)
    assert np.all((x >= space.lower) & (x <= space.upper))


@FAST
@given(space_and_z(bound=8.0))
def test_transform_round_trips(case):
    """``to_unbounded(from_unbounded(z)) == z`` where the transform removes the bounds, and
    ``from_unbounded(to_unbounded(x)) == x`` for every x inside the bounds."""
    space, z = case
    mask = space.unbounded_mask
    back = space.to_unbounded(space.from_unbounded(z))
    np.testing.assert_allclose(back[mask], z[mask], rtol=1e-7, atol=1e-6)
    x = space.from_unbounded(z)
    width = np.where(np.isfinite(space.upper - space.lower), space.upper - space.lower, 1.0)
    again = space.from_unbounded(space.to_unbounded(x))
    np.testing.assert_allclose(again, x, rtol=1e-7, atol=1e-9 * np.max(width) + 1e-12)


@FAST
@given(space_and_z(bound=20.0), st.lists(st.floats(0.0, 5.0), min_size=5, max_size=5))
def test_from_unbounded_is_monotone_with_a_matching_derivative(case, steps):
    space, z = case
    dz = np.resize(np.asarray(steps), z.size)
    lo, hi = space.from_unbounded(z), space.from_unbounded(z + dz)
    assert np.all(hi >= lo - 1e-12 * np.maximum(1.0, np.abs(lo)))
    assert np.all(space.from_unbounded_jac(z) >= 0)
    inside = space.unbounded_mask & (np.abs(z) < 5)
    h = 1e-6
    numeric = (space.from_unbounded(z + h) - space.from_unbounded(z - h)) / (2 * h)
    np.testing.assert_allclose(space.from_unbounded_jac(z)[inside], numeric[inside], rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------ FC and losses
T, N = 24, 5
fc = jax.jit(fb.losses.fc)
one_minus_corr = jax.jit(fb.losses.one_minus_corr, static_argnames="fisher")
rmse = jax.jit(fb.losses.rmse, static_argnames="fisher")
bold_arrays = arrays(np.float64, (T, N), elements=st.floats(-100, 100, allow_nan=False))
matrices = arrays(np.float64, (N, N), elements=st.floats(-1, 1, allow_nan=False))
coarse = arrays(np.float64, (N, N), elements=st.integers(-1000, 1000).map(lambda i: i / 1000))  # no underflow


def _varied(x, axis=None, tol=1e-3):
    return np.all(np.ptp(x, axis=axis) > tol)


@FAST
@given(bold_arrays, st.floats(1e-3, 1e3), arrays(np.float64, (N,), elements=st.floats(-100, 100)))
def test_fc_is_symmetric_unit_diagonal_and_invariant_to_affine_scaling(bold, a, b):
    assume(_varied(bold, axis=0, tol=1e-2))
    c = np.asarray(fc(bold))
    np.testing.assert_allclose(c, c.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(c), 1.0, atol=1e-10)
    assert np.all(np.abs(c) <= 1 + 1e-10)
    np.testing.assert_allclose(np.asarray(fc(a * bold + b)), c, atol=1e-8)


@FAST
@given(matrices, matrices, st.booleans())
def test_one_minus_corr_is_symmetric_in_0_2_and_zero_on_itself(a, b, fisher):
    upper = np.triu_indices(N, 1)
    assume(_varied(a[upper]) and _varied(b[upper]))
    ab, ba = float(one_minus_corr(a, b, fisher=fisher)), float(one_minus_corr(b, a, fisher=fisher))
    assert ab == pytest.approx(ba, abs=1e-12)
    assert -1e-12 <= ab <= 2 + 1e-12
    assert float(one_minus_corr(a, a, fisher=fisher)) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(coarse, coarse, st.booleans())
def test_rmse_is_symmetric_nonnegative_and_zero_iff_equal(a, b, fisher):
    ab = float(rmse(a, b, fisher=fisher))
    assert ab == pytest.approx(float(rmse(b, a, fisher=fisher)), abs=1e-12)
    assert ab >= 0 and float(rmse(a, a, fisher=fisher)) == 0.0
    upper = np.triu_indices(N, 1)
    assert (ab == 0.0) == bool(np.all(a[upper] == b[upper]))


# ------------------------------------------------------------------------------ specs
METHODS = ["scipy:L-BFGS-B", "scipy:l-bfgs-b", "cma", "scipy:Nelder-Mead", "scipy:Powell"]


@st.composite
def valid_specs(draw):
    lo = draw(st.floats(0.0, 1.0))
    hi = lo + draw(st.floats(0.01, 1.0))
    g = {"value": lo + draw(st.floats(0.0, 1.0)) * (hi - lo), "domain": [lo, hi], "free": True,
         "transform": draw(st.sampled_from(TRANSFORMS[::2]))}
    spec = {
        "name": draw(st.sampled_from(["a", "fit", "rww_fit"])),
        "model": {"name": "rww", "parameters": {"G": g, "I_o": draw(st.floats(0.2, 0.4))}},
        "network": {"dataset": "hcp", "normalize": draw(st.sampled_from(["max", "none"]))},
        "integration": {"dt": draw(st.sampled_from([0.5, 1, 2.0, 4])),
                        "duration": draw(st.integers(30_000, 300_000)),
                        "sigma": draw(st.one_of(st.none(), st.floats(0.0, 0.01)))},
        "loss": {"name": draw(st.sampled_from(["1-corr", "rmse"])), "fisher": draw(st.booleans())},
        "optimize": [{"method": draw(st.sampled_from(METHODS)), "budget": draw(st.integers(1, 500)),
                      "start": "init"} for _ in range(draw(st.integers(0, 2)))],
        "execution": {"seed": draw(st.integers(0, 2**31))},
    }
    if draw(st.booleans()):
        spec["exploration"] = {"mode": draw(st.sampled_from(["sobol", "lhs", "random"])),
                               "n": draw(st.integers(1, 64))}
    return spec


def _reordered(value, rnd):
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _reordered(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_reordered(v, rnd) for v in value]
    return value


@FEW
@given(valid_specs(), st.randoms(use_true_random=False))
def test_spec_hash_ignores_key_order_and_survives_round_trips(raw, rnd):
    spec = load_spec(raw)
    digest = spec_hash(spec)
    assert spec_hash(load_spec(copy.deepcopy(raw))) == digest
    assert spec_hash(load_spec(_reordered(raw, rnd))) == digest
    assert spec_hash(load_spec(to_dict(spec))) == digest
    assert spec_hash(load_spec(yaml.safe_load(dump_yaml(spec)))) == digest
    as_float = {**raw, "integration": {**raw["integration"], "duration": float(raw["integration"]["duration"])}}
    assert spec_hash(load_spec(as_float)) == digest  # 150000 and 150000.0 are one duration
    changed = {**raw, "execution": {"seed": raw["execution"]["seed"] + 1}}
    assert spec_hash(load_spec(changed)) != digest


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
PATHS = ["", "name", "model", "model.name", "model.parameters", "model.parameters.G",
         "model.parameters.G.value", "model.parameters.G.domain", "model.parameters.G.transform",
         "model.parameters.I_o", "network", "network.dataset", "network.speed", "network.subjects",
         "network.weights", "integration", "integration.dt", "integration.duration", "integration.sigma",
         "observation", "observation.bold", "observation.bold.tr", "observation.target", "loss",
         "loss.noise", "exploration", "exploration.axes", "exploration.n", "optimize", "optimize.0",
         "optimize.0.method", "optimize.0.budget", "optimize.0.free", "optimize.0.options", "tuning",
         "validation", "validation.train", "execution", "execution.seed", "execution.workers", "surprise"]


def _set(spec, path, value):
    if not path:
        return value
    node, *parts = spec, *path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            return spec
    last = parts[-1]
    if isinstance(node, list):
        if int(last) < len(node):
            node[int(last)] = value
    else:
        node[last] = value
    return spec


@FAST
@given(valid_specs(), st.sampled_from(PATHS), junk)
def test_junk_values_get_a_config_error_and_nothing_else(raw, path, value):
    raw.setdefault("optimize", []).append({"method": "cma"})
    bad = _set(copy.deepcopy(raw), path, value)
    try:
        load_spec(bad)
    except fb.ConfigError as err:
        message = str(err)
        assert ": expected " in message and ", got " in message and ". Fix: " in message, message


@FEW
@given(st.one_of(st.binary(max_size=200),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)))
def test_junk_files_get_a_config_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("junk") / "spec.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(fb.ConfigError):
        load_spec(path)
