"""`livekv bench cache`: what the whole-document cache costs per caret move, per decode step and per edit.

The live cache holds the whole document in a gap buffer (`completion/live/kvcache.py`): decoding at a
caret reads the entries before it and writes into the gap there. This measures, on real Python from
the standard library with the embedded model and the server's default settings, at 1k and 4k
cached tokens, through `LiveDocument` as the server drives it:

- caret move: `move_cursor` (the server's call when a request names a new caret; no forward pass),
  then the gap's move to it when the request decodes there (a memory copy of the entries between);
- decode step at a caret in the middle, with the text after it in the cache, against one at the end
  of a cache that holds only the prompt (the first round's layout): the same attention work;
- an edit far above the caret (half the document away), then the prompt ready at the old caret
  (`prepare` + the logits after it), against the `prefix-reuse` baseline doing its request-time work;
- memory: bytes held per 1k tokens, the gap and growth room included.

Target (README, latency flows (c)-(f)): a caret move does no forward pass and its cache work (move_cursor
plus the gap's move) is at most 50 ms p95, at every size.

The default run (1k and 4k tokens) takes about 2 minutes on 2 cores; `--quick` runs 1k tokens alone.

    livekv bench cache [--quick] [--sizes 1024 4000] [--weights auto] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import pct, write_json
from benchmarks.speed import corpus
from completion.live.document import LiveDocument, TextEdit, UpdatePolicy
from completion.live.kvcache import KVCache
from completion.model.engine import Engine
from completion.model.formats import WEIGHT_CHOICES
from completion.model.loading import load_model
from completion.settings import Settings

STEPS = 12  # decode steps timed per case (median taken)
MOVES = 5  # caret jumps there and back timed per case (median and p95 taken)
MOVE_TARGET_MS = 50.0  # a caret move's cache work, p95


def document(engine: Engine, ids: list[int], tokens: int) -> str:
    """About `tokens` tokens of real Python, cut at a line end."""
    text = engine.tokenizer.decode(ids[:tokens])
    return text[: text.rfind("\n") + 1]


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def time_caret_moves(live: LiveDocument) -> dict[str, float]:
    """A caret jump by half the document and back: move_cursor, then the gap's move at the request."""
    far, near = len(live.text) // 2, len(live.text)
    moves, gaps, totals, encoded = [], [], [], 0
    for _ in range(MOVES):
        for offset in (far, near):
            t0 = time.perf_counter()
            encoded += live.move_cursor(offset).encoded
            t1 = time.perf_counter()
            live.kv.prompt_view(live.layout.decode_at)
            t2 = time.perf_counter()
            moves.append(t1 - t0)
            gaps.append(t2 - t1)
            totals.append(t2 - t0)
    distance = abs(live.doc.token_index_at(far) - live.doc.token_index_at(near))
    return {
        "distance_tokens": distance,
        "move_cursor_ms": ms(statistics.median(moves)),
        "gap_move_ms": ms(statistics.median(gaps)),
        "total_p95_ms": ms(pct(totals, 95)),
        "encoded_tokens": encoded,
    }


