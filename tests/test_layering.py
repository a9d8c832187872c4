"""The wrappers call only the core: no module of one wrapper imports the other, and the core imports neither.

A static scan (``ast``) of every ``.py`` file of each package, imports inside functions included, so a
lazy import hidden in one code path is caught without running it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "stvg_plugin": {"lmms_tasks", "lmms_eval", "fiftyone_plugin", "fiftyone"},
    "fiftyone_plugin": {"lmms_tasks", "lmms_eval"},
    "lmms_tasks": {"fiftyone_plugin", "fiftyone"},
}


def imported_top_levels(source: str, filename: str) -> set[tuple[str, int]]:
    """``(top-level module, line)`` of every absolute import in ``source`` (relative imports stay in the package)."""
    found = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, line in imported_top_levels(path.read_text(encoding="utf-8"), str(path)):
            if name in FORBIDDEN[package]:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_scan_sees_imports_in_functions_and_ignores_relative_ones() -> None:
    src = "import os\nfrom . import io\n\ndef f():\n    from lmms_tasks.results import read_samples\n    import fiftyone.core as c\n"
    assert imported_top_levels(src, "x.py") == {("os", 1), ("lmms_tasks", 5), ("fiftyone", 6)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_no_other_wrapper(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    assert violations(package) == []
