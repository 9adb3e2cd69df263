"""Experiment specs: round trip, canonical hash, and one error (with its field path) per rule."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fitbridge._errors import ConfigError
from fitbridge._spec import (ExperimentSpec, apply_overrides, dump_yaml, load_spec, parse_override,
                             quick_overrides, spec_hash, to_dict)
from tests.spec_data import tiny_spec, write_data

EXAMPLES = sorted((Path(__file__).parents[1] / "examples" / "specs").glob("*.yaml"))

BASE = {
    "name": "base",
    "model": {"name": "rww", "parameters": {
        "G": {"value": 0.2, "domain": [0.1, 0.5], "free": True},
        "w": {"value": 0.4, "domain": [0.05, 0.6], "free": True},
        "I_o": 0.33}},
    "network": {"dataset": "hcp"},
    "integration": {"dt": 4.0, "duration": 150000, "sigma": 0.00283},
    "observation": {"bold": {"kind": "hrf", "tr": 720}},
    "exploration": {"mode": "sobol", "n": 8},
    "optimize": [{"method": "scipy:L-BFGS-B", "budget": 10, "start": "explore"},
                 {"method": "cma", "budget": 10, "free": {"w": {"regional": True}}, "options": {"popsize": 6}}],
    "validation": {"train": [0, 1, 2, 3]},
}


def _reversed(value):
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


# ------------------------------------------------------------------------------ round trip, hash
def test_round_trip_through_dict_and_yaml(tmp_path):
    spec = load_spec(BASE)
    assert load_spec(to_dict(spec)) == spec
    path = tmp_path / "copy.yaml"
    path.write_text(dump_yaml(spec))
    again = load_spec(path)
    assert again == spec and spec_hash(again) == spec_hash(spec)
    assert spec.optimize[1].free["w"].regional is True
    assert spec.model.parameters["I_o"].value == 0.33 and not spec.model.parameters["I_o"].free


def test_hash_ignores_key_order_spelled_defaults_and_number_types():
    h = spec_hash(load_spec(BASE))
    assert spec_hash(load_spec(_reversed(BASE))) == h
    explicit = copy.deepcopy(BASE)
    explicit["integration"].update(method="heun", transient=0, duration=150000.0, delay_mode="linear")
    explicit["loss"] = {"name": "1-corr", "fisher": False, "noise": "fixed"}
    explicit["optimize"][0]["method"] = "scipy:l-bfgs-b"  # canonicalised
    assert spec_hash(load_spec(explicit)) == h
    assert len(h) == 64 and int(h, 16) >= 0


@pytest.mark.parametrize("key, value", [
    ("name", "other"), ("description", "x"), ("model.parameters.G.value", 0.3),
    ("model.parameters.G.domain", [0.1, 0.6]), ("model.parameters.w.regional", True),
    ("model.parameters.I_o", 0.34), ("network.normalize", "none"), ("network.subjects", [0, 1]),
    ("integration.dt", 2.0), ("integration.sigma", 0.003), ("integration.method", "euler"),
    ("observation.bold.tr", 1440), ("observation.fc_skip", 5), ("loss.noise", "resample"),
    ("loss.fisher", True), ("exploration.n", 9), ("exploration.mode", "lhs"),
    ("optimize[0].budget", 11), ("optimize[0].options", {"maxiter": 3}), ("optimize[1].start", "best"),
    ("optimize[1].seed", 1), ("validation.train", [0, 1, 2]), ("execution.seed", 1),
    ("execution.precision", "float32"), ("execution.workers", 2), ("execution.dask_address", "tcp://h:1"),
])
def test_any_change_changes_the_hash(key, value):
    assert spec_hash(load_spec(BASE, overrides={key: value})) != spec_hash(load_spec(BASE))


def test_files_enter_the_hash_by_content_not_location(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_data(a)
    (a / "tiny.yaml").write_text(yaml.safe_dump(tiny_spec()))
    shutil.copytree(a, b)
    ha, hb = spec_hash(load_spec(a / "tiny.yaml")), spec_hash(load_spec(b / "tiny.yaml"))
    assert ha == hb
    np.save(b / "sub2.npy", np.load(b / "sub2.npy") + 1e-9)
    assert spec_hash(load_spec(b / "tiny.yaml")) != ha
    spec = load_spec(a / "tiny.yaml")
    moved = tmp_path / "elsewhere.yaml"  # the results-folder copy: absolute paths, same hash
    moved.write_text(dump_yaml(spec, absolute_paths=True))
    assert spec_hash(load_spec(moved)) == ha


def test_name_defaults_to_the_file_stem(tmp_path):
    data = {k: v for k, v in BASE.items() if k != "name"}
    path = tmp_path / "my_fit.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_spec(path).name == "my_fit"
    assert load_spec(data).name == "experiment"


def test_yaml_strings_like_1e_3_are_numbers():
    spec = load_spec(BASE, overrides={"integration.sigma": "2.83e-3", "integration.duration": "1.5e5"})
    assert spec.integration.sigma == 0.00283 and spec.integration.duration == 150000.0


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_specs_validate(path):
    spec = load_spec(path)
    assert spec.name == path.stem and spec.optimize
    assert load_spec(to_dict(spec)) == spec


# ------------------------------------------------------------------------------ errors
ERRORS = [
    ({"optimise": []}, "optimise", "did you mean 'optimize'"),
    ({"optimize[1].methd": "cma"}, "optimize[1].methd", "did you mean 'method'"),
    ({"optimize[1].method": "lbfgsb"}, "optimize[1].method", "scipy:L-BFGS-B"),
    ({"optimize[1].method": 3}, "optimize[1].method", "a non-empty string"),
    ({"optimize[0].budget": 0}, "optimize[0].budget", "an integer >= 1"),
    ({"optimize[0].budget": 2.5}, "optimize[0].budget", "an integer"),
    ({"optimize[0].start": "last"}, "optimize[0].start", "one of"),
    ({"optimize[0].options": [1]}, "optimize[0].options", "a mapping"),
    ({"optimize[0].free": ["Q"]}, "optimize[0].free.Q", "declared free"),
    ({"optimize[0].free": ["I_o"]}, "optimize[0].free.I_o", "free: true"),
    ({"optimize[0].free": []}, "optimize[0].free", "at least 1"),
    ({"model.parameters.sigma": {"domain": [0, 1], "free": True}, "optimize[0].free": {"sigma": {"regional": True}}},
     "optimize[0].free.sigma.regional", "only model parameters"),
    ({"optimize[0].noise": "sometimes"}, "optimize[0].noise", "'fixed', 'resample'"),
    ({"optimize": {"method": "cma"}}, "optimize", "a list"),
    ({"model.name": "wong"}, "model.name", "one of"),
    ({"model.parameters.Gg": 1.0}, "model.parameters.Gg", "did you mean 'G'"),
    ({"model.parameters.G.domain": [0.5, 0.1]}, "model.parameters.G.domain", "lo < hi"),
    ({"model.parameters.G.domain": [0.1]}, "model.parameters.G.domain", "lo < hi"),
    ({"model.parameters.G.domain": None}, "model.parameters.G.domain", "free parameter"),
    ({"model.parameters.G.value": 0.9}, "model.parameters.G.value", "inside the domain"),
    ({"model.parameters.G.value": "high"}, "model.parameters.G.value", "a number"),
    ({"model.parameters.G.free": "yes"}, "model.parameters.G.free", "true or false"),
    ({"model.parameters.G.transform": "logt"}, "model.parameters.G.transform", "did you mean 'logit'"),
    ({"model.parameters.sigma": {"value": 0.01, "domain": [0, 1], "free": True}},
     "model.parameters.sigma.value", "integration.sigma"),
    ({"model.parameters.speed": {"domain": [1, 10], "free": True}}, "model.parameters.speed", "network.speed"),
    ({"model.parameters.sigma": {"domain": [0, 1], "regional": True}}, "model.parameters.sigma", "global"),
    ({"model": None}, "model.name", "required"),
    ({"network.dataset": "hcpp"}, "network.dataset", "did you mean 'hcp'"),
    ({"network.dataset": None}, "network", "exactly one of"),
    ({"network.normalize": "sum"}, "network.normalize", "one of"),
    ({"network.speed": -1.0}, "network.speed", "> 0"),
    ({"network.subjects": [0, 0]}, "network.subjects", "distinct"),
    ({"network.lengths": "l.npy"}, "network.lengths", "no file with `dataset`"),
    ({"integration.dt": 0}, "integration.dt", "> 0"),
    ({"integration.dt": True}, "integration.dt", "a number"),
    ({"integration.duration": ".inf"}, "integration.duration", "a number"),
    ({"integration.transient": -1}, "integration.transient", ">= 0"),
    ({"integration.method": "rk4"}, "integration.method", "one of"),
    ({"observation.bold.kind": "bw"}, "observation.bold.kind", "one of"),
    ({"observation.bold.tr": 0}, "observation.bold.tr", "> 0"),
    ({"observation.fc_skip": -1}, "observation.fc_skip", ">= 0"),
    ({"observation.target": {"fc": "f.npy", "bold": ["b.npy"]}}, "observation.target", "exactly one"),
    ({"loss.name": "corr"}, "loss.name", "one of"),
    ({"loss.noise": "average=0"}, "loss.noise", "average=K"),
    ({"exploration.mode": "sobl"}, "exploration.mode", "did you mean 'sobol'"),
    ({"exploration.n": 0}, "exploration.n", ">= 1"),
    ({"exploration.axes": {"I_o": None}}, "exploration.axes.I_o", "free: true"),
    ({"exploration.axes": {"G": [0.1, 0.2]}}, "exploration.axes.G", "mode grid"),
    ({"exploration.axes": {"G": {"n": 3}}}, "exploration.axes.G.n", "exploration.n"),
    ({"exploration.axes": {"G": {"lo": 0.1, "values": [0.2]}}, "exploration.mode": "grid"},
     "exploration.axes.G", "either"),
    ({"exploration.axes": {"G": {"lo": 0.1, "hi": 0.2, "step": 3}}}, "exploration.axes.G.step", "unknown field"),
    ({"exploration": None}, "optimize[0].start", "exploration section"),
    ({"validation.train": []}, "validation.train", "at least 1"),
    ({"validation.train": [-1]}, "validation.train[0]", ">= 0"),
    ({"validation.trian": [0]}, "validation.trian", "did you mean 'train'"),
    ({"execution.seed": -1}, "execution.seed", ">= 0"),
    ({"execution.precision": "float16"}, "execution.precision", "one of"),
    ({"execution.workers": 0}, "execution.workers", ">= 1"),
    ({"execution.dask_address": 5}, "execution.dask_address", "a non-empty string"),
    ({"tuning.fic": {"eta": 0.1}}, "tuning.fic", "excinh"),
    ({"tuning.fic": {"etaa": 0.1}}, "tuning.fic.etaa", "did you mean 'eta'"),
    ({"version": 2}, "version", "an integer >= 1 and <= 1"),
]


@pytest.mark.parametrize("overrides, path, fragment", ERRORS, ids=[e[1] + "-" + str(i) for i, e in enumerate(ERRORS)])
def test_every_error_names_its_field(overrides, path, fragment):
    with pytest.raises(ConfigError) as info:
        load_spec(BASE, overrides=overrides)
    message = str(info.value)
    assert message.startswith(f"{path}: expected "), message
    assert "\n" not in message and "Fix: " in message
    if fragment is not None:
        assert fragment in message, message


def test_tuning_section_validates_for_excinh():
    spec = load_spec(BASE, overrides={
        "model": {"name": "excinh", "parameters": {"G": {"value": 2.0, "domain": [0.5, 3.0], "free": True}}},
        "optimize": [{"method": "scipy:L-BFGS-B"}], "exploration": None,
        "tuning": {"fic": {"form": "rate", "target": 3.0}, "eib": {"window": 100}}})
    assert spec.tuning.requested == ["fic", "eib"] and spec.tuning.eib.eta == 0.005
    with pytest.raises(ConfigError, match=r"^tuning.eib: expected tuning.fic as well"):
        load_spec(to_dict(spec) | {"tuning": {"eib": {}}})


def test_eib_tuning_builds_the_per_edge_model():
    from fitbridge._experiment import Builder
    from fitbridge.models import WongWangEIB, WongWangExcInh

    base = {"model": {"name": "excinh", "parameters": {"G": {"value": 2.0, "domain": [0.5, 3.0], "free": True}}},
            "optimize": [{"method": "scipy:L-BFGS-B"}], "exploration": None}
    fic_only = Builder(load_spec(BASE, overrides={**base, "tuning": {"fic": {}}}))
    assert fic_only.model_cls is WongWangExcInh
    with_eib = Builder(load_spec(BASE, overrides={**base, "tuning": {"fic": {}, "eib": {}}}))
    assert with_eib.model_cls is WongWangEIB
    model = with_eib.simulation(with_eib.initial_values()).network.model
    assert isinstance(model, WongWangEIB) and model.G == 2.0


def test_file_errors(tmp_path):
    write_data(tmp_path)
    spec = tiny_spec(network={"weights": "missing.npy"})
    with pytest.raises(ConfigError, match=r"^network.weights: expected an existing file"):
        load_spec(spec, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^observation.target: expected a target"):
        load_spec({**tiny_spec(), "observation": {"bold": {"tr": 720}}}, base_dir=tmp_path)
    target = {"fc": "weights.npy"}
    with pytest.raises(ConfigError, match=r"^validation: expected per-subject BOLD"):
        load_spec(tiny_spec(observation={"target": target}), base_dir=tmp_path)


@pytest.mark.parametrize("text, fragment", [
    ("model: [unclosed", "valid YAML"), ("", "an empty file"), ("- a\n- b\n", "a mapping of sections"),
    ("model: !!python/object/apply:os.system ['true']\n", "valid YAML"),
])
def test_bad_files(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_spec(path)


def test_overrides_and_quick():
    assert parse_override("optimize[0].budget=4") == ("optimize[0].budget", 4)
    assert parse_override("model.parameters.G.domain=[0, 1]") == ("model.parameters.G.domain", [0, 1])
    raw = apply_overrides(BASE, {"optimize[1].options.popsize": 8, "loss.noise": "resample"})
    assert raw["optimize"][1]["options"]["popsize"] == 8 and raw["loss"] == {"noise": "resample"}
    assert BASE["optimize"][1]["options"]["popsize"] == 6  # not mutated
    for bad in ("optimize[5].budget", "optimize..budget", "[0].x", "optimize[0]x"):
        with pytest.raises(ConfigError, match="override"):
            apply_overrides(BASE, {bad: 1})
    with pytest.raises(ConfigError, match="--set"):
        parse_override("integration.duration")
    spec = load_spec(BASE)
    quick = quick_overrides(spec)
    assert quick["integration.duration"] == 40 * 720 and quick["exploration.n"] == 4
    assert quick["optimize[0].budget"] == 4 and quick["optimize[1].budget"] == 4
    assert isinstance(load_spec(spec, overrides=quick), ExperimentSpec)
