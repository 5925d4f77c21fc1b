"""Fuzz the public API: each public function and method with bad and extreme input.

Every call must end in a ValueError/TypeError naming the argument, or a correct result
(support_fuzz.py says exactly what counts). Modules are covered by the ``CASES`` builders
below; ``test_every_public_callable_is_covered`` keeps the list complete as the API grows.
Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import importlib
import inspect
from collections import Counter

import numpy as np
import pytest
from support_fuzz import Case, run_case

import lvmref.kernels as K
from lvmref import datasets, estimators, files, linear_gaussian, nn, optim, persistence, testing
from lvmref import helmholtz as H
from lvmref import vae as V
from lvmref.helmholtz import HelmholtzMachine

rng0 = np.random.default_rng(0)
A = rng0.normal(size=(3, 4))
B = (rng0.random((3, 4)) < 0.5).astype(float)
X_BIN = (rng0.random((3, 5)) < 0.5).astype(float)


def kernel_cases():
    arr = "array"
    nan_ok = ("nan", "inf", "-inf", "ndim+1", "ndim-1", "empty", "shape")  # any shape
    return [
        Case("kernels.logsumexp", K.logsumexp, {"a": A, "axis": 1, "keepdims": False},
             {"a": arr, "keepdims": "flag"}, accept={"a": nan_ok}),
        Case("kernels.log_mean_exp", K.log_mean_exp, {"a": A, "axis": 1},
             {"a": arr}, accept={"a": nan_ok}),
        Case("kernels.log_softmax", K.log_softmax, {"a": A, "axis": 1},
             {"a": arr}, accept={"a": nan_ok}),
        Case("kernels.sigmoid", K.sigmoid, {"x": A}, {"x": arr}, accept={"x": nan_ok}),
        Case("kernels.softplus", K.softplus, {"x": A}, {"x": arr}, accept={"x": nan_ok}),
        Case("kernels.log_sigmoid", K.log_sigmoid, {"x": A}, {"x": arr}, accept={"x": nan_ok}),
        Case("kernels.bernoulli_log_prob", K.bernoulli_log_prob,
             {"x": B, "logits": A, "reduce": True},
             {"x": "array", "logits": arr, "reduce": "flag"},
             accept={"x": ("nan",), "logits": ("nan", "inf", "-inf")}),
        Case("kernels.bernoulli_logit_grad", K.bernoulli_logit_grad, {"x": B, "logits": A},
             {"x": "array", "logits": arr},
             accept={"x": ("nan",), "logits": ("nan", "inf", "-inf")}),
        Case("kernels.normal_log_prob_diag", K.normal_log_prob_diag,
             {"x": A, "mean": A.T.copy().T, "log_var": A / 3, "reduce": True},
             {"x": arr, "mean": arr, "log_var": arr, "reduce": "flag"},
             accept={k: ("nan", "inf", "-inf") for k in ("x", "mean", "log_var")}),
        Case("kernels.expm1_minus_x", K.expm1_minus_x, {"s": A}, {"s": arr},
             accept={"s": nan_ok}),
        Case("kernels.kl_normal_std", K.kl_normal_std, {"mean": A, "log_var": A / 3},
             {"mean": arr, "log_var": arr},
             accept={k: ("nan", "inf", "-inf") for k in ("mean", "log_var")}),
        Case("kernels.elbo_iwae", K.elbo_iwae, {"log_px_z": A, "log_pz": A / 2, "log_qz": A},
             {"log_px_z": arr, "log_pz": arr, "log_qz": arr},
             accept={k: ("nan", "inf", "-inf") for k in ("log_px_z", "log_pz", "log_qz")}),
    ]


def _model():
    return HelmholtzMachine((2, 5), rng=0)


def estimator_cases():
    m = _model()
    z = (rng0.random((3, 4, 2)) < 0.5).astype(float)
    log_w = rng0.normal(size=(3, 4))
    table = datasets.bars_table(size=2)
    big = HelmholtzMachine((2, 4), rng=0)
    return [
        Case("estimators.enumerate_binary", estimators.enumerate_binary, {"K": 3},
             {"K": "count"}),
        Case("estimators.exact_log_marginal", estimators.exact_log_marginal,
             {"model": m, "x": X_BIN, "chunk_size": 3}, {"x": "binary", "chunk_size": "count"},
             positional=("model", "x")),
        Case("estimators.exact_posterior", estimators.exact_posterior,
             {"model": m, "x": X_BIN, "log": True}, {"x": "binary", "log": "flag"},
             positional=("model", "x")),
        Case("estimators.exact_kl_to_posterior", estimators.exact_kl_to_posterior,
             {"model": m, "x": X_BIN}, {"x": "binary"}, positional=("model", "x")),
        Case("estimators.kl_data_model", estimators.kl_data_model,
             {"table": table, "model": big}, {}, positional=("table", "model")),
        Case("estimators.sbn_exact_log_marginal", estimators.sbn_exact_log_marginal,
             {"x": X_BIN, "prior_logits": np.zeros(2), "W": rng0.normal(size=(2, 5)),
              "b": np.zeros(5), "method": "block"},
             {"x": "binary", "prior_logits": "array", "W": "array", "b": "array",
              "method": ("choice", "block")},
             accept={"x": ("non-binary",)},  # grey levels: the cross-entropy form
             positional=("x", "prior_logits", "W", "b")),
        Case("estimators.naive_mc_log_marginal", estimators.naive_mc_log_marginal,
             {"model": m, "x": X_BIN, "k": 4, "rng": 0},
             {"x": "binary", "k": "count", "rng": "rng"}, positional=("model", "x")),
        Case("estimators.importance_log_marginal", estimators.importance_log_marginal,
             {"model": m, "x": X_BIN, "k": 4, "rng": 0},
             {"x": "binary", "k": "count", "rng": "rng"}, positional=("model", "x")),
        Case("estimators.elbo", estimators.elbo, {"model": m, "x": X_BIN, "z": z},
             {"x": "binary", "z": "binary"}, positional=("model", "x")),
        Case("estimators.iwae_bound", estimators.iwae_bound,
             {"model": m, "x": X_BIN, "k": 2, "rng": 0, "n_repeats": 2},
             {"x": "binary", "k": "count", "rng": "rng", "n_repeats": "count"},
             positional=("model", "x")),
        Case("estimators.importance_log_weights", estimators.importance_log_weights,
             {"model": m, "x": X_BIN, "z": z}, {"x": "binary", "z": "binary"},
             positional=("model", "x", "z")),
        Case("estimators.prior_log_weights", estimators.prior_log_weights,
             {"model": m, "x": X_BIN, "z": z}, {"x": "binary", "z": "binary"},
             positional=("model", "x", "z")),
        Case("estimators.log_marginal_from_log_weights",
             estimators.log_marginal_from_log_weights, {"log_w": log_w}, {"log_w": "array"},
             accept={"log_w": ("-inf", "shape")}),
        Case("estimators.elbo_from_log_weights", estimators.elbo_from_log_weights,
             {"log_w": log_w}, {"log_w": "array"}, accept={"log_w": ("-inf", "shape")}),
        Case("estimators.iwae_from_log_weights", estimators.iwae_from_log_weights,
             {"log_w": log_w, "k": 2}, {"log_w": "array", "k": "count"},
             accept={"log_w": ("-inf",)}),
    ]


def core_cases():
    mlp = nn.MLP((3, 4, 2), ("tanh", "identity"))
    p = mlp.init(0)
    x = rng0.normal(size=(5, 3))
    out, cache = mlp.forward(p, x)
    adam_params = {"w": np.zeros(4)}

    def adam_step(grads, sign=1.0):
        return optim.Adam({"w": np.zeros(4)}).step(grads, sign)

    def quad(q):
        return float(np.sum(q["w"] ** 2)), {"w": 2 * q["w"]}

    return [
        Case("nn.glorot_uniform", nn.glorot_uniform, {"n_in": 3, "n_out": 2, "rng": 0},
             {"n_in": "count", "n_out": "count", "rng": "rng"}),
        Case("nn.MLP", nn.MLP, {"sizes": (3, 4, 2), "activations": ("tanh", "identity")},
             {}),
        Case("nn.MLP.init", mlp.init, {"rng": 0}, {"rng": "rng"}),
        Case("nn.MLP.forward", mlp.forward, {"params": p, "x": x},
             {"params": "params", "x": "array"},
             accept={"params": ("extra",)},  # one dict may hold several networks
             aliases={"params": ("params['W0']", "params['b0']", "params['W1']",
                                 "params['b1']")}),
        Case("nn.MLP.backward", mlp.backward,
             {"params": p, "cache": cache, "grad_out": np.ones_like(out)},
             {"grad_out": "array"}),
        Case("optim.Adam", optim.Adam, {"params": adam_params, "lr": 1e-3, "eps": 1e-8},
             {"lr": "positive", "eps": "positive"}),
        Case("optim.Adam.step", adam_step, {"grads": {"w": np.ones(4)}, "sign": -1.0},
             {"grads": "params"}, accept={"grads": ("missing",)},  # a subset is allowed
             aliases={"grads": ("grads['w']",)}),
        Case("testing.check_grad", testing.check_grad,
             {"f": quad, "params": {"w": np.ones(3)}, "richardson": False, "max_coords": 10,
              "n_directions": 2, "rng": 0},
             {"params": "params", "richardson": "flag", "max_coords": "count",
              "n_directions": "count", "rng": "rng"},
             # extra keys are not differentiated; f defines what shapes it accepts;
             # max_coords = 0 checks every parameter along random directions
             accept={"params": ("extra", "mis-shaped"), "max_coords": ("zero",)},
             aliases={"params": ("params['w']",)}),
        Case("testing.assert_grad_close", testing.assert_grad_close,
             {"f": quad, "params": {"w": np.ones(3)}, "rtol": 1e-6},
             {"params": "params", "rtol": "nonneg"}, accept={"params": ("extra", "mis-shaped")},
             aliases={"params": ("params['w']",)}, raises=(AssertionError,)),
    ]


def data_cases(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, X_BIN)
    return [
        Case("datasets.bars", datasets.bars, {"n": 3, "rng": 0, "size": 3},
             {"n": "count", "rng": "rng", "size": "count"}),
        Case("datasets.bars_table", datasets.bars_table, {"size": 2}, {"size": "count"}),
        Case("datasets.entropy_bits", datasets.entropy_bits, {"probs": np.full(4, 0.25)},
             {"probs": "array"}),
        Case("datasets.gmm_demo_data", datasets.gmm_demo_data, {"n": 10, "rng": 0},
             {"n": "count", "rng": "rng"}),
        Case("datasets.load_digits_binarized", datasets.load_digits_binarized,
             {"return_labels": False}, {"return_labels": "flag"}),
        Case("files.load_matrix", files.load_matrix, {"path": path, "binary": True,
                                                      "mmap": False},
             {"binary": "flag", "mmap": "flag"}),
        Case("files.jsonable", files.jsonable, {"obj": {"a": np.arange(3.0)}}, {}),
        Case("persistence.read_model", persistence.read_model,
             {"path": persistence.save_model(tmp_path / "m", "Thing", 1, {"a": 1}),
              "kind": "Thing"}, {}),
    ]


def lg_cases():
    W = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([0.1, -0.2, 0.3])
    x = rng0.normal(size=(4, 3))
    vae = linear_gaussian.linear_gaussian_vae(W, b, 0.5)[0]
    return [
        Case("linear_gaussian.linear_gaussian_vae", linear_gaussian.linear_gaussian_vae,
             {"W": W, "b": b, "noise_var": 0.5}, {"W": "array", "b": "array",
                                                  "noise_var": "positive"}),
        Case("linear_gaussian.linear_gaussian_log_marginal",
             linear_gaussian.linear_gaussian_log_marginal,
             {"W": W, "b": b, "noise_var": 0.5, "x": x},
             {"W": "array", "b": "array", "noise_var": "positive", "x": "array"},
             accept={"W": ("shape",)}),  # a different latent size K
        Case("linear_gaussian.linear_gaussian_posterior",
             linear_gaussian.linear_gaussian_posterior,
             {"W": W, "b": b, "noise_var": 0.5, "x": x},
             {"W": "array", "b": "array", "noise_var": "positive", "x": "array"},
             accept={"W": ("shape",)}),  # a different latent size K
        Case("linear_gaussian.linear_gaussian_elbo", linear_gaussian.linear_gaussian_elbo,
             {"params": vae.params_, "x": x, "arch": vae.arch},
             {"params": "params", "x": "array"},
             aliases={"params": tuple(f"params[{k!r}]" for k in vae.params_)}),
    ]


def mixture_cases():
    from lvmref import gmm, mixture, vbgmm

    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))])
    resp = np.zeros((40, 2))
    resp[:20, 0] = resp[20:, 1] = 1.0
    gm = gmm.GaussianMixture(2, random_state=0).fit(X)
    params = {"weights": gm.weights_, "means": gm.means_,
              "precisions_cholesky": gm.precisions_cholesky_}
    bgm = vbgmm.BayesianGaussianMixture(2, random_state=0, max_iter=20).fit(X)
    state, prior = bgm.state_, bgm.prior_
    log_resp = np.log(np.clip(resp, 1e-300, None))
    log_resp -= np.log(np.exp(log_resp).sum(axis=1, keepdims=True))
    cov = gm.covariances_
    chol = gm.precisions_cholesky_
    pa = {"params": tuple(f"params[{k!r}]" for k in params) + ("params['weights']",)}
    sa = {"state": tuple(f"state[{k!r}]" for k in state)}
    ct = ("choice", "full")
    # "shape" adds a column: for functions that take only data (X), or data and
    # responsibilities (resp), another D or K is valid input
    other_d = {"X": ("shape",)}
    cases = [
        Case("gmm.log_gaussian_prob", gmm.log_gaussian_prob,
             {"params": params, "X": X, "covariance_type": "full"},
             {"params": "params", "X": "array", "covariance_type": ct},
             accept={"params": ("missing", "extra")}, aliases=pa),
        Case("gmm.weighted_log_prob", gmm.weighted_log_prob,
             {"params": params, "X": X, "covariance_type": "full"},
             {"params": "params", "X": "array", "covariance_type": ct},
             accept={"params": ("extra",)}, aliases=pa),
        Case("gmm.e_step", gmm.e_step, {"params": params, "X": X},
             {"params": "params", "X": "array"}, accept={"params": ("extra",)}, aliases=pa),
        Case("gmm.elbo", gmm.elbo, {"params": params, "X": X, "q": resp, "reduce": True},
             {"params": "params", "X": "array", "q": "array", "reduce": "flag"},
             accept={"params": ("extra",)}, aliases=pa),
        Case("gmm.kl_to_posterior", gmm.kl_to_posterior,
             {"params": params, "X": X, "q": resp, "reduce": False},
             {"params": "params", "X": "array", "q": "array", "reduce": "flag"},
             accept={"params": ("extra",)}, aliases=pa),
        Case("gmm.log_likelihood", gmm.log_likelihood, {"params": params, "X": X},
             {"params": "params", "X": "array"}, accept={"params": ("extra",)}, aliases=pa),
        Case("gmm.m_step", gmm.m_step,
             {"X": X, "resp": resp, "covariance_type": "full", "reg_covar": 1e-6},
             {"X": "array", "resp": "array", "covariance_type": ct, "reg_covar": "nonneg"},
             accept={"resp": ("huge", "shape"), "X": ("shape",)}),
        Case("gmm.n_parameters", gmm.n_parameters,
             {"n_components": 2, "n_features": 3, "covariance_type": "diag"},
             {"n_components": "count", "n_features": "count",
              "covariance_type": ("choice", "diag")}),
        Case("gmm.GaussianMixture.fit", gmm.GaussianMixture(2, random_state=0).fit,
             {"X": X, "sample_weight": np.ones(40)},
             {"X": "array", "sample_weight": "array"}, accept=other_d),
        Case("gmm.GaussianMixture.bic", gm.bic, {"X": X}, {"X": "array"}),
        Case("gmm.GaussianMixture.aic", gm.aic, {"X": X}, {"X": "array"}),
        Case("mixture.MixtureBase.predict_proba", gm.predict_proba, {"X": X}, {"X": "array"}),
        Case("mixture.MixtureBase.predict", gm.predict, {"X": X}, {"X": "array"}),
        Case("mixture.MixtureBase.score_samples", gm.score_samples, {"X": X},
             {"X": "array"}),
        Case("mixture.MixtureBase.score", gm.score, {"X": X}, {"X": "array"}),
        Case("mixture.MixtureBase.sample", gm.sample, {"n_samples": 5, "rng": 0},
             {"n_samples": "count", "rng": "rng"}),
        Case("mixture.MixtureBase.fit_predict",
             gmm.GaussianMixture(2, random_state=0).fit_predict, {"X": X}, {"X": "array"},
             accept=other_d),
        Case("mixture.compute_precision_cholesky", mixture.compute_precision_cholesky,
             {"covariances": cov, "covariance_type": "full"},
             {"covariances": "array", "covariance_type": ct}),
        Case("mixture.precision_cholesky_from_precisions",
             mixture.precision_cholesky_from_precisions,
             {"precisions": gm.precisions_, "covariance_type": "full"},
             {"precisions": "array", "covariance_type": ct}),
        Case("mixture.covariances_from_cholesky", mixture.covariances_from_cholesky,
             {"precisions_cholesky": chol, "covariance_type": "full"},
             {"precisions_cholesky": "array", "covariance_type": ct}),
        Case("mixture.precisions_from_cholesky", mixture.precisions_from_cholesky,
             {"precisions_cholesky": chol, "covariance_type": "full"},
             {"precisions_cholesky": "array", "covariance_type": ct}),
        Case("mixture.log_det_cholesky", mixture.log_det_cholesky,
             {"precisions_cholesky": chol, "covariance_type": "full", "n_features": 2},
             {"precisions_cholesky": "array", "covariance_type": ct, "n_features": "count"}),
        Case("mixture.check_covariances", mixture.check_covariances,
             {"covariances": cov, "precisions_cholesky": chol, "covariance_type": "full"},
             {"covariances": "array", "precisions_cholesky": "array", "covariance_type": ct}),
        Case("mixture.covariance_shape", mixture.covariance_shape,
             {"covariance_type": "full", "n_components": 2, "n_features": 3},
             {"covariance_type": ct, "n_components": "count", "n_features": "count"}),
        Case("mixture.cholesky_stack", mixture.cholesky_stack, {"mats": cov},
             {"mats": "array"}),
        Case("mixture.precision_factors_from_cholesky",
             mixture.precision_factors_from_cholesky,
             {"low": np.linalg.cholesky(cov)}, {"low": "array"}),
        Case("mixture.triangular_inverse", mixture.triangular_inverse,
             {"t": np.triu(chol[0]), "lower": False}, {"t": "array", "lower": "flag"}),
        Case("mixture.check_X", mixture.check_X, {"X": X}, {"X": "array"}, accept=other_d),
        Case("mixture.check_resp", mixture.check_resp, {"X": X, "resp": resp},
             {"X": "array", "resp": "array"}, accept={"resp": ("huge", "shape"),
                                                      "X": ("shape",)}),
        Case("mixture.kmeans_plusplus", mixture.kmeans_plusplus,
             {"X": X, "n_clusters": 2, "rng": 0, "sample_weight": np.ones(40)},
             {"X": "array", "n_clusters": "count", "rng": "rng", "sample_weight": "array"},
             accept=other_d),
        Case("mixture.kmeans", mixture.kmeans,
             {"X": X, "n_clusters": 2, "rng": 0, "n_iter": 3},
             {"X": "array", "n_clusters": "count", "rng": "rng", "n_iter": "count"},
             accept={"n_iter": ("zero",), "X": ("shape",)}),
        Case("mixture.initial_resp", mixture.initial_resp,
             {"X": X, "n_components": 2, "init_params": "kmeans", "rng": 0},
             {"X": "array", "n_components": "count", "init_params": ("choice", "kmeans"),
              "rng": "rng"}, accept=other_d),
        Case("vbgmm.make_prior", vbgmm.make_prior, {"X": X, "n_components": 2},
             {"X": "array", "n_components": "count"}),
        Case("vbgmm.make_state", vbgmm.make_state,
             {"weight_concentration": state["weight_concentration"],
              "mean_precision": state["mean_precision"], "means": state["means"],
              "degrees_of_freedom": state["degrees_of_freedom"],
              "scale_inv": state["covariances"] * state["degrees_of_freedom"][:, None, None]},
             {"weight_concentration": "array", "mean_precision": "array", "means": "array",
              "degrees_of_freedom": "array", "scale_inv": "array"},
             # the fitted (2, K) stick-breaking parameters; row 0 alone is a Dirichlet's
             accept={"weight_concentration": ("ndim-1",)}),
        Case("vbgmm.expected_log_weights", vbgmm.expected_log_weights,
             {"weight_concentration": state["weight_concentration"]},
             {"weight_concentration": "array"},
             accept={"weight_concentration": ("ndim-1", "shape")}),  # a Dirichlet; K = 3
        Case("vbgmm.expected_log_det_precision", vbgmm.expected_log_det_precision,
             {"degrees_of_freedom": state["degrees_of_freedom"],
              "precisions_cholesky": state["precisions_cholesky"]},
             {"degrees_of_freedom": "array", "precisions_cholesky": "array"}),
        Case("vbgmm.expected_mahalanobis", vbgmm.expected_mahalanobis,
             {"state": state, "X": X}, {"state": "params", "X": "array"},
             accept={"state": ("extra",)}, aliases=sa),
        Case("vbgmm.estimate_log_rho", vbgmm.estimate_log_rho, {"state": state, "X": X},
             {"state": "params", "X": "array"}, accept={"state": ("extra",)}, aliases=sa),
        Case("vbgmm.e_step", vbgmm.e_step, {"state": state, "X": X},
             {"state": "params", "X": "array"}, accept={"state": ("extra",)}, aliases=sa),
        Case("vbgmm.m_step", vbgmm.m_step, {"X": X, "resp": resp, "prior": prior},
             {"X": "array", "resp": "array"},
             accept={"resp": ("shape",)}),  # the prior does not fix K
        Case("vbgmm.kl_dirichlet", vbgmm.kl_dirichlet,
             {"weight_concentration": np.array([3.0, 4.0]),
              "weight_concentration_prior": 0.5},
             {"weight_concentration": "array", "weight_concentration_prior": "positive"},
             accept={"weight_concentration": ("shape",)}),  # K = 3 (a scalar prior)
        Case("vbgmm.kl_stick_breaking", vbgmm.kl_stick_breaking,
             {"weight_concentration": np.array([[3.0, 4.0], [2.0, 1.0]]),
              "weight_concentration_prior": 0.5},
             {"weight_concentration": "array", "weight_concentration_prior": "positive"},
             accept={"weight_concentration": ("shape",)}),  # K = 3 (a scalar prior)
        Case("vbgmm.kl_gauss_wishart", vbgmm.kl_gauss_wishart,
             {"state": state, "prior": prior}, {"state": "params"},
             accept={"state": ("extra",)}, aliases=sa),
        Case("vbgmm.lower_bound", vbgmm.lower_bound,
             {"state": state, "X": X, "log_resp": log_resp, "prior": prior},
             {"state": "params", "X": "array", "log_resp": "array"},
             accept={"state": ("extra",), "log_resp": ("-inf",)}, aliases=sa),
        Case("vbgmm.BayesianGaussianMixture.fit",
             vbgmm.BayesianGaussianMixture(2, random_state=0, max_iter=5).fit,
             {"X": X, "sample_weight": np.ones(40)},
             {"X": "array", "sample_weight": "array"}, accept=other_d),
    ]
    return cases + _mixture_cases_more(X, resp, gm, bgm, params, pa, sa, ct, other_d)


def _moments_call(fn, arg, base, **fixed):
    """``fn`` called with ``arg`` = Moments(nk, sums, scatter, total, extra) built from
    the fuzzed arrays (``base`` gives the rest), so the engine can mutate a Moments."""
    from lvmref.mixture_stats import Moments

    def call(nk, sums, scatter, **rest):
        return fn(**{arg: Moments(nk, sums, scatter, base.total, base.extra)}, **fixed,
                  **rest)
    return call


def _moments_args(m, arg):
    args = {"nk": m.nk, "sums": m.sums, "scatter": m.scatter}
    kinds = {"nk": "array", "sums": "array", "scatter": "array"}
    aliases = {k: (f"{arg}.{k}", arg) for k in args}  # the argument, or its field
    return args, kinds, aliases


def _mixture_cases_more(X, resp, gm, bgm, params, pa, sa, ct, other_d):
    """The new public functions (statistics, chunked EM, initial moments), each covariance
    type's function, chunked and mixture_stats, and the estimators' hyper-parameters and
    remaining methods."""
    from lvmref import chunked, gmm, mixture, mixture_stats, vbgmm

    cases = []
    typed = {}
    for t in ("full", "tied", "diag", "spherical"):
        g = gmm.GaussianMixture(2, covariance_type=t, random_state=0).fit(X)
        typed[t] = {"weights": g.weights_, "means": g.means_,
                    "precisions_cholesky": g.precisions_cholesky_}
        alias = {"params": tuple(f"params[{k!r}]" for k in typed[t])}
        cases += [
            Case(f"gmm.log_gaussian_prob_{t}", getattr(gmm, f"log_gaussian_prob_{t}"),
                 {"params": typed[t], "X": X}, {"params": "params", "X": "array"},
                 accept={"params": ("missing", "extra")}, aliases=alias),
            Case(f"gmm.m_step_{t}", getattr(gmm, f"m_step_{t}"),
                 {"X": X, "resp": resp, "reg_covar": 1e-6},
                 {"X": "array", "resp": "array", "reg_covar": "nonneg"},
                 accept={"resp": ("huge", "shape"), "X": ("shape",)}),
        ]
    stats = gmm.sufficient_statistics(params, X)
    unit = mixture_stats.scale_moments(stats, 1.0 / stats.total)
    s_args, s_kinds, s_alias = _moments_args(stats, "stats")
    p_args, p_kinds, p_alias = _moments_args(unit, "previous")
    m_args, m_kinds, m_alias = _moments_args(stats, "m")
    a_args, a_kinds, a_alias = _moments_args(stats, "a")
    vstats = vbgmm.sufficient_statistics(bgm.state_, X)
    v_args, v_kinds, v_alias = _moments_args(vstats, "stats")
    # statistics of other data (any N_k >= 0, sums, scatter) are valid input; K = D = 2,
    # so a (K, D, D) scatter's first matrix is a valid diagonal (K, D) scatter
    shift = {"nk": ("huge",), "sums": ("huge", "-huge"), "scatter": ("huge",)}
    cases += [
        Case("gmm.sufficient_statistics", gmm.sufficient_statistics,
             {"params": params, "X": X, "covariance_type": "full",
              "sample_weight": np.ones(40)},
             {"params": "params", "X": "array", "covariance_type": ct,
              "sample_weight": "array"}, accept={"params": ("extra",)}, aliases=pa),
        Case("gmm.m_step_statistics",
             _moments_call(gmm.m_step_statistics, "stats", stats),
             {**s_args, "covariance_type": "full", "reg_covar": 1e-6},
             {**s_kinds, "covariance_type": ct, "reg_covar": "nonneg"},
             # statistics of other data (any N_k >= 0, sums, scatter) are valid
             accept={**shift, "sums": ("huge", "-huge", "shape")}, aliases=s_alias),
        Case("gmm.stepwise_statistics",
             _moments_call(gmm.stepwise_statistics, "previous", unit, batch=unit),
             {**p_args, "rho": 0.5}, {**p_kinds, "rho": "positive"},
             accept=shift, aliases={**p_alias, "rho": ("rho",)}),
        Case("gmm.statistics_from_params", gmm.statistics_from_params,
             {"params": params, "covariance_type": "full"},
             {"params": "params", "covariance_type": ct}, accept={"params": ("extra",)},
             aliases=pa),
        Case("gmm.GaussianMixture.partial_fit",
             gmm.GaussianMixture(2, random_state=0).partial_fit,
             {"X": X, "sample_weight": np.ones(40)}, {"X": "array", "sample_weight": "array"},
             accept=other_d),
        Case("vbgmm.sufficient_statistics", vbgmm.sufficient_statistics,
             {"state": bgm.state_, "X": X, "covariance_type": "full",
              "sample_weight": np.ones(40)},
             {"state": "params", "X": "array", "covariance_type": ct,
              "sample_weight": "array"}, accept={"state": ("extra",)}, aliases=sa),
        Case("vbgmm.m_step_statistics",
             _moments_call(vbgmm.m_step_statistics, "stats", vstats, prior=bgm.prior_),
             {**v_args, "covariance_type": "full", "reg_covar": 1e-6},
             {**v_kinds, "covariance_type": ct, "reg_covar": "nonneg"},
             accept={**shift, "sums": ("huge", "-huge", "shape")}, aliases=v_alias),
        Case("vbgmm.lower_bound_statistics",
             _moments_call(vbgmm.lower_bound_statistics, "stats", vstats, state=bgm.state_,
                           prior=bgm.prior_),
             {**v_args, "covariance_type": "full"}, {**v_kinds, "covariance_type": ct},
             accept=shift, aliases=v_alias),
        Case("mixture.initial_moments", mixture.initial_moments,
             {"source": X, "n_components": 2, "init_params": "kmeans", "rng": 0,
              "sample_weight": np.ones(40), "full": True, "sample_size": 30},
             {"source": "array", "n_components": "count",
              "init_params": ("choice", "kmeans"), "rng": "rng", "sample_weight": "array",
              "full": "flag", "sample_size": "count"},
             accept={"source": ("shape",)}, aliases={"source": ("X",)}),
        Case("mixture.run_em", mixture.run_em,
             {"initialize": lambda i: (0.0, -1.0), "iterate": lambda st: (st, -1.0),
              "n_init": 2, "max_iter": 3, "tol": 1e-3, "verbose": 0, "verbose_interval": 2},
             {"n_init": "count", "max_iter": "count", "tol": "nonneg", "verbose": "count",
              "verbose_interval": "count"},
             accept={"max_iter": ("zero",), "verbose": ("zero",)}),
        # chunked
        Case("chunked.is_dask_array", chunked.is_dask_array, {"X": X}, {}),
        Case("chunked.require_dask", chunked.require_dask, {}, {}),
        Case("chunked.is_in_memory", chunked.is_in_memory, {"X": X}, {}),
        Case("chunked.default_chunk_size", chunked.default_chunk_size,
             {"n_features": 3, "n_components": 2},
             {"n_features": "count", "n_components": "count"}),
        Case("chunked.check_chunk_size", chunked.check_chunk_size, {"chunk_size": 5},
             {"chunk_size": "count"}, accept={"chunk_size": ("none",)}),  # None: default
        Case("chunked.check_rows", chunked.check_rows,
             {"block": X, "start": 0, "name": "X", "width": 2},
             {"block": "array", "width": "count"},
             # a block of 0 rows (a Dask array may have one) is a valid chunk
             accept={"width": ("none",), "block": ("empty",)}, aliases={"block": ("X",)}),
        Case("chunked.row_source", chunked.row_source,
             {"X": X, "chunk_size": 7, "n_features": 2, "n_components": 2},
             {"X": "array", "chunk_size": "count", "n_features": "count",
              "n_components": "count"},
             # a source reads (and validates) X chunk by chunk: see RowChunks.read below
             accept={"X": ("nan", "inf", "-inf"), "chunk_size": ("none",),
                     "n_features": ("none",)}),
        Case("chunked.RowChunks.read", _read_all,
             {"X": X, "chunk_size": 7}, {"X": "array", "chunk_size": "count"},
             accept={"chunk_size": ("none",), "X": ("shape",)}),
        # mixture_stats
        Case("mixture_stats.moments", mixture_stats.moments,
             {"X": X, "resp": resp, "full": True, "total": 40.0, "extra": 0.0},
             {"X": "array", "resp": "array", "full": "flag", "total": "nonneg"},
             accept={"X": ("shape",), "resp": ("shape", "huge")}),
        Case("mixture_stats.chunk_moments", mixture_stats.chunk_moments,  # unchecked hot path
             {"X": X, "resp": resp, "full": True, "total": 40.0, "extra": 0.0}, {}),
        Case("mixture_stats.merge_moments",
             _moments_call(mixture_stats.merge_moments, "a", stats, b=stats),
             a_args, a_kinds, accept=shift, aliases=a_alias),
        Case("mixture_stats.scale_moments",
             _moments_call(mixture_stats.scale_moments, "a", stats),
             {**a_args, "c": 0.5}, {**a_kinds, "c": "nonneg"},
             accept={**shift, "scatter": ("huge", "ndim-1")}, aliases=a_alias),
        Case("mixture_stats.scatter_about",
             _moments_call(mixture_stats.scatter_about, "m", stats),
             {**m_args, "points": gm.means_}, {**m_kinds, "points": "array"},
             accept={**shift, "points": ("huge", "-huge"), "scatter": ("huge", "ndim-1")},
             aliases=m_alias),
        Case("mixture_stats.check_moments",
             _moments_call(mixture_stats.check_moments, "m", stats, name="m"),
             m_args, m_kinds, accept={**shift, "sums": ("huge", "-huge", "shape"),
                                      "scatter": ("huge", "ndim-1")}, aliases=m_alias),
    ]
    # the estimators: hyper-parameters (checked by fit, also after set_params) and methods
    for cls, extra in ((gmm.GaussianMixture, {"learning_offset": 0.0, "learning_decay": 0.7}),
                       (vbgmm.BayesianGaussianMixture, {"weight_concentration_prior": 0.5,
                                                        "mean_precision_prior": 1.0})):
        hyper = {"n_components": 2, "covariance_type": "full", "tol": 1e-3,
                 "reg_covar": 1e-6, "max_iter": 5, "n_init": 1, "init_params": "kmeans",
                 "random_state": 0, "warm_start": False, "verbose": 0,
                 "verbose_interval": 10, "chunk_size": 20, **extra}
        kinds = {"n_components": "count", "covariance_type": ct, "tol": "nonneg",
                 "reg_covar": "nonneg", "max_iter": "count", "n_init": "count",
                 "init_params": ("choice", "kmeans"), "random_state": "rng",
                 "warm_start": "flag", "verbose": "count", "verbose_interval": "count",
                 "chunk_size": "count", **{k: "positive" for k in extra}}
        if "learning_offset" in extra:
            kinds["learning_offset"] = "nonneg"
        accept = {"verbose": ("zero",), "chunk_size": ("none",),
                  "max_iter": ("zero",) if cls is gmm.GaussianMixture else (),
                  # None: the data-dependent default
                  **{k: ("none",) for k in extra if k != "learning_offset"}}
        name = cls.__name__
        mod = "gmm" if cls is gmm.GaussianMixture else "vbgmm"
        with_fit = _fit_with(cls, X)
        cases += [
            Case(f"{mod}.{name}", with_fit, hyper, kinds, accept=accept),
            Case(f"{mod}.{name}.set_params", _set_params_fit(cls, X), hyper, kinds,
                 accept=accept),
        ]
    for label, model in (("gmm.GaussianMixture", gm), ("vbgmm.BayesianGaussianMixture", bgm)):
        cases += [
            Case(f"{label}.predict_proba", model.predict_proba, {"X": X}, {"X": "array"}),
            Case(f"{label}.predict", model.predict, {"X": X}, {"X": "array"}),
            Case(f"{label}.score_samples", model.score_samples, {"X": X}, {"X": "array"}),
            Case(f"{label}.score", model.score, {"X": X}, {"X": "array"}),
            Case(f"{label}.sample", model.sample, {"n_samples": 5, "rng": 0},
                 {"n_samples": "count", "rng": "rng"}),
        ]
    return cases


def _fit_with(cls, X):
    def fit(**hyper):
        return cls(**hyper).fit(X)
    return fit


def _set_params_fit(cls, X):
    def fit(**hyper):
        return cls().set_params(**hyper).fit(X)
    return fit


def _read_all(X, chunk_size):
    from lvmref.chunked import RowChunks

    src = RowChunks(X, chunk_size)
    return np.concatenate([src.read(a, b) for a, b in src.bounds()])


def _hm_keys(m):
    return ("params",) + tuple(f"params[{k!r}]" for k in m.params)


def helmholtz_cases(tmp_path):
    """``lvmref.helmholtz``: the module-level mathematics and the estimator shell."""
    arch = H.Architecture((2, 5))
    deep = H.Architecture((2, 3, 5))
    m = H.HelmholtzMachine((2, 5), rng=0)
    p = m.params
    n, k, K, D = 3, 2, 2, 5
    x = X_BIN
    z = (rng0.random((n, K)) < 0.5).astype(float)
    z3 = (rng0.random((n, k, K)) < 0.5).astype(float)
    uq = rng0.random((n, k, K))
    us = rng0.random((n, K + D))
    al = {"params": _hm_keys(m)}
    nvil = H.NVILBaseline("input-dependent", (3,))
    state = nvil.init_state(arch, 0)
    saved = m.save(tmp_path / "hm")
    pxz = {"params": "params", "x": "binary", "z": "binary", "arch": "instance"}
    cases = [
        Case("helmholtz.Architecture", H.Architecture,
             {"layer_sizes": (2, 3, 5), "hidden": (4,), "recognition_hidden": (3,),
              "activation": "tanh"},
             {"layer_sizes": "sizes", "hidden": "sizes", "recognition_hidden": "sizes",
              "activation": ("choice", "tanh")},
             accept={"hidden": ("empty",), "recognition_hidden": ("empty",)}),
        Case("helmholtz.Architecture.gen", deep.gen, {"l": 1}, {"l": "count"},
             accept={"l": ("zero",)}),
        Case("helmholtz.Architecture.rec", deep.rec, {"l": 1}, {"l": "count"},
             accept={"l": ("zero",)}),
        Case("helmholtz.Architecture.keys", deep.keys, {}, {}),
        Case("helmholtz.Architecture.shapes", deep.shapes, {}, {}),
        Case("helmholtz.Architecture.check_params", arch.check_params, {"params": p},
             {"params": "params"}, aliases=al),
        Case("helmholtz.init_params", H.init_params,
             {"arch": deep, "rng": 0, "scale": 0.5, "bias": np.array([-1.0, -2.0])},
             {"arch": "instance", "rng": "rng", "scale": "nonneg", "bias": "array"},
             accept={"bias": ("ndim-1",)}),  # one float for every layer
        Case("helmholtz.log_joint", H.log_joint, {"params": p, "x": x, "z": z, "arch": arch},
             pxz, aliases=al),
        Case("helmholtz.log_prior", H.log_prior, {"params": p, "z": z, "arch": arch},
             {"params": "params", "z": "binary", "arch": "instance"}, aliases=al),
        Case("helmholtz.log_q", H.log_q, {"params": p, "x": x, "z": z, "arch": arch},
             pxz, aliases=al),
        Case("helmholtz.sample_prior", H.sample_prior, {"params": p, "u": us, "arch": arch},
             {"params": "params", "u": "uniform", "arch": "instance"}, aliases=al),
        Case("helmholtz.sample_q", H.sample_q,
             {"params": p, "x": x, "u": uq[:, 0], "arch": arch},
             {"params": "params", "x": "binary", "u": "uniform", "arch": "instance"},
             aliases=al),
        Case("helmholtz.wake_grad", H.wake_grad,
             {"params": p, "x": x, "z": z, "arch": arch, "weights": np.ones(n)},
             {**pxz, "weights": "array"}, aliases=al),
        Case("helmholtz.sleep_grad", H.sleep_grad,
             {"params": p, "x": x, "z": z, "arch": arch, "weights": np.ones(n)},
             {**pxz, "weights": "array"}, aliases=al),
        Case("helmholtz.log_weights", H.log_weights,
             {"params": p, "x": x, "z": z3, "arch": arch}, pxz, aliases=al),
        Case("helmholtz.rws_grads", H.rws_grads,
             {"params": p, "x": x, "z": z3, "arch": arch}, pxz, aliases=al),
        Case("helmholtz.vimco_grads", H.vimco_grads,
             {"params": p, "x": x, "z": z3, "arch": arch}, pxz, aliases=al),
        Case("helmholtz.reinforce_grads", H.reinforce_grads,
             {"params": p, "x": x, "z": z, "arch": arch, "baseline": np.zeros(n),
              "scale": 2.0},
             {**pxz, "baseline": "array", "scale": "positive"}, aliases=al,
             accept={"baseline": ("ndim-1",)}),  # one number for every row
        Case("helmholtz.sgd_update", H.sgd_update,
             {"params": p, "x": x, "uq": uq[:, :1], "us": us, "arch": arch,
              "method": "wake-sleep", "lr": 0.1, "lr_q": 0.2, "sleep": False},
             {"params": "params", "x": "binary", "uq": "uniform", "us": "uniform",
              "arch": "instance", "method": ("choice", "wake-sleep"), "lr": "positive",
              "lr_q": "positive", "sleep": "flag"}, aliases=al),
        Case("helmholtz.sgd_update(reinforce)", H.sgd_update,
             {"params": p, "x": x, "uq": uq[:, :1], "us": us, "arch": arch,
              "method": "reinforce", "baseline": nvil, "state": state},
             {"uq": "uniform", "baseline": "instance", "state": "instance"}, aliases=al),
        Case("helmholtz.sgd_update(vimco)", H.sgd_update,
             {"params": p, "x": x, "uq": uq, "us": us, "arch": arch, "method": "vimco"},
             {"x": "binary", "uq": "uniform"}, aliases=al),
        Case("helmholtz.exact_elbo", H.exact_elbo, {"params": p, "x": x, "arch": arch},
             {"params": "params", "x": "binary", "arch": "instance"}, aliases=al),
        Case("helmholtz.NVILBaseline", H.NVILBaseline,
             {"kind": "input-dependent", "hidden": (3,), "decay": 0.5,
              "normalize_variance": True},
             {"kind": ("choice", "input-dependent"), "hidden": "sizes", "decay": "nonneg",
              "normalize_variance": "flag"}, accept={"hidden": ("empty",)}),
        Case("helmholtz.NVILBaseline.net", nvil.net, {"arch": arch}, {"arch": "instance"}),
        Case("helmholtz.NVILBaseline.init_state", nvil.init_state, {"arch": arch, "rng": 0},
             {"arch": "instance", "rng": "rng"}),
        Case("helmholtz.NVILState", H.NVILState, {"c": 0.5, "v": 2.0, "psi": state.psi},
             {"c": "nonneg", "v": "nonneg", "psi": "params"},
             # c may be negative; psi's keys and shapes are checked against the baseline
             # net by sgd_update, which knows the architecture
             accept={"c": ("negative",), "psi": ("missing", "extra", "mis-shaped")},
             aliases={"psi": tuple(f"psi[{q!r}]" for q in state.psi)}),
        Case("helmholtz.HelmholtzMachine", H.HelmholtzMachine,
             {"layer_sizes": (2, 5), "hidden": (3,), "recognition_hidden": (), "rng": 0,
              "init_scale": 0.1, "init_bias": np.array([-1.0])},
             {"layer_sizes": "sizes", "hidden": "sizes", "rng": "rng",
              "init_scale": "nonneg", "init_bias": "array"},
             accept={"hidden": ("empty",), "init_bias": ("ndim-1",)}),
        Case("helmholtz.HelmholtzMachine(params)", H.HelmholtzMachine,
             {"layer_sizes": (2, 5), "params": p}, {"params": "params"}, aliases=al),
        Case("helmholtz.HelmholtzMachine.log_joint", m.log_joint, {"x": x, "z": z3},
             {"x": "binary", "z": "binary"}),
        Case("helmholtz.HelmholtzMachine.log_prior", m.log_prior, {"z": z3}, {"z": "binary"}),
        Case("helmholtz.HelmholtzMachine.log_q", m.log_q, {"x": x, "z": z3},
             {"x": "binary", "z": "binary"}),
        Case("helmholtz.HelmholtzMachine.sample_q", m.sample_q, {"x": x, "k": 2, "rng": 0},
             {"x": "binary", "k": "count", "rng": "rng"}),
        Case("helmholtz.HelmholtzMachine.sample_q(u)", m.sample_q, {"x": x, "k": 2, "u": uq},
             {"u": "uniform"}),
        Case("helmholtz.HelmholtzMachine.sample_prior", m.sample_prior,
             {"n": 3, "k": 2, "rng": 0}, {"n": "count", "k": "count", "rng": "rng"}),
        Case("helmholtz.HelmholtzMachine.sample", m.sample, {"n": 3, "k": None, "rng": 0},
             {"n": "count", "rng": "rng"}),
        Case("helmholtz.HelmholtzMachine.sample(u)", m.sample, {"n": 3, "k": None, "u": us},
             {"u": "uniform"}),
        Case("helmholtz.HelmholtzMachine.fit", m.fit,
             {"X": x, "method": "reweighted", "n_updates": 2, "batch_size": 2,
              "learning_rate": 0.05, "recognition_learning_rate": 0.1, "k": 2,
              "sleep": True, "engine": "numpy", "record_every": 1, "rng": 0},
             {"X": "binary", "method": ("choice", "reweighted"), "n_updates": "count",
              "batch_size": "count", "learning_rate": "positive",
              "recognition_learning_rate": "positive", "k": "count", "sleep": "flag",
              "engine": ("choice", "numpy"), "record_every": "count", "rng": "rng"}),
        Case("helmholtz.HelmholtzMachine.fit(reinforce)", m.fit,
             {"X": x, "method": "reinforce", "n_updates": 2, "baseline": "moving-average",
              "rng": 0}, {"baseline": ("choice", "moving-average")},
             accept={"baseline": ("none",)}),  # None: no baseline
        Case("helmholtz.HelmholtzMachine.save", m.save, {"path": tmp_path / "hm2"},
             {"path": "path"}, accept={"path": ("directory",)}, raises=(FileNotFoundError,)),
        Case("helmholtz.HelmholtzMachine.load", H.HelmholtzMachine.load, {"path": saved},
             {"path": "path"}, raises=(FileNotFoundError,),
             aliases={"path": (str(tmp_path),)}),
    ]
    return cases


def vae_cases(tmp_path):
    """``lvmref.vae``: the module-level mathematics, the estimator and the model protocol."""
    vae = V.VAE(5, 2, (3,))
    arch = vae.arch
    p = vae.init_params(0)
    vae.params_ = p
    gauss = V.VAE(3, 2, (), likelihood="gaussian")
    gauss.params_ = gauss.init_params(1)
    model = V.VAEModel(arch, p)
    n, k, K = 3, 2, 2
    x = X_BIN
    eps = rng0.normal(size=(n, K))
    eps3 = rng0.normal(size=(n, k, K))
    z = rng0.normal(size=(n, K))
    z3 = rng0.normal(size=(n, k, K))
    mean, log_var = rng0.normal(size=(n, K)), rng0.normal(size=(n, K)) / 3
    al = {"params": ("params",) + tuple(f"params[{q!r}]" for q in p)}
    saved = vae.save(tmp_path / "vae")
    pxe = {"params": "params", "x": "binary", "eps": "array", "arch": "instance"}
    bound = {"params": "params", "x": "binary", "eps": "array"}
    lv_ok = {"log_var": ("huge",)}  # exp(1e308) = inf: the documented +inf
    return [
        Case("vae.VAEArchitecture", V.VAEArchitecture,
             {"n_features": 5, "n_latent": 2, "hidden": (3,), "likelihood": "gaussian",
              "activation": "relu"},
             {"n_features": "count", "n_latent": "count", "hidden": "sizes",
              "likelihood": ("choice", "gaussian"), "activation": ("choice", "relu")},
             accept={"hidden": ("empty",)}),
        Case("vae.VAEArchitecture.param_shapes", arch.param_shapes, {}, {}),
        Case("vae.VAEArchitecture.check_params", arch.check_params, {"params": p},
             {"params": "params"}, aliases=al),
        Case("vae.VAEArchitecture.check_x", arch.check_x, {"x": x}, {"x": "binary"}),
        Case("vae.VAEArchitecture.check_z", arch.check_z, {"z": z}, {"z": "array"}),
        Case("vae.init_params", V.init_params, {"arch": arch, "rng": 0, "scheme": "torch"},
             {"arch": "instance", "rng": "rng", "scheme": ("choice", "torch")}),
        Case("vae.log_prior", V.log_prior, {"z": z}, {"z": "array"},
             accept={"z": ("ndim-1", "ndim+1", "shape")}),  # any (..., K), 1 <= ndim <= 3
        Case("vae.log_likelihood", V.log_likelihood,
             {"params": p, "x": x, "z": z3, "arch": arch},
             {"params": "params", "x": "binary", "z": "array", "arch": "instance"},
             aliases=al),
        Case("vae.log_likelihood(gaussian)", V.log_likelihood,
             {"params": gauss.params_, "x": rng0.normal(size=(n, 3)), "z": z,
              "arch": gauss.arch}, {"x": "array", "z": "array"}),
        Case("vae.encode", V.encode, {"params": p, "x": x, "arch": arch},
             {"params": "params", "x": "binary", "arch": "instance"}, aliases=al),
        Case("vae.log_q", V.log_q, {"params": p, "x": x, "z": z3, "arch": arch},
             {"params": "params", "x": "binary", "z": "array", "arch": "instance"},
             aliases=al),
        Case("vae.kl_normal_std_grad", V.kl_normal_std_grad,
             {"mean": mean, "log_var": log_var}, {"mean": "array", "log_var": "array"},
             accept=lv_ok),
        Case("vae.reparameterize", V.reparameterize,
             {"mean": mean, "log_var": log_var, "eps": eps3},
             {"mean": "array", "log_var": "array", "eps": "array"},
             accept={"eps": ("ndim-1",), **lv_ok}),  # (n, K) noise is valid
        Case("vae.elbo", V.elbo, {"params": p, "x": x, "eps": eps3, "arch": arch, "kl": "mc"},
             {**pxe, "kl": ("choice", "mc")}, aliases=al, accept={"eps": ("ndim-1",)}),
        Case("vae.elbo_grad_reparam", V.elbo_grad_reparam,
             {"params": p, "x": x, "eps": eps, "arch": arch, "kl": "analytic"},
             {**pxe, "kl": ("choice", "analytic")}, aliases=al),
        Case("vae.elbo_grad_reinforce", V.elbo_grad_reinforce,
             {"params": p, "x": x, "eps": eps3, "arch": arch, "baseline": "loo",
              "kl": "mc"},
             {**pxe, "baseline": ("choice", "loo"), "kl": ("choice", "mc")}, aliases=al,
             accept={"baseline": ("int",)}),  # a number is a constant baseline
        Case("vae.elbo_grad_reinforce(z)", V.elbo_grad_reinforce,
             {"params": p, "x": x, "eps": None, "arch": arch, "z": z,
              "baseline": np.zeros(n)}, {"z": "array", "baseline": "array"},
             accept={"baseline": ("ndim-1",)}),  # one number for every row
        Case("vae.elbo_grad_stl", V.elbo_grad_stl, {"params": p, "x": x, "eps": eps3,
                                                    "arch": arch}, pxe, aliases=al),
        Case("vae.iwae_grad", V.iwae_grad,
             {"params": p, "x": x, "eps": eps3, "arch": arch, "estimator": "dreg"},
             {**pxe, "estimator": ("choice", "dreg")}, aliases=al),
        Case("vae.iwae_bound", V.iwae_bound,
             {"params": p, "x": x, "arch": arch, "k": 2, "rng": 0, "n_repeats": 2,
              "chunk_size": 2},
             {"params": "params", "x": "binary", "arch": "instance", "k": "count",
              "rng": "rng", "n_repeats": "count", "chunk_size": "count"}, aliases=al),
        Case("vae.iwae_bound(z)", V.iwae_bound,
             {"params": p, "x": x, "arch": arch, "k": 2, "z": z3}, {"z": "array"}),
        Case("vae.fit_local", V.fit_local,
             {"params": p, "x": x, "arch": arch, "n_steps": 3, "lr": 0.1, "lr_final": 0.01,
              "k": 2, "rng": 0, "init": (mean, log_var), "kl": "mc"},
             {"params": "params", "x": "binary", "arch": "instance", "n_steps": "count",
              "lr_final": "positive", "k": "count", "rng": "rng", "init": "instance",
              "kl": ("choice", "mc")}, aliases=al,
             accept={"lr_final": ("huge",)}),  # refused: lr_final > lr (the step decays)
        # an absurd step size (lr = 1e300) makes the optimisation diverge: a
        # FloatingPointError is the designed outcome there (as in VAE.fit)
        Case("vae.fit_local(lr)", V.fit_local,
             {"params": p, "x": x, "arch": arch, "n_steps": 3, "lr": 0.1, "lr_final": 1e-5,
              "rng": 0}, {"lr": "positive"}, raises=(FloatingPointError,)),
        Case("vae.amortization_gap", V.amortization_gap,
             {"params": p, "x": x, "arch": arch, "k_eval": 3, "rng": 0, "n_steps": 2},
             {"params": "params", "x": "binary", "arch": "instance", "k_eval": "count",
              "rng": "rng", "n_steps": "count"}, aliases=al),
        Case("vae.AmortizationGap", V.AmortizationGap,
             {f: np.zeros(n) for f in ("elbo_local", "elbo_encoder", "gap", "gap_stderr")}
             | {"mean": mean, "log_var": log_var}, {}),
        Case("vae.VAE", V.VAE, {"n_features": 5, "n_latent": 2, "hidden": (3, 2),
                                "likelihood": "gaussian", "activation": "relu"},
             {"n_features": "count", "n_latent": "count", "hidden": "sizes",
              "likelihood": ("choice", "gaussian"), "activation": ("choice", "relu")},
             accept={"hidden": ("empty",)}),
        Case("vae.VAE.param_shapes", vae.param_shapes, {}, {}),
        Case("vae.VAE.check_params", vae.check_params, {"params": p}, {"params": "params"},
             aliases=al),
        Case("vae.VAE.init_params", vae.init_params, {"rng": 0, "scheme": "glorot"},
             {"rng": "rng", "scheme": ("choice", "glorot")}),
        Case("vae.VAE.elbo", vae.elbo, {"params": p, "x": x, "eps": eps}, bound, aliases=al,
             accept={"params": ("none",)}),  # None: the fitted params_
        Case("vae.VAE.elbo_grad_reparam", vae.elbo_grad_reparam,
             {"params": None, "x": x, "eps": eps3}, {"x": "binary", "eps": "array"}),
        Case("vae.VAE.elbo_grad_reinforce", vae.elbo_grad_reinforce,
             {"params": None, "x": x, "eps": eps3}, {"x": "binary", "eps": "array"},
             accept={"eps": ("none",)}),  # None is valid with z (refused here without)
        Case("vae.VAE.elbo_grad_stl", vae.elbo_grad_stl, {"params": p, "x": x, "eps": eps3},
             bound, aliases=al, accept={"params": ("none",)}),
        Case("vae.VAE.iwae_grad", vae.iwae_grad, {"params": None, "x": x, "eps": eps3},
             {"x": "binary", "eps": "array"}),
        Case("vae.VAE.log_q", vae.log_q, {"params": None, "x": x, "z": z},
             {"x": "binary", "z": "array"}, accept={"z": ("ndim+1",)}),  # (n, k, K) is valid
        Case("vae.VAE.iwae_bound", vae.iwae_bound, {"params": None, "x": x, "k": 3, "rng": 1},
             {"x": "binary", "k": "count", "rng": "rng"}),
        Case("vae.VAE.fit_local", vae.fit_local,
             {"params": None, "x": x, "n_steps": 2, "lr_final": 1e-3},
             {"n_steps": "count", "lr_final": "positive"}),
        Case("vae.VAE.amortization_gap", vae.amortization_gap,
             {"params": None, "x": x, "k_eval": 2, "rng": 0, "n_steps": 2},
             {"k_eval": "count", "rng": "rng"}),
        Case("vae.VAE.as_model", vae.as_model, {"params": p}, {"params": "params"},
             aliases=al, accept={"params": ("none",)}),
        Case("vae.VAE.fit", V.VAE(5, 2, (3,)).fit,
             {"x": x, "x_test": x, "n_epochs": 1, "batch_size": 2, "lr": 0.01, "rng": 0,
              "params": p, "init": "torch", "objective": "elbo", "estimator": "reinforce",
              "kl": "mc", "k": 2, "baseline": "loo", "verbose": False, "callback": None},
             {"x": "binary", "x_test": "binary", "n_epochs": "count", "batch_size": "count",
              "rng": "rng", "params": "params", "init": ("choice", "torch"),
              "objective": ("choice", "elbo"), "estimator": ("choice", "reinforce"),
              "kl": ("choice", "mc"), "k": "count", "baseline": ("choice", "loo"),
              "verbose": "flag", "callback": "instance"}, aliases=al,
             accept={"baseline": ("int",)}),  # a number is a constant baseline
        Case("vae.VAE.fit(lr)", V.VAE(5, 2, (3,)).fit,
             {"x": x, "n_epochs": 1, "batch_size": 2, "lr": 0.01, "rng": 0, "k": 2,
              "estimator": "stl"}, {"lr": "positive"},
             raises=(FloatingPointError,)),  # lr = 1e300 diverges: fit's FloatingPointError
        Case("vae.VAE.fit(fast)", V.VAE(5, 2, (3,)).fit,
             {"x": x, "n_epochs": 2, "batch_size": 2, "lr": 0.01, "rng": 0},
             {"x": "binary", "lr": "positive"},
             raises=(FloatingPointError,)),  # lr = 1e300 diverges: fit's FloatingPointError
        Case("vae.VAE.encode", vae.encode, {"x": x, "params": None}, {"x": "binary"}),
        Case("vae.VAE.decode", vae.decode, {"z": z, "params": p, "raw": True},
             {"z": "array", "params": "params", "raw": "flag"}, aliases=al,
             accept={"params": ("none",)}),
        Case("vae.VAE.decode(gaussian)", gauss.decode, {"z": z, "raw": False},
             {"z": "array", "raw": "flag"}),
        Case("vae.VAE.reconstruct", vae.reconstruct, {"x": x, "params": None, "rng": 0},
             {"x": "binary", "rng": "rng"}),
        Case("vae.VAE.sample", vae.sample, {"n": 3, "rng": 0, "params": None,
                                            "return_mean": True},
             {"n": "count", "rng": "rng", "return_mean": "flag"}),
        Case("vae.VAE.sample(gaussian)", gauss.sample, {"n": 3, "rng": 0}, {"n": "count"}),
        Case("vae.VAE.save", vae.save, {"path": tmp_path / "v2"}, {"path": "path"},
             accept={"path": ("directory",)}, raises=(FileNotFoundError,)),
        Case("vae.VAE.load", V.VAE.load, {"path": saved}, {"path": "path"},
             raises=(FileNotFoundError,), aliases={"path": (str(tmp_path),)}),
        Case("vae.VAEModel", V.VAEModel, {"arch": arch, "params": p},
             {"arch": "instance", "params": "params"}, aliases=al),
        Case("vae.VAEModel.log_likelihood", model.log_likelihood, {"x": x, "z": z3},
             {"x": "binary", "z": "array"}),
        Case("vae.VAEModel.log_prior", model.log_prior, {"z": z3}, {"z": "array"}),
        Case("vae.VAEModel.log_joint", model.log_joint, {"x": x, "z": z3},
             {"x": "binary", "z": "array"}),
        Case("vae.VAEModel.log_q", model.log_q, {"x": x, "z": z3},
             {"x": "binary", "z": "array"}),
        Case("vae.VAEModel.sample_prior", model.sample_prior, {"n": 3, "k": 2, "rng": 0},
             {"n": "count", "k": "count", "rng": "rng"}),
        Case("vae.VAEModel.sample_q", model.sample_q, {"x": x, "k": 2, "rng": 0},
             {"x": "binary", "k": "count", "rng": "rng"}),
    ]



def _case_names(seed=20260):
    """conformance.build_cases(seed), reduced to the case names: the fuzz checks the
    argument handling, and the expected outputs hold NaN by design (standard errors that
    cannot be estimated), which the engine would count as NaN from finite input."""
    from lvmref import conformance as C

    return [c.name for c in C.build_cases(seed)]


def conformance_cases(tmp_path):
    """``lvmref.conformance``: the golden-vector kit other implementations call."""
    from lvmref import conformance as C

    cases = C.build_cases()[:2]  # two GMM cases keep the writes fast
    d = tmp_path / "vectors"
    C.write(d, cases=cases)
    _, _, expected = C.read(d)
    results = tmp_path / "results.npz"
    np.savez(results, **expected)
    rows = C.check(d, results)
    nan_ok = ("nan", "inf", "-inf", "ndim+1", "ndim-1", "shape", "empty")  # compared, fail
    return [
        Case("conformance.build_cases", _case_names, {"seed": 1}, {"seed": "count"},
             accept={"seed": ("zero",)}),
        # its own parent directory: the "directory" mutation writes vectors there
        Case("conformance.write", C.write, {"directory": tmp_path / "wdir" / "w", "seed": 1,
                                            "cases": cases},
             {"directory": "path", "seed": "count", "cases": "instance"},
             accept={"directory": ("directory", "missing-dir"), "seed": ("zero",)}),
        Case("conformance.read", C.read, {"directory": d}, {"directory": "path"},
             raises=(FileNotFoundError,)),
        Case("conformance.check", C.check, {"directory": d, "results": results,
                                            "patterns": ["gmm.*"]},
             {"directory": "path", "results": "path", "patterns": "patterns"},
             raises=(FileNotFoundError,)),
        Case("conformance.compare", C.compare, {"result": A, "expected": A.copy(),
                                                "tolerance": 1e-10},
             {"result": "array", "expected": "array", "tolerance": "nonneg"},
             accept={"result": nan_ok, "expected": nan_ok}),
        Case("conformance.format_table", C.format_table, {"rows": rows}, {"rows": "instance"}),
        Case("conformance.vae_params", C.vae_params,
             {"vae": V.VAE(4, 2, hidden=(3,)), "rng": 0, "hard": "collapsed", "scale": 0.3},
             {"vae": "instance", "rng": "rng", "hard": ("choice", "collapsed"),
              "scale": "nonneg"}),
    ]


def vae_training_cases():
    """``lvmref.vae_training``: the allocation-free training step and its BLAS helpers."""
    from lvmref import vae_training as VT

    vae = V.VAE(5, 2, hidden=(3,))
    gauss = V.VAE(5, 2, hidden=(3,), likelihood="gaussian")
    p, pg = vae.init_params(0), gauss.init_params(0)
    x, eps = X_BIN[:, :5], rng0.normal(size=(3, 2))
    ws, wg = VT.TrainingWorkspace(vae.arch, p, 3), VT.TrainingWorkspace(gauss.arch, pg, 3)
    al = {"params": tuple(f"params[{k!r}]" for k in p)}
    sq = np.zeros((3, 4))
    return [
        Case("vae_training.TrainingWorkspace", VT.TrainingWorkspace,
             {"arch": vae.arch, "params": p, "batch_size": 3, "kl": "mc", "lr": 1e-3,
              "adam_eps": 1e-8, "check_inputs": True},
             {"arch": "instance", "params": "params", "batch_size": "count",
              "kl": ("choice", "mc"), "lr": "positive", "adam_eps": "nonneg",
              "check_inputs": "flag"}, aliases=al),
        Case("vae_training.TrainingWorkspace.step", ws.step, {"x": x, "eps": eps},
             {"x": "binary", "eps": "array"}),
        Case("vae_training.TrainingWorkspace.gradient", ws.gradient, {"x": x, "eps": eps},
             {"x": "binary", "eps": "array"}),
        Case("vae_training.TrainingWorkspace.step(gaussian)", wg.step,
             {"x": A[:, :5] if A.shape[1] >= 5 else np.hstack([A, A])[:, :5], "eps": eps},
             {"x": "array", "eps": "array"}),
        Case("vae_training.gemm_blocks", VT.gemm_blocks,
             {"a": np.ones((3, 2)), "b": np.ones((2, 4)), "out": sq},
             {"a": "instance", "b": "instance", "out": "instance"}),
        Case("vae_training.blas_threads", VT.blas_threads,
             {"arch": vae.arch, "batch_size": 100, "k": 1},
             {"arch": "instance", "batch_size": "count", "k": "count"}),
        Case("vae_training.scoped_blas_threads", VT.scoped_blas_threads,
             {"fit": V.VAE.fit}, {"fit": "instance"}),
    ]


BUILDERS = {"kernels": kernel_cases, "estimators": estimator_cases, "core": core_cases,
            "data": data_cases, "linear_gaussian": lg_cases, "mixtures": mixture_cases}
BUILDERS.update(helmholtz=helmholtz_cases, vae=vae_cases, conformance=conformance_cases,
                vae_training=vae_training_cases)


@pytest.fixture(scope="module")
def report():
    counts, failures = Counter(), []
    yield counts, failures
    print(f"\nAPI fuzz: {counts['calls']} mutated calls: {counts['clear']} clear errors, "
          f"{counts['result']} correct results, {len(failures)} failures "
          f"({dict((k, v) for k, v in counts.items() if k not in ('calls', 'clear', 'result'))})")


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_public_api_refuses_bad_input_clearly(builder, report, tmp_path):
    counts, all_failures = report
    build = BUILDERS[builder]
    cases = build(tmp_path) if "tmp_path" in inspect.signature(build).parameters else build()
    failures = []
    for case in cases:
        run_case(case, counts, failures)
    all_failures.extend(failures)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


COVERED_MODULES = ["lvmref.kernels", "lvmref.estimators", "lvmref.nn", "lvmref.optim",
                   "lvmref.testing", "lvmref.datasets", "lvmref.files",
                   "lvmref.linear_gaussian", "lvmref.gmm", "lvmref.vbgmm", "lvmref.mixture",
                   "lvmref.chunked", "lvmref.mixture_stats", "lvmref.helmholtz", "lvmref.vae",
                   "lvmref.conformance", "lvmref.vae_training"]


def test_every_public_callable_is_covered(tmp_path):
    """Each public function of the covered modules appears in a case (by name)."""
    names = {c.name for b, f in BUILDERS.items()
             for c in (f(tmp_path) if "tmp_path" in inspect.signature(f).parameters else f())}
    missing = []
    for modname in COVERED_MODULES:
        mod = importlib.import_module(modname)
        short = modname.replace("lvmref.", "")
        for n in mod.__all__:
            obj = getattr(mod, n)
            if inspect.isfunction(obj) and f"{short}.{n}" not in names:
                missing.append(f"{short}.{n}")
    assert missing == []


CLASS_COVERED_MODULES = ["lvmref.helmholtz", "lvmref.vae"]


def test_every_public_class_and_method_of_the_model_modules_is_covered(tmp_path):
    """Each public class of ``CLASS_COVERED_MODULES`` (its constructor) and each of its
    public methods appear in a case (by name, e.g. ``vae.VAE.fit``)."""
    names = {c.name.split("(")[0] for b in ("helmholtz", "vae") for c in BUILDERS[b](tmp_path)}
    missing = []
    for modname in CLASS_COVERED_MODULES:
        mod = importlib.import_module(modname)
        short = modname.replace("lvmref.", "")
        for n in mod.__all__:
            obj = getattr(mod, n)
            if not inspect.isclass(obj):
                continue
            want = [f"{short}.{n}"] + [
                f"{short}.{n}.{m}" for m, attr in vars(obj).items()
                if not m.startswith("_") and (inspect.isfunction(attr) or isinstance(
                    attr, (staticmethod, classmethod)))]
            missing += [w for w in want if w not in names]
    assert missing == []
