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
    tuning: {fic: null, eib: null} # FIC, then EIB (with FIC alongside), before the stages
    validation: {train: [0, 1, 2, 3]}   # the other subjects are held out
    execution: {seed: 0, precision: float64, workers: 1, dask_address: null}

PyYAML reads ``1e-3`` (no dot) as a string; number fields accept such strings.

This module holds the sections and :func:`load_spec`; the cross-field rules are in
:mod:`fitbridge._spec_checks`, file reading, overrides, the canonical form and the hash in
:mod:`fitbridge._spec_io` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from ._errors import ConfigError, fail
from ._params import TRANSFORMS
from ._schema import (REQUIRED, SpecPath, boolean, choice, field, file_path, fix_hint, got,
                      list_of, mapping_of, number, optional, plain_mapping, section, string, text)
from ._spec_checks import bold_fields, check_spec, model_fields  # noqa: F401 (re-exported)
from ._spec_io import (_digest, _paths, apply_overrides, dump_yaml, parse_override,  # noqa: F401
                       quick_overrides, read_yaml, resolve_path, spec_hash, to_dict)

__all__ = ["ExperimentSpec", "ModelSpec", "Parameter", "NetworkSpec", "IntegrationSpec",
           "BoldSpec", "TargetSpec", "ObservationSpec", "LossSpec", "Axis", "ExplorationSpec",
           "FreeSpec", "StageSpec", "FICSpec", "EIBSpec", "TuningSpec", "ValidationSpec",
           "ExecutionSpec", "load_spec", "spec_hash", "apply_overrides", "parse_override",
           "quick_overrides", "method_name", "to_dict", "dump_yaml", "resolve_path", "model_fields",
           "bold_fields", "SPEC_VERSION"]

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
    name: str = field(choice("rww", "excinh", "eib", "wilson_cowan"), REQUIRED, "rww")
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
    edges: bool | None = field(optional(boolean), None, "true",
                               "one value per connection (per-edge parameters: wLRE, wFFI of model eib)")
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


# ------------------------------------------------------------------------------ loading
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
    elif not isinstance(source, (str, PathLike)):
        fail("load_spec", "a spec file path, a dict or an ExperimentSpec", got(source),
             "pass e.g. load_spec('examples/specs/rww_fit.yaml')")
    else:
        path = Path(source).expanduser()
        raw, name, folder = read_yaml(path), path.stem, path.resolve().parent
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
    check_spec(spec)
    return spec

