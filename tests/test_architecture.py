"""The package's structure: no import cycle, the core below the shells, and
public Python APIs only. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bgjobs"
SHELLS = ("bgjobs.ui", "bgjobs.cli")
HEAVY = ("pandas", "streamlit", "pyarrow", "altair")
# Modules of the core that may read log files into frames (the dashboard's data).
FRAME_MODULES = {"bgjobs.logtable", "bgjobs.logstats"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (functions too), except under
    `if TYPE_CHECKING:`; relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            for alias in node.names:  # `from . import x` imports the module x
                found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    """bgjobs module -> the bgjobs modules it imports (a package's own
    __init__ is not counted as an edge: importing bgjobs.x loads it anyway)."""
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = {t for t in imports_of(path) if t in known and t != name and t != "bgjobs"}
        edges[name] = {
            t for t in targets if not (name.startswith(t + ".") and known[t].name == "__init__.py")
        }
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_a_cycle_is_found_when_there_is_one():
    # The check itself: a negative control.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def core_modules() -> dict[str, Path]:
    return {n: p for n, p in modules().items() if not n.startswith(SHELLS)}


@pytest.mark.parametrize("name", sorted(core_modules()))
def test_the_core_never_imports_a_shell_or_a_heavy_library(name):
    imported = imports_of(core_modules()[name])
    assert not [m for m in imported if m.startswith(SHELLS)], f"{name} imports a shell"
    if name not in FRAME_MODULES:
        heavy = [m for m in imported if m.split(".")[0] in HEAVY]
        assert not heavy, f"{name} imports {heavy}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_private_stdlib_module_and_no_sys_modules_write(name):
    path = modules()[name]
    tree = ast.parse(path.read_text())
    private = sorted(
        m for m in imports_of(path) if m.split(".")[0].startswith("_") and m.split(".")[0] != "__future__"
    )
    assert private == [], f"{name} imports private modules {private}; use the public ones"
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets += [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "sys.modules":
                pytest.fail(f"{name}:{node.lineno} writes into sys.modules")
        if isinstance(node, ast.Call) and ast.unparse(node.func) in (
            "sys.modules.__setitem__",
            "sys.modules.update",
            "sys.modules.setdefault",
        ):
            pytest.fail(f"{name}:{node.lineno} writes into sys.modules")
