"""``explore``: evaluate a space of points and return one DataFrame row per point; save/load.

The frame has the swept parameter columns (``G``, ``w`` or ``w[3]`` ...), ``loss``, the loss's
aux values (``fc_r``), and the requested observables: scalars as columns, arrays (``fc``,
``bold_std`` ...) as a column of NumPy arrays. ``frame.attrs["fitbridge"]`` records the
problem's ``spec_hash``, ``names``, the ``base`` vector of what was not swept, the space,
precision, backend, wall time and package versions, so ``X`` can be rebuilt from the frame
(:func:`points_of`).

Files: :func:`save` writes the scalar columns as Parquet when pyarrow is importable (else
CSV, in ``repr`` precision: floats round-trip exactly), array columns to ``<file>.npz`` and
the attrs to ``<file>.json``; each file atomically (temporary file, then ``os.replace``).
Nothing is pickled. :func:`load` reads the three back.

Resuming: with ``save_to=``, every evaluated chunk is kept in ``<file>.chunks/`` as it
finishes (a :class:`~fitbridge.Cache` folder: atomic, content-addressed entries), and the
folder is removed once the frame is saved. After an interruption (Ctrl-C, a killed process, a
lost worker) the same call with ``resume=True`` evaluates only the chunks that are missing and
returns the frame an uninterrupted run returns (``attrs["fitbridge"]["computed"]`` and
``["reused"]`` count the points). A ``cache=`` of your own plays the same role.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._cache import Cache
from ._errors import fail
from ._files import atomic_write
from ._evaluate import evaluate
from ._spaces import Space, _base, _resolve, as_space

__all__ = ["explore", "save", "load", "points_of"]


def explore(problem, space: Space | dict, *, base=None, save_to=None, resume: bool = False,
            **options) -> pd.DataFrame:
    """Evaluate every point of ``space`` and return one row per point.

    Parameters
    ----------
    problem : Problem
        E.g. an ``FCProblem``.
    space : Space or dict
        A :mod:`fitbridge.spaces` space, or ``{name: values}`` meaning their product grid
        (first name slowest), e.g. ``{"G": np.linspace(0, 3, 16), "w": np.linspace(0, 1, 16)}``.
    base : array (d,) or dict, optional
        Values of what is not swept (default ``problem.x0``).
    save_to : path, optional
        Also :func:`save` the frame there. Finished chunks are kept in ``<file>.chunks/`` until
        then, so an interrupted call can be resumed (module docstring).
    resume : bool
        Reuse the chunks that an interrupted call with the same ``save_to`` kept, evaluating
        only the missing ones. Without it, a leftover ``<file>.chunks/`` is an error.
    **options
        Any keyword of :func:`fitbridge.evaluate`: ``precision``, ``observables``,
        ``chunk_size``, ``devices``, ``progress``, ``backend``, ``n_jobs``, ``scheduler``,
        ``recipe``, ``cache``, ``redo`` ...

    Returns
    -------
    pandas.DataFrame
        Parameter columns, ``loss``, aux columns (``fc_r``), observables; ``attrs["fitbridge"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from fitbridge import Free, Problem
    >>> p = Problem(lambda q, key: (q["a"] - 1.0) ** 2 + q["b"], {"a": Free(0.0, bounds=(-2, 2)),
    ...             "b": Free(0.0, bounds=(0, 1))})
    >>> explore(p, {"a": [0.0, 1.0], "b": [0.0, 0.5]})
         a    b  loss
    0  0.0  0.0   1.0
    1  0.0  0.5   1.5
    2  1.0  0.0   0.0
    3  1.0  0.5   0.5
    """
    space = as_space(space)
    X, frame = space.points(problem, base)
    swept = list(frame.columns)
    checkpoint = _checkpoint(save_to, resume, options)
    if checkpoint is not None:
        options["cache"] = Cache(checkpoint, stale="recompute")
    batch = evaluate(problem, X, **options)
    frame["loss"] = batch.fun
    for name, values in batch.aux.items():
        frame[name] = values
    for name, values in batch.observables.items():
        frame[name] = values if values.ndim == 1 else list(values)
    info = batch.info
    frame.attrs["fitbridge"] = {
        "spec_hash": problem.spec_hash(), "names": list(problem.names),
        "base": _base(problem.space, base).tolist(), "parameter_columns": swept,
        "space": repr(space), "precision": info["precision"], "backend": info["backend"],
        "chunk_size": info["chunk_size"], "n_devices": info["n_devices"],
        "wall_time": info["wall_time"], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "computed": info["computed"], "reused": info["cached"],
    }
    if save_to is not None:
        save(frame, save_to)
    if checkpoint is not None:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return frame


def _checkpoint(save_to, resume: bool, options: dict) -> Path | None:
    """The folder keeping finished chunks of a ``save_to`` exploration (None: the user's
    ``cache=`` keeps them, or nothing is saved)."""
    if not isinstance(resume, bool):
        fail("explore(resume=...)", "True or False", repr(resume), "pass resume=True")
    if save_to is None or options.get("cache") is not None:
        if resume and options.get("cache") is None:
            fail("explore(resume=True)", "save_to= (or cache=) of the interrupted call", "neither",
                 "pass the save_to path the interrupted call used")
        return None
    table, _ = _format(Path(save_to), None)
    folder = table.with_name(table.name + ".chunks")
    if folder.exists() and not resume:
        fail("explore(save_to=...)", "no chunks of an interrupted exploration beside the file",
             f"{str(folder)!r} ({len(Cache(folder))} chunks kept)",
             "pass resume=True to reuse them, or delete the folder to start over")
    return folder


def points_of(frame: pd.DataFrame, problem) -> np.ndarray:
    """Rebuild the ``(n, d)`` matrix of an explored frame (its base plus the swept columns)."""
    meta = frame.attrs.get("fitbridge", {})
    if meta.get("names") != list(problem.names):
        fail("points_of", "a frame explored on a problem with the same names", meta.get("names"),
             "rebuild the problem the frame came from")
    X = np.repeat(np.asarray(meta["base"], float)[None], len(frame), axis=0)
    for col in meta["parameter_columns"]:
        (_, idx), = _resolve(problem.space, col, False)
        X[:, idx] = frame[col].to_numpy(float)[:, None]
    return X


# ------------------------------------------------------------------------------ files
def _format(path: Path, fmt: str | None) -> tuple[Path, str]:
    have_arrow = importlib.util.find_spec("pyarrow") is not None
    fmt = fmt or {".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
    if fmt is None:
        fmt = "parquet" if have_arrow else "csv"
        path = path.with_name(path.name + f".{fmt}")
    if fmt not in ("parquet", "csv"):
        fail("save(format=...)", "'parquet' or 'csv'", repr(fmt), "pass format=None to choose")
    if fmt == "parquet" and not have_arrow:
        fail("save", "pyarrow for a .parquet file", "no pyarrow",
             "pip install pyarrow, or save to a .csv path")
    return path, fmt


def save(frame: pd.DataFrame, path, *, format: str | None = None) -> Path:  # noqa: A002
    """Write an explored frame: the table (Parquet if pyarrow is importable, else CSV), array
    columns to ``<file>.npz``, attrs to ``<file>.json``. Returns the table's path.

    ``path`` ending in ``.parquet`` or ``.csv`` picks the format; otherwise the suffix is added.
    """
    path, fmt = _format(Path(path), format)
    arrays = [c for c in frame.columns if frame[c].dtype == object
              and len(frame) and isinstance(frame[c].iloc[0], np.ndarray)]
    table = frame.drop(columns=arrays)
    if arrays:
        stacked = {c: np.stack(frame[c].to_list()) for c in arrays}
        atomic_write(path.with_name(path.name + ".npz"), lambda t: _savez(t, stacked))
    attrs = {"attrs": frame.attrs, "array_columns": arrays, "columns": list(frame.columns)}
    atomic_write(path.with_name(path.name + ".json"),
            lambda t: Path(t).write_text(json.dumps(attrs, indent=1, default=_jsonable)))
    if fmt == "parquet":
        atomic_write(path, lambda t: table.to_parquet(t, index=False))
    else:
        atomic_write(path, lambda t: table.to_csv(t, index=False, float_format=None))
    return path


def _savez(tmp: str, arrays: dict) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _jsonable(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return repr(value)


def load(path) -> pd.DataFrame:
    """Read a frame written by :func:`save` (table, array columns and attrs)."""
    path = Path(path)
    if not path.exists():
        fail("load", "an existing file written by fitbridge.save", str(path),
             "check the path (save adds .parquet or .csv when the name has no suffix)")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path)
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text()) if side.exists() else {}
    npz = path.with_name(path.name + ".npz")
    if meta.get("array_columns"):
        with np.load(npz, allow_pickle=False) as z:
            for c in meta["array_columns"]:
                frame[c] = list(z[c])
    if meta.get("columns"):
        frame = frame[meta["columns"]]
    frame.attrs.update(meta.get("attrs", {}))
    return frame

