"""lvmref — a NumPy reference implementation of latent variable models.

Submodules (import the one you need; nothing heavy is imported here). Dependencies point
one way: kernels -> core -> models -> demo/cli.

Models, each opening with its derivation (numbered equations), then the pure functions
that implement them, then a thin estimator class:

- ``lvmref.gmm``         Gaussian mixture fitted by EM, ``GaussianMixture``
- ``lvmref.vbgmm``       variational Bayes Gaussian mixture, ``BayesianGaussianMixture``
- ``lvmref.helmholtz``   Bernoulli LVMs / Helmholtz machine: wake-sleep, RWS, REINFORCE, VIMCO
- ``lvmref.vae``         MLP VAE: reparameterization, REINFORCE and STL gradients, IWAE
                         (reparameterised and DReG gradients)

Core:

- ``lvmref.estimators``  exact log p(x) by enumeration; naive MC, IS, ELBO, IWAE with stderrs
- ``lvmref.nn``          the MLP (forward/backward) shared by the Helmholtz machine and VAE
- ``lvmref.mixture``     what GMM and Bayesian GMM share: precision factors, initialisation,
                         input checks, the EM driver, warnings and errors
- ``lvmref.mixture_stats`` the mixtures' sufficient statistics, merged over chunks of rows
- ``lvmref.chunked``     data read chunk by chunk: memory maps, array-likes, Dask arrays
- ``lvmref.optim``       Adam
- ``lvmref.persistence`` the one ``.npz`` model format behind every ``save``/``load``
- ``lvmref.testing``     ``check_grad`` / ``assert_grad_close`` for your own gradients
- ``lvmref.datasets``    bars (with exact distribution), bundled binarized digits, GMM demo data
- ``lvmref.kernels``     Numba kernels with NumPy twins, input checks, dispatch, the
                         floating-point contract

Performance machinery and oracle closed forms live beside the models in modules of their
own (``lvmref.vae_training``, ``lvmref.helmholtz_training``, ``lvmref.linear_gaussian``),
so that a reader of the equations never meets them. ``python validation/import_graph.py``
prints the import graph and checks that dependencies point one way. Applications:
``lvmref.cli`` (the ``lvmref`` command), ``lvmref.demo`` (``lvmref demo``), ``lvmref.plots``,
``lvmref.files``, ``lvmref.conformance`` (``lvmref conformance``: golden test vectors).

Glossary (the same word means the same thing everywhere)
--------------------------------------------------------
==================== =====================================================================
``x``, ``X``         data, 2-D, rows are samples: shape ``(n, D)``. ``X`` in the
                     scikit-learn-compatible mixture API, ``x`` elsewhere.
``n``                number of rows (data points); ``n_samples`` only where scikit-learn
                     uses that name (``GaussianMixture.sample(n_samples)``).
``D``                features per row: ``n_features`` (``n_features_in_`` once fitted).
``K``                latent size of a latent variable model: ``n_latent``.
``n_components``     mixture components (the letter K in the mixture derivations).
``k``                samples (draws) per data row: Monte Carlo samples, the k of the IWAE
                     bound L_k, samples of reweighted wake-sleep; ``z`` then has shape
                     ``(n, k, K)``.
``params``           a plain dict ``name -> float64 array`` in the documented layout of each
                     model; gradients are dicts with the same keys and shapes. ``params_``
                     are the fitted ones.
noise                the randomness a stochastic function consumes, passed explicitly for
                     oracle use: ``eps`` (standard normal, VAE), ``u`` (uniforms in [0, 1),
                     Helmholtz samplers), or the latent samples ``z`` themselves.
``rng``              ``numpy.random.Generator``, int seed or ``None`` (``random_state`` in the
                     scikit-learn-compatible API); global RNG state is never used.
==================== =====================================================================

Rules
-----
* Model-level mathematics takes ``(params, x, noise)`` -- or ``(params, x, z)`` -- in this
  order, then the structure (``arch``, ``covariance_type``) and options. Never ``(z, x)``.
  The estimators protocol is ``log_joint(x, z)``, ``log_q(x, z)``, ``log_likelihood(x, z)``,
  ``log_prior(z)``, ``sample_prior(n, k, rng)``, ``sample_q(x, k, rng)``.
* Compute in float64; other input is converted on a copy; arguments are never mutated.
* Bad input is a ``TypeError``/``ValueError`` naming the argument (``lvmref.kernels.checks``).
* Variances are carried as ``log_var`` (log sigma^2) everywhere.
* A dense layer is ``y = x @ W + b`` with ``W`` of shape ``(n_in, n_out)``.
* Every model class has ``save(path)`` / ``Class.load(path)`` in the one ``.npz`` format.
* Floating point: no ``FloatingPointError`` for valid input under
  ``np.errstate(all="raise")``; finite input never gives NaN (``lvmref.kernels.fpenv``).
"""

__version__ = "0.2.0"
