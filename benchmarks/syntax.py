"""Syntax benchmark: how often do multi-line completions leave the file parseable, with and
without the syntax monitor?

Points are drawn deterministically (fixed seed) from the standard library's own pure-Python
files (sorted; 2-60 KB; test directories and the generated encodings excluded): statements
inside function bodies that begin their line. At each point the user has just opened a new line
before that statement (the cursor after the indentation): that document is opened in the
server's engine session (`EngineSession`, under the file's own name), left to settle as after a
pause (the prompt encoded, idle-time steps run) and asked for a multi-line suggestion there
(`EngineSession.complete` with `multiline: true`: the server's stop rules, post-processing and
time budget), three times:

- `plain`: `monitorSyntax: false`: no syntax monitor, and no cut to a complete statement;
- `monitor+complete`: the server's defaults: the syntax monitor while decoding, then the
  suggestion cut back to its last complete statement (`complete_statements`), as the server
  sends it;
- `no tree`: the same with `syntaxTree: false`: the hand-written paths the server falls back on
  without a syntax tree (multi-line stops by indentation, the monitor's region read off the text).

Also per point: tree-sitter's verdict (no ERROR or MISSING node) on the same spliced files beside
CPython's, and the syntax monitor's set-up (its region) timed from the tree and off the text.

The name monitors (`monitorMembers`, `monitorImports`, `monitorKeywords`) are on in both, as by
default; every other setting is the server's default but for what a flag changes
(`--max-tokens`, `--context-tokens`, `--model`, `--threads`, `--weights`, `--device`, `--set`),
and the JSON records the settings that differ from the defaults (`settings`, and each variant's
under `variant_settings`). A completion is valid if the file with it spliced in at the cursor
parses (`ast.parse`), or, where only blanks follow the cursor, if the result is a valid prefix
(`codeop`). Tokens and monitor figures are read beside the session without changing what it
does (`engine_session.MonitorTap`: the monitors' stats, and each step's pick).

What changed from the benchmark before it went through the session (its results are not
comparable row for row): the `monitor` row (the monitored suggestion before the cut) is gone,
since the server never sends it, and with it the figures of what the cut removed; suggestions
are at most the server's `maxTokens` (48) within its 3 s time budget (before: 64 tokens, no
budget), on the server's `contextTokens` window (4096; before: 1024) with the name monitors on
(before: the syntax monitor alone); and `--k` (candidates the monitor checks per step) is gone:
it is not a server setting (the JSON records the monitor's own, `k`).

    livekv bench syntax [--files N] [--points N] [--max-tokens N] [--context-tokens N]
                        [--weights fp32] [--json OUT]
    livekv bench syntax --setup-only [--json OUT]   # the set-up alone, at the same points, no model
"""

from __future__ import annotations

import argparse
import ast
import codeop
import json
import math
import random
import statistics
import sys
import sysconfig
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import non_default, pct, setting, target_row, write_json
from benchmarks.engine_session import MonitorTap, settle, start, with_settings
from completion.model.formats import WEIGHT_CHOICES
from completion.session import EngineSession
from completion.settings import Settings
from completion.syntax.tree import DocTree
from monitors.syntax import SyntaxMonitor, region_at

# Tests are not code people complete; encodings/ is ~100 generated codec tables that would crowd out the rest.
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "encodings"}
MIN_BYTES, MAX_BYTES = 2_000, 60_000
SEED = 0
BASE = {"multiline": True}  # the benchmark's subject: multi-line suggestions
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"monitorSyntax": False},
    "monitor+complete": {},
    "no tree": {"syntaxTree": False},  # monitor+complete on the hand-written paths (indentation stops, lexed region)
}
SETUP_REPEATS = 5  # the syntax monitor's region is timed this many times per point (median)


@dataclass(frozen=True)
class Point:
    path: str  # relative to the standard library's directory, POSIX separators
    line: int  # 1-based line of the statement
    offset: int  # character offset where the statement starts (after its indentation)


