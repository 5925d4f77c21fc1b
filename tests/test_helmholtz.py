"""Helmholtz machine: densities vs brute force, gradients vs finite differences,
REINFORCE unbiasedness vs enumeration, sampler chi-square, the SGD update, the two fit
engines, persistence and bad input. (Kernels vs sgd_update: tests/kernels/test_helmholtz.py;
the noise protocol: tests/test_helmholtz_training.py.)"""

import itertools
import re

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

from lvmref import helmholtz as H
from lvmref.datasets import bars, bars_table
from lvmref.estimators import kl_data_model
from lvmref.helmholtz import Architecture, HelmholtzMachine, NVILBaseline, NVILState
from lvmref.persistence import save_model
from lvmref.testing import assert_grad_close

ARCHS = [
    Architecture((3, 5)),                                  # single latent layer (the seed)
    Architecture((1, 2, 4)),                               # layered sigmoid belief net
    Architecture((2, 3, 4), hidden=(3,), recognition_hidden=(2, 3), activation="tanh"),
]


def _model(arch, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    m = HelmholtzMachine(arch.layer_sizes, arch.hidden, arch.recognition_hidden,
                         arch.activation, rng=rng)
    # non-zero biases/priors so every term of the gradients is exercised
    m.params = {k: v + scale * rng.standard_normal(v.shape) for k, v in m.params.items()}
    return m


def _all_binary(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def _brute_log_joint_sbn(params, sizes, x, z):
    """log p(x, z) of a sigmoid belief net as an explicit product of probabilities."""
    hs = np.split(np.concatenate([z, x]), np.cumsum(sizes)[:-1])
    p = expit(params["prior"])
    prob = np.prod(np.where(hs[0] == 1, p, 1 - p))
    for l in range(len(sizes) - 1):
        p = expit(hs[l] @ params[f"gen{l}.W0"] + params[f"gen{l}.b0"])
        prob *= np.prod(np.where(hs[l + 1] == 1, p, 1 - p))
    return np.log(prob)


_NP_ACT = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "sigmoid": expit,
           "softplus": lambda a: np.logaddexp(0.0, a), "identity": lambda a: a}


def _np_mlp(params, prefix, n_layers, act, h):
    """y = x @ W + b per layer, the activation between layers (module docstring layout)."""
    for i in range(n_layers):
        h = h @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"]
        if i < n_layers - 1:
            h = _NP_ACT[act](h)
    return h


def _log_bern_explicit(h, a):
    """sum_j log P(h_j) with P(1) = sigmoid(a_j), P(0) = 1 - sigmoid(a_j), written out
    (fine for the moderate logits of these tests)."""
    p = expit(a)
    return np.sum(np.log(np.where(h == 1, p, 1.0 - p)), axis=-1)


def _brute_log_joint(params, arch, x, z):
    """log p(x, z), eq. (3), for any architecture: rows x (n, D), z (n, K) -> (n,)."""
    hs = np.split(np.concatenate([z, x], axis=1), np.cumsum(arch.layer_sizes)[:-1], axis=1)
    out = _log_bern_explicit(hs[0], np.broadcast_to(params["prior"], hs[0].shape))
    for l in range(arch.n_layers):
        a = _np_mlp(params, f"gen{l}.", len(arch.hidden) + 1, arch.activation, hs[l])
        out = out + _log_bern_explicit(hs[l + 1], a)
    return out


def _brute_log_q(params, arch, x, z):
    """log q(z | x), eq. (5), for any architecture -> (n,)."""
    hs = np.split(np.concatenate([z, x], axis=1), np.cumsum(arch.layer_sizes)[:-1], axis=1)
    out = np.zeros(x.shape[0])
    for l in range(arch.n_layers):
        c = _np_mlp(params, f"rec{l}.", len(arch.recognition_hidden) + 1, arch.activation,
                    hs[l + 1])
        out = out + _log_bern_explicit(hs[l], c)
    return out


# ---------------------------------------------------------------- densities

@pytest.mark.parametrize("arch", ARCHS[:2], ids=["single", "layered"])
def test_log_joint_matches_explicit_product(arch):
    m = _model(arch)
    rng = np.random.default_rng(1)
    x = (rng.random((6, arch.n_features)) < 0.5).astype(float)
    z = (rng.random((6, arch.n_latent)) < 0.5).astype(float)
    got = H.log_joint(m.params, x, z, arch)
    want = [_brute_log_joint_sbn(m.params, arch.layer_sizes, x[i], z[i]) for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_log_joint_and_log_q_match_a_numpy_twin(arch):
    """Eqs. (3) and (5) for every architecture, the MLP ones included, against the NumPy
    forward pass and explicit Bernoulli probabilities written in this file. Tolerance:
    log(1 - sigmoid(a)) loses ~e^|a| u relative for the logits here (|a| < 8: 3e3 u),
    summed over <= 9 units: 1e-12 relative to the sum of |terms| (~5e3 u)."""
    m = _model(arch)
    rng = np.random.default_rng(1)
    x = (rng.random((8, arch.n_features)) < 0.5).astype(float)
    z = (rng.random((8, arch.n_latent)) < 0.5).astype(float)
    for ours, ref in ((H.log_joint, _brute_log_joint), (H.log_q, _brute_log_q)):
        want = ref(m.params, arch, x, z)
        got = ours(m.params, x, z, arch)
        assert np.all(np.abs(got - want) <= 1e-12 * (np.abs(want) + 1)), (ours, got - want)


def test_confident_prior_terms_keep_full_relative_accuracy():
    """log sigma(35) = -log1p(e^-35) = -6.3e-16: the prior term of eq. (3) in the form
    h b - softplus(b) would give 0 (35 - 35.000...), losing everything."""
    m = HelmholtzMachine((2, 3), init_scale=0.0)
    m.params["prior"][:] = [35.0, -35.0]
    z = np.array([[[1.0, 0.0]]])
    exact = -2.0 * np.log1p(np.exp(-35.0))
    assert m.log_prior(z)[0, 0] == pytest.approx(exact, rel=1e-15, abs=0)
    m.params["gen0.b0"][:] = 35.0                      # confident pixels, all on
    want = 5 * -np.log1p(np.exp(-35.0))
    assert m.log_joint(np.ones((1, 3)), z)[0, 0] == pytest.approx(want, rel=1e-15, abs=0)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_joint_and_q_are_normalised(arch):
    """sum_x sum_z p(x, z) = 1 and sum_z q(z | x) = 1, by enumeration."""
    m = _model(arch)
    xs, zs = _all_binary(arch.n_features), _all_binary(arch.n_latent)
    lj = m.log_joint(xs, zs[None])
    assert logsumexp(lj) == pytest.approx(0.0, abs=1e-12)
    lq = m.log_q(xs, zs[None])
    np.testing.assert_allclose(logsumexp(lq, axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_log_prior_is_the_marginal_of_the_joint(arch):
    """log p(z) = logsumexp_x log p(x, z) (enumerated over all x)."""
    m = _model(arch)
    zs = _all_binary(arch.n_latent)
    xs = _all_binary(arch.n_features)
    lj = m.log_joint(xs, zs[None])                       # (2^D, 2^K)
    np.testing.assert_allclose(m.log_prior(zs[None])[0], logsumexp(lj, axis=0), rtol=1e-12,
                               atol=1e-12)


def test_broadcast_z_over_rows_matches_per_row():
    m = _model(ARCHS[2])
    rng = np.random.default_rng(2)
    x = (rng.random((3, 4)) < 0.5).astype(float)
    z = (rng.random((1, 5, 5)) < 0.5).astype(float)
    full = np.broadcast_to(z, (3, 5, 5))
    np.testing.assert_array_equal(m.log_joint(x, z), m.log_joint(x, full))
    np.testing.assert_array_equal(m.log_q(x, z), m.log_q(x, full))
    for i in range(3):
        np.testing.assert_array_equal(
            m.log_joint(x, z)[i], H.log_joint(m.params, np.repeat(x[i:i + 1], 5, 0), z[0],
                                              m.arch))


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_elbo_below_exact_log_marginal(arch):
    """ELBO(q) <= log p(x) for every x, both by enumeration (exact inequality)."""
    m = _model(arch)
    xs = _all_binary(arch.n_features)
    log_px = logsumexp(m.log_joint(xs, _all_binary(arch.n_latent)[None]), axis=1)
    elbo = H.exact_elbo(m.params, xs, arch)
    assert np.all(elbo <= log_px + 1e-12)
    assert np.all(elbo < log_px)  # q is not the posterior here


def _logmeanexp_and_se(log_w):
    """log mean_s w_s per row and its delta-method standard error sd(w) / (sqrt(k) mean w),
    computed here from the samples (not by the estimator under test)."""
    k = log_w.shape[1]
    value = logsumexp(log_w, axis=1) - np.log(k)
    rho = np.exp(log_w - value[:, None])
    return value, rho.std(axis=1, ddof=1) / np.sqrt(k)


def test_plugs_into_estimators():
    """Protocol check through lvmref.estimators: exact log p(x) = brute-force logsumexp;
    importance sampling and naive MC within a z-bound of it, with the standard errors
    computed in the test from brute-force log weights of the same samples; the IWAE
    bound below it. (The samplers themselves: chi-square tests below.)"""
    from lvmref import estimators as E

    arch = ARCHS[2]
    m = _model(arch, scale=0.5)
    xs = _all_binary(arch.n_features)[:6]
    zs = _all_binary(arch.n_latent)
    n, k = len(xs), 4000
    lj = np.stack([_brute_log_joint(m.params, arch, np.repeat(x[None], len(zs), 0), zs)
                   for x in xs])
    brute = logsumexp(lj, axis=1)
    np.testing.assert_allclose(E.exact_log_marginal(m, xs), brute, rtol=1e-12)

    def brute_log_w(z, proposal):
        xr = np.repeat(xs, z.shape[1], axis=0)
        zr = z.reshape(-1, arch.n_latent)
        lw = _brute_log_joint(m.params, arch, xr, zr)
        if proposal == "q":
            return (lw - _brute_log_q(m.params, arch, xr, zr)).reshape(n, -1)
        # naive MC weights are log p(x | z): the last generative layer's term alone
        top = zr[:, arch.n_latent - arch.layer_sizes[-2]:]
        last = _np_mlp(m.params, f"gen{arch.n_layers - 1}.", len(arch.hidden) + 1,
                       arch.activation, top)
        return _log_bern_explicit(xr, last).reshape(n, -1)

    z_q = m.sample_q(xs, k, rng=np.random.default_rng(0))
    z_p = np.broadcast_to(m.sample_prior(1, k, rng=np.random.default_rng(2)),
                          (n, k, arch.n_latent))
    for est, lw in ((E.importance_log_marginal(m, xs, z=z_q), brute_log_w(z_q, "q")),
                    (E.naive_mc_log_marginal(m, xs, z=z_p), brute_log_w(z_p, "prior"))):
        value, se = _logmeanexp_and_se(lw)
        assert np.all(np.abs(value - brute) < 4.5 * se)  # the estimator is consistent ...
        # ... and ours computes that value and its stderr (eq. 7): both are sums of k
        # terms each within ~1e-12 relative of the brute-force ones
        np.testing.assert_allclose(est.value, value, rtol=1e-12)
        np.testing.assert_allclose(est.stderr, se, rtol=1e-9)
    elbo = H.exact_elbo(m.params, xs, arch)
    q = np.exp(np.stack([_brute_log_q(m.params, arch, np.repeat(x[None], len(zs), 0), zs)
                         for x in xs]))
    lq = np.log(q)
    np.testing.assert_allclose(elbo, np.sum(q * (lj - lq), axis=1), rtol=1e-12)
    # ELBO <= L_5 <= log p(x) (Burda et al. 2015, Thm 1): per-set L_5 estimates are
    # i.i.d. with mean L_5, so each side is checked with the sd of the sets over sqrt(R)
    R = 400
    z5 = m.sample_q(xs, 5 * R, rng=np.random.default_rng(1))
    iw = E.iwae_bound(m, xs, 5, z=z5)
    per_set = (logsumexp(brute_log_w(z5, "q").reshape(n, R, 5), axis=2) - np.log(5))
    value, se = per_set.mean(axis=1), per_set.std(axis=1, ddof=1) / np.sqrt(R)
    np.testing.assert_allclose(iw.value, value, rtol=1e-12)
    assert np.all(value < brute + 4 * se)
    assert np.all(value > elbo - 4 * se)


# ---------------------------------------------------------------- samplers

def _chi2_pvalue(counts, probs):
    """Pearson chi-square p-value; cells with expected count < 5 pooled into one."""
    n = counts.sum()
    keep = probs * n >= 5
    obs, exp = counts[keep], probs[keep] * n
    if not keep.all():
        obs, exp = np.append(obs, counts[~keep].sum()), np.append(exp, probs[~keep].sum() * n)
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


@pytest.mark.parametrize("arch", ARCHS[1:], ids=["layered", "mlp"])
def test_ancestral_samples_match_exact_distribution(arch):
    m = _model(arch, scale=0.5)
    n = 100_000
    z, x = m.sample(n, rng=np.random.default_rng(3))
    zx = np.concatenate([z, x], axis=1)
    codes = (zx @ (2 ** np.arange(zx.shape[1])[::-1])).astype(int)
    allzx = _all_binary(zx.shape[1])  # same code order
    K = arch.n_latent
    p = np.exp(_brute_log_joint(m.params, arch, allzx[:, K:], allzx[:, :K]))
    assert _chi2_pvalue(np.bincount(codes, minlength=len(p)), p) > 1e-3


def test_q_samples_match_exact_q():
    arch = ARCHS[2]
    m = _model(arch, scale=0.5)
    x = np.array([[1.0, 0.0, 1.0, 1.0]])
    n = 100_000
    z = m.sample_q(x, n, rng=np.random.default_rng(4))[0]
    codes = (z @ (2 ** np.arange(arch.n_latent)[::-1])).astype(int)
    zs = _all_binary(arch.n_latent)
    q = np.exp(_brute_log_q(m.params, arch, np.repeat(x, len(zs), 0), zs))
    assert _chi2_pvalue(np.bincount(codes, minlength=len(q)), q) > 1e-3


def test_explicit_uniforms_give_threshold_samples():
    m = _model(Architecture((2, 3)))
    u = np.random.default_rng(5).random((4, 5))
    z, x = m.sample(4, u=u)
    p0 = expit(m.params["prior"])
    np.testing.assert_array_equal(z, (u[:, :2] < p0).astype(float))
    px = expit(z @ m.params["gen0.W0"] + m.params["gen0.b0"])
    np.testing.assert_array_equal(x, (u[:, 2:] < px).astype(float))
    np.testing.assert_array_equal(m.sample_prior(4, 1, u=u[:, None])[:, 0], z)


# ---------------------------------------------------------------- gradients vs FD

def _data(arch, n=5, seed=6):
    rng = np.random.default_rng(seed)
    return ((rng.random((n, arch.n_features)) < 0.5).astype(float),
            (rng.random((n, arch.n_latent)) < 0.5).astype(float))


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_wake_gradient_matches_finite_differences(arch):
    m = _model(arch)
    x, z = _data(arch)
    w = np.linspace(0.5, 1.5, len(x))
    gen = {k: v for k, v in m.params.items() if not k.startswith("rec")}

    def f(p):
        return float(w @ H.log_joint({**m.params, **p}, x, z, arch))

    grad = H.wake_grad(m.params, x, z, arch, w)
    assert set(grad) == set(gen)
    assert_grad_close(f, gen, grad, richardson=True, rtol=1e-8)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_sleep_gradient_matches_finite_differences(arch):
    m = _model(arch)
    x, z = _data(arch, seed=7)
    rec = {k: v for k, v in m.params.items() if k.startswith("rec")}

    def f(p):
        return float(np.sum(H.log_q({**m.params, **p}, x, z, arch)))

    grad = H.sleep_grad(m.params, x, z, arch)
    assert set(grad) == set(rec)
    assert_grad_close(f, rec, grad, richardson=True, rtol=1e-8)


def test_wake_delta_rule_for_sigmoid_units():
    """Without hidden layers eq. (7) is dW = h^T (x - sigmoid(h W + b))."""
    arch = Architecture((3, 5))
    m = _model(arch)
    x, z = _data(arch)
    g = H.wake_grad(m.params, x, z, arch)
    r = x - expit(z @ m.params["gen0.W0"] + m.params["gen0.b0"])
    np.testing.assert_allclose(g["gen0.W0"], z.T @ r, rtol=1e-13)
    np.testing.assert_allclose(g["prior"], np.sum(z - expit(m.params["prior"]), 0), rtol=1e-13)


@pytest.mark.parametrize("arch", ARCHS[1:], ids=["layered", "mlp"])
def test_rws_gradients_are_gradients_of_iwae_bound_at_fixed_samples(arch):
    """sum_s omega_s grad_theta log p = grad_theta log sum_s w_s, and
    sum_s omega_s grad_phi log q = -grad_phi log sum_s w_s (z held fixed)."""
    m = _model(arch)
    rng = np.random.default_rng(8)
    x = (rng.random((3, arch.n_features)) < 0.5).astype(float)
    z = m.sample_q(x, 4, rng)

    def iwae(p):
        return float(np.sum(logsumexp(H.log_weights({**m.params, **p}, x, z, arch), axis=1)))

    grads, log_px = H.rws_grads(m.params, x, z, arch)
    np.testing.assert_allclose(log_px, logsumexp(H.log_weights(m.params, x, z, arch), 1)
                               - np.log(4), rtol=1e-13)
    gen = {k: v for k, v in m.params.items() if not k.startswith("rec")}
    rec = {k: v for k, v in m.params.items() if k.startswith("rec")}
    assert_grad_close(iwae, gen, {k: grads[k] for k in gen}, richardson=True, rtol=1e-8)
    assert_grad_close(iwae, rec, {k: -grads[k] for k in rec}, richardson=True, rtol=1e-8)


# ---------------------------------------------------------------- REINFORCE

def _brute_elbo(params, arch, x):
    """ELBO = sum_z q(z | x) (log p(x, z) - log q(z | x)), enumerated with the NumPy twin."""
    zs = _all_binary(arch.n_latent)
    out = 0.0
    for row in x:
        xr = np.repeat(row[None], len(zs), 0)
        lq = _brute_log_q(params, arch, xr, zs)
        out += np.sum(np.exp(lq) * (_brute_log_joint(params, arch, xr, zs) - lq))
    return out


def _exact_elbo_grad(m, x):
    """ELBO gradient: Richardson central differences of the ELBO enumerated with the NumPy
    twin of this file (not lvmref's exact_elbo); error ~1e-10, far below the Monte Carlo
    standard errors it is compared with. (The exact match of the estimator's enumerated
    mean with PyTorch autograd is in tests/test_helmholtz_autograd.py.)"""

    def f(k, v):
        return float(_brute_elbo({**m.params, k: v}, m.arch, x))

    out = {}
    h = np.finfo(float).eps ** 0.2
    for k, v in m.params.items():
        g = np.empty(v.size)
        for i in range(v.size):
            e = np.zeros(v.size)
            e[i] = 1.0
            e = e.reshape(v.shape)
            d1 = (f(k, v + h * e) - f(k, v - h * e)) / (2 * h)
            d2 = (f(k, v + h / 2 * e) - f(k, v - h / 2 * e)) / h
            g[i] = (4 * d2 - d1) / 3
        out[k] = g.reshape(v.shape)
    return out


def _flat(d, keys):
    return np.concatenate([np.ravel(d[k]) for k in keys])


def test_reinforce_gradient_unbiased_and_baseline_reduces_variance():
    arch = Architecture((1, 2, 3))
    m = _model(arch, seed=9, scale=1.0)
    x = np.array([[1.0, 0.0, 1.0]])
    keys = list(m.params)
    exact = _flat(_exact_elbo_grad(m, x), keys)
    n = 40_000
    z = m.sample_q(x, n, rng=np.random.default_rng(10))[0]
    elbo = float(H.exact_elbo(m.params, x, arch)[0])
    results = {}
    zs = _all_binary(arch.n_latent)
    codes = (z @ (2 ** np.arange(arch.n_latent)[::-1])).astype(int)
    for name, b in (("none", 0.0), ("baseline", elbo)):
        # z takes 2^K values: per-sample gradient rows are looked up, not recomputed
        table = np.array([_flat(H.reinforce_grads(m.params, x, zs[j:j + 1], arch, b)[0], keys)
                          for j in range(len(zs))])
        per = table[codes]
        mean, se = per.mean(0), per.std(0, ddof=1) / np.sqrt(n)
        # Bonferroni over the P coordinates at overall level ~1e-3
        zcrit = stats.norm.isf(1e-3 / (2 * len(exact)))
        random = se > 0
        assert np.all(np.abs(mean - exact)[random] < zcrit * se[random]), name
        # constant coordinates (e.g. weights from pixels that are off) are exact
        np.testing.assert_allclose(mean[~random], exact[~random], atol=1e-8)
        results[name] = per
    rec = np.array([k.startswith("rec") for k in keys for _ in range(m.params[k].size)])
    # the baseline touches only the phi (recognition) coordinates (same z, same table) ...
    np.testing.assert_allclose(results["none"][:, ~rec], results["baseline"][:, ~rec],
                               rtol=1e-12)
    # ... and lowers their total variance: on the same samples, the per-sample squared
    # deviations about the exact mean differ by d_i with E[d_i] = V_none - V_baseline; the
    # reduction is significant when mean(d) exceeds z times its standard error.
    sq = {name: np.sum((per[:, rec] - exact[rec]) ** 2, axis=1) for name, per in results.items()}
    d = sq["none"] - sq["baseline"]
    assert d.mean() > 4.5 * d.std(ddof=1) / np.sqrt(n)
    # and each total variance agrees with its exact value by enumeration, within z se
    zs_q = np.exp(_brute_log_q(m.params, arch, np.repeat(x, len(zs), 0), zs))
    for name, b in (("none", 0.0), ("baseline", elbo)):
        table = np.array([_flat(H.reinforce_grads(m.params, x, zs[j:j + 1], arch, b)[0], keys)
                          for j in range(len(zs))])[:, rec]
        v_exact = zs_q @ np.sum((table - zs_q @ table) ** 2, axis=1)
        se_v = sq[name].std(ddof=1) / np.sqrt(n)
        assert abs(sq[name].mean() - v_exact) < 4.5 * se_v, name


def test_reinforce_exact_variance_reduction_by_enumeration():
    arch = Architecture((1, 2, 3))
    m = _model(arch, seed=9, scale=1.0)
    x = np.array([[1.0, 0.0, 1.0]])
    zs = _all_binary(arch.n_latent)
    q = np.exp(m.log_q(x, zs[None])[0])
    keys = [k for k in m.params if k.startswith("rec")]
    elbo = float(H.exact_elbo(m.params, x, arch)[0])

    def total_var(b):
        g = np.array([_flat(H.reinforce_grads(m.params, x, zs[i:i + 1], arch, b)[0], keys)
                      for i in range(len(zs))])
        mean = q @ g
        return float(np.sum(q @ (g - mean) ** 2)), mean

    v0, m0 = total_var(0.0)
    v1, m1 = total_var(elbo)
    np.testing.assert_allclose(m0, m1, rtol=1e-10, atol=1e-12)  # mean unchanged (exactly)
    assert v1 < v0


# ---------------------------------------------------------------- VIMCO, eqs. (14)-(15)

def _brute_log_q_sbn(params, sizes, x, z):
    """log q(z | x) of a sigmoid belief net's recognition model (eq. 5), written out."""
    hs = np.split(np.concatenate([z, x]), np.cumsum(sizes)[:-1])
    out = 0.0
    for l in range(len(sizes) - 1):
        p = expit(hs[l + 1] @ params[f"rec{l}.W0"] + params[f"rec{l}.b0"])
        out += np.sum(np.where(hs[l] == 1, np.log(p), np.log1p(-p)))
    return out


def _tuples(n_configs, k):
    return np.array(list(itertools.product(range(n_configs), repeat=k)))


def _exact_multi_sample_bound(params, sizes, x, k):
    """E[log mean_s w_s] over all k-tuples of latent configurations, weighted by their
    probability prod_s q(z_s | x): the objective whose gradient VIMCO estimates."""
    zs = _all_binary(sum(sizes[:-1]))
    lp = np.array([_brute_log_joint_sbn(params, sizes, x, z) for z in zs])
    lq = np.array([_brute_log_q_sbn(params, sizes, x, z) for z in zs])
    t = _tuples(len(zs), k)
    lw = (lp - lq)[t]
    return float(np.sum(np.exp(lq[t].sum(1)) * (logsumexp(lw, axis=1) - np.log(k))))


def _richardson_grad(f, params):
    h = np.finfo(float).eps ** 0.2
    out = {}
    for key, v in params.items():
        g = np.empty(v.size)
        for i in range(v.size):
            e = np.zeros(v.size)
            e[i] = 1.0
            e = e.reshape(v.shape)
            d1 = (f({**params, key: v + h * e}) - f({**params, key: v - h * e})) / (2 * h)
            d2 = (f({**params, key: v + h / 2 * e}) - f({**params, key: v - h / 2 * e})) / h
            g[i] = (4 * d2 - d1) / 3
        out[key] = g.reshape(v.shape)
    return out


@pytest.mark.parametrize("sizes, k", [((2, 3), 3), ((1, 2, 3), 2)], ids=["single", "layered"])
def test_vimco_is_unbiased_by_enumerating_all_k_tuples(sizes, k):
    """E[vimco_grads] over all (2^K)^k tuples of samples equals the gradient of the exact
    E[log mean_s w_s] (densities written out in the test, Richardson differences): the
    estimator is unbiased, exactly; and a Monte Carlo mean over sampled tuples lies within
    a Bonferroni z-bound of its standard error. The leave-one-out baselines (14) lower the
    exact variance of the recognition part below the plain score function's (signal
    L instead of L - L_{-j})."""
    arch = Architecture(sizes)
    m = _model(arch, seed=21, scale=1.0)
    x = np.array([[1.0, 0.0, 1.0]])
    keys = list(m.params)
    zs = _all_binary(arch.n_latent)
    t = _tuples(len(zs), k)
    table = np.array([_flat(H.vimco_grads(m.params, x, zs[row][None], arch)[0], keys)
                      for row in t])
    lq = np.array([_brute_log_q_sbn(m.params, sizes, x[0], z) for z in zs])
    prob = np.exp(lq[t].sum(1))
    exact_mean = prob @ table
    target = _flat(_richardson_grad(
        lambda p: _exact_multi_sample_bound(p, sizes, x[0], k), m.params), keys)
    np.testing.assert_allclose(exact_mean, target, rtol=0, atol=1e-8 * np.abs(target).max())
    # Monte Carlo: tuples drawn by the sampler of q, per-tuple gradients looked up
    n = 20_000
    z = m.sample_q(x, n * k, rng=np.random.default_rng(22))[0]
    codes = (z @ (2 ** np.arange(arch.n_latent)[::-1])).astype(int).reshape(n, k)
    per = table[codes @ (len(zs) ** np.arange(k)[::-1])]
    mean, se = per.mean(0), per.std(0, ddof=1) / np.sqrt(n)
    zcrit = stats.norm.isf(1e-3 / (2 * len(target)))
    random = se > 0
    assert np.all(np.abs(mean - target)[random] < zcrit * se[random])
    np.testing.assert_allclose(mean[~random], target[~random], atol=1e-8)
    # exact variance (over tuples) of the recognition part: VIMCO vs no baseline
    rec = np.array([key.startswith("rec") for key in keys for _ in range(m.params[key].size)])
    rec_keys = [key for key in keys if key.startswith("rec")]

    def plain(row):
        lw = H.log_weights(m.params, x, zs[row][None], arch)
        L = logsumexp(lw, axis=1) - np.log(k)
        omega = np.exp(lw - logsumexp(lw, axis=1))
        xr, zr = np.repeat(x, k, axis=0), zs[row]
        return _flat(H.sleep_grad(m.params, xr, zr, arch, (L - omega).ravel()), rec_keys)

    plain_table = np.array([plain(row) for row in t])
    np.testing.assert_allclose(prob @ plain_table, exact_mean[rec], rtol=0,
                               atol=1e-12 * np.abs(exact_mean[rec]).max())
    var_vimco = float(np.sum(prob @ (table[:, rec] - exact_mean[rec]) ** 2))
    var_plain = float(np.sum(prob @ (plain_table - exact_mean[rec]) ** 2))
    assert var_vimco < var_plain


def test_vimco_generative_part_is_rws_and_signals_are_leave_one_out():
    """The theta part of (15) is the RWS gradient (10), to the bit; with k = 2 the baseline
    (14) is L with w_j replaced by the other weight, so L - L_{-j} = log (w_1 + w_2) / 2 -
    log w_{3-j}."""
    arch = ARCHS[1]
    m = _model(arch, seed=23)
    rng = np.random.default_rng(24)
    x = (rng.random((3, arch.n_features)) < 0.5).astype(float)
    z = m.sample_q(x, 5, rng)
    vg, log_px = H.vimco_grads(m.params, x, z, arch)
    rg, log_px_rws = H.rws_grads(m.params, x, z, arch)
    np.testing.assert_array_equal(log_px, log_px_rws)
    for key in vg:
        if not key.startswith("rec"):
            np.testing.assert_array_equal(vg[key], rg[key])
    z2 = z[:, :2]
    lw = H.log_weights(m.params, x, z2, arch)
    L = np.logaddexp(lw[:, 0], lw[:, 1]) - np.log(2)
    omega = np.exp(lw - np.logaddexp(lw[:, :1], lw[:, 1:]))
    weights = np.stack([L - lw[:, 1], L - lw[:, 0]], axis=1) - omega
    xr, zr = np.repeat(x, 2, axis=0), z2.reshape(6, -1)
    want = H.sleep_grad(m.params, xr, zr, arch, weights.ravel())
    got = H.vimco_grads(m.params, x, z2, arch)[0]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12,
                                   atol=1e-14 * np.abs(want[key]).max())
    with pytest.raises(ValueError, match="z"):
        H.vimco_grads(m.params, x, z[:, :1], arch)


def test_sgd_update_vimco_is_one_step_of_vimco_grads():
    arch = ARCHS[1]
    m = _model(arch, seed=25)
    rng = np.random.default_rng(26)
    x = (rng.random((4, arch.n_features)) < 0.5).astype(float)
    uq, us = rng.random((4, 3, arch.n_latent)), rng.random((4, 7))
    new, state, obj = H.sgd_update(m.params, x, uq, us, arch, "vimco", 0.3, 0.2)
    z = H.sample_q(m.params, np.repeat(x, 3, axis=0), uq.reshape(12, -1), arch)
    grads, log_px = H.vimco_grads(m.params, x, z.reshape(4, 3, -1), arch)
    for key in m.params:
        step = 0.2 if key.startswith("rec") else 0.3
        np.testing.assert_array_equal(new[key], m.params[key] + step / 4 * grads[key])
    assert obj == float(np.mean(log_px)) and state == NVILState()


# ---------------------------------------------------------------- the SGD update and engines

def _sbn_wake_sleep_by_hand(p, x, uq, us, lr, lr_q):
    """Eq. (9) for a one-latent-layer sigmoid belief net written out with expit: the
    delta rules of eqs. (7), (8) on a q sample and on a dream, steps lr/B and lr_q/B."""
    B, K = x.shape[0], p["prior"].size
    p = {k: v.copy() for k, v in p.items()}
    z = (uq < expit(x @ p["rec0.W0"] + p["rec0.b0"])).astype(float)
    dx = x - expit(z @ p["gen0.W0"] + p["gen0.b0"])
    p["prior"] += lr / B * np.sum(z - expit(p["prior"]), axis=0)
    p["gen0.W0"] += lr / B * z.T @ dx
    p["gen0.b0"] += lr / B * dx.sum(axis=0)
    zd = (us[:, :K] < expit(p["prior"])).astype(float)
    xd = (us[:, K:] < expit(zd @ p["gen0.W0"] + p["gen0.b0"])).astype(float)
    dz = zd - expit(xd @ p["rec0.W0"] + p["rec0.b0"])
    p["rec0.W0"] += lr_q / B * xd.T @ dz
    p["rec0.b0"] += lr_q / B * dz.sum(axis=0)
    return p


def test_sgd_update_wake_sleep_is_the_delta_rule_on_a_minibatch():
    arch = Architecture((3, 5))
    m = _model(arch, seed=13)
    rng = np.random.default_rng(14)
    x = (rng.random((4, 5)) < 0.5).astype(float)
    uq, us = rng.random((4, 1, 3)), rng.random((4, 8))
    got, state, obj = H.sgd_update(m.params, x, uq, us, arch, "wake-sleep", 0.3, 0.2)
    want = _sbn_wake_sleep_by_hand(m.params, x, uq[:, 0], us, 0.3, 0.2)
    for k in arch.keys():
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)
    z = (uq[:, 0] < expit(x @ m.params["rec0.W0"] + m.params["rec0.b0"])).astype(float)
    assert obj == pytest.approx(float(np.mean(
        [_brute_log_joint_sbn(m.params, arch.layer_sizes, x[i], z[i]) for i in range(4)]
        - np.sum(np.where(z == 1, np.log(expit(x @ m.params["rec0.W0"] + m.params["rec0.b0"])),
                          np.log(expit(-(x @ m.params["rec0.W0"] + m.params["rec0.b0"])))),
                 axis=1))), rel=1e-12)
    assert state == NVILState()


@pytest.mark.parametrize("method, kw", [
    ("wake-sleep", {}),
    ("reweighted", {"sleep": True}),
    ("vimco", {}),
    ("reinforce", {"baseline": NVILBaseline("input-dependent", hidden=(2,),
                                            normalize_variance=True)}),
])
def test_sgd_update_returns_new_dicts_and_leaves_its_arguments(method, kw):
    arch = ARCHS[2]
    m = _model(arch, seed=15)
    rng = np.random.default_rng(16)
    x = (rng.random((3, 4)) < 0.5).astype(float)
    k = 2 if method in ("reweighted", "vimco") else 1
    uq, us = rng.random((3, k, 5)), rng.random((3, 9))
    state = kw["baseline"].init_state(arch, 0) if "baseline" in kw else None
    before = {name: v.copy() for name, v in m.params.items()}
    psi = None if state is None else {name: v.copy() for name, v in state.psi.items()}
    new, new_state, _ = H.sgd_update(m.params, x, uq, us, arch, method, 0.1, 0.05,
                                     state=state, **kw)
    for name in before:
        np.testing.assert_array_equal(m.params[name], before[name])
    assert any(not np.array_equal(new[name], before[name]) for name in before)
    if state is not None:
        for name in psi:
            np.testing.assert_array_equal(state.psi[name], psi[name])
        assert (state.c, state.v) == (0.0, 1.0) and new_state.c != 0.0
        assert any(not np.array_equal(new_state.psi[n], psi[n]) for n in psi)


def test_sgd_update_nvil_moving_averages_eq_12():
    """c and v after one REINFORCE update are the moving averages of eq. (12) of the
    learning signals of the minibatch (recomputed independently from log p and log q)."""
    arch = Architecture((1, 2, 3))
    m = _model(arch, seed=17)
    rng = np.random.default_rng(18)
    x = (rng.random((5, 3)) < 0.5).astype(float)
    uq = rng.random((5, 1, 3))
    base = NVILBaseline(decay=0.75, normalize_variance=True)
    state = NVILState(c=-2.0, v=9.0)
    _, new, obj = H.sgd_update(m.params, x, uq, None, arch, "reinforce", 0.1, baseline=base,
                               state=state)
    z = m.sample_q(x, 1, u=uq)
    signal = (m.log_joint(x, z) - m.log_q(x, z))[:, 0]
    assert obj == pytest.approx(signal.mean(), rel=1e-13)
    assert new.c == pytest.approx(0.75 * -2.0 + 0.25 * signal.mean(), rel=1e-13)
    assert new.v == pytest.approx(0.75 * 9.0 + 0.25 * np.mean((signal + 2.0) ** 2), rel=1e-13)
    # the recognition step is (l - c) / max(1, sqrt(v)) times the score, eq. (12)
    got, _, _ = H.sgd_update(m.params, x, uq, None, arch, "reinforce", 0.1, baseline=base,
                             state=state)
    g, _ = H.reinforce_grads(m.params, x, z[:, 0], arch, -2.0, 3.0)
    np.testing.assert_allclose(got["rec0.b0"], m.params["rec0.b0"] + 0.1 / 5 * g["rec0.b0"],
                               rtol=1e-13)


def test_nvil_baseline_options_are_checked():
    with pytest.raises(ValueError, match="kind"):
        NVILBaseline("ema")
    with pytest.raises(ValueError, match="hidden"):
        NVILBaseline("moving-average", hidden=(3,))
    with pytest.raises(ValueError, match="hidden"):
        NVILBaseline("input-dependent", hidden=(0,))
    with pytest.raises(ValueError, match="decay"):
        NVILBaseline(decay=1.0)
    with pytest.raises(ValueError, match="decay"):
        NVILBaseline(decay=-0.1)
    with pytest.raises(TypeError, match="normalize_variance"):
        NVILBaseline(normalize_variance=1)
    arch = Architecture((1, 2, 3))
    with pytest.raises(ValueError, match="psi"):
        H.sgd_update(H.init_params(arch, 0), np.zeros((1, 3)), np.zeros((1, 1, 3)), None,
                     arch, "reinforce", 0.1, baseline=NVILBaseline("input-dependent"))
    assert NVILBaseline("input-dependent").init_state(arch, 0).psi["base.W0"].shape == (3, 1)


@pytest.mark.parametrize("short, full", [("moving-average", NVILBaseline()),
                                         ("none", None)])
def test_fit_baseline_names_are_the_default_options(short, full):
    kw = dict(n_updates=300, learning_rate=0.05, rng=3, engine="numpy", record_every=100)
    a = HelmholtzMachine((1, 2, 3), rng=0).fit(bars_like(3), "reinforce", baseline=short, **kw)
    b = HelmholtzMachine((1, 2, 3), rng=0).fit(bars_like(3), "reinforce", baseline=full, **kw)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.history_["objective"] == b.history_["objective"]


def bars_like(d):
    """A fixed little binary data set of d columns."""
    rng = np.random.default_rng(19)
    return (rng.random((32, d)) < np.linspace(0.2, 0.8, d)).astype(float)


@pytest.mark.parametrize("method, extra", [
    ("wake-sleep", {}),
    ("reweighted", {"k": 3, "sleep": True}),
    ("reinforce", {"baseline": NVILBaseline(normalize_variance=True)}),
])
def test_fit_numba_and_numpy_engines_agree(method, extra):
    """The kernels equal the library's general path (eqs. 7-12) on the same noise.

    (Horizon kept short: these are stochastic maps, so over very long runs one flipped
    threshold comparison u < sigmoid(a) would make the two trajectories part.)"""
    kw = dict(n_updates=400, learning_rate=0.05, recognition_learning_rate=0.02,
              record_every=200)
    a = HelmholtzMachine((1, 8, 16), rng=0).fit(bars, method, engine="numba", rng=5,
                                                **extra, **kw)
    b = HelmholtzMachine((1, 8, 16), rng=0).fit(bars, method, engine="numpy", rng=5,
                                                **extra, **kw)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.history_["objective"], b.history_["objective"], atol=1e-12)


# ---------------------------------------------------------------- training

def test_wake_sleep_learns_bars():
    table = bars_table()
    m = HelmholtzMachine((1, 8, 16), rng=1)
    kl0 = kl_data_model(table, m)
    m.fit(bars, n_updates=40_000, learning_rate=0.1, rng=2)
    kl1 = kl_data_model(table, m)
    # 13.3 bits at the start, 1.15 after 4e4 updates at these seeds (Numba or twin)
    assert kl0 > 10.0 and kl1 < 1.5


@pytest.mark.parametrize("method, extra", [
    ("reweighted", {"k": 5, "sleep": True}),
    ("reinforce", {"baseline": NVILBaseline("input-dependent", normalize_variance=True)}),
    ("reinforce", {"baseline": NVILBaseline("input-dependent", hidden=(4,))}),
    ("reinforce", {"baseline": "none"}),
    ("wake-sleep", {"batch_size": 4}),
    ("vimco", {"k": 4}),
])
def test_other_methods_improve_exact_log_likelihood(method, extra):
    arch = ARCHS[1]
    m = HelmholtzMachine(arch.layer_sizes, rng=3)
    rng = np.random.default_rng(4)
    X = (rng.random((64, 4)) < np.array([0.9, 0.1, 0.8, 0.2])).astype(float)
    zs = _all_binary(arch.n_latent)[None]

    def ll(mm):
        return float(np.mean(logsumexp(mm.log_joint(X, zs), axis=1)))

    before = ll(m)
    m.fit(X, method, n_updates=1500, batch_size=extra.pop("batch_size", 8),
          learning_rate=0.05, rng=5, record_every=500, **extra)
    assert ll(m) > before + 0.5
    assert len(m.history_["objective"]) == 3


def test_init_bias_sets_the_generative_output_biases_only():
    base = HelmholtzMachine((1, 3, 4), hidden=(2,), rng=7)
    m = HelmholtzMachine((1, 3, 4), hidden=(2,), rng=7, init_bias=(-1.5, -3.0))
    changed = {k for k in m.params if not np.array_equal(m.params[k], base.params[k])}
    assert changed == {"gen0.b1", "gen1.b1"}           # output layers of g_0 and g_1
    np.testing.assert_array_equal(m.params["gen0.b1"], np.full(3, -1.5))
    np.testing.assert_array_equal(m.params["gen1.b1"], np.full(4, -3.0))
    one = HelmholtzMachine((2, 3, 4), rng=7, init_bias=-2)
    assert all(np.all(one.params[f"gen{l}.b0"] == -2.0) for l in (0, 1))
    # with all weights zero, log p(x) is the closed form of independent Bernoulli pixels
    z = HelmholtzMachine((2, 4), init_scale=0.0, init_bias=-3.0)
    x = np.array([[1.0, 0.0, 0.0, 1.0]])
    expected = 2 * np.log(expit(-3.0)) + 2 * np.log(expit(3.0))
    zs = _all_binary(2)[None]
    np.testing.assert_allclose(logsumexp(z.log_joint(x, zs), axis=1), [expected],
                               rtol=1e-14)


@pytest.mark.parametrize("bias, err, match", [
    ((1.0, 2.0, 3.0), ValueError, "init_bias"),
    ((np.nan,), ValueError, "init_bias"),
    ("x", TypeError, "init_bias"),
    ([[1.0, 2.0]], TypeError, "init_bias"),
])
def test_init_bias_bad_input(bias, err, match):
    with pytest.raises(err, match=match):
        HelmholtzMachine((1, 3, 4), rng=0, init_bias=bias)
    with pytest.raises(err, match="bias"):
        H.init_params(Architecture((1, 3, 4)), 0, bias=bias)
    m = HelmholtzMachine((1, 3, 4), rng=0)
    with pytest.raises(ValueError, match="init_bias"):
        HelmholtzMachine((1, 3, 4), params=m.params, init_bias=-1.0)


def test_save_load_roundtrip_gives_identical_predictions(tmp_path):
    m = _model(ARCHS[2])
    path = m.save(tmp_path / "hm")
    assert path == tmp_path / "hm.npz"
    m2 = HelmholtzMachine.load(path)
    assert m2.arch == m.arch and list(m2.params) == list(m.params)
    for k in m.params:
        np.testing.assert_array_equal(m.params[k], m2.params[k])
    rng = np.random.default_rng(20)
    x = (rng.random((6, 4)) < 0.5).astype(float)
    z = (rng.random((6, 3, 5)) < 0.5).astype(float)
    u, uq = rng.random((7, 9)), rng.random((6, 3, 5))
    np.testing.assert_array_equal(m2.log_joint(x, z), m.log_joint(x, z))
    np.testing.assert_array_equal(m2.log_q(x, z), m.log_q(x, z))
    np.testing.assert_array_equal(m2.sample_q(x, 3, u=uq), m.sample_q(x, 3, u=uq))
    for a, b in zip(m2.sample(7, u=u), m.sample(7, u=u)):
        np.testing.assert_array_equal(a, b)
    sbn = _model(ARCHS[1])                      # empty hidden tuples round-trip too
    again = HelmholtzMachine.load(sbn.save(tmp_path / "sbn.npz"))
    assert again.arch == sbn.arch and again.arch.hidden == ()


def _entries(m):
    a = m.arch
    return {"layer_sizes": np.array(a.layer_sizes), "hidden": np.array(a.hidden, dtype=int),
            "recognition_hidden": np.array(a.recognition_hidden, dtype=int),
            "activation": a.activation, **m.params}


def _bad(e, key, value):
    e = dict(e)
    if value is _DROP:
        del e[key]
    else:
        e[key] = value
    return e


_DROP = object()


@pytest.mark.parametrize("change, match", [
    (lambda e: _bad(e, "gen0.W0", _DROP), "gen0.W0 is missing"),
    (lambda e: _bad(e, "layer_sizes", _DROP), "layer_sizes is missing"),
    (lambda e: _bad(e, "gen0.W0", np.zeros((3, 4))), r"parameter\['gen0.W0'\] must have shape"),
    (lambda e: _bad(e, "prior", np.array([np.nan])), "prior.*NaN"),
    (lambda e: _bad(e, "rec1.b0", np.array([np.inf, 0.0])), "rec1.b0.*infinite"),
    (lambda e: _bad(e, "prior", "abc"), "prior must be numeric"),
    (lambda e: _bad(e, "layer_sizes", np.array([1.0, 2.0, 4.0])), "layer_sizes must be a 1-D "
                                                                  "integer array"),
    (lambda e: _bad(e, "layer_sizes", np.array([1, 0, 4])), "invalid architecture.*layer_sizes"),
    (lambda e: _bad(e, "layer_sizes", np.array([2, 4])), "unexpected entries"),
    (lambda e: _bad(e, "activation", "gelu"), "invalid architecture.*activation"),
    (lambda e: _bad(e, "activation", np.array(3)), "activation must be a string"),
    (lambda e: _bad(e, "gen2.W0", np.zeros((4, 4))), r"unexpected entries \['gen2.W0'\]"),
], ids=["missing-param", "missing-arch", "shape", "nan", "inf", "string", "float-sizes",
        "zero-size", "inconsistent", "activation", "activation-type", "extra"])
def test_load_bad_files_are_value_errors_naming_the_file(tmp_path, change, match):
    m = _model(ARCHS[1])
    path = save_model(tmp_path / "bad.npz", "HelmholtzMachine", 1, change(_entries(m)))
    with pytest.raises(ValueError, match=match) as info:
        HelmholtzMachine.load(path)
    assert str(path) in str(info.value)


def test_load_wrong_kind_old_format_and_missing_file(tmp_path):
    m = _model(ARCHS[1])
    other = save_model(tmp_path / "vae.npz", "VAE", 1, _entries(m))
    with pytest.raises(ValueError, match="holds a VAE, not a HelmholtzMachine"):
        HelmholtzMachine.load(other)
    old = tmp_path / "old.npz"                  # the tag-less layout of lvmref 0.1
    np.savez(old, __layer_sizes__=np.array([1, 2, 4]), __hidden__=np.array([], dtype=int),
             __recognition_hidden__=np.array([], dtype=int), __activation__=np.array("tanh"),
             **m.params)
    with pytest.raises(ValueError, match="not an lvmref model file") as info:
        HelmholtzMachine.load(old)
    assert str(old) in str(info.value)
    newer = save_model(tmp_path / "v2.npz", "HelmholtzMachine", 2, _entries(m))
    with pytest.raises(ValueError, match="version 2 is not supported"):
        HelmholtzMachine.load(newer)
    with pytest.raises(FileNotFoundError):
        HelmholtzMachine.load(tmp_path / "absent.npz")


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def small():
    return _model(ARCHS[1])


@pytest.mark.parametrize("x, match", [
    (np.full((2, 4), np.nan), "x"),
    (np.zeros((2, 3)), "x"),
    (np.zeros(4), "x"),
    (np.zeros((0, 4)), "x"),
    (np.full((2, 4), 0.5), "x"),
    (np.full((2, 4), np.inf), "x"),
])
def test_bad_x(small, x, match):
    z = np.zeros((1, 1, 3))
    for call in (lambda: small.log_joint(x, z), lambda: small.log_q(x, z),
                 lambda: small.sample_q(x, 2, 0)):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("z", [np.zeros((2, 1, 4)), np.zeros((3, 1, 3)), np.zeros((2, 3)),
                               np.full((2, 1, 3), 2.0), np.full((2, 1, 3), np.nan)])
def test_bad_z(small, z):
    with pytest.raises(ValueError, match="z"):
        small.log_joint(np.zeros((2, 4)), z)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "em"}, "method"),
    ({"n_updates": 0}, "n_updates"),
    ({"batch_size": -1}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": np.nan}, "learning_rate"),
    ({"recognition_learning_rate": -1.0}, "recognition_learning_rate"),
    ({"k": 0, "method": "reweighted"}, "^k must"),
    ({"k": 1, "method": "vimco"}, "^k must"),
    ({"engine": "numba", "method": "vimco"}, "engine"),
    ({"sleep": 1, "method": "reweighted"}, "sleep"),
    ({"baseline": "ema"}, "baseline"),
    ({"baseline": 0.9, "method": "reinforce"}, "baseline"),
    ({"record_every": 0}, "record_every"),
    ({"engine": "cuda"}, "engine"),
    ({"engine": "numba", "batch_size": 2}, "engine"),
    ({"engine": "numba", "method": "reinforce", "baseline": "input-dependent"}, "engine"),
    ({"engine": "numba", "method": "reinforce",
      "baseline": NVILBaseline("input-dependent")}, "engine"),
    ({"rng": -3}, "rng"),
])
def test_fit_bad_arguments(small, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        small.fit(np.zeros((3, 4)), **kwargs)


def test_fit_bad_data(small):
    with pytest.raises(ValueError, match="X"):
        small.fit(np.full((3, 4), 0.3))
    with pytest.raises(ValueError, match="X"):
        small.fit(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"X\(m, rng\)"):
        small.fit(lambda m, rng: np.zeros((m, 5)), n_updates=2)


def test_constructor_and_sampler_bad_input():
    with pytest.raises(ValueError, match="layer_sizes"):
        HelmholtzMachine((4,))
    with pytest.raises(ValueError, match="layer_sizes"):
        HelmholtzMachine((0, 4))
    with pytest.raises(ValueError, match="activation"):
        HelmholtzMachine((2, 4), hidden=(3,), activation="gelu")
    with pytest.raises(ValueError, match="params"):
        HelmholtzMachine((2, 4), params={"prior": np.zeros(2)})
    with pytest.raises(ValueError, match="params"):
        m = HelmholtzMachine((2, 4), rng=0)
        HelmholtzMachine((2, 4), params={**m.params, "prior": np.zeros(3)})
    m = HelmholtzMachine((2, 4), rng=0)
    with pytest.raises(ValueError, match="u"):
        m.sample(3, u=np.full((3, 6), 1.5))
    with pytest.raises(ValueError, match="u"):
        m.sample(3, u=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="n"):
        m.sample(0)
    with pytest.raises(ValueError, match="k"):
        m.sample_q(np.zeros((1, 4)), 0)


# -- issue 15: every public entry point validates (module functions, methods) ----------

_A = Architecture((2, 5))
_M = HelmholtzMachine((2, 5), rng=0)
_X = np.array([[1.0, 0, 1, 0, 0], [0, 1, 1, 0, 1], [0, 0, 0, 0, 0]])
_Z = np.array([[1.0, 0], [0, 1], [1, 1]])
_Z3 = np.stack([_Z, 1 - _Z], axis=1)
_UQ = np.full((3, 2, 2), 0.5)
_US = np.full((3, 7), 0.5)


def _call_with(fn, args, **bad):
    return fn(**{**args, **bad})


_PXZ = {"params": _M.params, "x": _X, "z": _Z, "arch": _A}
_BAD_MODULE_CALLS = [
    # (function, valid arguments, bad argument and value, error type, word in message)
    (H.log_joint, _PXZ, {"x": np.full((3, 5), 0.5)}, ValueError, "x"),
    (H.log_joint, _PXZ, {"z": np.zeros((2, 2))}, ValueError, "z"),     # rows of x
    (H.log_joint, _PXZ, {"arch": (2, 5)}, TypeError, "arch"),
    (H.log_joint, _PXZ, {"params": {"prior": np.zeros(2)}}, ValueError, "params"),
    (H.log_prior, {"params": _M.params, "z": _Z, "arch": _A}, {"z": np.zeros((3, 3))},
     ValueError, "z"),
    (H.log_q, _PXZ, {"x": np.zeros((3, 4))}, ValueError, "x"),
    (H.sample_prior, {"params": _M.params, "u": _US, "arch": _A}, {"u": np.ones((3, 7))},
     ValueError, "u"),
    (H.sample_q, {"params": _M.params, "x": _X, "u": _UQ[:, 0], "arch": _A},
     {"u": np.full((3, 2), -0.1)}, ValueError, "u"),
    (H.wake_grad, _PXZ, {"weights": np.ones(2)}, ValueError, "weights"),
    (H.sleep_grad, _PXZ, {"weights": np.full(3, 1e151)}, ValueError, "weights"),
    (H.log_weights, {**_PXZ, "z": _Z3}, {"z": _Z}, ValueError, "z"),   # needs (n, k, K)
    (H.rws_grads, {**_PXZ, "z": _Z3}, {"z": _Z3[:, :, :1]}, ValueError, "z"),
    (H.vimco_grads, {**_PXZ, "z": _Z3}, {"z": _Z3[:, :1]}, ValueError, "z"),  # k >= 2
    (H.reinforce_grads, _PXZ, {"scale": 0.0}, ValueError, "scale"),
    (H.reinforce_grads, _PXZ, {"scale": 1e-300}, ValueError, "scale"),  # signal / scale
    (H.reinforce_grads, _PXZ, {"baseline": np.zeros(4)}, ValueError, "baseline"),
    (H.sgd_update, {"params": _M.params, "x": _X, "uq": _UQ[:, :1], "us": _US, "arch": _A},
     {"us": None}, TypeError, "us"),                                    # wake-sleep dreams
    (H.sgd_update, {"params": _M.params, "x": _X, "uq": _UQ[:, :1], "us": _US, "arch": _A,
                    "method": "vimco"}, {}, ValueError, "uq"),           # k >= 2
    (H.sgd_update, {"params": _M.params, "x": _X, "uq": _UQ, "us": _US, "arch": _A},
     {"lr": -1.0}, ValueError, "lr"),
    (H.sgd_update, {"params": _M.params, "x": _X, "uq": _UQ, "us": _US, "arch": _A},
     {"baseline": "moving-average"}, TypeError, "baseline"),
    (H.sgd_update, {"params": _M.params, "x": _X, "uq": _UQ, "us": _US, "arch": _A},
     {"state": {"c": 0.0}}, TypeError, "state"),
    (H.sgd_update, {"params": _M.params, "x": _X, "uq": _UQ, "us": _US, "arch": _A,
                    "method": "reinforce", "baseline": NVILBaseline("input-dependent")},
     {"state": NVILState(psi={"base.W0": np.zeros((5, 1))})}, ValueError, "state.psi"),
    (H.exact_elbo, {"params": _M.params, "x": _X, "arch": _A}, {"arch": None}, TypeError,
     "arch"),
    (H.init_params, {"arch": _A, "rng": 0}, {"arch": "tanh"}, TypeError, "arch"),
]


@pytest.mark.parametrize("fn, args, bad, err, word", _BAD_MODULE_CALLS,
                         ids=[f"{c[0].__name__}-{'-'.join(c[2]) or 'k'}"
                              for c in _BAD_MODULE_CALLS])
def test_module_functions_refuse_bad_input_naming_the_argument(fn, args, bad, err, word):
    with pytest.raises(err, match=rf"(?<![\w.]){re.escape(word)}(?![\w\[])"):
        _call_with(fn, args, **bad)


def test_module_functions_convert_bool_input_and_do_not_mutate_it():
    """bool/int data give the float64 results; the caller's arrays are left alone."""
    x, z = _X.astype(bool), _Z.astype(np.int64)
    before = (x.copy(), z.copy(), {k: v.copy() for k, v in _M.params.items()})
    np.testing.assert_array_equal(H.log_joint(_M.params, x, z, _A),
                                  H.log_joint(_M.params, _X, _Z, _A))
    H.sgd_update(_M.params, x, _UQ, _US, _A, "reweighted", 0.1, sleep=True)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(z, before[1])
    for k, v in before[2].items():
        np.testing.assert_array_equal(_M.params[k], v)


def test_wake_grad_with_huge_weights_is_the_scaled_gradient():
    """Weights up to 1e150 are valid; the gradient is linear in them, and for a power of
    two (2**498 < 1e150 < 2**499) every product and sum scales exactly in binary floating
    point, so the result is exactly the scaled unweighted gradient."""
    g1 = H.wake_grad(_M.params, _X, _Z, _A)
    for c in (2.0**400, 2.0**498):
        gc = H.wake_grad(_M.params, _X, _Z, _A, np.full(3, c))
        for key in g1:
            np.testing.assert_array_equal(gc[key], c * g1[key])


def test_sampler_refuses_rng_and_u_together():
    """Exactly one source of randomness: the uniforms, or a generator to draw them."""
    with pytest.raises(ValueError, match=r"rng.*\bu\b"):
        _M.sample_q(_X, 2, rng=0, u=_UQ)
    with pytest.raises(ValueError, match=r"rng.*\bu\b"):
        _M.sample(3, rng=np.random.default_rng(0), u=_US)
    # u alone reproduces the rng draw that made it
    u = np.random.default_rng(5).random((3, 2, 2))
    np.testing.assert_array_equal(_M.sample_q(_X, 2, u=u), _M.sample_q(_X, 2, rng=5))


def test_repr_names_the_constructor_arguments_like_vae():
    from lvmref.vae import VAE

    m = HelmholtzMachine((2, 3, 5), hidden=(4,), activation="relu", rng=0)
    assert repr(m) == ("HelmholtzMachine(layer_sizes=(2, 3, 5), hidden=(4,), "
                       "recognition_hidden=(), activation='relu')")
    back = eval(repr(m), {"HelmholtzMachine": HelmholtzMachine})   # noqa: S307 - our repr
    assert back.arch == m.arch
    assert eval(repr(VAE(5, 2, (3,))), {"VAE": VAE}).arch == VAE(5, 2, (3,)).arch  # noqa: S307


def test_architecture_layer_index_and_constructor_argument_names():
    a = Architecture((1, 2, 4))
    assert a.gen(1).sizes == (2, 4) and a.rec(0).sizes == (2, 1)
    for l, err in ((2, ValueError), (-1, ValueError), (0.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match=r"\bl\b"):
            a.gen(l)
    with pytest.raises(ValueError, match="init_scale"):
        HelmholtzMachine((2, 5), init_scale=-1.0)
    with pytest.raises(ValueError, match=r"\bv\b"):
        NVILState(v=-1.0)
    with pytest.raises(TypeError, match="psi"):
        NVILState(psi=[np.zeros(2)])
    with pytest.raises(TypeError, match="arch"):
        NVILBaseline("input-dependent").init_state((2, 5), 0)


def test_save_and_load_refuse_what_is_not_a_path(tmp_path):
    for bad, err in ((None, TypeError), (3, TypeError), (b"m.npz", TypeError),
                     ("", ValueError)):
        with pytest.raises(err, match="path"):
            _M.save(bad)
        with pytest.raises(err, match="path"):
            HelmholtzMachine.load(bad)
    with pytest.raises(FileNotFoundError):
        _M.save(tmp_path / "no-such-dir" / "m")
