"""lvmref.kernels — numerical kernels (Numba-jitted) with plain-NumPy twins.

Installed as ``lvmref.kernels`` (from the repository's top-level ``kernels/`` folder via
setup.cfg ``package_dir``). Imports only numpy, scipy and numba; everything else in
lvmref builds on it.

Modules
-------
- ``lse``         log-sum-exp, log-mean-exp, log-softmax (max-split form), streaming lse
- ``densities``   sigmoid family, Bernoulli / diagonal-Gaussian log-densities and their
                  gradients, the Gaussian KL, per-row ELBO / IWAE from log-densities
- ``fastexp``     the vectorizable exponential the log-sum-exp kernels use (error bound)
- ``gmm``, ``estimators``, ``helmholtz``, ``vae``, ``optim``
                  the hot loops of the model modules of the same names (and of Adam)
- ``checks``      the input validation every public entry point of lvmref uses
- ``dispatch``    the one rule for choosing a Numba kernel or its twin
- ``fpenv``       the floating-point contract
- ``constants``   ``LOG_2PI`` and friends, defined once

Naming rule: ``foo`` public (validating) function or dispatcher, ``foo_nb`` the jitted
kernel, ``foo_np`` its NumPy twin, side by side in one module; the tests assert they agree,
and the twin is what runs under ``NUMBA_DISABLE_JIT=1``. One exception: the online
Helmholtz kernels (``kernels.helmholtz``) have no ``_np`` twin here, because their NumPy
reference is the model module's own update, :func:`lvmref.helmholtz.sgd_update` (a third,
flat-buffer NumPy copy would only repeat it); the tests assert the two agree.

Floating-point contract (:mod:`lvmref.kernels.fpenv`, for all of lvmref): under a
caller's ``np.errstate(all="raise")`` valid input never raises ``FloatingPointError`` on
any CPU -- benign underflow is ignored inside (NumPy's AVX2 and AVX-512 paths differ in
which flags they raise), results beyond float64 are returned as the correctly rounded
+-inf, and finite input never produces NaN.
"""

from __future__ import annotations

from .constants import LOG_2PI
from .densities import (
    bernoulli_log_prob,
    bernoulli_logit_grad,
    elbo_iwae,
    expm1_minus_x,
    kl_normal_std,
    log_sigmoid,
    normal_log_prob_diag,
    sigmoid,
    softplus,
)
from .lse import log_mean_exp, log_softmax, logsumexp

__all__ = [
    "LOG_2PI",
    "logsumexp",
    "log_mean_exp",
    "log_softmax",
    "sigmoid",
    "softplus",
    "log_sigmoid",
    "bernoulli_log_prob",
    "bernoulli_logit_grad",
    "normal_log_prob_diag",
    "expm1_minus_x",
    "kl_normal_std",
    "elbo_iwae",
]
