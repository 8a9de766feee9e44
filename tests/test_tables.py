"""The docs' tables are the suites' own renderings of the committed results (benchmarks/tables.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import tables
from benchmarks.common import REPO
from lsp_server.cli import BENCHMARKS


def test_every_committed_table_equals_its_rendering_from_the_results() -> None:
    for doc in tables.DOCS:
        text = (REPO / doc).read_text()
        assert tables.rendered(text) == text, f"{doc}: run `python -m benchmarks.tables` (make tables)"


def test_every_suite_has_a_table_from_a_results_file_with_its_run_record() -> None:
    marked = tables.MARKED.findall((REPO / "benchmarks/README.md").read_text())
    suites = {suite for _, suite, _, _ in marked}
    assert set(BENCHMARKS) <= suites
    for _, suite, results, _ in marked:
        if suite == "targets":
            continue
        run = json.loads((REPO / results).read_text())["run"]
        assert run["command"].startswith(f"livekv bench {suite}") and run["commit"], results


def test_every_results_file_is_cited_by_a_doc() -> None:
    cited = "".join((REPO / doc).read_text() for doc in tables.DOCS)
    for path in sorted((REPO / "benchmarks/results").glob("*.json")):
        assert f"benchmarks/results/{path.name}" in cited, f"{path.name} is cited nowhere: stale results"


def test_a_marked_table_is_replaced_and_the_targets_collected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "r.json").write_text("{}")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- table: fake benchmarks/results/r.json -->\nold figures\n<!-- /table -->\nend\n")
    monkeypatch.setattr(tables, "REPO", tmp_path)
    monkeypatch.setattr(
        tables, "suite_table", lambda suite, path: "| a | b |\n|---|---|\n| target: x ≤ 1 | 2: **missed** |"
    )
    assert tables.rendered(doc.read_text()) == (
        "intro\n<!-- table: fake benchmarks/results/r.json -->\n| a | b |\n|---|---|\n"
        "| target: x ≤ 1 | 2: **missed** |\n<!-- /table -->\nend\n"
    )
    assert tables.targets_table("doc.md").splitlines()[-1] == (
        "| [fake](doc.md#fake) ([JSON](benchmarks/results/r.json)) | x ≤ 1 | 2: **missed** |"
    )


def test_targets_in_a_target_and_met_column_are_collected_with_their_rows() -> None:
    table = (
        "| size | p95 | target | met |\n|---|---|---|---|\n"
        "| 1k | 17 | no pass; p95 <= 50 | met; met |\n"
        "| 4k | 76 | no pass; p95 <= 50 | met; missed (76) |\n"
        "| 8k | 90 | - | - |\n"
        "| errors | 0 | 0 | met |"
    )
    assert tables.column_targets(table) == [
        ("no pass (size 1k)", "**met**"),
        ("p95 <= 50 (size 1k)", "**met**"),
        ("no pass (size 4k)", "**met**"),
        ("p95 <= 50 (size 4k)", "**missed** (76)"),
        ("errors 0", "0: **met**"),
    ]
    assert tables.column_targets("| a | b |\n|---|---|\n| target: x | 1: **met** |") == []
