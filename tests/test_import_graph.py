"""The import graph of gdbench's own modules has no cycles.

Every source file of the folders that ``pyproject.toml``'s ``package-dir`` maps into ``gdbench``
is parsed (``ast``, nothing imported) and each ``import`` of another gdbench module is an edge.
At module level (what runs on import; ``if TYPE_CHECKING:`` blocks left out) there must be no
cycle at all. Counting the imports inside functions as well, which only hide a cycle until the
function runs (``engine`` and ``robustness`` once imported each other that way), the only cycle
allowed is ``Task.from_arrays``, a convenience on the task type that calls the module built on
it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Cycles through imports inside functions that are there on purpose.
ALLOWED_LAZY_CYCLES = [["gdbench.tasks.arrays", "gdbench.tasks.base"]]


def source_modules() -> dict[str, Path]:
    """Module name -> source file, for every module under the mapped folders."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir = config["tool"]["setuptools"]["package-dir"]
    modules = {}
    for package, folder in package_dir.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imported(name: str, path: Path, modules: dict[str, Path], inside_functions: bool) -> set[str]:
    """The gdbench modules that module ``name`` (source ``path``) imports."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(nodes, at_module_level: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package[: len(package) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:
                        found.add(full)
                    elif base in modules:
                        found.add(base)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                if inside_functions:
                    visit(ast.iter_child_nodes(node), False)
            else:
                visit(ast.iter_child_nodes(node), at_module_level)

    visit(ast.parse(path.read_text()).body, True)
    found.discard(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


@pytest.mark.parametrize("inside_functions", [False, True], ids=["module-level", "all"])
def test_no_import_cycles(inside_functions):
    modules = source_modules()
    assert "gdbench.engine" in modules and "gdbench.models.base" in modules
    graph = {
        name: imported(name, path, modules, inside_functions) for name, path in modules.items()
    }
    assert "gdbench.robustness" in graph["gdbench.engine"]  # the parser sees imports
    expected = ALLOWED_LAZY_CYCLES if inside_functions else []
    assert cycles(graph) == expected


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
