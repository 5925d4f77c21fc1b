r"""The allocation-free VAE training step: gradient (9) of :mod:`lvmref.vae` with k = 1, then Adam.

This is performance machinery, kept apart so that a reader of the derivation in
:mod:`lvmref.vae` never meets it. It computes exactly what
:func:`lvmref.vae.elbo_grad_reparam` computes for one noise sample per row (a test asserts
they agree to rounding), followed by one Adam step (:mod:`lvmref.optim`'s update rule),
arranged for speed:

* all parameters live in one flat vector ``theta`` (``params`` holds views into it) and
  all gradients in ``grad``, so Adam is one fused pass
  (:func:`lvmref.kernels.optim.adam_update_nb`);
* activations are stored feature-major, ``(n_units, n_rows)``, each layer input with an
  extra row of ones. Because ``W_i`` and ``b_i`` are adjacent in ``theta``, the
  ``(n_in + 1, n_out)`` block ``[W_i; b_i]`` is a view, so one matrix product gives
  ``a_i = [W_i; b_i]^T [h_i; 1]`` (bias included) and one gives
  ``[dW_i; db_i] = [h_i; 1] delta_i^T`` (bias gradient included);
* every buffer is preallocated (per batch size) and written with ``out=``, and the views
  each matrix product reads and writes are built once per batch size (a "plan" per
  network), so a step does no slicing or allocation in Python;
* on AVX-512 CPUs (:data:`SMALL_MATRIX_PATH`), the weight-gradient product takes delta
  from a batch-major copy (written directly by the Bernoulli and KL kernels for the
  output layers), so BLAS sees no transposed operand, and products with M*N*K >
  :data:`SMALL_GEMM` are split into row blocks (:func:`gemm_blocks`). Both keep OpenBLAS
  on its faster small-matrix path (below). Elsewhere neither helps: the product reads
  the transposed view ``delta.T`` and the step makes no copies;
* tanh, and the exp and log1p of the Bernoulli likelihood, run in Numba kernels
  (:mod:`lvmref.kernels.vae`) with the vectorizable functions of
  :mod:`lvmref.kernels.fastexp` (derived error bounds: tanh <= 8.0 u, log1p <= 2.8 u,
  exp <= 2.4 u): NumPy's float64 ``tanh``/``exp``/``log1p`` are scalar libm calls on
  CPUs without AVX-512 and took about half of the step there (tanh alone 15-45 ns per
  element, twice 20,000 elements per step at batch 100); so do the ``exp``/``expm1`` of
  the latent layer (:func:`lvmref.kernels.vae.latent_sample_nb`). The kernel-or-twin choice
  (:func:`lvmref.kernels.dispatch.pick`) is made once, when a workspace is built.

OpenBLAS notes. OpenBLAS (SkylakeX kernels) runs dgemm on an unpacked "small matrix" path
when M*N*K <= 100**3 and the product is not of the Fortran "TN" kind with a large output;
for the 64-200 layers at batch 100 (M*N*K ~ 1.3e6) two half-size products on that path
are ~30 % faster than one packed product (measured while tuning
``validation/bench_vae.py``, which times this step against a PyTorch twin). On a CPU
without AVX-512 OpenBLAS runs its Haswell kernels, which have no such path: there the
split made the step 1.26x *slower* (paired median of 21 interleaved repeats of 100 steps,
2-core AMD EPYC, AVX2 + FMA), so :data:`SMALL_GEMM` splits only on AVX-512 CPUs. With
the Haswell kernels the 11 products of the 64-200-10 step take the same time within 3 %
whichever of A, B, C is stored transposed (all 8 arrangements timed on the same machine),
so the batch-major copies of delta (16 us per step there) are made on AVX-512 CPUs only;
the results are bitwise the same either way (200 steps compared).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from .kernels.checks import (
    as_float_array,
    check_binary,
    check_choice,
    check_flag,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_real,
)
from .kernels.constants import LOG_2PI
from .kernels.dispatch import pick
from .kernels.fpenv import benign_underflow
from .kernels.optim import adam_update_nb, adam_update_np
from .kernels.vae import (
    bernoulli_grad_nb,
    bernoulli_grad_np,
    kl_grad_analytic_nb,
    kl_grad_analytic_np,
    latent_sample_nb,
    latent_sample_np,
    tanh_backward_nb,
    tanh_backward_np,
    tanh_inplace_nb,
    tanh_inplace_np,
)
from .nn import ACTIVATIONS

__all__ = ["TrainingWorkspace", "gemm_blocks", "SMALL_GEMM", "SMALL_MATRIX_PATH",
           "BLAS_SMALL_WORK", "blas_threads", "scoped_blas_threads"]

def _has_avx512f():
    """Whether this CPU has AVX-512F (OpenBLAS then runs its SkylakeX kernels)."""
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx512f", False))


#: Whether to arrange the products for OpenBLAS's small-matrix path (AVX-512 CPUs only;
#: see the OpenBLAS notes): split the larger products (:data:`SMALL_GEMM`) and give the
#: weight-gradient products a batch-major copy of delta. Read when a workspace builds its
#: plans (per batch size), which the steps then follow.
SMALL_MATRIX_PATH = _has_avx512f()

#: Largest M*N*K of a matrix product run in one piece (see the OpenBLAS notes).
SMALL_GEMM = 1_000_000 if SMALL_MATRIX_PATH else 1 << 62


def gemm_blocks(a, b, out):
    """Row blocks of ``out = a @ b`` small enough for BLAS's small-matrix path.

    Parameters
    ----------
    a : ndarray, shape (m, k)
    b : ndarray, shape (k, n)
    out : ndarray, shape (m, n)

    Returns
    -------
    list of (a_r, b, out_r)
        View triples; each block is an exact sub-product (at most :data:`SMALL_GEMM`
        multiply-adds unless it is a single row), so running them equals one
        ``np.matmul`` up to the summation order inside BLAS. The views stay valid as
        long as the arrays do, so the training workspace builds them once.
    """
    for name, arr in (("a", a), ("b", b), ("out", out)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 2:
            raise TypeError(f"{name} must be a 2-D numpy array, got "
                            f"{getattr(arr, 'shape', type(arr).__name__)}")
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape != (m, n):
        raise ValueError(f"shapes do not chain: a {a.shape} @ b {b.shape} -> out {out.shape}")
    blocks = -(-(m * n * k) // SMALL_GEMM)
    if blocks <= 1:
        return [(a, b, out)]
    step = -(-m // blocks)
    return [(a[r:r + step], b, out[r:r + step]) for r in range(0, m, step)]


#: Largest multiply-add count of a training step's widest matrix product for which the
#: step runs BLAS on one thread (see :func:`blas_threads`).
BLAS_SMALL_WORK = 1 << 24


@benign_underflow
def blas_threads(arch, batch_size, k=1):
    """BLAS threads for training ``arch`` with minibatches of ``batch_size`` rows (``k``
    noise samples each): 1 when the widest product of a step has at most
    :data:`BLAS_SMALL_WORK` multiply-adds, else ``None`` (leave BLAS as configured).

    Products of a few million multiply-adds take tens of microseconds; a second BLAS
    thread saves little of that and costs a hand-off per product, and on a busy machine
    OpenBLAS's waiting threads compete with the work: ``lvmref vae`` on digits (batch
    100) ran ~8x slower with OpenBLAS's default two threads than with one on the 2-core
    development machine (``validation/bench_threads.py`` measures it).

    Parameters
    ----------
    arch : lvmref.vae.VAEArchitecture
    batch_size, k : int

    Returns
    -------
    int or None
    """
    if not all(hasattr(arch, a) for a in ("encoder", "decoder")):
        raise TypeError(f"arch must be a lvmref.vae.VAEArchitecture (a VAE's .arch), got "
                        f"{type(arch).__name__}")
    rows = check_positive_int(batch_size, "batch_size") * check_positive_int(k, "k")
    widest = max(rows * (net.sizes[i] + 1) * net.sizes[i + 1]
                 for net in (arch.encoder, arch.decoder) for i in range(net.n_layers))
    return 1 if widest <= BLAS_SMALL_WORK else None


def scoped_blas_threads(fit):
    """Decorator for ``VAE.fit``: run the call with :func:`blas_threads` BLAS threads.

    The limit (``threadpoolctl.threadpool_limits(..., user_api="blas")``, imported on
    first use) holds for the duration of the call only and is restored afterwards, also
    on an exception; it costs about 1 ms per call (10 ms the first time). Arguments that
    are not valid integers are passed through unchanged, so that ``fit`` reports them.
    """
    if not callable(fit):
        raise TypeError(f"fit must be a callable (VAE.fit), got {type(fit).__name__}")
    sig = inspect.signature(fit)
    if not {"batch_size", "k"} <= set(sig.parameters):
        raise ValueError(f"fit must take batch_size and k arguments (VAE.fit), got "
                         f"{getattr(fit, '__name__', 'fit')}{sig}")
    default_batch = sig.parameters["batch_size"].default
    default_k = sig.parameters["k"].default

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        batch_size = kwargs.get("batch_size", default_batch)
        k = kwargs.get("k", default_k)
        threads = None
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
               for v in (batch_size, k)):
            threads = blas_threads(self.arch, batch_size, k)
        if threads is None:
            return fit(self, *args, **kwargs)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads, user_api="blas"):
            return fit(self, *args, **kwargs)

    return wrapper


#: Largest magnitude of the noise (the rule of ``lvmref.vae``) and of Gaussian data in a
#: checked batch: beyond it, products and squares overflow float64.
_MAX_ABS = 1e150

_ARCH_ATTRS = ("encoder", "decoder", "n_features", "n_latent", "likelihood", "param_shapes",
               "check_params")


@benign_underflow
class TrainingWorkspace:
    """Buffers and plans of the allocation-free training step (see the module docstring).

    Parameters
    ----------
    arch : lvmref.vae.VAEArchitecture
        The architecture (``VAE.arch``).
    params : dict
        Initial parameters (layout of :mod:`lvmref.vae`; validated, copied into
        ``theta``).
    batch_size : int
        Rows of the largest batch; buffers for other sizes are built on first use.
    kl : {"analytic", "mc"}
        ELBO estimator (7a) or (7b) of :mod:`lvmref.vae`.
    lr : float
        Adam step size (may be changed between steps).
    betas : (float, float)
        Adam's beta1, beta2 in [0, 1).
    adam_eps : float
        Adam's epsilon (added to the denominator).
    check_inputs : bool
        Whether :meth:`step` and :meth:`gradient` validate each batch (x finite, binary
        for a Bernoulli decoder, else at most 1e150 in magnitude; eps finite and at most
        1e150 in magnitude) before it can reach the parameters. ``VAE.fit``, which
        validated its data once and draws the noise itself, passes False; a batch that
        is not valid then gives meaningless results (and non-finite parameters).

    Attributes
    ----------
    theta, grad, m, v : ndarray, shape (n_params,)
        Flat parameters, gradient of the last :meth:`gradient` call (ascent direction of
        the batch-mean ELBO), Adam's moment estimates.
    params, grads : dict
        Views into ``theta`` and ``grad`` under the parameter names and shapes.
    t : int
        Adam steps taken.
    """

    def __init__(self, arch, params, batch_size, kl="analytic", lr=1e-3, betas=(0.9, 0.999),
                 adam_eps=1e-8, check_inputs=True):
        if not all(hasattr(arch, a) for a in _ARCH_ATTRS):
            raise TypeError(f"arch must be a lvmref.vae.VAEArchitecture (a VAE's .arch), got "
                            f"{type(arch).__name__}")
        params = arch.check_params(params)
        batch_size = check_positive_int(batch_size, "batch_size")
        self.arch, self.kl = arch, check_choice(kl, "kl", ("analytic", "mc"))
        self.lr = check_positive_float(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1, b2 = (check_real(b, "betas") for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas, self.t = (b1, b2), 0
        self.adam_eps = check_nonnegative_float(adam_eps, "adam_eps")
        self.check_inputs = check_flag(check_inputs, "check_inputs")
        shapes = arch.param_shapes()
        total = sum(int(np.prod(s)) for s in shapes.values())
        self.theta, self.grad = np.empty(total), np.zeros(total)
        self.m, self.v = np.zeros(total), np.zeros(total)
        self.params, self.grads = {}, {}
        off = 0
        self._aug = {}  # prefix -> list of ([W; b] view, [dW; db] view) per layer
        for net in (arch.encoder, arch.decoder):
            views = []
            for i in range(net.n_layers):
                n_in, n_out = net.sizes[i], net.sizes[i + 1]
                size = (n_in + 1) * n_out
                w_aug = self.theta[off:off + size].reshape(n_in + 1, n_out)
                g_aug = self.grad[off:off + size].reshape(n_in + 1, n_out)
                for key, sl in ((f"{net.prefix}W{i}", slice(0, n_in)),
                                (f"{net.prefix}b{i}", n_in)):
                    self.params[key] = w_aug[sl]
                    self.grads[key] = g_aug[sl]
                    self.params[key][...] = params[key]
                views.append((w_aug, g_aug))
                off += size
            self._aug[net.prefix] = views
        if off != total or list(self.params) != list(shapes):
            raise RuntimeError("parameter layout mismatch in the training workspace")
        self.nets = (arch.encoder, arch.decoder)
        # the kernel-or-twin choice, made once (lvmref.kernels.dispatch)
        self._tanh_backward = pick(tanh_backward_nb, tanh_backward_np)
        self._bernoulli_grad = pick(bernoulli_grad_nb, bernoulli_grad_np)
        self._kl_grad_analytic = pick(kl_grad_analytic_nb, kl_grad_analytic_np)
        self._tanh = pick(tanh_inplace_nb, tanh_inplace_np)
        self._latent_sample = pick(latent_sample_nb, latent_sample_np)
        self._adam_update = pick(adam_update_nb, adam_update_np)
        self._buffers = {}
        self._bufs(batch_size)

    def _bufs(self, nb):
        """Buffers and precomputed GEMM views for a batch of nb rows (built once per nb)."""
        if nb not in self._buffers:
            bufs = {}
            for net in self.nets:
                views = self._aug[net.prefix]
                # inp[i]: input of layer i with a row of ones; inp[L] holds the output
                inp = [np.ones((w + 1, nb)) for w in net.sizes[:-1]]
                inp.append(np.empty((net.sizes[-1], nb)))
                grd = [np.empty((w, nb)) for w in net.sizes]  # d value / d inp[i]
                fwd, bwd = [], []
                for i, act in enumerate(net.activations):
                    out = inp[i + 1][:net.sizes[i + 1]]
                    # out is a leading row block of a C-contiguous buffer: flat view for
                    # the elementwise kernels
                    fwd.append((gemm_blocks(views[i][0].T, inp[i], out), out.reshape(-1), act))
                    w_aug, g_aug = views[i]
                    # [dW; db] = [h; 1] delta^T, eq. (2). On the small-matrix path, with a
                    # batch-major copy of delta: the product is then NN for BLAS (no
                    # transposed operand), which OpenBLAS runs on that path; with delta.T
                    # it takes the slower packed path. Elsewhere delta.T costs nothing.
                    # The choice is part of the plan, which _backward follows.
                    delta_t = np.empty((nb, net.sizes[i + 1]))
                    copy = SMALL_MATRIX_PATH
                    wgrad = gemm_blocks(inp[i], delta_t if copy else grd[i + 1].T, g_aug)
                    need_input = i > 0 or net is self.arch.decoder  # d/dz for the encoder
                    igrad = gemm_blocks(w_aug[:-1], grd[i + 1], grd[i]) if need_input else []
                    bwd.append((grd[i + 1], out, act, delta_t, copy, wgrad, igrad))
                bufs[net.prefix] = (inp, grd, fwd, bwd[::-1])
            bufs["std"] = np.empty((self.arch.n_latent, nb))
            bufs["em1"] = np.empty((self.arch.n_latent, nb))
            # the noise, feature-major: with the strided view eps.T the latent kernel's
            # loop does not vectorize (14 us instead of 6 at (10, 100); the copy costs 1)
            bufs["eps"] = np.empty((self.arch.n_latent, nb))
            self._buffers[nb] = bufs
        return self._buffers[nb]

    def _forward(self, fwd):
        """Eq. (1) of lvmref.nn, feature-major, over the precomputed layer plan ``fwd``."""
        for blocks, out, act in fwd:
            for a, b, o in blocks:
                np.matmul(a, b, out=o)
            if act == "tanh":
                self._tanh(out)
            elif act != "identity":
                out[...] = ACTIVATIONS[act][0](out)

    def _backward(self, bwd, top_transposed):
        """Eq. (2) of lvmref.nn over the plan ``bwd`` (top layer first); the upstream
        gradient is in the top layer's delta buffer, and if ``top_transposed`` also in its
        batch-major copy (valid for an identity output layer)."""
        for layer, (delta, h, act, delta_t, copy, wgrad, igrad) in enumerate(bwd):
            if act == "tanh":                    # f' = 1 - h^2
                self._tanh_backward(delta, h)
            elif act == "relu":                  # f' = [h > 0]
                delta *= h > 0.0
            elif act == "sigmoid":               # f' = h (1 - h)
                delta *= h - h * h
            elif act == "softplus":              # f' = sigmoid(a) = 1 - exp(-h)
                delta *= -np.expm1(-h)
            if copy and (layer or not top_transposed or act != "identity"):
                # the batch-major copy that wgrad reads (see _bufs)
                np.copyto(delta_t, delta.T)
            for a, b, o in wgrad:
                np.matmul(a, b, out=o)
            for a, b, o in igrad:
                np.matmul(a, b, out=o)

    def step(self, x, eps):
        """:meth:`gradient` at (x, eps), then one Adam step; returns the batch-mean ELBO."""
        value = self._gradient(*self._check_batch(x, eps))
        self.t += 1
        b1, b2 = self.betas
        self._adam_update(self.theta, self.grad, self.m, self.v, -1.0, self.lr, b1, b2,
                          self.adam_eps, 1.0 - b1**self.t, float(np.sqrt(1.0 - b2**self.t)))
        return value

    def gradient(self, x, eps):
        """Batch-mean ELBO (7) at (x, eps) and its gradient (9) into ``grad``/``grads``.

        Parameters
        ----------
        x : array_like, shape (nb, D)
            A batch of data (checked as ``check_inputs`` says; not copied when it is
            float64 already).
        eps : array_like, shape (nb, K)
            Standard-normal noise, one sample per row (eq. 6).

        Returns
        -------
        float
        """
        return self._gradient(*self._check_batch(x, eps))

    def _check_batch(self, x, eps):
        K, d = self.arch.n_latent, self.arch.n_features
        if self.check_inputs:
            x = as_float_array(x, "x", ndim=2, copy=False)
            eps = as_float_array(eps, "eps", ndim=2, copy=False)
        else:
            x, eps = np.asarray(x, dtype=np.float64), np.asarray(eps, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
            raise ValueError(f"x must have shape (nb, {d}) with nb >= 1, got {x.shape}")
        if eps.shape != (x.shape[0], K):
            raise ValueError(f"eps must have shape ({x.shape[0]}, {K}), got {eps.shape}")
        if self.check_inputs:
            if self.arch.likelihood == "bernoulli":
                check_binary(x, "x")
            elif np.max(np.abs(x), initial=0.0) > _MAX_ABS:
                raise ValueError(f"x must be at most {_MAX_ABS:g} in magnitude for a Gaussian "
                                 "decoder (its squared residuals overflow float64)")
            if np.max(np.abs(eps), initial=0.0) > _MAX_ABS:
                raise ValueError(f"eps must be at most {_MAX_ABS:g} in magnitude (larger "
                                 "values overflow the networks' products)")
        return x, eps

    def _gradient(self, x, eps):
        arch, nb = self.arch, x.shape[0]
        K, d = arch.n_latent, arch.n_features
        enc, dec = self.nets
        bufs = self._bufs(nb)
        e_inp, e_grd, e_fwd, e_bwd = bufs[enc.prefix]
        d_inp, d_grd, d_fwd, d_bwd = bufs[dec.prefix]
        xt = e_inp[0][:d]
        xt[...] = x.T
        self._forward(e_fwd)
        out = e_inp[-1]
        mean, log_var = out[:K], out[K:]
        eps_t = bufs["eps"]
        eps_t[...] = eps.T
        std = bufs["std"]
        z = d_inp[0][:K]
        em1 = bufs["em1"]
        self._latent_sample(mean, log_var, eps_t, std, em1, z)             # eq. (6)
        self._forward(d_fwd)
        dec_out = d_inp[-1]
        g_out = d_grd[-1]
        if arch.likelihood == "bernoulli":                               # eq. (2a), (8)
            ll = self._bernoulli_grad(xt, dec_out, 1.0 / nb, g_out, d_bwd[0][3])
            dec_top_t = True                 # the kernel wrote the batch-major copy too
        else:                                                            # eq. (2b), (8)
            m, v = dec_out[:d], dec_out[d:]
            r = xt - m
            iv = np.exp(-v)
            r2iv = r * r * iv
            ll = -0.5 * float(np.sum(LOG_2PI + v + r2iv))
            np.multiply(r * iv, 1.0 / nb, out=g_out[:d])
            np.multiply(r2iv - 1.0, 0.5 / nb, out=g_out[d:])
            dec_top_t = False
        self._backward(d_bwd, dec_top_t)
        g_z = d_grd[0]
        g_enc = e_grd[-1]
        if self.kl == "analytic":                                        # eq. (9a)
            kl = self._kl_grad_analytic(mean, log_var, em1, std, eps_t, g_z, 1.0 / nb,
                                        g_enc[:K], g_enc[K:], e_bwd[0][3])
            value = (ll - kl) / nb
            enc_top_t = True
        else:                                                            # eq. (9b)
            value = (ll - 0.5 * float(np.sum(z * z))
                     + 0.5 * float(np.sum(log_var + eps_t * eps_t))) / nb
            np.subtract(g_z, z / nb, out=g_enc[:K])
            np.multiply(g_enc[:K] * eps_t, 0.5 * std, out=g_enc[K:])
            g_enc[K:] += 0.5 / nb
            enc_top_t = False
        self._backward(e_bwd, enc_top_t)
        return float(value)
