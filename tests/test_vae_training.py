"""The allocation-free training step (lvmref.vae_training) against the reference gradient
of lvmref.vae, lvmref.optim.Adam, and plain matrix products."""

import numpy as np
import pytest

import lvmref.vae_training as vt
from lvmref.optim import Adam
from lvmref.vae import VAE, elbo_grad_reparam
from lvmref.vae_training import TrainingWorkspace, gemm_blocks


def _perturbed(vae, rng, scale=0.3):
    p = vae.init_params(rng)
    return {k: v + scale * rng.normal(size=v.shape) for k, v in p.items()}


def _data(vae, n, rng):
    if vae.likelihood == "bernoulli":
        return (rng.random((n, vae.n_features)) < 0.4).astype(float)
    return rng.normal(size=(n, vae.n_features))


def _assert_same_gradient(ws, vae, params, x, eps, kl):
    value = ws.gradient(x, eps)
    ref_value, ref = elbo_grad_reparam(params, x, eps, vae.arch, kl)
    assert value == pytest.approx(ref_value, rel=1e-13)
    for k in ref:
        np.testing.assert_allclose(ws.grads[k], ref[k], rtol=1e-12,
                                   atol=1e-14 * np.abs(ref[k]).max())


@pytest.mark.parametrize("small_matrix_path", [False, True])
def test_workspace_gradient_equals_reference(monkeypatch, small_matrix_path):
    """The allocation-free training step computes the same gradient as elbo_grad_reparam,
    with either arrangement of the weight-gradient products (batch-major copies of delta
    on AVX-512 CPUs, transposed views of delta elsewhere), whatever this CPU is."""
    monkeypatch.setattr(vt, "SMALL_MATRIX_PATH", small_matrix_path)
    rng = np.random.default_rng(16)
    for likelihood in ("bernoulli", "gaussian"):
        for kl in ("analytic", "mc"):
            for act in ("tanh", "relu", "sigmoid", "softplus"):
                vae = VAE(7, 3, hidden=(5, 4), likelihood=likelihood, activation=act)
                params = _perturbed(vae, rng, 0.2)
                ws = TrainingWorkspace(vae.arch, params, 10, kl, 1e-3)
                x, eps = _data(vae, 8, rng), rng.normal(size=(8, 3))  # smaller than batch
                _assert_same_gradient(ws, vae, params, x, eps, kl)


def test_workspace_with_numpy_twins_equals_reference(monkeypatch):
    """With every kernel replaced by its NumPy twin (what NUMBA_DISABLE_JIT=1 runs), the
    workspace still computes the reference gradient."""
    monkeypatch.setattr(vt, "pick", lambda kernel_nb, twin_np: twin_np)
    rng = np.random.default_rng(37)
    for likelihood, kl in (("bernoulli", "analytic"), ("gaussian", "mc")):
        vae = VAE(6, 2, hidden=(5,), likelihood=likelihood)
        params = _perturbed(vae, rng, 0.2)
        ws = TrainingWorkspace(vae.arch, params, 7, kl, 1e-3)
        assert ws._bernoulli_grad is vt.bernoulli_grad_np
        _assert_same_gradient(ws, vae, params, _data(vae, 7, rng), rng.normal(size=(7, 2)), kl)


def test_workspace_blocked_products_equal_reference(monkeypatch):
    """With the small-matrix threshold lowered, every product is split into row blocks;
    the gradient must still equal elbo_grad_reparam (the bench-size model takes this path)."""
    monkeypatch.setattr(vt, "SMALL_GEMM", 40)
    rng = np.random.default_rng(34)
    vae = VAE(7, 3, hidden=(5, 4))
    params = _perturbed(vae, rng, 0.2)
    ws = TrainingWorkspace(vae.arch, params, 9, "analytic", 1e-3)
    _assert_same_gradient(ws, vae, params, _data(vae, 9, rng), rng.normal(size=(9, 3)),
                          "analytic")


def test_gemm_blocks_cover_output(monkeypatch):
    rng = np.random.default_rng(35)
    a, b = rng.normal(size=(11, 6)), rng.normal(size=(6, 5))
    for limit in (1, 30, 100, 329, 330, 10**6):  # 1 row per block ... one block
        monkeypatch.setattr(vt, "SMALL_GEMM", limit)
        out = np.full((11, 5), np.nan)
        blocks = gemm_blocks(a.T.copy().T, b, out)  # a strided (transposed-view) operand
        for a_r, b_r, out_r in blocks:
            assert a_r.shape[0] == 1 or a_r.shape[0] * 6 * 5 <= limit
            np.matmul(a_r, b_r, out=out_r)
        assert sum(a_r.shape[0] for a_r, _, _ in blocks) == 11
        np.testing.assert_allclose(out, np.einsum("ik,kj->ij", a, b), rtol=1e-14, atol=1e-14)


def test_steps_equal_adam_on_the_reference_gradient():
    """step() = gradient (9) then Adam: the same as lvmref.optim.Adam on the reference
    gradient, over several steps and two batch sizes (buffers built per batch size)."""
    rng = np.random.default_rng(36)
    vae = VAE(6, 2, hidden=(4,))
    params = _perturbed(vae, rng, 0.2)
    ws = TrainingWorkspace(vae.arch, params, 5, "analytic", 1e-2)
    ref = {k: v.copy() for k, v in params.items()}
    opt = Adam(ref, lr=1e-2)
    for nb in (5, 3, 5, 7):
        x, eps = _data(vae, nb, rng), rng.normal(size=(nb, 2))
        value = ws.step(x, eps)
        ref_value, g = elbo_grad_reparam(ref, x, eps, vae.arch)
        opt.step(g, sign=-1.0)
        assert value == pytest.approx(ref_value, rel=1e-12)
    assert ws.t == 4
    for k in ref:
        np.testing.assert_allclose(ws.params[k], ref[k], rtol=1e-11, atol=1e-13)
    # params are views into theta
    assert all(np.shares_memory(v, ws.theta) for v in ws.params.values())


