"""CLI: each subcommand's happy path (tiny data) and its bad-input errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from lvmref import cli
from lvmref.datasets import bars
from lvmref.gmm import GaussianMixture
from lvmref.vae import VAE


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(capsys, match, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lvmref: error: ")
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([0, 0], 0.5, (30, 2)), rng.normal([4, 4], 0.7, (30, 2))])
    csv = d / "blobs.csv"
    np.savetxt(csv, X, delimiter=",")
    npy = d / "blobs.npy"
    np.save(npy, X)
    return d, X, csv, npy


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    X = bars(60, np.random.default_rng(1))          # (60, 16) in {0, 1}
    path = d / "bars.npy"
    np.save(path, X)
    return d, X, path


# ----------------------------------------------------------------------------------- gmm

def test_gmm_fit_save_load(capsys, blobs, tmp_path):
    _, X, csv, npy = blobs
    model, js = tmp_path / "m.npz", tmp_path / "m.json"
    code, out, err = run(capsys, "gmm", csv, "-k", 2, "--save", model, "--json", js,
                         "--tol", 1e-8, "--max-iter", 500)
    assert code == 0 and err == ""
    assert "BIC" in out and "log-likelihood per point by iteration" in out
    r = json.loads(js.read_text())
    w, mu, cov = (np.array(r[k]) for k in ("weights", "means", "covariances"))
    # independent log-likelihood from scipy with the saved parameters
    dens = sum(w[k] * multivariate_normal(mu[k], cov[k]).pdf(X) for k in range(2))
    ll = np.log(dens).sum()
    assert r["log_likelihood_per_point"] == pytest.approx(ll / X.shape[0], rel=1e-10)
    p = 1 + 2 * 2 + 2 * 3                                     # (K-1) + K d + K d(d+1)/2
    assert r["bic"] == pytest.approx(-2 * ll + p * math.log(X.shape[0]), rel=1e-10)
    # the whole bound history is the library's fit with the same options and seed (EM's
    # monotonicity is tested on the library in test_gmm.py; with reg_covar > 0 it holds
    # only approximately, so no slack is asserted here)
    lib = GaussianMixture(2, tol=1e-8, max_iter=500, random_state=0).fit(X)
    np.testing.assert_allclose(r["lower_bounds"], lib.lower_bounds_, rtol=1e-13)
    assert sorted(np.round(mu[:, 0]).tolist()) == [0.0, 4.0]
    # --load evaluates the saved model on the .npy copy of the data: same numbers
    js2 = tmp_path / "m2.json"
    code, out, _ = run(capsys, "gmm", npy, "--load", model, "--json", js2)
    assert code == 0 and "BIC" in out
    r2 = json.loads(js2.read_text())
    assert r2["bic"] == pytest.approx(r["bic"], rel=1e-12)
    np.testing.assert_array_equal(r2["means"], r["means"])


def test_gmm_quiet_and_covariance_type(capsys, blobs):
    code, out, err = run(capsys, "gmm", blobs[2], "-k", 2, "--covariance-type", "diag", "-q")
    assert code == 0 and out == "" and err == ""


def test_gmm_bad_inputs(capsys, blobs, tmp_path):
    d, X, csv, _ = blobs
    assert_user_error(capsys, "not found", "gmm", tmp_path / "nope.csv", "-k", 2)
    semi = tmp_path / "semi.csv"
    semi.write_text("1;2\n3;4\n5;6\n")
    assert_user_error(capsys, "delimiter", "gmm", semi, "-k", 2)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n1,2\n3,4\n")
    assert_user_error(capsys, "is not a number (a header line", "gmm", header, "-k", 2)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.arange(5.0))
    assert_user_error(capsys, "2-D", "gmm", flat, "-k", 2)
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([[1.0, np.nan], [0.0, 1.0]]))
    assert_user_error(capsys, "NaN", "gmm", nan, "-k", 1)
    assert_user_error(capsys, "directory", "gmm", tmp_path, "-k", 2)
    txt = tmp_path / "data.dat"
    txt.write_text("1,2\n")
    assert_user_error(capsys, ".npy or .csv", "gmm", txt, "-k", 2)
    assert_user_error(capsys, "n_components", "gmm", csv, "-k", 100)
    assert_user_error(capsys, "not found", "gmm", csv, "--load", tmp_path / "none.npz")
    bad_model = tmp_path / "bad.npz"
    np.savez(bad_model, a=np.zeros(3))
    assert_user_error(capsys, "not an lvmref model file", "gmm", csv, "--load", bad_model)
    three = tmp_path / "three.npy"
    np.save(three, np.ones((5, 3)))
    model = tmp_path / "m.npz"
    assert run(capsys, "gmm", csv, "-k", 1, "--save", model, "-q")[0] == 0
    assert_user_error(capsys, "3 columns", "gmm", three, "--load", model)
    assert_user_error(capsys, "no_such_dir", "gmm", csv, "-k", 1, "--save",
                      tmp_path / "no_such_dir" / "m.npz")


@pytest.mark.parametrize("argv, match", [
    (["gmm", "{csv}", "-k", "0"], "positive integer"),
    (["gmm", "{csv}", "-k", "2", "--covariance-type", "banana"], "--covariance-type"),
    (["gmm", "{csv}", "-k", "2", "--tol", "nan"], "--tol"),
    (["vae", "{csv}", "--lr", "-1"], "--lr"),
    (["demo", "--seed", "-3"], "--seed"),
    (["nosuchcommand"], "invalid choice"),
    ([], "required"),
    (["gmm", "{csv}"], "one of the arguments -k/--n-components --load is required"),
    (["gmm", "{csv}", "-k", "2", "--load", "m.npz"], "not allowed with argument"),
    (["vae", "{csv}", "--activation", "banana"], "--activation"),
])
def test_usage_errors_are_one_line_exit_2(capsys, blobs, argv, match):
    argv = [a.format(csv=blobs[2]) for a in argv]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvmref: error: ")
    assert match in lines[0]


# ----------------------------------------------------------------------------------- vae

def test_vae_train_save_load(capsys, binary, tmp_path):
    _, X, path = binary
    model, js, js2 = tmp_path / "v.npz", tmp_path / "v.json", tmp_path / "v2.json"
    code, out, err = run(capsys, "vae", path, "--test", path, "--latent", 2, "--hidden", 8,
                         "--epochs", 3, "--batch-size", 20, "--iwae-k", 5, "--save", model,
                         "--json", js)
    assert code == 0 and err == ""  # no progress line when stderr is not a terminal
    assert "ELBO per row by epoch" in out
    r = json.loads(js.read_text())
    assert len(r["history"]["train_elbo"]) == 3
    assert r["data"]["elbo"] < 0                     # Bernoulli ELBO is <= 0 exactly
    code, out, _ = run(capsys, "vae", path, "--load", model, "--iwae-k", 5, "--json", js2)
    assert code == 0
    r2 = json.loads(js2.read_text())
    # same parameters and the same evaluation noise: identical numbers
    assert r2["data"] == r["data"]
    vae = VAE.load(model)
    assert (vae.n_features, vae.n_latent, vae.hidden) == (16, 2, (8,))
    assert set(vae.params_) == set(vae.param_shapes())
    assert vae.history_["train_elbo"] == r["history"]["train_elbo"]


def test_vae_bad_inputs(capsys, binary, blobs, tmp_path):
    _, X, path = binary
    assert_user_error(capsys, "binary", "vae", blobs[3], "--epochs", 1)
    assert_user_error(capsys, "not found", "vae", tmp_path / "x.npy")
    gmm_model = tmp_path / "g.npz"
    assert run(capsys, "gmm", blobs[2], "-k", 1, "--save", gmm_model, "-q")[0] == 0
    # a GaussianMixture file (in the old GMM format, or the one format with another kind)
    line = assert_user_error(capsys, str(gmm_model), "vae", path, "--load", gmm_model)
    assert "not an lvmref model file" in line or "holds a GaussianMixture, not a VAE" in line
    assert_user_error(capsys, "not found", "vae", path, "--load", tmp_path / "none.npz")
    assert_user_error(capsys, "--hidden", "vae", path, "--hidden", "a,b", "--epochs", 1)
    other = tmp_path / "other.npy"
    np.save(other, np.ones((4, 9)))
    assert_user_error(capsys, "columns", "vae", path, "--test", other, "--epochs", 1)
    model = tmp_path / "v.npz"
    assert run(capsys, "vae", path, "--latent", 1, "--hidden", 4, "--epochs", 1, "-q",
               "--iwae-k", 2, "--save", model)[0] == 0
    assert_user_error(capsys, "9 columns", "vae", other, "--load", model)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    assert_user_error(capsys, "broken.npz", "vae", path, "--load", broken)


# ----------------------------------------------------------------------------- helmholtz

def test_helmholtz_train_save_load(capsys, binary, tmp_path):
    _, X, path = binary
    model, js, js2 = tmp_path / "h.npz", tmp_path / "h.json", tmp_path / "h2.json"
    code, out, err = run(capsys, "helmholtz", path, "--layers", "1,4", "--updates", 2000,
                         "--save", model, "--json", js)
    assert code == 0 and err == ""
    r = json.loads(js.read_text())
    assert r["exact"] and r["n_latent"] == 5 and r["layer_sizes"] == [1, 4, 16]
    # ELBO <= log p(x) for every row (exact enumeration), log p(x) <= 0 for binary x
    assert r["elbo"] <= r["log_likelihood"] < 0
    code, out, _ = run(capsys, "helmholtz", path, "--load", model, "--json", js2)
    assert code == 0
    assert json.loads(js2.read_text()) == r
    # too many latents to enumerate: IWAE bound instead
    code, out, _ = run(capsys, "helmholtz", path, "--load", model, "--max-exact-latent", 2,
                       "--iwae-k", 10, "--json", js2)
    r3 = json.loads(js2.read_text())
    assert code == 0 and not r3["exact"] and r3["elbo"] < 0


def test_helmholtz_bad_inputs(capsys, binary, blobs, tmp_path):
    _, _, path = binary
    assert_user_error(capsys, "binary", "helmholtz", blobs[3])
    assert_user_error(capsys, "--layers", "helmholtz", path, "--layers", "1,x")
    assert_user_error(capsys, "--layers", "helmholtz", path, "--layers", "0")
    assert_user_error(capsys, "not found", "helmholtz", path, "--load", tmp_path / "n.npz")
    junk = tmp_path / "junk.npz"
    np.savez(junk, a=np.zeros(2))
    line = assert_user_error(capsys, "not an lvmref model file", "helmholtz", path, "--load",
                             junk)
    assert "junk.npz" in line


def test_python_m_lvmref_help():
    proc = subprocess.run([sys.executable, "-m", "lvmref", "--help"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0
    for cmd in ("demo", "gmm", "vae", "helmholtz"):
        assert cmd in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "lvmref", "gmm", "missing.csv", "-k", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["lvmref: error: DATA file not found: "
                                                "missing.csv"]


# ----------------------------------------------------------------------------------- all

def test_version_and_help_show_defaults_and_choices(capsys):
    from lvmref import __version__

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"lvmref {__version__}"
    with pytest.raises(SystemExit):
        cli.main(["gmm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(-k K | --load MODEL.npz)" in text  # -k is required unless --load
    assert "(default: 0.001)" in text and "{full,tied,diag,spherical}" in text
    with pytest.raises(SystemExit):
        cli.main(["vae", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 100)" in text and "{tanh,relu,softplus,sigmoid,identity}" in text
    with pytest.raises(SystemExit):
        cli.main(["helmholtz", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    import inspect

    from lvmref.helmholtz import HelmholtzMachine

    lib = inspect.signature(HelmholtzMachine.fit).parameters["learning_rate"].default
    assert f"(default: {lib})" in text  # the CLI default is the library's


def test_outputs_checked_before_training(capsys, binary, tmp_path):
    _, _, path = binary
    line = assert_user_error(capsys, "--save", "vae", path, "--epochs", 1000,
                             "--save", tmp_path / "nodir" / "v.npz")
    assert "does not exist" in line
    assert_user_error(capsys, "is a directory", "helmholtz", path, "--save", tmp_path)
    assert_user_error(capsys, "--json", "gmm", path, "-k", 2, "--json",
                      tmp_path / "nodir" / "r.json")


def test_load_directory_and_complex_data(capsys, blobs, tmp_path):
    _, X, csv, _ = blobs
    line = assert_user_error(capsys, "is a directory", "gmm", csv, "--load", tmp_path)
    assert "--load" in line
    c = tmp_path / "c.npy"
    np.save(c, X + 1j)
    assert_user_error(capsys, "complex", "gmm", c, "-k", 2)


def test_test_file_mismatch_names_the_option(capsys, binary, tmp_path):
    _, X, path = binary
    other = tmp_path / "other.npy"
    np.save(other, X[:, :5])
    line = assert_user_error(capsys, "--test", "vae", path, "--test", other, "--epochs", 1)
    assert "5 columns" in line and "16" in line


def test_divergence_is_one_line(capsys, binary):
    _, _, path = binary
    line = assert_user_error(capsys, "diverged", "vae", path, "--lr", "1e10", "--epochs", 2,
                             "--latent", 2, "--hidden", "8", "-q")
    assert "--lr" in line


def test_unexpected_failure_is_one_line(capsys, blobs, monkeypatch):
    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(cli, "cmd_gmm", boom)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "gmm", boom))
    line = assert_user_error(capsys, "internal error", "gmm", blobs[2], "-k", 1)
    assert "RuntimeError: something broke" in line


def _with_func(parser, command, func):
    for action in parser._subparsers._group_actions:
        action.choices[command].set_defaults(func=func)
    return parser


# ------------------------------------------------------------------- memory-mapped DATA

def test_gmm_memory_maps_npy_and_takes_chunk_size(capsys, blobs, tmp_path):
    """A .npy DATA is fitted from its memory map chunk by chunk: the numbers are the
    library's chunked fit (and the in-memory fit to 1e-10, tests/test_gmm.py)."""
    from lvmref.gmm import GaussianMixture

    _, X, csv, npy = blobs
    out = tmp_path / "r.json"
    code, _, _ = run(capsys, "gmm", npy, "-k", 2, "--chunk-size", 7, "--json", out, "-q")
    assert code == 0
    got = json.loads(out.read_text())
    ref = GaussianMixture(2, random_state=0, chunk_size=7).fit(np.load(npy, mmap_mode="r"))
    np.testing.assert_array_equal(got["means"], ref.means_)
    assert got["lower_bounds"] == ref.lower_bounds_
    mem = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(got["means"], mem.means_, rtol=1e-10)
    code, _, _ = run(capsys, "gmm", npy, "-k", 2, "--save", tmp_path / "m.npz", "-q")
    assert code == 0
    code, out_text, _ = run(capsys, "gmm", npy, "--load", tmp_path / "m.npz", "--chunk-size", 5)
    assert code == 0 and "log-likelihood per point" in out_text
    for command in (["gmm", str(csv), "-k", "2"], ["vae", str(npy)]):
        with pytest.raises(SystemExit) as e:
            cli.main([*command, "--chunk-size", "0"])
        assert e.value.code == 2
        assert "--chunk-size: expected a positive integer" in capsys.readouterr().err


