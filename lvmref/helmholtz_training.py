"""Online training machinery of the Helmholtz machine: the noise protocol and the engines.

Nothing here is mathematics. :meth:`lvmref.helmholtz.HelmholtzMachine.fit` runs the
updates (9)-(12) of :mod:`lvmref.helmholtz`, which exist twice:

* the **NumPy engine** :func:`lvmref.helmholtz.sgd_update` -- the reference, for any
  batch size and architecture, with the noise passed in;
* the **Numba engine**, the batch-size-1 kernels ``ws_online``, ``rws_online`` and
  ``reinforce_online`` of :mod:`lvmref.kernels.helmholtz` for sigmoid belief nets
  (no deterministic hidden layers), run by :class:`KernelEngine` on a flat copy of the
  parameters.

Both consume identical noise and agree to 1e-12 over hundreds of updates
(``tests/kernels/test_helmholtz.py``, ``tests/test_helmholtz.py``); over long runs one
threshold comparison u < sigmoid(a) decided differently by a rounding error makes two
trajectories part, as for any two implementations of a stochastic map. This module holds
what serves speed and reproducibility: the order in which the noise is drawn, the engine
choice and the flat-buffer engine.

Noise protocol
--------------
``fit`` draws all of its randomness from one ``numpy.random.Generator``, in this order:

1. the initial weights of an input-dependent NVIL baseline, if there is one
   (:meth:`lvmref.helmholtz.NVILBaseline.init_state`);
2. then, per block of ``m`` updates (:func:`noise_blocks`: at most
   :data:`NOISE_BLOCK` updates, shrunk so that no block runs past a record of the
   history, i.e. to ``record_every`` and to the updates left), :func:`draw_noise`
   draws the ``m * batch_size`` data rows (row indices, or the sampler's own draws),
   then the q uniforms ``(m, batch_size, k, K)`` (k = 1 unless reweighted or VIMCO), then the
   dream uniforms ``(m, batch_size, K + D)``.

A twin implementation that follows this order replays a whole training run.
"""

from __future__ import annotations

import numpy as np

from .kernels.checks import as_float_array, check_binary
from .kernels.dispatch import jit_enabled
from .kernels.fpenv import benign_underflow
from .kernels.helmholtz import (
    pack_params,
    reinforce_online,
    rws_online,
    unpack_params,
    ws_online,
)

__all__ = [
    "NOISE_BLOCK",
    "ENGINES",
    "noise_blocks",
    "data_sampler",
    "draw_noise",
    "kernel_supported",
    "use_kernel",
    "KernelEngine",
]

#: Updates per block of pre-drawn noise (part of the noise protocol: another value
#: draws the same random numbers in another order, so it changes every result).
NOISE_BLOCK = 10_000

#: Values of ``HelmholtzMachine.fit(engine=...)``.
ENGINES = ("auto", "numpy", "numba")


def noise_blocks(n_updates: int, record_every: int, block: int = NOISE_BLOCK):
    """Sizes of the noise blocks of a run, and where the history is recorded.

    Parameters
    ----------
    n_updates : int
        Updates in the run.
    record_every : int
        Updates between records of the history.
    block : int
        Largest block (the protocol's :data:`NOISE_BLOCK`; other values reproduce runs
        of lvmref 0.1 made with ``fit(block=...)``).

    Yields
    ------
    m : int
        Updates in the next block (``min(block, record_every)`` except where a record
        or the end of the run comes first).
    record : bool
        Whether a record is due after this block.
    """
    block = min(block, record_every)
    done = since_record = 0
    while done < n_updates:
        m = min(block, n_updates - done, record_every - since_record)
        done += m
        since_record += m
        record = since_record == record_every or done == n_updates
        if record:
            since_record = 0
        yield m, record