@dataclass
class Trial:
    path: str
    line: int
    context_tokens: int  # the prompt's tokens
    plain: str  # the suggestion without the syntax monitor
    completed: str  # ... with it, as the server sends it (cut by complete_statements)
    untreed: str  # ... as the server sends it with syntaxTree off
    plain_valid: bool
    completed_valid: bool
    untreed_valid: bool
    plain_tree_ok: bool  # tree-sitter's verdict on the same spliced files: no ERROR or MISSING node
    completed_tree_ok: bool
    plain_tokens: int  # decoding steps
    monitored_tokens: int
    plain_s: float  # latency of the whole request (Answer.seconds)
    monitored_s: float
    untreed_s: float
    monitor_s: float  # time inside the monitors of the monitored request (set-up included, jedi's waits not)
    plain_monitor_s: float  # ... of the plain one (the name monitors)
    repairs: int
    monitor_active: bool
    k: int  # candidates the syntax monitor checked per step
    region_us_tree: float  # the syntax monitor's set-up (its region) at the point, from the tree (median)
    region_us_text: float  # ... read off the text, as without a tree


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[Path]:
    """Pure-Python standard library files of 2-60 KB outside test directories, sorted by path."""
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if SKIP_DIRS.isdisjoint(rel.parts[:-1]) and path.is_file() and MIN_BYTES <= path.stat().st_size <= MAX_BYTES:
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def statement_starts(text: str) -> list[int]:
    """Character offsets of the statements inside function bodies that begin their line."""
    with warnings.catch_warnings():  # old escapes in the files are not our concern
        warnings.simplefilter("ignore")
        tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    line_offsets = [0]
    for line in lines:
        line_offsets.append(line_offsets[-1] + len(line))
    found: set[int] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for body_stmt in fn.body:
            for node in ast.walk(body_stmt):
                if not isinstance(node, ast.stmt):
                    continue
                line = lines[node.lineno - 1]
                col = len(line.encode("utf-8")[: node.col_offset].decode("utf-8"))  # col_offset counts bytes
                if not line[:col].strip():
                    found.add(line_offsets[node.lineno - 1] + col)
    return sorted(found)


def select_points(root: Path, files: int, points: int, seed: int = SEED) -> list[Point]:
    """`points` positions spread over `files` files, the same on every run for one stdlib."""
    if files < 1 or points < 1:
        raise ValueError(f"files and points must be >= 1, got {files} and {points}")
    order = stdlib_files(root)
    rng = random.Random(seed)
    rng.shuffle(order)
    per_file = math.ceil(points / files)
    chosen: list[Point] = []
    used = 0
    for path in order:
        if len(chosen) >= points or used == files:
            break
        try:
            text = path.read_text(encoding="utf-8")
            starts = statement_starts(text)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        if not starts:
            continue
        used += 1
        for offset in sorted(rng.sample(starts, min(per_file, len(starts), points - len(chosen)))):
            line = text.count("\n", 0, offset) + 1
            chosen.append(Point(path.relative_to(root).as_posix(), line, offset))
    return chosen


def document_at(text: str, offset: int) -> str:
    """The file with a new, empty line opened before the statement at `offset`: the cursor stays
    at `offset`, after the indentation, and the statement moves to the next line."""
    indent = text[text.rfind("\n", 0, offset) + 1 : offset]
    return text[:offset] + "\n" + indent + text[offset:]


