"""Syntax benchmark: how often do multi-line completions leave the file parseable, with and
without the syntax monitor?

Points are drawn deterministically (fixed seed) from the standard library's own pure-Python
files (sorted; 2-60 KB; test directories and the generated encodings excluded): statements
inside function bodies that begin their line. At each point the user has just opened a new line before that statement
(the cursor after the indentation) and the model writes a multi-line completion there, with
`inline` in multi-line mode (the editor's stop rules and clean-up), twice from the same
document and cache: plain, and with the SyntaxMonitor. A completion is valid if the file with
it spliced in at the cursor parses (`ast.parse`), or, where only blanks follow the cursor, if
the result is a valid prefix (`codeop`). The monitored completion is also cut back to its
last complete statement with `complete_statements` and checked again ("monitor+complete").

    livekv bench syntax [--files N] [--points N] [--max-tokens 64] [--context-tokens 1024]
                        [--weights fp32] [--json OUT]
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

import torch

from completion.decoding.suggest import CompletionOptions, inline
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.formats import FORMATS
from completion.model.loading import load_model
from completion.model.vocab import Vocabulary
from monitors.base import MonitorStats, Site
from monitors.syntax import SyntaxMonitor, complete_statements

# Tests are not code people complete; encodings/ is ~100 generated codec tables that would crowd out the rest.
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "encodings"}
MIN_BYTES, MAX_BYTES = 2_000, 60_000
SEED = 0


@dataclass(frozen=True)
class Point:
    path: str  # relative to the standard library's directory, POSIX separators
    line: int  # 1-based line of the statement
    offset: int  # character offset where the statement starts (after its indentation)


@dataclass
class Trial:
    path: str
    line: int
    context_tokens: int
    plain: str  # the suggestion without the monitor
    monitored: str  # ... with it
    completed: str  # `monitored` cut by complete_statements
    plain_valid: bool
    monitored_valid: bool
    completed_valid: bool
    plain_tokens: int  # decoding steps
    monitored_tokens: int
    plain_s: float  # latency of the whole suggestion
    monitored_s: float
    monitor_s: float  # time inside the monitor (set-up included)
    repairs: int
    monitor_active: bool


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


class StepCounter:
    """A processor that only counts decoding steps."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return logits


def run_point(
    engine: Engine, vocab: Vocabulary, root: Path, point: Point, options: CompletionOptions, context_tokens: int, k: int
) -> Trial:
    doc = document_at((root / point.path).read_text(encoding="utf-8"), point.offset)
    live = LiveDocument(engine, doc, cursor=point.offset, window=context_tokens)
    site = Site(doc, point.offset, live.heal)
    results = {}
    monitor = None
    stats = MonitorStats()
    # Alternate which variant runs first, so neither always finds the caches warm.
    variants = ("plain", "monitored") if point.line % 2 else ("monitored", "plain")
    for variant in variants:
        counter = StepCounter()
        processors = [counter]
        if variant == "monitored":
            monitor = SyntaxMonitor(vocab, site, stats, k=k)
            processors.append(monitor)
        t0 = time.perf_counter()
        drafts = inline(live, vocab, options, processors=processors)
        results[variant] = (drafts[0].text if drafts else "", counter.steps, time.perf_counter() - t0)
    assert monitor is not None
    plain, plain_tokens, plain_s = results["plain"]
    monitored, monitored_tokens, monitored_s = results["monitored"]
    completed = complete_statements(monitored, site)
    return Trial(
        path=point.path,
        line=point.line,
        context_tokens=len(live.prompt),
        plain=plain,
        monitored=monitored,
        completed=completed,
        plain_valid=splice_valid(doc, point.offset, plain),
        monitored_valid=splice_valid(doc, point.offset, monitored),
        completed_valid=splice_valid(doc, point.offset, completed),
        plain_tokens=plain_tokens,
        monitored_tokens=monitored_tokens,
        plain_s=plain_s,
        monitored_s=monitored_s,
        monitor_s=stats.seconds,
        repairs=stats.repairs,
        monitor_active=monitor.active,
    )


def summarize(trials: Sequence[Trial]) -> dict:
    def variant(texts: list[str], valid: list[bool], tokens: list[int] | None, seconds: list[float] | None) -> dict:
        shown = [v for t, v in zip(texts, valid, strict=True) if t]
        return {
            "suggestions": len(shown),  # non-empty ones
            "valid": sum(shown),
            "valid_pct": 100 * sum(shown) / len(shown) if shown else None,
            "mean_chars": statistics.mean(len(t) for t in texts),
            "mean_tokens": statistics.mean(tokens) if tokens else None,
            "mean_latency_ms": 1000 * statistics.mean(seconds) if seconds else None,
        }

    ts = list(trials)
    tokens = sum(t.monitored_tokens for t in ts)
    decode_s = sum(t.monitored_s for t in ts)
    monitor_s = sum(t.monitor_s for t in ts)
    trimmed = [t for t in ts if t.completed != t.monitored]
    return {
        "points": len(ts),
        "plain": variant(
            [t.plain for t in ts], [t.plain_valid for t in ts], [t.plain_tokens for t in ts], [t.plain_s for t in ts]
        ),
        "monitor": variant(
            [t.monitored for t in ts],
            [t.monitored_valid for t in ts],
            [t.monitored_tokens for t in ts],
            [t.monitored_s for t in ts],
        ),
        "monitor+complete": variant([t.completed for t in ts], [t.completed_valid for t in ts], None, None),
        "repairs": sum(t.repairs for t in ts),
        "monitor_inactive": sum(not t.monitor_active for t in ts),
        "monitor_us_per_token": 1e6 * monitor_s / tokens if tokens else None,
        "monitor_fraction_of_step": monitor_s / decode_s if decode_s else None,
        "same_text_with_monitor": sum(t.plain == t.monitored for t in ts),
        "complete_trimmed": len(trimmed),
        "complete_trimmed_to_empty": sum(not t.completed and bool(t.monitored) for t in ts),
        "complete_mean_chars_cut": statistics.mean(len(t.monitored) - len(t.completed) for t in trimmed)
        if trimmed
        else 0.0,
    }


