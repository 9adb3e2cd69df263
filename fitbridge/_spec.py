"""YAML experiment specs: frozen dataclasses, validation with field paths, canonical hash.

A spec is a YAML (or JSON) mapping read with ``yaml.safe_load`` (never ``yaml.load``).
Every field is validated eagerly; an error names the field's path (``optimize[1].method``),
what was expected, what came in and how to fix it, and unknown fields get a "did you mean".
Defaults are filled in, numbers normalised (``150000`` and ``150000.0`` are the same
duration) and optimizer names canonicalised, so :func:`spec_hash` depends only on what the
run does: key order, spelling of defaults and the location of data files do not change it
(files enter the hash by their SHA-256), any other change does.

Sections (all times in ms; see ``examples/specs/`` for complete specs)::

    name: rww_fit                  # default: the file name
    description: ...
    model:
      name: rww                    # rww | excinh | wilson_cowan
      parameters:                  # value, domain [lo, hi], free, regional, transform
        G: {value: 0.2, domain: [0.1, 0.5], free: true}
        I_o: 0.33                  # a bare number is a fixed value
        sigma: {domain: [0.001, 0.01], free: true}   # value from integration.sigma
    network: {dataset: hcp, subjects: null, normalize: max, speed: null}
             # or weights: sc.npy, lengths: len.npy (paths relative to the spec file)
    integration: {method: heun, dt: 4.0, duration: 150000, transient: 0, sigma: 0.00283}
    observation:
      bold: {kind: hrf, tr: 720}   # hrf | gamma | balloon; tr default: the data's TR
      fc_skip: null                # BOLD frames dropped before FC (default: FCProblem's)
      target: null                 # default: the dataset's BOLD; or {fc: f.npy} or {bold: [...], tr: 720}
    loss: {name: 1-corr, fisher: false, noise: fixed}   # noise: fixed | resample | average=K
    exploration: {mode: sobol, n: 32, axes: {G: null, w: {lo: 0.1, hi: 0.6}}}
    optimize:                      # stages, in order
      - {method: scipy:L-BFGS-B, budget: 40, start: explore, free: [G, w], options: {}}
      - {method: scipy:L-BFGS-B, budget: 60, start: previous, free: {w: {regional: true}}}
    tuning: {fic: null, eib: null} # parsed and validated; running them is not available yet
    validation: {train: [0, 1, 2, 3]}   # the other subjects are held out
    execution: {seed: 0, precision: float64, workers: 1, dask_address: null}

PyYAML reads ``1e-3`` (no dot) as a string; number fields accept such strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._errors import ConfigError, fail
from ._params import TRANSFORMS, _did_you_mean
from ._schema import (REQUIRED, SpecPath, boolean, choice, field, file_path, fix_hint, got,
                      list_of, mapping_of, number, optional, plain_mapping, section, string, text)

__all__ = ["ExperimentSpec", "ModelSpec", "Parameter", "NetworkSpec", "IntegrationSpec",
           "BoldSpec", "TargetSpec", "ObservationSpec", "LossSpec", "Axis", "ExplorationSpec",
           "FreeSpec", "StageSpec", "FICSpec", "EIBSpec", "TuningSpec", "ValidationSpec",
           "ExecutionSpec", "load_spec", "spec_hash", "apply_overrides", "parse_override",
           "quick_overrides", "method_name", "to_dict", "dump_yaml", "resolve_path", "SPEC_VERSION"]

SPEC_VERSION = 1
START_MODES = ("previous", "explore", "best", "init")


# ------------------------------------------------------------------------------ sections
def _domain(value, path, example=""):
    pair = list_of(number(finite=False))(value, path, example or "[0.1, 0.5]")
    if len(pair) != 2 or not pair[0] < pair[1]:
        fail(path, "[lo, hi] with lo < hi", got(list(value)), fix_hint(path, example or "[0.1, 0.5]"))
    return pair


def _value(value, path, example=""):
    if isinstance(value, (list, tuple)):
        return list_of(number(), min_len=1)(value, path, example)
    return number()(value, path, example or "0.5")


@dataclasses.dataclass(frozen=True)
class Parameter:
    value: float | tuple[float, ...] | None = field(optional(_value), None, "0.5",
                                                     "initial/fixed value; a list gives one per region")
    domain: tuple[float, float] | None = field(optional(_domain), None, "[0.1, 0.5]",
                                                "bounds [lo, hi] (required when free)")
    free: bool = field(boolean, False, "true", "optimized by default in stages and exploration")
    regional: bool = field(boolean, False, "true", "one value per region when free")
    transform: str = field(choice(*TRANSFORMS), "identity", "logit", "coordinate of unbounded optimizers")


def _parameter(value, path, example=""):
    if not isinstance(value, Mapping):
        return Parameter(value=_value(value, path, example))
    return section(Parameter)(value, path, example)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str = field(choice("rww", "excinh", "wilson_cowan"), REQUIRED, "rww")
    parameters: dict[str, Parameter] = field(mapping_of(_parameter), dict, "{G: {value: 0.2}}")


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    dataset: str | None = field(optional(string), None, "hcp", "embedded dataset (fitbridge datasets)")
    weights: SpecPath | None = field(optional(file_path), None, "data/sc.npy", "W[target, source] file")
    lengths: SpecPath | None = field(optional(file_path), None, "data/lengths.npy", "tract lengths (mm)")
    subjects: tuple[int, ...] | None = field(optional(list_of(number(lo=0, integer=True), min_len=1,
                                                               unique=True)), None, "[0, 1, 2]",
                                              "subjects whose SC is averaged (default all)")
    normalize: str = field(choice("max", "none"), "max", "max")
    speed: float | None = field(optional(number(lo=0, lo_open=True)), None, "3.0", "mm/ms; null: no delays")


@dataclasses.dataclass(frozen=True)
class IntegrationSpec:
    method: str = field(choice("heun", "euler"), "heun", "heun")
    dt: float = field(number(lo=0, lo_open=True), 1.0, "4.0")
    duration: float = field(number(lo=0, lo_open=True), 60_000.0, "150000", "transient included")
    transient: float = field(number(lo=0), 0.0, "10000")
    sigma: float | None = field(optional(number(lo=0)), None, "0.00283", "additive noise; null: none")
    delay_mode: str = field(choice("linear", "nearest"), "linear", "linear")


@dataclasses.dataclass(frozen=True)
class BoldSpec:
    kind: str = field(choice("hrf", "gamma", "balloon"), "hrf", "hrf")
    tr: float | None = field(optional(number(lo=0, lo_open=True)), None, "720", "ms; default data TR")
    input: str | None = field(optional(choice("state", "rate")), None, "state")
    period: float = field(number(lo=0, lo_open=True), 4.0, "4.0", "averaging period (ms)")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    fc: SpecPath | None = field(optional(file_path), None, "data/fc.npy", "an empirical FC matrix")
    bold: tuple[SpecPath, ...] | None = field(optional(list_of(file_path, min_len=1)), None,
                                               "[sub0.npy, sub1.npy]", "per-subject BOLD (frames, regions)")
    regions_first: bool = field(boolean, False, "true", "BOLD files are (regions, frames)")
    tr: float | None = field(optional(number(lo=0, lo_open=True)), None, "720", "TR of the BOLD files")


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
    bold: BoldSpec = field(section(BoldSpec), BoldSpec, "{kind: hrf, tr: 720}")
    fc_skip: int | None = field(optional(number(lo=0, integer=True)), None, "0")
    target: TargetSpec | None = field(optional(section(TargetSpec)), None, "{fc: data/fc.npy}")


def _noise_policy(value, path, example=""):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return f"average={value}"
    if isinstance(value, str) and (value in ("fixed", "resample")
                                   or re.fullmatch(r"average=[1-9]\d*", value.replace(" ", ""))):
        return value.replace(" ", "")
    fail(path, "'fixed', 'resample', 'average=K' or an int K >= 1", got(value), fix_hint(path, "resample"))


@dataclasses.dataclass(frozen=True)
class LossSpec:
    name: str = field(choice("1-corr", "rmse"), "1-corr", "1-corr")
    fisher: bool = field(boolean, False, "false", "compare Fisher-z FC")
    noise: str = field(_noise_policy, "fixed", "fixed", "noise policy of the loss")


@dataclasses.dataclass(frozen=True)
class Axis:
    lo: float | None = field(optional(number()), None, "0.1", "default: the domain's")
    hi: float | None = field(optional(number()), None, "0.5")
    n: int | None = field(optional(number(lo=1, integer=True)), None, "8", "grid points (grid)")
    values: tuple[float, ...] | None = field(optional(list_of(number(), min_len=1)), None,
                                              "[0.1, 0.2, 0.3]", "explicit grid values")


def _axis(value, path, example=""):
    if value is None:
        return Axis()
    if isinstance(value, (list, tuple)):
        return Axis(values=list_of(number(), min_len=1)(value, path, example))
    return section(Axis)(value, path, example)


@dataclasses.dataclass(frozen=True)
class ExplorationSpec:
    mode: str = field(choice("grid", "sobol", "lhs", "random"), "sobol", "sobol")
    axes: dict[str, Axis] | None = field(optional(mapping_of(_axis)), None, "{G: null, w: {lo: 0.1, hi: 0.6}}",
                                          "default: every global free parameter")
    n: int = field(number(lo=1, integer=True), 32, "32", "points (samplers) or points per grid axis")
    seed: int | None = field(optional(number(lo=0, integer=True)), None, "0", "default execution.seed")


@dataclasses.dataclass(frozen=True)
class FreeSpec:
    regional: bool | None = field(optional(boolean), None, "true", "override the parameter's regional")
    domain: tuple[float, float] | None = field(optional(_domain), None, "[0.1, 0.5]")
    transform: str | None = field(optional(choice(*TRANSFORMS)), None, "identity")


def _free(value, path, example=""):
    if isinstance(value, (list, tuple)):
        names = list_of(string, min_len=1, unique=True)(value, path, example)
        return {name: FreeSpec() for name in names}
    out = mapping_of(lambda v, p, e: section(FreeSpec)(v, p, e))(value, path, example or "[G, w]")
    if not out:
        fail(path, "at least one free parameter", "none", fix_hint(path, "[G, w]"))
    return out


def method_name(value, path, example=""):
    """A registered optimizer name, canonicalised (``"scipy:l-bfgs-b"`` -> ``"scipy:L-BFGS-B"``)."""
    from . import backends

    name = string(value, path, example or "scipy:L-BFGS-B")
    try:
        return backends.get(name).name
    except ConfigError as err:
        hint = str(err).partition("Fix: ")[2].rstrip(".") or "run `fitbridge methods` for the list"
        fail(path, "a registered optimizer (see `fitbridge methods`)", repr(name), hint)


@dataclasses.dataclass(frozen=True)
class StageSpec:
    method: str = field(method_name, REQUIRED, "scipy:L-BFGS-B")
    budget: int = field(number(lo=1, integer=True), 100, "40", "loss evaluations")
    options: dict = field(plain_mapping, dict, "{popsize: 8}", "passed to the backend")
    free: dict[str, FreeSpec] | None = field(optional(_free), None, "[G, w]", "default: every free parameter")
    start: str = field(choice(*START_MODES), "previous", "previous",
                        "previous | explore (best explored) | best (so far) | init")
    seed: int | None = field(optional(number(lo=0, integer=True)), None, "0", "default execution.seed")
    noise: str | None = field(optional(_noise_policy), None, "resample", "override loss.noise")
    name: str | None = field(optional(string), None, "global", "label in tables and plots")


@dataclasses.dataclass(frozen=True)
class FICSpec:
    form: str = field(choice("gating", "rate"), "gating", "gating")
    target: float | None = field(optional(number(lo=0, lo_open=True)), None, "0.25",
                                  "<S_e> (gating, default 0.25) or Hz (rate, default 3)")
    eta: float = field(number(lo=0, lo_open=True), 0.1, "0.1")
    iterations: int = field(number(lo=1, integer=True), 200, "200", "one TR each")


@dataclasses.dataclass(frozen=True)
class EIBSpec:
    eta: float = field(number(lo=0, lo_open=True), 0.005, "0.005")
    fic_eta: float = field(number(lo=0, lo_open=True), 0.1, "0.1")
    warmup: int = field(number(lo=0, integer=True), 100, "100", "iterations of learning-rate warm-up")
    window: int = field(number(lo=3, integer=True), 150, "150", "BOLD frames of the sliding FC")
    iterations: int = field(number(lo=1, integer=True), 2000, "2000")


@dataclasses.dataclass(frozen=True)
class TuningSpec:
    fic: FICSpec | None = field(optional(section(FICSpec)), None, "{eta: 0.1}")
    eib: EIBSpec | None = field(optional(section(EIBSpec)), None, "{eta: 0.005}")

    @property
    def requested(self) -> list[str]:
        return [n for n in ("fic", "eib") if getattr(self, n) is not None]


@dataclasses.dataclass(frozen=True)
class ValidationSpec:
    train: tuple[int, ...] = field(list_of(number(lo=0, integer=True), min_len=1, unique=True),
                                    REQUIRED, "[0, 1, 2, 3]", "subjects fitted; the others are held out")


@dataclasses.dataclass(frozen=True)
class ExecutionSpec:
    seed: int = field(number(lo=0, integer=True), 0, "0", "noise key and optimizer seeds")
    precision: str = field(choice("float64", "float32"), "float64", "float64",
                            "of the exploration (optimization is float64)")
    workers: int = field(number(lo=1, integer=True), 1, "2", "joblib processes for the exploration")
    dask_address: str | None = field(optional(string), None, "tcp://10.0.0.5:8786",
                                      "Dask scheduler for the exploration")


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment; build with :func:`load_spec`. ``source_dir`` (not hashed)
    is where relative file paths start."""

    model: ModelSpec = field(section(ModelSpec), REQUIRED, "{name: rww}")
    network: NetworkSpec = field(section(NetworkSpec), REQUIRED, "{dataset: hcp}")
    version: int = field(number(lo=SPEC_VERSION, hi=SPEC_VERSION, integer=True), SPEC_VERSION, "1")
    name: str = field(string, "experiment", "rww_fit")
    description: str = field(text, "", '"..."')
    integration: IntegrationSpec = field(section(IntegrationSpec), IntegrationSpec, "{dt: 4.0}")
    observation: ObservationSpec = field(section(ObservationSpec), ObservationSpec, "{bold: {tr: 720}}")
    loss: LossSpec = field(section(LossSpec), LossSpec, "{name: 1-corr}")
    exploration: ExplorationSpec | None = field(optional(section(ExplorationSpec)), None, "{n: 32}")
    optimize: tuple[StageSpec, ...] = field(list_of(section(StageSpec)), tuple, "[{method: cma}]")
    tuning: TuningSpec = field(section(TuningSpec), TuningSpec, "{fic: null}")
    validation: ValidationSpec | None = field(optional(section(ValidationSpec)), None, "{train: [0, 1]}")
    execution: ExecutionSpec = field(section(ExecutionSpec), ExecutionSpec, "{seed: 0}")
    source_dir: Path | None = dataclasses.field(default=None, compare=False, repr=False)

    def free_parameters(self) -> list[str]:
        return [k for k, p in self.model.parameters.items() if p.free]


