"""lvmref.datasets: the bars data set (Hinton et al. 1995), generator vs its exact table,
table vs closed form. (The exact KL of a model to the table, estimators.kl_data_model, is
tested in tests/test_estimators.py.)"""

import itertools

import numpy as np
import pytest
from scipy import stats

from lvmref.datasets import bars, bars_table, entropy_bits


def _closed_form_probs(pv=2 / 3, pb=0.2, s=4):
    """Image probabilities written out by hand: m-bar images of one orientation
    (1 <= m <= s-1), plus all-off and all-on shared by both orientations."""
    out = []
    for m in range(1, s):
        n_sets = len(list(itertools.combinations(range(s), m)))
        q = pb**m * (1 - pb) ** (s - m)
        out += [pv * q] * n_sets + [(1 - pv) * q] * n_sets
    out += [(1 - pb) ** s, pb**s]
    return np.array(out)


def test_table_has_30_images_and_entropy_3428_bits():
    images, probs = bars_table()
    assert images.shape == (30, 16)
    assert len({im.tobytes() for im in images}) == 30
    expected = _closed_form_probs()
    np.testing.assert_allclose(np.sort(probs), np.sort(expected), rtol=1e-14, atol=0)
    h = -np.sum(expected * np.log2(expected))
    assert entropy_bits(probs) == pytest.approx(h, rel=1e-13)
    assert round(entropy_bits(probs), 3) == 3.428
    assert round(entropy_bits(probs) * np.log(2), 3) == 2.376
    # blank image alone: 0.8^4
    blank = np.flatnonzero(images.sum(axis=1) == 0)
    assert probs[blank[0]] == pytest.approx(0.8**4, rel=1e-14)


def test_table_images_are_bars():
    images, _ = bars_table()
    for im in images.reshape(-1, 4, 4):
        cols_const = np.all(im == im[0:1, :])  # vertical bars: rows identical
        rows_const = np.all(im == im[:, 0:1])  # horizontal bars: columns identical
        assert cols_const or rows_const


def test_generator_matches_table_chi_square():
    images, probs = bars_table()
    X = bars(200_000, np.random.default_rng(1234))
    lookup = {im.tobytes(): i for i, im in enumerate(images)}
    idx = np.array([lookup[x.tobytes()] for x in X])  # KeyError = off-support image
    counts = np.bincount(idx, minlength=len(probs))
    res = stats.chisquare(counts, probs * len(X))
    assert res.pvalue > 1e-3


def test_generator_size_and_probabilities_are_used():
    X = bars(50_000, 3, size=3, p_vertical=1.0, p_bar=0.5)
    ims = X.reshape(-1, 3, 3)
    assert np.all(ims == ims[:, 0:1, :])  # all vertical
    on = ims[:, 0, :].mean()
    assert abs(on - 0.5) < 4 * np.sqrt(0.25 / X.size * 3)


def test_generator_reproducible_with_seed():
    np.testing.assert_array_equal(bars(10, 7), bars(10, np.random.default_rng(7)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": 3, "size": 0}, "size"),
        ({"n": 3, "p_vertical": 1.5}, "p_vertical"),
        ({"n": 3, "p_bar": -0.1}, "p_bar"),
        ({"n": 3, "p_bar": np.nan}, "p_bar"),
        ({"n": 3, "rng": "seed"}, "rng"),
    ],
)
def test_bars_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bars(**kwargs)


def test_table_and_entropy_bad_input():
    with pytest.raises(ValueError, match="p_vertical"):
        bars_table(p_vertical=-1)
    with pytest.raises(ValueError, match="probs"):
        entropy_bits([0.5, 0.6])
