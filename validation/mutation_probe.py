"""Mutation probe: can the test suite fail at the level our users rely on (~1e-10)?

A curated list of small deliberate bugs (wrong constants, dropped terms, swapped signs,
off-by-one, wrong special-value branch, 1e-8 relative gradient errors), in the Python
modules and in the Numba kernels. Each mutant is applied alone to a temporary copy of the
repository, and only the test files mapped to it are run (``pytest -x``). A mutant is
*killed* when a test fails (or the copy no longer imports), *survives* when every test
passes. Mutants listed with ``equivalent=`` are argued to compute the same numbers (the
reason is printed); they are run anyway and reported apart.

Numba caches: the copy always lives at the same temporary path and each mutant gets its
own ``NUMBA_CACHE_DIR``, seeded from a cache warmed on the *unmutated* copy. Numba keys
an entry on the source file's path, modification time and size: unmutated files (copied
with their times) hit the warm cache, the mutated file has a new time and recompiles, so a
stale compiled kernel can never hide a mutant.

    python validation/mutation_probe.py                 # every mutant
    python validation/mutation_probe.py issue21 vb-     # ids starting with these prefixes
    python validation/mutation_probe.py --list          # the list, nothing run
    python validation/mutation_probe.py --check         # each `old` occurs exactly once

Prints one line per mutant (fate, seconds, the first failing test), then the kill rate
and the total run time; exits 1 when a non-equivalent mutant survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str          # path in the repository
    old: str           # exact text, must occur exactly once
    new: str
    tests: tuple       # test files (or node ids) that must kill it
    what: str          # the kind of bug
    equivalent: str = ""  # non-empty: why the mutant computes the same numbers


M = Mutant
T_LSE = ("tests/kernels/test_lse.py",)
T_DENS = ("tests/kernels/test_densities.py",)
T_FAST = ("tests/kernels/test_fastexp.py",)
T_VAE = ("tests/test_vae.py", "tests/test_vae_autograd.py", "tests/kernels/test_vae.py")
T_VB = ("tests/test_vbgmm.py",)
T_GMM = ("tests/test_gmm.py", "tests/kernels/test_gmm.py")
T_HM = ("tests/test_helmholtz.py", "tests/test_helmholtz_autograd.py")
T_EST = ("tests/test_estimators.py", "tests/test_helmholtz.py")

MUTANTS = [
    # ---- the bugs named in issue 21 (those the 0.2.0 suite missed)
    M("issue21-reparam-2d", "lvmref/vae.py",
      "        return mean + np.exp(0.5 * log_var) * eps",
      "        return mean + np.exp(log_var) * eps",
      ("tests/test_vae.py",), "sampler uses exp(log_var) as the sd in the 2-D branch"),
    M("issue21-lse-long-row-special", "kernels/lse.py",
      "    if not (-np.inf < mx < np.inf):\n        mx_out[i] = _row_special_nb(a, i, mx)\n"
      "        s_out[i] = 0.0\n        return",
      "    if not (-np.inf < mx < np.inf):\n        mx_out[i] = mx\n"
      "        s_out[i] = 0.0\n        return",
      T_LSE, "long-row path returns +inf for a row holding +inf and NaN (SciPy: NaN)"),
    M("issue21-check-grad-step", "lvmref/testing.py",
      "_EPS ** (1.0 / 5.0) if richardson else _EPS ** (1.0 / 3.0)",
      "_EPS ** (1.0 / 5.0) if richardson else _EPS ** (1.0 / 2.0)",
      ("tests/test_testing.py",), "gradient checker step eps^(1/2) instead of eps^(1/3)"),
    M("issue21-reinforce-logvar-1e-8", "lvmref/vae.py",
      "    g_lv = np.sum(w[:, :, None] * score_lv, axis=1)\n",
      "    g_lv = np.sum(w[:, :, None] * score_lv, axis=1) * (1 + 1e-8)\n",
      ("tests/test_vae_autograd.py", "tests/test_vae.py"),
      "REINFORCE log-variance gradient scaled by 1 + 1e-8"),
    M("issue21-dirichlet-kl-constant", "lvmref/vbgmm.py",
      "        + np.sum((alpha - alpha0) * log_w)\n    )",
      "        + np.sum((alpha - alpha0) * log_w) + 0.01 * (alpha.size - 1)\n    )",
      T_VB, "0.01 (K - 1) nats added to the Dirichlet KL (vanishes at K = 1)"),
    M("issue21-stick-kl-constant", "lvmref/vbgmm.py",
      "        + (g2 - alpha0) * (digamma(g2) - dig_sum)\n    )",
      "        + (g2 - alpha0) * (digamma(g2) - dig_sum)\n        + 0.005\n    )",
      T_VB, "0.005 nats per stick added to the stick-breaking KL"),
    # ---- log-sum-exp kernels
    M("lse-ties-off-by-one", "kernels/lse.py",
      "            s_out[i] = _sum4_nb(buf, k, m) + (n0 - 1)",
      "            s_out[i] = _sum4_nb(buf, k, m) + n0",
      T_LSE, "off-by-one in the count of tied maxima (row block path)"),
    M("lse-short-ties-off-by-one", "kernels/lse.py",
      "log1p_nonneg_nb(sb[r] + (n0b[r] - 1.0))",
      "log1p_nonneg_nb(sb[r] + n0b[r])",
      T_LSE, "off-by-one in the count of tied maxima (short-row path)"),
    M("lse-long-row-ties", "kernels/lse.py",
      "    s_out[i] = log1p_nonneg_nb(s + (n0 - 1))",
      "    s_out[i] = log1p_nonneg_nb(s + (n0 - 2))",
      T_LSE, "off-by-one in the long-row tie count"),
    M("lse-sum4-loop-bound", "kernels/lse.py",
      "    while k + 4 <= end:\n        s0 += buf[k]",
      "    while k + 4 < end:\n        s0 += buf[k]",
      T_LSE, "off-by-one in the unrolled summation loop",
      equivalent="the scalar tail loop adds the last group of 4 instead: the same terms "
                 "in another order, a rounding-level change inside the derived bound"),
    M("lse-np-nan-branch", "kernels/lse.py",
      "    mx = np.where(np.isnan(a2).any(axis=1), np.nan, mx)",
      "    mx = np.where(np.isinf(a2).any(axis=1), np.nan, mx)",
      T_LSE, "twin: wrong special-value test (inf for NaN)"),
    # ---- densities
    M("dens-softplus-log1p", "kernels/densities.py",
      "    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))",
      "    return np.maximum(x, 0.0) + np.log(1.0 + np.exp(-np.abs(x)))",
      T_DENS, "softplus via log(1 + e) (loses e^-40 = 4e-18 entirely)"),
    M("dens-normal-sign", "kernels/densities.py",
      "    lp = -0.5 * ((LOG_2PI + log_var) + quad)",
      "    lp = -0.5 * ((LOG_2PI - log_var) + quad)",
      T_DENS, "swapped sign of log_var in the Gaussian log density (twin)"),
    M("dens-normal-nb-const", "kernels/densities.py",
      "    return -0.5 * ((LOG_2PI + lv) + quad)",
      "    return -0.5 * ((1.8378770664 + lv) + quad)",
      T_DENS, "log 2 pi truncated to 11 digits in the Numba kernel (error 9e-12)"),
    M("dens-kl-1e-9", "kernels/densities.py",
      "        return 0.5 * np.sum(expm1_minus_x_np(log_var) + mean * mean, axis=-1)",
      "        return 0.5 * np.sum(expm1_minus_x_np(log_var) + mean * mean, axis=-1) "
      "* (1 + 1e-9)",
      T_DENS, "KL(q || N(0, I)) off by 1e-9 relative"),
    # ---- VAE
    M("vae-klgrad-nb-1e-8", "kernels/vae.py",
      "            gv = (g_z[i, j] * eps[i, j]) * (0.5 * std[i, j]) - half * em",
      "            gv = (g_z[i, j] * eps[i, j]) * (0.5 * std[i, j]) * (1 + 1e-8) - half * em",
      T_VAE + ("tests/test_vae_training.py",),
      "Numba kernel: 1e-8 relative error in the pathwise log-variance gradient"),
    M("vae-klgrad-np-sign", "kernels/vae.py",
      "    np.subtract(g_z, scale * mean, out=g_mean)",
      "    np.add(g_z, scale * mean, out=g_mean)",
      T_VAE + ("tests/test_vae_training.py",), "twin: KL gradient with the wrong sign"),
    M("vae-tanh-backward-nb", "kernels/vae.py",
      "            delta[i, j] = delta[i, j] - delta[i, j] * (hij * hij)",
      "            delta[i, j] = delta[i, j] - delta[i, j] * hij",
      T_VAE + ("tests/test_vae_training.py",), "Numba kernel: tanh' = 1 - h instead of 1 - h^2"),
    M("vae-reinforce-kl-sign", "lvmref/vae.py",
      "        g_lv -= d_log_var / n",
      "        g_lv += d_log_var / n",
      T_VAE, "REINFORCE: analytic-KL gradient added instead of subtracted"),
    M("vae-mc-kl-drop-2pi", "lvmref/vae.py",
      "        log_qz = -0.5 * np.sum(LOG_2PI + log_var[:, None, :] + eps3 * eps3, axis=2)",
      "        log_qz = -0.5 * np.sum(log_var[:, None, :] + eps3 * eps3, axis=2)",
      T_VAE, "dropped constant: log 2 pi missing from log q in the MC-KL ELBO (7b)"),
    # ---- gradient checker
    M("testing-richardson-step", "lvmref/testing.py",
      "_EPS ** (1.0 / 5.0) if richardson else",
      "_EPS ** (1.0 / 4.0) if richardson else",
      ("tests/test_testing.py",), "Richardson step eps^(1/4) instead of eps^(1/5)"),
    # ---- Bayesian GMM
    M("vb-gw-beta-vs-beta0", "lvmref/vbgmm.py",
      "    kl_gauss = 0.5 * d * (ratio - 1.0 - np.log(ratio)) + 0.5 * beta0 * maha",
      "    kl_gauss = 0.5 * d * (ratio - 1.0 - np.log(ratio)) + 0.5 * beta * maha",
      T_VB, "Gauss-Wishart KL with beta_k for beta0"),
    M("vb-gw-1e-9-nat", "lvmref/vbgmm.py",
      "        + 0.5 * (trace - dof_k * d)\n",
      "        + 0.5 * (trace - dof_k * d) + 1e-9\n",
      T_VB, "1e-9 nats added to each Gauss-Wishart KL term"),
    M("vb-elogdet-off-by-one", "lvmref/vbgmm.py",
      "digamma(0.5 * (np.asarray(dof)[..., None] - np.arange(d)))",
      "digamma(0.5 * (np.asarray(dof)[..., None] + 1 - np.arange(d)))",
      T_VB, "off-by-one in E[ln|Lambda|] (9): psi((nu + 2 - i)/2)"),
    M("vb-dof-misprint", "lvmref/vbgmm.py",
      "        dof = prior[\"degrees_of_freedom_prior\"] + nk  # (18)",
      "        dof = prior[\"degrees_of_freedom_prior\"] + nk + 1  # (18)",
      T_VB, "the B10.63 misprint nu_k = nu0 + N_k + 1"),
    M("vb-stick-alpha", "lvmref/vbgmm.py",
      "        alpha = np.stack((1.0 + nk, alpha0 + tail))  # (14')",
      "        alpha = np.stack((alpha0 + nk, alpha0 + tail))  # (14')",
      T_VB, "stick-breaking update gamma_k1 = alpha0 + N_k (should be 1 + N_k)"),
    # ---- GMM
    M("gmm-reg-covar-twice", "lvmref/gmm.py",
      "        covs = var + reg_covar\n",
      "        covs = var + 2 * reg_covar\n",
      T_GMM, "reg_covar added twice (diag/spherical)"),
    M("gmm-logdet-spherical", "lvmref/mixture.py",
      "    return n_features * np.log(u)",
      "    return (n_features - 1) * np.log(u)",
      T_GMM + ("tests/test_mixture.py",), "off-by-one in the spherical log-determinant"),
    M("gmm-kernel-maha-half", "kernels/gmm.py",
      "            out[i, k] = const[k] - 0.5 * _maha_diag_row(X[i], means, prec_diag, k)",
      "            out[i, k] = const[k] - 0.5000000001 * _maha_diag_row(X[i], means, prec_diag, "
      "k)",
      T_GMM, "Numba kernel: 2e-10 relative error in the Mahalanobis factor (diag)"),
    # ---- estimators
    M("est-stderr-ddof", "lvmref/estimators.py",
      "        stderr[ok] = np.sqrt(np.sum((rho - 1.0) ** 2, axis=1) / (s - 1)) / np.sqrt(s)",
      "        stderr[ok] = np.sqrt(np.sum((rho - 1.0) ** 2, axis=1) / s) / np.sqrt(s)",
      T_EST, "importance-sampling stderr with ddof 0"),
    M("est-mean-stderr-m", "lvmref/estimators.py",
      "    return mean, sd / np.sqrt(m)",
      "    return mean, sd / np.sqrt(m - 1)",
      T_EST, "ELBO/IWAE stderr divided by sqrt(k - 1)"),
    # ---- Helmholtz
    M("hm-reinforce-scale", "lvmref/helmholtz.py",
      "    grads.update(sleep_grad(params, x, z, arch, (signal - baseline) / scale))",
      "    grads.update(sleep_grad(params, x, z, arch, (signal - baseline) * scale))",
      T_HM, "REINFORCE learning signal multiplied by the scale instead of divided"),
    M("nn-tanh-backward", "lvmref/nn.py",
      "    return g * (1.0 - h * h)",
      "    return g * (1.0 - h)",
      T_HM + ("tests/test_nn.py",), "MLP tanh' = 1 - h instead of 1 - h^2"),
    M("nn-sigmoid-backward", "lvmref/nn.py",
      "    return g * h * (1.0 - h)",
      "    return g * h",
      T_HM + ("tests/test_nn.py",), "MLP sigmoid' = h instead of h (1 - h)"),
    # ---- fast exp (Numba) and the SBN enumeration kernel
    M("fastexp-ln2-lo-dropped", "kernels/fastexp.py",
      "_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI",
      "_LN2_LO = 0.0  # ln 2 - _LN2_HI",
      T_FAST, "dropped term: the low part of ln 2 in the range reduction"),
    M("fastexp-c12-dropped", "kernels/fastexp.py",
      "_C12 = 1.0 / 479001600.0",
      "_C12 = 0.0",
      T_FAST, "dropped r^12/12! term of the exp polynomial (6e-15 relative at |r| = ln2/2)"),
    M("sbn-gray-sign", "kernels/estimators.py",
      "                    lp -= prior_logits[col]",
      "                    lp += prior_logits[col]",
      ("tests/kernels/test_estimators.py", "tests/test_estimators.py"),
      "Numba Gray-code enumeration: swapped sign when a latent bit is cleared"),
    M("hm-rws-online-weight", "kernels/helmholtz.py",
      "        out[t] = mx + math.log(tot) - math.log(S)",
      "        out[t] = mx + math.log(tot) - math.log(S + 1)",
      ("tests/kernels/test_helmholtz.py", "tests/test_helmholtz.py",
       "tests/test_helmholtz_autograd.py", "tests/test_helmholtz_training.py"),
      "Numba online RWS: off-by-one in the reported log mean weight"),
    # ---- optimiser
    M("adam-nb-beta2", "kernels/optim.py",
      "    c2 = 1.0 - beta2",
      "    c2 = 1.0 - beta1",
      ("tests/kernels/test_optim.py", "tests/test_optim.py"),
      "Numba Adam: second moment with (1 - beta1)"),
]


def _copy_tree(dst: Path):
    ignore = shutil.ignore_patterns(".venv", ".git", ".numba-cache", "__pycache__",
                                    "*.egg-info", ".pytest_cache", ".hypothesis",
                                    "lvmref-demo")
    for name in ("lvmref", "kernels", "tests", "validation"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml", "README.md", "CHANGELOG.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dst / name)
    # the import tree: lvmref/ with kernels/ installed as lvmref.kernels (setup.cfg)
    src = dst / "_src"
    src.mkdir()
    (src / "lvmref").symlink_to(dst / "lvmref", target_is_directory=True)


def _restore(dst: Path, rel: str):
    shutil.copy2(ROOT / rel, dst / rel)


def _env(dst: Path, cache: Path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(dst / "_src") + os.pathsep + env.get("PYTHONPATH", "")
    env["NUMBA_CACHE_DIR"] = str(cache)
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _pytest(dst: Path, tests, cache: Path, timeout: float):
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "--no-header", "-o", "addopts=--import-mode=importlib", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=dst, env=_env(dst, cache), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    secs = time.perf_counter() - t0
    failed = next((ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))),
                  "")
    return proc.returncode, secs, failed


def _kernels_link(dst: Path):
    """lvmref.kernels must resolve to the copy's kernels/ (package_dir in setup.cfg)."""
    link = dst / "lvmref" / "kernels"
    if not link.exists():
        link.symlink_to(dst / "kernels", target_is_directory=True)