def time_steps(kv: KVCache, tokens: list[int]) -> float:
    """Median seconds of a one-token decode pass appended to `kv` (a prompt view)."""
    times = []
    for tok in tokens[:STEPS]:
        t0 = time.perf_counter()
        kv.encode([tok], logits="last")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_decode_step(live: LiveDocument, ids: list[int]) -> dict[str, float]:
    """A decode step at a caret in the middle of the whole-document cache, and after a cache of that prompt alone."""
    live.move_cursor(len(live.text) // 2)
    prompt = live.prompt
    in_document = time_steps(live.kv.prompt_view(len(prompt)), ids)
    alone = KVCache(live.engine.runner)
    alone.encode(prompt)
    prompt_only = time_steps(alone, ids)
    return {"prompt_tokens": len(prompt), "document_ms": ms(in_document), "prompt_only_ms": ms(prompt_only)}


def time_far_edit(engine: Engine, text: str, window: int) -> dict[str, float]:
    """A line typed half the document above the caret (as one change), then the prompt at the caret made
    ready: PIE against prefix-reuse (the cache up to the first changed token, llama.cpp's reuse)."""
    at = text.find("\n", len(text) // 2) + 1
    line = text[at : text.find("\n", at) + 1]
    out: dict[str, float] = {}
    for policy in (UpdatePolicy.PIE, UpdatePolicy.PREFIX_REUSE):
        live = LiveDocument(engine, text, fim=False, window=window, policy=policy)
        live.prompt_logits()
        t0 = time.perf_counter()
        stats = live.apply_edits([TextEdit(at, at, line)])
        t1 = time.perf_counter()
        before = live.counts.requests
        live.prompt_logits()
        t2 = time.perf_counter()
        out[f"{policy.value}_edit_ms"] = ms(t1 - t0)
        out[f"{policy.value}_ready_ms"] = ms(t2 - t1)
        out[f"{policy.value}_encoded"] = stats.encoded + live.counts.requests - before
    out["speedup_ready_x"] = round(
        (out["prefix-reuse_edit_ms"] + out["prefix-reuse_ready_ms"]) / (out["pie_edit_ms"] + out["pie_ready_ms"]), 1
    )
    return out


def measure(engine: Engine, ids: list[int], tokens: int, window: int) -> dict:
    text = document(engine, ids, tokens)
    live = LiveDocument(engine, text, fim=False, window=window)
    row: dict = {"tokens": len(live.tokens), "bytes_per_1k_tokens": round(1000 * live.kv.nbytes / len(live.kv))}
    row["caret_move"] = time_caret_moves(live)
    row["decode_step"] = time_decode_step(live, ids[tokens : tokens + STEPS])
    row["far_edit"] = time_far_edit(engine, text, window)
    return row


def targets(row: dict[str, Any]) -> list[tuple[str, bool]]:
    """The caret-move targets of one size, judged on its figures: (target, met)."""
    c = row["caret_move"]
    return [
        ("no forward pass for a caret move", c["encoded_tokens"] == 0),
        (f"caret move's cache work <= {MOVE_TARGET_MS:.0f} ms p95", c["total_p95_ms"] <= MOVE_TARGET_MS),
    ]


def table(result: dict[str, Any]) -> str:
    """The written JSON as a markdown table: one row per size, the caret-move targets judged in the last columns."""
    lines = [
        "| tokens | caret move: move_cursor / gap move p50, move p95 (ms), distance | decode step mid-document / "
        "prompt-only (ms) | edit half a document above, then ready at the caret: pie / prefix-reuse (ms), tokens "
        "encoded | MB per 1k tokens | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        c, d, e = r["caret_move"], r["decode_step"], r["far_edit"]
        pie = e["pie_edit_ms"] + e["pie_ready_ms"]
        reuse = e["prefix-reuse_edit_ms"] + e["prefix-reuse_ready_ms"]
        judged = targets(r)
        lines.append(
            f"| {r['tokens']} | {c['move_cursor_ms']:.2f} / {c['gap_move_ms']:.1f}, {c['total_p95_ms']:.1f}; "
            f"{c['distance_tokens']} tokens ({c['encoded_tokens']} encoded) "
            f"| {d['document_ms']:.1f} / {d['prompt_only_ms']:.1f} "
            f"| {pie:.0f} / {reuse:.0f} ({e['speedup_ready_x']}x), {e['pie_encoded']} / {e['prefix-reuse_encoded']} "
            f"| {r['bytes_per_1k_tokens'] / 2**20:.1f} | {'; '.join(t for t, _ in judged)} "
            f"| {'; '.join('met' if ok else 'missed' for _, ok in judged)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench cache", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes", type=int, nargs="*", default=None, help="document sizes in tokens (default 1024 4000; quick: 1024)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1k tokens only")
    ap.add_argument(
        "--weights", default="auto", choices=WEIGHT_CHOICES, help="weight format (the server's default: auto)"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the server's default: 2)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sizes = args.sizes or ([1024] if args.quick else [1024, 4000])
    settings = Settings(threads=args.threads, weights=args.weights)
    loaded = load_model(threads=settings.threads)
    engine = Engine.from_loaded(loaded, settings.weights)
    _, ids = corpus(engine.tokenizer, max(sizes) + STEPS + 64)
    window = settings.context_tokens
    rows = [measure(engine, ids, n, window) for n in sizes]
    payload: dict[str, Any] = {"context_tokens": window, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, "cache", settings=settings, **payload)
    print(table(json.loads(json.dumps(payload))))  # the table of what the file holds
    return 0
