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


BUILDERS = {"kernels": kernel_cases, "estimators": estimator_cases, "core": core_cases,
            "data": data_cases, "linear_gaussian": lg_cases}
BUILDERS.update(helmholtz=helmholtz_cases, vae=vae_cases)


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
                   "lvmref.linear_gaussian", "lvmref.helmholtz", "lvmref.vae"]


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
