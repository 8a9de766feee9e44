"""`livekv bench latency`: keystroke-to-suggestion latency of the real server, PIE against --no-pie.

For each of several real Python files (2k-4k tokens, from the standard library, so every
machine has them) the benchmark starts `livekv serve` as a subprocess, opens the file
with one code line in its second half emptied, and types that line back key by key
(50-150 ms between keys, seeded). At each pause (after a word, before punctuation) it
asks for an inline completion, as an editor does, and waits for the answer; then it
rests a little (reading the ghost text) and types on. Measured per request:

- keystroke -> suggestion: from sending the keystroke's didChange to receiving the
  complete single-line suggestion (what the user waits for);
- keystroke -> first token: the same minus the server's time after its first token
  (the server reports its worker-side first-token and total times in `livekv/status`).

The same sessions run against a server with PIE and one with `usePie: false`, which
re-encodes the document's prompt whole on each request (no work on keystrokes: the
kindest form of "full re-encode on change"). Results are written as JSON and one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from completion.formats import FORMATS
from lsp_server.editor import Editor

FILES = ("cmd.py", "filecmp.py", "glob.py", "runpy.py")  # 2.3k-3.4k tokens with the embedded tokenizer
PAUSE_BEFORE = set(" .(,:)[=")  # a request is made when the next key is one of these
READ_SECONDS = 0.4  # the user reads the suggestion before typing on


@dataclass(frozen=True)
class Sample:
    mode: str
    file: str
    typed: str  # the line as typed so far
    suggestion: str
    to_suggestion: float  # seconds, keystroke -> complete suggestion received
    to_first_token: float | None  # seconds, keystroke -> first token (server-reported tail removed)


def target_line(text: str, fraction: float) -> tuple[int, str]:
    """(offset, content) of the first indented code line of 25-70 chars after `fraction` of the file."""
    pos = text.find("\n", int(len(text) * fraction)) + 1
    while pos < len(text):
        end = text.find("\n", pos)
        line = text[pos:end]
        body = line.strip()
        if line.startswith("    ") and 25 <= len(body) <= 70 and not body.startswith(("#", '"', "'")):
            return pos + len(line) - len(body), body
        pos = end + 1
    raise ValueError("no code line to type")


async def run_file(mode: str, path: Path, seed: int, max_requests: int, weights: str) -> list[Sample]:
    text = path.read_text()
    offset, line = target_line(text, 0.6)
    doc = text[:offset] + text[offset + len(line) :]
    rng = random.Random(seed)
    editor = Editor()
    with tempfile.TemporaryDirectory() as root:
        options = {"usePie": mode == "pie", "indexWorkspace": False, "weights": weights}
        await editor.start(options, root)
        uri = f"file://{root}/{path.name}"
        await editor.open(uri, doc)
        samples: list[Sample] = []
        for i, ch in enumerate(line):
            editor.edit(uri, offset + i, offset + i, ch)
            pressed = time.perf_counter()
            nxt = line[i + 1] if i + 1 < len(line) else " "
            if nxt in PAUSE_BEFORE and ch not in PAUSE_BEFORE and len(samples) < max_requests:
                answer = await editor.inline(uri, offset + i + 1, since=pressed)
                sample = Sample(mode, path.name, line[: i + 1], answer.text, answer.seconds, answer.to_first_token)
                samples.append(sample)
                await asyncio.sleep(READ_SECONDS)
            else:
                await asyncio.sleep(rng.uniform(0.05, 0.15))
        await editor.stop()
    return samples


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def summarize(samples: list[Sample]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode in ("pie", "no-pie"):
        ss = [s for s in samples if s.mode == mode]
        if not ss:
            continue
        firsts = [s.to_first_token for s in ss if s.to_first_token is not None]
        whole = [s.to_suggestion for s in ss]
        out[mode] = {
            "requests": len(ss),
            "first_token_p50_ms": 1000 * pct(firsts, 50) if firsts else float("nan"),
            "first_token_p95_ms": 1000 * pct(firsts, 95) if firsts else float("nan"),
            "suggestion_p50_ms": 1000 * pct(whole, 50),
            "suggestion_p95_ms": 1000 * pct(whole, 95),
            "empty_suggestions": sum(1 for s in ss if not s.suggestion),
        }
    if "pie" in out and "no-pie" in out:
        for key in ("first_token_p50_ms", "suggestion_p50_ms"):
            out["speedup_" + key] = {"x": out["no-pie"][key] / out["pie"][key]}
    return out


def print_table(summary: dict, file=sys.stdout) -> None:
    head = "| server | requests | keystroke->first token p50 / p95 (ms) | keystroke->suggestion p50 / p95 (ms) |"
    print(head, file=file)
    print("|---|---|---|---|", file=file)
    for mode in ("pie", "no-pie"):
        if mode in summary:
            m = summary[mode]
            print(
                f"| {mode} | {m['requests']} | {m['first_token_p50_ms']:.0f} / {m['first_token_p95_ms']:.0f} "
                f"| {m['suggestion_p50_ms']:.0f} / {m['suggestion_p95_ms']:.0f} |",
                file=file,
            )
    for key in ("first_token_p50_ms", "suggestion_p50_ms"):
        if "speedup_" + key in summary:
            print(f"PIE speed-up at p50 ({key[:-7]}): {summary['speedup_' + key]['x']:.1f}x", file=file)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="*", default=None, help="Python files to type into (default: 4 stdlib files)")
    ap.add_argument("--modes", nargs="*", default=["pie", "no-pie"], choices=["pie", "no-pie"])
    ap.add_argument("--requests", type=int, default=8, help="completion requests per file (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default="fp32", choices=FORMATS, help="the servers' weight format")
    ap.add_argument("--json", type=Path, default=None, help="write samples and summary here")
    args = ap.parse_args(argv)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [Path(f) for f in args.files] if args.files else [stdlib / f for f in FILES]
    samples: list[Sample] = []
    for mode in args.modes:
        for n, path in enumerate(files):
            got = asyncio.run(run_file(mode, path, args.seed + n, args.requests, args.weights))
            samples += got
            print(f"{mode:7s} {path.name:14s} {len(got)} requests", file=sys.stderr)
    summary = summarize(samples)
    print_table(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "weights": args.weights,
            "summary": summary,
            "samples": [asdict(s) for s in samples],
            "files": [str(f) for f in files],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0
