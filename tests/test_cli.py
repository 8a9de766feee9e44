"""The command line, run for real: `livekv complete`, `--help` (`livekv bench latency` has its own test file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.cli import BENCHMARKS
from lsp_server.cli import main as cli_main

SOURCE = """class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.it
"""


def livekv(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp_server.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_command() -> None:
    out = livekv("--help")
    assert out.returncode == 0
    for command in ("serve", "complete", "demo", "bench"):
        assert command in out.stdout


@pytest.mark.integration
def test_complete_prints_drafts_and_popup_items_as_json(tmp_path: Path) -> None:
    path = tmp_path / "stack.py"
    path.write_text(SOURCE)
    out = livekv("complete", str(path), "--line", "6", "--col", "16", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["drafts"] and result["drafts"][0]["text"].strip()
    assert "\n" not in result["drafts"][0]["text"]
    labels = [item["label"] for item in result["popup"]]
    assert labels and all(label.startswith("it") for label in labels)
    assert "items" in labels


def test_complete_rejects_a_position_outside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stack.py"
    path.write_text(SOURCE)
    out = livekv("complete", str(path), "--line", "60", "--col", "1")
    assert out.returncode == 2 and "line 60 is outside the file" in out.stderr


@pytest.mark.parametrize("suite", sorted(BENCHMARKS))
def test_bench_suite_help_lists_the_suite_s_own_options(suite: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["bench", suite, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith(f"usage: livekv bench {suite}")
    assert "--json" in out and "--quick" in out
