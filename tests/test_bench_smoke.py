"""The benchmarks that measure a server feature run through the engine session: each one's smallest
configuration on the tiny random model, and the JSON it writes (its keys, the settings it records as
differing from the server's defaults). The figures of a random model mean nothing; the paths do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import cache, context, drafting, drafts, edits, monitors, multiline, syntax
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


def test_drafting_bench_times_the_session_with_drafting_off_and_on(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "drafting.json"
    argv = ["--positions", "2", "--tune-positions", "1", "--modes", "line", "--model-path", tiny_model_dir]
    assert drafting.main([*argv, "--context-tokens", "256", "--index-files", "0", "--json", str(out)]) == 0
    data = written(out)
    assert data["benchmark"] == "drafting" and data["run"]["wall_s"] > 0
    assert data["run"]["settings_differing"] == {"modelPath": tiny_model_dir, "contextTokens": 256}
    assert data["mode_settings"] == {"line": {}}
    assert data["method_settings"]["greedy"] == {"drafting": False} and data["method_settings"]["drafting"] == {}
    assert data["project"]["files"] > 0 and data["index_files"] is None
    sweep = data["pld_sweep"]  # the tuned prompt lookup is the sweep's fastest configuration
    assert len(sweep["speedup"]) == len(drafting.PLD_GRID) and len(sweep["positions"]) == 1
    chosen = f"tokens={data['pld_tuned']['tokens']} max_n={data['pld_tuned']['max_n']}"
    assert sweep["tokens_per_s"][chosen] == max(v for k, v in sweep["tokens_per_s"].items() if k != "greedy")
    rows = data["modes"]["line"]
    assert list(rows) == list(drafting.METHODS)
    for method in drafting.OURS:  # drafts never change greedy's output
        assert rows[method]["runs"] == 2 and rows[method]["identical"] == 2, method
    first, second = data["records"]
    assert first["order"] == list(drafting.OURS) and second["order"] == [*drafting.OURS[1:], "greedy"]
    assert first["prompt_tokens"] > 0 and set(first["seconds"]) == set(drafting.METHODS)
    assert first["accepted_by_method"]["wrong-drafts"] == 0
    assert capsys.readouterr().out.strip() == drafting.table(data)


def test_drafting_bench_s_full_size_sets_every_size_its_smoke_size_sets() -> None:
    """A size only `--quick` set was None in `make bench`'s run (its `--modes` once was)."""
    assert set(drafting.QUICK) <= set(drafting.DEFAULT)
    assert drafting.DEFAULT["modes"] == list(drafting.MODES)


def drafting_row(tps: float, speedup: float, identical: int = 4) -> dict:
    return {
        "tokens_per_s": tps,
        "speedup": speedup,
        "median_position_speedup": speedup,
        "projected_speedup": speedup,
        "tokens_per_pass": 1.5,
        "identical": identical,
        "runs": 4,
    }


def test_drafting_table_judges_against_the_faster_of_tuned_prompt_lookup_and_greedy() -> None:
    line = {"greedy": drafting_row(30, 1), "drafting": drafting_row(40, 1.33), "wrong-drafts": drafting_row(29, 0.97)}
    line |= {"pld-tuned": drafting_row(24, 0.8), "hf-greedy": drafting_row(15, 0.5), "hf-pld": drafting_row(14, 0.47)}
    multi = {**line, "drafting": drafting_row(66, 2.2), "pld-tuned": drafting_row(45, 1.5)}
    result = {
        "modes": {"line": line, "multiline": multi},
        "pld_tuned": {"tokens": 4, "max_n": 2},
        "low_acceptance": {"positions": 3, "speedup": 0.96},
    }
    lines = drafting.table(json.loads(json.dumps(result))).splitlines()
    assert lines[1] == "|" + "---|" * 8 and len(lines) == 2 + 12 + 5
    assert lines[3] == "| line | drafting | 40.0 | 1.33x | 1.33x | 1.33x | 1.50 | 4/4 |"
    assert lines[6] == "| line | hf-greedy | 15.0 | 0.50x | 0.50x | - | - | 4/4 |"
    verdicts = lines[14:]
    assert verdicts[0].startswith("| target: 100% token-identical") and "32/32: **met**" in verdicts[0]
    assert "1.33x over greedy (faster than pld-tuned): **met**" in verdicts[1]  # pld slower than greedy: greedy
    assert "tokens=4, max_n=2" in verdicts[1] and "1.47x over pld-tuned: **met**" in verdicts[2]
    assert "low acceptance 0.96x (3 positions), wrong-drafts ≥ 0.97x: **met**" in verdicts[3]
    assert "2.20x: **met**" in verdicts[4]
    result["low_acceptance"]["speedup"] = 0.90  # the low-acceptance figure alone misses the 5% target
    multi["pld-tuned"] = drafting_row(60, 2.0)
    multi["hf-pld"] = drafting_row(14, 0.47, identical=3)
    verdicts = drafting.table(result).splitlines()[14:]
    assert "31/32: **missed**" in verdicts[0] and "1.10x over pld-tuned: **missed**" in verdicts[2]
    assert "low acceptance 0.90x (3 positions), wrong-drafts ≥ 0.97x: **missed**" in verdicts[3]


