"""Multi-line benchmark: `multiline: false`, `true` and `"auto"` on the edit benchmark's real next statements.

Points: the edit benchmark's scenarios (benchmarks/data/edits.jsonl, each once per file and line), the edits
applied; at each, the statement that starts at the scenario's caret is the truth. The user is about to write
it: the document is the edited file with that statement taken out (its first line's indentation kept, the
cursor after it), opened in the server's engine session (`EngineSession`), left to settle as after a pause
(the prompt encoded, idle-time steps run) and asked for a suggestion once per `multiline` value. Every other
setting is the server's default but for what a flag changes (the JSON's `settings`). The values take turns
at going first (the first request finds the caches as the settling left them), and jedi's answers are
forgotten before each request (a later one would find the answer an earlier one waited for: its names
constrained where the first decoded freely).

Figures per value: exact match and edit similarity of the suggestion's first line against the statement's
first line, and of the whole suggestion against the whole statement (both without trailing blanks), over
all points and split by whether the statement is one line or several (a compound statement, or one whose
brackets span lines); per value, how often the suggestion shown spans lines (`went_multiline`: a multi-line
decode cut back to one line, or to nothing, by "end on a complete statement" is not counted).

    livekv bench multiline [--scenarios FILE.jsonl] [--limit N] [--context-tokens N] [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import target_row, write_json
from benchmarks.edits import DEFAULT_SCENARIOS, edit_similarity
from benchmarks.engine_session import add_setting_flags, flag_settings, settle, start, with_settings
from benchmarks.scenarios import apply_edits
from completion.session import EngineSession
from completion.settings import Settings

VALUES: dict[str, bool | str] = {"false": False, "true": True, "auto": "auto"}


@dataclass(frozen=True)
class Point:
    id: str
    source: str
    doc: str  # the edited file without the statement
    cursor: int
    statement: str  # the statement as written, its first line's indentation left out


@dataclass
class Trial:
    id: str
    source: str
    value: str
    multiline_truth: bool  # the statement spans lines
    suggestion: str
    first_exact: bool
    first_similarity: float
    block_exact: bool
    block_similarity: float
    seconds: float


def statement_at(text: str, cursor: int) -> tuple[int, int] | None:
    """The character span of the statement that starts at `cursor` (after its line's indentation), or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return None
    line_start = text.rfind("\n", 0, cursor) + 1
    if text[line_start:cursor].strip():
        return None
    lineno = text.count("\n", 0, cursor) + 1
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)

    def offset(row: int, col: int) -> int:  # ast columns count UTF-8 bytes
        line = text[starts[row - 1] : starts[row]]
        return starts[row - 1] + len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))

    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno == lineno and offset(node.lineno, node.col_offset) == cursor:
            first = getattr(node, "decorator_list", None)
            if first:  # a decorated definition starts at its first decorator: not at this caret
                continue
            assert node.end_lineno is not None and node.end_col_offset is not None
            return cursor, offset(node.end_lineno, node.end_col_offset)
    return None


