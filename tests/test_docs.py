"""The documentation site: its equation machinery, and the site as a reader sees it.

Fast tests (default run) check the docs extension (``docs/_ext/lvmref_docs.py``) on the
real docstrings and on small inputs, and check that the browser check
(``validation/docs_browser_check.py``) fails on pages that are broken in each way it
looks for. They skip cleanly without Sphinx or Chromium.

The full build (``sphinx-build -W`` of ``docs/`` into a temporary directory, then the
browser check on every page with mathematics) takes about a minute; it runs only with
``LVMREF_DOCS=1`` (add ``LVMREF_DOCS_HTML=docs/_build/html`` to check a tree built with
``sphinx-build -W`` instead of building one); ``.ci/run`` builds the site and runs
``validation/docs_browser_check.py``, the same checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ext():
    pytest.importorskip("sphinx")
    return _load("lvmref_docs", DOCS / "_ext" / "lvmref_docs.py")


@pytest.fixture(scope="module")
def registry(ext):
    return ext.Registry(ext.public_modules())


@pytest.fixture(scope="module")
def checker():
    return _load("docs_browser_check", ROOT / "validation" / "docs_browser_check.py")


@pytest.fixture(scope="module")
def chromium(checker):
    binary = checker.find_chromium()
    if binary is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    return binary


# ----------------------------------------------------------------------------------------
# the extension on the real docstrings
# ----------------------------------------------------------------------------------------

def test_every_public_module_gets_a_page(ext):
    import lvmref
    import lvmref.kernels

    mods = ext.public_modules()
    for name in ("lvmref", "lvmref.gmm", "lvmref.helmholtz", "lvmref.kernels",
                 "lvmref.kernels.lse", "lvmref.conformance"):
        assert name in mods
    assert not [m for m in mods if m.split(".")[-1].startswith("_")]
    # independent enumeration: the .py files on disk
    on_disk = {f"lvmref.{p.stem}" for p in Path(lvmref.__file__).parent.glob("*.py")}
    on_disk |= {f"lvmref.kernels.{p.stem}"
                for p in Path(lvmref.kernels.__file__).parent.glob("*.py")}
    on_disk = {m for m in on_disk if not m.split(".")[-1].startswith("_")}
    assert on_disk <= set(mods)


@pytest.mark.parametrize("module, at_least", [("lvmref.helmholtz", 15), ("lvmref.gmm", 28)])
def test_derivations_are_fully_tagged(ext, module, at_least):
    """Helmholtz (1)-(15) with (8a), GMM (1)-(28) with (15w): every equation is a tagged
    display, numbered 1..N without gaps, and no plain-text equation line is left."""
    import importlib

    tags = [t.strip() for t in ext.module_tags(module)]
    assert len(tags) == len(set(tags))
    plain = sorted(int(t) for t in tags if t.isdigit())
    assert plain == list(range(1, len(plain) + 1)) and len(plain) >= at_least
    for t in tags:  # lettered tags extend a numbered one: (8a), (15w)
        assert t.rstrip("abcdefghijklmnopqrstuvwxyz") in tags
    doc = importlib.import_module(module).__doc__
    assert not [line for line in doc.splitlines() if ext.PLAIN_EQ_RE.match(line)]


def test_tags_unique_per_module(ext):
    for module in ext.public_modules():
        tags = [t.strip() for t in ext.module_tags(module)]
        assert len(tags) == len(set(tags)), module


@pytest.mark.parametrize("module, qualname, labels", [
    ("lvmref.helmholtz", "wake_grad", {"helmholtz-7"}),
    ("lvmref.helmholtz", "sleep_grad", {"helmholtz-8"}),
    ("lvmref.helmholtz", "vimco_grads", {"helmholtz-14", "helmholtz-15"}),
    ("lvmref.gmm", "e_step", {"gmm-7", "gmm-10", "gmm-11", "gmm-12"}),
    ("lvmref.gmm", "m_step_full", {"gmm-15", "gmm-17"}),
])
def test_function_docstrings_link_to_their_equations(registry, module, qualname, labels):
    import importlib
    import inspect

    obj = getattr(importlib.import_module(module), qualname)
    cited = set(registry.cited_labels(module, inspect.getdoc(obj)))
    assert labels <= cited
    for lab in labels:  # and the equation lists the function (the inverse direction)
        assert ("func", f"{module}.{qualname}") in registry.cited_by[lab]


def test_citation_forms(registry):
    link = registry.link
    assert link("lvmref.helmholtz", "eq. (7)") == "eq. :eq:`helmholtz-7`"
    assert link("lvmref.helmholtz", "(eq. 7; more)") == "(eq. :eq:`helmholtz-7`; more)"
    assert link("lvmref.helmholtz", "(eq. 7)") == "(eq. :eq:`helmholtz-7`)"
    assert (link("lvmref.helmholtz", "eqs. (1)-(6)")
            == "eqs. :eq:`helmholtz-1`-:eq:`helmholtz-6`")
    assert (link("lvmref.helmholtz", "Eqs. (10), (11) and (8a)")
            == "Eqs. :eq:`helmholtz-10`, :eq:`helmholtz-11` and :eq:`helmholtz-8a`")
    # another module's equation, named after the citation
    assert (link("lvmref.helmholtz", "by eq. (2) of :mod:`lvmref.nn`")
            == "by eq. :eq:`nn-2` of :mod:`lvmref.nn`")
    # a number without an equation stays text; literals and math are left alone
    assert link("lvmref.helmholtz", "eq. (99)") == "eq. (99)"
    assert link("lvmref.helmholtz", "``eq. (7)`` :math:`eq. (7)`") == (
        "``eq. (7)`` :math:`eq. (7)`")
    # a bare number is the module's equation, except after a literal (a value)
    assert (registry.link_bare("lvmref.estimators", "``REPEATS`` (10), the bound (6)")
            == "``REPEATS`` (10), the bound :eq:`estimators-6`")
    # a lettered family: (2a), (2b) of the VAE are eq. (2)
    assert link("lvmref.vae", "eq. (2)") == "eq. :eq:`vae-2`"


def test_module_docstring_processing(ext, registry, monkeypatch):
    """Equations list their implementers; plain-text habits do not become markup."""
    monkeypatch.setattr(ext, "REGISTRY", registry)
    lines = [
        "Intro with |x| and weights_ and ``a|b``.",
        "",
        ".. math::",
        r"    \frac{\partial \log p(x, z)}{\partial \beta} = h^0 - \sigma(\beta)    \tag{7}",
        "",
        "(7) is the wake gradient; see (8).",
        "",
        "  (3)  a plain-text equation",
        "       continued",
    ]
    ext.process_docstring(None, "module", "lvmref.helmholtz", None, {}, lines)
    text = "\n".join(lines)
    assert r"Intro with \|x\| and weights\_ and ``a|b``." in text
    assert r"\frac{\partial \log p(x, z)}" in text  # math untouched
    assert ":py:func:`wake_grad() <lvmref.helmholtz.wake_grad>`" in text
    assert ":eq:`helmholtz-7` is the wake gradient; see :eq:`helmholtz-8`." in text
    i = lines.index("::")  # the plain-text equation became a literal block
    assert lines[i + 2:i + 4] == ["    (3)  a plain-text equation", "         continued"]


def test_markdown_table_conversion(ext):
    md = ["| check | command | result |", "|---|---|---|",
          "| SNR = \\|E g\\| | `python x.py` | **ok** 1e-10 |"]
    assert ext.markdown_table_to_rst(md) == [
        ".. list-table::", "   :header-rows: 1", "   :widths: 30 25 45", "",
        "   * - check", "     - command", "     - result",
        "   * - SNR = \\|E g\\|", "     - ``python x.py``", "     - **ok** 1e-10",
    ]


def test_readme_has_the_validation_table(ext):
    rows = ext.markdown_table_to_rst(ext.readme_section(ROOT / "README.md",
                                                        "Validation results"))
    assert sum(r.startswith("   * - ") for r in rows) >= 10


# ----------------------------------------------------------------------------------------
# the browser check fails on broken pages (needs Chromium only)
# ----------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script defer src="{mathjax}"></script></head><body>
<div class="math notranslate nohighlight" id="equation-helmholtz-7">\\[\\frac{{a}}{{b}}\\]</div>
<p>See <a href="#equation-helmholtz-7">(7)</a> and <a href="#equation-{target}">(8)</a>.</p>
</body></html>"""


