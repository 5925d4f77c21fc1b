"""The fused Adam update (Kingma & Ba 2015) over a flat parameter vector.

``adam_update_nb`` is one fused pass of Adam over a flat parameter vector; its twin
``adam_update_np`` does the same arithmetic with NumPy array
operations. Both update ``theta``, ``m`` and ``v`` in place (the caller owns them; they
are the training workspace, not user input). Arithmetic per entry (``torch.optim.Adam``
without weight decay or amsgrad, up to rounding)::

    g  = sign * grad
    m  = beta1 * m + (1 - beta1) * g
    v  = beta2 * v + (1 - beta2) * g * g
    theta -= (lr / bc1) * m / (sqrt(v) * (1 / bc2_sqrt) + eps)

with ``bc1 = 1 - beta1**t`` and ``bc2_sqrt = sqrt(1 - beta2**t)`` (``torch.optim.Adam``
divides by ``bc2_sqrt`` instead of multiplying by its inverse: the same up to rounding;
one division per entry less makes the loop about twice as fast). ``sign = -1`` turns an
ascent gradient (of the ELBO) into the loss gradient. fastmath is off and the order of
operations is the same, so kernel and twin agree to rounding (a test checks 1e-15).

:func:`adam_update` dispatches (kernel, or the twin under ``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dispatch import pick
from .fpenv import benign_underflow

__all__ = ["adam_update", "adam_update_nb", "adam_update_np"]


@njit(cache=True, error_model="numpy")  # no zero-division branch, so the loop vectorizes
def adam_update_nb(theta, grad, m, v, sign, lr, beta1, beta2, eps, bc1, bc2_sqrt):
    """Fused in-place Adam step over 1-D float64 arrays of equal length (see module)."""
    step = lr / bc1
    inv_bc2 = 1.0 / bc2_sqrt
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    for i in range(theta.shape[0]):
        g = sign * grad[i]
        mi = beta1 * m[i] + c1 * g
        vi = beta2 * v[i] + c2 * (g * g)
        m[i] = mi
        v[i] = vi
        theta[i] -= step * (mi / (np.sqrt(vi) * inv_bc2 + eps))


@benign_underflow
def adam_update_np(theta, grad, m, v, sign, lr, beta1, beta2, eps, bc1, bc2_sqrt):
    """NumPy twin of :func:`adam_update_nb` (same arithmetic, array operations)."""
    g = sign * grad
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    theta -= (lr / bc1) * (m / (np.sqrt(v) * (1.0 / bc2_sqrt) + eps))


def adam_update(theta, grad, m, v, sign, lr, beta1, beta2, eps, bc1, bc2_sqrt):
    """One in-place Adam step on 1-D float64 arrays of equal length (kernel or twin)."""
    pick(adam_update_nb, adam_update_np)(theta, grad, m, v, sign, lr, beta1, beta2, eps, bc1,
                                         bc2_sqrt)
