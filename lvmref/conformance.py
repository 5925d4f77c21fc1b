"""Golden test vectors: ``lvmref conformance write DIR`` and ``lvmref conformance check``.

Another implementation of these models -- in any language -- checks itself against
lvmref by reading the vectors, computing its outputs from the given inputs, and comparing
(like NumPy's bit-generator reference streams or SciPy's special-function tables).
Nothing here is mathematics: every expected output is computed by the public function of
lvmref named in the manifest, from inputs drawn once from fixed seeds.

Format (version :data:`FORMAT_VERSION`)
---------------------------------------
``write(DIR)`` creates three files:

* ``DIR/manifest.json`` -- ``format`` (``"lvmref-conformance"``), ``format_version``,
  ``lvmref_version``, ``error_measure`` (below), ``layouts`` (the parameter layout of each
  model, as in the model docstrings) and ``cases``: one entry per case with ``name``,
  ``model``, ``function`` (the lvmref function that defines the outputs), ``description``,
  ``options`` (JSON scalars and lists: architecture, covariance type, step sizes, ...),
  ``hard`` (which hard regime the case exercises, or null), and ``inputs`` / ``outputs``:
  for each array its ``key`` in the ``.npz`` file, ``meaning``, ``shape``, ``layout``,
  and for outputs the recommended ``tolerance`` (and the ``reason`` where it is not the
  default).
* ``DIR/inputs.npz`` -- float64 arrays under ``<case>/<input>``.
* ``DIR/expected.npz`` -- float64 arrays under ``<case>/<quantity>``.

Case names contain no ``/``; a key is split at its first ``/``. Parameter dicts are
stored one array per entry as ``<case>/params/<name>`` (and gradient dicts as
``<case>/grads/<name>``) with the parameter names of the model's layout (e.g.
``vae.iwae.dreg/grads/enc.W0``). Dense layers are ``y = x @ W + b`` with ``W`` of shape
``(n_in, n_out)`` (a PyTorch ``nn.Linear`` stores ``W.T``).

Checking
--------
``check(DIR, RESULTS)`` reads an ``.npz`` with the other implementation's outputs under
the same keys as ``expected.npz`` and compares each array:

* a key that is missing, or an array of another shape, is a failure naming the key;
* non-finite expected entries (``-inf`` log weights, ``nan`` standard errors that cannot
  be estimated) must be reproduced exactly (same position, same value);
* the finite entries are compared normwise: ``max |r - e| / max |e|`` (the plain
  ``max |r - e|`` where every expected entry is 0), which must not exceed the recommended
  tolerance. Normwise, because a gradient entry that cancels to ~1e-17 has no meaningful
  elementwise relative error.

The default tolerance is :data:`DEFAULT_TOLERANCE` = 1e-10, the precision lvmref serves as
an oracle at; a case whose outputs are ill-conditioned in its inputs says so and carries
a looser, derived one (e.g. the Cholesky factor of a covariance with condition number
1e8). ``lvmref conformance check`` prints a table and exits 0 only when every selected
output passes.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from . import estimators as E
from . import gmm as G
from . import helmholtz as H
from . import vae as V
from . import vbgmm as VB
from .kernels.checks import (
    as_float_array,
    check_choice,
    check_nonnegative_float,
    check_path,
    check_positive_int,
    check_rng,
)
from .kernels.fpenv import benign_underflow
from .optim import Adam

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DEFAULT_TOLERANCE",
    "Case",
    "CheckRow",
    "build_cases",
    "write",
    "read",
    "check",
    "compare",
    "format_table",
    "vae_params",
    "VAE_HARD_REGIMES",
]

FORMAT = "lvmref-conformance"
FORMAT_VERSION = 1
DEFAULT_TOLERANCE = 1e-10
_U = 2.0**-53

LAYOUTS = {
    "gmm": "weights (K,), means (K, d), covariances and precisions_cholesky: full (K, d, d), "
           "tied (d, d), diag (K, d), spherical (K,); precisions_cholesky P is upper "
           "triangular with P P^T = inverse covariance (scikit-learn's layout); resp (n, K) "
           "row-stochastic.",
    "vbgmm": "state: weight_concentration (K,) (Dirichlet) or (2, K) (stick-breaking Beta "
             "parameters), mean_precision (K,), means (K, d), degrees_of_freedom (K,), "
             "covariances (K, d, d) = W^-1 / nu, precisions_cholesky (K, d, d) upper "
             "triangular with P P^T = nu W; prior: weight_concentration_prior, "
             "mean_precision_prior, mean_prior (d,), degrees_of_freedom_prior, "
             "covariance_prior (d, d) (lvmref.vbgmm docstring).",
    "estimators": "log_w (n, S): log importance weights log p(x, z_s) - log r(z_s) per row; "
                  "-inf allowed (a zero weight).",
    "helmholtz": "prior (n_0,); gen{l}.W{i}, gen{l}.b{i}: layer i of the generative MLP "
                 "from latent layer l to layer l+1; rec{l}.W{i}, rec{l}.b{i}: layer i of the "
                 "recognition MLP from layer l+1 to layer l; y = h @ W + b, hidden "
                 "activation options.activation, identity output (logits). z (n, K) is the "
                 "concatenation of the latent layers top to bottom; uniforms u give a unit "
                 "h = 1[u < sigmoid(a)] (lvmref.helmholtz docstring, eqs. 1-6).",
    "vae": "enc.W{i}, enc.b{i}: encoder D -> hidden -> 2K, output [mean, log_var]; "
           "dec.W{i}, dec.b{i}: decoder K -> reversed(hidden) -> D logits (Bernoulli) or "
           "2D [mean, log_var] (Gaussian); y = h @ W + b, hidden activation "
           "options.activation, identity output. eps (n, k, K) standard normal, "
           "z = mean + exp(log_var / 2) * eps (lvmref.vae docstring, eqs. 1-6).",
}


@dataclass
class Case:
    """One golden case: inputs, the expected outputs and what they mean.

    Attributes
    ----------
    name : str
        Unique, without ``/`` (e.g. ``"vae.iwae.dreg"``).
    model : str
        A key of the layouts (``"gmm"``, ``"vbgmm"``, ``"estimators"``, ``"helmholtz"``,
        ``"vae"``).
    function : str
        The lvmref function whose result the outputs are.
    description : str
    options : dict
        JSON-serialisable non-array arguments.
    inputs, outputs : dict
        Array name -> float64 array (parameter dicts flattened as ``params/<name>``).
    meaning : dict
        Array name (or name prefix ending in ``/``) -> text.
    tolerance : float
        Recommended normwise tolerance of every output.
    reason : str or None
        Why the tolerance is not :data:`DEFAULT_TOLERANCE`.
    hard : str or None
        The hard regime this case exercises.
    """

    name: str
    model: str
    function: str
    description: str
    options: dict
    inputs: dict
    outputs: dict
    meaning: dict = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    reason: str | None = None
    hard: str | None = None


def _flat(prefix, d):
    return {f"{prefix}/{k}": np.asarray(v, dtype=np.float64) for k, v in d.items()}


def _meaning(meaning, name):
    if name in meaning:
        return meaning[name]
    for key, text in meaning.items():
        if key.endswith("/") and name.startswith(key):
            return text + f" (entry {name[len(key):]!r})"
    return ""


# ---------------------------------------------------------------------------- the cases


def _gmm_cases(rng):
    cases = []
    d, K, n = 3, 3, 12
    X = rng.normal(size=(n, d)) * 2.0
    resp = rng.dirichlet(np.ones(K), size=n)
    for cov in G.COVARIANCE_TYPES:
        params = G.m_step(X, resp, cov, reg_covar=1e-6)
        p = {k: params[k] for k in ("weights", "means", "precisions_cholesky")}
        r, log_norm = G.e_step(p, X, cov)
        cases.append(Case(
            f"gmm.e_step.{cov}", "gmm", "lvmref.gmm.e_step",
            f"E-step (responsibilities and log p(x_i)), covariance_type {cov!r}.",
            {"covariance_type": cov}, {**_flat("params", p), "X": X},
            {"resp": r, "log_norm": log_norm},
            {"params/": "mixture parameters", "X": "data (n, d)",
             "resp": "p(z_i = k | x_i) (n, K)", "log_norm": "log p(x_i) (n,)"}))
        cases.append(Case(
            f"gmm.m_step.{cov}", "gmm", "lvmref.gmm.m_step",
            f"M-step from responsibilities, covariance_type {cov!r}, reg_covar 1e-6 "
            "added to the covariance diagonals.",
            {"covariance_type": cov, "reg_covar": 1e-6}, {"X": X, "resp": resp},
            _flat("params", params),
            {"X": "data (n, d)", "resp": "responsibilities (n, K)",
             "params/": "maximising parameters"}))
    q = rng.dirichlet(np.ones(K), size=n)
    q[0] = [0.0, 0.25, 0.75]                                  # an exact zero: 0 log 0 = 0
    p = G.m_step(X, resp, "full", reg_covar=1e-6)
    p = {k: p[k] for k in ("weights", "means", "precisions_cholesky")}
    cases.append(Case(
        "gmm.elbo.full", "gmm", "lvmref.gmm.elbo (reduce=False)",
        "ELBO per row for an arbitrary row-stochastic q (with an exact zero).",
        {"covariance_type": "full"}, {**_flat("params", p), "X": X, "q": q},
        {"elbo": G.elbo(p, X, q, "full", reduce=False)},
        {"params/": "mixture parameters", "X": "data", "q": "q(z_i = k) (n, K)",
         "elbo": "sum_k q_ik [log pi_k + log N(x_i | k) - log q_ik] (n,), 0 log 0 = 0"}))
    # hard: data on a near-line in 2-D -> a covariance with condition number ~1e8
    t = rng.normal(size=(40, 1))
    Xs = np.concatenate([t, 2.0 * t + 1e-4 * rng.normal(size=(40, 1))], axis=1)
    rs = np.stack([np.full(40, 0.7), np.full(40, 0.3)], axis=1)
    ps = G.m_step(Xs, rs, "full", reg_covar=0.0)
    cond = float(max(np.linalg.cond(c_) for c_ in ps["covariances"]))
    tol = float(10.0 ** np.ceil(np.log10(100 * cond * _U)))
    cases.append(Case(
        "gmm.m_step.near_singular", "gmm", "lvmref.gmm.m_step", "M-step on data lying "
        "within 1e-4 of a line: covariances with condition number ~1e8, reg_covar 0.",
        {"covariance_type": "full", "reg_covar": 0.0}, {"X": Xs, "resp": rs},
        _flat("params", ps), {"X": "data (n, 2)", "resp": "responsibilities (n, 2)",
                              "params/": "maximising parameters"},
        tolerance=tol, reason=f"condition number {cond:.2g} of the covariances: a backward-"
        f"stable Cholesky factor is accurate to ~cond * u; tolerance 100 cond u rounded up",
        hard="near-singular covariances"))
    pe = {k: ps[k] for k in ("weights", "means", "precisions_cholesky")}
    r, log_norm = G.e_step(pe, Xs, "full")
    cases.append(Case(
        "gmm.e_step.near_singular", "gmm", "lvmref.gmm.e_step",
        "E-step with the near-singular covariances (given as precision Cholesky factors).",
        {"covariance_type": "full"}, {**_flat("params", pe), "X": Xs},
        {"resp": r, "log_norm": log_norm},
        {"params/": "mixture parameters", "X": "data", "resp": "responsibilities",
         "log_norm": "log p(x_i)"},
        tolerance=tol, reason=f"condition number {cond:.2g}: an implementation that forms "
        "the covariance from P and refactors it (as scipy.stats does) loses ~cond * u "
        "(measured 5e-8 in resp); one working with P directly is accurate to ~1e-12. "
        "Tolerance 100 cond u rounded up", hard="near-singular covariances"))
    return cases


def _vbgmm_cases(rng):
    cases = []
    d, K, n = 2, 3, 15
    X = rng.normal(size=(n, d)) + np.where(rng.random((n, 1)) < 0.5, 3.0, -3.0)
    resp = rng.dirichlet(np.ones(K), size=n)
    for kind in ("dirichlet_distribution", "dirichlet_process"):
        prior = VB.make_prior(X, K, weight_concentration_prior_type=kind)
        state = VB.m_step(X, resp, prior)
        log_resp = VB.e_step(state, X)
        bound = VB.lower_bound(state, X, log_resp, prior)
        prior_arrays = {k: v for k, v in prior.items() if k != "weight_concentration_prior_type"}
        short = "dirichlet" if kind == "dirichlet_distribution" else "stick_breaking"
        cases.append(Case(
            f"vbgmm.update.{short}", "vbgmm",
            "lvmref.vbgmm.m_step, then lvmref.vbgmm.e_step and lvmref.vbgmm.lower_bound",
            f"One variational update: M-step from resp, E-step from the new state, and "
            f"the bound at (new state, new log_resp). Weight prior {kind!r}.",
            {"weight_concentration_prior_type": kind, "reg_covar": 0.0},
            {"X": X, "resp": resp, **_flat("prior", prior_arrays)},
            {**_flat("state", state), "log_resp": log_resp, "lower_bound": np.array(bound)},
            {"X": "data (n, d)", "resp": "responsibilities before the update (n, K)",
             "prior/": "prior hyperparameters", "state/": "variational state after the "
             "M-step", "log_resp": "ln r_nk after the E-step (n, K)",
             "lower_bound": "L(q), scalar"}))
    return cases


def _estimator_cases(rng):
    lw = rng.normal(size=(4, 6)) * 3.0 - 20.0
    lw[1, 2] = -np.inf               # one zero weight
    lw[2, :] = -np.inf               # all weights zero
    lw[3, :] = [700.0, 699.0, -np.inf, 701.5, 690.0, 650.0]   # exp overflows, lse does not
    outs = {}
    for name, est in (("log_marginal", E.log_marginal_from_log_weights(lw)),
                      ("elbo", E.elbo_from_log_weights(lw)),
                      ("iwae_k3", E.iwae_from_log_weights(lw, 3))):
        outs[f"{name}/value"] = est.value
        outs[f"{name}/stderr"] = est.stderr
    return [Case(
        "estimators.from_log_weights", "estimators",
        "lvmref.estimators.log_marginal_from_log_weights, elbo_from_log_weights, "
        "iwae_from_log_weights (k=3)",
        "Estimates of log p(x) (6)-(7), the ELBO (8) and L_3 (10) with standard errors "
        "from given log weights; -inf weights and log weights near 700.",
        {"iwae_k": 3}, {"log_w": lw}, outs,
        {"log_w": "log weights (n, S)", "log_marginal/": "log mean_s w_s and its delta-"
         "method standard error (7)", "elbo/": "mean_s log w_s and sd/sqrt(S) (8)",
         "iwae_k3/": "mean over S/3 sets of logmeanexp and sd/sqrt(R) (10)"},
        hard="-inf log weights")]


def _helmholtz_params(arch, rng, confident=False, x=None, z=None):
    p = {k: v + 0.7 * rng.standard_normal(v.shape) for k, v in H.init_params(arch, rng).items()}
    if not confident:
        return p
    # every logit on the path of (x, z) has the sign of its unit and |a| in 36..40
    p = {k: 0.3 * v for k, v in p.items()}
    hs = np.split(np.concatenate([z[0], x[0]]), np.cumsum(arch.layer_sizes)[:-1])

    def target(h):
        return rng.uniform(36.0, 40.0, h.shape) * (2.0 * h - 1.0)

    p["prior"] = target(hs[0])
    for l in range(arch.n_layers):
        og, orc = f"gen{l}.b{len(arch.hidden)}", f"rec{l}.b{len(arch.recognition_hidden)}"
        p[og] = np.zeros_like(p[og])
        p[og] = target(hs[l + 1]) - arch.gen(l).forward(p, hs[l][None])[0][0]
        p[orc] = np.zeros_like(p[orc])
        p[orc] = target(hs[l]) - arch.rec(l).forward(p, hs[l + 1][None])[0][0]
    return p


def _helmholtz_cases(rng):
    cases = []
    archs = {"sbn": H.Architecture((2, 3, 6)),
             "mlp": H.Architecture((2, 5), hidden=(4,), recognition_hidden=(3,))}
    meaning = {"params/": "parameters", "x": "binary data (n, D)",
               "z": "binary latents (n, K) or (n, k, K)"}
    for label, arch in archs.items():
        opts = {"layer_sizes": list(arch.layer_sizes), "hidden": list(arch.hidden),
                "recognition_hidden": list(arch.recognition_hidden),
                "activation": arch.activation}
        for hard in (False, True):
            n, k = (1, 3) if hard else (4, 3)
            x = (rng.random((n, arch.n_features)) < 0.5).astype(float)
            z1 = (rng.random((n, arch.n_latent)) < 0.5).astype(float)
            p = _helmholtz_params(arch, rng, hard, x, z1)
            zk = (rng.random((n, k, arch.n_latent)) < 0.5).astype(float)
            zk[:, 0] = z1
            tag = f"{label}.{'logits40' if hard else 'random'}"
            hard_text = "logits +-(36..40) on the path of (x, z)" if hard else None
            base = {**_flat("params", p), "x": x}
            wake, sleep = H.wake_grad(p, x, z1, arch), H.sleep_grad(p, x, z1, arch)
            cases.append(Case(
                f"helmholtz.densities_grads.{tag}", "helmholtz",
                "lvmref.helmholtz.log_joint, log_q, log_prior, wake_grad, sleep_grad",
                "log p(x, z) (3), log q(z | x) (5), log p(z), and the wake (7) and sleep (8) "
                "gradients summed over rows.", opts, {**base, "z": z1},
                {"log_joint": H.log_joint(p, x, z1, arch), "log_q": H.log_q(p, x, z1, arch),
                 "log_prior": H.log_prior(p, z1, arch), **_flat("wake_grad", wake),
                 **_flat("sleep_grad", sleep)},
                {**meaning, "log_joint": "(n,)", "log_q": "(n,)", "log_prior": "(n,)",
                 "wake_grad/": "sum_i grad log p(x_i, z_i) (keys prior, gen*)",
                 "sleep_grad/": "sum_i grad log q(z_i | x_i) (keys rec*)"}, hard=hard_text))
            for fn, name, eq in ((H.rws_grads, "rws", "(10)"), (H.vimco_grads, "vimco", "(15)")):
                g, log_px = fn(p, x, zk, arch)
                cases.append(Case(
                    f"helmholtz.{name}.{tag}", "helmholtz", f"lvmref.helmholtz.{fn.__name__}",
                    f"{name.upper()} gradients {eq} from k = {k} given samples per row.",
                    opts, {**base, "z": zk}, {**_flat("grads", g), "log_px": log_px},
                    {**meaning, "grads/": "gradient estimate summed over rows",
                     "log_px": "log mean_s w_s per row (n,)"}, hard=hard_text))
            b = np.linspace(-2.0, 1.0, n)
            g, signal = H.reinforce_grads(p, x, z1, arch, b, 1.5)
            cases.append(Case(
                f"helmholtz.reinforce.{tag}", "helmholtz", "lvmref.helmholtz.reinforce_grads",
                "REINFORCE gradients (11) with a per-row baseline and a scale (12).",
                {**opts, "scale": 1.5}, {**base, "z": z1, "baseline": b},
                {**_flat("grads", g), "signal": signal},
                {**meaning, "baseline": "b(x_i) (n,)", "grads/": "sum over rows",
                 "signal": "log p(x_i, z_i) - log q(z_i | x_i) (n,)"}, hard=hard_text))
    arch = archs["sbn"]
    opts = {"layer_sizes": list(arch.layer_sizes), "hidden": [], "recognition_hidden": [],
            "activation": arch.activation}
    x = (rng.random((3, arch.n_features)) < 0.5).astype(float)
    p = _helmholtz_params(arch, rng)
    for method, k in (("wake-sleep", 1), ("vimco", 3)):
        uq = rng.random((3, k, arch.n_latent))
        us = rng.random((3, arch.n_latent + arch.n_features))
        new, _, obj = H.sgd_update(p, x, uq, us, arch, method, 0.1, 0.05)
        cases.append(Case(
            f"helmholtz.sgd_update.{method.replace('-', '_')}", "helmholtz",
            f"lvmref.helmholtz.sgd_update (method={method!r})",
            "One online update (plain SGD, steps lr/B and lr_q/B) from given uniforms: "
            + ("wake phase on q samples, then sleep phase on dreams drawn with the "
               "updated parameters (9)." if method == "wake-sleep" else
               "VIMCO (15) on k = 3 samples per row."),
            {**opts, "method": method, "lr": 0.1, "lr_q": 0.05},
            {**_flat("params", p), "x": x, "uq": uq, "us": us},
            {**_flat("params_after", new), "objective": np.array(obj)},
            {"params/": "parameters before", "x": "minibatch (B, D)", "uq": "uniforms of the "
             "q samples (B, k, K), unit h = 1[u < sigmoid(c)] filled bottom-up",
             "us": "uniforms of the dreams (B, K + D) in (z, x) column order (wake-sleep)",
             "params_after/": "parameters after the update",
             "objective": "eq. (13): mean log w (wake-sleep) or mean IWAE estimate"}))
    return cases


#: the hard regimes of :func:`vae_params`
VAE_HARD_REGIMES = ("logits40", "collapsed")


@benign_underflow
def vae_params(vae, rng, *, hard=None, scale=0.3):
    """Parameters of ``vae`` for a test case: its initialisation plus Gaussian noise,
    optionally pushed into a hard regime (the VAE cases here and the PyTorch-twin scripts
    ``validation/vae_*_vs_torch.py`` draw theirs with this function).

    Parameters
    ----------
    vae : lvmref.vae.VAE
        The model (its ``init_params`` gives the layout).
    rng : numpy.random.Generator, int or None
        Consumed in this order: ``vae.init_params(rng)``, one standard normal per
        parameter entry (in the layout's key order), then for ``"logits40"`` D uniforms
        (signs) and D uniforms (magnitudes).
    hard : {None, "logits40", "collapsed"}
        ``"logits40"`` (Bernoulli likelihood only): decoder weights scaled by 0.01 and
        output biases of magnitude 38..40 with random signs, so every decoder logit is
        near +-40. ``"collapsed"``: latent unit 0 collapsed to the prior -- mean 0 and
        log_var 0 for every x, and unused by the decoder (its row of the first decoder
        weight is zero).
    scale : float
        Standard deviation of the noise added to the initialisation (>= 0).

    Returns
    -------
    dict
        ``name -> float64 array`` in the layout of :mod:`lvmref.vae`.
    """
    if not isinstance(vae, V.VAE):
        raise TypeError(f"vae must be a lvmref.vae.VAE, got {type(vae).__name__}")
    rng = check_rng(rng)
    hard = check_choice(hard, "hard", (None, *VAE_HARD_REGIMES))
    scale = check_nonnegative_float(scale, "scale")
    if hard == "logits40" and vae.likelihood != "bernoulli":
        raise ValueError("hard='logits40' needs a Bernoulli likelihood (decoder logits), "
                         f"got likelihood={vae.likelihood!r}")
    p = {k: v + scale * rng.normal(size=v.shape) for k, v in vae.init_params(rng).items()}
    L = len(vae.hidden)
    if hard == "logits40":
        p = {k: (0.01 * v if k.startswith("dec.W") else v) for k, v in p.items()}
        p[f"dec.b{L}"] = np.where(rng.random(vae.n_features) < 0.5, -1.0, 1.0) \
            * rng.uniform(38.0, 40.0, vae.n_features)
    elif hard == "collapsed":
        K = vae.n_latent
        p[f"enc.W{L}"][:, [0, K]] = 0.0
        p[f"enc.b{L}"][[0, K]] = 0.0
        p["dec.W0"][0] = 0.0
    return p


def _vae_cases(rng):
    cases = []
    configs = [("bernoulli", (4,), None), ("gaussian", (), None),
               ("bernoulli", (4,), "logits40"), ("bernoulli", (4,), "collapsed")]
    for likelihood, hidden, hard in configs:
        vae = V.VAE(5, 3, hidden=hidden, likelihood=likelihood, activation="tanh")
        p = vae_params(vae, rng, hard=hard)
        n, k = 4, 3
        x = ((rng.random((n, 5)) < 0.4).astype(float) if likelihood == "bernoulli"
             else rng.normal(size=(n, 5)))
        eps = rng.normal(size=(n, k, 3))
        tag = f"{likelihood}.{hard or 'random'}"
        opts = {"n_features": 5, "n_latent": 3, "hidden": list(hidden),
                "likelihood": likelihood, "activation": "tanh"}
        base = {**_flat("params", p), "x": x, "eps": eps}
        hard_text = {"logits40": "decoder logits +-(38..40)",
                     "collapsed": "a latent unit collapsed to the prior (mean 0, log_var 0, "
                                  "unused by the decoder)"}.get(hard)
        meaning = {"params/": "parameters", "x": "data (n, D)",
                   "eps": "standard-normal noise (n, k, K)", "value": "batch mean (scalar)",
                   "grads/": "gradient estimate of the batch mean (ascent direction)"}
        for kl in ("analytic", "mc"):
            cases.append(Case(
                f"vae.elbo.{kl}.{tag}", "vae", f"lvmref.vae.elbo (kl={kl!r})",
                "Per-row ELBO estimate, eq. (7a) (analytic KL) or (7b) (Monte Carlo).",
                {**opts, "kl": kl}, base, {"elbo": V.elbo(p, x, eps, vae.arch, kl)},
                {**meaning, "elbo": "(n,)"}, hard=hard_text))
            value, g = V.elbo_grad_reparam(p, x, eps, vae.arch, kl)
            cases.append(Case(
                f"vae.reparam.{kl}.{tag}", "vae", f"lvmref.vae.elbo_grad_reparam (kl={kl!r})",
                "Reparameterisation gradient (8)-(9) at fixed noise.", {**opts, "kl": kl},
                base, {"value": np.array(value), **_flat("grads", g)}, meaning,
                hard=hard_text))
        value, g = V.elbo_grad_reinforce(p, x, eps, vae.arch, baseline="loo")
        cases.append(Case(
            f"vae.reinforce_loo.{tag}", "vae",
            "lvmref.vae.elbo_grad_reinforce (baseline='loo', kl='analytic')",
            "REINFORCE gradient (10), leave-one-out baseline, analytic KL; the samples are "
            "z = mean + exp(log_var / 2) eps, held fixed.", {**opts, "baseline": "loo",
                                                            "kl": "analytic"},
            base, {"value": np.array(value), **_flat("grads", g)}, meaning, hard=hard_text))
        value, g = V.elbo_grad_stl(p, x, eps, vae.arch)
        cases.append(Case(
            f"vae.stl.{tag}", "vae", "lvmref.vae.elbo_grad_stl",
            "Sticking-the-landing gradient (19); value is the ELBO estimate (7b).", opts,
            base, {"value": np.array(value), **_flat("grads", g)}, meaning, hard=hard_text))
        for est in ("reparam", "dreg"):
            value, g = V.iwae_grad(p, x, eps, vae.arch, est)
            cases.append(Case(
                f"vae.iwae_{est}.{tag}", "vae", f"lvmref.vae.iwae_grad (estimator={est!r})",
                f"IWAE estimate (15) and its {'reparameterised gradient (16)' if est == 'reparam' else 'DReG gradient (18)'} "  # noqa: E501
                f"with k = {k}.", {**opts, "estimator": est}, base,
                {"value": np.array(value), **_flat("grads", g)}, meaning, hard=hard_text))
    # one Adam step of VAE training (loss = -ELBO, reparameterisation gradient, analytic KL)
    vae = V.VAE(5, 3, hidden=(4,))
    p = vae_params(vae, rng)
    x = (rng.random((4, 5)) < 0.4).astype(float)
    eps = rng.normal(size=(4, 1, 3))
    m = {key: 0.01 * rng.normal(size=v.shape) for key, v in p.items()}
    v2 = {key: 1e-4 * rng.random(v.shape) for key, v in p.items()}
    t, lr, b1, b2, e = 7, 1e-2, 0.9, 0.999, 1e-8
    _, g = V.elbo_grad_reparam(p, x, eps, vae.arch, "analytic")
    new = {key: v.copy() for key, v in p.items()}
    opt = Adam(new, lr=lr, beta1=b1, beta2=b2, eps=e)
    opt.m = {key: a.copy() for key, a in m.items()}
    opt.v = {key: a.copy() for key, a in v2.items()}
    opt.t = t
    opt.step(g, sign=-1.0)
    cases.append(Case(
        "vae.adam_step", "vae", "lvmref.vae.elbo_grad_reparam then lvmref.optim.Adam.step",
        "One training step: the reparameterisation gradient g of the batch-mean ELBO "
        "(analytic KL) at (x, eps), then Adam on the loss -ELBO from the state (m, v) "
        "after t steps: m' = b1 m + (1 - b1)(-g), v' = b2 v + (1 - b2) g^2, params' = "
        "params - lr / (1 - b1^(t+1)) * m' / (sqrt(v') / sqrt(1 - b2^(t+1)) + eps).",
        {"n_features": 5, "n_latent": 3, "hidden": [4], "likelihood": "bernoulli",
         "activation": "tanh", "lr": lr, "beta1": b1, "beta2": b2, "eps": e, "t": t},
        {**_flat("params", p), "x": x, "eps": eps, **_flat("m", m), **_flat("v", v2)},
        {**_flat("params_after", new), **_flat("m_after", opt.m), **_flat("v_after", opt.v)},
        {"params/": "parameters before", "x": "data", "eps": "noise (n, 1, K)",
         "m/": "Adam first moments before", "v/": "Adam second moments before",
         "params_after/": "parameters after", "m_after/": "first moments after",
         "v_after/": "second moments after"}))
    return cases


def build_cases(seed=20260):
    """All golden cases, computed by lvmref from inputs drawn from ``seed``.

    Returns
    -------
    list of Case
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    r = rng.spawn(5)
    return (_gmm_cases(r[0]) + _vbgmm_cases(r[1]) + _estimator_cases(r[2])
            + _helmholtz_cases(r[3]) + _vae_cases(r[4]))


# ---------------------------------------------------------------------------- write / read


def _entry(case, name, a, output):
    a = np.asarray(a)
    out = {"key": f"{case.name}/{name}", "meaning": _meaning(case.meaning, name),
           "shape": list(a.shape),
           "layout": (f"row-major float64, entry {name.split('/', 1)[1]!r} of "
                      f"layouts[{case.model!r}]") if "/" in name else
           "row-major float64" + (" (scalar)" if a.ndim == 0 else "")}
    if output:
        out["tolerance"] = case.tolerance
        if case.reason:
            out["reason"] = case.reason
    return out


@benign_underflow
def write(directory, *, seed=20260, cases=None):
    """Write ``manifest.json``, ``inputs.npz`` and ``expected.npz`` into ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Created if missing; an existing file of that name is a ``ValueError``.
    seed : int
        Seed of the inputs (the default gives the published vectors).
    cases : list of Case, optional
        Default :func:`build_cases` (``seed``).

    Returns
    -------
    dict
        The manifest written.
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    out = check_path(directory, "directory")
    if cases is not None:
        if not isinstance(cases, (list, tuple)) or not all(isinstance(c, Case)
                                                           for c in cases):
            raise TypeError(f"cases must be a list of lvmref.conformance.Case, got "
                            f"{type(cases).__name__}")
        names = [c.name for c in cases]
        for c in cases:
            if not isinstance(c.name, str) or not c.name or "/" in c.name:
                raise ValueError(f"cases: a case name must be a non-empty str without '/', "
                                 f"got {c.name!r}")
        if len(set(names)) != len(names):
            raise ValueError("cases: case names must be unique")
    if out.exists() and not out.is_dir():
        raise ValueError(f"directory must be a directory, but {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    cases = build_cases(seed) if cases is None else cases
    inputs, expected, entries = {}, {}, []
    for c in cases:
        entries.append({
            "name": c.name, "model": c.model, "function": c.function,
            "description": c.description, "options": c.options, "hard": c.hard,
            "inputs": {k: _entry(c, k, a, False) for k, a in c.inputs.items()},
            "outputs": {k: _entry(c, k, a, True) for k, a in c.outputs.items()}})
        inputs.update({f"{c.name}/{k}": np.asarray(a, np.float64) for k, a in c.inputs.items()})
        expected.update({f"{c.name}/{k}": np.asarray(a, np.float64)
                         for k, a in c.outputs.items()})
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lvmref_version": __version__,
        "seed": seed, "files": {"inputs": "inputs.npz", "expected": "expected.npz"},
        "error_measure": "per output array: shapes must match; non-finite expected entries "
                         "must be reproduced exactly; finite entries: max|r - e| / max|e| "
                         "(max|r - e| where all expected entries are 0) <= tolerance",
        "layouts": LAYOUTS, "cases": entries}
    np.savez(out / "inputs.npz", **inputs)
    np.savez(out / "expected.npz", **expected)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False))
    return manifest


def _load_npz(path, what):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise ValueError(f"{what} {path} is not a readable .npz file: {exc}") from None


def _check_manifest(manifest, mpath):
    """ValueError naming ``mpath`` and the field if the manifest lacks what :func:`read` and
    :func:`check` use: ``files`` (names of the two ``.npz`` files), ``cases`` (each with a
    ``name``, and ``inputs``/``outputs`` whose entries have a ``key``; outputs also a
    non-negative ``tolerance``)."""
    def bad(what):
        return ValueError(f"{mpath} is not a valid {FORMAT} manifest: {what}")

    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(files.get(k), str) and files[k] for k in ("inputs", "expected")):
        raise bad("'files' must name the 'inputs' and 'expected' .npz files")
    cases = manifest.get("cases")
    if not isinstance(cases, list):
        raise bad("'cases' must be a list")
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            raise bad(f"cases[{i}] must be an object with a 'name'")
        for part in ("inputs", "outputs"):
            entries = case.get(part)
            if not isinstance(entries, dict):
                raise bad(f"case {case['name']!r} has no '{part}' object")
            for q, entry in entries.items():
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                    raise bad(f"{part} {q!r} of case {case['name']!r} has no 'key'")
                if part == "outputs":
                    tol = entry.get("tolerance")
                    if (isinstance(tol, bool) or not isinstance(tol, (int, float))
                            or not tol >= 0 or tol == float("inf")):
                        raise bad(f"output {q!r} of case {case['name']!r} needs a finite "
                                  f"'tolerance' >= 0, got {tol!r}")


@benign_underflow
def read(directory):
    """``(manifest, inputs, expected)`` from a directory written by :func:`write`.

    A missing file is ``FileNotFoundError``; a manifest of another format or a newer
    format version, one without the fields :func:`check` uses (``files``, ``cases`` with
    their ``inputs``/``outputs`` keys and tolerances), or arrays missing from the
    ``.npz`` files, a ``ValueError`` naming the file.
    """
    d = check_path(directory, "directory")
    mpath = d / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"manifest not found: {mpath} (write the vectors with "
                                f"'lvmref conformance write {d}')")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{mpath} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{mpath} is not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{mpath} has format version {manifest.get('format_version')!r}; "
                         f"this lvmref reads version {FORMAT_VERSION}")
    _check_manifest(manifest, mpath)
    inputs = _load_npz(d / manifest["files"]["inputs"], "inputs")
    expected = _load_npz(d / manifest["files"]["expected"], "expected outputs")
    for case in manifest["cases"]:
        for part, store in (("inputs", inputs), ("outputs", expected)):
            for entry in case[part].values():
                if entry["key"] not in store:
                    raise ValueError(f"{entry['key']} is listed in the manifest but missing "
                                     f"from the {part} file")
    return manifest, inputs, expected


@dataclass(frozen=True)
class CheckRow:
    """One line of the check table."""

    case: str
    quantity: str
    error: float
    tolerance: float
    passed: bool
    note: str = ""


@benign_underflow
def compare(result, expected, tolerance):
    """``(error, passed, note)`` for one array (the rules in the module docstring).

    Parameters
    ----------
    result, expected : array_like of real numbers (bool, int or float), same shape
        A complex, string or object array is a ``TypeError`` naming the argument (a
        complex result must not pass by its real part).
    tolerance : float
        Largest normwise error that passes (>= 0).

    Returns
    -------
    error : float
        ``max |r - e| / max |e|`` over the finite expected entries (inf on a mismatch of
        shape or of the non-finite entries).
    passed : bool
    note : str
    """
    tolerance = check_nonnegative_float(tolerance, "tolerance")
    # the shared check: complex, string and object arrays are a TypeError naming the
    # argument (a complex result must not pass by its real part); NaN/inf are compared
    r = as_float_array(result, "result", finite=False, allow_empty=True, copy=False)
    e = as_float_array(expected, "expected", finite=False, allow_empty=True, copy=False)
    if r.shape != e.shape:
        return np.inf, False, f"shape {r.shape}, expected {e.shape}"
    special = ~np.isfinite(e)
    if special.any():
        same = (np.isnan(e) & np.isnan(r)) | (e == r)
        if not np.all(same[special]):
            return np.inf, False, "non-finite entries (-inf/inf/nan) differ"
    fin = ~special
    if not fin.any():
        return 0.0, True, "all entries non-finite, reproduced"
    if not np.all(np.isfinite(r[fin])):
        return np.inf, False, "non-finite result where the expected value is finite"
    diff = float(np.max(np.abs(r[fin] - e[fin])))
    scale = float(np.max(np.abs(e[fin])))
    err = diff / scale if scale > 0 else diff
    return err, bool(err <= tolerance), "" if scale > 0 else "absolute (expected all 0)"


@benign_underflow
def check(directory, results, patterns=None):
    """Compare another implementation's outputs with the expected ones.

    Parameters
    ----------
    directory : str or path-like
        Written by :func:`write`.
    results : str, path-like or dict
        An ``.npz`` file (or a dict) of arrays under the keys ``<case>/<quantity>`` of
        ``expected.npz``.
    patterns : list of str, optional
        Shell-style patterns of case names to check (e.g. ``["vae.*", "helmholtz.*"]``);
        default all cases. A pattern that matches no case is a ``ValueError``.

    Returns
    -------
    list of CheckRow
        One row per expected output of the selected cases; a missing key is a failed row
        whose note says so.
    """
    if patterns is not None and (not isinstance(patterns, (list, tuple))
                                 or not all(isinstance(p, str) for p in patterns)):
        raise TypeError(f"patterns must be a list of str (e.g. ['vae.*']) or None, got "
                        f"{patterns!r}")
    if not isinstance(results, dict):
        results = check_path(results, "results")
    manifest, _, expected = read(directory)
    res = results if isinstance(results, dict) else _load_npz(results, "results")
    names = [c["name"] for c in manifest["cases"]]
    if patterns:
        for pat in patterns:
            if not fnmatch.filter(names, pat):
                raise ValueError(f"patterns: {pat!r} (--cases) matches no case")
    rows = []
    for c in manifest["cases"]:
        if patterns and not any(fnmatch.fnmatchcase(c["name"], pat) for pat in patterns):
            continue
        for quantity, entry in c["outputs"].items():
            key, tol = entry["key"], float(entry["tolerance"])
            if key not in res:
                rows.append(CheckRow(c["name"], quantity, np.inf, tol, False,
                                     f"missing output {key}"))
                continue
            try:
                err, ok, note = compare(res[key], expected[key], tol)
            except (TypeError, ValueError) as exc:
                err, ok, note = np.inf, False, f"{key}: not a numeric array ({exc})"
            if not ok and note.startswith("shape"):
                note = f"{key}: {note}"
            rows.append(CheckRow(c["name"], quantity, err, tol, ok, note))
    return rows


def format_table(rows):
    """The check table as text: case, quantity, max relative error, tolerance, pass/fail,
    and a summary line. ``rows``: a list of :class:`CheckRow` (from :func:`check`)."""
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, CheckRow) for r in rows):
        raise TypeError(f"rows must be a list of CheckRow (what check() returns), got "
                        f"{type(rows).__name__}")
    wc = max([len("case")] + [len(r.case) for r in rows])
    wq = max([len("quantity")] + [len(r.quantity) for r in rows])
    lines = [f"{'case':<{wc}}  {'quantity':<{wq}}  {'max rel error':>13}  {'tolerance':>9}  "
             "result"]
    for r in rows:
        err = "-" if not np.isfinite(r.error) else f"{r.error:.3e}"
        lines.append(f"{r.case:<{wc}}  {r.quantity:<{wq}}  {err:>13}  {r.tolerance:>9.1e}  "
                     f"{'pass' if r.passed else 'FAIL'}" + (f"  {r.note}" if r.note else ""))
    n_fail = sum(not r.passed for r in rows)
    lines.append(f"all {len(rows)} outputs pass" if n_fail == 0 else
                 f"{n_fail} of {len(rows)} outputs FAIL")
    return "\n".join(lines)
