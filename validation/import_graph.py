"""Print lvmref's import graph and module sizes, and check the layering rules.

    python validation/import_graph.py     # table, graph, layering check (exit 1 on a violation)

Rules checked (package docstring of ``lvmref``; ``tests/test_architecture.py`` runs the
same checks):

* dependencies point one way: kernels -> core -> models -> applications; the kernels import
  nothing from lvmref, ``lvmref.datasets`` imports only kernels;
* no import cycles (imports inside functions count too);
* no private name (``_x``) is imported from another module, and no private module.

Imports are read from the source with ``ast`` (nothing is imported or executed).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: layer of each module (lower numbers may not import higher ones)
LAYERS = {
    "kernels": 0,
    "core": 1,  # nn, estimators, testing, mixture, optim, persistence, datasets, files
    "models": 2,  # gmm, vbgmm, helmholtz(+_training), vae(+_training), linear_gaussian
    "apps": 3,  # cli, demo, plots, __main__, conformance
}
MODELS = {"gmm", "vbgmm", "helmholtz", "helmholtz_training", "vae", "vae_training",
          "linear_gaussian"}
APPS = {"cli", "demo", "plots", "__main__", "conformance"}


def module_files():
    """{dotted name: path} for lvmref/*.py and kernels/*.py (as lvmref.kernels.*)."""
    out = {}
    for p in sorted((ROOT / "lvmref").glob("*.py")):
        out["lvmref" if p.stem == "__init__" else f"lvmref.{p.stem}"] = p
    for p in sorted((ROOT / "kernels").glob("*.py")):
        out["lvmref.kernels" if p.stem == "__init__" else f"lvmref.kernels.{p.stem}"] = p
    return out


def layer(mod: str) -> int:
    if mod.startswith("lvmref.kernels"):
        return LAYERS["kernels"]
    short = mod.split(".")[-1]
    if short in MODELS:
        return LAYERS["models"]
    if short in APPS:
        return LAYERS["apps"]
    return LAYERS["core"]


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    pkg = mod.split(".") if mod in ("lvmref", "lvmref.kernels") else mod.split(".")[:-1]
    base = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(mod: str, path: Path):
    """[(imported module, [names], line)] of lvmref imports anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    known = module_files()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lvmref"):
                    found.append((a.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node)
            if not target.startswith("lvmref"):
                continue
            names = [a.name for a in node.names]
            # "from lvmref.kernels import gmm" imports the module lvmref.kernels.gmm
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            if subs:
                found.extend((s, [], node.lineno) for s in subs)
                names = [n for n in names if f"{target}.{n}" not in known]
            if names:
                found.append((target, names, node.lineno))
    return found


def graph():
    files = module_files()
    return {m: imports(m, p) for m, p in files.items()}


def violations(g=None):
    """Layering, privacy and cycle violations as readable strings (empty when clean)."""
    g = graph() if g is None else g
    bad = []
    for mod, imps in g.items():
        for target, names, line in imps:
            where = f"{mod}:{line}"
            if target not in g:
                bad.append(f"{where} imports unknown module {target}")
                continue
            if layer(target) > layer(mod):
                bad.append(f"{where} imports {target} from a higher layer")
            if mod == "lvmref.datasets" and not target.startswith("lvmref.kernels"):
                bad.append(f"{where}: datasets must be a leaf (imports {target})")
            if any(part.startswith("_") and part != "__init__" and part != "__main__"
                   for part in target.split(".")):
                bad.append(f"{where} imports the private module {target}")
            for n in names:
                if n.startswith("_") and n not in ("__version__",):
                    bad.append(f"{where} imports the private name {target}.{n}")
    # cycles (depth-first search on the module graph, excluding package __init__ edges)
    edges = {m: sorted({t for t, _, _ in imps if t in g and t != m}) for m, imps in g.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if t in ("lvmref", "lvmref.kernels") and m.startswith(t):
                continue  # a submodule reading its package's __version__ / re-exports
            if state.get(t) == 1:
                bad.append("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m)
    return bad


def main() -> int:
    files = module_files()
    g = graph()
    print(f"{'module':34s}{'lines':>7s}  imports (lvmref)")
    for mod, path in files.items():
        n = len(path.read_text().splitlines())
        deps = sorted({t.replace("lvmref.", "") for t, _, _ in g[mod]})
        print(f"{mod:34s}{n:7d}  {', '.join(deps) if deps else '-'}")
    bad = violations(g)
    print("\nlayering: kernels -> core -> models -> applications; "
          + ("OK, no cycles, no private imports" if not bad else f"{len(bad)} violation(s):"))
    for b in bad:
        print("  " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
