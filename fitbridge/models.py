"""Neural mass models: pure vector fields with frozen parameter pytrees.

See :mod:`fitbridge._models` for the equations, units and references.
"""

from ._models import MODELS, ReducedWongWang, WilsonCowan, WongWangEIB, WongWangExcInh, safe_h

__all__ = ["MODELS", "ReducedWongWang", "WongWangExcInh", "WongWangEIB", "WilsonCowan", "safe_h"]
