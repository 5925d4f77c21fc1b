"""`lvmref demo --quick` end to end (one subprocess run, shared by the tests below)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from lvmref import datasets, demo, plots
from lvmref.vae import VAE


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name} in {path}")

    with open(path) as fh:
        return json.load(fh, parse_constant=no_constants)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lvmref", "demo", "--quick", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    wall = time.perf_counter() - t0   # the subprocess's whole life, interpreter start included
    assert proc.returncode == 0, proc.stderr
    return out, proc, _strict_json(out / "metrics.json"), wall


def _finite_tree(obj, where="metrics"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite_tree(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite_tree(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), where
    else:
        assert obj is not None or where.endswith("max_abs_z_vs_reparam"), where


def test_files_written_and_quiet(quick_run):
    out, proc, m, _ = quick_run
    assert proc.stdout == ""
    assert proc.stderr == ""
    assert (out / "report.md").is_file()
    assert m["mode"] == "quick" and m["seed"] == 0
    report = (out / "report.md").read_text()
    # matplotlib is in the test extra: the figures are always drawn and checked here
    assert 'pip install "lvmref[plot]"' not in report
    assert len(m["figures"]) == 8  # 7 + the Bayesian GMM weight trajectory
    for name in m["figures"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in report
    _finite_tree({k: v for k, v in m.items() if k != "figures"})


def test_gmm_em_is_monotone_and_staircase_holds(quick_run):
    g = quick_run[2]["gmm"]
    ll = np.array(g["log_likelihood_history"])
    e = np.array(g["elbo_after_e_step"])
    mstep = np.array(g["elbo_after_m_step"])
    kl = np.array(g["kl_closed_by_e_step"])
    assert g["reg_covar"] == 0.0 and ll.size == g["n_iter"] >= 3
    # eq. (9) holds exactly for reg_covar = 0; allow only rounding (a few ulps of |l|)
    ulp = 1e-13 * np.abs(ll).max()
    assert np.all(np.diff(ll) >= -ulp)
    # E-step: bound tight (ELBO = log-lik); M-step: ELBO rises at fixed q;
    # next E-step: rises again by KL(q_t || p(z | x, theta_{t+1})) >= 0 (eq. 6)
    np.testing.assert_allclose(e, ll, rtol=0, atol=1e-10)
    assert np.all(mstep - e >= -ulp)
    assert np.all(kl >= 0)
    np.testing.assert_allclose(ll[1:] - mstep[:-1], kl, rtol=0, atol=1e-10)
    assert ll[-1] > ll[0]
    assert g["class_vs_functions_max_abs_diff"] < 1e-10
    # BIC from its definition, eq. (22): p = (K-1) + K d + K d(d+1)/2 for full, d = 2
    p = 2 + 3 * 2 + 3 * 3
    n = g["n_samples"]
    assert g["n_parameters"] == p
    assert g["bic"] == pytest.approx(-2 * g["final_log_likelihood_per_point"] * n
                                     + p * math.log(n), rel=1e-12)
    # the generating mixture has 3 components: BIC over K is smallest at K = 3
    best = min(g["bic_by_k"], key=lambda r: r["bic"])
    assert best["k"] == 3


def test_vbgmm_stage(quick_run):
    vb = quick_run[2]["gmm"]["vbgmm"]
    lb = np.array(vb["lower_bounds"])
    # reg_covar = 0: every update is an exact coordinate-ascent step, bound monotone
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb).max())
    assert sum(vb["weights"]) == pytest.approx(1.0, abs=1e-12)
    # the weight trajectory: one row per iteration, each a distribution; the
    # warm-started one-iteration fits repeat the single fit (same iterations, same end)
    traj = np.array(vb["weights_history"])
    assert traj.shape == (vb["n_iter"], vb["n_components"])
    np.testing.assert_allclose(traj.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj[-1], vb["weights"], rtol=1e-10, atol=1e-14)
    assert vb["stepwise_vs_single_fit_max_abs_diff"] <= 1e-10 * np.abs(lb).max()


def test_bic_table_refit_agrees_with_the_explicit_run(quick_run):
    """The K = 3 row of the BIC table is a second fit of the same model (other starts,
    reg_covar = 1e-6): on this well-separated mixture both reach the same optimum, and the
    report states the difference it measured."""
    out, _, m, _ = quick_run
    g = m["gmm"]
    row = next(r for r in g["bic_by_k"] if r["k"] == 3)
    assert row["converged"]
    assert abs(row["bic"] - g["bic"]) < 1e-8 * abs(g["bic"])
    assert f"{abs(row['bic'] - g['bic']):.2g}" in (out / "report.md").read_text()


def test_total_time_includes_the_figures(quick_run):
    """The clocks nest: each stage's own timer <= the stages' span (stage_seconds) <= that
    span plus the figures (total_seconds) <= the subprocess's wall time, measured here."""
    out, _, m, wall = quick_run
    own = [m["gmm"]["seconds"], m["gmm"]["vbgmm"]["seconds"], m["bars"]["seconds"],
           m["vae"]["seconds"], m["gradient_variance"]["seconds"],
           m["estimator_snr"]["seconds"]]
    assert sum(own) <= m["stage_seconds"] <= m["total_seconds"] < wall
    report = (out / "report.md").read_text()
    assert f"total {m['total_seconds']:.1f} s" in report


