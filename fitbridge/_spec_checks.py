"""Cross-field checks of an experiment spec, run by :func:`fitbridge._spec.load_spec` after each
section has been converted on its own: parameter names against the model, data sources, stage
and exploration names against the free parameters, tuning and data files. Each check fails
with the field's path, what it expected, what it got and how to fix it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._errors import fail
from ._params import _did_you_mean
from ._schema import fix_hint, got
from ._spec_io import _paths, resolve_path

if TYPE_CHECKING:
    from ._spec import ExperimentSpec

__all__ = ["model_fields", "bold_fields", "check_spec"]

def _model_class(name: str):
    from ._models import MODELS

    return MODELS[name]


def model_fields(name: str) -> tuple[str, ...]:
    return _model_class(name).field_names


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
                edge_fields = getattr(_model_class(spec.model.name), "edge_fields", ())
                if over.edges and name not in edge_fields:
                    fail(f"{path}.free.{name}.edges", f"false (per-edge parameters are {list(edge_fields)})",
                         True, "drop edges, or use model eib and free wLRE/wFFI")
                if over.edges and over.regional:
                    fail(f"{path}.free.{name}", "regional or edges, not both", "both", "keep one")
        if stage.start == "explore" and exp is None:
            fail(f"{path}.start", "an exploration section for start: explore", "no exploration",
                 "add `exploration:` or use start: init")


def _check_tuning(spec: ExperimentSpec) -> None:
    for name in spec.tuning.requested:
        if spec.model.name not in ("excinh", "eib"):
            fail(f"tuning.{name}", "model.name: excinh or eib (FIC/EIB tune the Wong-Wang Exc-Inh model)",
                 repr(spec.model.name), "use model excinh or eib, or drop the tuning section")
    if spec.tuning.eib is not None and spec.tuning.fic is None:
        fail("tuning.eib", "tuning.fic as well (EIB runs together with FIC)", "no fic", "add `fic: {}`")


def _check_files(spec: ExperimentSpec) -> None:
    for path, value in _paths(spec):
        file = resolve_path(spec, value)
        if not file.is_file():
            fail(path, "an existing file (relative paths start at the spec's folder)", str(file),
                 "check the path")


def check_spec(spec: ExperimentSpec) -> None:
    """Every cross-field rule, in order (parameters, sources, stages, tuning, files)."""
    for check in (_check_parameters, _check_sources, _check_stages, _check_tuning, _check_files):
        check(spec)
