"""The architecture, checked from the import graph: data flows one way (STYLE.md).

Every import in every module of the package counts, function-local (lazy) imports included: a lazy upward import
is still an upward arrow. The table says, for each part, what it may never import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dpo_doctor"
TOP = ("cli", "zoo", "integrations")  # compositions of the pipeline: nothing in the pipeline imports them

FORBIDDEN = {
    "dpo_doctor.errors": ("dpo_doctor.",),
    "dpo_doctor.severity": ("dpo_doctor.",),
    "dpo_doctor.compute": ("dpo_doctor.data", "dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.audit", "dpo_doctor.views",
                           "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.hub": ("dpo_doctor.engine", "dpo_doctor.data", "dpo_doctor.scan", "dpo_doctor.views",
                       "dpo_doctor.rules", "dpo_doctor.metrics", "dpo_doctor.report", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.files": ("dpo_doctor.data", "dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.views",
                         "dpo_doctor.rules", "dpo_doctor.metrics", "dpo_doctor.report") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.weights": ("dpo_doctor.discover", "dpo_doctor.runconfig", "dpo_doctor.engine", "dpo_doctor.data",
                           "dpo_doctor.scan", "dpo_doctor.views", "dpo_doctor.rules", "dpo_doctor.metrics",
                           "dpo_doctor.report", "dpo_doctor.trainlog", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.runconfig": ("dpo_doctor.discover", "dpo_doctor.engine", "dpo_doctor.data", "dpo_doctor.scan",
                             "dpo_doctor.views", "dpo_doctor.rules", "dpo_doctor.metrics", "dpo_doctor.report",
                             "dpo_doctor.trainlog", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.discover": ("dpo_doctor.engine", "dpo_doctor.data", "dpo_doctor.scan", "dpo_doctor.views",
                            "dpo_doctor.rules", "dpo_doctor.metrics") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.data": ("dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.views", "dpo_doctor.rules",
                        "dpo_doctor.metrics", "dpo_doctor.report", "dpo_doctor.train") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.engine": ("dpo_doctor.data", "dpo_doctor.scan", "dpo_doctor.views", "dpo_doctor.rules",
                          "dpo_doctor.metrics", "dpo_doctor.report", "dpo_doctor.train") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.metrics": ("dpo_doctor.engine", "dpo_doctor.data", "dpo_doctor.scan", "dpo_doctor.views",
                           "dpo_doctor.rules", "dpo_doctor.report", "dpo_doctor.train", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.rules": ("dpo_doctor.engine", "dpo_doctor.data", "dpo_doctor.scan", "dpo_doctor.views",
                         "dpo_doctor.report", "dpo_doctor.train", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.scan": ("dpo_doctor.views", "dpo_doctor.train") + tuple(f"dpo_doctor.{t}" for t in TOP),
    # the data audit is a pipeline like scan (data -> metrics -> engine -> rules -> report); scan reuses its table
    "dpo_doctor.audit": ("dpo_doctor.views", "dpo_doctor.train", "dpo_doctor.scan") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.compare": ("dpo_doctor.views", "dpo_doctor.train") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.report": ("dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.views", "dpo_doctor.data",
                          "dpo_doctor.train", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.report_model": ("dpo_doctor.", "torch"),  # report.json's typed model: errors only, pydantic lazily
    "dpo_doctor.views": ("dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.data", "dpo_doctor.train", "torch",
                         "transformers") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.cache": ("dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.views", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.trainlog": ("dpo_doctor.engine", "dpo_doctor.scan", "dpo_doctor.views", "torch") + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.train": ("dpo_doctor.views",) + tuple(f"dpo_doctor.{t}" for t in TOP),
    "dpo_doctor.zoo": ("dpo_doctor.cli",),
    "dpo_doctor.integrations": ("dpo_doctor.cli",),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_statements(path: Path):
    """(base module, imported names or None) per import statement anywhere in the file, relative imports resolved:
    `import M` is (M, None), `from M import a, b` is (M, [a, b])."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            yield base, [a.name for a in node.names]


