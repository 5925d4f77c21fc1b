"""lvmref.kernels.fpenv: benign_underflow ignores underflow only, inside the call only."""

import numpy as np
import pytest

from lvmref.kernels.fpenv import benign_underflow


@benign_underflow
def tiny(x):
    return np.exp(np.asarray(x))


def test_underflow_ignored_other_flags_kept():
    with np.errstate(all="raise"):
        assert tiny(-800.0) == 0.0  # underflow: the correctly rounded result, no error
        with pytest.raises(FloatingPointError, match="overflow"):
            tiny(800.0)
        assert np.geterr()["under"] == "raise"  # the caller's state is restored
        with pytest.raises(FloatingPointError, match="underflow"):
            np.exp(np.asarray(-800.0))


@benign_underflow
class Model:
    def method(self, x):
        return np.exp(np.asarray(x))

    @staticmethod
    def static(x):
        return np.exp(np.asarray(x))

    @classmethod
    def klass(cls, x):
        return np.exp(np.asarray(x))

    def _private(self, x):
        return np.exp(np.asarray(x))

    @property
    def prop(self):
        return np.exp(np.asarray(-800.0))


def test_class_decoration_wraps_public_methods_only():
    m = Model()
    with np.errstate(all="raise"):
        assert m.method(-800.0) == 0.0
        assert Model.static(-800.0) == 0.0 and Model.klass(-800.0) == 0.0
        with pytest.raises(FloatingPointError):
            m._private(-800.0)
        with pytest.raises(FloatingPointError):
            _ = m.prop
    assert Model.method.__name__ == "method"