def splice_valid(doc: str, cursor: int, suggestion: str) -> bool:
    """The file with `suggestion` inserted at `cursor` parses (or is a valid prefix, at the end)."""
    spliced = doc[:cursor] + suggestion + doc[cursor:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if doc[cursor:].strip():
                ast.parse(spliced)
            else:
                codeop.compile_command(spliced + "\n", "<bench>", "exec")
        except (SyntaxError, ValueError, OverflowError):
            return False
    return True


def run_point(
    session: EngineSession, tap: MonitorTap, variants: dict[str, Settings], root: Path, point: Point
) -> Trial:
    doc = document_at((root / point.path).read_text(encoding="utf-8"), point.offset)
    uri = (root / point.path).as_uri()
    session.open(uri, doc)
    prompt_tokens = settle(session, uri, point.offset)
    assert session.engine is not None
    eos = session.engine.tokenizer.all_special_ids
    results = {}
    # Alternate which variant runs first, so neither always finds the caches warm.
    order = list(variants) if point.line % 2 else list(reversed(variants))
    for variant in order:
        session.apply_settings(variants[variant])
        tap.clear()
        answer = session.complete(uri, point.offset)
        assert answer is not None, f"{uri} is not open in the session"
        tapped = tap.last()
        assert tapped.picks is not None
        text = answer.drafts[0].text if answer.drafts else ""
        results[variant] = (text, len(tapped.picks.tokens(eos)), answer.seconds, tapped)
    session.close(uri)
    plain, plain_tokens, plain_s, plain_tap = results["plain"]
    completed, monitored_tokens, monitored_s, tapped = results["monitor+complete"]
    untreed, _, untreed_s, _ = results["no tree"]
    tree = DocTree.of(doc)
    monitor = next(p for p in tapped.processors if isinstance(p, SyntaxMonitor))
    return Trial(
        path=point.path,
        line=point.line,
        context_tokens=prompt_tokens,
        plain=plain,
        completed=completed,
        untreed=untreed,
        plain_valid=splice_valid(doc, point.offset, plain),
        completed_valid=splice_valid(doc, point.offset, completed),
        untreed_valid=splice_valid(doc, point.offset, untreed),
        plain_tree_ok=tree_ok(doc, point.offset, plain),
        completed_tree_ok=tree_ok(doc, point.offset, completed),
        plain_tokens=plain_tokens,
        monitored_tokens=monitored_tokens,
        plain_s=plain_s,
        monitored_s=monitored_s,
        untreed_s=untreed_s,
        monitor_s=tapped.stats.seconds,
        plain_monitor_s=plain_tap.stats.seconds,
        repairs=tapped.stats.repairs,
        monitor_active=monitor.active,
        k=monitor.k,
        region_us_tree=region_us(doc, point.offset, tree),
        region_us_text=region_us(doc, point.offset, None),
    )


def tree_ok(doc: str, cursor: int, suggestion: str) -> bool:
    """tree-sitter's verdict on the spliced file (beside `splice_valid`'s, which is CPython's)."""
    tree = DocTree.of(doc[:cursor] + suggestion + doc[cursor:])
    return tree is not None and tree.parses_cleanly()


def region_us(doc: str, cursor: int, tree: DocTree | None) -> float:
    """The syntax monitor's set-up at `cursor` (its region), in microseconds, the median of a few."""
    times = []
    for _ in range(SETUP_REPEATS):
        t0 = time.perf_counter()
        region_at(doc, cursor, tree)
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def setup_only(points: Sequence[Point], out: Path | None) -> int:
    """The syntax monitor's set-up at each point, from the tree and off the text (`region_us`), without
    decoding: the figure a run with requests reports, in seconds rather than minutes."""
    root = stdlib_root()
    rows = []
    for point in points:
        doc = document_at((root / point.path).read_text(encoding="utf-8"), point.offset)
        tree = DocTree.of(doc)
        rows.append({"path": point.path, "line": point.line, "tree_us": region_us(doc, point.offset, tree),
                     "text_us": region_us(doc, point.offset, None)})  # fmt: skip
    summary = {
        "points": len(rows),
        "region_us_tree_p50": statistics.median(r["tree_us"] for r in rows),
        "region_us_text_p50": statistics.median(r["text_us"] for r in rows),
        "region_us_tree_p95": pct([r["tree_us"] for r in rows], 95),
    }
    print("| points | set-up from the tree p50 / p95 (µs) | read off the text p50 (µs) |")
    print("|---|---|---|")
    print(f"| {summary['points']} | {summary['region_us_tree_p50']:.0f} / {summary['region_us_tree_p95']:.0f} "
          f"| {summary['region_us_text_p50']:.0f} |")  # fmt: skip
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, "syntax --setup-only", summary=summary, points=rows)
    return 0