def imports_of(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (relative imports resolved)."""
    found = set()
    for base, names in import_statements(path):
        found.add(base)
        found.update(f"{base}.{n}" for n in names or ())  # `from dpo_doctor import views` names a module
    return found


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".") or (prefix.endswith("dpo_doctor") and name.startswith(prefix))


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_part_has_a_rule():
    parts = {module_name(p).split(".")[1] for p in MODULES if module_name(p) != "dpo_doctor"}
    unruled = {p for p in parts if f"dpo_doctor.{p}" not in FORBIDDEN} - {"__main__", "__init__", "cli"}
    assert not unruled, f"add these parts to FORBIDDEN with what they may not import: {sorted(unruled)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_upward_import(path):
    name = module_name(path)
    rules = [bad for part, bad in FORBIDDEN.items() if _matches(name, part)]
    wrong = sorted({imp for imp in imports_of(path) for bad in rules for b in bad
                    if (_matches(imp, b) if b != "dpo_doctor." else imp.startswith("dpo_doctor."))})
    assert not wrong, f"{name} imports {wrong}, against the one-way flow (STYLE.md)"


def test_no_import_error_guards():
    """A broken install must fail loudly: no `except ImportError` around the package's own modules."""
    offenders = []
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    for h in node.handlers):
                own = [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dpo_doctor")]
                if own:
                    offenders.append(f"{module_name(path)}:{node.lineno}")
    assert not offenders, f"ImportError guards around dpo_doctor imports: {offenders}"


def test_no_assert_on_user_input():
    """`assert` vanishes under python -O: the package validates with UserError instead."""
    found = [f"{module_name(p)}:{n.lineno}" for p in MODULES for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Assert)]
    assert not found, f"assert statements in the package: {found}"


def test_every_package_ships_in_the_wheel():
    """pyproject lists packages by hand (the probe suites map from the top-level probes/): a new sub-package must
    be listed there, or the wheel silently lacks it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in PACKAGE.rglob("__init__.py")} | {"dpo_doctor.probes"}
    assert found == listed, f"not listed: {sorted(found - listed)}; listed but missing: {sorted(listed - found)}"


# ---- no cycles, no private names across modules (STYLE.md); widen CLEAN as other parts are cleaned --------------

# Held to it: every module of the package but those named here (none left).
NOT_YET_CLEAN: tuple[str, ...] = ()
NAMES = {module_name(p) for p in MODULES}


def _own_imports(path: Path) -> set[str]:
    """The package modules a file depends on: `import M` is M; `from M import a, b` is M.a where that is a module
    (importing a submodule by name needs nothing else from M) and M itself for any name that is not a module."""
    found = set()
    for base, names in import_statements(path):
        found.update({f"{base}.{n}" if f"{base}.{n}" in NAMES else base for n in names} if names else {base})
    return {imp for imp in found if imp in NAMES and imp != module_name(path)}


def _in_clean(name: str) -> bool:
    return not any(_matches(name, part) for part in NOT_YET_CLEAN)


def test_no_import_cycles():
    """Depth-first search over the import graph of the clean parts: any back edge is a cycle, named in full."""
    graph = {module_name(p): {m for m in _own_imports(p) if _in_clean(m)} for p in MODULES if _in_clean(module_name(p))}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("path", [p for p in MODULES if _in_clean(module_name(p))], ids=lambda p: module_name(p))
def test_no_private_cross_module_import(path):
    """`from dpo_doctor.x import _helper` couples two modules through a name that says 'not for you'."""
    here = module_name(path)
    bad = sorted(f"{node.module}.{a.name}" for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dpo_doctor")
                 and node.module != here for a in node.names
                 if a.name.startswith("_") and not (a.name.startswith("__") and a.name.endswith("__")))
    assert not bad, f"{here} imports private names of other modules: {bad}"
