"""Numba GMM kernels agree with their NumPy twins; M-step sums are thread-count independent.

Tolerances are derived from round-off: a sum of m floating terms computed in two
different orders differs by at most ~ m * eps * sum|terms| (we use 4 m eps sum|terms|);
the E-step kernels use the same summation order as the twins up to the exp/log
implementations, so they agree to a few ulps of the magnitudes involved.
"""

import numba
import numpy as np
import pytest
from scipy.special import logsumexp

from lvmref.kernels import gmm as kg

EPS = np.finfo(float).eps


def _problem(seed, n=2600, d=5, k=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    means = rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d))
    cov = a @ np.swapaxes(a, 1, 2) + d * np.eye(d)
    low = np.linalg.cholesky(cov)
    u = np.stack([np.linalg.inv(lk).T for lk in low])
    u = np.triu(u)  # exact zeros below the diagonal (inverse round-off)
    pdiag = rng.uniform(0.3, 2.0, size=(k, d))
    const = rng.normal(size=k) * 3.0
    resp = rng.dirichlet(np.ones(k), size=n)
    return X, means, u, pdiag, const, resp


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_log_prob_and_estep_full_agree(seed):
    X, means, u, _, const, _ = _problem(seed)
    a_nb = kg.weighted_log_prob_full_nb(X, means, u, const)
    a_np = kg.weighted_log_prob_full_np(X, means, u, const)
    scale = np.abs(a_np) + 1.0
    assert np.all(np.abs(a_nb - a_np) <= 64 * EPS * scale)
    r_nb, ln_nb = kg.estep_full_nb(X, means, u, const)
    r_np, ln_np = kg.estep_full_np(X, means, u, const)
    assert np.all(np.abs(ln_nb - ln_np) <= 64 * EPS * (np.abs(ln_np) + 1.0))
    assert np.all(np.abs(r_nb - r_np) <= 64 * EPS)
    # the fused kernel equals scipy's log-sum-exp of the unfused kernel
    ref = logsumexp(a_np, axis=1)
    assert np.all(np.abs(ln_nb - ref) <= 64 * EPS * (np.abs(ref) + 1.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_log_prob_and_estep_diag_agree(seed):
    X, means, _, pdiag, const, _ = _problem(seed)
    a_nb = kg.weighted_log_prob_diag_nb(X, means, pdiag, const)
    a_np = kg.weighted_log_prob_diag_np(X, means, pdiag, const)
    assert np.all(np.abs(a_nb - a_np) <= 64 * EPS * (np.abs(a_np) + 1.0))
    r_nb, ln_nb = kg.estep_diag_nb(X, means, pdiag, const)
    r_np, ln_np = kg.estep_diag_np(X, means, pdiag, const)
    assert np.all(np.abs(ln_nb - ln_np) <= 64 * EPS * (np.abs(ln_np) + 1.0))
    assert np.all(np.abs(r_nb - r_np) <= 64 * EPS)


def test_estep_extreme_offsets_do_not_underflow():
    """Weighted log densities around -1e4 (exp underflows) still normalise exactly."""
    X, means, u, pdiag, _, _ = _problem(3, n=300)
    const = np.array([-1e4, -1e4 - 5.0, -2e4, -1e4 + 0.5])
    for f, fac in ((kg.estep_full_nb, u), (kg.estep_diag_nb, pdiag)):
        resp, ln = f(X, means, fac, const)
        assert np.all(np.isfinite(ln)) and np.all(np.isfinite(resp))
        np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=8 * EPS)
        a = (kg.weighted_log_prob_full_np if fac is u else kg.weighted_log_prob_diag_np)(
            X, means, fac, const
        )
        with np.errstate(under="ignore"):
            ref = logsumexp(a, axis=1)
        assert np.all(np.abs(ln - ref) <= 64 * EPS * np.abs(ref))


@pytest.mark.parametrize("n", [1, 7, 1024, 2600])
def test_sufficient_statistics_agree(n):
    X, means, _, _, _, resp = _problem(5, n=n)
    nk, sk = kg.first_moments_nb(X, resp)
    nk2, sk2 = kg.first_moments_np(X, resp)
    assert np.all(np.abs(nk - nk2) <= 4 * n * EPS * nk2)
    bound = 4 * n * EPS * (np.abs(resp).T @ np.abs(X))
    assert np.all(np.abs(sk - sk2) <= bound)
    m = sk2 / nk2[:, None]
    s_nb = kg.scatter_full_nb(X, resp, m)
    s_np = kg.scatter_full_np(X, resp, m)
    absd = np.abs(X[:, None, :] - m[None])  # (n, k, d)
    mag = np.einsum("nk,nkl,nkj->klj", resp, absd, absd)
    assert np.all(np.abs(s_nb - s_np) <= 4 * n * EPS * mag)
    assert np.array_equal(s_nb, np.swapaxes(s_nb, 1, 2))
    d_nb = kg.scatter_diag_nb(X, resp, m)
    d_np = kg.scatter_diag_np(X, resp, m)
    magd = np.einsum("nk,nkj->kj", resp, absd**2)
    assert np.all(np.abs(d_nb - d_np) <= 4 * n * EPS * magd)


def test_results_do_not_depend_on_thread_count():
    X, means, u, pdiag, const, resp = _problem(7, n=5000)
    before = numba.get_num_threads()
    outs = []
    try:
        for t in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            outs.append(
                (
                    kg.estep_full_nb(X, means, u, const),
                    kg.estep_diag_nb(X, means, pdiag, const),
                    kg.first_moments_nb(X, resp),
                    kg.scatter_full_nb(X, resp, means),
                    kg.scatter_diag_nb(X, resp, means),
                )
            )
    finally:
        numba.set_num_threads(before)
    outs.append(
        (
            kg.estep_full_nb_serial(X, means, u, const),
            kg.estep_diag_nb_serial(X, means, pdiag, const),
            kg.first_moments_nb_serial(X, resp),
            kg.scatter_full_nb_serial(X, resp, means),
            kg.scatter_diag_nb_serial(X, resp, means),
        )
    )
    # parallel builds with 1 and all threads and the serial builds: bit-identical
    flat = [np.concatenate([np.ravel(a) for a in _flatten(o)]) for o in outs]
    for f in flat[1:]:
        assert np.array_equal(f, flat[0])


def _flatten(obj):
    if isinstance(obj, tuple):
        for o in obj:
            yield from _flatten(o)
    else:
        yield obj


@pytest.mark.parametrize("d", [1, 3, 10, kg.MAX_UNROLL])
def test_unrolled_full_estep_is_bitwise_the_generic_kernel(d):
    """The unrolled E-step (generated for d features) performs the generic kernel's
    operations in the same order: equal bits, serial and parallel builds, any threads."""
    X, means, u, _, const, _ = _problem(11 + d, n=700, d=d, k=3)
    ref = kg.estep_full_nb_serial(X, means, u, const)
    before = numba.get_num_threads()
    try:
        for t in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            for f in (kg.estep_full_unrolled_nb, kg.estep_full_unrolled_nb_serial):
                got = f(X, means, u, const, kg._DTUPS[d])
                assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
    finally:
        numba.set_num_threads(before)
    got = kg.estep_full(X, means, u, const)  # the dispatcher
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])


