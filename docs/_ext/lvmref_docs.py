"""Sphinx extension of the lvmref documentation (local, not installed).

Three jobs, so that the docstrings stay the one source of the mathematics:

1. **Equation targets from ``\\tag``.** Every display equation in a *module* docstring that
   carries ``\\tag{N}`` becomes the target ``<module>-N`` (``lvmref.helmholtz`` eq. (7) is
   ``helmholtz-7``, ``lvmref.kernels.lse`` eq. (2) is ``kernels-lse-2``), numbered ``(N)`` on
   the page exactly as in the source: the docstrings need no ``:label:`` lines, and an
   editor still shows ``\\tag{7}``. A block with several tags (an aligned system) keeps its
   tags for MathJax and gets one anchor per tag.
2. **Citations become links.** In every docstring, ``eq. (7)``, ``eqs. (7), (8)``,
   ``eqs. (1)-(6)``, ``Eq. 7`` cite the equations of the module the docstring belongs to
   (the project's convention: "Functions cite them: ... eq. (7)"); ``eq. (2) of
   :mod:`lvmref.nn``` cites another module's. Each citation whose target exists becomes an
   ``:eq:`` link; a number without a target stays plain text.
3. **Equations link to their code.** Below each tagged equation of a module docstring the
   page lists the functions, classes and methods whose docstrings cite it (the inverse of
   2, computed from the same docstrings, so the two directions cannot drift).

It also writes one API page per public module of ``lvmref`` and ``lvmref.kernels``
(enumerated with :mod:`pkgutil`, so new modules appear without editing the docs) into
``api/generated/`` (not committed); the model modules are documented on their derivation
pages (``models/``) instead.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)
REGISTRY = None  # built at builder-inited

#: module -> page that *is* its derivation (the module docstring is the page body).
MODEL_PAGES = {
    "lvmref.gmm": "models/gmm",
    "lvmref.vbgmm": "models/vbgmm",
    "lvmref.estimators": "models/estimators",
    "lvmref.helmholtz": "models/helmholtz",
    "lvmref.vae": "models/vae",
}

TAG_RE = re.compile(r"\\tag\{([^{}]+)\}")
# "eq. (7)", "Eq 7", "eqs. (7), (8) and (10)", "eqs. (1)-(6)", "equation (3)", "(eq. 7"
NUM = r"\(?\d+(?:[a-z]|'(?=\)))?\)?"  # (8') is eq. (8'), "7's" is eq. 7
CITE_RE = re.compile(
    r"(?P<word>\b[Ee]q(?:uations?|s)?\.?)(?P<sp>[ \t]+|\n[ \t]*)"
    rf"(?P<nums>{NUM}(?:(?:,[ \t]*|[ \t]*-[ \t]*|[ \t]*--?[ \t]*|[ \t]+and[ \t]+|,[ \t]+and[ \t]+)"
    rf"{NUM})*)"
    r"(?P<of>[ \t]+(?:of|in)[ \t]+:mod:`~?(?P<mod>[\w.]+)`)?"
)
ONE_NUM_RE = re.compile(r"\(?(\d+(?:[a-z]|'(?=\)))?)\)?")


# a bare "(12)": not after a word, bracket or literal (``DEFAULT_REPEATS`` (10) is a value)
BARE_RE = re.compile(r"(?<![\w)\]\\])(?<!`` )\((\d+(?:[a-z]|')?)\)(?!\s+(?:of|in)\s+:mod:)")


def short_name(module: str) -> str:
    """``lvmref.kernels.lse`` -> ``kernels-lse`` (the prefix of its equation labels)."""
    name = module[len("lvmref."):] if module.startswith("lvmref.") else module
    return name.replace(".", "-").replace("_", "-")


def label_for(module: str, tag: str) -> str:
    return f"{short_name(module)}-{tag.strip()}".replace("'", "-prime")  # (3') -> -3-prime


def public_modules() -> list[str]:
    """Every public module of lvmref and lvmref.kernels, sorted (no ``_private``)."""
    import lvmref
    import lvmref.kernels

    names = ["lvmref", "lvmref.kernels"]
    for pkg in (lvmref, lvmref.kernels):
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_"):
                continue
            full = f"{pkg.__name__}.{info.name}"
            if full not in names:
                names.append(full)
    return sorted(names)


def module_tags(module: str) -> list[str]:
    """The ``\\tag{...}`` numbers of a module docstring's display equations."""
    doc = importlib.import_module(module).__doc__ or ""
    return TAG_RE.findall(doc)


