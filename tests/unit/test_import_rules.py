"""The engine apart from its plug-ins: nothing under harness/, chaos/ or reports/ imports
workloads/ (not even lazily inside a function). The engine reaches a workload only through the
``brokerbench.workloads`` entry points (harness/flows/registry.py)."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PACKAGES = ("harness", "chaos", "reports")
PLUGIN_PACKAGE = "workloads"
MODULE_NAME = re.compile(r"workloads(\.[A-Za-z_]\w*)+")
"""A string naming a plug-in module in full (``python -m workloads.x``, ``import_module``)."""


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import anywhere in the tree, nested ones included, and of every
    string that is a dotted ``workloads`` module name (a module started or loaded by name is a
    dependency too). Relative imports stay within their own package, never workloads/."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MODULE_NAME.fullmatch(node.value)
        ):
            found.append((node.lineno, node.value))
    return found


def _is_plugin_module(module: str) -> bool:
    return module == PLUGIN_PACKAGE or module.startswith(f"{PLUGIN_PACKAGE}.")


def _engine_files() -> list[Path]:
    return sorted(path for package in ENGINE_PACKAGES for path in (ROOT / package).rglob("*.py"))


def _violations(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename=filename)
    return [
        f"{filename}:{line}: {module}"
        for line, module in _imported_modules(tree)
        if _is_plugin_module(module)
    ]


def test_engine_packages_are_found() -> None:
    files = _engine_files()
    for package in ENGINE_PACKAGES:
        assert any(path.parts[len(ROOT.parts)] == package for path in files), package
    assert (ROOT / "harness" / "flows" / "api.py") in files


def test_engine_never_imports_workloads() -> None:
    violations = [
        problem
        for path in _engine_files()
        for problem in _violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    listed = "\n".join(violations)
    assert not violations, f"engine modules reaching workloads/ (use the registry):\n{listed}"


@pytest.mark.parametrize(
    "source",
    [
        "import workloads\n",
        "import workloads.tracker.flow as tracker\n",
        "from workloads import tracker\n",
        "from workloads.saga.flow import SagaFlow\n",
        "def lazy() -> None:\n    from workloads.tracker.flow import TrackerFlow\n",
        "import importlib\nimportlib.import_module('workloads.tracker.flow')\n",
        "__import__('workloads.saga')\n",
        "module = 'workloads.flows.service_process'\n",
    ],
)
def test_the_rule_catches_every_form(source: str) -> None:
    assert _violations(source, "example.py")


@pytest.mark.parametrize(
    "source",
    [
        "from harness.flows.api import Flow\n",
        "import workloads_extra\n",
        "from . import workloads\n",
        "WORKLOAD_GROUP = 'brokerbench.workloads'\n",
        "HELP = 'e.g. workloads/suites/quick.yaml'\n",
        "section = 'workloads'\n",
    ],
)
def test_the_rule_leaves_other_imports_alone(source: str) -> None:
    assert not _violations(source, "example.py")
