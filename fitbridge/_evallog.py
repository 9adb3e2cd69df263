"""A durable, append-only log of evaluations (JSON lines) and what resuming needs from it.

File layout (UTF-8, one JSON object per line, never pickle)::

    {"fitbridge_log": 1, "manifest": {...}}                       # header: method, seed, hash ...
    {"eval": 0, "x": [...], "fun": 0.41, "loss": 0.41, "penalised": false, "jac": null,
     "aux": {"fc_r": 0.59}, "time": 0.012}
    ...

``fun`` is what the optimizer saw (the penalty for a non-finite loss), ``loss`` the raw value
(``null`` when it was not finite), ``jac`` the gradient the optimizer saw (``null`` when none
was computed). Floats are written with ``repr`` precision, so reading them back gives the
identical bits; non-finite floats are written as ``null``. Every row is flushed and fsynced
as it is written, so a crash loses at most the row being written; a torn last line is ignored
when reading and cut off before appending. A new log appears with its complete header line in
one step (a hard link of a finished temporary file), never as an empty or half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ._errors import fail

__all__ = ["LOG_VERSION", "EvalLog", "read_log", "check_resumable"]

LOG_VERSION = 1
# manifest fields that must agree for a log to be resumed (the budget may change)
RESUME_KEYS = ("problem_hash", "method", "seed", "names", "x0", "options", "penalty")


def _finite_or_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def encode_row(row: dict) -> str:
    """One evaluation -> one JSON line (without the newline)."""
    out = {
        "eval": int(row["eval"]),
        "x": [float(v) for v in row["x"]],
        "fun": _finite_or_none(row["fun"]),
        "loss": _finite_or_none(row["loss"]),
        "penalised": bool(row["penalised"]),
        "jac": None if row.get("jac") is None else [_finite_or_none(v) for v in row["jac"]],
        "aux": {k: _finite_or_none(v) for k, v in row.get("aux", {}).items()},
        "time": float(row.get("time", 0.0)),
    }
    return json.dumps(out, allow_nan=False)


def decode_row(line: str) -> dict:
    """Inverse of :func:`encode_row` (``null`` floats come back as NaN)."""
    raw = json.loads(line)
    nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
    return {
        "eval": int(raw["eval"]),
        "x": np.asarray(raw["x"], dtype=np.float64),
        "fun": nan(raw["fun"]),
        "loss": nan(raw["loss"]),
        "penalised": bool(raw["penalised"]),
        "jac": None if raw["jac"] is None else np.asarray([nan(v) for v in raw["jac"]]),
        "aux": {k: nan(v) for k, v in raw["aux"].items()},
        "time": float(raw["time"]),
    }


def _complete_lines(path: Path) -> tuple[list[str], int]:
    """Lines that end with a newline, and the byte length they cover."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8").splitlines(), end


def read_log(path) -> tuple[dict, list[dict]]:
    """Read a log: ``(header manifest, rows in evaluation order)``; a torn last line is ignored."""
    path = Path(path)
    if not path.is_file():
        fail(
            "minimize(resume=...)",
            "an existing fitbridge log file",
            f"{str(path)!r} (missing)",
            "pass the path given as log= in the interrupted run",
        )
    lines, _ = _complete_lines(path)
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header.get("fitbridge_log") != LOG_VERSION:
        fail(
            "minimize(resume=...)",
            f"a fitbridge log (version {LOG_VERSION}) header line",
            repr(lines[0][:80]) if lines else "an empty file",
            "pass a file written with log=",
        )
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            rows.append(decode_row(line))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            fail(
                "minimize(resume=...)",
                "well-formed evaluation rows",
                f"line {n}: {err}",
                "repair or truncate the log before that line",
            )
        if rows[-1]["eval"] != len(rows) - 1:
            fail(
                "minimize(resume=...)",
                "consecutive evaluation indices",
                f"line {n}: eval {rows[-1]['eval']} after {len(rows) - 1} rows",
                "use an unedited log",
            )
    return header["manifest"], rows


def check_resumable(logged: dict, current: dict) -> None:
    """Raise a ConfigError naming the first manifest field that differs."""
    for key in RESUME_KEYS:
        if json.dumps(logged.get(key), sort_keys=True, default=repr) != json.dumps(
            current.get(key), sort_keys=True, default=repr
        ):
            fail(
                "minimize(resume=...)",
                f"the logged run's {key} {logged.get(key)!r}",
                repr(current.get(key)),
                f"resume with the same {key} as the logged run (or start a new log)",
            )


def _create_with(path: Path, first: bytes) -> None:
    """Create ``path`` holding ``first`` (fsynced) in one step: a killed run leaves either no
    file or a file with its complete header line, and an existing file is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(first)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and raises FileExistsError instead of replacing
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive create, then write
            with open(path, "xb") as fh:
                fh.write(first)
                fh.flush()
                os.fsync(fh.fileno())
    except FileExistsError:
        fail(
            "minimize(log=...)",
            "a new file path",
            f"{str(path)!r} (already exists)",
            "choose a new path, delete the old log, or continue it with resume=path",
        )
    finally:
        Path(tmp).unlink(missing_ok=True)


class EvalLog:
    """Append rows to a log file, flushing and fsyncing each one.

    ``EvalLog(path, manifest)`` starts a new file (refusing to overwrite one);
    ``EvalLog(path, manifest, append=True)`` continues an existing log after cutting a torn line.
    """

    def __init__(self, path, manifest: dict, *, append: bool = False):
        self.path = Path(path)
        if append:
            _, end = _complete_lines(self.path)
            self._fh = open(self.path, "r+b")  # noqa: SIM115 (closed in close())
            self._fh.truncate(end)
            self._fh.seek(end)
        else:
            header = json.dumps(
                {"fitbridge_log": LOG_VERSION, "manifest": manifest}, sort_keys=True, default=repr
            )
            _create_with(self.path, header.encode("utf-8") + b"\n")
            self._fh = open(self.path, "r+b")  # noqa: SIM115 (closed in close())
            self._fh.seek(0, os.SEEK_END)

    def _write_line(self, text: str) -> None:
        self._fh.write(text.encode("utf-8") + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, row: dict) -> None:
        """Append one evaluation row (see the module docstring for its fields)."""
        self._write_line(encode_row(row))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