# ------------------------------------------------------------------------ cross-field checks
def model_fields(name: str) -> tuple[str, ...]:
    from ._models import MODELS

    return MODELS[name].field_names


def bold_fields(kind: str) -> tuple[str, ...]:
    from ._bold import HRF, BalloonWindkessel, GammaHRF

    return {"hrf": HRF, "gamma": GammaHRF, "balloon": BalloonWindkessel}[kind].field_names


def _check_parameters(spec: ExperimentSpec) -> None:
    fields = model_fields(spec.model.name)
    bold = [f"bold.{f}" for f in bold_fields(spec.observation.bold.kind)]
    known = [*fields, "sigma", "speed", *bold]
    for name, p in spec.model.parameters.items():
        path = f"model.parameters.{name}"
        if name not in known:
            near = _did_you_mean(name, known) or f"choose among {list(fields)}"
            fail(path, f"a parameter of model {spec.model.name!r} (or sigma, speed, bold.<constant>)",
                 f"unknown parameter {name!r}", near)
        if name in ("sigma", "speed"):
            where = "integration.sigma" if name == "sigma" else "network.speed"
            if p.value is not None:
                fail(f"{path}.value", f"no value here (the value of {name} is {where})", got(p.value),
                     f"move the value to {where}")
            if (spec.integration.sigma if name == "sigma" else spec.network.speed) is None:
                fail(path, f"{where} set (it gives {name}'s value)", "null", f"set {where} or drop {name}")
        if (p.regional and name not in fields) or (isinstance(p.value, tuple) and name not in fields):
            fail(path, "a global value (only model parameters can be regional)",
                 "regional values", "set regional: false")
        if p.free and p.domain is None:
            fail(f"{path}.domain", "[lo, hi] for a free parameter", "nothing", fix_hint(f"{path}.domain", "[0.1, 0.5]"))
        if p.domain is not None and p.value is not None:
            values = p.value if isinstance(p.value, tuple) else (p.value,)
            lo, hi = p.domain
            bad = [v for v in values if not lo <= v <= hi]
            if bad:
                fail(f"{path}.value", f"values inside the domain [{lo:g}, {hi:g}]", bad[0],
                     "move the value inside the domain or widen it")


