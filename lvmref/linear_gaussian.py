r"""Closed forms of the linear-Gaussian VAE (probabilistic PCA): an oracle for :mod:`lvmref.vae`.

The equations are derived in the :mod:`lvmref.vae` docstring, eqs. (13)-(14): for the PPCA
decoder :math:`x = Wz + b + \text{noise}`, noise :math:`\mathcal N(0, \sigma^2 I_D)`, W of
shape (D, K), and :math:`M = W^\top W + \sigma^2 I_K`,

.. math::

   p(x) = \mathcal N(x \mid b, W W^\top + \sigma^2 I_D), \qquad
   p(z \mid x) = \mathcal N\big(z \mid M^{-1} W^\top (x - b), \ \sigma^2 M^{-1}\big), \tag{13}

and for any VAE without hidden layers and with a Gaussian likelihood the expected
log-likelihood under a diagonal-Gaussian q, hence the ELBO, is analytic (eq. 14). The
tests and validation scripts compare the Monte Carlo and gradient code of
:mod:`lvmref.vae` with these.
"""

from __future__ import annotations

import numpy as np

from .kernels import kl_normal_std
from .kernels.checks import as_float_array, check_positive_float
from .kernels.constants import LOG_2PI
from .kernels.fpenv import benign_underflow
from .vae import VAE, VAEArchitecture, encode

__all__ = [
    "linear_gaussian_log_marginal",
    "linear_gaussian_posterior",
    "linear_gaussian_vae",
    "linear_gaussian_elbo",
]


#: Largest magnitude accepted in W, b and x: their products and squares (W W^T, (x - b)^2
#: summed over D features) must stay inside float64 for these closed forms.
MAX_ABS = 1e150


def _check_scale(a, name):
    if np.max(np.abs(a), initial=0.0) > MAX_ABS:
        raise ValueError(f"{name} values too large (beyond {MAX_ABS:g}): their products "
                         "and squares overflow float64; rescale the data and the model")
    return a


def _check_ppca(W, b, noise_var):
    W = _check_scale(as_float_array(W, "W", ndim=2), "W")
    b = _check_scale(as_float_array(b, "b", shape=(W.shape[0],)), "b")
    noise_var = check_positive_float(noise_var, "noise_var")
    return W, b, noise_var


@benign_underflow
def linear_gaussian_log_marginal(W, b, noise_var, x):
    """log p(x) = log N(x | b, W W^T + noise_var I), eq. (13), via a Cholesky factor.

    Parameters
    ----------
    W : array_like, shape (D, K)
    b : array_like, shape (D,)
    noise_var : float
    x : array_like, shape (n, D)

    Returns
    -------
    ndarray, shape (n,)
    """
    W, b, noise_var = _check_ppca(W, b, noise_var)
    x = _check_scale(as_float_array(x, "x", shape=(None, W.shape[0])), "x")
    d = W.shape[0]
    cov = W @ W.T + noise_var * np.eye(d)
    chol = np.linalg.cholesky(cov)
    r = np.linalg.solve(chol, (x - b).T)
    return -0.5 * (d * LOG_2PI + np.sum(r * r, axis=0)) - np.sum(np.log(np.diag(chol)))


@benign_underflow
def linear_gaussian_posterior(W, b, noise_var, x):
    """Exact posterior p(z | x) = N(M^-1 W^T (x - b), noise_var M^-1), eq. (13).

    Parameters
    ----------
    W : array_like, shape (D, K)
    b : array_like, shape (D,)
    noise_var : float
    x : array_like, shape (n, D)

    Returns
    -------
    mean : ndarray, shape (n, K)
    cov : ndarray, shape (K, K)
        The same for every row.
    """
    W, b, noise_var = _check_ppca(W, b, noise_var)
    x = _check_scale(as_float_array(x, "x", shape=(None, W.shape[0])), "x")
    m = W.T @ W + noise_var * np.eye(W.shape[1])
    mean = np.linalg.solve(m, W.T @ (x - b).T).T
    return mean, noise_var * np.linalg.inv(m)


