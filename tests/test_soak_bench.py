"""`livekv bench soak`: a short run through the real server, and its checks on states that are broken on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.soak import server_errors, slope_per_1k, state_problems
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
        200 <= summary["events"] <= 201  # the last action may send two (a completion, then the keystroke)
        and summary["invariants"]["violations"] == 0
        and "server_errors" in summary["invariants"]
    )
    invariants = summary["invariants"]
    assert invariants["edits_checked"] > 100 and invariants["documents_checked"] >= 2 * 3  # >= 2 open, 3 rounds
    assert 0 <= invariants["kv_max_error"] <= invariants["kv_tolerance"]
    assert sum(summary["completions"].values()) == summary["actions"]["complete"] > 0
    assert summary["latency"]["completion"]["p95_ms"] > 0 and summary["latency"]["edit_round_trip"]["p95_ms"] > 0
    memory = summary["memory"]
    assert len(memory["samples"]) >= 5 and memory["rss_after_load_mb"] > 0 and "slope_mb_per_1k_events" in memory
    assert set(report["load_average"]) == {"before", "after", "cpus"}
    assert "| invariant violations | 0, 0 of them server errors " in out.stdout
