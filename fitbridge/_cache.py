"""On-disk memoisation of expensive evaluations, keyed by content, never unpickled.

An entry is ONE ``.npz`` file (arrays plus a JSON manifest stored as a string array), read
with ``allow_pickle=False`` and written atomically (a temporary file in the same folder,
fsynced, then ``os.replace``), so a crash never leaves a half-written entry and concurrent
writers of the same key are harmless. The key is the SHA-256 of a canonical JSON of what
determines the result: for :func:`fitbridge.evaluate` chunks, the problem's ``spec_hash()``
(parameter space, noise policy, seed, simulation settings, connectome, target FC and loss),
the precision, the gradient flag, the observables and a digest of the rows (and of their
evaluation indices under ``noise="resample"``).

Package versions (fitbridge, jax, jaxlib, numpy) are recorded in the manifest, not in the
key: an entry written by other versions is *stale*. ``stale="error"`` (default) raises
:class:`StaleCacheEntry` naming both version sets; ``"recompute"`` recomputes and overwrites
with a warning; ``"use"`` accepts it. ``redo=True`` recomputes and overwrites any entry.
The key does not see edits to fitbridge's own code between releases: pass ``redo=True``
after changing model code.

Examples
--------
>>> import tempfile, numpy as np
>>> cache = Cache(tempfile.mkdtemp())
>>> @cache.memoize
... def squares(n):
...     return {"y": np.arange(n) ** 2}
>>> squares(4)["y"]
array([0, 1, 4, 9])
>>> len(cache)
1
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ._errors import FitbridgeError, fail
from ._files import atomic_write

__all__ = ["Cache", "StaleCacheEntry", "as_cache", "versions", "digest"]

_PACKAGES = ("fitbridge", "jax", "jaxlib", "numpy")
_META = "__meta__"


class StaleCacheEntry(FitbridgeError):
    """A cache entry was written by other package versions."""


def versions() -> dict[str, str | None]:
    """Versions of the packages that determine cached results."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def digest(array) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _canonical(value):
    """JSON-able, order-independent form of key parts (arrays by digest, problems by spec)."""
    from ._problem import Problem

    if isinstance(value, Problem):
        return {"problem": value.spec_hash()}
    if isinstance(value, np.ndarray):
        return {"array": digest(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    fail("Cache key", "JSON-able values, arrays or problems", type(value).__name__,
         "pass plain values, or arrays, as the memoised function's arguments")


@dataclasses.dataclass(frozen=True)
class Cache:
    """A folder of content-addressed ``.npz`` entries (module docstring).

    Parameters
    ----------
    directory : path
        Created on first write.
    stale : {"error", "recompute", "use"}
        What to do with an entry written by other package versions.
    """

    directory: Path
    stale: str = "error"

    def __post_init__(self):
        object.__setattr__(self, "directory", Path(self.directory).expanduser())
        if self.stale not in ("error", "recompute", "use"):
            fail("Cache(stale=...)", "'error', 'recompute' or 'use'", repr(self.stale),
                 "use stale='error' to be told about entries from other versions")

    def key(self, parts: Mapping) -> str:
        """SHA-256 of the canonical JSON of ``parts``."""
        text = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("??/*.npz")) if self.directory.exists() else 0

    def get(self, parts: Mapping, *, redo: bool = False) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``parts``; None if missing, ``redo``, or stale to recompute."""
        path = self.path(self.key(parts))
        if redo or not path.exists():
            return None
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz[_META]))
            arrays = {k: npz[k] for k in npz.files if k != _META}
        now = versions()
        if meta.get("versions") != now and self.stale != "use":
            message = (f"cache entry {path} was written by {_show(meta.get('versions'))}; "
                       f"this is {_show(now)}")
            if self.stale == "error":
                raise StaleCacheEntry(f"{message}. Fix: pass redo=True to recompute it, or "
                                      "Cache(..., stale='recompute' or 'use').")
            warnings.warn(f"{message}: recomputing", RuntimeWarning, stacklevel=3)
            return None
        return arrays

    def put(self, parts: Mapping, arrays: Mapping[str, np.ndarray]) -> Path:
        """Store ``arrays`` under ``parts`` atomically; returns the entry's path."""
        path = self.path(self.key(parts))
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"parts": _canonical(parts), "versions": versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        if _META in payload or any(v.dtype == object for v in payload.values()):
            fail("Cache.put", "numeric arrays (never objects)", sorted(payload),
                 "store numbers and strings only")

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **payload, **{_META: np.asarray(json.dumps(meta))})

        return atomic_write(path, write)

    def memoize(self, fn: Callable) -> Callable:
        """Decorator: memoise ``fn(*args, **kwargs) -> array or dict of arrays`` in this cache.

        The key covers the function's module, name and bytecode and its arguments (arrays by
        digest, problems by ``spec_hash()``). The wrapper takes an extra ``redo=False``.
        Results come back as they went in (dicts of arrays, or one array).
        """
        code = getattr(fn, "__code__", None)
        ident = {"fn": f"{fn.__module__}.{fn.__qualname__}",
                 "code": hashlib.sha256(code.co_code).hexdigest() if code else None}

        @functools.wraps(fn)
        def wrapper(*args, redo: bool = False, **kwargs):
            parts = {**ident, "args": list(args), "kwargs": kwargs}
            hit = self.get(parts, redo=redo)
            if hit is not None:
                return hit["__value__"] if set(hit) == {"__value__"} else hit
            value = fn(*args, **kwargs)
            self.put(parts, value if isinstance(value, Mapping) else {"__value__": value})
            return value

        return wrapper


def _show(v: Mapping | None) -> str:
    return ", ".join(f"{k} {x}" for k, x in (v or {}).items()) or "unknown versions"


def as_cache(cache) -> Cache | None:
    """None, a :class:`Cache`, or a folder path."""
    if cache is None or isinstance(cache, Cache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return Cache(Path(cache))
    fail("cache=", "None, a folder path or a fitbridge Cache", type(cache).__name__,
         "pass cache='~/.cache/fitbridge' or Cache(path)")


# ---------------------------------------------------------------- evaluate's chunk entries
def chunk_parts(problem, settings, chunk) -> dict:
    """Key parts of one evaluated chunk (its real rows, not the padding)."""
    m = chunk.hi - chunk.lo
    return {"kind": "fitbridge.evaluate", "problem": problem.spec_hash(),
            "precision": settings.precision, "grad": settings.grad,
            "observables": list(settings.observables), "x": digest(chunk.x[:m]),
            "index": digest(chunk.index[:m]) if problem._k < 0 else None}


def pack(out: dict) -> dict[str, np.ndarray]:
    """A chunk result ``{fun, jac, aux, obs}`` as flat npz arrays."""
    flat = {"fun": out["fun"]}
    if out["jac"] is not None:
        flat["jac"] = out["jac"]
    flat.update({f"aux.{k}": v for k, v in out["aux"].items()})
    flat.update({f"obs.{k}": v for k, v in out["obs"].items()})
    return flat


def unpack(flat: Mapping[str, np.ndarray]) -> dict:
    """Inverse of :func:`pack`."""
    return {"fun": flat["fun"], "jac": flat.get("jac"),
            "aux": {k[4:]: v for k, v in flat.items() if k.startswith("aux.")},
            "obs": {k[4:]: v for k, v in flat.items() if k.startswith("obs.")}}