def with_families(tags):
    """Tags plus the family number of lettered tags: (2a), (2b) are also eq. (2).

    A family number is added only where no equation carries it itself; it names the
    first equation of the family (the block that holds (2a) holds (2b) in lvmref.vae).
    """
    tags = [t.strip() for t in tags]
    out = list(tags)
    for t in tags:
        base = t.rstrip("abcdefghijklmnopqrstuvwxyz")
        if base != t and base and base not in out:
            out.append(base)
    return out


class Registry:
    """Labels of every module and which objects cite which label."""

    def __init__(self, modules):
        self.modules = list(modules)
        self.labels = {m: {t: label_for(m, t) for t in with_families(module_tags(m))}
                       for m in modules}
        self.all_labels = {lab for d in self.labels.values() for lab in d.values()}
        self.cited_by: dict[str, list[tuple[str, str]]] = {}
        for m in self.modules:
            for qualname, role, doc in documented_objects(m):
                for lab in sorted(set(self.cited_labels(m, doc))):
                    self.cited_by.setdefault(lab, []).append((role, qualname))

    def lookup(self, module, number):
        return self.labels.get(module, {}).get(number)

    def link_bare(self, module, text):
        """In a module's own derivation, a bare "(5)" is its eq. (5): link it."""

        def sub(m):
            lab = self.lookup(module, m.group(1))
            return f":eq:`{lab}`" if lab else m.group(0)

        return _sub_outside_markup(BARE_RE, sub, text)

    def cited_labels(self, module, text):
        """Labels cited by ``text``; a range "eqs. (10)-(12)" cites (10), (11), (12)."""
        for m in CITE_RE.finditer(text or ""):
            mod = m.group("mod") or module
            nums = m.group("nums")
            found = [(n.group(1), n.start(), n.end()) for n in ONE_NUM_RE.finditer(nums)]
            for j, (n, _, end) in enumerate(found):
                lab = self.lookup(mod, n)
                if lab:
                    yield lab
                if j + 1 < len(found) and "-" in nums[end:found[j + 1][1]]:
                    nxt = found[j + 1][0]
                    if n.isdigit() and nxt.isdigit():
                        for between in range(int(n) + 1, int(nxt)):
                            lab = self.lookup(mod, str(between))
                            if lab:
                                yield lab

    def link(self, module, text):
        """Replace citations in reST ``text`` by ``:eq:`` links (outside literals/math)."""

        def sub_cite(m):
            mod = m.group("mod") or module

            def sub_num(n):
                lab = self.lookup(mod, n.group(1))
                if not lab:
                    return n.group(0)
                whole = n.group(0)
                # "(eq. 7)": the closing parenthesis belongs to the prose
                tail = ")" if whole.endswith(")") and not whole.startswith("(") else ""
                return f":eq:`{lab}`{tail}"

            nums = ONE_NUM_RE.sub(sub_num, m.group("nums"))
            if nums == m.group("nums"):
                return m.group(0)
            return m.group("word") + m.group("sp") + nums + (m.group("of") or "")

        return _sub_outside_markup(CITE_RE, sub_cite, text)


def _sub_outside_markup(pattern, repl, text):
    """``pattern.sub(repl, text)`` for matches that do not start inside inline markup
    (literals, roles, math); a match may still read the markup after it (``of :mod:``)."""
    spans = [(m.start(), m.end()) for m in INLINE_RE.finditer(text)]

    def guarded(m):
        if any(a <= m.start() < b for a, b in spans):
            return m.group(0)
        return repl(m)

    return pattern.sub(guarded, text)