def _site(tmp_path, mathjax_dir=None, target="helmholtz-7"):
    site = tmp_path / "html"
    (site / "models").mkdir(parents=True)
    (site / "_static" / "mathjax").mkdir(parents=True)
    (site / "index.html").write_text("<html><body>index</body></html>")
    if mathjax_dir is None:  # a MathJax that never runs
        (site / "_static" / "mathjax" / "tex-chtml.js").write_text("/* nothing */\n")
    else:
        import shutil

        shutil.rmtree(site / "_static" / "mathjax")
        shutil.copytree(mathjax_dir, site / "_static" / "mathjax")
    (site / "models" / "helmholtz.html").write_text(
        PAGE.format(mathjax="../_static/mathjax/tex-chtml.js", target=target))
    return site


def _mathjax_dir():
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("sphinx-mathjax-offline not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"


def test_browser_check_fails_when_mathjax_does_not_run(tmp_path, checker, chromium):
    failures = checker.check_site(_site(tmp_path), chromium, None, log=lambda *a: None)
    text = "\n".join(failures)
    assert "1 math elements but 0 rendered" in text
    assert "raw TeX in the page text" in text and "\\\\frac" in text


def test_browser_check_fails_on_a_broken_equation_link(tmp_path, checker, chromium):
    site = _site(tmp_path, _mathjax_dir(), target="helmholtz-99")
    failures = checker.check_site(site, chromium, None, log=lambda *a: None)
    assert failures == ["models/helmholtz.html: equation links without a target: "
                        "['helmholtz.html#equation-helmholtz-99']"]


def test_browser_check_passes_a_rendered_page(tmp_path, checker, chromium):
    site = _site(tmp_path, _mathjax_dir())
    shot = tmp_path / "shot.png"
    failures = checker.check_site(site, chromium, shot, log=lambda *a: None)
    assert failures == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_browser_check_reports_tex_errors(tmp_path, checker, chromium):
    site = _site(tmp_path, _mathjax_dir())
    page = site / "models" / "helmholtz.html"
    page.write_text(page.read_text().replace("\\frac{a}{b}", "a^b^c"))  # double exponent
    failures = checker.check_site(site, chromium, None, log=lambda *a: None)
    assert any(re.search(r"\d+ MathJax TeX errors", f) for f in failures)


# ----------------------------------------------------------------------------------------
# the whole site (LVMREF_DOCS=1)
# ----------------------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("LVMREF_DOCS") != "1",
                    reason="builds the whole site (~1 min); set LVMREF_DOCS=1")