def test_vae_evaluation_does_not_depend_on_chunk_size(capsys, binary, tmp_path):
    _, _, path = binary
    results = []
    for extra in ((), ("--chunk-size", 7)):
        out = tmp_path / f"v{len(extra)}.json"
        code, _, _ = run(capsys, "vae", path, "--epochs", 1, "--latent", 2, "--hidden", 8,
                         "--iwae-k", 5, "--json", out, "-q", *extra)
        assert code == 0
        results.append(json.loads(out.read_text()))
    assert results[0]["data"] == results[1]["data"]  # the evaluation, bit for bit
    assert results[0]["history"]["train_elbo"] == results[1]["history"]["train_elbo"]
    # training on the memory map is training on the array (VAE.fit gathers the batches)
    vae = VAE(16, 2, hidden=(8,)).fit(np.load(path), n_epochs=1, rng=0)
    assert vae.history_["train_elbo"] == results[0]["history"]["train_elbo"]


# ------------------------------------------------------ vimco, help epilog, progress lines

def test_helmholtz_vimco_equals_the_library_fit(capsys, binary, tmp_path):
    from lvmref.helmholtz import HelmholtzMachine

    _, X, path = binary
    model = tmp_path / "v.npz"
    code, out, err = run(capsys, "helmholtz", path, "--method", "vimco", "--k", 3,
                         "--layers", "1,3", "--batch-size", 2, "--updates", 60, "--seed", 7,
                         "--lr", 0.05, "--save", model)
    assert code == 0 and err == "" and "by vimco" in out and "k = 3" in out
    lib = HelmholtzMachine((1, 3, 16), hidden=(), recognition_hidden=(),
                           rng=np.random.default_rng([7, 0]))
    lib.fit(X, method="vimco", n_updates=60, batch_size=2, learning_rate=0.05, k=3,
            record_every=3, rng=np.random.default_rng([7, 1]))
    got = HelmholtzMachine.load(model).params
    assert set(got) == set(lib.params)
    for key in lib.params:
        np.testing.assert_array_equal(got[key], lib.params[key])
    # the history table is the library's objective record
    rows = [ln.split() for ln in out.splitlines() if ln.strip().endswith(tuple("0123456789"))
            and "updates" in ln]
    assert [float(r[2]) for r in rows] == pytest.approx(lib.history_["objective"], abs=5e-7)
    assert_user_error(capsys, "--k", "helmholtz", path, "--method", "vimco", "--k", 1)


