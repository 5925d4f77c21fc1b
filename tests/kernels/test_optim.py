"""The fused Adam kernel of lvmref.kernels.optim, its NumPy twin and its dispatcher."""

import numpy as np

from lvmref.kernels.optim import adam_update, adam_update_nb, adam_update_np


def test_adam_kernel_matches_twin_and_textbook():
    rng = np.random.default_rng(17)
    theta0 = rng.normal(size=50)
    a = [theta0.copy(), np.zeros(50), np.zeros(50)]
    b = [theta0.copy(), np.zeros(50), np.zeros(50)]
    c = [theta0.copy(), np.zeros(50), np.zeros(50)]
    # textbook Adam (Kingma & Ba 2015, Algorithm 1), written independently
    th, m, v = theta0.copy(), np.zeros(50), np.zeros(50)
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    for t in range(1, 6):
        g = rng.normal(size=50)
        bc1, bc2s = 1 - b1**t, np.sqrt(1 - b2**t)
        adam_update_nb(a[0], g, a[1], a[2], -1.0, lr, b1, b2, eps, bc1, bc2s)
        adam_update_np(b[0], g, b[1], b[2], -1.0, lr, b1, b2, eps, bc1, bc2s)
        adam_update(c[0], g, c[1], c[2], -1.0, lr, b1, b2, eps, bc1, bc2s)
        m = b1 * m + (1 - b1) * (-g)
        v = b2 * v + (1 - b2) * g**2
        th = th - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-15, atol=0)
    np.testing.assert_allclose(a[1:], b[1:], rtol=1e-15, atol=0)
    np.testing.assert_allclose(a[0], th, rtol=1e-13)
    # the dispatcher runs the kernel (or, without JIT, the twin): one of the two exactly
    assert np.array_equal(c[0], a[0]) or np.array_equal(c[0], b[0])