def test_drafts_bench_varies_drafts_method_and_ngram_weight_through_settings(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios = tmp_path / "scenarios.jsonl"
    lines = DEFAULT_SCENARIOS.read_text().splitlines()[:2]  # the project: these two files
    scenarios.write_text("\n".join(lines) + "\n")
    out = tmp_path / "drafts.json"
    argv = ["--scenarios", str(scenarios), "--limit", "2", "--ks", "1", "2", "--multiline-ks", "1"]
    argv += ["--methods", "superposed", "greedy-runs", "--alphas", "0", "0.4"]
    argv += ["--model-path", tiny_model_dir, "--context-tokens", "256", "--json", str(out)]
    assert drafts.main(argv) == 0
    data = written(out)
    common = {"modelPath": tiny_model_dir, "contextTokens": 256}
    assert data["benchmark"] == "drafts" and data["reference"] == "greedy+drafting"
    assert data["run"]["settings_differing"] == common and data["project_files"] == 2
    line = data["summary"]["line"]
    assert set(line) == {"greedy", "greedy+drafting", "superposed", "superposed a=0.4", "greedy-runs"}
    assert line["greedy"]["1"]["settings"] == {**common, "drafting": False}
    assert line["greedy+drafting"]["1"]["settings"] == common  # the server's single draft: drafting on
    assert line["greedy+drafting"]["1"]["x_one_draft_p50"] == 1.0
    assert line["superposed"]["2"]["settings"] == {**common, "drafts": 2}  # superposed, weight 0: the defaults
    assert line["superposed a=0.4"]["2"]["settings"] == {**common, "drafts": 2, "ngramWeight": 0.4}
    assert line["greedy-runs"]["2"]["settings"] == {**common, "drafts": 2, "draftMethod": "greedy-runs"}
    assert data["summary"]["3-line"]["greedy"]["1"]["settings"] == {**common, "multiline": True, "drafting": False}
    assert {"latency_ms_p50", "x_greedy_p50", "best_exact", "first_is_one_draft"} <= line["superposed"]["2"].keys()
    assert all(t["seconds"] > 0 for t in data["trials"])
    first, second = ([t["method"] for t in data["trials"] if t["scenario"] == sc and t["mode"] == "line"]
                     for sc in dict.fromkeys(t["scenario"] for t in data["trials"]))  # fmt: skip
    assert first[0] == "greedy+drafting" and second == [*first[1:], first[0]]  # rotated by one per position
    assert capsys.readouterr().out.strip() == drafts.table(data)


def drafts_cell(p50: float, first: float, best: float, n: int = 30) -> dict:
    return {
        "n": n,
        "latency_ms_p50": 400.0,
        "x_one_draft_p50": p50,
        "x_greedy_p50": p50 * 0.8,
        "distinct_drafts": 2.95,
        "first_exact": first,
        "best_exact": best,
        "first_similarity": 49.8,
        "best_similarity": 51.84,
        "first_is_one_draft": 75.0,
    }


def test_drafts_table_judges_k3_against_the_single_draft_with_drafting() -> None:
    line = {
        "greedy+drafting": {"1": drafts_cell(1.0, 2.5, 2.5)},
        "greedy": {"1": drafts_cell(1.25, 2.5, 2.5)},
        "superposed": {"2": drafts_cell(1.2, 2.5, 5.0), "3": drafts_cell(1.29, 2.5, 7.5)},
    }
    result = {"draft_method": "superposed", "summary": {"line": line}}
    lines = drafts.table(json.loads(json.dumps(result))).splitlines()
    assert lines[1] == "|" + "---|" * 12 and len(lines) == 2 + 4 + 3
    assert lines[2].startswith("| line | greedy+drafting | 1 | 30 | 400 | 1.00 | 0.80 |")
    assert lines[5] == "| line | superposed | 3 | 30 | 400 | 1.29 | 1.03 | 2.95 | 2.5 | 7.5 | 49.8 / 51.8 | 75.0 |"
    assert "cost ≤ 1.3x one draft" in lines[6] and "1.29x: **met**" in lines[6]
    assert "7.5% vs 2.5% (+5.0): **met**" in lines[7] and "2.5% vs 2.5%: **met**" in lines[8]
    line["superposed"]["3"] = drafts_cell(1.55, 0.0, 5.0)  # 1.55x the single draft: missed
    verdicts = drafts.table(result).splitlines()[6:]
    assert "1.55x: **missed**" in verdicts[0] and "(+2.5): **missed**" in verdicts[1]
    assert "0.0% vs 2.5%: **missed**" in verdicts[2]


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


def method(exact: float, nll: float, agreement: float | None = 100.0) -> dict:
    return {
        "n": 12,
        "update_ms_p50": 5.0,
        "update_ms_p90": 9.0,
        "ttft_ms_p50": 900.4,
        "ttft_ms_p90": 2400.6,
        "exact_match": exact,
        "edit_similarity": 48.44,
        "agreement_with_full": agreement,
        "target_nll": nll,
    }


def test_edits_table_judges_pie_against_full_from_the_written_json() -> None:
    mid = [{"context_tokens": 4090, "full_ttft_s": 14.8, "pie_ttft_s": 0.5}]
    result = {"summary": {"methods": {"full": method(16.7, 2.0), "pie": method(16.7, 2.019)}}, "mid_file": mid}
    lines = edits.table(json.loads(json.dumps(result))).splitlines()
    assert lines[0].endswith("| target NLL/token | target | met |") and lines[1] == "|" + "---|" * 10
    assert lines[2] == "| full | 12 | 5 / 9 | 900 / 2401 | 16.7 | 48.4 | 100.0 | 2.000 | - | - |"
    assert lines[3].startswith("| pie (before any refresh) | 12 |") and lines[3].endswith("| met; met |")
    assert lines[4].startswith("| one line inserted mid-file at 4090 tokens") and "| 14800 / 500 (29.6x) |" in lines[4]
    result["summary"]["methods"]["pie"] = method(15.0, 2.03)  # 1.7 points and 1.5% worse
    assert edits.table(result).splitlines()[3].endswith("| missed; missed |")
    del result["summary"]["methods"]["full"]
    assert edits.table({**result, "mid_file": []}).splitlines()[2].endswith("| - | - |")  # nothing to compare with


def test_edits_bench_writes_its_run_record_and_prints_its_table(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "edits.json"
    argv = ["--quick", "--limit", "1", "--context-tokens", "512", "--mid-file", "0", "--methods", "full", "pie"]
    assert edits.main([*argv, "--model", tiny_model_dir, "--json", str(out)]) == 0
    data = written(out)
    assert data["benchmark"] == "edits"
    assert data["run"]["settings_differing"] == {"modelPath": tiny_model_dir, "contextTokens": 512}
    assert data["run"]["model"] == tiny_model_dir and data["scenarios"] == 1
    assert set(data["summary"]["methods"]) <= {"full", "pie"} and data["mid_file"] == []
    assert capsys.readouterr().out.strip() == edits.table(data)


def cache_row(encoded: int, p95_ms: float) -> dict:
    return {
        "tokens": 3994,
        "bytes_per_1k_tokens": 47256805,
        "caret_move": {
            "distance_tokens": 1876,
            "move_cursor_ms": 0.22,
            "gap_move_ms": 15.96,
            "total_p95_ms": p95_ms,
            "encoded_tokens": encoded,
        },
        "decode_step": {"prompt_tokens": 2117, "document_ms": 75.18, "prompt_only_ms": 89.3},
        "far_edit": {
            "pie_edit_ms": 197.61,
            "pie_ready_ms": 123.75,
            "pie_encoded": 13,
            "prefix-reuse_edit_ms": 0.69,
            "prefix-reuse_ready_ms": 6833.99,
            "prefix-reuse_encoded": 1861,
            "speedup_ready_x": 21.3,
        },
    }


def test_cache_table_judges_the_caret_move_targets_from_the_written_json() -> None:
    result = json.loads(json.dumps({"rows": [cache_row(0, 17.04), cache_row(3, 50.5)]}))
    lines = cache.table(result).splitlines()
    assert lines[0].endswith("| MB per 1k tokens | target | met |") and lines[1] == "|" + "---|" * 7
    assert lines[2].startswith("| 3994 | 0.22 / 16.0, 17.0; 1876 tokens (0 encoded) | 75.2 / 89.3 | 321 / 6835 (21.3x)")
    assert lines[2].endswith(
        "| 45.1 | no forward pass for a caret move; caret move's cache work <= 50 ms p95 | met; met |"
    )
    assert lines[3].endswith("| missed; missed |") and len(lines) == 4


def test_contention_table_judges_the_server_policy_against_idle_and_libgomp_s_default() -> None:
    from benchmarks import contention

    def cell(policy: str, load: int, ms: float) -> dict[str, object]:
        return {"policy": policy, "load": load, "first_suggestion_s": 1.0, "keystroke_ms_p50": ms,
                "prefill_ms_per_token": 10.0}  # fmt: skip

    result = {"server_policy": "passive", "cells": [cell("default", 0, 100), cell("passive", 0, 105),
                                                      cell("passive", 1, 200)]}  # fmt: skip
    rows = contention.table(result).splitlines()
    assert "| idle | passive (the server) |" in rows[3]
    assert rows[-2].startswith("| target: 1 busy core") and "1.90x: **missed**" in rows[-2]
    assert rows[-1].startswith("| target: idle") and "1.05x: **met**" in rows[-1]
    assert contention.server_policy() == "passive"  # what lsp_server/cli.py sets for the server
