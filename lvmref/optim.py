r"""Optimisers: Adam (Kingma & Ba 2015) on a dict of parameter arrays.

The update, per entry of every parameter array, at step :math:`t = 1, 2, \dots`
(``torch.optim.Adam`` without weight decay or amsgrad, up to rounding):

.. math::

   m &\leftarrow \beta_1 m + (1 - \beta_1)\, g, \qquad
   v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2,                                 \\
   \theta &\leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\,
        \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

with :math:`g` the gradient of the loss being *minimised*. One fused pass per array runs
it (:func:`lvmref.kernels.optim.adam_update`, a Numba kernel with a NumPy twin; the VAE's
allocation-free training step, :mod:`lvmref.vae_training`, calls the same kernel on one
flat parameter vector).
"""

from __future__ import annotations

import numpy as np

from .kernels.checks import as_float_array, check_positive_float, check_real
from .kernels.fpenv import benign_underflow
from .kernels.optim import adam_update

__all__ = ["Adam"]


@benign_underflow
class Adam:
    """Adam, updating a parameter dict in place (update rule in the module docstring).

    Parameters
    ----------
    params : dict of str -> ndarray
        Updated in place by :meth:`step` (writeable C-contiguous float64 arrays; the
        caller's dict -- pass a copy to keep yours).
    lr : float
        Step size eta (> 0). May be changed between steps (a schedule).
    beta1, beta2 : float
        Decay rates of the moment estimates, in [0, 1).
    eps : float
        Added to the denominator, > 0 (the epsilon of the update rule; not a noise array).

    Attributes
    ----------
    m, v : dict of str -> ndarray
        First and second moment estimates, same keys and shapes as ``params``.
    t : int
        Number of steps taken.
    """

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr = check_positive_float(lr, "lr")
        self.beta1, self.beta2 = check_real(beta1, "beta1"), check_real(beta2, "beta2")
        self.eps = check_positive_float(eps, "eps")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"beta1, beta2 must be in [0, 1), got {beta1}, {beta2}")
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of str -> array, got {type(params).__name__}")
        for k, v in params.items():
            if not (isinstance(v, np.ndarray) and v.dtype == np.float64
                    and v.flags.c_contiguous and v.flags.writeable):
                raise TypeError(f"params[{k!r}] must be a writeable C-contiguous float64 array")
        self.params = params
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads, sign=1.0):
        """One update with ``sign * grads`` as the gradient of the loss being minimised.

        Parameters
        ----------
        grads : dict of str -> ndarray
            Keys and shapes of ``params`` (a subset of the keys is allowed).
        sign : float
            ``-1`` takes an ascent gradient (e.g. of the ELBO).
        """
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of str -> array, got {type(grads).__name__}")
        unknown = [k for k in grads if k not in self.params]
        if unknown:
            raise ValueError(f"grads has keys that are not in params: {unknown}")
        sign = check_real(sign, "sign")
        # validate every gradient before any parameter moves (all or nothing)
        checked = {k: np.ascontiguousarray(as_float_array(
            g, f"grads[{k!r}]", shape=self.params[k].shape, allow_empty=True, copy=False))
            for k, g in grads.items()}
        self.t += 1
        bc1 = 1.0 - self.beta1**self.t
        bc2_sqrt = float(np.sqrt(1.0 - self.beta2**self.t))
        for k, g in checked.items():
            adam_update(self.params[k].reshape(-1), g.reshape(-1), self.m[k].reshape(-1),
                        self.v[k].reshape(-1), float(sign), self.lr, self.beta1, self.beta2,
                        self.eps, bc1, bc2_sqrt)
