"""Optimizer backends behind ``fitbridge.minimize``: a registry with capability flags.

Importing this package registers every backend; the optional libraries themselves (scipy,
cma, nevergrad, optax) are imported only inside each backend's ``run``.

Examples
--------
>>> from fitbridge import backends
>>> backends.get("scipy:L-BFGS-B").needs_jac
True
>>> "cma" in [info.name for info in backends.available()]
True
"""

from __future__ import annotations

from ._registry import (
    BackendInfo,
    BackendOutcome,
    available,
    get,
    incompatibility,
    register,
    register_family,
)

# Modules that register backends when imported (keep in sync with the files in this folder).
from . import _scipy  # noqa: E402,F401  isort: skip
from . import _cma  # noqa: E402,F401  isort: skip
from . import _nevergrad  # noqa: E402,F401  isort: skip
from . import _optax  # noqa: E402,F401  isort: skip

__all__ = [
    "BackendInfo",
    "BackendOutcome",
    "available",
    "get",
    "incompatibility",
    "register",
    "register_family",
]
