"""lvmref.kernels.lse: log-sum-exp, log-mean-exp and log-softmax against SciPy, the twins
and exact maths, with derived error bounds (see tests/support.py)."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import scipy.special as sps
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import (
    C_EXP_LIBM,
    C_EXP_OURS,
    C_LOG1P,
    C_LOG1P_OURS,
    SLACK,
    U,
    array_and_axis,
    assert_lse_close,
    finite,
    gamma,
    lse_tol,
    lsm_tol_vs_scipy,
    scipy_lse,
)

import lvmref.kernels as K
from lvmref.kernels import lse as L
from lvmref.kernels.dispatch import PARALLEL_MIN_WORK
from lvmref.kernels.lse import (
    lse_stream_finalize,
    lse_stream_init,
    lse_stream_update,
    lse_stream_update_nb,
    lse_stream_update_np,
)

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="tests the jitted kernels; the NUMBA_DISABLE_JIT=1 path is tested in a subprocess",
)


@given(array_and_axis())
def test_logsumexp_matches_scipy(aa):
    a, axis = aa
    ref = scipy_lse(a, axis)
    got = K.logsumexp(a, axis=axis)
    assert_lse_close(got, ref, a, axis)


@given(array_and_axis())
def test_logsumexp_jit_matches_twin(aa):
    a, axis = aa
    ax = None if axis is None else axis % a.ndim
    assert_lse_close(K.logsumexp(a, axis=axis), L.logsumexp_np(a, ax), a, axis)


@pytest.mark.parametrize("shape", [(7,), (4, 9), (3, 4, 5), (2, 3000), (1, 5000), (3000, 3)])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_shapes_axes_keepdims(shape, axis, keepdims):
    if axis == 1 and len(shape) == 1:
        axis = -1
    rng = np.random.default_rng(len(shape) + (0 if axis is None else axis + 7))
    a = rng.normal(scale=30.0, size=shape)
    ref = sps.logsumexp(a, axis=axis, keepdims=keepdims)
    got = K.logsumexp(a, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(ref)
    assert_lse_close(got, ref, a, axis)


def test_logsumexp_long_rows_and_ties():
    """Rows longer than the block buffer (chunked path) and exact ties of the maximum."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 2 * 2048 + 37))
    a[0, :] = 1.5  # all tied: lse = 1.5 + log(n)
    a[1, ::3] = a[1].max() + 1.0  # many ties at the max
    a[2, ::2] = -np.inf
    a[3, 4000] = np.nan
    a[4, 17] = np.inf
    a[5, :] = -np.inf
    a[6, 100:] = -800.0  # terms that underflow to 0
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(a, axis=1)
    assert_lse_close(K.logsumexp(a, axis=1), ref, a, 1)
    assert_lse_close(K.logsumexp(a[2]), sps.logsumexp(a[2]), a[2], None)
    b = np.full((4, 5), -2.0)
    assert_lse_close(K.logsumexp(b, axis=1), sps.logsumexp(b, axis=1), b, 1)


SPECIAL_CASES = [
    ([], -np.inf),
    ([-np.inf], -np.inf),
    ([-np.inf, -np.inf], -np.inf),
    ([np.inf, 1.0], np.inf),
    ([np.inf, -np.inf], np.inf),
    ([np.inf, np.inf], np.inf),
    ([1.0, np.inf, np.nan], np.nan),
    ([-np.inf, np.nan], np.nan),
    ([np.nan], np.nan),
    ([np.nan, np.nan, 1.0], np.nan),
    ([0.0, -40.0], np.log1p(np.exp(-40.0))),
    ([0.0, -720.0], np.exp(-720.0)),  # subnormal result kept
    ([0.0, -800.0], 0.0),
    ([1e308, 1e308], 1e308),  # no overflow in the shift
    ([-1e4, 1e4], 1e4),
    ([1e4, 1e4 - 30.0], 1e4 + np.log1p(np.exp(-30.0))),
]


@pytest.mark.parametrize(("values", "expected"), SPECIAL_CASES)
def test_logsumexp_special_values(values, expected):
    a = np.array(values, dtype=np.float64)
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(a)
    np.testing.assert_array_equal(ref, expected)  # the cases state SciPy's semantics
    got = K.logsumexp(a)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(L.logsumexp_np(a), expected)
    # the same rows inside a 2-D batch (other rows unaffected)
    if a.size:
        b = np.vstack([a, np.zeros_like(a)])
        got2 = K.logsumexp(b, axis=1)
        np.testing.assert_array_equal(got2[0], expected)
        assert_lse_close(got2[1:], sps.logsumexp(b[1:], axis=1), b[1:], 1)


# Row lengths that reach each code path of lvmref.kernels.lse: the short-row block
# (m <= _SHORT, transposed), the row block (m <= _BLOCK) and the chunked long row (m > _BLOCK).
PATH_LENGTHS = [L._SHORT, L._SHORT + 1, L._BLOCK, L._BLOCK + 1, 5000]


