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


# ---------------------------------------------------------------- the checker's own accuracy

U = 2.0**-53  # unit roundoff of float64
EPS = 2.0**-52


def _exp_problem(x0):
    return {"x": np.array([x0])}, lambda p: float(np.exp(p["x"][0]))


def _central_difference_bound(x0, h, richardson):
    """Error bound of the (Richardson-extrapolated) central difference of f = exp at x0,
    relative to f'(x0) = e^x0, for the nominal step h (the checker divides by it):

    * truncation: (f(x+h) - f(x-h)) / 2h = f' + h^2 f'''/6 + h^4 f^(5)/120 + ...; with
      |f^(j)| <= e^(x0 + h) on [x0 - h, x0 + h] the plain remainder is <= h^2 e^h / 6;
      Richardson cancels the h^2 term and leaves <= h^4 e^h / 480 (+ the h^6 term, <=
      h^6 e^h / 5000, both bounded here by 1.1 h^4 e^h / 480);
    * rounding of f: libm exp is within 1 ulp <= 2u relative, so each difference quotient
      is off by <= 2 * 2u e^(x0 + h) / 2h; Richardson combines (4 D(h/2) - D(h)) / 3:
      (4 * 2 + 1) / 3 = 3 times the plain term;
    * the step actually taken: fl(x0 +- h) differs from x0 +- h by <= u |x0 +- h|, so the
      quotient by the nominal 2h is off by <= f' (|x0| + h) u / h (plain), 3 times it
      (Richardson).
    Relative to e^x0 the e^(x0 + h) factors become e^h.
    """
    eh = np.exp(h)
    if richardson:
        trunc = 1.1 * h**4 * eh / 480
        rnd = 3 * (2 * U * eh / h + (abs(x0) + h) * U / h)
    else:
        trunc = h**2 * eh / 6
        rnd = 2 * U * eh / h + (abs(x0) + h) * U / h
    return trunc + rnd


@pytest.mark.parametrize("richardson", [False, True])
def test_checker_steps_are_the_documented_ones(richardson):
    """h = eps^(1/3) max(1, |x_i|) (eps^(1/5) with Richardson), module docstring: the
    points f is evaluated at are exactly fl(x_i +- h) (and fl(x_i +- h/2))."""
    rng = np.random.default_rng(11)
    x = np.array([0.3, -2.5, 7.0, 1e3])
    seen = []

    def f(p):
        seen.append(p["x"].copy())
        return float(np.sum(np.sin(p["x"])))

    check_grad(f, {"x": x}, {"x": np.cos(x)}, richardson=richardson, rng=rng)
    seen = np.array(seen[1:])  # the first call is f(params) itself
    step = EPS ** (1 / 5) if richardson else EPS ** (1 / 3)
    fracs = (1.0, -1.0, 0.5, -0.5) if richardson else (1.0, -1.0)
    for i, xi in enumerate(x):
        h = step * max(1.0, abs(xi))
        moved = seen[np.flatnonzero(seen[:, i] != xi), i]
        np.testing.assert_array_equal(moved, [xi + c * h for c in fracs])


@pytest.mark.parametrize("richardson", [False, True])
def test_checker_error_on_a_correct_gradient_is_within_its_derived_bound(richardson):
    """The checker's own accuracy, pinned: on f = exp its error never exceeds the bound of
    :func:`_central_difference_bound` (truncation + rounding for the documented step),
    which is <= 1e-10 plain and <= 2e-12 with Richardson. A step of eps^(1/2) (rounding
    ~u/h = 7e-9) or a first-order difference breaks it."""
    step = EPS ** (1 / 5) if richardson else EPS ** (1 / 3)
    worst = 0.0
    for x0 in np.linspace(-3.0, 3.0, 61):
        params, f = _exp_problem(x0)
        rep = check_grad(f, params, {"x": np.exp(params["x"])}, richardson=richardson)
        h = step * max(1.0, abs(x0))
        bound = _central_difference_bound(x0, h, richardson)
        assert bound <= (2e-12 if richardson else 1e-10)
        assert rep.rel_error["x"] <= bound, (x0, rep.rel_error["x"], bound)
        worst = max(worst, rep.rel_error["x"])
    # the bound is attained within a factor ~10 (it is not vacuous for these steps)
    assert worst >= 0.05 * max(_central_difference_bound(x, step * max(1.0, abs(x)), richardson)
                               for x in np.linspace(-3.0, 3.0, 61))


def test_checker_catches_a_1e_9_relative_error_with_tight_rtol():
    """With rtol = 1e-9 (above the 1e-10 bound above) a gradient off by 1e-8 relative is
    caught, and the correct one passes."""
    params, f = _exp_problem(0.7)
    good = {"x": np.exp(params["x"])}
    assert check_grad(f, params, good).passed(1e-9)
    assert not check_grad(f, params, {"x": good["x"] * (1 + 1e-8)}).passed(1e-9)