def test_estep_full_beyond_the_unrolled_sizes_uses_the_generic_kernel():
    X, means, u, _, const, _ = _problem(5, n=300, d=kg.MAX_UNROLL + 1, k=2)
    got = kg.estep_full(X, means, u, const)
    ref = kg.estep_full_nb_serial(X, means, u, const)
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
    src = kg._maha_full_source(3)  # the generated source is plain, readable Python
    assert "y += d2 * u2_2" in src and src.count("q += y * y") == 2


def _block_abs_moments(X, resp, centres=None):
    """Per block: sum_i r_ik |x_i - c| (nb, k, d) with c = 0 or the given (nb, k, d)."""
    n, d = X.shape
    nb = (n + kg.BLOCK - 1) // kg.BLOCK
    out = np.zeros((nb, resp.shape[1], d))
    for b in range(nb):
        xb, rb = X[b * kg.BLOCK:(b + 1) * kg.BLOCK], resp[b * kg.BLOCK:(b + 1) * kg.BLOCK]
        c = 0.0 if centres is None else centres[b][None]
        out[b] = np.einsum("nk,nkj->kj", rb, np.abs(xb[:, None, :] - c))
    return out


@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("n", [7, 2600])
def test_one_pass_moments_match_the_two_pass_kernels(offset, n):
    """Block partials (M1)-(M3): kernel = twin, and the combined N_k, mu_k and centred
    scatter equal the two-pass first moments + scatter within gamma-type bounds (every
    intermediate of either is a sum of at most n terms of magnitude <= 4 x the centred
    one: |x - c_b| <= |x - mu| + |c_b - mu| and n_b |c_b - mu|^2 <= sum_b r |x - mu|^2),
    also for data far from the origin (offset), where an uncentred formula would not."""
    X, means, _, _, _, resp = _problem(8, n=n)
    X = X + offset
    resp = np.asfortranarray(resp)  # as the E-step returns it
    guard = 10 * EPS
    for full, nb_f, np_f in ((True, kg.moment_partials_full_nb, kg.moment_partials_full_np),
                             (False, kg.moment_partials_diag_nb, kg.moment_partials_diag_np)):
        pa, pb = nb_f(X, resp), np_f(X, resp)
        m_block = min(n, kg.BLOCK)
        assert np.all(np.abs(pa[0] - pb[0]) <= 4 * m_block * EPS * pb[0])
        absx = _block_abs_moments(X, resp)
        assert np.all(np.abs(pa[1] - pb[1]) <= 4 * m_block * EPS * absx)
        # e_b = s_b - n_b c_b is ~0; it moves with the centre: |d e| <= n_b |d c|
        assert np.all(np.abs(pa[2] - pb[2]) <= 16 * m_block * EPS * absx)
        nk, mu, sc = kg.combine_moments(*pa, guard)
        nk2, sk2 = kg.first_moments_nb(X, resp)
        nk2 = nk2 + guard
        mu2 = sk2 / nk2[:, None]
        assert np.all(np.abs(nk - nk2) <= 4 * n * EPS * nk2)
        assert np.all(np.abs(mu - mu2) <= 4 * n * EPS * (np.abs(resp).T @ np.abs(X)) / nk2[:, None])
        absd = np.abs(X[:, None, :] - mu2[None])
        if full:
            ref = kg.scatter_full_nb(X, resp, mu2)
            mag = np.einsum("nk,nkl,nkj->klj", resp, absd, absd)
            assert np.array_equal(sc, np.swapaxes(sc, 1, 2))
        else:
            ref = kg.scatter_diag_nb(X, resp, mu2)
            mag = np.einsum("nk,nkj->kj", resp, absd**2)
        assert np.all(np.abs(sc - ref) <= 16 * n * EPS * mag)