@pytest.mark.parametrize("m", PATH_LENGTHS)
@pytest.mark.parametrize(("values", "expected"), [c for c in SPECIAL_CASES if len(c[0])])
@pytest.mark.parametrize("where", ["start", "end", "spread"])
def test_logsumexp_special_values_on_every_row_path(values, expected, m, where):
    """The special-value cases padded with -inf (which adds exp(-inf) = 0 to the sum, so
    SciPy's value is unchanged) to a row length that takes the short, block or long-row
    path, the special entries placed at the start, the end, or spread along the row (a
    chunked path that looks only at one chunk misses them); alone and as row 1 of 3."""
    row = np.full(m, -np.inf)
    idx = {"start": np.arange(len(values)), "end": m - len(values) + np.arange(len(values)),
           "spread": np.linspace(0, m - 1, len(values)).astype(int)}[where]
    row[idx] = values
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(row)
    np.testing.assert_array_equal(ref, expected)  # SciPy agrees with the case's statement
    np.testing.assert_array_equal(K.logsumexp(row), expected)
    np.testing.assert_array_equal(L.logsumexp_np(row), expected)
    b = np.vstack([np.zeros(m), row, np.linspace(-3.0, 2.0, m)])
    with np.errstate(under="ignore"):
        ref_b = sps.logsumexp(b, axis=1)
    got = K.logsumexp(b, axis=1)
    np.testing.assert_array_equal(got[1], expected)
    assert_lse_close(got[[0, 2]], ref_b[[0, 2]], b[[0, 2]], 1)


def test_logsumexp_small_term_not_rounded_away():
    """max-split + log1p: lse([0, -40]) = log1p(e^-40) = 4.248e-18, not 0."""
    got = float(K.logsumexp([0.0, -40.0]))
    exact = 4.248354255291589e-18  # log1p(exp(-40)) to 16 digits (exp(-40) - exp(-80)/2)
    assert abs(got - exact) <= 4 * U * exact


@given(
    st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=20),
    st.integers(-(2**20), 2**20),
)
def test_logsumexp_shift_invariance(ints, c):
    """lse(x + c) = lse(x) + c. x are multiples of 2**-10 and c an integer, so x + c, the
    shifts t_i and hence S and L are bitwise identical in both evaluations; only the final
    roundings differ: |fl((m + c) + L) - fl(fl(m + L) + c)| <= u (2 |r| + |r - c|)."""
    x = np.array(ints, dtype=np.float64) / 1024.0
    c = float(c)
    r1 = float(K.logsumexp(x + c))
    r0 = float(K.logsumexp(x))
    assert abs(r1 - (r0 + c)) <= SLACK * U * (2 * abs(r1) + abs(r0))
    np.testing.assert_array_equal(K.log_softmax(x + c), K.log_softmax(x))  # exact


@given(array_and_axis(min_side=1, elems=finite))
def test_logsumexp_between_max_and_max_plus_log_n(aa):
    """max <= lse (exact: fl(m + L) >= m since L >= 0) and
    lse <= m + log n + L_err + roundings,
    L_err <= log n ((C_EXP_OURS + C_LOG1P_OURS) u + gamma_n)."""
    a, axis = aa
    n = a.size if axis is None else a.shape[axis]
    m = np.max(a, axis=axis)
    r = K.logsumexp(a, axis=axis)
    assert np.all(m <= r)
    ln = np.log(n)
    with np.errstate(under="ignore"):
        upper = m + ln + SLACK * (ln * ((C_EXP_OURS + C_LOG1P_OURS) * U + gamma(n))
                                  + 2 * U * np.abs(r))
    assert np.all(r <= upper)


