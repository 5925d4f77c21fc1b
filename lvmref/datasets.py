"""Built-in data sets (a leaf module: it imports nothing from lvmref but the checks).

- Binarized 8x8 digits (UCI optdigits as shipped by scikit-learn), bundled as ``.npz``.
- Hinton et al. (1995) bars, with its exact image distribution (the exact KL of a model
  to it is :func:`lvmref.estimators.kl_data_model`).
- The 2-D three-component Gaussian mixture data of the GMM demo.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

from .kernels.checks import as_float_array, check_flag, check_positive_int, check_real, check_rng
from .kernels.fpenv import benign_underflow

__all__ = [
    "load_digits_binarized",
    "bars",
    "bars_table",
    "entropy_bits",
    "gmm_demo_data",
    "GMM_TRUE",
]

# ----------------------------------------------------------------------------------------
# Digits (VAE)
# ----------------------------------------------------------------------------------------

@benign_underflow
def load_digits_binarized(return_labels: bool = False):
    """Binarized 8x8 digits with the fixed train/test split (first 1500 / last 297 rows).

    UCI optdigits (Alpaydin & Kaynak, 1998; CC BY 4.0) as shipped by scikit-learn's
    ``load_digits``, binarized with ``pixel / 16 > 0.5``; see ``lvmref/data/DIGITS.md``.
    Bundled as ``lvmref/data/digits_binarized.npz``, so scikit-learn is not needed.

    Parameters
    ----------
    return_labels : bool
        Also return the digit labels (0..9).

    Returns
    -------
    train : ndarray of float64, shape (1500, 64)
        Entries 0.0 or 1.0; row-major 8x8 images.
    test : ndarray of float64, shape (297, 64)
    train_labels, test_labels : ndarray of int64, shapes (1500,), (297,)
        Only when ``return_labels``.
    """
    return_labels = check_flag(return_labels, "return_labels")
    with files("lvmref").joinpath("data/digits_binarized.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as d:
            train = d["train"].astype(np.float64)
            test = d["test"].astype(np.float64)
            labels = (d["train_labels"].astype(np.int64), d["test_labels"].astype(np.int64))
    if return_labels:
        return train, test, labels[0], labels[1]
    return train, test



# ----------------------------------------------------------------------------------------
# Bars (Helmholtz machine)
# ----------------------------------------------------------------------------------------
#
# Generative process (Hinton, Dayan, Frey & Neal 1995, Science 268:1158): an image is a
# ``size x size`` grid (flattened row-major, pixel (r, c) -> column r * size + c). Choose
# vertical with probability ``p_vertical`` (else horizontal); switch each of the ``size``
# bars of that orientation on independently with probability ``p_bar``; a pixel is on iff
# some active bar covers it (OR). Vertical bar j covers column j, horizontal bar i row i.
#
# Exact image distribution. Within one orientation the bar set -> image map is injective,
# so P(image | orientation) = p_bar^m (1 - p_bar)^(size - m) for the m active bars. Two
# images arise from both orientations: all-off (no bar) and all-on (every bar). Hence
# 2 * 2^size - 2 distinct images (30 for size 4), and
#     P(image) = p_vertical * P(image | vertical) + (1 - p_vertical) * P(image | horizontal).


def _check_bars_args(size, p_vertical, p_bar):
    size = check_positive_int(size, "size")
    p_vertical = check_real(p_vertical, "p_vertical")
    p_bar = check_real(p_bar, "p_bar")
    if not 0.0 <= p_vertical <= 1.0:
        raise ValueError(f"p_vertical must be in [0, 1], got {p_vertical}")
    if not 0.0 <= p_bar <= 1.0:
        raise ValueError(f"p_bar must be in [0, 1], got {p_bar}")
    return size, p_vertical, p_bar


def _bars_images(active: np.ndarray, vertical: np.ndarray, size: int) -> np.ndarray:
    """OR of bars: ``active`` (n, size) bool, ``vertical`` (n,) bool -> images (n, size*size)."""
    # Vertical: pixel (r, c) on iff bar c active; horizontal: iff bar r active.
    vert = np.broadcast_to(active[:, None, :], (active.shape[0], size, size))
    horiz = np.broadcast_to(active[:, :, None], (active.shape[0], size, size))
    img = np.where(vertical[:, None, None], vert, horiz)
    return img.reshape(active.shape[0], size * size).astype(np.float64)


@benign_underflow
def bars(n, rng=None, size=4, p_vertical=2.0 / 3.0, p_bar=0.2) -> np.ndarray:
    """Draw ``n`` bars images (Hinton et al. 1995).

    Parameters
    ----------
    n : int
        Number of images (>= 1).
    rng : Generator, int or None
        Randomness. Per image, one uniform picks the orientation, then ``size``
        uniforms switch the bars (drawn as arrays of shape (n,) and (n, size)).
    size : int
        Side length of the square image.
    p_vertical : float in [0, 1]
        Probability of the vertical orientation.
    p_bar : float in [0, 1]
        Probability that each bar of the chosen orientation is on.

    Returns
    -------
    X : ndarray of shape (n, size * size), float64 in {0, 1}
        Row-major flattened images.
    """

    n = check_positive_int(n, "n")
    size, p_vertical, p_bar = _check_bars_args(size, p_vertical, p_bar)
    rng = check_rng(rng)
    vertical = rng.random(n) < p_vertical
    active = rng.random((n, size)) < p_bar
    return _bars_images(active, vertical, size)


@benign_underflow
def bars_table(size=4, p_vertical=2.0 / 3.0, p_bar=0.2):
    """Exact distribution of bars images: every distinct image with its probability.

    Enumerates both orientations x all ``2**size`` bar sets and merges identical images
    (all-off and all-on arise from both orientations), see the section comment above.

    Returns
    -------
    images : ndarray of shape (m, size * size), float64 in {0, 1}
        The distinct images with non-zero probability (m = 30 for size 4 and
        0 < p_vertical < 1, 0 < p_bar < 1), in a fixed order.
    probs : ndarray of shape (m,)
        Their probabilities (sum to 1).
    """
    size, p_vertical, p_bar = _check_bars_args(size, p_vertical, p_bar)
    if size > 16:
        raise ValueError(f"size must be <= 16 for the exact table, got {size}")
    sets = ((np.arange(2**size)[:, None] >> np.arange(size)) & 1).astype(bool)  # (2^s, s)
    m = sets.sum(axis=1)
    p_set = p_bar**m * (1.0 - p_bar) ** (size - m)
    probs = {}
    order = []
    for vertical, p_orient in ((True, p_vertical), (False, 1.0 - p_vertical)):
        imgs = _bars_images(sets, np.full(len(sets), vertical), size)
        for img, p in zip(imgs, p_set * p_orient):
            key = img.tobytes()
            if key not in probs:
                probs[key] = [img, 0.0]
                order.append(key)
            probs[key][1] += p
    keep = [k for k in order if probs[k][1] > 0.0]
    images = np.array([probs[k][0] for k in keep]).reshape(len(keep), size * size)
    return images, np.array([probs[k][1] for k in keep])


@benign_underflow
def entropy_bits(probs) -> float:
    """Shannon entropy ``-sum p log2 p`` in bits of a probability vector (0 log 0 = 0)."""

    p = as_float_array(probs, "probs", ndim=1)
    if np.any((p < 0) | (p > 1)) or abs(p.sum() - 1.0) > 1e-9:
        raise ValueError("probs must lie in [0, 1] and sum to 1")
    nz = p[p > 0]
    return float(-np.sum(nz * np.log2(nz)))


# ----------------------------------------------------------------------------------------
# Gaussian mixture demo data
# ----------------------------------------------------------------------------------------

# The mixture the GMM demo data are drawn from (documented in gmm_demo_data).
GMM_TRUE = {  # the generating mixture (full covariances)
    "weights": np.array([0.5, 0.3, 0.2]),
    "means": np.array([[0.0, 0.0], [4.0, 3.0], [-3.0, 4.0]]),
    "covariances": np.array([[[2.0, 1.2], [1.2, 1.0]],
                             [[0.6, -0.3], [-0.3, 0.8]],
                             [[0.5, 0.0], [0.0, 1.5]]]),
}


def gmm_demo_data(n=600, rng=0):
    """The built-in 2-D data set of the GMM demo.

    ``n`` points from the 3-component mixture ``GMM_TRUE`` (weights 0.5/0.3/0.2, means
    (0, 0), (4, 3), (-3, 4), full covariances): component labels by
    ``rng.choice(3, n, p=weights)``, then ``mean + L @ standard_normal`` with the
    Cholesky factor L of the component's covariance.

    Parameters
    ----------
    n : int
    rng : Generator, int or None

    Returns
    -------
    X : ndarray of shape (n, 2)
    labels : ndarray of int64, shape (n,)
    """
    n = check_positive_int(n, "n")
    rng = check_rng(rng)
    labels = rng.choice(3, size=n, p=GMM_TRUE["weights"])
    chol = np.linalg.cholesky(GMM_TRUE["covariances"])
    noise = rng.standard_normal((n, 2))
    X = GMM_TRUE["means"][labels] + np.einsum("nij,nj->ni", chol[labels], noise)
    return X, labels.astype(np.int64)
