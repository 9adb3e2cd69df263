"""Converters of the spec schema: each is ``conv(value, path, example) -> value`` and fails
with the field's path, what it expected, what it got and an example of a good value.

:func:`section` turns a frozen dataclass whose fields carry ``metadata={"conv": ...}`` (made
with :func:`field`) into a converter: unknown keys get a "did you mean", missing required
keys are named. Used by :mod:`fitbridge._spec`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import fail
from ._params import _did_you_mean

__all__ = ["SpecPath", "REQUIRED", "field", "number", "choice", "boolean", "string", "text", "file_path",
           "optional", "list_of", "mapping_of", "plain_mapping", "section", "got", "fix_hint", "join",
           "as_number"]

REQUIRED = dataclasses.MISSING
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class SpecPath(str):
    """A file path as written in the spec (relative paths start at the spec's folder)."""


# ------------------------------------------------------------------------------ converters
def field(conv: Callable, default: Any = REQUIRED, example: str = "", doc: str = ""):
    """A dataclass field validated by ``conv``; a callable default is a factory."""
    extra = {"default_factory": default} if callable(default) and default is not REQUIRED else {}
    if not extra and default is not REQUIRED:
        extra = {"default": default}
    return dataclasses.field(metadata={"conv": conv, "example": example, "doc": doc}, **extra)


def fix_hint(path: str, example: str) -> str:
    key = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
    return f"write e.g. `{key}: {example}`" if example else "see the spec reference in fitbridge/_spec.py"


def got(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def as_number(value):
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


def number(*, lo=None, hi=None, lo_open=False, integer=False, finite=True):
    """A number (float, or int with ``integer``) in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    kind = "an integer" if integer else "a number"
    limits = []
    if lo is not None:
        limits.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        limits.append(f"<= {hi:g}")
    what = kind + (" " + " and ".join(limits) if limits else "")

    def conv(value, path, example=""):
        v = as_number(value)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok and integer:
            ok = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        if ok and (math.isnan(v) or (finite and math.isinf(v))):
            ok = False
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v <= hi
        if not ok:
            fail(path, what, got(value), fix_hint(path, example))
        return int(v) if integer else float(v)

    return conv


def choice(*options: str):
    def conv(value, path, example=""):
        if not isinstance(value, str) or value not in options:
            near = _did_you_mean(str(value), options) if isinstance(value, str) else ""
            fail(path, f"one of {list(options)}", got(value), near or fix_hint(path, example or options[0]))
        return value

    return conv


def boolean(value, path, example=""):
    if not isinstance(value, bool):
        fail(path, "true or false", got(value), fix_hint(path, example or "true"))
    return value


def string(value, path, example=""):
    if not isinstance(value, str) or not value.strip():
        fail(path, "a non-empty string", got(value), fix_hint(path, example))
    return value


def text(value, path, example=""):
    if not isinstance(value, str):
        fail(path, "a string", got(value), fix_hint(path, example or '"..."'))
    return value


def file_path(value, path, example=""):
    return SpecPath(string(value, path, example or "data/weights.npy"))


def optional(conv):
    def wrapped(value, path, example=""):
        return None if value is None else conv(value, path, example)

    return wrapped


def list_of(conv, *, min_len=0, unique=False):
    def wrapped(value, path, example=""):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            fail(path, "a list", got(value), fix_hint(path, example or "[...]"))
        if len(value) < min_len:
            fail(path, f"a list of at least {min_len} item(s)", f"{len(value)} items", fix_hint(path, example))
        out = tuple(conv(v, f"{path}[{i}]", "") for i, v in enumerate(value))
        if unique and len(set(out)) != len(out):
            dup = next(v for v in out if out.count(v) > 1)
            fail(path, "distinct items", f"{dup!r} twice", "remove the repeated item")
        return out

    return wrapped


def _mapping(value, path, example=""):
    if not isinstance(value, Mapping):
        fail(path, "a mapping (key: value)", got(value), fix_hint(path, example or "{...}"))
    for key in value:
        if not isinstance(key, str):
            fail(f"{path}[{key!r}]", "string keys", got(key), "quote the key")
    return value


def mapping_of(conv):
    def wrapped(value, path, example=""):
        return {k: conv(v, join(path, k), "") for k, v in _mapping(value, path, example).items()}

    return wrapped


def _plain(value, path):
    """A YAML value made of mappings, lists, strings, numbers, booleans and null (options)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return as_number(value) if isinstance(value, str) else value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: _plain(v, join(path, k)) for k, v in _mapping(value, path).items()}
    fail(path, "plain YAML values (numbers, strings, lists, mappings)", got(value), "simplify the value")


def plain_mapping(value, path, example=""):
    _mapping(value, path, example)
    return _plain(value, path)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def section(cls):
    """Convert a mapping to ``cls``: unknown keys get a "did you mean", required keys are checked."""

    def conv(value, path, example=""):
        value = {} if value is None else _mapping(value, path or "spec", example)
        fields = {f.name: f for f in dataclasses.fields(cls) if "conv" in f.metadata}
        for key in value:
            if key not in fields:
                near = _did_you_mean(key, fields)
                fail(join(path, key), f"a field of {path or 'the spec'}: {sorted(fields)}",
                     f"unknown field {key!r}", near or "remove it")
        kwargs = {}
        for name, f in fields.items():
            sub = join(path, name)
            if name in value:
                kwargs[name] = f.metadata["conv"](value[name], sub, f.metadata["example"])
            elif f.default is REQUIRED and f.default_factory is REQUIRED:
                fail(sub, "a value (this field is required)", "nothing", fix_hint(sub, f.metadata["example"]))
        return cls(**kwargs)

    return conv