@benign_underflow
def linear_gaussian_vae(W, b, noise_var):
    """A linear Gaussian VAE whose decoder is PPCA (W, b, noise_var) and whose encoder is
    the exact posterior, eq. (13).

    Requires orthogonal columns of W (so the posterior covariance is diagonal and a
    diagonal-Gaussian encoder can be exact): encoder weights ``[W M^-1, 0]``, bias
    ``[-M^-1 W^T b, log diag(noise_var M^-1)]``; decoder weights ``[W^T, 0]``, bias
    ``[b, log noise_var]``.

    Parameters
    ----------
    W : array_like, shape (D, K)
    b : array_like, shape (D,)
    noise_var : float

    Returns
    -------
    vae : lvmref.vae.VAE
        ``VAE(D, K, hidden=(), likelihood="gaussian")`` carrying these parameters as
        ``params_`` (a copy).
    params : dict
    """
    W, b, noise_var = _check_ppca(W, b, noise_var)
    d, K = W.shape
    gram = W.T @ W
    off = gram - np.diag(np.diag(gram))
    if np.max(np.abs(off), initial=0.0) > 1e-12 * max(1.0, np.max(np.abs(gram))):
        raise ValueError("W must have orthogonal columns (W^T W diagonal) for the exact "
                         "posterior to be a diagonal Gaussian")
    m_diag = np.diag(gram) + noise_var
    vae = VAE(d, K, hidden=(), likelihood="gaussian")
    a = W / m_diag                                   # (D, K) = W M^-1, so mean = x @ a + c
    params = {
        "enc.W0": np.concatenate([a, np.zeros((d, K))], axis=1),
        "enc.b0": np.concatenate([-(b @ a), np.log(noise_var / m_diag)]),
        "dec.W0": np.concatenate([W.T, np.zeros((K, d))], axis=1),
        "dec.b0": np.concatenate([b, np.full(d, np.log(noise_var))]),
    }
    vae.params_ = {k: v.copy() for k, v in params.items()}
    return vae, params


@benign_underflow
def linear_gaussian_elbo(params, x, arch, mean=None, log_var=None):
    """Exact ELBO (4) of a linear Gaussian VAE, eq. (14) plus the KL (5).

    Parameters
    ----------
    params : dict
        Layout of :mod:`lvmref.vae`.
    x : array_like, shape (n, D)
    arch : lvmref.vae.VAEArchitecture
        With ``hidden=()`` and ``likelihood="gaussian"`` (e.g. ``vae.arch`` of
        :func:`linear_gaussian_vae`).
    mean, log_var : array_like, shape (n, K), optional
        q parameters; default the encoder output.

    Returns
    -------
    ndarray, shape (n,)
    """
    if not (isinstance(arch, VAEArchitecture) and arch.hidden == ()
            and arch.likelihood == "gaussian"):
        raise ValueError("arch must be a VAEArchitecture with hidden=() and "
                         "likelihood='gaussian'")
    params = arch.check_params(params)
    x = _check_scale(arch.check_x(x), "x")
    d, K = arch.n_features, arch.n_latent
    if mean is None or log_var is None:
        mean, log_var = encode(params, x, arch)
    else:
        mean = as_float_array(mean, "mean", shape=(x.shape[0], K))
        log_var = as_float_array(log_var, "log_var", shape=(x.shape[0], K))
    A, C = params["dec.W0"][:, :d], params["dec.W0"][:, d:]     # (K, D) each
    a, c = params["dec.b0"][:d], params["dec.b0"][d:]
    tau = np.exp(log_var)                                      # (n, K)
    c_mu = mean @ C + c                                        # (n, D): E[v]
    tc = tau[:, :, None] * C[None, :, :]                       # (n, K, D): T c_d
    c_t_c = np.einsum("kd,nkd->nd", C, tc)
    shifted = mean[:, :, None] - tc                            # (n, K, D): mu - T c_d
    resid = x - a - np.einsum("kd,nkd->nd", A, shifted)
    a_t_a = (A * A).T @ tau.T                                  # (D, n)
    e_ll = -0.5 * np.sum(LOG_2PI + c_mu + np.exp(-c_mu + 0.5 * c_t_c)
                         * (resid**2 + a_t_a.T), axis=1)
    return e_ll - kl_normal_std(mean, log_var)
