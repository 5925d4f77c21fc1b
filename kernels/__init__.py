"""lvmref.kernels — numerical kernels (Numba-jitted) with plain-NumPy twins.

Installed as ``lvmref.kernels`` (from the repository's top-level ``kernels/``
folder via setup.cfg ``package_dir``). Imports only numpy, scipy and numba.

Public functions validate their input, compute in float64 and never mutate
arguments. The ``*_np`` twins in :mod:`lvmref.kernels._twins` are the readable
references; tests assert the jitted kernels agree with them.

Floating-point contract (:mod:`lvmref.kernels.fpenv`, for all of lvmref): under a
caller's ``np.errstate(all="raise")`` valid input never raises ``FloatingPointError`` on
any CPU -- benign underflow is ignored inside (NumPy's AVX2 and AVX-512 paths differ in
which flags they raise), results beyond float64 are returned as the correctly rounded
+-inf, and finite input never produces NaN.
"""

from __future__ import annotations

from ._api import (
    bernoulli_log_prob,
    bernoulli_logit_grad,
    elbo_iwae,
    kl_normal_std,
    log_mean_exp,
    log_sigmoid,
    log_softmax,
    logsumexp,
    normal_log_prob_diag,
    softplus,
)

__all__ = [
    "logsumexp",
    "log_mean_exp",
    "log_softmax",
    "softplus",
    "log_sigmoid",
    "bernoulli_log_prob",
    "bernoulli_logit_grad",
    "normal_log_prob_diag",
    "kl_normal_std",
    "elbo_iwae",
]
