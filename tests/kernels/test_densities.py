"""lvmref.kernels.densities: sigmoid family, Bernoulli and Gaussian log-densities, the
Gaussian KL and the ELBO/IWAE reductions against SciPy, long double and mpmath."""

from __future__ import annotations

import mpmath
import numba
import numpy as np
import pytest
import scipy.special as sps
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import (
    LD_EPS,
    SLACK,
    U,
    dd_error,
    extended,
    gamma,
    kl_tol,
    lse_tol,
    oracle_eps,
    oracles,
    softplus_tol,
)

import lvmref.kernels as K
from lvmref.kernels import densities as D

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="tests the jitted kernels; the NUMBA_DISABLE_JIT=1 path is tested in a subprocess",
)


wide = st.floats(-1e300, 1e300, allow_nan=False)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8), elements=wide))
def test_softplus_and_log_sigmoid_vs_scipy(x):
    with np.errstate(under="ignore"):
        sp_ref = np.logaddexp(0.0, x)
        ls_ref = sps.log_expit(x)
    sp = K.softplus(x)
    ls = K.log_sigmoid(x)
    assert sp.shape == x.shape and ls.shape == x.shape
    assert np.all(np.abs(sp - sp_ref) <= softplus_tol(x, sp_ref))
    assert np.all(np.abs(ls - ls_ref) <= softplus_tol(x, ls_ref))
    # the jitted kernels (scalar libm exp/log1p) against SciPy and the twins
    sp_j = D.softplus_nb(x.ravel()).reshape(x.shape)
    ls_j = D.log_sigmoid_nb(x.ravel()).reshape(x.shape)
    assert np.all(np.abs(sp_j - sp_ref) <= softplus_tol(x, sp_ref))
    assert np.all(np.abs(ls_j - ls_ref) <= softplus_tol(x, ls_ref))
    assert np.all(np.abs(sp_j - D.softplus_np(x)) <= softplus_tol(x, sp_ref))
    assert np.all(np.abs(ls_j - D.log_sigmoid_np(x)) <= softplus_tol(x, ls_ref))


def test_softplus_log_sigmoid_extremes():
    x = np.array([-np.inf, -1e308, -1e4, -745.0, -40.0, 0.0, 40.0, 1e4, 1e308, np.inf, np.nan])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sp = K.softplus(x)
        ls = K.log_sigmoid(x)
    np.testing.assert_array_equal(D.softplus_nb(x), sp)
    np.testing.assert_array_equal(D.log_sigmoid_nb(x), ls)
    assert sp[0] == 0.0 and sp[1] == 0.0 and sp[2] == 0.0
    assert sp[5] == np.log(2.0)
    assert sp[7] == 1e4 and sp[8] == 1e308 and sp[9] == np.inf
    assert ls[2] == -1e4 and ls[1] == -1e308 and ls[0] == -np.inf
    assert ls[7] == 0.0 and ls[9] == 0.0
    assert ls[6] == -np.log1p(np.exp(-40.0))  # not rounded to 0
    assert np.isnan(sp[10]) and np.isnan(ls[10])
    # the identity log sigma(x) = -softplus(-x) holds exactly for these formulas
    finite = np.isfinite(x)
    np.testing.assert_array_equal(ls[finite], -K.softplus(-x[finite]))


@np.errstate(under="ignore")  # reference-side arithmetic
def _bern_ref_binary(x, logits):
    """log Bern(x | sigma(l)) for binary x via scipy: log_expit(l) or log_expit(-l)."""
    return np.where(x == 1.0, sps.log_expit(logits), sps.log_expit(-logits))


