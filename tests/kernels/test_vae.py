"""The fused VAE training kernels of lvmref.kernels.vae against their NumPy twins and
against formulas written out independently (SciPy's expit, textbook KL, Python loops)."""

import numpy as np
import pytest
from scipy.special import expit
from support import (
    C_EXP_LIBM,
    C_EXP_OURS,
    C_EXPM1_ANY_OURS,
    C_LOG1P,
    C_LOG1P_OURS,
    C_TANH_OURS,
    U,
    gamma,
)

from lvmref.kernels.vae import (
    bernoulli_grad,
    bernoulli_grad_nb,
    bernoulli_grad_np,
    kl_grad_analytic,
    kl_grad_analytic_nb,
    kl_grad_analytic_np,
    latent_sample,
    latent_sample_nb,
    latent_sample_np,
    tanh_backward,
    tanh_backward_nb,
    tanh_backward_np,
    tanh_inplace,
    tanh_inplace_nb,
    tanh_inplace_np,
)

# Relative error of one sigmoid entry: ours e = exp(-|l|) (C_EXP_OURS u), then 1 + e, the
# division and e * r (3 u); SciPy's expit / the twin: libm exp (C_EXP_LIBM u) and at most
# the same three roundings. The scale 0.5 or 0.25 is a power of two and, for binary x,
# x * s_neg - (1 - x) * s has one exact zero term.
SIGMOID_RTOL = (C_EXP_OURS + 3 + C_EXP_LIBM + 3) * U


def _ll_tol(x, logits, ours_log1p):
    """|ll_1 - ll_2| for two evaluations of sum(x l - max(l, 0) - log1p(e)): per term, the
    log1p values differ by <= (C_EXP_OURS + C_EXP_LIBM) u + (C_LOG1P_OURS or C_LOG1P) +
    C_LOG1P u relative (exp's error passes through log1p with condition number <= 1);
    each term's two roundings and the summation of n terms (gamma_n, twice) apply to the
    sum of the absolute values."""
    with np.errstate(under="ignore"):
        lg = np.log1p(np.exp(-np.abs(logits)))
    mags = np.abs(x * logits) + np.maximum(logits, 0.0) + lg
    c_log = (C_LOG1P_OURS if ours_log1p else C_LOG1P) + C_LOG1P
    return 1.001 * (float(np.sum(lg)) * (C_EXP_OURS + C_EXP_LIBM + c_log) * U
                    + float(np.sum(mags)) * (4 * U + 2 * gamma(x.size)))


def test_tanh_inplace_matches_twin_within_the_derived_bound():
    rng = np.random.default_rng(31)
    a = np.concatenate([rng.normal(size=500) * 3, [0.0, -0.0, 25.0, -1e300, np.inf, -np.inf]])
    b = a.copy()
    tanh_inplace_nb(b)
    ref = np.tanh(a)  # libm, <= 1 ulp
    np.testing.assert_allclose(b, ref, rtol=1.001 * (C_TANH_OURS + 2) * U, atol=0)
    assert np.array_equal(np.signbit(b), np.signbit(ref))  # -0.0 stays -0.0
    c = a.copy()
    tanh_inplace_np(c)
    np.testing.assert_array_equal(c, ref)
    d = a.copy()
    tanh_inplace(d)
    np.testing.assert_array_equal(d, b)