def test_logsumexp_parallel_equals_serial():
    """Parallel blocks reduce each row with the same serial code: bitwise equal results,
    whatever the thread count."""
    rng = np.random.default_rng(5)
    a = rng.normal(scale=5.0, size=(4001, 37))
    a[::97, 3] = -np.inf
    a[5, 7] = np.nan
    ref_mx, ref_l = L.lse_parts_nb_serial(a)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            mx, lg = L.lse_parts_nb(a)
            np.testing.assert_array_equal(mx, ref_mx)
            np.testing.assert_array_equal(lg, ref_l)
    finally:
        numba.set_num_threads(before)
    big = rng.normal(size=(PARALLEL_MIN_WORK // 8 + 3, 8))  # goes through the parallel path
    assert_lse_close(K.logsumexp(big, axis=1), sps.logsumexp(big, axis=1), big, 1)


def test_logsumexp_stable_for_large_logits():
    rng = np.random.default_rng(6)
    a = rng.uniform(-1e4, 1e4, size=(50, 20))
    a[:, 0] = 1e4
    a[:, 1] = -1e4
    with np.errstate(all="raise"):
        got = K.logsumexp(a, axis=1)
    assert np.all(np.isfinite(got))
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(a, axis=1)
    assert_lse_close(got, ref, a, 1)


@given(array_and_axis(min_side=1))
def test_log_mean_exp_is_lse_minus_log_n(aa):
    a, axis = aa
    n = a.size if axis is None else a.shape[axis]
    ref = scipy_lse(a, axis) - np.log(n)
    got = K.log_mean_exp(a, axis=axis)
    special = ~np.isfinite(ref)
    np.testing.assert_array_equal(got[special], ref[special])
    # lse bound plus one extra rounding of each subtraction of log n
    with np.errstate(invalid="ignore"):
        tol = lse_tol(ref + np.log(n), a, axis) + 2 * U * (np.abs(ref) + np.log(n))
    assert np.all(np.abs(got[~special] - ref[~special]) <= tol[~special])


def test_log_mean_exp_keepdims_and_empty():
    a = np.arange(6.0).reshape(2, 3)
    assert K.log_mean_exp(a, axis=1, keepdims=True).shape == (2, 1)
    assert K.log_mean_exp(np.zeros((0, 3)), axis=1).shape == (0,)
    with pytest.raises(ValueError, match="a must have at least one element"):
        K.log_mean_exp(np.zeros((3, 0)), axis=1)
    with pytest.raises(ValueError, match="a must have at least one element"):
        K.log_mean_exp([])


@given(array_and_axis(min_side=1))
def test_log_softmax_matches_scipy_and_twin(aa):
    a, axis = aa
    ax = -1 if axis is None else axis
    with np.errstate(invalid="ignore", under="ignore"):
        ref = sps.log_softmax(a, axis=ax)
    got = K.log_softmax(a, axis=ax)
    assert got.shape == a.shape
    special = ~np.isfinite(ref)
    np.testing.assert_array_equal(got[special], ref[special])
    n = a.shape[ax]
    ok = ~special
    assert np.all(np.abs(got[ok] - ref[ok]) <= lsm_tol_vs_scipy(ref[ok], n))
    twin = L.log_softmax_np(a, ax % a.ndim)
    np.testing.assert_array_equal(np.isfinite(twin), np.isfinite(got))
    np.testing.assert_array_equal(got[special], twin[special])
    # two log1p-based evaluations:
    # L [(C_EXP_OURS + C_EXP_LIBM + C_LOG1P_OURS + C_LOG1P) u + 2 gamma_n]
    with np.errstate(under="ignore"):  # reference-side arithmetic (tiny |twin|)
        tw_tol = SLACK * (
            2 * U * np.abs(twin)
            + np.log(n) * ((C_EXP_OURS + C_EXP_LIBM + C_LOG1P_OURS + C_LOG1P) * U
                           + 2 * gamma(n))
        )
    assert np.all(np.abs(got[ok] - twin[ok]) <= tw_tol[ok])


@given(array_and_axis(min_side=1, elems=finite))
def test_exp_log_softmax_sums_to_one(aa):
    """|sum exp(ls) - 1| <= u (7.35 log n + 2) + gamma_n (log n + 1): the errors of
    ls_i = fl(fl(t_i) - L) weighted by p_i sum to <= u (H + (L + H)) + L-error, with the
    entropy H <= log n and L <= log n; then np.exp (2 u) and the sum (gamma_n)."""
    a, axis = aa
    ax = -1 if axis is None else axis
    n = a.shape[ax]
    with np.errstate(under="ignore"):
        s = np.exp(K.log_softmax(a, axis=ax)).sum(axis=ax)
    ln = np.log(n)
    tol = SLACK * (U * (7.35 * ln + 2) + gamma(n) * (ln + 1))
    assert np.all(np.abs(s - 1.0) <= tol)


def test_log_softmax_keeps_tiny_probabilities_and_large_offsets():
    got = K.log_softmax(np.array([0.0, -40.0]))
    assert got[0] == -np.log1p(np.exp(-40.0))  # scipy gives 0 here (log(1 + 4e-18))
    big = np.array([[1e4, 1e4 - 1.0, -1e4]])
    got = K.log_softmax(big)
    ref = K.log_softmax(np.array([[0.0, -1.0, -2e4]]))  # exact shift by 1e4
    np.testing.assert_array_equal(got, ref)
    assert np.all(np.isfinite(got))


def test_log_softmax_axis0_3d():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(4, 3, 5))
    for ax in (0, 1, 2, -2):
        got = K.log_softmax(a, axis=ax)
        ref = sps.log_softmax(a, axis=ax)
        assert np.all(np.abs(got - ref) <= lsm_tol_vs_scipy(ref, a.shape[ax]))


# --------------------------------------------------------------------------- streaming lse

EPS = np.finfo(np.float64).eps


def _stream(update, a, splits):
    m, r = lse_stream_init(a.shape[0])
    for blk in np.split(a, splits, axis=1):
        m, r = update(m, r, blk)
    return lse_stream_finalize(m, r)


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)),
               elements=st.one_of(st.floats(-800, 800), st.just(-np.inf), st.just(3.0))),
    st.lists(st.integers(0, 30), max_size=4),
)
def test_stream_kernel_twin_agree_and_match_scipy(a, cuts):
    from scipy.special import logsumexp as sp_lse

    splits = sorted(c for c in cuts if c <= a.shape[1])
    got_nb = _stream(lse_stream_update_nb, a, splits)
    got_np = _stream(lse_stream_update_np, a, splits)
    with np.errstate(under="ignore"):
        ref = sp_lse(a, axis=1)
    fin = np.isfinite(ref)
    assert np.array_equal(np.isneginf(got_nb), np.isneginf(ref))
    assert np.array_equal(np.isneginf(got_np), np.isneginf(ref))
    scale = 1.0 + np.abs(ref[fin])
    tol = 4 * a.shape[1] * EPS * scale
    assert np.all(np.abs(got_nb[fin] - got_np[fin]) <= tol)
    assert np.all(np.abs(got_nb[fin] - ref[fin]) <= tol)


