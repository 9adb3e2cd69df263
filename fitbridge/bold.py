"""BOLD observation models: HRF convolution (Volterra, Gamma) and the Balloon-Windkessel ODE.

See :mod:`fitbridge._bold` for the equations and the conventions relative to TVB.
"""

from ._bold import HRF, BalloonWindkessel, GammaHRF, strided_convolution

__all__ = ["HRF", "GammaHRF", "BalloonWindkessel", "strided_convolution"]
