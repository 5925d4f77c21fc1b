"""Tests of lvmref.optim.Adam against Adam written out from Kingma & Ba (2015), Algorithm 1."""

import numpy as np
import pytest

from lvmref.optim import Adam


def _textbook(theta, grads, lr, b1, b2, eps):
    """Algorithm 1 of Kingma & Ba (2015), written independently (loss gradients)."""
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return theta


def test_adam_class_matches_textbook_on_a_dict():
    rng = np.random.default_rng(40)
    p0 = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    grads = [{"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)} for _ in range(6)]
    p = {k: v.copy() for k, v in p0.items()}
    opt = Adam(p, lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6)
    for g in grads:
        opt.step(g)
    assert opt.t == 6
    for k in p0:
        expect = _textbook(p0[k], [g[k] for g in grads], 1e-2, 0.8, 0.99, 1e-6)
        np.testing.assert_allclose(p[k], expect, rtol=1e-13)


def test_sign_minus_one_ascends_and_subsets_update_only_their_keys():
    rng = np.random.default_rng(41)
    p = {"a": rng.normal(size=5), "b": rng.normal(size=2)}
    b0 = p["b"].copy()
    g = rng.normal(size=5)
    g_copy = g.copy()
    q = {"a": p["a"].copy()}
    Adam(p, lr=0.1).step({"a": g}, sign=-1.0)
    Adam(q, lr=0.1).step({"a": -g})
    np.testing.assert_array_equal(p["a"], q["a"])
    np.testing.assert_array_equal(p["b"], b0)
    np.testing.assert_array_equal(g, g_copy)  # gradients are not modified


def test_adam_class_minimizes_quadratic():
    p = {"w": np.array([3.0, -2.0])}
    opt = Adam(p, lr=0.1)
    for _ in range(500):
        opt.step({"w": 2 * p["w"]})
    assert np.all(np.abs(p["w"]) < 1e-2)


def test_bad_arguments_name_themselves():
    p = {"w": np.zeros(3)}
    with pytest.raises(TypeError, match="params"):
        Adam({"w": np.arange(3)})
    with pytest.raises(TypeError, match="params"):
        Adam({"w": np.zeros((3, 2)).T})
    with pytest.raises(TypeError, match="params"):
        Adam([np.zeros(3)])
    with pytest.raises(ValueError, match="lr"):
        Adam(p, lr=0.0)
    with pytest.raises(ValueError, match="lr"):
        Adam(p, lr=np.nan)
    with pytest.raises(ValueError, match="beta1"):
        Adam(p, beta1=1.0)
    with pytest.raises(ValueError, match="beta2"):
        Adam(p, beta2=-0.1)
    with pytest.raises(ValueError, match="eps"):
        Adam(p, eps=np.inf)
    opt = Adam(p)
    with pytest.raises(ValueError, match="grads"):
        opt.step({"v": np.zeros(3)})
    with pytest.raises(ValueError, match="grads"):
        opt.step({"w": np.zeros(4)})