def test_stream_kernel_keeps_small_terms_and_does_not_mutate():
    a = np.array([[0.0, -40.0], [-np.inf, -np.inf]])
    a0 = a.copy()
    for upd in (lse_stream_update_nb, lse_stream_update_np, lse_stream_update):
        m, r = lse_stream_init(2)
        m2, r2 = upd(m, r, a)
        out = lse_stream_finalize(m2, r2)
        assert out[0] == math.log1p(math.exp(-40.0))  # 4e-18 kept via log1p
        assert out[1] == -np.inf
        np.testing.assert_array_equal(a, a0)
        assert np.all(np.isneginf(m)) and np.all(r == 0)


def test_dispatch_uses_twin_when_jit_disabled(monkeypatch):
    import numba

    from lvmref.kernels import lse

    calls = []
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    monkeypatch.setattr(lse, "lse_stream_update_np",
                        lambda m, r, a: calls.append(1) or lse_stream_update_np(m, r, a))
    m, r = lse_stream_init(1)
    lse.lse_stream_update(m, r, np.zeros((1, 3)))
    assert calls == [1]


def test_lse_parts_and_log_softmax_rows_fill_given_outputs():
    """The public functions pass NumPy-allocated outputs to the kernels; the results must
    be the kernels' own, whatever the buffers held before."""
    a = np.random.default_rng(11).normal(0.0, 3.0, size=(500, 7))
    ref_mx, ref_l = L.lse_parts_nb_serial(a)
    mx_out, l_out = np.full(500, np.nan), np.full(500, np.nan)
    mx, lg = L.lse_parts_nb_serial(a, mx_out, l_out)
    assert mx is mx_out and lg is l_out
    assert np.array_equal(mx, ref_mx) and np.array_equal(lg, ref_l)
    out = np.full(a.shape, np.nan)
    got = L.log_softmax_rows_nb(a, mx, lg, out)
    assert got is out
    assert np.array_equal(got, L.log_softmax_rows_nb(a, mx, lg))
    np.testing.assert_array_equal(L.logsumexp(a, axis=1), ref_mx + ref_l)


@pytest.mark.parametrize("m", [1, 10] + PATH_LENGTHS)
def test_lse_rows_writes_the_sum_of_the_parts_into_one_array(m):
    """lse_rows (the kernel's combined mode: one output, mx + l written in the kernel) is
    bitwise mx + l of the two-output mode on every row path and in both builds, special
    rows included, and within the derived bound of SciPy."""
    rng = np.random.default_rng(m)
    a = rng.normal(0.0, 4.0, size=(40, m))
    a[3, :] = -np.inf
    a[5, -1] = np.nan
    a[7, 0] = np.inf
    a[9, :] = 1.25  # all tied
    a[::6, m // 2] = -np.inf
    ref_mx, ref_l = L.lse_parts_nb_serial(a)
    ref = ref_mx + ref_l
    for kernel in (L.lse_parts_nb_serial, L.lse_parts_nb):
        out = np.full(40, 123.0)
        mx, got = kernel(a, out, out, True)
        assert got is out and mx is out
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(L.lse_rows(a), ref)
    np.testing.assert_array_equal(L.lse_rows(a)[[3, 5, 7]], [-np.inf, np.nan, np.inf])
    ok = np.isfinite(ref)
    with np.errstate(under="ignore"):
        assert_lse_close(ref[ok], sps.logsumexp(a[ok], axis=1), a[ok], 1)