def _check_free_names(spec: ExperimentSpec, names, path: str, what: str) -> None:
    free = spec.free_parameters()
    for name in names:
        if name not in free:
            declared = name in spec.model.parameters
            fail(f"{path}.{name}", f"a parameter declared free in model.parameters ({free})",
                 f"{name!r}" + (" (declared with free: false)" if declared else " (not declared)"),
                 f"set model.parameters.{name}.free: true" if declared
                 else (_did_you_mean(name, free) or f"declare {name} in model.parameters"))


def _check_sources(spec: ExperimentSpec) -> None:
    net, target = spec.network, spec.observation.target
    if (net.dataset is None) == (net.weights is None):
        fail("network", "exactly one of `dataset` or `weights`",
             "both" if net.dataset is not None else "neither", "write e.g. `dataset: hcp`")
    if net.dataset is not None:
        from .datasets import available

        if net.dataset not in available():
            fail("network.dataset", f"an embedded dataset {available()}", repr(net.dataset),
                 _did_you_mean(net.dataset, available()) or "use `fitbridge datasets` to list them")
        for key in ("lengths",):
            if getattr(net, key) is not None:
                fail(f"network.{key}", "no file with `dataset` (the dataset has its own)",
                     repr(getattr(net, key)), "drop it, or replace `dataset` by `weights`")
    elif net.subjects is not None:
        fail("network.subjects", "no subject selection with a weights file", list(net.subjects),
             "drop it (a file holds one connectome)")
    if net.speed is not None and net.dataset is None and net.lengths is None:
        fail("network.lengths", "a lengths file when network.speed is set", "nothing",
             "write `lengths: data/lengths.npy` or drop speed")
    if target is not None and (target.fc is None) == (target.bold is None):
        fail("observation.target", "exactly one of `fc` or `bold`",
             "both" if target.fc is not None else "neither", "write e.g. `fc: data/fc.npy`")
    if net.dataset is None and target is None:
        fail("observation.target", "a target (fc or bold files) when the network is a weights file",
             "nothing", "write `target: {fc: data/fc.npy}`")
    if spec.validation is not None and target is not None and target.bold is None:
        fail("validation", "per-subject BOLD (a dataset or observation.target.bold)",
             "a single target FC file", "give target.bold files, or drop validation")