def test_stage_progress_is_one_final_line_in_a_log(capsys):
    """Not a terminal (pytest captures): each progress line is written once, at its end."""
    X, _ = datasets.gmm_demo_data(200, 0)
    demo.run_vbgmm(X, np.random.default_rng(1), n_components=3, quiet=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("  Bayesian GMM:")
    assert " iterations  in " in lines[0] and "components keep > 1 % weight" in lines[0]
    demo.run_vbgmm(X, np.random.default_rng(1), n_components=3, quiet=True)
    assert capsys.readouterr().out == ""


def test_fitted_mixture_recovers_generating_means(quick_run):
    fitted = np.array(quick_run[2]["gmm"]["fitted"]["means"])
    true = datasets.GMM_TRUE["means"]
    # each true mean has a fitted mean within 0.5 (component sd >= 0.7, n >= 120 each:
    # the sampling error of a mean is < 0.15 per coordinate)
    d = np.linalg.norm(true[:, None, :] - fitted[None, :, :], axis=2)
    assert np.all(d.min(axis=1) < 0.5)


def test_bars_metrics(quick_run):
    b = quick_run[2]["bars"]
    kl = np.array(b["kl_bits_history"])
    assert np.all(kl >= 0)
    assert b["kl_bits_final"] < b["kl_bits_initial"]
    assert b["kl_bits_initial"] == kl[0] and b["kl_bits_final"] == kl[-1]
    # from the definitions: E_data log p_model(x) = -(H(data) + KL(data || model)) ln 2,
    # with KL (bits) from kl_data_model and log p from exact_log_marginal separately
    assert b["expected_log_likelihood_nats"] == pytest.approx(
        -(b["data_entropy_bits"] + b["kl_bits_final"]) * math.log(2.0), rel=1e-9)
    # ELBO <= log p(x) for every x, hence in expectation over the data
    assert b["expected_elbo_nats"] <= b["expected_log_likelihood_nats"]
    assert b["updates"][-1] == b["n_updates"]
    assert b["kl_bits_final_all_runs"][0] == b["kl_bits_final"]
    assert len(b["kl_bits_final_all_runs"]) == b["n_runs"] == len(b["other_runs"]) + 1


def test_vae_and_gradient_variance_metrics(quick_run):
    m = quick_run[2]
    v = m["vae"]
    # Bernoulli ELBO = E_q log p(x|z) - KL <= 0 exactly (both terms are <= 0)
    assert v["test_elbo"] < 0 and v["latent2"]["test_elbo"] < 0
    assert all(e < 0 for e in v["train_elbo_history"] + v["test_elbo_history"])
    assert len(v["test_elbo_history"]) == v["n_epochs"]
    # training moves the test ELBO up from the first epoch
    assert v["test_elbo_history"][-1] > v["test_elbo_history"][0]
    rows = m["gradient_variance"]["rows"]
    assert rows[0]["estimator"] == "reparameterization" and rows[0]["ratio_to_reparam_s1"] == 1
    for r in rows:  # the ratio column is what its name says (JSON keeps floats exactly)
        assert r["ratio_to_reparam_s1"] == r["total_variance"] / rows[0]["total_variance"]


def test_gradient_variance_falls_as_one_over_samples_per_row():
    """Averaging S i.i.d. per-sample gradients divides the variance by S exactly, for the
    reparameterisation and the baseline-free REINFORCE estimators (the KL part (5) is
    deterministic), and each row's total is an unbiased (ddof=1) estimate: so
    E[8 var(S=8) - var(S=1)] = 0. Monte Carlo over independent repeats of
    run_gradient_variance on a small VAE, with the repeats' standard error and a z-bound."""
    rng = np.random.default_rng(11)
    vae = VAE(10, 2, hidden=(6,))
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in vae.init_params(rng).items()}
    x = (rng.random((4, 10)) < 0.4).astype(float)
    d = []
    for r in rng.spawn(20):
        rows = demo.run_gradient_variance(vae, params, x, r, n_draws=10)["rows"]
        v = {(row["estimator"], row["samples_per_row"]): row["total_variance"] for row in rows}
        d.append([8 * v[(name, 8)] - v[(name, 1)]
                  for name in ("reparameterization", "REINFORCE, no baseline")])
    d = np.asarray(d)
    z = d.mean(axis=0) / (d.std(axis=0, ddof=1) / math.sqrt(len(d)))
    assert np.all(np.abs(z) < 4.0), z


