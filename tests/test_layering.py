"""Layering of the code base, checked from the source: what may import what, module size, no import cycles.

    dlc/      the reference implementation: never imports bench/, reports/ or toy/
    bench/    the harness; bench.schema (the results schema) is torch-free
    reports/  imports only bench.schema and bench.errors (and what those need), nothing of dlc/ directly

Imports are read with `ast`; relative imports are resolved against the importing module's package.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dlc", "bench", "reports", "toy")
MAX_LINES = 500
OVER_MAX_LINES_ALLOWED: set[str] = set()   # none: every module is under MAX_LINES


@dataclass(frozen=True)
class Import:
    target: str          # the internal module imported (the deepest one that exists)
    line: int
    module_level: bool   # executed when the importing module is imported (not in a function, not TYPE_CHECKING)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _internal(name: str) -> str | None:
    """The deepest module of our packages that `name` (a dotted module path) names, or None if not ours."""
    mods = _modules()
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    while parts:
        cand = ".".join(parts)
        if cand in mods:
            return cand
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@lru_cache(maxsize=None)
def _imports(module: str) -> tuple[Import, ...]:
    path = _modules()[module]
    return _imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py", str(path))


def _imports_in(source: str, module: str, is_package: bool, filename: str = "<source>") -> tuple[Import, ...]:
    """The imports of our packages in `source`, the text of `module`."""
    tree = ast.parse(source, filename=filename)
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            module_level = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _internal(alias.name)
                if target:
                    found.append(Import(target, node.lineno, module_level))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, is_package, node)
            for alias in node.names:
                # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg
                sub = f"{base}.{alias.name}"
                target = sub if sub in _modules() else _internal(base)
                if target:
                    found.append(Import(target, node.lineno, module_level))
        for child in ast.iter_child_nodes(node):
            visit(child, module_level)

    visit(tree, True)
    return tuple(found)


def _rel(module: str) -> str:
    return str(_modules()[module].relative_to(ROOT))


#################################################################################
#                                   Tests                                       #
#################################################################################

def test_import_resolution_sees_relative_and_function_level_imports():
    """A check on the checker: known imports of this tree are found and classified."""
    schema = {i.target: i for i in _imports("bench.schema")}
    assert schema["dlc.io"].module_level and schema["bench.errors"].module_level
    results = {i.target for i in _imports("bench.results") if i.module_level}
    assert "bench.schema" in results
    lazy = [i for i in _imports("bench.results") if i.target == "bench" and not i.module_level]
    assert lazy, "`from . import __version__` inside environment() is a function-level import of bench"


def test_module_level_means_run_at_import_time():
    src = """
from __future__ import annotations
import os
from typing import TYPE_CHECKING
from .schema import Results
import dlc.io as dio
if TYPE_CHECKING:
    from .run import execute
else:
    from . import errors
try:
    from .results import git_info
except ImportError:
    pass
class C:
    from dlc import common
def f():
    from . import aggregate
    g = lambda: __import__("x")
"""
    got = {(i.target, i.module_level) for i in _imports_in(src, "bench.fake", False)}
    assert got == {("bench.schema", True), ("dlc.io", True), ("bench.run", False), ("bench.errors", True),
                   ("bench.results", True), ("dlc.common", True), ("bench.aggregate", False)}
    # relative imports from a package's __init__, two levels up, and names (not modules) of a package
    pkg = {i.target for i in _imports_in("from . import base\nfrom .. import __version__\nfrom ..schema import x",
                                         "bench.features", True)}
    assert pkg == {"bench.features.base", "bench", "bench.schema"}


def test_import_reports_leaves_torch_out():
    code = ("import sys, reports.html, bench.schema, dlc.io; "
            "bad = sorted(m for m in ('torch', 'numpy', 'scipy', 'pandas') if m in sys.modules); "
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_no_module_is_over_500_lines():
    too_long = {}
    for module, path in _modules().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            too_long[_rel(module)] = n
    unexpected = {p: n for p, n in too_long.items() if p not in OVER_MAX_LINES_ALLOWED}
    assert not unexpected, f"modules over {MAX_LINES} lines (split them): {unexpected}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:          # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_path(graph, comp) for comp in comps]


def _cycle_path(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One concrete cycle a → b → … → a through the component (breadth-first from its first module)."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def test_no_import_cycles_at_module_level():
    graph = {m: {i.target for i in _imports(m) if i.module_level and i.target != m} for m in _modules()}
    cycles = _cycles(graph)
    assert not cycles, "module-level import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(g) == [["a", "b", "c", "a"], ["e", "e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_dlc_never_imports_the_harness():
    bad = [f"{_rel(m)}:{i.line} imports {i.target}" for m in _modules() if m.split(".")[0] == "dlc"
           for i in _imports(m) if i.target.split(".")[0] != "dlc"]
    assert not bad, "dlc/ must not import bench/, reports/ or toy/:\n" + "\n".join(bad)


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [i.target for i in _imports(m)]
    return seen


@pytest.mark.parametrize("module", ["bench.schema", "bench.errors"])
def test_what_reports_may_import_stays_small_and_torch_free(module):
    """bench.schema needs only dlc.io and bench.errors (and the packages' __init__, which import nothing)."""
    assert _closure(module) <= {"bench.schema", "bench.errors", "dlc.io", "bench", "dlc"}
    for m in ("bench.schema", "bench.errors", "dlc.io", "bench", "dlc"):
        third_party = []
        tree = ast.parse(_modules()[m].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
            third_party += [n for n in names if n.split(".")[0] not in sys.stdlib_module_names
                            and n.split(".")[0] not in PACKAGES and n != "__future__"]
        assert not third_party, f"{m} imports {third_party}: it must stay standard-library only"


def test_reports_import_only_the_schema():
    allowed = {"bench.schema", "bench.errors", "bench"}
    bad = [f"{_rel(m)}:{i.line} imports {i.target}" for m in _modules() if m.split(".")[0] == "reports"
           for i in _imports(m) if i.target.split(".")[0] != "reports" and i.target not in allowed]
    assert not bad, "reports/ may import only bench.schema and bench.errors:\n" + "\n".join(bad)