def select_points(path: Path, limit: int | None) -> list[Point]:
    """Each file and line once, in the file's order; `limit`: an evenly spaced subset."""
    points: dict[tuple[str, str], Point] = {}
    for row in map(json.loads, path.read_text(encoding="utf-8").splitlines()):
        text, cursor = apply_edits(row["before"], row["edits"]), row["cursor"]
        while cursor < len(text) and text[cursor] in " \t":  # the caret at the line's start: after its indentation
            cursor += 1
        span = statement_at(text, cursor)
        key = (row.get("source", row["id"]), row["target"])
        if span is None or key in points:
            continue
        start, end = span
        points[key] = Point(row["id"], key[0], text[:start] + text[end:], start, text[start:end])
    chosen = list(points.values())
    if limit is not None and limit < len(chosen):
        chosen = [chosen[i * len(chosen) // limit] for i in range(limit)]
    return chosen


def run_point(session: EngineSession, base: Settings, point: Point, index: int) -> list[Trial]:
    uri = f"file:///bench/{point.id}.py"
    session.open(uri, point.doc)
    settle(session, uri, point.cursor)
    truth = point.statement.rstrip()
    trials = []
    order = list(VALUES)[index % len(VALUES) :] + list(VALUES)[: index % len(VALUES)]  # none always first
    for value in order:
        session.apply_settings(with_settings(base, {"multiline": VALUES[value]}))
        assert session.monitors is not None
        session.monitors.analyzer.forget()  # each value's request asks jedi itself, as the first would
        answer = session.complete(uri, point.cursor)
        assert answer is not None, f"{uri} is not open in the session"
        text = answer.drafts[0].text.rstrip() if answer.drafts else ""
        first, truth_first = text.split("\n")[0].rstrip(), truth.split("\n")[0].rstrip()
        trials.append(
            Trial(
                id=point.id,
                source=point.source,
                value=value,
                multiline_truth="\n" in truth,
                suggestion=text,
                first_exact=first == truth_first,
                first_similarity=edit_similarity(first, truth_first),
                block_exact=text == truth,
                block_similarity=edit_similarity(text, truth),
                seconds=answer.seconds,
            )
        )
    session.apply_settings(base)
    session.close(uri)
    return sorted(trials, key=lambda t: list(VALUES).index(t.value))


def summarize(trials: Sequence[Trial]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for value in VALUES:
        groups = {
            "all": [t for t in trials if t.value == value],
            "one-line truth": [t for t in trials if t.value == value and not t.multiline_truth],
            "multi-line truth": [t for t in trials if t.value == value and t.multiline_truth],
        }
        out[value] = {
            name: {
                "n": len(ts),
                "first_exact": 100 * sum(t.first_exact for t in ts) / len(ts),
                "first_similarity": 100 * statistics.mean(t.first_similarity for t in ts),
                "block_exact": 100 * sum(t.block_exact for t in ts) / len(ts),
                "block_similarity": 100 * statistics.mean(t.block_similarity for t in ts),
                "went_multiline": 100 * sum("\n" in t.suggestion for t in ts) / len(ts),
                "seconds_p50": statistics.median(t.seconds for t in ts),
            }
            for name, ts in groups.items()
            if ts
        }
    return out


def table(result: dict[str, Any]) -> str:
    """Per value and group (all points, one-line and multi-line truths): first-line and whole-statement
    match, how often the suggestion spans lines, the request's time; then the target (`auto` keeps
    `false`'s first-line exact match)."""
    summary = result["summary"]
    lines = [
        "| multiline | points | first line exact % | first line sim % | statement exact % | statement sim % "
        "| shown over several lines % | request p50 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for value, groups in summary.items():
        shown = f"`{value}` (the default)" if VALUES[value] == Settings().multiline else f"`{value}`"
        for name, s in groups.items():
            lines.append(
                f"| {shown} | {name} ({s['n']}) | {s['first_exact']:.1f} | {s['first_similarity']:.1f} "
                f"| {s['block_exact']:.1f} | {s['block_similarity']:.1f} | {s['went_multiline']:.1f} "
                f"| {1000 * s['seconds_p50']:.0f} |"
            )
    auto, false = summary["auto"]["all"]["first_exact"], summary["false"]["all"]["first_exact"]
    lines.append(target_row(8, "`auto` keeps `false`'s first-line exact match", f"{auto:.1f} against {false:.1f}",
                            auto >= false))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench multiline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS)
    ap.add_argument("--limit", type=int, default=36, help="an evenly spaced subset of N points (0: all)")
    add_setting_flags(ap)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 points")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.limit = 2
    settings = flag_settings(args)
    points = select_points(args.scenarios, args.limit or None)
    if not points:
        raise SystemExit(f"no points: no scenario of {args.scenarios} has a statement at its caret")
    session = start(settings)
    trials: list[Trial] = []
    try:
        for i, point in enumerate(points):
            done = run_point(session, settings, point, i)
            trials += done
            marks = " ".join(f"{t.value}={'Y' if t.first_exact else '.'}{'Y' if t.block_exact else '.'}" for t in done)
            print(f"{point.source} {marks}", file=sys.stderr)
    finally:
        session.shutdown()
    result = json.loads(
        json.dumps({"values": VALUES, "summary": summarize(trials), "trials": [asdict(t) for t in trials]})
    )
    write_json(args.json_out, "multiline", model=session.model_name, settings=settings, **result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