def test_one_pass_moments_do_not_depend_on_thread_count():
    X, _, _, _, _, resp = _problem(9, n=5000)
    before = numba.get_num_threads()
    outs = []
    try:
        for t in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            outs.append(kg.moment_partials_full_nb(X, resp) + kg.moment_partials_diag_nb(X, resp))
    finally:
        numba.set_num_threads(before)
    outs.append(kg.moment_partials_full_nb_serial(X, resp)
                + kg.moment_partials_diag_nb_serial(X, resp))
    for o in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(o, outs[0]))


@pytest.mark.parametrize("d", [5, 20])  # unrolled (d <= MAX_UNROLL) and generic full kernel
def test_estep_out_buffers_give_the_same_results(d, monkeypatch):
    X, means, u, pdiag, const, _ = _problem(7, n=1000, d=d)
    for f, fac in ((kg.estep_full, u), (kg.estep_diag, pdiag)):
        ref_r, ref_l = f(X, means, fac, const)
        out = kg.estep_buffers(X.shape[0], means.shape[0])
        out[0][...] = np.nan  # stale contents must not leak into the result
        out[1][...] = np.nan
        r, ln = f(X, means, fac, const, out=out)
        assert np.shares_memory(r, out[0]) and np.shares_memory(ln, out[1])
        assert np.array_equal(r, ref_r) and np.array_equal(ln, ref_l)
    # the NumPy-twin path (what NUMBA_DISABLE_JIT=1 runs) fills the buffers too
    monkeypatch.setattr(kg, "pick", lambda nb, twin, **kw: twin)
    for f, twin, fac in ((kg.estep_full, kg.estep_full_np, u),
                         (kg.estep_diag, kg.estep_diag_np, pdiag)):
        out = kg.estep_buffers(X.shape[0], means.shape[0])
        r, ln = f(X, means, fac, const, out=out)
        want_r, want_l = twin(X, means, fac, const)
        assert np.shares_memory(r, out[0])
        assert np.array_equal(r, want_r) and np.array_equal(ln, want_l)


@pytest.mark.parametrize("n", [2600, 130, 1])  # partial last block / sub-block, one row
def test_em_partials_equal_estep_then_partials_bitwise(n):
    """The one-pass E-step + partials kernels run the same operations on the same blocks
    as the two separate kernels: bitwise equal log p(x_i) and partials, serial and
    parallel builds alike."""
    X, means, u, pdiag, const, _ = _problem(8, n=n, d=5, k=4)
    for full, fac, estep, parts_of in ((True, u, kg.estep_full, kg.moment_partials_full),
                                       (False, pdiag, kg.estep_diag,
                                        kg.moment_partials_diag)):
        resp, ref_ln = estep(X, means, fac, const)
        ref = parts_of(X, resp)
        kernels = ((kg.em_partials_full_nb, kg.em_partials_full_nb_serial) if full else
                   (kg.em_partials_diag_nb, kg.em_partials_diag_nb_serial))
        for f in kernels:
            ln = np.full(n, np.nan)
            args = (X, means, fac, const) + (((0,) * 5,) if full else ()) + (ln,)
            got = f(*args)
            assert np.array_equal(ln, ref_ln)
            for a, b in zip(got, ref):
                assert np.array_equal(a, b)
        ln, got = kg.em_partials(X, means, fac, const, full)
        assert np.array_equal(ln, ref_ln) and all(np.array_equal(a, b) for a, b in zip(got, ref))