@given(
    st.integers(1, 5),
    st.integers(1, 7),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 30.0, 1e4]),
)
def test_bernoulli_binary_vs_scipy(n, d, seed, scale):
    """Binary x: (x l - max(l, 0)) is exact, so each evaluation's error is that of the
    log1p term plus one rounding (as softplus_tol); row sums add gamma_d sum |terms| each."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < 0.5).astype(np.float64)
    logits = rng.uniform(-scale, scale, (n, d))
    ref = _bern_ref_binary(x, logits)
    got = K.bernoulli_log_prob(x, logits, reduce=False)
    tol = softplus_tol(logits, ref)
    assert np.all(np.abs(got - ref) <= tol)
    rows = K.bernoulli_log_prob(x, logits)
    assert rows.shape == (n,)
    with np.errstate(under="ignore"):
        row_tol = tol.sum(axis=1) + SLACK * 2 * gamma(d) * np.abs(ref).sum(axis=1)
    assert np.all(np.abs(rows - ref.sum(axis=1)) <= row_tol)
    # the jitted kernels
    assert np.all(np.abs(D.bernoulli_log_prob_elem_nb(x, logits) - ref) <= tol)
    assert np.all(np.abs(D.bernoulli_log_prob_rows_nb(x, logits) - ref.sum(axis=1)) <= row_tol)
    twin = D.bernoulli_log_prob_np(x, logits, True)
    assert np.all(np.abs(D.bernoulli_log_prob_rows_nb(x, logits) - twin) <= 2 * row_tol)


def test_bernoulli_grey_levels_vs_direct_formula():
    """x in [0, 1]: compare with x log sigma(l) + (1 - x) log sigma(-l) (SciPy). Each side
    has <= 8 roundings, each <= 2 u times a magnitude bounded by
    M = |x l| + |l| + |log sigma(l)| + |log sigma(-l)| + 1, so |diff| <= 32 u M."""
    rng = np.random.default_rng(9)
    x = rng.random((40, 6))
    logits = rng.normal(scale=20.0, size=(40, 6))
    a, b = sps.log_expit(logits), sps.log_expit(-logits)
    ref = x * a + (1.0 - x) * b
    got = K.bernoulli_log_prob(x, logits, reduce=False)
    big_m = np.abs(x * logits) + np.abs(logits) + np.abs(a) + np.abs(b) + 1.0
    assert np.all(np.abs(got - ref) <= 32 * U * big_m)
    assert np.all(np.abs(D.bernoulli_log_prob_elem_nb(x, logits) - ref) <= 32 * U * big_m)


def test_bernoulli_extreme_logits():
    x = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]])
    lg = np.array([[1e4, 1e4, -1e4, -1e4, 40.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = K.bernoulli_log_prob(x, lg, reduce=False)
    np.testing.assert_array_equal(D.bernoulli_log_prob_elem_nb(x, lg), got)
    np.testing.assert_array_equal(got[0, :4], [0.0, -1e4, -1e4, 0.0])
    assert got[0, 4] == -np.log1p(np.exp(-40.0))  # x = 1, l = 40: -4.2e-18, not 0
    assert K.bernoulli_log_prob(x, lg)[0] == -2e4 + got[0, 4]


def test_bernoulli_logit_grad_exact_for_confident_units():
    """x - sigmoid(l) in the form x sigmoid(-l) - (1 - x) sigmoid(l): against SciPy's
    expit (an independent sigmoid) to 2 ulp for |l| up to 1e4, including the units where
    the literal difference is 0 (x = 1, l >= 37.5) and grey levels."""
    rng = np.random.default_rng(12)
    logits = np.concatenate([rng.uniform(-50, 50, 400), [-1e4, -745.0, -40.0, 0.0, 40.0,
                                                          745.0, 1e4]])
    x = (rng.random(logits.shape) < 0.5).astype(float)
    got = K.bernoulli_logit_grad(x, logits)
    with np.errstate(under="ignore"):
        want = np.where(x == 1.0, sps.expit(-logits), -sps.expit(logits))
        # atol: sigmoid(-745) = 4.9e-324 is the smallest subnormal (SciPy rounds it to 0)
        np.testing.assert_allclose(got, want, rtol=4 * U, atol=5e-324)
    assert K.bernoulli_logit_grad([1.0], [40.0])[0] == sps.expit(-40.0) > 0.0
    grey = rng.random(50)
    lg = rng.uniform(-5, 5, 50)
    np.testing.assert_allclose(K.bernoulli_logit_grad(grey, lg), grey - sps.expit(lg),
                               rtol=0, atol=4 * U)
    with pytest.raises(ValueError, match="x must lie in"):
        K.bernoulli_logit_grad([2.0], [0.0])
    with pytest.raises(ValueError, match="x and logits must have the same shape"):
        K.bernoulli_logit_grad([1.0, 0.0], [0.0])


def test_bernoulli_x_out_of_range():
    with pytest.raises(ValueError, match="x must lie in"):
        K.bernoulli_log_prob([[2.0]], [[0.0]])
    with pytest.raises(ValueError, match="x must lie in"):
        K.bernoulli_log_prob([[-0.5]], [[0.0]])


def normal_ref(x, mean, log_var, oracle):
    """Direct formula -1/2 (log 2 pi + lv + (x - mu)^2 exp(-lv)) in extended precision,
    as a double-double (hi, lo) pair (tests/support.py)."""

    def f(m, xl, ml, vl):
        return -0.5 * (m.log(2 * m.pi) + vl + (xl - ml) ** 2 * m.exp(-vl))

    return extended(f, x, mean, log_var, oracle=oracle)


def normal_tol(q, log_var, ref_eps=LD_EPS):
    """Ours: dx (u), z = dx exp(-lv/2) (exp C_EXP_LIBM u, product u), z^2 (doubles the
    relative error, plus u): quad within 9 u; then (log 2pi + lv) and the add round
    (u each, of magnitudes <= 1.84 + |lv| + quad) and log 2pi is within u/2:
    |err| <= u (10 q + |lv| + 2.3) with q = quad / 2; plus the long double reference
    (<= 8 ref_eps (q + |lv| + 1), and 2 pi rounded to double: <= 2 u / 2)."""
    return SLACK * (U * (10 * q + np.abs(log_var) + 2.3 + 1.0)) + 8 * ref_eps * (
        q + np.abs(log_var) + 1
    )


@pytest.mark.parametrize("oracle", oracles())
@given(
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 10.0, 300.0]),
)
def test_normal_log_prob_diag_vs_direct_formula(oracle, n, d, seed, lv_scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(n, d))
    mean = rng.normal(size=(n, d))
    log_var = rng.uniform(-lv_scale, lv_scale, size=(n, d))
    hi, lo = normal_ref(x, mean, log_var, oracle)
    q = np.abs(hi * 2 + np.log(2 * np.pi) + log_var) / 2
    got = K.normal_log_prob_diag(x, mean, log_var, reduce=False)
    tol = normal_tol(q, log_var, oracle_eps(oracle))
    assert np.all(dd_error(got, hi, lo) <= tol)
    rows = K.normal_log_prob_diag(x, mean, log_var)
    row_tol = tol.sum(axis=1) + SLACK * 2 * gamma(d) * np.abs(hi).sum(axis=1)
    # the row reference: the sum of the double-double entries (exact to ~u^2 |terms|)
    assert np.all(np.abs((rows - hi.sum(axis=1)) - lo.sum(axis=1)) <= row_tol + U * U * np.abs(
        hi).sum(axis=1) * d)
    twin = D.normal_log_prob_diag_np(x, mean, log_var, True)
    assert np.all(np.abs(rows - twin) <= 2 * row_tol)


def test_normal_log_prob_diag_vs_scipy_stats():
    from scipy.stats import norm

    rng = np.random.default_rng(10)
    x, mean = rng.normal(size=(2, 50))
    log_var = rng.uniform(-5, 5, 50)
    ref = norm.logpdf(x, loc=mean, scale=np.exp(0.5 * log_var))
    got = K.normal_log_prob_diag(x[None], mean[None], log_var[None], reduce=False)[0]
    q = 0.5 * (x - mean) ** 2 * np.exp(-log_var)
    # scipy: scale (2u), z (4u), z^2 (9u), log(scale) (2u + 2u |lv|/2), 3 roundings:
    # u (11 q + 1.5 |lv| + 4.8); ours u (10 q + |lv| + 2.3)
    assert np.all(np.abs(got - ref) <= SLACK * U * (21 * q + 2.5 * np.abs(log_var) + 7.1))


def test_normal_log_prob_extremes():
    x = np.array([[0.0, 1.0, 1e-200, 0.0]])
    mean = np.array([[0.0, 0.0, 0.0, 0.0]])
    lv = np.array([[-1e4, 1e4, -800.0, 1e4]])
    with np.errstate(all="raise"):
        got = K.normal_log_prob_diag(x, mean, lv, reduce=False)[0]
    log2pi = np.log(2 * np.pi)
    assert got[0] == -0.5 * (log2pi - 1e4)  # x == mean: no 0 * inf
    assert got[1] == -0.5 * (log2pi + 1e4)  # quad underflows to 0 correctly (e^-1e4)
    # 1e-400 * e^800 = 2.7e-53: finite although dx^2 alone would underflow
    assert abs(got[2] - (-0.5 * (log2pi - 800.0))) <= 1e-12
    assert np.isfinite(got).all()
    twin = D.normal_log_prob_diag_np(x, mean, lv, False)[0]
    np.testing.assert_allclose(got, twin, rtol=4 * U, atol=0)


@pytest.mark.parametrize("oracle", oracles())
@given(st.integers(1, 5), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_kl_normal_std_vs_direct_formula(oracle, n, d, seed):
    rng = np.random.default_rng(seed)
    mean = rng.normal(scale=2.0, size=(n, d))
    log_var = rng.normal(scale=3.0, size=(n, d))
    hi, lo = extended(lambda m, ml, vl: 0.5 * m.sum(m.exp(vl) - 1 - vl + ml * ml, axis=-1),
                      mean, log_var, oracle=oracle)
    tol = kl_tol(mean, log_var, oracle_eps(oracle))
    got = K.kl_normal_std(mean, log_var)
    assert got.shape == (n,)
    assert np.all(dd_error(got, hi, lo) <= tol)
    jit = D.kl_normal_std_rows_nb(mean, log_var)
    assert np.all(dd_error(jit, hi, lo) <= tol)
    assert np.all(np.abs(jit - got) <= 2 * tol)


@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 5)),
        elements=st.floats(-700, 700),
    ),
    st.data(),
)
def test_kl_nonnegative_and_zero_only_at_standard_normal(mean, data):
    """KL >= 0 exactly (each term (expm1(lv) - lv) + mu^2 >= 0 since a faithful expm1(lv)
    >= lv). KL > 0 whenever some mu^2 is a normal number or |lv| >= 2**-50 (so that
    expm1(lv) - lv ~ lv^2/2 exceeds half an ulp of lv); KL == 0 at mu = 0, lv = 0."""
    log_var = data.draw(hnp.arrays(np.float64, mean.shape, elements=st.floats(-700, 700)))
    informative = (np.abs(mean) >= 1.5e-154) | (np.abs(log_var) >= 2.0**-50)
    for kl in (K.kl_normal_std(mean, log_var), D.kl_normal_std_rows_nb(mean, log_var)):
        assert np.all(kl >= 0.0)
        assert np.all(kl[informative.any(axis=1)] > 0.0)
    zero = K.kl_normal_std(np.zeros_like(mean), np.zeros_like(mean))
    np.testing.assert_array_equal(zero, 0.0)


def test_kl_extremes():
    mean = np.array([[0.0, 0.0], [1e4, 0.0]])
    lv = np.array([[-1e4, 0.0], [0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        kl = K.kl_normal_std(mean, lv)
    np.testing.assert_array_equal(D.kl_normal_std_rows_nb(mean, lv), kl)
    assert kl[0] == 0.5 * (1e4 - 1.0)  # expm1(-1e4) = -1 exactly
    assert kl[1] == 0.5 * 1e8


def _mp_kl_term(s):
    """(e^s - 1 - s) / 2 to 50 significant digits (mpmath), rounded once to float64.

    For |s| < 1 the Taylor series s^2 sum_k s^(k-2)/k! is summed in mpmath (60 terms,
    remainder < 1e-80 relative): expm1(t) - t would lose the leading digits even there."""
    with mpmath.workdps(50):
        t = mpmath.mpf(float(s))
        if abs(t) < 1:
            v = t * t * mpmath.fsum(t ** (k - 2) / mpmath.factorial(k) for k in range(2, 62))
        else:
            v = mpmath.expm1(t) - t
        return float(v / 2)


def test_kl_collapsed_unit_is_accurate_for_all_log_var():
    """KL of N(0, e^s) to N(0, 1) is (e^s - 1 - s)/2; expm1(s) - s cancels near s = 0
    (relative error 5e-5 at s = 1e-12 before the series). Target <= 1e-14 relative,
    against a 50-digit mpmath evaluation; public function, Numba rows kernel and twin."""
    # |s| >= 1e-150, so that (e^s - 1 - s)/2 ~ s^2/4 is a normal float64
    mags = np.concatenate([10.0 ** np.arange(-150, 3, 0.5), [0.49999999, 0.5, 0.50000001]])
    rng = np.random.default_rng(5)
    s = np.concatenate([mags, -mags, rng.uniform(-3, 3, 200), rng.uniform(-40, 700, 50)])
    s = s[np.abs(s) <= 709.0]
    ref = np.array([_mp_kl_term(v) for v in s])
    mean = np.zeros((s.size, 1))
    for got in (K.kl_normal_std(mean, s[:, None]), D.kl_normal_std_rows_nb(mean, s[:, None]),
                D.kl_normal_std_np(mean, s[:, None])):
        rel = np.abs(got - ref) / ref
        assert rel.max() <= 1e-14, (s[np.argmax(rel)], rel.max())
    with np.errstate(under="ignore"):
        series = D.expm1_minus_x_np(s) / 2
    np.testing.assert_array_equal(series, D.kl_normal_std_np(mean, s[:, None]))
    # beyond float64: e^s - 1 - s overflows, the KL is +inf (no FloatingPointError)
    assert K.kl_normal_std([[0.0]], [[800.0]])[0] == np.inf
    assert D.kl_normal_std_rows_nb(np.zeros((1, 1)), np.array([[800.0]]))[0] == np.inf


def _mp_normal_logpdf(x, mean, lv):
    with mpmath.workdps(60):
        x, m, v = (mpmath.mpf(float(t)) for t in (x, mean, lv))
        q = (x - m) ** 2 * mpmath.exp(-v)
        return float(-(mpmath.log(2 * mpmath.pi) + v + q) / 2)


def test_normal_log_prob_finite_where_an_intermediate_overflows():
    """x - mean or exp(-lv/2) overflowing gave NaN or a wrong inf; the answer is finite
    (or -inf when z^2 itself is beyond float64). 60-digit mpmath reference."""
    x = np.array([[1e308, 1e-300, 1e200, 1e308, -1e308]])
    mean = np.array([[-1e308, 0.0, -1e200, -1e308, 1e308]])
    lv = np.array([[1e4, -1420.0, 800.0, -10.0, 1300.0]])
    ref = np.array([_mp_normal_logpdf(a, b, c) for a, b, c in zip(x[0], mean[0], lv[0])])
    for got in (K.normal_log_prob_diag(x, mean, lv, reduce=False)[0],
                D.normal_log_prob_diag_elem_nb(x, mean, lv)[0],
                D.normal_log_prob_diag_np(x, mean, lv, False)[0]):
        assert got[3] == -np.inf and ref[3] == -np.inf  # z^2 = 4e616 e^10: beyond float64
        fin = np.isfinite(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-14, atol=0)


def test_elbo_iwae_finite_where_sums_overflow():
    """log w = (log p(x|z) + log p(z)) - log q near the float64 limit: exact answers from
    rational arithmetic (every input is an integer-valued float)."""
    from fractions import Fraction

    a = np.array([[1e308, -1e308, 1.5e308], [1.7e308, 1.7e308, -1.0]])
    b = np.array([[1e308, 1e308, 1.0e308], [1.0, 1.0, 1.0]])
    c = np.array([[1e308, -1e308, 1.0e308], [0.0, 0.0, 0.0]])
    for elbo, iwae in (K.elbo_iwae(a, b, c), D.elbo_iwae_np(a, b, c)):
        for i in range(2):
            w = [Fraction(a[i, j]) + Fraction(b[i, j]) - Fraction(c[i, j]) for j in range(3)]
            # the mean as sum(w / 3) (the plain sum overflows): (k + 1) u max|w|, k = 3
            exact = sum(w) / 3
            assert abs(Fraction(elbo[i]) - exact) <= 4 * U * max(abs(t) for t in w)
            with mpmath.workdps(50):
                ws = [mpmath.mpf(float(t)) for t in w]  # each log w is exact in float64
                mx = max(ws)
                ref = mx + mpmath.log(sum(mpmath.exp(t - mx) for t in ws) / 3)
            assert abs(iwae[i] - float(ref)) <= 4 * U * abs(float(ref))


@given(st.integers(1, 5), st.integers(1, 9), st.integers(0, 2**32 - 1), st.booleans())
def test_elbo_iwae_vs_scipy(n, k, seed, with_neg_inf):
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=50.0, size=(n, k))
    b = rng.normal(scale=5.0, size=(n, k))
    c = rng.normal(scale=5.0, size=(n, k))
    if with_neg_inf:
        a[0, 0] = -np.inf
    log_w = (a + b) - c  # the same operations as the kernel: identical log w
    elbo, iwae = K.elbo_iwae(a, b, c)
    assert elbo.shape == (n,) and iwae.shape == (n,)
    ref_elbo = log_w.mean(axis=1)
    fin = np.isfinite(ref_elbo)
    np.testing.assert_array_equal(elbo[~fin], ref_elbo[~fin])
    # two sums of k terms (gamma_k each) and the division by k (u each)
    tol = SLACK * (2 * gamma(k) * np.abs(log_w).mean(axis=1) + 2 * U * np.abs(ref_elbo))
    assert np.all(np.abs(elbo[fin] - ref_elbo[fin]) <= tol[fin])
    lse = sps.logsumexp(log_w, axis=1)
    ref_iwae = lse - np.log(k)
    ok = np.isfinite(ref_iwae)
    np.testing.assert_array_equal(iwae[~ok], ref_iwae[~ok])  # K = 1 with log w = -inf
    with np.errstate(invalid="ignore"):
        tol = lse_tol(lse, log_w, 1) + 2 * U * (np.abs(ref_iwae) + np.log(k))
    assert np.all(np.abs(iwae[ok] - ref_iwae[ok]) <= tol[ok])
    # Jensen on the same samples: mean log w <= log mean w, up to the roundings above
    slack = SLACK * (gamma(k) * np.abs(log_w).mean(axis=1) + tol + 2 * U * np.abs(iwae))
    assert np.all(elbo[fin] <= iwae[fin] + slack[fin])
    e_tw, i_tw = D.elbo_iwae_np(a, b, c)
    np.testing.assert_array_equal(np.isfinite(e_tw), np.isfinite(elbo))
    np.testing.assert_array_equal(i_tw[~ok], iwae[~ok])
    assert np.all(np.abs(iwae[ok] - i_tw[ok]) <= tol[ok])


def test_elbo_iwae_single_sample_and_gap():
    rng = np.random.default_rng(11)
    a, b, c = rng.normal(size=(3, 6, 1))
    elbo, iwae = K.elbo_iwae(a, b, c)
    np.testing.assert_array_equal(elbo, ((a + b) - c)[:, 0])  # K = 1: both equal log w
    np.testing.assert_array_equal(iwae, ((a + b) - c)[:, 0])
    # spread weights: the Jensen gap is large and strictly positive
    lw = np.array([[0.0, -10.0]])
    elbo, iwae = K.elbo_iwae(lw, np.zeros_like(lw), np.zeros_like(lw))
    assert elbo[0] == -5.0 and iwae[0] > -0.7
