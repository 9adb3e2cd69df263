"""The results folder of a command: spec copy, manifest, tables, JSON, arrays and figures.

Layout (``results/<spec-name>-<hash8>/`` by default)::

    spec.yaml        the canonical spec that ran (defaults filled in, absolute data paths;
                     ``fitbridge run spec.yaml`` repeats the run, with the same hash)
    manifest.json    command, spec hash, seed, package versions, data file digests, wall time,
                     every file written
    *.csv            tables (also *.parquet when pyarrow is importable)
    *.json, *.npy    fitted parameters, summaries, arrays (never pickled)
    figures/*.png    when matplotlib is installed

Each file is written atomically (a temporary file, then ``os.replace``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ._files import atomic_write
from ._spec import ExperimentSpec, _digest, _paths, dump_yaml, resolve_path, spec_hash

__all__ = ["ResultsFolder", "default_out", "jsonable", "PACKAGES"]

PACKAGES = ("fitbridge", "jax", "jaxlib", "numpy", "scipy", "pandas", "cma", "nevergrad", "optax",
            "matplotlib", "pyyaml")


def default_out(spec: ExperimentSpec) -> Path:
    """``results/<spec name>-<first 8 hex digits of the spec hash>`` (relative to the cwd)."""
    return Path("results") / f"{spec.name}-{spec_hash(spec)[:8]}"


def jsonable(value):
    """Plain JSON values: arrays -> lists, NumPy scalars -> Python, NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


class ResultsFolder:
    """Collects a command's outputs in ``path``; :meth:`finish` writes spec and manifest."""

    def __init__(self, path: str | os.PathLike | None, spec: ExperimentSpec, *, command: str,
                 argv: list[str] | None = None, quick: bool = False):
        self.spec, self.command, self.hash = spec, command, spec_hash(spec)
        self.path = Path(path) if path is not None else default_out(spec)
        self.path.mkdir(parents=True, exist_ok=True)
        self.files: list[str] = []
        self.notes: list[str] = []
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._t0 = time.perf_counter()
        self.argv, self.quick = list(argv) if argv is not None else None, bool(quick)

    # ------------------------------------------------------------------ writers
    def _atomic(self, name: str, write: Callable[[str], None]) -> Path:
        target = atomic_write(self.path / name, write)
        if name not in self.files:
            self.files.append(name)
        return target

    def text(self, name: str, content: str) -> Path:
        return self._atomic(name, lambda t: Path(t).write_text(content, encoding="utf-8"))

    def json(self, name: str, obj) -> Path:
        return self.text(name, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")

    def array(self, name: str, arr) -> Path:
        def write(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(arr), allow_pickle=False)

        return self._atomic(name, write)

    def table(self, name: str, frame: pd.DataFrame) -> Path:
        """``name.csv`` (floats round-trip exactly), and ``name.parquet`` with pyarrow."""
        plain = frame[[c for c in frame.columns if not _is_array_column(frame[c])]]
        path = self._atomic(f"{name}.csv", lambda t: plain.to_csv(t, index=False))
        if importlib.util.find_spec("pyarrow") is not None:
            self._atomic(f"{name}.parquet", lambda t: plain.to_parquet(t, index=False))
        return path

    def figure(self, name: str, draw: Callable, *args, **kwargs) -> Path | None:
        """Draw ``draw(*args, path=..., **kwargs)`` into ``figures/name.png``; skipped (with a
        note in the manifest) when matplotlib is not installed."""
        if importlib.util.find_spec("matplotlib") is None:
            note = "figures skipped: matplotlib is not installed (pip install 'fitbridge[plots]')"
            if note not in self.notes:
                self.notes.append(note)
            return None
        return self._atomic(f"figures/{name}.png", lambda t: _save_png(draw, t, args, kwargs))

    # ------------------------------------------------------------------ finish
    def finish(self, **extra) -> dict:
        """Write ``spec.yaml`` and ``manifest.json``; return the manifest."""
        self.text("spec.yaml", f"# canonical spec of this run (hash {self.hash})\n"
                  + dump_yaml(self.spec, absolute_paths=True))
        wall = time.perf_counter() - self._t0
        manifest = {
            "command": self.command, "argv": self.argv, "spec_name": self.spec.name,
            "spec_hash": self.hash, "seed": self.spec.execution.seed, "quick": self.quick,
            "started": self.started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_time_s": wall, "packages": _versions(), "python": platform.python_version(),
            "platform": platform.platform(), "executable": sys.executable,
            "data_files": {str(resolve_path(self.spec, p)): _digest(resolve_path(self.spec, p))
                           for _, p in _paths(self.spec)},
            "execution": {"precision": self.spec.execution.precision, "workers": self.spec.execution.workers,
                          "dask_address": self.spec.execution.dask_address,
                          "acted_on": "precision, workers and dask_address apply to the exploration"},
            "notes": self.notes, **extra,
        }
        manifest["files"] = sorted({*self.files, "manifest.json"})
        self.json("manifest.json", manifest)
        return manifest


def _is_array_column(col: pd.Series) -> bool:
    return col.dtype == object and len(col) > 0 and isinstance(col.iloc[0], (np.ndarray, list))


def _save_png(draw, tmp, args, kwargs):
    fig = draw(*args, **kwargs)
    fig.savefig(tmp, dpi=110, format="png")
