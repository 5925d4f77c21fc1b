"""Built-in data sets.

- Binarized 8x8 digits (UCI optdigits as shipped by scikit-learn), bundled as ``.npz``.
- Hinton et al. (1995) bars, with its exact image distribution.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

# ----------------------------------------------------------------------------------------
# Digits (VAE) — section owned by the VAE work.
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Bars (Helmholtz machine) — section owned by the Helmholtz work.
# ----------------------------------------------------------------------------------------