def print_table(s: dict, file=sys.stdout) -> None:
    p = lambda text="": print(text, file=file)  # noqa: E731
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    p("| variant | suggestions | valid | valid % | mean tokens | mean latency (ms) | mean chars |")
    p("|---|---|---|---|---|---|---|")
    for name in ("plain", "monitor", "monitor+complete"):
        v = s[name]
        p(
            f"| {name} | {v['suggestions']} | {v['valid']} | {fmt(v['valid_pct'], '.1f')} | "
            f"{fmt(v['mean_tokens'], '.1f')} | {fmt(v['mean_latency_ms'], '.0f')} | {v['mean_chars']:.0f} |"
        )
    p()
    p(
        f"{s['points']} points; the monitor repaired {s['repairs']} steps, was inactive at {s['monitor_inactive']} "
        f"point(s) (the document before the cursor was not a valid prefix), and left "
        f"{s['same_text_with_monitor']} suggestion(s) unchanged."
    )
    p(
        f"Monitor cost: {fmt(s['monitor_us_per_token'], '.0f')} us per token, "
        f"{fmt(None if s['monitor_fraction_of_step'] is None else 100 * s['monitor_fraction_of_step'], '.2f')}% "
        "of the monitored run's decode time."
    )
    p(
        f"monitor+complete = the monitored suggestion cut by complete_statements: {s['complete_trimmed']} trimmed "
        f"(mean {s['complete_mean_chars_cut']:.0f} chars cut), {s['complete_trimmed_to_empty']} to nothing."
    )
    p("valid % counts non-empty suggestions only (an empty one leaves the file as it was).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench syntax", description=__doc__.split("\n\n")[0])
    # The defaults take ~4 minutes on 2 idle CPU cores (~7 s a point: the 1k-token prompt and two
    # ~40-token suggestions, embedded model in fp32), ~9 when another job shares the cores.
    ap.add_argument("--files", type=int, default=16, help="standard-library files to draw points from")
    ap.add_argument("--points", type=int, default=32, help="completion points in all (spread over the files)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--context-tokens", type=int, default=1024, help="the LiveDocument's window")
    ap.add_argument("--k", type=int, default=8, help="candidates the monitor checks per step")
    ap.add_argument("--seed", type=int, default=SEED, help="which points (the same seed, the same points)")
    ap.add_argument("--model", default=None, help="model path (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="fp32", choices=FORMATS, help="the runner's weight format")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--json", type=Path, default=None, help="write per-point results and the summary here")
    args = ap.parse_args(argv)
    if args.max_tokens < 1 or args.k < 1:
        ap.error("--max-tokens and --k must be >= 1")

    root = stdlib_root()
    points = select_points(root, args.files, args.points, args.seed)
    loaded = load_model(args.model, threads=args.threads)
    engine = Engine.from_loaded(loaded, args.weights, args.device)
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    # No time budget: both variants decode the same number of tokens whatever the machine's load.
    options = CompletionOptions(max_tokens=args.max_tokens, multiline=True, time_budget=None)
    trials: list[Trial] = []
    t0 = time.perf_counter()
    for i, point in enumerate(points, 1):
        t = run_point(engine, vocab, root, point, options, args.context_tokens, args.k)
        trials.append(t)
        mark = lambda ok, text: "-" if not text else "Y" if ok else "."  # noqa: E731
        print(
            f"[{i}/{len(points)} {time.perf_counter() - t0:.0f}s] {point.path}:{point.line} "
            f"plain={mark(t.plain_valid, t.plain)} monitor={mark(t.monitored_valid, t.monitored)} "
            f"complete={mark(t.completed_valid, t.completed)} repairs={t.repairs}",
            file=sys.stderr,
            flush=True,
        )
    summary = summarize(trials)
    print_table(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "model": loaded.name,
                    "weights": args.weights,
                    "threads": args.threads,
                    "context_tokens": args.context_tokens,
                    "max_tokens": args.max_tokens,
                    "k": args.k,
                    "seed": args.seed,
                    "stdlib": str(root),
                    "python": sys.version.split()[0],
                    "summary": summary,
                    "trials": [asdict(t) for t in trials],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