def check(mutants):
    bad = 0
    for m in mutants:
        n = (ROOT / m.file).read_text().count(m.old)
        if n != 1:
            print(f"{m.id}: `old` occurs {n} times in {m.file}")
            bad += 1
    print(f"{len(mutants) - bad}/{len(mutants)} mutants apply")
    return 1 if bad else 0


def main(argv):
    prefixes = [a for a in argv if not a.startswith("--")]
    mutants = [m for m in MUTANTS if not prefixes or m.id.startswith(tuple(prefixes))]
    if "--list" in argv:
        for m in mutants:
            eq = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
            print(f"{m.id:<32} {m.file:<22} {m.what}{eq}")
        return 0
    if "--check" in argv:
        return check(mutants)
    if check(mutants):
        return 1
    timeout = 900.0
    t_start = time.perf_counter()
    base = Path(tempfile.gettempdir()) / "lvmref-mutation-probe"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir()
    dst, warm = base / "repo", base / "warm-cache"
    _copy_tree(dst)
    _kernels_link(dst)
    # sanity: the copy is what gets imported, and the unmutated copy passes every mapped test
    env = _env(dst, warm)
    where = subprocess.run([sys.executable, "-c", "import lvmref.kernels as k; print(k.__file__)"],
                           cwd=dst, env=env, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(dst)):
        print(f"the copy is not the imported package ({where!r}); aborting")
        return 1
    all_tests = sorted({t for m in mutants for t in m.tests})
    rc, secs, failed = _pytest(dst, all_tests, warm, 3 * timeout)
    print(f"unmutated copy: {len(all_tests)} test files, rc={rc}, {secs:.0f} s "
          f"(warms the Numba cache) {failed}")
    if rc != 0:
        print("the unmutated copy fails its tests; fix that first")
        return 1
    rows = []
    for m in mutants:
        path = dst / m.file
        path.write_text(path.read_text().replace(m.old, m.new, 1))
        cache = base / f"cache-{m.id}"
        shutil.copytree(warm, cache)
        rc, secs, failed = _pytest(dst, m.tests, cache, timeout)
        _restore(dst, m.file)
        shutil.rmtree(cache, ignore_errors=True)
        if rc == 0:
            fate = "EQUIVALENT" if m.equivalent else "SURVIVED"
        elif rc == 1:
            fate = "killed"
        elif rc == "timeout":
            fate = "killed (timeout)"
        else:
            fate = f"killed (rc={rc})"
        rows.append((m, fate))
        print(f"{m.id:<32} {fate:<18} {secs:6.1f} s  {failed[:110]}", flush=True)
    total = time.perf_counter() - t_start
    considered = [(m, f) for m, f in rows if not m.equivalent]
    killed = sum(f.startswith("killed") for _, f in considered)
    survived = [m.id for m, f in considered if f == "SURVIVED"]
    eq_killed = [m.id for m, f in rows if m.equivalent and f.startswith("killed")]
    print(f"\nkilled {killed} of {len(considered)} non-equivalent mutants "
          f"({100.0 * killed / max(len(considered), 1):.0f} %); "
          f"{sum(1 for m in mutants if m.equivalent)} argued equivalent"
          + (f" (of which killed anyway: {', '.join(eq_killed)})" if eq_killed else ""))
    if survived:
        print("survivors: " + ", ".join(survived))
    print(f"total run time {total:.0f} s")
    shutil.rmtree(base, ignore_errors=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
