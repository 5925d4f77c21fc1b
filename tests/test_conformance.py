"""The conformance kit: vectors are written as documented, are what lvmref computes, and
the checker fails on every kind of mismatch (missing key, wrong shape, a finite entry off
by more than the tolerance, a non-finite entry not reproduced) and passes otherwise; the
``lvmref conformance`` command follows the CLI conventions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lvmref import __version__, cli
from lvmref import conformance as C
from lvmref import helmholtz as H
from lvmref import vae as V


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    d = tmp_path_factory.mktemp("vectors")
    C.write(d)
    manifest, inputs, expected = C.read(d)
    return d, manifest, inputs, expected


def _params(inputs, case, prefix="params"):
    head = f"{case}/{prefix}/"
    return {k[len(head):]: v for k, v in inputs.items() if k.startswith(head)}


def test_manifest_describes_every_array(vectors):
    d, manifest, inputs, expected = vectors
    assert manifest["format"] == "lvmref-conformance" and manifest["format_version"] == 1
    assert manifest["lvmref_version"] == __version__
    assert set(manifest["layouts"]) == {"gmm", "vbgmm", "estimators", "helmholtz", "vae"}
    names = [c["name"] for c in manifest["cases"]]
    assert len(names) == len(set(names)) and not any("/" in n for n in names)
    listed_in, listed_out = set(), set()
    for c in manifest["cases"]:
        assert c["model"] in manifest["layouts"] and c["function"].startswith("lvmref.")
        for part, store, listed in (("inputs", inputs, listed_in),
                                    ("outputs", expected, listed_out)):
            for q, e in c[part].items():
                assert e["key"] == f"{c['name']}/{q}"
                assert list(store[e["key"]].shape) == e["shape"]
                assert e["meaning"] and e["layout"]
                listed.add(e["key"])
                if part == "outputs":
                    assert 0 < e["tolerance"] <= 1e-4
                    if e["tolerance"] != C.DEFAULT_TOLERANCE:
                        assert e["reason"]
        assert store[e["key"]].dtype == np.float64
    assert listed_in == set(inputs) and listed_out == set(expected)
    # every model, and every estimator the issue names, has cases
    for prefix in ("gmm.e_step.", "gmm.m_step.", "gmm.elbo.", "vbgmm.update.",
                   "estimators.", "helmholtz.densities_grads.", "helmholtz.rws.",
                   "helmholtz.vimco.", "helmholtz.reinforce.", "helmholtz.sgd_update.",
                   "vae.elbo.", "vae.reparam.", "vae.reinforce_loo.", "vae.stl.",
                   "vae.iwae_reparam.", "vae.iwae_dreg.", "vae.adam_step"):
        assert any(n.startswith(prefix) for n in names), prefix


def test_hard_cases_are_hard(vectors):
    _, manifest, inputs, expected = vectors
    hard = {c["name"]: c["hard"] for c in manifest["cases"] if c["hard"]}
    assert any("near-singular" in h for h in hard.values())
    # -inf log weights in, -inf / nan out
    lw = inputs["estimators.from_log_weights/log_w"]
    assert np.isneginf(lw).any() and np.isneginf(lw).all(axis=1).any()
    assert np.isneginf(expected["estimators.from_log_weights/log_marginal/value"]).any()
    assert np.isnan(expected["estimators.from_log_weights/elbo/stderr"]).any()
    # decoder logits of the VAE hard case: |l| >= 38 for every output unit
    case = "vae.iwae_dreg.bernoulli.logits40"
    p, eps = _params(inputs, case), inputs[f"{case}/eps"]
    vae = V.VAE(5, 3, hidden=(4,))
    mean, log_var = vae.encode(inputs[f"{case}/x"], p)
    z = (mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps).reshape(-1, 3)
    assert np.abs(vae.decode(z, p, raw=True)).min() >= 37.0
    # collapsed unit: mean 0 and log_var 0 for every row
    case = "vae.stl.bernoulli.collapsed"
    mean, log_var = vae.encode(inputs[f"{case}/x"], _params(inputs, case))
    assert np.all(mean[:, 0] == 0.0) and np.all(log_var[:, 0] == 0.0)
    # Helmholtz: every logit on the path of (x, z) has |a| >= 36
    case = "helmholtz.densities_grads.sbn.logits40"
    arch = H.Architecture((2, 3, 6))
    p, x, z = _params(inputs, case), inputs[f"{case}/x"], inputs[f"{case}/z"]
    assert np.abs(p["prior"]).min() >= 36.0
    assert np.abs(arch.gen(0).forward(p, z[:, :2])[0]).min() >= 36.0
    assert np.abs(arch.rec(1).forward(p, x)[0]).min() >= 36.0


def test_vae_params_regimes():
    """The public weight maker behind the VAE cases and the PyTorch-twin scripts: scale 0
    is the initialisation itself; "collapsed" gives mean 0 / log_var 0 for unit 0 and a
    decoder blind to z_0; "logits40" puts every decoder logit within the bound
    38 - sum_i |W_ij| <= |l_j| <= 40 + sum_i |W_ij| (|tanh| <= 1 on the last hidden layer)."""
    vae = V.VAE(6, 3, hidden=(5,))
    init = vae.init_params(np.random.default_rng(3))
    for key, a in C.vae_params(vae, 3, scale=0.0).items():
        np.testing.assert_array_equal(a, init[key])
    rng = np.random.default_rng(4)
    x, z = (rng.random((7, 6)) < 0.5).astype(float), rng.normal(size=(7, 3))
    p = C.vae_params(vae, rng, hard="collapsed", scale=0.3)
    mean, log_var = vae.encode(x, p)
    assert np.all(mean[:, 0] == 0.0) and np.all(log_var[:, 0] == 0.0)
    assert not np.any(mean[:, 1:] == 0.0)
    z2 = z.copy()
    z2[:, 0] += 5.0
    np.testing.assert_array_equal(vae.decode(z2, p, raw=True), vae.decode(z, p, raw=True))
    p = C.vae_params(vae, rng, hard="logits40", scale=0.3)
    logits = vae.decode(z, p, raw=True)
    spread = np.abs(p["dec.W1"]).sum(0)
    assert np.all(np.abs(logits) >= 38.0 - spread) and np.all(np.abs(logits) <= 40.0 + spread)
    assert spread.max() < 0.1          # so the logits really are near +-(38..40)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"vae": "vae"}, TypeError, "vae must be"),
    ({"rng": 1.5}, TypeError, "rng"),
    ({"hard": "easy"}, ValueError, "hard must be one of"),
    ({"scale": -1.0}, ValueError, "scale"),
    ({"scale": np.nan}, ValueError, "scale"),
    ({"vae": V.VAE(6, 3, likelihood="gaussian"), "hard": "logits40"}, ValueError, "hard="),
])
def test_vae_params_bad_input(kwargs, exc, match):
    args = {"vae": V.VAE(6, 3), "rng": 0, **kwargs}
    with pytest.raises(exc, match=match):
        C.vae_params(args.pop("vae"), args.pop("rng"), **args)


def test_vectors_are_what_lvmref_computes(vectors):
    """Recompute a few cases from the stored inputs (the files hold everything needed)."""
    _, manifest, inputs, expected = vectors
    case = "vae.iwae_dreg.gaussian.random"
    vae = V.VAE(5, 3, hidden=(), likelihood="gaussian")
    value, g = vae.iwae_grad(_params(inputs, case), inputs[f"{case}/x"],
                             inputs[f"{case}/eps"], estimator="dreg")
    assert value == expected[f"{case}/value"]
    for k, a in g.items():
        np.testing.assert_array_equal(a, expected[f"{case}/grads/{k}"])
    case = "helmholtz.vimco.mlp.random"
    arch = H.Architecture((2, 5), hidden=(4,), recognition_hidden=(3,))
    g, log_px = H.vimco_grads(_params(inputs, case), inputs[f"{case}/x"],
                              inputs[f"{case}/z"], arch)
    np.testing.assert_array_equal(log_px, expected[f"{case}/log_px"])
    for k, a in g.items():
        np.testing.assert_array_equal(a, expected[f"{case}/grads/{k}"])


def test_write_is_deterministic(vectors, tmp_path):
    d, manifest, _, expected = vectors
    again = C.write(tmp_path)
    assert again == json.loads((d / "manifest.json").read_text())
    _, _, expected2 = C.read(tmp_path)
    for k in expected:
        np.testing.assert_array_equal(expected[k], expected2[k])


def test_check_passes_on_the_expected_outputs_and_fails_on_each_kind_of_mismatch(vectors):
    d, manifest, _, expected = vectors
    rows = C.check(d, dict(expected))
    assert len(rows) == len(expected) and all(r.passed for r in rows)
    assert all(r.error == 0.0 for r in rows)
    key = "vae.stl.gaussian.random/grads/enc.W0"
    case, quantity = key.split("/", 1)
    scale = np.max(np.abs(expected[key]))

    def rows_for(change):
        res = dict(expected)
        change(res)
        return {(r.case, r.quantity): r for r in C.check(d, res, [case])}

    # within tolerance (normwise): pass; beyond: fail
    for delta, ok in ((0.5e-10, True), (2e-10, False)):
        def bump(res, delta=delta):
            a = res[key].copy()
            a.flat[0] += delta * scale
            res[key] = a
        r = rows_for(bump)[(case, quantity)]
        assert r.passed is ok and r.error == pytest.approx(delta, rel=1e-3)
    r = rows_for(lambda res: res.pop(key))[(case, quantity)]
    assert not r.passed and key in r.note and "missing" in r.note
    r = rows_for(lambda res: res.__setitem__(key, expected[key].T))[(case, quantity)]
    assert not r.passed and key in r.note and "shape" in r.note
    r = rows_for(lambda res: res.__setitem__(key, np.full_like(expected[key], np.nan)))
    assert not r[(case, quantity)].passed
    # a complex result fails, whatever its real part (it used to pass by it, silently)
    r = rows_for(lambda res: res.__setitem__(key, expected[key] + 1e-3j))[(case, quantity)]
    assert not r.passed and key in r.note and "complex" in r.note
    # non-finite expected entries must be reproduced
    est = "estimators.from_log_weights"
    for q in ("log_marginal/value", "elbo/stderr"):
        e = expected[f"{est}/{q}"]
        bad = ~np.isfinite(e)
        assert bad.any()
        res = dict(expected)
        res[f"{est}/{q}"] = np.where(bad, 0.0, e)
        r = {x.quantity: x for x in C.check(d, res, [est])}[q]
        assert not r.passed and "non-finite" in r.note
    # a quantity whose expected entries are all zero is compared absolutely
    err, ok, note = C.compare(np.array([1e-11, 0.0]), np.zeros(2), 1e-10)
    assert ok and err == 1e-11 and "absolute" in note
    assert not C.compare(np.array([1e-9, 0.0]), np.zeros(2), 1e-10)[1]


def test_table_lists_every_row_and_summarises():
    rows = [C.CheckRow("a.b", "value", 0.0, 1e-10, True),
            C.CheckRow("a.b", "grads/W", np.inf, 1e-10, False, "missing output a.b/grads/W")]
    text = C.format_table(rows).splitlines()
    assert text[0].split() == ["case", "quantity", "max", "rel", "error", "tolerance",
                               "result"]
    assert "pass" in text[1] and "FAIL" in text[2] and "missing output a.b/grads/W" in text[2]
    assert text[-1] == "1 of 2 outputs FAIL"
    assert C.format_table(rows[:1]).splitlines()[-1] == "all 1 outputs pass"


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_write_and_check(capsys, vectors, tmp_path):
    d, _, _, expected = vectors
    code, out, _ = _run(capsys, "conformance", "write", tmp_path / "v")
    assert code == 0 and out.startswith("wrote ") and "cases" in out
    assert (tmp_path / "v" / "manifest.json").is_file()
    res = dict(expected)
    np.savez(tmp_path / "ok.npz", **res)
    code, out, _ = _run(capsys, "conformance", "check", d, tmp_path / "ok.npz")
    assert code == 0 and out.strip().splitlines()[-1].startswith("all ")
    code, out, _ = _run(capsys, "conformance", "check", d, tmp_path / "ok.npz",
                        "--cases", "vae.stl.*", "--cases", "helmholtz.vimco.*")
    assert code == 0
    assert all(line.startswith(("case", "vae.stl.", "helmholtz.vimco.", "all "))
               for line in out.strip().splitlines())
    res.pop("helmholtz.vimco.sbn.random/log_px")
    np.savez(tmp_path / "bad.npz", **res)
    code, out, _ = _run(capsys, "conformance", "check", d, tmp_path / "bad.npz")
    assert code == 1 and "missing output helmholtz.vimco.sbn.random/log_px" in out
    assert out.strip().splitlines()[-1] == f"1 of {len(expected)} outputs FAIL"
    code, out, _ = _run(capsys, "conformance", "check", d, tmp_path / "bad.npz", "-q")
    assert code == 1 and out == ""


def _user_error(capsys, match, *argv):
    code, out, err = _run(capsys, *argv)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvmref: error: ") and match in lines[0]


def test_cli_errors_are_one_line_exit_2(capsys, vectors, tmp_path):
    d, _, _, expected = vectors
    np.savez(tmp_path / "ok.npz", **expected)
    _user_error(capsys, "needs DIR and RESULTS.npz", "conformance", "check", d)
    _user_error(capsys, "manifest not found", "conformance", "check", tmp_path / "no",
                tmp_path / "ok.npz")
    _user_error(capsys, "results file not found", "conformance", "check", d,
                tmp_path / "none.npz")
    _user_error(capsys, "matches no case", "conformance", "check", d, tmp_path / "ok.npz",
                "--cases", "gmm.nothing*")
    _user_error(capsys, "takes only DIR", "conformance", "write", tmp_path / "w",
                tmp_path / "ok.npz")
    with pytest.raises(SystemExit) as exc:  # argparse usage errors: exit 2, one line
        cli.main(["conformance", "verify", str(d)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvmref: error: ") and "invalid choice" in err[0]
    (tmp_path / "file").write_text("x")
    _user_error(capsys, "must be a directory", "conformance", "write", tmp_path / "file")
    (tmp_path / "notnpz.npz").write_text("not a zip")
    _user_error(capsys, "not a readable .npz", "conformance", "check", d,
                tmp_path / "notnpz.npz")
    bad = tmp_path / "badman"
    bad.mkdir()
    (bad / "manifest.json").write_text("{")
    _user_error(capsys, "not valid JSON", "conformance", "check", bad, tmp_path / "ok.npz")
    (bad / "manifest.json").write_text(json.dumps({"format": "other"}))
    _user_error(capsys, "not an lvmref-conformance manifest", "conformance", "check", bad,
                tmp_path / "ok.npz")
    m = json.loads((d / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**m, "format_version": 99}))
    _user_error(capsys, "format version 99", "conformance", "check", bad, tmp_path / "ok.npz")
    # a manifest missing what check() reads: a one-line error naming the field, not an
    # "internal error" KeyError
    case0 = m["cases"][0]
    q0 = next(iter(case0["outputs"]))
    broken = {
        "'files'": {k: v for k, v in m.items() if k != "files"},
        "'cases'": {**m, "cases": {}},
        "'outputs'": {**m, "cases": [{k: v for k, v in case0.items() if k != "outputs"}]},
        "'key'": {**m, "cases": [{**case0, "inputs": {"x": {}}}]},
        "'tolerance'": {**m, "cases": [{**case0, "outputs": {
            q0: {**case0["outputs"][q0], "tolerance": "tight"}}}]},
    }
    for field, manifest in broken.items():
        (bad / "manifest.json").write_text(json.dumps(manifest))
        _user_error(capsys, field, "conformance", "check", bad, tmp_path / "ok.npz")
        with pytest.raises(ValueError, match="not a valid lvmref-conformance manifest"):
            C.read(bad)


def test_worked_pytorch_example_passes(vectors, capfd):
    """validation/conformance_torch.py -- a hand-written PyTorch VAE and Helmholtz machine
    that read the vectors -- passes ``lvmref conformance check`` on every vae.* and
    helmholtz.* case."""
    import importlib.util
    from pathlib import Path

    import torch  # noqa: F401  (test extra: the worked example needs it)

    path = Path(__file__).resolve().parents[1] / "validation" / "conformance_torch.py"
    spec = importlib.util.spec_from_file_location("conformance_torch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d, manifest, _, expected = vectors
    assert mod.main([str(d)]) == 0
    out = capfd.readouterr().out.strip().splitlines()
    n = sum(len(c["outputs"]) for c in manifest["cases"]
            if c["model"] in ("vae", "helmholtz"))
    assert out[-1] == f"all {n} outputs pass"
