"""Error types and the one helper every validator uses.

Every message follows one shape: what was expected, what came in, how to fix it.
Validation happens eagerly, when objects are built, never inside jit.
"""

from __future__ import annotations

__all__ = ["FitbridgeError", "ConfigError", "fail"]


class FitbridgeError(Exception):
    """Base class of every error fitbridge raises on purpose."""


class ConfigError(FitbridgeError, ValueError):
    """Bad input: a wrong shape, name, value or file, caught before anything compiles."""


def fail(where: str, expected: str, got: object, fix: str) -> None:
    """Raise a `ConfigError` in the project's standard three-part form.

    Examples
    --------
    >>> fail("Network.weights", "a square (n, n) matrix", "shape (3, 4)", "pass W[target, source]")
    Traceback (most recent call last):
    ...
    fitbridge._errors.ConfigError: Network.weights: expected a square (n, n) matrix, got shape (3, 4). Fix: pass W[target, source].
    """
    raise ConfigError(f"{where}: expected {expected}, got {got}. Fix: {fix}.")