def test_estimator_snr_stage(quick_run):
    """Every estimator at every k has SNRs (the decoder's positive); at k = 1 the IWAE
    estimate is the one-sample ELBO (7b), so on the same noise IWAE-reparam has exactly the
    SNRs of the reparameterisation gradient and DReG those of STL (vae.py, eq. 16 vs 9b,
    18 vs 19)."""
    s = quick_run[2]["estimator_snr"]
    names = {r["estimator"] for r in s["rows"]}
    assert len(s["rows"]) == len(names) * len(s["ks"]) and s["ks"][0] == 1
    # at every k, on the same noise, STL's decoder gradient is that of the ELBO
    # reparameterisation gradient (19 vs 9b) and DReG's that of IWAE-reparam (18 vs 16)
    for k in s["ks"]:
        at = {r["estimator"]: r for r in s["rows"] if r["k"] == k}
        for a, b in (("ELBO, STL (19)", "ELBO, reparameterisation (9)"),
                     ("IWAE L_k, DReG (18)", "IWAE L_k, reparameterisation (16)")):
            assert at[a]["snr_decoder"] == pytest.approx(at[b]["snr_decoder"], rel=1e-9)
    at1 = {r["estimator"]: r for r in s["rows"] if r["k"] == 1}
    for a, b in (("IWAE L_k, reparameterisation (16)", "ELBO, reparameterisation (9)"),
                 ("IWAE L_k, DReG (18)", "ELBO, STL (19)")):
        for key in ("snr_encoder", "snr_decoder"):
            assert at1[a][key] == pytest.approx(at1[b][key], rel=1e-9)


def test_gradient_snr_against_its_normal_theory_expectation():
    """gradient_snr's SNR^2 estimate (mean / sd)^2 - 1/m on m normal draws: x-bar and s^2
    are independent, E[x-bar^2] = mu^2 + sigma^2 / m and E[1/s^2] = (m-1) / ((m-3) sigma^2),
    so E[estimate] = (SNR^2 + 1/m)(m-1)/(m-3) - 1/m exactly. The squared RMS summary
    (never clipped here: every SNR >= 0.5) averaged over repeats must match the mean of
    that over the coordinates, within a z-bound on the repeats' standard error."""
    rng = np.random.default_rng(5)
    m, P, R = 20, 40, 400
    mu, sd = rng.uniform(0.5, 2.0, P) * rng.choice([-1.0, 1.0], P), rng.uniform(0.5, 3.0, P)
    mu = mu * sd                                      # SNR_j = |mu_j| / sd_j in [0.5, 2]
    snr2 = (mu / sd) ** 2
    want = float(np.mean((snr2 + 1.0 / m) * (m - 1) / (m - 3) - 1.0 / m))
    group = {"all": np.ones(P, dtype=bool)}
    got = np.array([demo.gradient_snr(mu + sd * rng.standard_normal((m, P)), group)["all"]["rms"]
                    for _ in range(R)]) ** 2
    assert abs(got.mean() - want) < 4.0 * got.std(ddof=1) / math.sqrt(R)


def test_report_without_matplotlib_says_how_to_get_it(quick_run, tmp_path, monkeypatch):
    m = quick_run[2]
    demo.write_report(tmp_path / "r.md", m, {}, "matplotlib is not installed")
    text = (tmp_path / "r.md").read_text()
    assert 'pip install "lvmref[plot]"' in text and "pip install matplotlib" in text
    assert "![" not in text
    # the ImportError's own message already carries the install hint: not repeated
    with pytest.raises(ImportError) as err:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        plots._pyplot()
    demo.write_report(tmp_path / "r2.md", m, {}, str(err.value))
    assert (tmp_path / "r2.md").read_text().count('pip install "lvmref[plot]"') == 1


def test_plots_import_error_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"lvmref\[plot\]"):
        plots._pyplot()


def test_gmm_demo_data_is_seeded():
    a, la = datasets.gmm_demo_data(50, 3)
    b, lb = datasets.gmm_demo_data(50, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    with pytest.raises(ValueError, match="n"):
        datasets.gmm_demo_data(0)


def test_run_demo_rejects_file_as_out(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out"):
        demo.run_demo(f, quick=True, quiet=True)
    with pytest.raises(ValueError, match="seed"):
        demo.run_demo(tmp_path / "d", quick=True, seed=-1, quiet=True)
