"""Cache: hits return identical values without touching the problem; redo, stale entries, safety."""

import json
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

import fitbridge as fb
from fitbridge import _cache
from fitbridge._cache import Cache, StaleCacheEntry
from fitbridge._evaluate import evaluate
from fitbridge._explore import explore


def make_problem(scale=1.0):
    def loss(p, key):
        return scale * jnp.sum(jnp.sin(p["x"]) ** 2), {"half": 0.5 * p["x"][0]}

    free = {"x": fb.Free([0.1, 0.2], bounds=(-3, 3), regional=True)}
    return fb.Problem(loss, fb.ParameterSpace(free, n_regions=2), has_aux=True, spec={"scale": scale})


def test_hit_returns_identical_values_without_calling_the_problem(tmp_path, rng):
    X = rng.uniform(-1, 1, (11, 2))
    first = evaluate(make_problem(), X, chunk_size=4, cache=tmp_path)
    assert first.info["computed"] == 11 and len(Cache(tmp_path)) == 3
    fresh = make_problem()  # same spec, nothing compiled yet
    again = evaluate(fresh, X, chunk_size=4, cache=Cache(tmp_path))
    assert again.info == {**again.info, "computed": 0, "cached": 11}
    assert fresh._compiled == {} and not fb._evaluate._KERNELS.get(fresh)  # never traced or run
    np.testing.assert_array_equal(again.fun, first.fun)
    np.testing.assert_array_equal(again.aux["half"], first.aux["half"])
    redo = evaluate(fresh, X, chunk_size=4, cache=tmp_path, redo=True)
    assert redo.info["computed"] == 11 and fb._evaluate._KERNELS.get(fresh)
    np.testing.assert_array_equal(redo.fun, first.fun)


def test_keys_separate_problems_points_and_settings(tmp_path, rng):
    X = rng.uniform(-1, 1, (4, 2))
    evaluate(make_problem(), X, cache=tmp_path)
    other = evaluate(make_problem(scale=2.0), X, cache=tmp_path)
    assert other.info["computed"] == 4  # another spec
    assert evaluate(make_problem(), X + 1e-9, cache=tmp_path).info["computed"] == 4
    assert evaluate(make_problem(), X, cache=tmp_path, grad=True).info["computed"] == 4
    partial = evaluate(make_problem(), np.vstack([X, X[:1] + 1]), chunk_size=4, cache=tmp_path)
    assert partial.info == {**partial.info, "cached": 4, "computed": 1}
    assert explore(make_problem(), {"x": [0.1, 0.2]}, cache=tmp_path).shape == (2, 3)


def test_stale_entries_are_named(tmp_path, rng, monkeypatch):
    X = rng.uniform(-1, 1, (4, 2))
    first = evaluate(make_problem(), X, cache=tmp_path)
    monkeypatch.setattr(_cache, "versions", lambda: {"fitbridge": "9.9", "jax": "0.0", "jaxlib": "0.0",
                                                     "numpy": "0.0"})
    with pytest.raises(StaleCacheEntry, match=r"written by fitbridge .*; this is fitbridge 9.9.*redo=True"):
        evaluate(make_problem(), X, cache=tmp_path)
    same = evaluate(make_problem(), X, cache=Cache(tmp_path, stale="use"))
    assert same.info["computed"] == 0
    np.testing.assert_array_equal(same.fun, first.fun)
    with pytest.warns(RuntimeWarning, match="recomputing"):
        assert evaluate(make_problem(), X, cache=Cache(tmp_path, stale="recompute")).info["computed"] == 4
    assert evaluate(make_problem(), X, cache=tmp_path).info["computed"] == 0  # rewritten: fresh now


def test_entries_are_plain_npz_written_atomically(tmp_path, rng):
    evaluate(make_problem(), rng.uniform(size=(3, 2)), cache=tmp_path)
    (entry,) = tmp_path.glob("??/*.npz")
    assert not list(tmp_path.rglob(".tmp-*"))
    with zipfile.ZipFile(entry) as z:
        assert sorted(z.namelist()) == ["__meta__.npy", "aux.half.npy", "fun.npy"]
    with np.load(entry, allow_pickle=False) as npz:  # nothing needs unpickling
        meta = json.loads(str(npz["__meta__"]))
    assert meta["versions"]["jax"] and meta["parts"]["kind"] == "fitbridge.evaluate"
    with pytest.raises(fb.ConfigError, match="numeric arrays"):
        Cache(tmp_path).put({"a": 1}, {"x": np.array([object()])})


def test_memoize_decorator(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    @cache.memoize
    def expensive(problem, x, *, k=1):
        calls.append(x)
        return {"y": np.asarray(x) * k, "spec": np.asarray(problem.spec_hash()[:4])}

    p = make_problem()
    a = expensive(p, np.arange(3.0), k=2)
    b = expensive(make_problem(), np.arange(3.0), k=2)
    np.testing.assert_array_equal(a["y"], b["y"])
    assert len(calls) == 1
    expensive(p, np.arange(3.0), k=3)
    expensive(p, np.arange(3.0), k=2, redo=True)
    assert len(calls) == 3
    single = cache.memoize(lambda n: np.arange(n))
    np.testing.assert_array_equal(single(3), single(3))
    with pytest.raises(fb.ConfigError, match="JSON-able"):
        expensive(p, object())
    with pytest.raises(fb.ConfigError, match="stale="):
        Cache(tmp_path, stale="sometimes")
    with pytest.raises(fb.ConfigError, match="folder path"):
        evaluate(p, np.zeros((1, 2)), cache=3)
