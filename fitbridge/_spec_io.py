"""Spec files and canonical form: reading YAML (``yaml.safe_load`` only), data file paths
(relative to the spec's folder, read as arrays, never imported or executed), ``--set``
overrides, the canonical plain form, its YAML dump and the spec hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import fail
from ._schema import SpecPath, got

if TYPE_CHECKING:
    from ._spec import ExperimentSpec

__all__ = ["read_yaml", "resolve_path", "apply_overrides", "parse_override", "quick_overrides",
           "to_dict", "spec_hash", "dump_yaml"]


# ------------------------------------------------------------------------------ files
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


def read_yaml(path: Path) -> Any:
    """The content of a YAML/JSON file, read with ``yaml.safe_load`` (never ``yaml.load``)."""
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