def test_training_kernels_match_twins():
    rng = np.random.default_rng(33)
    delta, h = rng.normal(size=(7, 5)), np.tanh(rng.normal(size=(7, 5)))
    a, b = delta.copy(), delta.copy()
    tanh_backward_nb(a, h)
    tanh_backward_np(b, h)
    np.testing.assert_allclose(a, delta * (1 - h**2), rtol=1e-15)
    np.testing.assert_array_equal(a, b)
    strided = delta.T.copy().T  # Fortran-ordered input works too
    tanh_backward_nb(strided, h)
    np.testing.assert_array_equal(strided, a)
    # Bernoulli: extreme logits (|l| up to 1e4) must not overflow; compare with scipy
    logits = np.concatenate([rng.normal(size=(3, 6)) * 5, [[-1e4, 1e4, -745.0, 745.0, 0, -0.0]]])
    x = (rng.random(logits.shape) < 0.5).astype(float)
    ga, gb = np.empty_like(x), np.empty_like(x)
    ga_t, gb_t = np.full(x.shape[::-1], np.nan), np.full(x.shape[::-1], np.nan)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        va = bernoulli_grad_nb(x, logits, 0.5, ga, ga_t)
        vb = bernoulli_grad_np(x, logits, 0.5, gb, gb_t)
    np.testing.assert_array_equal(ga_t, ga.T)
    np.testing.assert_array_equal(gb_t, gb.T)
    # independent: log p = x*l - softplus(l) with softplus from np.logaddexp(0, l)
    with np.errstate(under="ignore"):
        ref = float(np.sum(x * logits - np.logaddexp(0.0, logits)))
    assert abs(va - ref) <= _ll_tol(x, logits, True)
    assert abs(vb - ref) <= _ll_tol(x, logits, False)
    # x - sigmoid(l) in its exact form for binary x (SciPy's expit, an independent sigmoid);
    # (the literal difference loses digits wherever sigmoid(l) is close to x)
    exact = np.where(x == 1.0, expit(-logits), -expit(logits))
    with np.errstate(under="ignore"):
        np.testing.assert_allclose(ga, 0.5 * exact, rtol=SIGMOID_RTOL, atol=0)
        np.testing.assert_allclose(gb, 0.5 * exact, rtol=SIGMOID_RTOL, atol=0)
        np.testing.assert_allclose(gb, ga, rtol=SIGMOID_RTOL, atol=0)


def test_kl_kernel_matches_twin_and_formulas():
    rng = np.random.default_rng(36)
    mean, eps, g_z = rng.normal(size=(3, 4, 6))
    log_var = np.concatenate([rng.normal(size=(3, 6)) * 3, [[1e-12, -1e-12, 0, 30, -30, 2]]])
    eps_t = eps.T.copy().T  # strided operands work too
    em1, std = np.expm1(log_var), np.exp(0.5 * log_var)
    sigma = np.sqrt(np.exp(log_var))  # independent form of exp(log_var / 2)
    ga, gb = np.empty((2, 4, 6)), np.empty((2, 4, 6))
    ga_t, gb_t = np.full((6, 8), np.nan), np.full((6, 8), np.nan)
    kla = kl_grad_analytic_nb(mean, log_var, em1, std, eps_t, g_z, 0.25, ga[0], ga[1], ga_t)
    klb = kl_grad_analytic_np(mean, log_var, em1, std, eps_t, g_z, 0.25, gb[0], gb[1], gb_t)
    np.testing.assert_array_equal(ga_t, np.concatenate([ga[0], ga[1]]).T)
    np.testing.assert_array_equal(gb_t, np.concatenate([gb[0], gb[1]]).T)
    # independent: KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - log s^2) / 2, written with
    # sigma (not expm1)
    kl_ref = 0.5 * np.sum(sigma**2 + mean**2 - 1.0 - log_var)
    assert kla == pytest.approx(kl_ref, rel=1e-12) and klb == pytest.approx(kla, rel=1e-14)
    # d/dm [g_z z - scale KL] = g_z - scale m; d/dlog_var = g_z eps s / 2 - scale (s^2 - 1) / 2
    np.testing.assert_allclose(ga[0], g_z - 0.25 * mean, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ga[1], 0.5 * g_z * eps * sigma - 0.125 * (sigma**2 - 1.0),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb, ga, rtol=1e-15, atol=0)