def test_help_and_docstring_list_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("demo", "gmm", "vae", "helmholtz", "conformance"):
        assert f"lvmref {cmd} " in text.split("examples:")[1]
        assert f"lvmref {cmd} " in cli.__doc__
    assert "{demo,gmm,vae,helmholtz,conformance}" in " ".join(cli.__doc__.split())
    with pytest.raises(SystemExit):
        cli.main(["helmholtz", "--help"])
    assert "vimco" in capsys.readouterr().out


class _Terminal:
    """A stderr that says it is a terminal and keeps what is written."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("quiet", [False, True])
def test_training_progress_line_on_a_terminal(capsys, monkeypatch, binary, quiet):
    _, _, path = binary
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    q = ("-q",) if quiet else ()
    assert cli.main([str(a) for a in ("vae", path, "--epochs", 3, "--latent", 1, "--hidden",
                                      4, "--iwae-k", 2, *q)]) == 0
    assert cli.main([str(a) for a in ("helmholtz", path, "--layers", "1", "--updates", 40,
                                      *q)]) == 0
    out = capsys.readouterr().out
    if quiet:
        assert term.text == "" and out == ""
        return
    lines = term.text.split("\n")
    # one line per stage, redrawn in place with "\r", ending with the count and the time
    assert len(lines) == 3 and lines[2] == ""
    assert lines[0].startswith("\rtraining") and "3/3 epochs  in " in lines[0]
    assert "train_ELBO" in lines[0]
    assert lines[1].startswith("\rtraining") and "40/40 updates  in " in lines[1]
    assert "ELBO per row by epoch" in out and "mean log w" in out
