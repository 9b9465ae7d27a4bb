"""The package's layout rules (docs/design.md): no import cycles, no module over 400 lines, and
every ``liser`` import of the benchmarks and examples resolves."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "liser"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The liser modules a file imports anywhere in it (functions included), resolved."""
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("liser")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("liser"):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def test_no_import_cycles_between_files():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {t for t in imports_of(p) if t in files and t != m} for m, p in files.items()}
    # a package's __init__ imports its own modules: count it as the package, not a cycle
    graph = {m: {t for t in ts if not (files[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in graph.items()}  # fmt: skip
    assert sum(map(len, graph.values())) > 150  # the graph was read (about 200 edges)
    assert "liser.train.loop" in graph["liser.train.run"]  # e.g. run -> loop, and not back
    assert "liser.train.run" not in graph["liser.train.loop"]
    cycles = []
    index, low, stack, on, counter = {}, {}, [], set(), [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert long == {}


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").glob("*.py")),
                         ids=lambda p: p.name)  # fmt: skip
def test_benchmarks_and_examples_import_what_exists(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("liser"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{path.name}: from {node.module} import {alias.name}"
