"""Sphinx configuration of the lvmref documentation.

Build (offline; warnings are errors)::

    pip install -e ".[docs]" && sphinx-build -W --keep-going docs docs/_build/html

MathJax is served from the built site (``_static/mathjax``, copied from the
``sphinx-mathjax-offline`` package), so the pages render without network access.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# Document the plain Python functions behind the Numba kernels (signatures and docstrings
# of ``foo_nb`` read like any other function) and never compile anything while building.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

import lvmref  # noqa: E402

project = "lvmref"
author = "the lvmref authors"
copyright = "the lvmref authors, BSD-3-Clause"
version = release = lvmref.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax (offline pages)
    "lvmref_docs",  # equation targets from \tag, citation links, generated API pages
]

# offline: no intersphinx, no remote images
exclude_patterns = ["_build", "_generated"]
templates_path = []
html_static_path = ["_static"]
html_css_files = ["lvmref.css"]
html_theme = "alabaster"
html_theme_options = {"page_width": "1300px", "sidebar_width": "240px"}
html_show_sourcelink = False

# numpydoc-style docstrings, read by napoleon (tolerant of the derivation sections that
# the model modules put in their docstrings)
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
napoleon_use_param = False  # types as text: "shape" etc. are not cross-references

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # shapes and types are in the numpydoc sections
autoclass_content = "both"

# equation numbers are the docstrings' own \tag numbers (lvmref_docs); (N) in references
math_eqref_format = "({number})"
math_numfig = False