def test_bad_arguments_name_themselves():
    vae = VAE(4, 2, hidden=(3,))
    p = vae.init_params(0)
    with pytest.raises(TypeError, match="arch"):
        TrainingWorkspace(vae, p, 4)  # the estimator, not its architecture
    with pytest.raises(ValueError, match="params"):
        TrainingWorkspace(vae.arch, {k: v for k, v in p.items() if k != "dec.b0"}, 4)
    with pytest.raises(ValueError, match="params"):
        TrainingWorkspace(vae.arch, {**p, "dec.b0": np.full(4, np.nan)}, 4)
    with pytest.raises(ValueError, match="batch_size"):
        TrainingWorkspace(vae.arch, p, 0)
    with pytest.raises(ValueError, match="kl"):
        TrainingWorkspace(vae.arch, p, 4, kl="exact")
    with pytest.raises(ValueError, match="lr"):
        TrainingWorkspace(vae.arch, p, 4, lr=0.0)
    with pytest.raises(ValueError, match="betas"):
        TrainingWorkspace(vae.arch, p, 4, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        TrainingWorkspace(vae.arch, p, 4, betas=0.9)
    with pytest.raises(ValueError, match="adam_eps"):
        TrainingWorkspace(vae.arch, p, 4, adam_eps=-1.0)
    ws = TrainingWorkspace(vae.arch, p, 4)
    with pytest.raises(ValueError, match="x"):
        ws.gradient(np.zeros((3, 5)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x"):
        ws.gradient(np.zeros((0, 4)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="eps"):
        ws.step(np.zeros((3, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="eps"):
        ws.step(np.zeros((3, 4)), np.zeros((3, 1, 2)))


def test_blas_threads_policy():
    """One BLAS thread exactly up to BLAS_SMALL_WORK multiply-adds in the widest product."""
    vae = VAE(64, 10, hidden=(200,))
    widest = 65 * 200  # (n_in + 1) * n_out of the widest layer (encoder input layer)
    rows = vt.BLAS_SMALL_WORK // widest
    assert vt.blas_threads(vae.arch, 100) == 1
    assert vt.blas_threads(vae.arch, rows) == 1
    assert vt.blas_threads(vae.arch, rows + 1) is None
    assert vt.blas_threads(vae.arch, rows // 4 + 1, k=4) is None  # rows = batch * k


def test_fit_limits_blas_threads_during_the_call_only(monkeypatch):
    """Inside VAE.fit BLAS runs on the chosen thread count; afterwards (also after an
    error) the caller's setting is back."""
    import threadpoolctl

    def blas():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas()
    seen = []
    step = TrainingWorkspace.step

    def spy(self, x, eps):
        seen.append(blas())
        return step(self, x, eps)

    monkeypatch.setattr(TrainingWorkspace, "step", spy)
    rng = np.random.default_rng(40)
    x = (rng.random((12, 6)) < 0.5).astype(float)
    vae = VAE(6, 2, hidden=(5,))
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outer = blas()
        vae.fit(x, n_epochs=1, batch_size=6, rng=0)
        assert blas() == outer
        with pytest.raises(ValueError, match="lr"):
            vae.fit(x, n_epochs=1, batch_size=6, lr=-1.0, rng=0)
        assert blas() == outer
    assert seen and all(s == [1] * len(s) for s in seen)
    assert blas() == before
    with pytest.raises(ValueError, match="batch_size"):  # invalid values reach fit's checks
        vae.fit(x, n_epochs=1, batch_size=0, rng=0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_refused_batch_leaves_the_workspace_as_it_was(likelihood):
    """step() refuses a batch that is not valid data before it reaches the parameters: it
    used to take NaN, non-binary or overflowing input, and every later step then returned
    NaN from the corrupted theta. With check_inputs=False (what VAE.fit uses, after
    validating its data once) nothing is checked."""
    rng = np.random.default_rng(38)
    vae = VAE(4, 2, hidden=(3,), likelihood=likelihood)
    ws = TrainingWorkspace(vae.arch, _perturbed(vae, rng, 0.2), 5)
    x, eps = _data(vae, 5, rng), rng.normal(size=(5, 2))
    ws.step(x, eps)
    state = [a.copy() for a in (ws.theta, ws.m, ws.v)]
    bad = {"x": [np.where(x == x[0, 0], np.nan, x), np.full_like(x, 1e300)],
           "eps": [np.full_like(eps, np.inf), np.full_like(eps, 1e200)]}
    if likelihood == "bernoulli":
        bad["x"].append(x * 0.5)
    for name, values in bad.items():
        for value in values:
            args = {"x": x, "eps": eps, name: value}
            with pytest.raises(ValueError, match=rf"^{name} "):
                ws.step(**args)
    assert ws.t == 1
    for a, b in zip((ws.theta, ws.m, ws.v), state):
        np.testing.assert_array_equal(a, b)
    # the next valid step equals a fresh workspace's second step
    ref = TrainingWorkspace(vae.arch, _perturbed(vae, np.random.default_rng(38), 0.2), 5)
    ref.step(x, eps)
    assert ws.step(x, eps) == ref.step(x, eps)
    np.testing.assert_array_equal(ws.theta, ref.theta)
    unchecked = TrainingWorkspace(vae.arch, ref.params, 5, check_inputs=False)
    assert np.isnan(unchecked.step(np.full_like(x, np.nan), eps))
