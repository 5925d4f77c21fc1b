"""One-off: build ``lvmref/data/digits_binarized.npz`` from scikit-learn's ``load_digits``.

Provenance: scikit-learn ships the test part of the UCI "Optical Recognition of
Handwritten Digits" data set (optdigits; E. Alpaydin and C. Kaynak, 1998; licence
CC BY 4.0): 1797 images of 8x8 pixels, each pixel a count 0..16. We binarize with
``pixel / 16 > 0.5`` and split in file order: the first 1500 rows are the training
set, the last 297 the test set. Labels are stored too (unused by the VAE).

Run from the repository root (needs scikit-learn, which is a test dependency)::

    python validation/make_digits_npz.py

The output is deterministic; ``lvmref/data/DIGITS.md`` records its SHA-256.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

N_TRAIN = 1500
OUT = Path(__file__).resolve().parent.parent / "lvmref" / "data" / "digits_binarized.npz"


def main() -> None:
    d = load_digits()
    images = np.asarray(d.data, dtype=np.float64)
    if images.shape != (1797, 64):
        raise SystemExit(f"unexpected load_digits shape {images.shape}")
    binary = (images / 16.0 > 0.5).astype(np.uint8)
    labels = np.asarray(d.target, dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        train=binary[:N_TRAIN],
        test=binary[N_TRAIN:],
        train_labels=labels[:N_TRAIN],
        test_labels=labels[N_TRAIN:],
    )
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print(f"sha256 of the binary pixel block: {hashlib.sha256(binary.tobytes()).hexdigest()}")
    print(f"mean pixel: train {binary[:N_TRAIN].mean():.6f}, test {binary[N_TRAIN:].mean():.6f}")


if __name__ == "__main__":
    main()
