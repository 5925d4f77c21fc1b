"""lvmref — a NumPy reference implementation of latent variable models.

Submodules: ``lvmref.kernels`` (Numba kernels with NumPy twins), ``lvmref.nn``
(MLP with hand-derived backprop), ``lvmref.testing`` (gradient checker).
"""

__version__ = "0.1.0"
