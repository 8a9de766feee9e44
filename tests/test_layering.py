"""The engine knows nothing about LSP: completion/ and monitors/ never import pygls, lsprotocol or
lsp_server (STYLE.md, convention 1), so they can be driven by anything that has text and offsets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FORBIDDEN = {"pygls", "lsprotocol", "lsp_server"}


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


ENGINE = sorted([*ROOT.glob("completion/**/*.py"), *ROOT.glob("monitors/*.py")])


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_modules_do_not_import_lsp(path: Path) -> None:
    assert not imported(path) & FORBIDDEN