def summarize(trials: Sequence[Trial]) -> dict:
    def variant(texts: list[str], valid: list[bool], tokens: list[int], seconds: list[float]) -> dict:
        shown = [v for t, v in zip(texts, valid, strict=True) if t]
        return {
            "suggestions": len(shown),  # non-empty ones
            "valid": sum(shown),
            "valid_pct": 100 * sum(shown) / len(shown) if shown else None,
            "mean_chars": statistics.mean(len(t) for t in texts) if texts else None,
            "mean_tokens": statistics.mean(tokens) if tokens else None,
            "mean_latency_ms": 1000 * statistics.mean(seconds) if seconds else None,
        }

    ts = list(trials)
    tokens = sum(t.monitored_tokens for t in ts)
    decode_s = sum(t.monitored_s for t in ts)
    monitor_s = sum(t.monitor_s for t in ts)
    plain_tokens = sum(t.plain_tokens for t in ts)
    plain_monitor_s = sum(t.plain_monitor_s for t in ts)
    return {
        "points": len(ts),
        "plain": variant(
            [t.plain for t in ts], [t.plain_valid for t in ts], [t.plain_tokens for t in ts], [t.plain_s for t in ts]
        ),
        "monitor+complete": variant(
            [t.completed for t in ts],
            [t.completed_valid for t in ts],
            [t.monitored_tokens for t in ts],
            [t.monitored_s for t in ts],
        ),
        "no tree": variant([t.untreed for t in ts], [t.untreed_valid for t in ts], [], [t.untreed_s for t in ts]),
        # tree-sitter's verdict against CPython's on the same non-empty spliced files
        "tree_verdict": {
            name: {
                "agree": sum(ok == valid for text, ok, valid in rows if text),
                "tree_only": sum(ok and not valid for text, ok, valid in rows if text),  # tree-sitter lenient
                "cpython_only": sum(valid and not ok for text, ok, valid in rows if text),
            }
            for name, rows in (
                ("plain", [(t.plain, t.plain_tree_ok, t.plain_valid) for t in ts]),
                ("monitor+complete", [(t.completed, t.completed_tree_ok, t.completed_valid) for t in ts]),
            )
        },
        "region_us_tree_p50": statistics.median(t.region_us_tree for t in ts) if ts else None,
        "region_us_text_p50": statistics.median(t.region_us_text for t in ts) if ts else None,
        "repairs": sum(t.repairs for t in ts),
        "monitor_inactive": sum(not t.monitor_active for t in ts),
        # all the monitored request's monitors (syntax and names); the plain request's name monitors alone below
        "monitor_us_per_token": 1e6 * monitor_s / tokens if tokens else None,
        "plain_monitor_us_per_token": 1e6 * plain_monitor_s / plain_tokens if plain_tokens else None,
        "monitor_fraction_of_step": monitor_s / decode_s if decode_s else None,
        "same_text_with_monitor": sum(t.plain == t.completed for t in ts),
    }


SHOWN_TARGET = 29 / 31  # the issue's "a suggestion at 29 of 31 points"


