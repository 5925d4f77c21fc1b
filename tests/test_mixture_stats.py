"""lvmref.mixture_stats: the sufficient statistics of gmm eqs. (23)-(25) and their merge.

Oracle: the statistics computed directly from their definition (23) in extended precision
(``np.longdouble``, two passes: the weighted mean, then the scatter about it; where long
double is float64 the bound below is doubled for the reference's own error).

Tolerance, derived: every statistic is a sum over n rows of products of at most three
float64 numbers; a float64 evaluation in any summation order (our blocked kernels, and
the merges of eq. 24, each adding one more rounding level per merge) differs from the
exact sum by at most gamma_{n + 2m + 4} sum_i |term_i| (Higham's bound, m merges), where
|term_i| is bounded by r_i |x_i|_j |x_i|_l (centred |x_i - xbar| <= |x_i| + |xbar|, so we
use (|x_i| + |xbar|)_j (|x_i| + |xbar|)_l for the scatter). A missing or wrong cross term
of eq. (24) is of the size N_a N_b / N |delta|^2, far above this bound for the offset
chunks used here (checked by ``test_the_bound_sees_a_wrong_merge``).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import HAVE_LONGDOUBLE, SLACK, gamma

from lvmref.mixture_stats import (
    Moments,
    check_moments,
    chunk_moments,
    merge_moments,
    moments,
    scale_moments,
    scatter_about,
)

LD = np.longdouble
#: the reference's own error: none worth counting in extended precision, else the same bound
REF = 1.0 if HAVE_LONGDOUBLE else 2.0


def data(seed, n=300, d=3, k=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * [1.0, 10.0, 0.1] + [5.0, -3.0, 100.0]
    resp = rng.dirichlet(np.ones(k), size=n) * rng.uniform(0.0, 3.0, size=(n, 1))
    return X, resp


def exact(X, resp):
    """(23) in long double: N, S, xbar, full scatter about xbar."""
    Xl, rl = X.astype(LD), resp.astype(LD)
    nk = rl.sum(axis=0)
    sums = rl.T @ Xl
    xbar = sums / nk[:, None]
    dev = Xl[None, :, :] - xbar[:, None, :]  # (k, n, d)
    scatter = np.einsum("nk,kni,knj->kij", rl, dev, dev)
    return nk, sums, xbar, scatter


def bounds(X, resp, n_terms):
    """gamma_{n_terms} sum_i |term_i| for N, S and the scatter (module docstring)."""
    _, _, xbar, _ = exact(X, resp)
    xbar = np.abs(xbar.astype(float))
    g = REF * SLACK * gamma(n_terms)
    a = np.abs(X)[None, :, :] + xbar[:, None, :]  # (k, n, d)
    return (g * resp.sum(axis=0), g * resp.T @ np.abs(X),
            g * np.einsum("nk,kni,knj->kij", resp, a, a))


def assert_within(m, X, resp, n_merges=0, full=True):
    nk, sums, _, scatter = exact(X, resp)
    b_n, b_s, b_m = bounds(X, resp, X.shape[0] + 2 * n_merges + 4)
    assert np.all(np.abs(m.nk - nk.astype(float)) <= b_n)
    assert np.all(np.abs(m.sums - sums.astype(float)) <= b_s)
    ref = scatter.astype(float)
    if not full:
        ref = np.diagonal(ref, axis1=1, axis2=2)
        b_m = np.diagonal(b_m, axis1=1, axis2=2)
    assert np.all(np.abs(m.scatter - ref) <= b_m)


@pytest.mark.parametrize("full", [True, False])
def test_moments_are_the_definition(full):
    X, resp = data(0)
    m = moments(X, resp, full=full, total=7.5, extra=-2.0)
    assert_within(m, X, resp, full=full)
    assert (m.total, m.extra) == (7.5, -2.0)
    assert moments(X, resp).total == X.shape[0]
    np.testing.assert_array_equal(m.centres, m.sums / m.nk[:, None])


@settings(max_examples=25)
@given(cuts=st.lists(st.integers(1, 299), max_size=6, unique=True),
       seed=st.integers(0, 5), full=st.booleans())
def test_merged_chunks_are_the_statistics_of_all_rows(cuts, seed, full):
    """Any partition, merged left to right by (24), gives (23) of all rows."""
    X, resp = data(seed)
    edges = [0, *sorted(cuts), X.shape[0]]
    parts = [moments(X[a:b], resp[a:b], full=full, extra=float(a))
             for a, b in zip(edges[:-1], edges[1:])]
    acc = parts[0]
    for p in parts[1:]:
        acc = merge_moments(acc, p)
    assert_within(acc, X, resp, n_merges=len(parts), full=full)
    assert acc.total == X.shape[0]
    assert acc.extra == float(sum(edges[:-1]))


def test_tree_and_chain_of_merges_agree():
    X, resp = data(1, n=800)
    parts = [moments(X[i:i + 100], resp[i:i + 100]) for i in range(0, 800, 100)]
    chain = parts[0]
    for p in parts[1:]:
        chain = merge_moments(chain, p)
    level = parts
    while len(level) > 1:
        level = [merge_moments(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    assert_within(chain, X, resp, n_merges=8)
    assert_within(level[0], X, resp, n_merges=8)


def test_the_bound_sees_a_wrong_merge():
    """Adding the two scatters without the cross term of (24) violates the bound."""
    X, resp = data(2)
    a, b = moments(X[:150], resp[:150]), moments(X[150:] + 3.0, resp[150:])
    wrong = Moments(a.nk + b.nk, a.sums + b.sums, a.scatter + b.scatter, 300.0, 0.0)
    Xs = np.vstack([X[:150], X[150:] + 3.0])
    assert_within(merge_moments(a, b), Xs, resp, n_merges=1)
    with pytest.raises(AssertionError):
        assert_within(wrong, Xs, resp, n_merges=1)


def test_a_component_absent_from_a_chunk_adds_nothing():
    X, resp = data(3)
    resp[:100, 2] = 0.0
    a, b = moments(X[:100], resp[:100]), moments(X[100:], resp[100:])
    assert a.nk[2] == 0.0 and np.all(a.centres[2] == 0.0) and np.all(a.scatter[2] == 0.0)
    m = merge_moments(a, b)
    np.testing.assert_array_equal(m.scatter[2], b.scatter[2])
    np.testing.assert_array_equal(merge_moments(b, a).scatter[2], b.scatter[2])
    assert_within(m, X, resp, n_merges=1)


def test_scale_keeps_centres_and_scales_everything_else():
    X, resp = data(4)
    m = moments(X, resp, extra=3.0)
    s = scale_moments(m, 0.25)  # a power of two: exact
    np.testing.assert_array_equal(s.nk, m.nk / 4)
    np.testing.assert_array_equal(s.sums, m.sums / 4)
    np.testing.assert_array_equal(s.scatter, m.scatter / 4)
    np.testing.assert_array_equal(s.centres, m.centres)
    assert (s.total, s.extra) == (m.total / 4, 0.75)
    # (27) as a merge: (1 - rho) a + rho b equals the statistics of the rows weighted so
    rho = 0.3
    a, b = moments(X[:120], resp[:120]), moments(X[120:], resp[120:])
    mix = merge_moments(scale_moments(a, 1 - rho), scale_moments(b, rho))
    w = np.where(np.arange(300) < 120, 1 - rho, rho)[:, None]
    assert_within(mix, X, resp * w, n_merges=3)


@pytest.mark.parametrize("full", [True, False])
def test_scatter_about_any_point_is_the_definition(full):
    X, resp = data(5)
    points = np.random.default_rng(9).normal(size=(4, 3)) * 5
    m = moments(X, resp, full=full)
    got = scatter_about(m, points)
    dev = X[None].astype(LD) - points[:, None].astype(LD)
    ref = np.einsum("nk,kni,knj->kij", resp.astype(LD), dev, dev).astype(float)
    a = np.abs(X)[None] + np.abs(points)[:, None]
    tol = REF * SLACK * gamma(X.shape[0] + 8) * np.einsum("nk,kni,knj->kij", resp, a, a)
    if not full:
        ref, tol = (np.diagonal(t, axis1=1, axis2=2) for t in (ref, tol))
    assert np.all(np.abs(got - ref) <= tol)


def test_chunk_moments_is_moments_without_checks():
    X, resp = data(6)
    a = chunk_moments(X, resp, True, 300.0, 0.0)
    b = moments(X, resp)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_bad_input_names_the_argument():
    X, resp = data(7, n=20)
    m = moments(X, resp)
    with pytest.raises(TypeError, match="stats must be a lvmref.mixture_stats.Moments"):
        check_moments((1, 2))
    with pytest.raises(ValueError, match=r"a.scatter must have shape"):
        merge_moments(m._replace(scatter=m.scatter[:, :2]), m)
    with pytest.raises(ValueError, match="a and b must have the same shapes"):
        merge_moments(m, moments(X, resp, full=False))
    with pytest.raises(ValueError, match=r"m.nk must be >= 0"):
        scatter_about(m._replace(nk=-m.nk), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"b.sums contains NaN"):
        merge_moments(m, m._replace(sums=np.full_like(m.sums, np.nan)))
    with pytest.raises(ValueError, match=r"points must have shape"):
        scatter_about(m, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="c must be >= 0"):
        scale_moments(m, -1.0)
    with pytest.raises(ValueError, match="resp must be non-negative"):
        moments(X, -resp)
    with pytest.raises(ValueError, match=r"resp must have shape \(20, \*\)"):
        moments(X, resp[:5])
    with pytest.raises(ValueError, match="X contains NaN"):
        moments(np.full((2, 2), np.nan), np.ones((2, 1)))
    with pytest.raises(ValueError, match="total must be >= 0"):
        moments(X, resp, total=-1.0)