def test_site_builds_without_warnings_and_reads_well(tmp_path, ext, checker, chromium):
    built = os.environ.get("LVMREF_DOCS_HTML")  # a tree built by sphinx-build -W
    if built:
        out = Path(built)
    else:
        out = tmp_path / "html"
        res = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", str(DOCS),
             str(out)], capture_output=True, text=True, timeout=900, check=False)
        assert res.returncode == 0, res.stderr[-5000:]
    assert (out / "_static" / "mathjax" / "tex-chtml.js").exists()  # served offline
    assert "cdn.jsdelivr" not in (out / "models" / "helmholtz.html").read_text()
    shot = tmp_path / "helmholtz.png"
    failures = checker.check_site(out, chromium, shot)
    assert failures == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every equation of the Helmholtz derivation has its target on the page
    html = (out / "models" / "helmholtz.html").read_text()
    for tag in ext.module_tags("lvmref.helmholtz"):
        assert f'id="equation-helmholtz-{tag.strip()}"' in html


def test_markdown_section_keeps_paragraphs_and_wrapped_code_spans(ext):
    out = ext.markdown_section_to_rst(["Text with `a", "b` span.", "", "| x | y |",
                                       "|---|---|", "| 1 | 2 |", "", "After."])
    assert out[0] == "Text with ``a b`` span."
    assert out[2:4] == [".. list-table::", "   :header-rows: 1"]
    assert "   * - 1" in out and "     - 2" in out
    assert out[-2:] == ["After.", ""]
