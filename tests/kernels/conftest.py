"""Kernel tests: compile (or load from the cache) every kernel once per session."""

import numpy as np
import pytest

import lvmref.kernels as K
from lvmref.kernels import densities as D
from lvmref.kernels import fastexp as F
from lvmref.kernels import lse as L


@pytest.fixture(scope="session", autouse=True)
def _warm_kernels():
    """Compile (or load from cache) every kernel once before the timed-by-nobody tests."""
    a = np.arange(12.0).reshape(3, 4)
    with np.errstate(under="ignore"):
        K.logsumexp(a, axis=1)
        K.log_mean_exp(a)
        K.log_softmax(a)
        K.softplus(a)
        K.log_sigmoid(a)
        K.bernoulli_log_prob(a / 11, a)
        K.bernoulli_log_prob(a / 11, a, reduce=False)
        K.bernoulli_logit_grad(a / 11, a)
        K.normal_log_prob_diag(a, a, a)
        K.normal_log_prob_diag(a, a, a, reduce=False)
        K.kl_normal_std(a, a)
        K.elbo_iwae(a, a, a)
        F.exp_nonpos_array_nb(-a.ravel())
        L.lse_parts_nb(a)
        # jitted building blocks not used by the public wrappers
        D.softplus_nb(a.ravel())
        D.log_sigmoid_nb(a.ravel())
        D.bernoulli_log_prob_rows_nb(a / 11, a)
        D.bernoulli_log_prob_elem_nb(a / 11, a)
        D.kl_normal_std_rows_nb(a, a)
