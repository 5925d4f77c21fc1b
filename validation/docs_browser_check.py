"""Read the built documentation as a reader would: in headless Chromium, after MathJax ran.

For every page of the built site (``docs/_build/html`` by default) that contains
mathematics, Chromium loads the page from disk (no network: MathJax is served from the
site's own ``_static/mathjax``), lets MathJax run (``--virtual-time-budget``) and dumps the
rendered DOM. The script then checks, per page:

* **rendered**: every math element of the built HTML (``div.math``, ``span.math``) became
  MathJax output (``mjx-container``), and MathJax reported no TeX error (``mjx-merror``);
* **no raw TeX**: the visible text (outside ``<script>``, ``<style>``, the MathML that
  MathJax adds for screen readers, and code/literal elements) contains no TeX control
  sequence such as ``\\frac``, ``\\tag`` or a math delimiter ``\\(``;
* **equation links resolve**: every link to ``#equation-...``, on the page or on another
  page of the site, points to an element id that exists on its target page (the ids are
  read from the rendered DOM of that page).

It also takes a screenshot of the Helmholtz machine's derivation page
(``docs/_build/helmholtz.png``). Prints one row per page and exits non-zero on any failure.

    sphinx-build -W --keep-going docs docs/_build/html
    python validation/docs_browser_check.py [--html docs/_build/html] [--chromium PATH]

Chromium: the system package (Debian: ``apt-get install chromium``); ``--chromium`` or the
``CHROMIUM`` environment variable point at another binary.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HTML = ROOT / "docs" / "_build" / "html"
SCREENSHOT_PAGE = "models/helmholtz.html"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# a TeX control word (two letters or more: \frac, \tag, \mathrm ...) or a math delimiter
RAW_TEX_RE = re.compile(r"\\(?:[A-Za-z]{2,}|\(|\)|\[|\])")
# elements whose text is not prose: code and literals may quote a backslash legitimately
SKIP_TEXT = {"script", "style", "mjx-assistive-mml", "pre", "code", "math", "title",
             "textarea"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


class Page(HTMLParser):
    """Ids, links, math elements, MathJax output and visible text of one HTML document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.hrefs = []
        self.math = 0  # div.math / span.math of Sphinx's output
        self.mjx = 0  # MathJax output containers
        self.merror = 0  # MathJax TeX errors
        self.text = []
        self._stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        classes = (a.get("class") or "").split()
        if tag in ("div", "span") and "math" in classes:
            self.math += 1
        if tag == "mjx-container":
            self.mjx += 1
        if tag == "mjx-merror":
            self.merror += 1
        if tag not in VOID:
            self._stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack:
                if self._stack.pop() == tag:
                    break

    def handle_data(self, data):
        if not any(t in SKIP_TEXT for t in self._stack):
            self.text.append(data)


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


def find_chromium(explicit=None):
    for cand in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _chromium(binary, args, url, budget_ms):
    with tempfile.TemporaryDirectory() as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--allow-file-access-from-files",
               f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
               *args, url]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{binary} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def rendered_dom(binary, page: Path, budget_ms=20000) -> str:
    """The DOM of ``page`` after its scripts (MathJax) ran, as HTML."""
    return _chromium(binary, ["--dump-dom"], page.resolve().as_uri(), budget_ms)


def screenshot(binary, page: Path, out: Path, budget_ms=20000, size="1200,2400") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium(binary, [f"--screenshot={out}", f"--window-size={size}",
                       "--hide-scrollbars"], page.resolve().as_uri(), budget_ms)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"no screenshot written to {out}")
    return out


def _target(page: Path, href: str, html_dir: Path):
    """(file, fragment) that ``href`` on ``page`` points to, or None for other links."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.fragment.startswith("equation-"):
        return None
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    return target, unquote(parts.fragment)


def check_site(html_dir=DEFAULT_HTML, binary=None, shot=None, budget_ms=20000,
               log=print):
    """Run every check; return the list of failure messages (empty: all good)."""
    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").exists():
        return [f"{html_dir}: no built site (run sphinx-build first)"]
    binary = find_chromium(binary)
    if binary is None:
        return ["no Chromium found (apt-get install chromium, or --chromium PATH)"]
    if not (html_dir / "_static" / "mathjax" / "tex-chtml.js").exists():
        return [f"{html_dir}: MathJax is not served from the site (_static/mathjax missing)"]

    static = {p.resolve(): parse(p.read_text(encoding="utf-8"))
              for p in sorted(html_dir.rglob("*.html"))
              if "_static" not in p.parts}
    math_pages = [p for p, info in static.items() if info.math]
    linking = [p for p, info in static.items()
               if any(_target(p, h, html_dir) for h in info.hrefs)]
    targets = {t[0] for p in linking for h in static[p].hrefs
               if (t := _target(p, h, html_dir))}
    rendered = {p: parse(rendered_dom(binary, p, budget_ms))
                for p in sorted(set(math_pages) | targets) if p in static}

    failures = []
    log(f"Chromium: {binary}")
    log(f"site: {html_dir}  ({len(static)} pages, {len(math_pages)} with mathematics)")
    header = (f"{'page':44s} {'math':>5s} {'mjx':>5s} {'TeX err':>7s} {'raw TeX':>7s} "
              f"{'eq links':>8s} {'broken':>6s}")
    log(header)
    log("-" * len(header))
    for p in sorted(set(math_pages) | set(linking)):
        rel = p.relative_to(html_dir).as_posix()
        info = rendered.get(p, static[p])
        raw = RAW_TEX_RE.findall(" ".join(info.text)) if p in rendered else []
        links = [t for h in static[p].hrefs if (t := _target(p, h, html_dir))]
        broken = []
        for target, frag in links:
            ids = rendered[target].ids if target in rendered else static.get(
                target, Page()).ids
            if frag not in ids:
                broken.append(f"{target.name}#{frag}")
        math = static[p].math
        log(f"{rel:44s} {math:5d} {info.mjx:5d} {info.merror:7d} {len(raw):7d} "
            f"{len(links):8d} {len(broken):6d}")
        if math and info.mjx < math:
            failures.append(f"{rel}: {math} math elements but {info.mjx} rendered by MathJax")
        if info.merror:
            failures.append(f"{rel}: {info.merror} MathJax TeX errors")
        if raw:
            failures.append(f"{rel}: raw TeX in the page text: {sorted(set(raw))[:10]}")
        if broken:
            failures.append(f"{rel}: equation links without a target: {broken[:10]}")
    if not any(p.relative_to(html_dir).as_posix() == SCREENSHOT_PAGE for p in math_pages):
        failures.append(f"{SCREENSHOT_PAGE}: missing or without mathematics")
    elif shot is not None:
        out = screenshot(binary, html_dir / SCREENSHOT_PAGE, Path(shot), budget_ms)
        log(f"screenshot: {out} ({out.stat().st_size} bytes)")
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=DEFAULT_HTML, help="built site")
    ap.add_argument("--chromium", default=None, help="browser binary")
    ap.add_argument("--screenshot", type=Path, default=None,
                    help="PNG of the Helmholtz page (default: <html>/../helmholtz.png)")
    ap.add_argument("--budget-ms", type=int, default=20000,
                    help="virtual time for MathJax to finish, per page")
    args = ap.parse_args(argv)
    shot = args.screenshot or args.html.resolve().parent / "helmholtz.png"
    failures = check_site(args.html, args.chromium, shot, args.budget_ms)
    for f in failures:
        print("FAIL", f)
    print("docs browser check:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
