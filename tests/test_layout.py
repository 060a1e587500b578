"""The packages depend one way: the command line and the TUI sit on top of the rest, never under it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["agent", "backends", "memory", "tools", "train"])
def test_the_core_packages_import_neither_the_cli_nor_the_tui_nor_training(package):
    above = {"cli", "tui"} | ({"train"} if package != "train" else set())
    offenders = {str(p.relative_to(ROOT)): sorted(imported(p) & above)
                 for p in (ROOT / package).rglob("*.py") if imported(p) & above}
    assert not offenders


def test_the_tui_does_not_import_the_cli():
    assert not [p for p in (ROOT / "tui").rglob("*.py") if "cli" in imported(p)]
