"""docs/architecture.md's two walks name real code: each step's `file` `function` pair exists, so the
walks cannot drift from a refactor unnoticed, and each walk stays within 8 steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
WALKS = ["## One keystroke", "## One request"]


def walk(title: str) -> list[str]:
    body = DOC[DOC.index(title) :].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. (.*(?:\n   .*)*)", body, flags=re.M)


def named(step: str) -> list[tuple[str, str]]:
    """(file, name) for each "`path.py` `Name`" or "`path.py` `Class.method`" in the step."""
    return re.findall(r"`([\w/]+\.py)` `([\w.]+)`", step)


@pytest.mark.parametrize("title", WALKS)
def test_each_walk_is_short_and_names_existing_code(title: str) -> None:
    steps = walk(title)
    assert 3 <= len(steps) <= 8
    pairs = [p for s in steps for p in named(s)]
    assert len(pairs) >= len(steps) - 1  # nearly every step names its file and function
    for path, name in pairs:
        candidates = [ROOT / path, *ROOT.glob(f"completion/**/{path}"), *ROOT.glob(f"lsp_server/{path}")]
        source = next((c for c in candidates if c.is_file()), None)
        assert source is not None, f"{title}: {path} does not exist"
        text = source.read_text(encoding="utf-8")
        for part in name.split("."):
            assert re.search(rf"^\s*(def|class|async def) {part}\b", text, flags=re.M), f"{path} has no {part}"
