"""lvmref.kernels.checks: every checker names the argument, refuses the wrong kind of value
with TypeError and a wrong value with ValueError, and never mutates its input."""

import numpy as np
import pytest

from lvmref.kernels.checks import (
    as_float_array,
    check_axis,
    check_binary,
    check_choice,
    check_flag,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_real,
    check_rng,
)


def test_as_float_array_converts_a_copy_and_checks_shape():
    ints = np.arange(6).reshape(2, 3)
    out = as_float_array(ints, "X", ndim=2, shape=(None, 3))
    assert out.dtype == np.float64 and out.shape == (2, 3)
    f = np.ones(3)
    assert as_float_array(f, "x") is not f  # a copy by default: callers never mutated
    assert as_float_array(f, "x", copy=False) is f  # read-only use: no copy
    assert as_float_array([True, False], "m").tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="X must be 1-D, got shape"):
        as_float_array(ints, "X", ndim=1)
    with pytest.raises(ValueError, match=r"X must have shape \(\*, 4\), got \(2, 3\)"):
        as_float_array(ints, "X", shape=(None, 4))
    with pytest.raises(ValueError, match="X must not be empty"):
        as_float_array(np.zeros((0, 3)), "X")
    assert as_float_array(np.zeros((0, 3)), "X", allow_empty=True).shape == (0, 3)
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        as_float_array([1.0, np.inf], "X")
    assert np.isnan(as_float_array([np.nan], "X", finite=False)[0])


@pytest.mark.parametrize("bad", ["abc", b"ab", np.array(["a"]), [[1, 2], [3]],
                                 np.array([1 + 1j]), np.array([None, 1.0], dtype=object)])
def test_as_float_array_type_errors_name_the_argument(bad):
    with pytest.raises(TypeError, match="^weights "):
        as_float_array(bad, "weights")


def test_check_binary():
    x = np.array([0.0, 1.0, 1.0])
    assert check_binary(x, "x") is x
    with pytest.raises(ValueError, match="x must be binary"):
        check_binary(np.array([0.0, 0.5]), "x")


def test_check_rng():
    g = np.random.default_rng(1)
    assert check_rng(g) is g
    assert check_rng(0).random() == np.random.default_rng(0).random()
    assert check_rng(np.int64(3)).random() == np.random.default_rng(3).random()
    assert isinstance(check_rng(None), np.random.Generator)
    with pytest.raises(ValueError, match="random_state seed must be non-negative"):
        check_rng(-1, "random_state")
    for bad in (True, np.bool_(False), 1.5, "3", np.random.RandomState(0)):
        with pytest.raises(TypeError, match="^random_state must be a numpy.random.Generator"):
            check_rng(bad, "random_state")


def test_numbers():
    assert check_positive_int(np.int64(3), "n") == 3
    assert check_positive_int(0, "n", minimum=0) == 0
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_positive_int(0, "n")
    for bad in (True, 2.0, "2", np.bool_(True)):
        with pytest.raises(TypeError, match="n must be an integer"):
            check_positive_int(bad, "n")
    assert check_real(np.float32(0.5), "tol") == 0.5
    for bad in (True, "1", None, np.bool_(True)):
        with pytest.raises(TypeError, match="tol must be a real number"):
            check_real(bad, "tol")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="tol must be finite"):
            check_real(bad, "tol")
    assert check_nonnegative_float(0, "tol") == 0.0
    with pytest.raises(ValueError, match="tol must be >= 0"):
        check_nonnegative_float(-1e-300, "tol")
    with pytest.raises(ValueError, match="lr must be > 0"):
        check_positive_float(0.0, "lr")


def test_choice_flag_axis():
    assert check_choice("full", "covariance_type", ("full", "diag")) == "full"
    for bad in ("banana", ["full"], {"full": 1}, np.array(["full"]), None, 3):
        with pytest.raises(ValueError, match="covariance_type must be one of 'full', 'diag'"):
            check_choice(bad, "covariance_type", ("full", "diag"))
    assert check_flag(np.bool_(True), "reduce") is True
    for bad in (0, 1, "yes", None):
        with pytest.raises(TypeError, match="reduce must be True or False"):
            check_flag(bad, "reduce")
    assert check_axis(-1, 3) == 2 and check_axis(None, 2) is None
    with pytest.raises(ValueError, match="axis=3 is out of bounds"):
        check_axis(3, 3)
    with pytest.raises(TypeError, match="axis must be an int or None"):
        check_axis(1.0, 3)
