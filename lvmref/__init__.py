"""lvmref — a NumPy reference implementation of latent variable models.

Submodules (import the one you need; nothing heavy is imported here):

- ``lvmref.gmm``         Gaussian mixture EM, scikit-learn-compatible ``GaussianMixture``
- ``lvmref.vbgmm``       variational Bayes Gaussian mixture, ``BayesianGaussianMixture``
- ``lvmref.estimators``  exact log p(x) by enumeration; naive MC, IS, ELBO, IWAE with stderrs
- ``lvmref.helmholtz``   Bernoulli LVMs / Helmholtz machine: wake-sleep, RWS, REINFORCE
- ``lvmref.vae``         MLP VAE: reparameterization and REINFORCE gradients, IWAE
- ``lvmref.nn``          the MLP (forward/backward) shared by the Helmholtz machine and VAE
- ``lvmref.datasets``    bars (with exact distribution), bundled binarized digits
- ``lvmref.testing``     ``check_grad`` / ``assert_grad_close`` for your own gradients
- ``lvmref.kernels``     Numba kernels (log-sum-exp, log-densities, ...) with NumPy twins
"""

__version__ = "0.1.0"
