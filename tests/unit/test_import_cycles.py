"""No import cycles among the project's own modules, not even through a lazy import.

The graph is read from the source with ``ast`` (nothing is imported): an edge A -> B for every
``import`` / ``from ... import`` statement in module A that names module B, wherever it stands
(module level, inside a function or class, under ``if TYPE_CHECKING:``). ``from P import X``
points at the module ``P.X`` when there is one, else at ``P``. Importing ``a.b.c`` also runs
the ``__init__`` of ``a`` and ``a.b``; those implicit edges are left out, as import-linter and
pydeps do (a package that re-exports its submodules would otherwise be a cycle with each of
them). Plug-ins loaded by entry point are not imports and do not count.

A cycle is broken by moving what both sides need into a module of its own (e.g.
``chaos/service_control.py``, ``harness/stack/provider_record.py``), not by a lazy import.
"""

import ast
import tomllib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

Graph = dict[str, dict[str, list[str]]]
"""Module -> imported module -> where (``path:line``)."""


def project_packages(root: Path = ROOT) -> list[str]:
    """The packages mypy checks (pyproject.toml ``[tool.mypy] packages``)."""
    with (root / "pyproject.toml").open("rb") as file:
        packages: list[str] = tomllib.load(file)["tool"]["mypy"]["packages"]
    return packages


def module_files(root: Path, packages: list[str]) -> dict[str, Path]:
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(module: str, is_package: bool, node: ast.AST) -> Iterator[tuple[str, str | None]]:
    """(base module, imported name or None) of one import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        for alias in node.names:
            yield base, alias.name


def import_graph(root: Path, packages: list[str]) -> Graph:
    modules = module_files(root, packages)
    graph: Graph = {}
    for module, path in modules.items():
        edges: dict[str, list[str]] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            for base, name in _imported(module, path.name == "__init__.py", node):
                # ``from P import X``: the module P.X if there is one, else P (X is its attribute)
                target = f"{base}.{name}" if name and f"{base}.{name}" in modules else base
                if target in modules and target != module:
                    where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
                    edges.setdefault(target, []).append(where)
        graph[module] = edges
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def one_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as ``a -> b (path:line)``."""
    members, first = set(component), component[0]
    came_from: dict[str, str] = {}
    queue = deque([first])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in members or child in came_from:
                continue
            came_from[child] = node
            if child == first:
                queue.clear()
                break
            queue.append(child)
    steps, node = [], first
    while True:
        parent = came_from[node]
        steps.append(f"{parent} -> {node} ({graph[parent][node][0]})")
        node = parent
        if node == first:
            return steps[::-1]


def describe(graph: Graph) -> list[str]:
    return [
        "cycle: " + "; ".join(one_cycle(graph, component))
        for component in strongly_connected(graph)
    ]


def test_the_project_has_no_import_cycles() -> None:
    graph = import_graph(ROOT, project_packages())
    assert len(graph) > 100  # the packages were found
    assert describe(graph) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": "from pkg import b\nA = 1\n",
            "pkg/b.py": "def f():\n    from . import c\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
            "pkg/d.py": "import os\nfrom pkg.a import A\nfrom pkg.missing import X\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b": ["pkg/a.py:1"]}  # a module, not the package
    assert graph["pkg.b"] == {"pkg.c": ["pkg/b.py:2"]}  # relative, inside a function
    assert graph["pkg.d"] == {"pkg.a": ["pkg/d.py:2"]}  # modules outside the packages ignored
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert describe(graph) == [
        "cycle: pkg.a -> pkg.b (pkg/a.py:1); pkg.b -> pkg.c (pkg/b.py:2); "
        "pkg.c -> pkg.a (pkg/c.py:3)"
    ]


def test_a_package_re_exporting_its_modules_is_no_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\nfrom pkg.b import B\n",
            "pkg/a.py": "A = 1\n",
            "pkg/b.py": "from pkg.a import A\nB = A\n",
        },
    )
    assert describe(import_graph(tmp_path, ["pkg"])) == []