def test_latent_sample_matches_twin_and_formulas():
    """std = exp(lv/2) (ours <= C_EXP_OURS u, libm <= C_EXP_LIBM u after the exact halving),
    em1 = expm1(lv) (ours <= C_EXPM1_ANY_OURS u, libm <= 2 u) and z = mean + std * eps: the
    product and the sum round once each, and std's error enters z through |std * eps|."""
    rng = np.random.default_rng(38)
    mean, eps = rng.normal(size=(2, 4, 6))
    log_var = np.concatenate([rng.normal(size=(3, 6)) * 3, [[1e-12, -1e-12, 0.0, 45.0, -45.0,
                                                              2.0]]])
    eps_t = eps.T.copy().T  # strided operand
    out_a, out_b = np.empty((3, 4, 6)), np.empty((3, 4, 6))
    latent_sample_nb(mean, log_var, eps_t, *out_a)
    latent_sample_np(mean, log_var, eps_t, *out_b)
    std_ref = np.exp(0.5 * log_var)
    np.testing.assert_allclose(out_a[0], std_ref, rtol=(C_EXP_OURS + C_EXP_LIBM) * U, atol=0)
    np.testing.assert_allclose(out_a[1], np.expm1(log_var), rtol=(C_EXPM1_ANY_OURS + 2) * U,
                               atol=0)
    expect = np.array([[m + s * e for m, s, e in zip(*rows)]
                       for rows in zip(mean, std_ref, eps)])
    tol = 1.001 * ((C_EXP_OURS + C_EXP_LIBM + 2) * U * np.abs(std_ref * eps)
                   + 2 * U * np.abs(expect))
    assert np.all(np.abs(out_a[2] - expect) <= tol)
    np.testing.assert_array_equal(out_b[0], std_ref)
    np.testing.assert_array_equal(out_b[1], np.expm1(log_var))
    np.testing.assert_array_equal(out_b[2], mean + std_ref * eps)
    out_c = np.empty((3, 4, 6))
    latent_sample(mean, log_var, eps, *out_c)
    np.testing.assert_array_equal(out_c, out_a)


def test_dispatchers_run_the_kernel_or_the_twin():
    """Each dispatcher computes what its kernel (JIT) or its twin (no JIT) computes."""
    rng = np.random.default_rng(39)
    delta, h = rng.normal(size=(4, 3)), np.tanh(rng.normal(size=(4, 3)))
    a, b = delta.copy(), delta.copy()
    tanh_backward(a, h)
    tanh_backward_np(b, h)
    np.testing.assert_array_equal(a, b)
    logits = rng.normal(size=(4, 3)) * 3
    x = (rng.random((4, 3)) < 0.5).astype(float)
    g1, g1_t, g2, g2_t = np.empty((4, 3)), np.empty((3, 4)), np.empty((4, 3)), np.empty((3, 4))
    v1 = bernoulli_grad(x, logits, 0.25, g1, g1_t)
    v2 = bernoulli_grad_np(x, logits, 0.25, g2, g2_t)
    assert abs(v1 - v2) <= _ll_tol(x, logits, True)
    np.testing.assert_allclose(g1, g2, rtol=SIGMOID_RTOL, atol=0)
    mean, log_var, eps, g_z = rng.normal(size=(4, 4, 3))
    em1, std = np.expm1(log_var), np.exp(0.5 * log_var)
    out1, out2 = np.empty((2, 4, 3)), np.empty((2, 4, 3))
    t1, t2 = np.empty((3, 8)), np.empty((3, 8))
    k1 = kl_grad_analytic(mean, log_var, em1, std, eps, g_z, 0.5, out1[0], out1[1], t1)
    k2 = kl_grad_analytic_np(mean, log_var, em1, std, eps, g_z, 0.5, out2[0], out2[1], t2)
    assert k1 == pytest.approx(k2, rel=1e-14)
    np.testing.assert_allclose(out1, out2, rtol=1e-15, atol=0)

