"""Built-in data sets.

- Binarized 8x8 digits (UCI optdigits as shipped by scikit-learn), bundled as ``.npz``.
- Hinton et al. (1995) bars, with its exact image distribution.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

# ----------------------------------------------------------------------------------------
# Digits (VAE) — section owned by the VAE work.
# ----------------------------------------------------------------------------------------

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
    from importlib.resources import files

    with files("lvmref").joinpath("data/digits_binarized.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as d:
            train = d["train"].astype(np.float64)
            test = d["test"].astype(np.float64)
            labels = (d["train_labels"].astype(np.int64), d["test_labels"].astype(np.int64))
    if return_labels:
        return train, test, labels[0], labels[1]
    return train, test



# ----------------------------------------------------------------------------------------
# Bars (Helmholtz machine) — section owned by the Helmholtz work.
# ----------------------------------------------------------------------------------------
