"""The package's shape: dependencies point one way, no cycles, no private imports,
every model class saves and loads, and every public function or method runs under the
floating-point contract (the checks of validation/import_graph.py, plus two more)."""

import importlib.util
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _graph_module():
    spec = importlib.util.spec_from_file_location("import_graph",
                                                  ROOT / "validation" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_layering_no_cycles_no_private_imports():
    assert _graph_module().violations() == []


def test_the_checker_sees_violations(tmp_path, monkeypatch):
    """A planted cycle and a private import are reported (so the test above can fail)."""
    ig = _graph_module()
    g = ig.graph()
    g["lvmref.kernels.checks"] = g["lvmref.kernels.checks"] + [("lvmref.gmm", ["_x"], 1)]
    bad = ig.violations(g)
    assert any("higher layer" in b for b in bad)
    assert any("private name lvmref.gmm._x" in b for b in bad)
    assert any(b.startswith("import cycle") for b in bad)


MODEL_CLASSES = [("lvmref.gmm", "GaussianMixture"), ("lvmref.vbgmm", "BayesianGaussianMixture"),
                 ("lvmref.helmholtz", "HelmholtzMachine"), ("lvmref.vae", "VAE")]


@pytest.mark.parametrize(("module", "name"), MODEL_CLASSES)
def test_every_model_class_has_save_and_load(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert callable(getattr(cls, "save", None))
    assert isinstance(inspect.getattr_static(cls, "load"), classmethod)


PUBLIC_MODULES = ["lvmref.estimators", "lvmref.gmm", "lvmref.vbgmm", "lvmref.mixture",
                  "lvmref.mixture_stats", "lvmref.chunked",
                  "lvmref.helmholtz", "lvmref.vae", "lvmref.linear_gaussian", "lvmref.nn",
                  "lvmref.optim", "lvmref.testing", "lvmref.kernels"]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_functions_run_under_the_floating_point_contract(module):
    """Every public function in __all__, and every public method of a public class, is
    wrapped by kernels.fpenv.benign_underflow (its wrappers carry ``benign_underflow``)."""
    mod = importlib.import_module(module)
    unwrapped = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isfunction(obj) and not getattr(obj, "benign_underflow", False):
            unwrapped.append(name)
        if inspect.isclass(obj) and not issubclass(obj, (Exception, Warning)):
            for m, attr in vars(obj).items():
                f = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
                if (not m.startswith("_") and inspect.isfunction(f)
                        and not getattr(f, "benign_underflow", False)):
                    unwrapped.append(f"{name}.{m}")
    assert unwrapped == []