def documented_objects(module):
    """(qualified name, role, docstring) of the public functions, classes and methods."""
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n in vars(mod) if not n.startswith("_")]
    for name in names:
        obj = getattr(mod, name, None)
        if obj is None or getattr(obj, "__module__", module) != module:
            continue
        if inspect.isclass(obj):
            yield f"{module}.{name}", "class", inspect.getdoc(obj) or ""
            for attr, val in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = val.__func__ if isinstance(val, (staticmethod, classmethod)) else val
                if isinstance(func, property):
                    func = func.fget
                if callable(func) and getattr(func, "__doc__", None):
                    yield f"{module}.{name}.{attr}", "meth", inspect.getdoc(func) or ""
        elif callable(obj):
            yield f"{module}.{name}", "func", inspect.getdoc(obj) or ""


# ----------------------------------------------------------------------------------------
# docstring processing (reST level)
# ----------------------------------------------------------------------------------------

def _math_block_end(lines, i):
    """Index after the ``.. math::`` directive starting at line i."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        j += 1
    while j > i + 1 and not lines[j - 1].strip():
        j -= 1
    return j, indent


PLAIN_EQ_RE = re.compile(r"^\s*\(\d+(?:\.\d+)?[a-z]?\)\s\s")
INDENTED_EQ_RE = re.compile(r"^\s+\(\d+(?:\.\d+)?[a-z]?\)\s")
ITEM_RE = re.compile(r"^\s*\([A-Z]{1,2}\d+[a-z]?\)\s+\S")
TABLE_BORDER_RE = re.compile(r"^\s*=+(?: +=+)+\s*$")
INLINE_RE = re.compile(r"``.*?``|:[\w:.-]+:`[^`]*`|`[^`]*`_{0,2}", re.S)
BAR_RE = re.compile(r"(?<!\\)\|")
TRAILING_UNDERSCORE_RE = re.compile(r"(?<=[A-Za-z0-9])_(?=[\s.,;:)\]'\"]|$)", re.M)


def _segments(lines):
    """Split docstring lines into ("prose" | "verbatim", [lines]) chunks.

    Verbatim: ``.. math::`` blocks, the indented block after any line ending in ``::``
    (literal blocks and directive bodies), doctest lines, grid-table rows.
    """
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::") or stripped.endswith("::"):
            end, _ = _math_block_end(lines, i)
            if stripped.startswith(".. math::"):
                out.append(("math", lines[i:end]))
            else:
                out.append(("prose", [line]))
                out.append(("verbatim", lines[i + 1:end]))
            i = end
            continue
        if PLAIN_EQ_RE.match(line) or (INDENTED_EQ_RE.match(line)
                                       and (i == 0 or not lines[i - 1].strip())):
            # a plain-text equation ("(7)  E-step: ...") and its continuation lines,
            # shown as they read in an editor (a literal block)
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            base = min(len(x) - len(x.lstrip()) for x in lines[i:end])
            out.append(("verbatim", ["", "::", ""] + ["    " + x[base:] for x in lines[i:end]]
                        + [""]))
            i = end
            continue
        if ITEM_RE.match(line) and (i == 0 or not lines[i - 1].strip()):
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines) and lines[end].strip():
                end += 1
            block = lines[i:end]
            hanging = any(len(x) - len(x.lstrip()) > indent for x in block[1:])
            if hanging or any(ITEM_RE.match(x) for x in block[1:]):
                # "(I1) text" items with hanging continuation lines: a bullet list
                pad = " " * indent
                items = [""]
                for x in block:
                    if ITEM_RE.match(x) and len(x) - len(x.lstrip()) == indent:
                        items.append(f"{pad}* {x.strip()}")
                    else:
                        items.append(f"{pad}  {x.strip()}")
                out.append(("prose", items + [""]))
                i = end
                continue
        if TABLE_BORDER_RE.match(line):
            # a simple table: column widths must not change, so leave it as written
            end = i + 1
            while end < len(lines) and not (TABLE_BORDER_RE.match(lines[end]) and (
                    end + 1 == len(lines) or not lines[end + 1].strip())):
                end += 1
            out.append(("verbatim", lines[i:end + 1]))
            i = end + 1
            continue
        if stripped.startswith(">>>") or (stripped[:1] in "|+" and stripped[-1:] in "|+"
                                          and len(stripped) > 1):
            out.append(("verbatim", [line]))
            i += 1
            continue
        out.append(("prose", [line]))
        i += 1
    return out


def _escape_plain_text(text):
    """Plain-text habits of the docstrings that reST would misread, outside markup.

    ``|x|`` is an absolute value (reST: a substitution) and ``weights_`` an attribute
    name (reST: a hyperlink reference); neither markup is used in lvmref's docstrings.
    """
    out, pos = [], 0

    def esc(chunk):
        chunk = BAR_RE.sub(r"\\|", chunk)
        return TRAILING_UNDERSCORE_RE.sub(r"\\_", chunk)

    for m in INLINE_RE.finditer(text):
        out.append(esc(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out)


VARTYPE_RE = re.compile(r"^(\s*:vartype [^:]+:\s+)([^*`|]+?)\s*$")


def _plain_vartype(line):
    """``:vartype x: ndarray, shape (n,)`` (napoleon's Attributes) stays text: emphasised,
    Sphinx does not turn ``shape`` into a cross-reference (now ambiguous: chunked classes
    have a ``shape`` attribute)."""
    m = VARTYPE_RE.match(line)
    return f"{m.group(1)}*{m.group(2)}*" if m else line


def _owner_module(name, reg):
    """The documented module that contains the object called ``name`` (longest prefix)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in reg.labels:
            return ".".join(parts[:i])
    return None


def process_docstring(app, what, name, obj, options, lines):
    reg = REGISTRY
    module = name if what == "module" else _owner_module(name, reg)
    if module is None:
        return
    result = []
    prose = []

    def flush():
        if prose:
            for j, line in enumerate(prose):
                if j == 0 or not prose[j - 1].strip():
                    prose[j] = _paragraph_start(reg, module, line)
            text = reg.link(module, _escape_plain_text("\n".join(prose)))
            # "the posterior (12)": in lvmref a bare number is an equation of the module
            text = reg.link_bare(module, text)
            result.extend(text.split("\n"))
            prose.clear()

    for kind, chunk in _segments([_plain_vartype(x) for x in lines]):
        if kind == "prose":
            prose.extend(chunk)
            continue
        flush()
        result.extend(chunk)
        if kind == "math" and what == "module":
            result.extend(_implemented_by(reg, module, chunk))
    flush()
    lines[:] = result


PARA_NUM_RE = re.compile(r"^(\s*)\((\d+[a-z]?)\)(?=\s)")


def _paragraph_start(reg, module, line):
    """A paragraph opening with "(4) is computed ..." cites eq. (4), not a list item."""
    m = PARA_NUM_RE.match(line)
    if not m:
        return line
    lab = reg.lookup(module, m.group(2))
    head = f"{m.group(1)}:eq:`{lab}`" if lab else f"{m.group(1)}\\({m.group(2)})"
    return head + line[m.end():]


def _implemented_by(reg, module, block):
    tags = TAG_RE.findall("\n".join(block))
    own = with_families(module_tags(module))
    tags = [t for t in with_families(tags) if t in own]
    implementers = []
    for t in tags:
        for role, qual in reg.cited_by.get(label_for(module, t), []):
            if (role, qual) not in implementers:
                implementers.append((role, qual))
    if not implementers:
        return []
    indent = len(block[0]) - len(block[0].lstrip())
    def shown(qual):  # names in this module unqualified, others from below lvmref
        if qual.startswith(module + "."):
            return qual[len(module) + 1:]
        return qual[len("lvmref."):] if qual.startswith("lvmref.") else qual

    refs = ", ".join(
        f":py:{role}:`{shown(qual)}{'()' if role != 'class' else ''} <{qual}>`"
        for role, qual in implementers)
    pad = " " * indent
    return ["", f"{pad}.. rst-class:: implemented-by", "", f"{pad}Implemented by {refs}.", ""]


# ----------------------------------------------------------------------------------------
# doctree: equation targets and numbers from \tag
# ----------------------------------------------------------------------------------------

SOURCE_RE = re.compile(r"docstring of (lvmref(?:\.\w+)*)$")


def _source_module(node, reg):
    src = node.source or ""
    m = SOURCE_RE.search(src)
    if m and m.group(1) in reg.labels:
        return m.group(1)
    return None


def on_doctree_read(app, doctree):
    reg = REGISTRY
    domain = app.env.domains.math_domain
    docname = app.env.current_document.docname
    for node in list(doctree.findall(nodes.math_block)):
        if node.get("label"):
            continue
        text = node.astext()
        tags = TAG_RE.findall(text)
        if not tags:
            continue
        module = _source_module(node, reg)
        if module is None:
            continue
        labels = [label_for(module, t) for t in tags]
        seen = {lab for lab, (doc, _) in domain.equations.items() if doc == docname}
        families = [t for t in with_families(tags)[len(tags):]
                    if label_for(module, t) not in seen
                    and t not in [x.strip() for x in module_tags(module)]]
        for tag, lab in zip(tags + families, labels + [label_for(module, t) for t in families]):
            if lab in domain.equations and domain.equations[lab][0] != docname:
                logger.warning("duplicate equation %s (also in %s)", lab,
                               domain.equations[lab][0], location=node)
            domain.equations[lab] = (docname, tag.strip())
            node["ids"].append(nodes.make_id(f"equation-{lab}"))
        if len(tags) == 1:
            latex = TAG_RE.sub("", text).rstrip()
            node["label"] = labels[0]
            node["number"] = tags[0].strip()
        else:
            # an aligned system: MathJax shows each line's \tag; no Sphinx number.
            parts = [p.strip() for p in text.split("\n\n") if p.strip()]
            latex = "\\begin{align}" + " \\\\\n".join(parts) + "\\end{align}"
            node["nowrap"] = True
        node.children = [nodes.Text(latex)]
        node["latex"] = latex


NAPOLEON_KNOWN = {
    "args", "arguments", "attention", "attributes", "caution", "danger", "error",
    "example", "examples", "hint", "important", "keyword args", "keyword arguments",
    "methods", "note", "notes", "other parameters", "parameters", "receive", "receives",
    "return", "returns", "raise", "raises", "references", "see also", "tip", "todo",
    "warning", "warnings", "warn", "warns", "yield", "yields",
}
HEADER_RE = re.compile(r"^([^\s-].*)\n(-{3,})[ \t]*$", re.M)


def docstring_sections(modules):
    """Section titles (``Title`` over a dashed line) of function and class docstrings that
    napoleon does not know; registered as generic sections so that, e.g., a "Data beyond
    memory" section after "Attributes" is not read as more attributes."""
    titles = set()
    for m in modules:
        for _, _, doc in documented_objects(m):
            for t, dashes in HEADER_RE.findall(doc):
                if len(dashes) >= len(t.strip()) and t.strip().lower() not in NAPOLEON_KNOWN:
                    titles.add(t.strip())
    return sorted(titles)


def on_builder_inited(app):
    modules = public_modules()
    custom = list(app.config.napoleon_custom_sections or [])
    custom += [t for t in docstring_sections(modules) if t not in custom]
    app.config.napoleon_custom_sections = custom
    global REGISTRY
    REGISTRY = Registry(modules)
    out = Path(app.srcdir) / "api" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for m in modules:
        if m in MODEL_PAGES:
            continue
        title = f"``{m}``"
        wanted[f"{m}.rst"] = (
            f".. This file is generated by docs/_ext/lvmref_docs.py; do not edit.\n\n"
            f"{title}\n{'=' * len(title)}\n\n"
            f".. automodule:: {m}\n   :members:\n"
        )
    for f in out.glob("*.rst"):
        if f.name not in wanted:
            f.unlink()
    for fname, text in wanted.items():
        f = out / fname
        if not f.exists() or f.read_text() != text:
            f.write_text(text)


# ----------------------------------------------------------------------------------------
# pages built from other sources: the README's validation table, the demo's figures
# ----------------------------------------------------------------------------------------

MD_CODE_RE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
CELL_SPLIT_RE = re.compile(r"(?<!\\)\|")
DEMO_FIGURES = (
    ("gmm_em.png", "EM on the 2-D demo data: the fitted mixture and the ELBO staircase "
                   "(lvmref.gmm eqs. (5)-(9))."),
    ("vbgmm.png", "Variational Bayes Gaussian mixture: the weights of unused components "
                  "shrink."),
    ("bars_wake_sleep.png", "Wake-sleep on the 4x4 bars: exact KL(data || model) in bits."),
    ("vae_elbo.png", "VAE on the binarized digits: training and test ELBO per epoch."),
    ("vae_images.png", "VAE: data, reconstructions and samples."),
    ("vae_latent2d.png", "VAE with a 2-D latent space: test digits in latent space."),
    ("gradient_variance.png", "Encoder-gradient variance: REINFORCE against the "
                              "reparameterization gradient."),
    ("estimator_snr.png", "Gradient signal-to-noise ratio as k grows: ELBO reparam, STL, "
                          "IWAE and DReG."),
)


def _md_inline(text):
    return MD_CODE_RE.sub(lambda m: "``" + m.group(1).strip() + "``", text.strip())


def readme_section(readme: Path, title: str) -> list[str]:
    """Lines of the ``## title`` section of the README (without the heading)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(f"## {title}") + 1
    except ValueError:
        return []
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return lines[start:end]


def markdown_table_to_rst(lines: list[str]) -> list[str]:
    """A Markdown pipe table as a reST ``list-table`` (header row first)."""
    rows = []
    for line in lines:
        if not line.startswith("|"):
            continue
        cells = [c for c in CELL_SPLIT_RE.split(line.strip())[1:-1]]
        if all(set(c.strip()) <= {"-", ":"} for c in cells):
            continue
        rows.append([_md_inline(c) for c in cells])
    if not rows:
        return []
    out = [".. list-table::", "   :header-rows: 1"]
    out += ["   :widths: 30 25 45", ""] if len(rows[0]) == 3 else [""]
    for row in rows:
        for j, cell in enumerate(row):
            out.append(("   * - " if j == 0 else "     - ") + (cell or ".."))
    return out


def markdown_section_to_rst(lines: list[str]) -> list[str]:
    """Paragraphs and pipe tables of a README section, in order, as reST."""
    out, para, table = [], [], []

    def flush():
        if para:
            out.extend([_md_inline(" ".join(para)), ""])  # a code span may wrap lines
            para.clear()
        if table:
            out.extend([*markdown_table_to_rst(table), ""])
            table.clear()

    for line in lines:
        if line.startswith("|"):
            if para:
                flush()
            table.append(line)
        elif not line.strip():
            flush()
        else:
            if table:
                flush()
            para.append(line.strip())
    flush()
    return out


def write_generated_pages(app):
    srcdir = Path(app.srcdir)
    gen = srcdir / "_generated"
    gen.mkdir(exist_ok=True)
    readme = srcdir.parent / "README.md"
    section = readme_section(readme, "Validation results") if readme.exists() else []
    table = markdown_table_to_rst(section)
    if not table:
        logger.warning("README.md has no '## Validation results' table; the validation "
                       "page is empty")
    _write_if_changed(gen / "validation_table.rst.inc",
                      "\n".join(markdown_section_to_rst(section)))

    speed = readme_section(readme, "Speed") if readme.exists() else []
    _write_if_changed(gen / "speed_table.rst.inc", "\n".join(
        markdown_section_to_rst(speed) if speed else
        [".. note::", "", "   README.md has no \"Speed\" section.", ""]))

    demo_dir = os.environ.get("LVMREF_DEMO_DIR")
    figdir = gen / "demo"
    if figdir.exists():
        shutil.rmtree(figdir)
    lines = []
    if demo_dir and Path(demo_dir).is_dir():
        figdir.mkdir()
        for name, caption in DEMO_FIGURES:
            src = Path(demo_dir) / name
            if src.exists():
                shutil.copy2(src, figdir / name)
                lines += [f".. figure:: /_generated/demo/{name}", "   :width: 90%", "",
                          f"   ``{name}``: {caption}", ""]
    if not lines:
        lines = [".. note::", "",
                 "   This build does not include the demo's figures. Build with",
                 "   ``LVMREF_DEMO_DIR=DIR`` after ``lvmref demo --out DIR`` to include them.",
                 ""]
    _write_if_changed(gen / "demo_figures.rst.inc", "\n".join(lines))


def _write_if_changed(path: Path, text: str):
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", write_generated_pages)
    app.connect("builder-inited", on_builder_inited)
    app.connect("autodoc-process-docstring", process_docstring, priority=600)  # after napoleon
    app.connect("doctree-read", on_doctree_read)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
