"""The benchmarks that measure a server feature run through the engine session: each one's smallest
configuration on the tiny random model, and the JSON it writes (its keys, the settings it records as
differing from the server's defaults). The figures of a random model mean nothing; the paths do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import context, drafting, drafts, monitors, multiline, syntax
from benchmarks.common import non_default
from benchmarks.edits import DEFAULT_SCENARIOS
from completion.settings import Settings


def written(path: Path) -> dict:
    assert path.is_file(), "the benchmark wrote no JSON"
    return json.loads(path.read_text())


def test_non_default_names_only_what_differs_in_camel_case() -> None:
    assert non_default(Settings()) == {}
    assert non_default(Settings(drafting=False, max_tokens=8)) == {"drafting": False, "maxTokens": 8}
    assert non_default(Settings(drafts=3), base=Settings(drafts=3)) == {}


def test_monitors_bench_asks_the_session_under_each_variant_s_settings(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "monitors.json"
    argv = ["--limit", "1", "--model-path", tiny_model_dir, "--context-tokens", "256", "--json", str(out)]
    assert monitors.main(argv) == 0
    data = written(out)
    summary = data["summary"]
    common = {"modelPath": tiny_model_dir, "contextTokens": 256, "indexWorkspace": False}
    assert data["run"]["settings_differing"] == common and summary["points"] == 1
    assert list(summary["variants"]) == ["plain", "first-token", "whole-names", "first-token-30s"]
    off = {"monitorMembers": False, "monitorImports": False, "monitorKeywords": False, "monitorSyntax": False}
    assert summary["variants"]["plain"]["settings"] == {**common, **off}
    whole = {"monitorWholeNames": False} if Settings().monitor_whole_names else {}
    other = {} if whole else {"monitorWholeNames": True}
    assert summary["variants"]["first-token"]["settings"] == {**common, **whole}
    assert summary["variants"]["whole-names"]["settings"] == {**common, **other}  # the server's monitors otherwise
    assert summary["variants"]["first-token-30s"]["settings"] == {**common, **whole, "jediTimeoutMs": 30_000}
    assert summary["default_variant"] == ("whole-names" if other == {} else "first-token")
    assert summary["environment"]["found_by"] in ("none", "VIRTUAL_ENV", "workspace")
    assert sum(summary["kinds"].values()) == 1
    for row in summary["variants"].values():
        keys = {"exact_pct", "exact_by_kind_pct", "hallucinated_pct", "hallucinated_resolved_pct", "jedi_in_time_pct"}
        assert keys | {"monitor_ms_per_token", "whole_name_ms_mean"} <= row.keys()
    (trial,) = data["trials"]
    assert trial["prompt_tokens"] > 0 and set(trial["predictions"]) == set(summary["variants"])
    assert trial["monitor_s"]["plain"] == 0.0  # no monitor ran with them all off
    printed = capsys.readouterr().out
    assert "(the server) |" in printed and printed.strip().endswith(monitors.table(data))
    assert printed.count("target: ") == 3


def test_drafting_bench_times_the_session_with_drafting_off_and_on(tiny_model_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "drafting.json"
    argv = ["--positions", "1", "--modes", "line", "--model-path", tiny_model_dir, "--context-tokens", "256"]
    assert drafting.main([*argv, "--index-files", "0", "--json", str(out)]) == 0
    data = written(out)
    assert data["settings"] == {"modelPath": tiny_model_dir, "contextTokens": 256}
    assert data["mode_settings"] == {"line": {}}
    assert data["method_settings"]["greedy"] == {"drafting": False} and data["method_settings"]["drafting"] == {}
    assert data["project"]["files"] > 0 and data["index_1000_files"] is None
    rows = data["modes"]["line"]
    assert list(rows) == list(drafting.METHODS)
    for method in ("greedy", "drafting", "wrong-drafts", "pld-ours"):  # drafts never change greedy's output
        assert rows[method]["runs"] == 1 and rows[method]["identical"] == 1, method
    (record,) = data["records"]
    assert record["prompt_tokens"] > 0 and set(record["seconds"]) == set(drafting.METHODS)
    assert record["accepted_by_method"]["wrong-drafts"] == 0


def test_drafts_bench_varies_drafts_method_and_ngram_weight_through_settings(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    scenarios = tmp_path / "scenarios.jsonl"
    lines = DEFAULT_SCENARIOS.read_text().splitlines()[:2]  # the project: these two files
    scenarios.write_text("\n".join(lines) + "\n")
    out = tmp_path / "drafts.json"
    argv = ["--scenarios", str(scenarios), "--limit", "1", "--ks", "1", "2", "--multiline-ks", "1"]
    argv += ["--methods", "superposed", "--alphas", "0", "0.4", "--with-drafting"]
    argv += ["--model-path", tiny_model_dir, "--context-tokens", "256", "--json", str(out)]
    assert drafts.main(argv) == 0
    data = written(out)
    common = {"modelPath": tiny_model_dir, "contextTokens": 256}
    assert data["settings"] == common and data["project_files"] == 2
    line = data["summary"]["line"]
    assert set(line) == {"greedy", "greedy+drafting", "superposed", "superposed a=0.4"}
    assert line["greedy"]["1"]["settings"] == {**common, "drafting": False}
    assert line["greedy+drafting"]["1"]["settings"] == common
    assert line["superposed"]["2"]["settings"] == {**common, "drafts": 2}  # superposed, weight 0: the defaults
    assert line["superposed a=0.4"]["2"]["settings"] == {**common, "drafts": 2, "ngramWeight": 0.4}
    assert data["summary"]["3-line"]["greedy"]["1"]["settings"] == {**common, "multiline": True, "drafting": False}
    assert {"latency_ms_p50", "best_exact", "first_is_greedy"} <= line["superposed"]["2"].keys()
    assert all(t["seconds"] > 0 for t in data["trials"])


def test_syntax_bench_compares_the_session_with_and_without_the_syntax_monitor(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    out = tmp_path / "syntax.json"
    argv = ["--files", "1", "--points", "1", "--model-path", tiny_model_dir, "--context-tokens", "256"]
    assert syntax.main([*argv, "--max-tokens", "8", "--json", str(out)]) == 0
    data = written(out)
    common = {"modelPath": tiny_model_dir, "contextTokens": 256, "maxTokens": 8, "multiline": True}
    assert data["run"]["settings_differing"] == common
    assert data["variant_settings"] == {
        "plain": {**common, "monitorSyntax": False},
        "monitor+complete": common,
        "no tree": {**common, "syntaxTree": False},
    }
    summary = data["summary"]
    assert summary["points"] == 1 and {"plain", "monitor+complete", "no tree", "tree_verdict"} <= summary.keys()
    (trial,) = data["trials"]
    assert trial["context_tokens"] > 0 and 0 < trial["monitored_tokens"] <= 8 and trial["k"] == 8
    assert trial["region_us_tree"] > 0 and trial["region_us_text"] > 0


def test_context_bench_asks_the_session_in_every_mode(tiny_model_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "context.json"
    argv = ["--packages", "click", "--points", "1", "--model", tiny_model_dir, "--context-tokens", "1024"]
    assert context.main([*argv, "--set", "maxTokens=4", "--json", str(out)]) == 0
    data = written(out)
    assert data["run"]["settings_differing"] == {"modelPath": tiny_model_dir, "contextTokens": 1024, "maxTokens": 4}
    assert data["session_default"] == {"chunking": "definitions", "style": "markers"}  # the tokenizer has them
    trials = {t["mode"]: t for t in data["trials"]}
    assert trials.keys() == set(context.MODES) == data["summary"].keys()
    assert trials["off"]["context_chars"] == 0
    assert trials["definitions+markers"]["context_chars"] > 0 and trials["lines"]["context_chars"] > 0


def test_multiline_bench_asks_the_session_with_each_value(tiny_model_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "multiline.json"
    argv = ["--limit", "2", "--model", tiny_model_dir, "--context-tokens", "256", "--set", "maxTokens=6"]
    assert multiline.main([*argv, "--json", str(out)]) == 0
    data = written(out)
    assert data["run"]["settings_differing"] == {"modelPath": tiny_model_dir, "contextTokens": 256, "maxTokens": 6}
    assert data["summary"].keys() == set(multiline.VALUES) and data["summary"]["auto"]["all"]["n"] == 2
    assert [t["value"] for t in data["trials"]] == list(multiline.VALUES) * 2
    assert all("\n" not in t["suggestion"] for t in data["trials"] if t["value"] == "false")


def test_the_multiline_truth_is_the_statement_at_the_caret() -> None:
    text = "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\n    y = (1,\n         2)\n"
    at_if = text.index("if x")
    assert text[slice(*multiline.statement_at(text, at_if))] == "if x:\n        return 1\n    else:\n        return 2"
    assert text[slice(*multiline.statement_at(text, text.index("y =")))] == "y = (1,\n         2)"
    assert multiline.statement_at(text, at_if + 1) is None  # not where a statement starts


def test_syntax_bench_times_the_set_up_alone(tmp_path: Path) -> None:
    out = tmp_path / "setup.json"
    assert syntax.main(["--files", "1", "--points", "2", "--setup-only", "--json", str(out)]) == 0
    data = written(out)
    assert data["summary"]["points"] == 2 and all(p["tree_us"] > 0 and p["text_us"] > 0 for p in data["points"])
