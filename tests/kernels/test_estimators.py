"""lvmref.kernels.estimators: exact log p(x) of a one-layer sigmoid belief net, the fused
Gray-code kernel and its chunked BLAS twin against a brute-force sum over every z."""

import itertools

import numba
import numpy as np
import pytest
from scipy.special import log_expit, logsumexp

from lvmref.kernels.estimators import sbn_log_marginal, sbn_log_marginal_nb, sbn_log_marginal_np


def _brute(x, a, W, b):
    """log sum_z p(z) p(x | z), each term an explicit sum of log-sigmoids (SciPy)."""
    K = a.shape[0]
    terms = []
    for bits in itertools.product([0.0, 1.0], repeat=K):
        z = np.array(bits)
        lz = np.sum(np.where(z == 1, log_expit(a), log_expit(-a)))
        lg = z @ W + b
        terms.append(lz + np.sum(np.where(x == 1, log_expit(lg), log_expit(-lg)), axis=1))
    return logsumexp(np.stack(terms, axis=1), axis=1)


@pytest.mark.parametrize(("K", "D", "n", "scale"), [(1, 3, 2, 1.0), (3, 4, 3, 2.0),
                                                    (6, 5, 4, 1.0), (10, 3, 2, 0.5),
                                                    (5, 4, 2, 300.0)])
def test_kernel_and_twin_equal_brute_force(K, D, n, scale):
    rng = np.random.default_rng(K * 100 + D)
    a, W, b = (scale * rng.standard_normal(s) for s in ((K,), (K, D), (D,)))
    x = (rng.random((n, D)) < 0.5).astype(float)
    with np.errstate(under="ignore"):
        ref = _brute(x, a, W, b)
    # 1e-12 absolute: the Gray walk adds up to 15 incremental updates of the logits
    # between fresh starts (kernel docstring); values are O(1..1e3)
    tol = 1e-12 * max(1.0, np.max(np.abs(ref)))
    if not numba.config.DISABLE_JIT:
        np.testing.assert_allclose(sbn_log_marginal_nb(x, a, W, b), ref, rtol=0, atol=tol)
    for cs in (None, 1, 3):
        np.testing.assert_allclose(sbn_log_marginal_np(x, a, W, b, cs), ref, rtol=0, atol=tol)
    np.testing.assert_allclose(sbn_log_marginal(x, a, W, b), ref, rtol=0, atol=tol)
