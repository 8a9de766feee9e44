"""`livekv bench soak`: a short run through the real server, and its checks on states that are broken on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.soak import server_errors, slope_per_1k, state_problems, table
from completion.live.document import TextEdit
from completion.model.engine import Engine
from completion.settings import Settings
from lsp_server.worker import ModelWorker

URI = "file:///work/shop.py"
SOURCE = "".join(f"def price_{i}(item):\n    return item.cost * {i} + item.tax\n\n" for i in range(30))
TEXT = "x = 1\n"
GOOD = {"mirror": TEXT, "workspace": TEXT, "engine": TEXT, "cacheBytes": 100, "tokensFresh": True, "kvMaxError": 1e-6}


@pytest.fixture
def worker(tiny_engine: Callable[[str], Engine]) -> Iterator[ModelWorker]:
    worker = ModelWorker(Settings(cross_file_chars=0))
    worker.session.engine = tiny_engine("llama")
    yield worker
    worker.shutdown()


def test_a_good_state_has_no_problems() -> None:
    assert state_problems(GOOD, TEXT, budget_bytes=100, kv_tolerance=1e-3) == []
    unchecked = {k: v for k, v in GOOD.items() if k not in ("tokensFresh", "kvMaxError")}
    assert state_problems(unchecked, TEXT, budget_bytes=100, kv_tolerance=1e-3) == []


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"engine": "x = 2\n"}, "engine text differs"),
        ({"mirror": None}, "mirror text differs"),
        ({"cacheBytes": 101}, "over the budget"),
        ({"tokensFresh": False}, "fresh tokenization"),
        ({"kvMaxError": 0.01}, "full re-encode by 0.01"),
        ({"sampleMaxError": 0.01}, "sampled first-layer KV differs from a fresh encode by 0.01"),
    ],
)
def test_each_broken_invariant_is_reported(broken: dict[str, object], message: str) -> None:
    problems = state_problems({**GOOD, **broken}, TEXT, budget_bytes=100, kv_tolerance=1e-3)
    assert len(problems) == 1 and message in problems[0]


def test_errors_in_the_server_log_are_found(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    assert server_errors(log) == []
    log.write_text(
        "2026-12-01 17:01:00,000 WARNING livekv.server: setting 'x' ignored\n"
        "2026-12-01 17:02:00,000 ERROR livekv.server: the model worker (change) failed\n"
        "Traceback (most recent call last):\n"
    )
    assert server_errors(log) == ["2026-12-01 17:02:00,000 ERROR livekv.server: the model worker (change) failed"]


def test_rss_slope_is_fitted_over_the_second_half() -> None:
    flat_then_steady = [(e, 500.0 + (50 if e < 500 else 0), 0.0) for e in range(0, 1001, 100)]
    assert slope_per_1k(flat_then_steady) == pytest.approx(0.0)
    growing = [(e, 500 + e / 100, 0.0) for e in range(0, 1001, 100)]  # 1 MB per 100 events
    assert slope_per_1k(growing) == pytest.approx(10.0)


def test_check_cache_passes_a_patched_cache_and_catches_broken_ones(worker: ModelWorker) -> None:
    worker.session.open(URI, SOURCE)
    worker.session.store.get(URI).refresh()  # grown whole, as the idle time would
    at = SOURCE.index("    return item.cost * 7")
    end = len(SOURCE)
    edits = [TextEdit(at, at, "    total = 0\n"), TextEdit(end, end, "#")]  # the caret stays at the end
    worker.session.change(URI, edits, SOURCE[:at] + "    total = 0\n" + SOURCE[at:] + "#")  # the rest is rotated
    doc = worker.session.store.get(URI)
    assert doc.stale > 0
    good = worker.session.check_cache(URI)
    assert good["tokensFresh"] is True and good["staleBefore"] > 0 and good["kvMaxError"] <= 1e-4
    assert doc.stale == 0  # the check refreshed it, as the idle refresh would
    doc.kv.values[:, :, 3] += 1.0  # a cache entry that no re-encode would give
    assert worker.session.check_cache(URI)["kvMaxError"] >= 1.0
    doc.tokens[5] = doc.tokens[5] + 1  # a token the text does not tokenize to
    assert worker.session.check_cache(URI)["tokensFresh"] is False


def test_check_positions_passes_stale_rotated_entries_and_catches_misplaced_ones(worker: ModelWorker) -> None:
    worker.session.open(URI, SOURCE)
    worker.session.store.get(URI).refresh()
    at = SOURCE.index("    return item.cost * 7")
    worker.session.change(URI, [TextEdit(at, at, "    total = 0\n")], SOURCE[:at] + "    total = 0\n" + SOURCE[at:])
    doc = worker.session.store.get(URI)
    assert doc.stale > 0 and doc.kv.back > 0 and doc.kv.lag != 0  # entries behind the gap, not yet rotated
    good = worker.session.check_positions(URI, 64, seed=1)
    assert good["sampledEntries"] == 64 and good["sampleMaxError"] <= 1e-4  # type: ignore[operator]
    assert doc.stale > 0  # nothing refreshed
    everything = worker.session.check_positions(URI, len(doc.kv) + 10)
    assert everything["sampledEntries"] == len(doc.kv) and everything["sampleMaxError"] <= 1e-4  # type: ignore[operator]
    doc.kv.lag += 1  # every entry behind the gap off by one position
    assert worker.session.check_positions(URI, len(doc.kv))["sampleMaxError"] >= 1e-3  # type: ignore[operator]
    assert worker.session.check_positions("file:///work/unknown.py", 8) == {"sampledEntries": 0, "sampleMaxError": None}


def test_check_cache_has_nothing_to_compare_without_kv(worker: ModelWorker) -> None:
    worker.session.open(URI, SOURCE)
    worker.session.store.get(URI).evict()
    assert worker.session.check_cache(URI) == {
        "evicted": True,
        "tokensFresh": None,
        "kvMaxError": None,
        "staleBefore": 0,
    }
    assert worker.session.check_cache("file:///work/unknown.py")["evicted"] is False


def test_a_short_soak_runs_through_the_server_and_checks_as_it_goes(tmp_path: Path, tiny_model_dir: str) -> None:
    files = []
    for n in range(3):
        path = tmp_path / "src" / f"shop_{n}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(SOURCE * (n + 1))
        files.append(str(path))
    out_json = tmp_path / "soak.json"
    args = ["--model-path", tiny_model_dir, "--events", "200", "--check-every", "100", "--sample-every", "50"]
    args += ["--sample-kv-every", "10", "--sample-entries", "16"]
    out = subprocess.run(
        [sys.executable, "-m", "lsp_server.cli", "bench", "soak", *args, "--files", *files, "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out_json.read_text())
    summary = report["summary"]
    assert (
        200 <= summary["events"] <= 201  # the last action may send two (a keystroke and a completion)
        and summary["invariants"]["violations"] == 0
        and "server_errors" in summary["invariants"]
    )
    invariants = summary["invariants"]
    assert invariants["edits_checked"] > 100 and invariants["documents_checked"] >= 2 * 3  # >= 2 open, 3 rounds
    assert 0 <= invariants["kv_max_error"] <= invariants["kv_tolerance"]
    sampled = invariants["sampled_kv"]
    assert sampled["checks"] >= 10 and sampled["entries"] >= 10 * 16 and 0 <= sampled["max_error"] <= 1e-3
    assert (
        invariants["kv_comparisons"]
        == sampled["checks"] + invariants["documents_checked"] - (invariants["checked_without_kv"])
    )
    assert sum(summary["completions"].values()) == summary["actions"]["complete"] > 0
    latency = summary["latency"]
    assert latency["completion_from_keystroke"]["p95_ms"] > 0 and latency["edit_round_trip"]["p95_ms"] > 0
    memory = summary["memory"]
    assert len(memory["samples"]) >= 5 and memory["rss_after_load_mb"] > 0 and "slope_mb_per_1k_events" in memory
    run = report["run"]
    assert set(run["load_average"]) == {"start", "end"} and "bench soak" in run["command"]
    assert run["settings_differing"]["memoryBudgetMb"] == 256 and "contextTokens" not in run["settings_differing"]
    assert out.stdout.strip() == table(report)  # the one table printed is the JSON's
    assert "| invariant violations (server errors) | 0 (0): " in out.stdout


def soak_result(violations: int = 0, kv: float | None = 1e-5, sampled: float | None = 2e-6) -> dict[str, object]:
    """A handmade soak JSON, as `main` writes it."""
    tree = {"edits": 10, "p50_ms": 0.2, "p95_ms": 1.0, "p99_ms": 4.0, "max_ms": 6.0, "parse": {}}
    return {
        "benchmark": "soak",
        "summary": {
            "events": 3000,
            "wall_s": 700.4,
            "completions": {"answered": 20, "cancelled": 5},
            "invariants": {
                "violations": violations,
                "server_errors": 0,
                "edits_checked": 2500,
                "documents_checked": 12,
                "checked_without_kv": 2,
                "kv_comparisons": 310,
                "kv_max_error": kv,
                "kv_tolerance": 1e-3,
                "sampled_kv": {"checks": 300, "entries": 9600, "max_error": sampled},
            },
            "cache": {"budget_mb": 256, "peak_cache_mb": 250.2, "evicted_returns": 7},
            "memory": {
                "rss_after_load_mb": 900.0,
                "rss_peak_sampled_mb": 1500.0,
                "rss_final_mb": 1450.0,
                "growth_mb": 20.0,
                "slope_mb_per_1k_events": 1.5,
                "ceiling_mb": 1600.0,
                "held": True,
            },
            "latency": {
                "completion_from_keystroke": {"p50_ms": 300.0, "p95_ms": 900.4, "p99_ms": 1200.0},
                "edit_round_trip": {"p50_ms": 10.0, "p95_ms": 80.0, "p99_ms": 900.0},
            },
            "syntax_tree": tree,
        },
    }


def test_the_table_says_met_and_missed_from_the_figures() -> None:
    lines = table(soak_result()).splitlines()
    assert lines[:2] == ["| soak | value | target | met |", "|---|---|---|---|"]
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:]}
    assert rows["invariant violations (server errors)"].endswith("| 0 | met |")
    assert rows["KV vs full re-encode after refresh, max abs"] == (
        "| KV vs full re-encode after refresh, max abs | 1e-05 (10 comparisons) | <= 0.001 | met |"
    )
    assert "2e-06 (300 comparisons, 9600 entries)" in rows["first-layer KV vs fresh encode at sampled entries, max abs"]
    assert rows["completion from keystroke p50 / p95 / p99 (ms)"].endswith("| 300 / 900 / 1200 | - | - |")
    assert rows["RSS after load / peak / final (MB)"].endswith("| 900 / 1500 / 1450 | peak <= 1600 | met |")
    assert rows["syntax tree upkeep per edit p50 / p99 (ms)"].endswith("| 0.20 / 4.00 | <= 0.5 / <= 5 | met |")
    broken = table(soak_result(violations=2, kv=0.01, sampled=None)).splitlines()
    assert [line.rsplit(" | ", 1)[1] for line in broken[2:6]] == ["- |", "missed |", "missed |", "- |"]