def table(result: dict[str, Any]) -> str:
    """Per variant: suggestions shown of all points, valid of those shown and of all points (an empty
    suggestion is not a valid one), size and latency; then the targets and the monitor's own effect."""
    s = result["summary"]
    points = s["points"]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [
        "| variant | shown (of points) | valid, of shown | valid, of all points | mean chars | mean latency (ms) |",
        "|---|---|---|---|---|---|",
    ]
    names = {"plain": "plain (no monitor, no cut)", "monitor+complete": "monitor + cut (the server)",
             "no tree": "monitor + cut, syntaxTree false"}  # fmt: skip
    for key, name in names.items():
        v = s[key]
        lines.append(
            f"| {name} | {v['suggestions']} of {points} | {v['valid']} ({fmt(v['valid_pct'], '.1f')}%) "
            f"| {fmt(100 * v['valid'] / points if points else None, '.1f')}% | {fmt(v['mean_chars'], '.0f')} "
            f"| {fmt(v['mean_latency_ms'], '.0f')} |"
        )
    server = s["monitor+complete"]
    share = s["monitor_fraction_of_step"]
    lines.append(
        f"| the syntax monitor alone | repaired {s['repairs']} steps; inactive at {s['monitor_inactive']} points "
        f"| {s['same_text_with_monitor']} of {points} suggestions as plain | {fmt(s['monitor_us_per_token'], '.0f')} "
        f"µs/token ({fmt(None if share is None else 100 * share, '.1f')}% of the request) | | |"
    )
    shown = server["suggestions"] / points if points else 0.0
    lines.append(target_row(6, "a suggestion at ≥ 29 of 31 points", f"{server['suggestions']} of {points}",
                            shown >= SHOWN_TARGET))  # fmt: skip
    lines.append(target_row(6, "every shown suggestion parses", f"{server['valid']} of {server['suggestions']}",
                            server["valid"] == server["suggestions"]))  # fmt: skip
    region = s["region_us_tree_p50"]
    lines.append(target_row(6, "monitor set-up ≤ 50 µs from the tree (p50)", f"{fmt(region, '.0f')} µs",
                            region is not None and region <= 50))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench syntax", description=__doc__.split("\n\n")[0])
    # Each point is two multi-line requests on a settled document (the server's 4k-token window).
    ap.add_argument("--files", type=int, default=16, help="standard-library files to draw points from")
    ap.add_argument("--points", type=int, default=32, help="completion points in all (spread over the files)")
    ap.add_argument("--max-tokens", type=int, default=None, help="maxTokens (default: the server's)")
    ap.add_argument("--context-tokens", type=int, default=None, help="contextTokens (default: the server's)")
    ap.add_argument("--seed", type=int, default=SEED, help="which points (the same seed, the same points)")
    ap.add_argument("--model", "--model-path", dest="model", default=None, help="modelPath (default: embedded)")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: the server's)")
    ap.add_argument(
        "--weights", default=None, choices=WEIGHT_CHOICES, help="the runner's weight format (default: the server's)"
    )
    ap.add_argument("--device", default=None, help="cpu or cuda[:N] (default: the server's)")
    ap.add_argument(
        "--set", type=setting, action="append", default=[], metavar="KEY=JSON", help="another server setting"
    )
    ap.add_argument(
        "--setup-only", action="store_true", help="only time the syntax monitor's set-up at the points (no model)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 points from 3 files")
    ap.add_argument("--json", type=Path, default=None, help="write per-point results and the summary here")
    args = ap.parse_args(argv)
    if args.quick:
        args.files, args.points = 3, 3
    if args.setup_only:
        return setup_only(select_points(stdlib_root(), args.files, args.points, args.seed), args.json)

    flags = {
        "maxTokens": args.max_tokens,
        "contextTokens": args.context_tokens,
        "modelPath": args.model,
        "threads": args.threads,
        "weights": args.weights,
        "device": args.device,
    }
    base = with_settings(Settings(), {**BASE, **{k: v for k, v in flags.items() if v is not None}, **dict(args.set)})
    variants = {name: with_settings(base, overlay) for name, overlay in VARIANTS.items()}
    root = stdlib_root()
    points = select_points(root, args.files, args.points, args.seed)
    session = start(base)
    assert session.monitors is not None
    tap = MonitorTap(session.monitors, picks=True)
    trials: list[Trial] = []
    t0 = time.perf_counter()
    for i, point in enumerate(points, 1):
        t = run_point(session, tap, variants, root, point)
        trials.append(t)
        mark = lambda ok, text: "-" if not text else "Y" if ok else "."  # noqa: E731
        print(
            f"[{i}/{len(points)} {time.perf_counter() - t0:.0f}s] {point.path}:{point.line} "
            f"plain={mark(t.plain_valid, t.plain)} complete={mark(t.completed_valid, t.completed)} "
            f"repairs={t.repairs}",
            file=sys.stderr,
            flush=True,
        )
    session.shutdown()
    result = json.loads(
        json.dumps(
            {
                "variant_settings": {name: non_default(v) for name, v in variants.items()},
                "k": trials[0].k if trials else None,
                "seed": args.seed,
                "stdlib": str(root),
                "summary": summarize(trials),
                "trials": [asdict(t) for t in trials],
            }
        )
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, "syntax", model=args.model, settings=base, **result)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
