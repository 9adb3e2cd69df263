"""Progress bars for long batches: tqdm when wanted, a silent stand-in otherwise.

``progress=None`` (the default everywhere) shows a bar only when stderr is an interactive
terminal and tqdm is installed, so scripts, CI logs and cluster jobs stay clean;
``progress=True`` forces one (tqdm is then required), ``progress=False`` never shows one.
"""

from __future__ import annotations

import sys

from ._errors import fail

__all__ = ["progress_bar", "wants_progress"]


class _Silent:
    """The no-op bar: the same ``update``/``close`` methods, and a context manager."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wants_progress(progress: bool | None) -> bool:
    """Resolve the ``progress`` argument: None means "only on an interactive stderr"."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not isinstance(progress, bool):
        fail("progress", "True, False or None (automatic)", repr(progress),
             "pass progress=True to force a bar")
    return progress


def progress_bar(total: int, *, progress: bool | None = None, desc: str = "", unit: str = "pt"):
    """A tqdm bar over ``total`` items, or a silent stand-in.

    Parameters
    ----------
    total : int
        Number of items (points) the bar counts to.
    progress : bool or None
        None: a bar only when stderr is a terminal and tqdm is importable. True: always (needs
        tqdm). False: never.
    desc, unit : str
        Label and unit of the bar.

    Examples
    --------
    >>> with progress_bar(10, progress=False) as bar:
    ...     bar.update(10)
    """
    forced = progress is True
    if not wants_progress(progress):
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if forced:
            fail("progress=True", "the tqdm package", "ImportError",
                 "pip install 'fitbridge[progress]', or pass progress=None")
        return _Silent()
    return tqdm(total=total, desc=desc or None, unit=unit, leave=False, file=sys.stderr,
                dynamic_ncols=True)
