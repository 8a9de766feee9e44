"""Check that the committed edit-benchmark scenarios are well-formed, and their edit helper."""

from __future__ import annotations

import ast
import json
import warnings
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from benchmarks.scenarios import EDIT_TYPES, apply_edits

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "edits.jsonl"
FIELDS = {"id", "kind", "edit_type", "before", "edits", "cursor", "target", "source"}


@cache
def scenarios() -> list[dict]:
    with DATA.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_enough_scenarios_with_unique_ids() -> None:
    ids = [s["id"] for s in scenarios()]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


def test_edit_types_are_balanced() -> None:
    counts = Counter(s["edit_type"] for s in scenarios())
    assert set(counts) == set(EDIT_TYPES)
    assert min(counts.values()) >= 25, counts


def test_no_file_dominates() -> None:
    counts = Counter(s["source"].rsplit(":", 1)[0] for s in scenarios())
    assert max(counts.values()) <= 5, counts.most_common(3)


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s["id"])
def test_scenario_is_well_formed(scenario: dict) -> None:
    assert set(scenario) == FIELDS
    before, edits, cursor = scenario["before"], scenario["edits"], scenario["cursor"]
    assert edits
    pos = 0
    for edit in edits:
        assert set(edit) == {"start", "end", "text"}
        assert pos <= edit["start"] <= edit["end"] <= len(before)
        assert edit["start"] < edit["end"] or edit["text"], "empty edit"
        pos = edit["end"]

    after = apply_edits(before, edits)
    shift = 0
    for edit in edits:  # every edit ends before the cursor, in `after` coordinates
        start = edit["start"] + shift
        assert start + len(edit["text"]) <= cursor
        shift += len(edit["text"]) - (edit["end"] - edit["start"])

    assert 0 < cursor < len(after)
    assert after[cursor - 1] == "\n"
    assert scenario["target"] == after[cursor:].split("\n")[0]
    assert scenario["target"].strip()

    inserts = all(e["start"] == e["end"] for e in edits)
    deletes = all(e["text"] == "" for e in edits)
    kind = "insertion" if inserts else "deletion" if deletes else "replacement"
    assert scenario["kind"] == kind

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(after, scenario["source"], "exec", dont_inherit=True)  # `after` is real code
    ast.parse(before)  # the earlier state is plausible: it parses too


def test_apply_edits_applies_in_order() -> None:
    edits = [
        {"start": 0, "end": 1, "text": "A"},
        {"start": 2, "end": 2, "text": "-"},
        {"start": 3, "end": 4, "text": ""},
    ]
    assert apply_edits("abcd", edits) == "Ab-c"
    assert apply_edits("abc", []) == "abc"


@pytest.mark.parametrize(
    "edits",
    [
        [{"start": 2, "end": 3, "text": ""}, {"start": 0, "end": 1, "text": ""}],  # unsorted
        [{"start": 0, "end": 2, "text": ""}, {"start": 1, "end": 3, "text": ""}],  # overlapping
        [{"start": 2, "end": 9, "text": ""}],  # out of range
    ],
)
def test_apply_edits_rejects_bad_edits(edits: list[dict]) -> None:
    with pytest.raises(ValueError, match="edit"):
        apply_edits("abcd", edits)
