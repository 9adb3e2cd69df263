"""FC, FCD and loss functions: plain ``(sim, target) -> scalar`` functions, composable with
:func:`combine`. See :mod:`fitbridge._observe`."""

from ._observe import (LOSSES, combine, corr, fc, fcd, fisher_z, get_loss, ks_distance, ks_fcd,
                       one_minus_corr, rmse, upper)

__all__ = ["LOSSES", "combine", "corr", "fc", "fcd", "fisher_z", "get_loss", "ks_distance", "ks_fcd",
           "one_minus_corr", "rmse", "upper"]