def _check_stages(spec: ExperimentSpec) -> None:
    exp = spec.exploration
    if exp is not None:
        axes = exp.axes if exp.axes is not None else {
            k: None for k in spec.free_parameters() if not spec.model.parameters[k].regional}
        if not axes:
            fail("exploration.axes", "at least one parameter to explore", "none (no global free parameter)",
                 "write `axes: {G: null}` or mark a parameter free")
        _check_free_names(spec, axes, "exploration.axes", "explored")
        for name, ax in (exp.axes or {}).items():
            path = f"exploration.axes.{name}"
            if ax.values is not None and (ax.lo is not None or ax.hi is not None or ax.n is not None):
                fail(path, "either `values` or lo/hi/n", "both", "keep one of the two")
            if ax.values is not None and exp.mode != "grid":
                fail(path, f"bounds {{lo, hi}} for mode {exp.mode!r} (values are for mode grid)",
                     list(ax.values), "use mode: grid, or give lo/hi")
            if ax.n is not None and exp.mode != "grid":
                fail(f"{path}.n", f"no per-axis n for mode {exp.mode!r}", ax.n, "set exploration.n instead")
            lo = ax.lo if ax.lo is not None else spec.model.parameters[name].domain[0]
            hi = ax.hi if ax.hi is not None else spec.model.parameters[name].domain[1]
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) and ax.values is None:
                fail(path, "finite lo < hi", f"lo={lo}, hi={hi}", "give lo/hi or a finite domain")
    if not spec.free_parameters() and (spec.optimize or exp is not None):
        fail("model.parameters", "at least one parameter with free: true", "none",
             "mark e.g. G as `free: true` with a domain")
    for i, stage in enumerate(spec.optimize):
        path = f"optimize[{i}]"
        if stage.free is not None:
            _check_free_names(spec, stage.free, f"{path}.free", "optimized")
            for name, over in stage.free.items():
                if over.regional and name not in model_fields(spec.model.name):
                    fail(f"{path}.free.{name}.regional", "false (only model parameters can be regional)",
                         True, "drop regional")
        if stage.start == "explore" and exp is None:
            fail(f"{path}.start", "an exploration section for start: explore", "no exploration",
                 "add `exploration:` or use start: init")


