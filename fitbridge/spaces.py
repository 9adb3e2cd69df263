"""Sets of points over named parameters: ``grid`` (``product``), ``zip``, ``random``, ``sobol``,
``lhs``. See :mod:`fitbridge._spaces` for the naming rules (``G``, ``w``, ``w[3]``)."""

from ._spaces import (SAMPLERS, Space, as_space, grid, lhs, product, random, register_sampler,
                      sobol, zip)

__all__ = ["SAMPLERS", "Space", "as_space", "grid", "lhs", "product", "random",
           "register_sampler", "sobol", "zip"]
