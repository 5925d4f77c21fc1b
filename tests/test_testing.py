"""The gradient checker passes correct gradients and fails deliberately wrong ones."""

import numpy as np
import pytest

from lvmref.testing import assert_grad_close, check_grad


def _quadratic_plus(params):
    """f(A, b) = sum(tanh(A @ c)) + 0.5 b' M b + sum(A * b[:, None]**2); exact gradient below."""
    A, b = params["A"], params["b"]
    c = np.linspace(-1.0, 1.5, A.shape[1])
    M = np.diag(np.arange(1.0, b.size + 1))
    t = np.tanh(A @ c)
    val = t.sum() + 0.5 * b @ M @ b + np.sum(A * b[:, None] ** 2)
    gA = np.outer(1 - t**2, c) + np.broadcast_to(b[:, None] ** 2, A.shape)
    gb = M @ b + 2 * b * A.sum(axis=1)
    return val, {"A": gA, "b": gb}


@pytest.fixture
def point():
    rng = np.random.default_rng(3)
    return {"A": rng.normal(size=(4, 3)), "b": rng.normal(size=4)}


@pytest.mark.parametrize("richardson", [False, True])
def test_correct_gradient_passes(point, richardson):
    rep = check_grad(_quadratic_plus, point, richardson=richardson)
    assert rep.max_rel_error <= 1e-7, str(rep)
    assert set(rep.rel_error) == {"A", "b"}


def test_richardson_is_more_accurate(point):
    plain = check_grad(_quadratic_plus, point).max_rel_error
    rich = check_grad(_quadratic_plus, point, richardson=True).max_rel_error
    assert rich < plain


def test_directions_mode_passes_correct(point):
    rep = check_grad(_quadratic_plus, point, max_coords=0, n_directions=6)
    assert set(rep.method.values()) == {"directions"}
    assert rep.max_rel_error <= 1e-7, str(rep)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda g: {**g, "A": -g["A"]},  # sign flip
        lambda g: {**g, "A": g["A"][::-1, ::-1]},  # reversed / mis-indexed
        lambda g: {**g, "b": 2.0 * g["b"]},  # off by a factor
        lambda g: {**g, "b": g["b"] * (1 + 1e-5)},  # tiny relative error still caught
    ],
)
@pytest.mark.parametrize("max_coords", [400, 0])
def test_wrong_gradient_fails(point, corrupt, max_coords):
    _, g = _quadratic_plus(point)
    bad = corrupt(g)
    rep = check_grad(lambda p: _quadratic_plus(p)[0], point, bad, max_coords=max_coords)
    assert not rep.passed(1e-7)
    with pytest.raises(AssertionError, match="gradient check failed"):
        assert_grad_close(lambda p: _quadratic_plus(p)[0], point, bad, max_coords=max_coords)


def test_transposed_matrix_fails():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 3))
    x = rng.normal(size=3)
    y = rng.normal(size=3)

    def f(p):
        return float(y @ p["W"] @ x)

    good = {"W": np.outer(y, x)}
    assert_grad_close(f, {"W": W}, good)
    with pytest.raises(AssertionError):
        assert_grad_close(f, {"W": W}, {"W": good["W"].T})


def test_params_not_mutated(point):
    before = {k: v.copy() for k, v in point.items()}
    check_grad(_quadratic_plus, point, richardson=True, max_coords=5)
    for k in point:
        np.testing.assert_array_equal(point[k], before[k])


def test_bad_inputs(point):
    with pytest.raises(TypeError, match="params"):
        check_grad(_quadratic_plus, [1, 2])
    _, g = _quadratic_plus(point)
    with pytest.raises(ValueError, match="grad\\['A'\\]"):
        check_grad(lambda p: _quadratic_plus(p)[0], point, {"A": g["A"].T, "b": g["b"]})
    with pytest.raises(TypeError, match="\\(value, grad\\)"):
        check_grad(lambda p: _quadratic_plus(p)[0], point)
    with pytest.raises(ValueError, match="non-finite"):
        check_grad(lambda p: np.nan, point, g)