def data_sampler(X, n_features: int):
    """``draw(m, rng) -> (m, D)`` binary rows: uniform row draws (with replacement) from
    the array ``X``, or the validated output of a sampler ``X(m, rng)``."""
    if callable(X):
        def draw(m, rng):
            out = as_float_array(X(m, rng), "X(m, rng)", shape=(m, n_features))
            return check_binary(out, "X(m, rng)")
        return draw
    Xa = check_binary(as_float_array(X, "X", ndim=2, shape=(None, n_features)), "X")

    def draw_rows(m, rng):
        return Xa[rng.integers(0, Xa.shape[0], size=m)]
    return draw_rows


def draw_noise(draw, rng, m, batch_size, k, n_latent, n_features):
    """The noise of one block of ``m`` updates, in protocol order.

    Returns
    -------
    x : ndarray (m, batch_size, D)
        Data rows.
    uq : ndarray (m, batch_size, k, K)
        Uniforms of the samples from q.
    us : ndarray (m, batch_size, K + D)
        Uniforms of the dreams.
    """
    x = draw(m * batch_size, rng).reshape(m, batch_size, n_features)
    uq = rng.random((m, batch_size, k, n_latent))
    us = rng.random((m, batch_size, n_latent + n_features))
    return x, uq, us


def kernel_supported(arch, batch_size: int, input_dependent_baseline: bool) -> bool:
    """Whether the Numba engine can run: batch size 1, no deterministic hidden layers
    and no input-dependent NVIL baseline."""
    return batch_size == 1 and arch.is_sigmoid_belief_net and not input_dependent_baseline


def use_kernel(engine: str, supported: bool) -> bool:
    """The engine choice: ``"numba"`` needs ``supported``; ``"auto"`` takes the kernels
    when supported and Numba compiles (so under ``NUMBA_DISABLE_JIT=1`` it runs the NumPy
    engine)."""
    if engine == "numba" and not supported:
        raise ValueError(
            "engine='numba' needs batch_size=1, no hidden layers and (for 'reinforce') "
            "no input-dependent baseline"
        )
    return engine == "numba" or (engine == "auto" and supported and jit_enabled())


@benign_underflow
class KernelEngine:
    """The Numba engine: parameters in one flat buffer, whole noise blocks per call.

    Parameters
    ----------
    params : dict
        Parameters of a sigmoid belief net (copied into the buffer).
    layer_sizes : tuple of int
    method : {"wake-sleep", "reweighted", "reinforce"}
    lr, lr_q : float
        Generative and recognition learning rates.
    sleep : bool
        Sleep phase for "reweighted".
    baseline : bool
        NVIL moving-average baseline for "reinforce".
    normalize_variance : bool
    decay : float
        The baseline's moving-average decay alpha.
    """

    def __init__(self, params, layer_sizes, method, lr, lr_q, *, sleep=False, baseline=False,
                 normalize_variance=False, decay=0.9):
        self.flat, self.layout = pack_params(params, layer_sizes)
        self.method, self.lr, self.lr_q, self.sleep = method, lr, lr_q, sleep
        self.baseline, self.normalize_variance, self.decay = baseline, normalize_variance, decay
        self.state = np.array([0.0, 1.0])     # NVIL [c, v], as NVILState's start

    def run(self, x, uq, us) -> np.ndarray:
        """Run one block; shapes as :func:`draw_noise` with ``batch_size = 1``.

        Returns the ``(m,)`` objectives: log w of each wake sample ("wake-sleep"), the
        IWAE estimate ("reweighted") or the learning signal ("reinforce").
        """
        if self.method == "wake-sleep":
            return ws_online(self.flat, self.layout, x[:, 0], uq[:, 0, 0], us[:, 0], self.lr,
                             self.lr_q)
        if self.method == "reweighted":
            return rws_online(self.flat, self.layout, x[:, 0], uq[:, 0], us[:, 0], self.lr,
                              self.lr_q, self.sleep)
        return reinforce_online(self.flat, self.layout, x[:, 0], uq[:, 0, 0], self.lr,
                                self.lr_q, self.baseline, self.normalize_variance, self.decay,
                                self.state)

    def params(self, copy: bool = False) -> dict:
        """The current parameters: views into the buffer, or copies."""
        p = unpack_params(self.flat, self.layout)
        return {k: v.copy() for k, v in p.items()} if copy else p
