"""Numerical constants shared by lvmref (each defined once)."""

import math

__all__ = ["LOG_2PI", "EPS"]

#: log(2 pi), the normalising constant of the Gaussian log-density.
LOG_2PI = math.log(2.0 * math.pi)
#: float64 machine epsilon, 2**-52.
EPS = 2.0**-52
