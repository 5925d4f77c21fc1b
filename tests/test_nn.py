"""MLP forward against an independent loop, backward against finite differences."""

import numpy as np
import pytest

from lvmref.nn import ACTIVATIONS, MLP
from lvmref.testing import assert_grad_close


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_backward_matches_finite_differences(act):
    rng = np.random.default_rng(1)
    net = MLP((5, 4, 3), (act, "identity"), prefix="n.")
    params = net.init(rng)
    params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in params.items()}
    x = rng.normal(size=(6, 5))
    r = rng.normal(size=(6, 3))

    def f(p):
        y, cache = net.forward(p, x)
        grads, _ = net.backward(p, cache, r)
        return float(np.sum(r * y)), grads

    assert_grad_close(f, params, richardson=True)


def test_input_gradient():
    rng = np.random.default_rng(2)
    net = MLP((3, 4, 2), ("tanh", "sigmoid"))
    params = net.init(rng)
    x = rng.normal(size=(2, 3))
    r = rng.normal(size=(2, 2))

    def f(p):
        y, cache = net.forward(params, p["x"])
        _, gx = net.backward(params, cache, r, need_input_grad=True)
        return float(np.sum(r * y)), {"x": gx}

    assert_grad_close(f, {"x": x}, richardson=True)


def test_forward_matches_explicit_formula():
    rng = np.random.default_rng(0)
    net = MLP((3, 2, 2), ("tanh", "softplus"))
    p = net.init(rng)
    x = rng.normal(size=(4, 3))
    y, _ = net.forward(p, x)
    h = np.tanh(x @ p["W0"] + p["b0"])
    a = h @ p["W1"] + p["b1"]
    np.testing.assert_allclose(y, np.log(1 + np.exp(a)), rtol=1e-14)


def test_glorot_range_and_layout():
    net = MLP((10, 30), ("identity",))
    p = net.init(np.random.default_rng(0))
    assert p["W0"].shape == (10, 30) and p["b0"].shape == (30,)
    r = np.sqrt(6 / 40)
    assert np.all(np.abs(p["W0"]) <= r) and np.abs(p["W0"]).max() > 0.9 * r
    assert net.keys() == ["W0", "b0"]


def test_sigmoid_stable_at_extremes():
    s = ACTIVATIONS["sigmoid"][0](np.array([-1e4, 0.0, 1e4]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])


def test_bad_construction():
    with pytest.raises(ValueError, match="activations"):
        MLP((2, 3), ("tanh", "tanh"))
    with pytest.raises(ValueError, match="activations"):
        MLP((2, 3), ("gelu",))
    with pytest.raises(ValueError, match="sizes"):
        MLP((2,), ())