def _check_tuning(spec: ExperimentSpec) -> None:
    for name in spec.tuning.requested:
        if spec.model.name != "excinh":
            fail(f"tuning.{name}", "model.name: excinh (FIC/EIB tune the Wong-Wang Exc-Inh model)",
                 repr(spec.model.name), "use model excinh or drop the tuning section")
    if spec.tuning.eib is not None and spec.tuning.fic is None:
        fail("tuning.eib", "tuning.fic as well (EIB runs together with FIC)", "no fic", "add `fic: {}`")


def _check_files(spec: ExperimentSpec) -> None:
    for path, value in _paths(spec):
        file = resolve_path(spec, value)
        if not file.is_file():
            fail(path, "an existing file (relative paths start at the spec's folder)", str(file),
                 "check the path")


def _paths(spec: ExperimentSpec) -> list[tuple[str, SpecPath]]:
    out = [(f"network.{k}", getattr(spec.network, k)) for k in ("weights", "lengths")]
    target = spec.observation.target
    if target is not None:
        out.append(("observation.target.fc", target.fc))
        out += [(f"observation.target.bold[{i}]", p) for i, p in enumerate(target.bold or ())]
    return [(k, v) for k, v in out if v is not None]


def resolve_path(spec: ExperimentSpec, value: str) -> Path:
    """A spec's file path as an absolute path (relative to the spec's folder, or the cwd)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (spec.source_dir or Path.cwd()) / path


# ------------------------------------------------------------------------------ loading
def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        fail("load_spec", "PyYAML to read a YAML spec", "no module named 'yaml'",
             "pip install 'fitbridge[yaml]' (or pass the spec as a dict)")
    if not path.is_file():
        fail("load_spec", "an existing spec file", str(path), "check the path")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        fail(str(path), "valid YAML", f"{problem}{where}", "fix the syntax (indentation, colons, quotes)")
    except UnicodeDecodeError as err:
        fail(str(path), "a UTF-8 text file", str(err), "save the spec as UTF-8")


def load_spec(source, *, overrides: Mapping[str, Any] | None = None,
              base_dir: str | Path | None = None) -> ExperimentSpec:
    """Read and validate a spec from a YAML/JSON file, a dict, or an :class:`ExperimentSpec`.

    Parameters
    ----------
    source : path, dict or ExperimentSpec
    overrides : dict, optional
        ``{"integration.duration": 20000, "optimize[0].budget": 4}`` applied before validation
        (see :func:`apply_overrides`).
    base_dir : path, optional
        Where relative file paths start (default: the spec file's folder, or the cwd).

    Examples
    --------
    >>> spec = load_spec({"model": {"name": "rww", "parameters": {"G": {"value": 0.2,
    ...                   "domain": [0, 1], "free": True}}}, "network": {"dataset": "hcp"},
    ...                   "optimize": [{"method": "scipy:l-bfgs-b", "budget": 5}]})
    >>> spec.optimize[0].method, spec.integration.dt
    ('scipy:L-BFGS-B', 1.0)
    >>> load_spec({"model": {"name": "rww"}, "network": {"dataset": "hcp"}, "optimise": []})
    Traceback (most recent call last):
    ...
    fitbridge._errors.ConfigError: optimise: expected a field of the spec: [...], got unknown field 'optimise'. Fix: did you mean 'optimize'.
    """
    if isinstance(source, ExperimentSpec):
        raw, name, folder = to_dict(source), source.name, source.source_dir
    elif isinstance(source, Mapping):
        raw, name, folder = dict(source), None, None
    else:
        path = Path(source).expanduser()
        raw, name, folder = _read_yaml(path), path.stem, path.resolve().parent
        if raw is None:
            fail(str(path), "a spec (a YAML mapping)", "an empty file", "see examples/specs/")
    if not isinstance(raw, Mapping):
        fail("spec", "a mapping of sections (model, network, ...)", got(raw), "see examples/specs/")
    raw = dict(raw)
    if name is not None and "name" not in raw:
        raw["name"] = name
    if overrides:
        raw = apply_overrides(raw, overrides)
    spec = section(ExperimentSpec)(raw, "")
    folder = Path(base_dir).resolve() if base_dir is not None else folder
    spec = dataclasses.replace(spec, source_dir=folder)
    for check in (_check_parameters, _check_sources, _check_stages, _check_tuning, _check_files):
        check(spec)
    return spec


# ------------------------------------------------------------------------------ overrides
_NAME = r"[^.\[\]\s=]+"
_KEY = re.compile(rf"^{_NAME}(\[\d+\])*(\.{_NAME}(\[\d+\])*)*$")
_TOKEN = re.compile(rf"({_NAME})|\[(\d+)\]")


def _tokens(key: str) -> list[str | int]:
    """``"optimize[0].budget"`` -> ``["optimize", 0, "budget"]``."""
    if not isinstance(key, str) or not _KEY.match(key):
        fail("override", "a field path such as integration.duration or optimize[0].budget", repr(key),
             "write section.field or list[index].field")
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _TOKEN.finditer(key)]


def apply_overrides(raw: Mapping, overrides: Mapping[str, Any]) -> dict:
    """A deep copy of ``raw`` with ``{"a.b[0].c": value}`` entries set (missing mappings are created)."""
    out = json.loads(json.dumps(raw, default=_jsonable))
    for key, value in overrides.items():
        tokens = _tokens(key)
        node = out
        for i, tok in enumerate(tokens[:-1]):
            nxt = tokens[i + 1]
            node = _step(node, tok, key, create={} if isinstance(nxt, str) else None)
        last = tokens[-1]
        if isinstance(last, int):
            _step(node, last, key, create=None)
        elif not isinstance(node, dict):
            fail(f"override {key}", "a path through mappings", f"{type(node).__name__} before {last!r}",
                 "check the path")
        node[last] = value
    return out


def _step(node, tok, key, create):
    if isinstance(tok, int):
        if not isinstance(node, list) or tok >= len(node):
            size = len(node) if isinstance(node, list) else "no list"
            fail(f"override {key}", f"an index into an existing list (length {size})", tok, "check the index")
        return node[tok]
    if not isinstance(node, dict):
        fail(f"override {key}", "a path through mappings", f"{type(node).__name__} at {tok!r}", "check the path")
    if node.get(tok) is None:
        if create is None:
            fail(f"override {key}", f"an existing list at {tok!r}", "nothing", "check the path")
        node[tok] = create
    return node[tok]


def parse_override(text_: str) -> tuple[str, Any]:
    """``"integration.duration=20000"`` -> ``("integration.duration", 20000)`` (value read as YAML)."""
    key, sep, value = text_.partition("=")
    if not sep or not key.strip():
        fail("--set", "KEY=VALUE (e.g. integration.duration=20000)", repr(text_), "add the '='")
    try:
        import yaml

        parsed = yaml.safe_load(value) if value.strip() else None
    except ImportError:
        parsed = json.loads(value) if value.strip() else None
    except Exception as err:  # yaml.YAMLError, reported as one line
        fail(f"--set {key}", "a YAML value", f"{value!r} ({type(err).__name__})", "quote strings")
    return key.strip(), parsed


def quick_overrides(spec: ExperimentSpec) -> dict[str, Any]:
    """Overrides of the smoke setting (``--quick``): at most 40 TRs after the transient, at most 4
    evaluations per stage, 4 explored points (2 per grid axis), 5 tuning iterations. It only
    shortens. A smoke test of the pipeline, NOT a fit."""
    tr = spec.observation.bold.tr or 720.0
    duration = min(spec.integration.duration, spec.integration.transient + 40 * tr)
    out: dict[str, Any] = {"integration.duration": duration}
    exp = spec.exploration
    if exp is not None:
        out["exploration.n"] = 2 if exp.mode == "grid" else min(exp.n, 4)
        for name, ax in (exp.axes or {}).items():
            if ax.values is not None:
                out[f"exploration.axes.{name}.values"] = [ax.values[0], ax.values[-1]][:len(ax.values)]
            elif ax.n is not None:
                out[f"exploration.axes.{name}.n"] = min(ax.n, 2)
    for i, stage in enumerate(spec.optimize):
        out[f"optimize[{i}].budget"] = min(stage.budget, 4)
    for name in spec.tuning.requested:
        out[f"tuning.{name}.iterations"] = 5
    return out


# ------------------------------------------------------------------------------ canonical form
def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    fail("spec", "plain YAML values", got(value), "use numbers, strings, lists and mappings")


def _canonical(spec: ExperimentSpec, on_path: Callable[[SpecPath], Any]) -> dict:
    def walk(value):
        if dataclasses.is_dataclass(value):
            return {f.name: walk(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if "conv" in f.metadata}
        if isinstance(value, SpecPath):
            return on_path(value)
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    out = walk(spec)
    return {k: out[k] for k in _ORDER}


_ORDER = ("version", "name", "description", "model", "network", "integration", "observation", "loss",
          "exploration", "optimize", "tuning", "validation", "execution")


def to_dict(spec: ExperimentSpec, *, absolute_paths: bool = False) -> dict:
    """The canonical plain form (every field, defaults filled in); ``load_spec`` reads it back."""
    return _canonical(spec, lambda p: str(resolve_path(spec, p)) if absolute_paths else str(p))


def _digest(file: Path) -> str:
    h = hashlib.sha256()
    with file.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def spec_hash(spec: ExperimentSpec) -> str:
    """SHA-256 of the canonical spec, with every data file replaced by its content's SHA-256
    (so moving the data or the spec does not change it)."""
    canon = _canonical(spec, lambda p: {"sha256": _digest(resolve_path(spec, p))})
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def dump_yaml(spec: ExperimentSpec, *, absolute_paths: bool = False) -> str:
    """The canonical spec as YAML text (``sort_keys=False``: sections in declaration order)."""
    import yaml

    return yaml.safe_dump(to_dict(spec, absolute_paths=absolute_paths), sort_keys=False,
                          default_flow_style=None, width=100)
