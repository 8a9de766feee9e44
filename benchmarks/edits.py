"""Edit benchmark: after an edit, how fast is the cache ready and how good is the next line?

Each scenario follows the server's flow: the user's caret is where the target line will be
written (mapped back to the text before the edits), a request there has been answered, then
the edits arrive (anywhere: above the caret, below it, at it) and the next request asks at
the caret. Per method:
- `pie` (the server's default): the whole `before` document cached (encoded once, then
  forked), the edits spliced in (new tokens encoded, shifted keys rotated), the request at the
  caret decodes on that cache, before any idle refresh;
- `prefix-reuse` (llama.cpp's prompt cache): the cache holds the last prompt, which ended at the
  caret; the request keeps its common prefix with the new prompt and encodes the rest;
- `full`: the request encodes its prompt whole (the exact reference);
- `no-rotation`: as pie with shifted keys left unrotated (the broken baseline that shows the
  harness can see errors).
Each method then greedily decodes the next line; the target's NLL is teacher-forced. A second
part times a one-line insertion in the middle of 4k-token documents, the request at the end.

Scenarios are JSON lines with `id`, `before`, `edits` ([{start, end, text}], offsets into
`before`, ascending), `cursor` (an offset into the edited text) and `target` (the next line);
`kind`, `edit_type` and `source` are optional labels.

Targets (README): PIE's exact match within 1 point of `full`'s, and its target NLL within 1% of
`full`'s (both judged by `table` on the summary's figures).

The default run is 7 evenly spaced scenarios (every edit type) and one mid-file trial at 4k tokens (a
scenario costs about a minute of 2 cores at 4k tokens: about 9 minutes in all; `--all` runs the 180);
`--quick` runs 2 scenarios at 1k tokens and one mid-file trial at 512 tokens. The settings are the server's defaults
(`contextTokens` 4096, `threads` 2, `weights` auto, greedy, `maxTokens` 48) except those the flags change,
recorded in the JSON's run record.

    livekv bench edits [--quick] [--scenarios FILE.jsonl] [--limit 12] [--context-tokens 4096] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import write_json
from benchmarks.scenarios import apply_edits
from completion.decoding.decode import decode
from completion.live.document import LiveDocument, TextEdit, UpdatePolicy
from completion.model.engine import Engine
from completion.model.formats import WEIGHT_CHOICES
from completion.model.loading import load_model
from completion.model.vocab import Vocabulary
from completion.settings import Settings

DEFAULT_SCENARIOS = Path(__file__).parent / "data" / "edits.jsonl"
METHODS = (UpdatePolicy.FULL, UpdatePolicy.PIE, UpdatePolicy.PREFIX_REUSE, UpdatePolicy.NO_ROTATION)
MAX_NEW_TOKENS = Settings().max_tokens  # the server's default suggestion length (48)
EXACT_SLACK_POINTS = 1.0  # PIE's exact match at most this far below full's
NLL_SLACK = 0.01  # PIE's target NLL at most this much (relative) above full's
DEFAULT_LIMIT, DEFAULT_MID_FILE = 7, 1  # 7 evenly spaced scenarios: every edit type (5 or 10 also do; 6, 8, 9 not)
QUICK = {"limit": 2, "context_tokens": 1024, "mid_file": 1, "mid_file_tokens": 512}


@dataclass
class Trial:
    scenario: str
    method: str
    kind: str
    edit_type: str
    context_tokens: int
    distance_tokens: int  # prompt tokens from the first edit to the cursor
    update_s: float
    ttft_s: float
    encoded: int
    prediction: str
    target: str
    exact: bool
    similarity: float
    agrees_with_full: bool | None  # None when `full` was not among the methods
    target_nll: float  # mean negative log-likelihood per token of the real next line (teacher-forced)


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length (1.0 for two empty strings)."""
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def target_nll(live: LiveDocument, target: str) -> float:
    """Mean NLL per token of `heal + target + newline` after the prompt, teacher-forced.

    Far more sensitive than exact match: a cache error that does not flip a greedy
    choice still moves the likelihood of the real line. The cache is left as found.
    """
    tokens = live.engine.tokenizer(live.heal + target + "\n", add_special_tokens=False).input_ids
    with live.decoding() as (kv, first):
        logits = torch.cat([first[None], kv.encode_scored(tokens[:-1])])
    logp = torch.log_softmax(logits, dim=-1)
    return -logp[torch.arange(len(tokens)), torch.tensor(tokens)].mean().item()


def window_cut(engine: Engine, text: str, limit: int) -> int:
    """Character offset where the last `limit` tokens of `text` begin, moved to a line start."""
    enc = engine.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc.input_ids) <= limit:
        return 0
    start = enc.offset_mapping[len(enc.input_ids) - limit][0]
    nl = text.find("\n", start)
    return len(text) if nl < 0 else nl + 1


def run_scenario(
    engine: Engine, vocab: Vocabulary, sc: dict, context_tokens: int, methods: Sequence[UpdatePolicy] = METHODS
) -> list[Trial] | None:
    """All methods on one scenario, in the server's flow; None when an edit falls outside the context window."""
    before, target, cursor = sc["before"], sc["target"], sc["cursor"]
    after = apply_edits(before, sc["edits"])
    cut = window_cut(engine, after[:cursor], context_tokens - 256)
    if any(e["start"] < cut for e in sc["edits"]):
        return None
    edits = [TextEdit(e["start"] - cut, e["end"] - cut, e["text"]) for e in sc["edits"]]
    caret_before = unmap_cursor(cursor - cut, edits)  # where the user was when the last request came
    window = context_tokens
    documents = {
        UpdatePolicy.PIE: LiveDocument(engine, before[cut:], cursor=caret_before, fim=False, window=window),
        UpdatePolicy.PREFIX_REUSE: LiveDocument(
            engine, before[cut:], cursor=caret_before, fim=False, window=window, policy=UpdatePolicy.PREFIX_REUSE
        ),
    }
    documents[UpdatePolicy.PREFIX_REUSE].prepare()  # the last request's prompt is what it holds
    first_edit_token = documents[UpdatePolicy.PIE].doc.token_index_at(edits[0].start)
    distance = max(0, documents[UpdatePolicy.PIE].layout.cursor_token - first_edit_token)
    trials: list[Trial] = []
    full_prediction = ""
    for method in methods:
        if method is UpdatePolicy.FULL:
            live = LiveDocument(engine, before[cut:], cursor=caret_before, fim=False, window=window, policy=method)
        elif method is UpdatePolicy.PREFIX_REUSE:
            live = documents[method]
        else:
            live = documents[UpdatePolicy.PIE].fork(method)
        spent = live.counts.edits + live.counts.requests
        stats = live.apply_edits(edits)  # the caret keeps its place; the request below names it
        live.move_cursor(cursor - cut)
        assert live.text == after[cut:]
        out = decode(live, vocab, max_tokens=MAX_NEW_TOKENS)  # its first token includes the request's cache work
        if method is UpdatePolicy.FULL:
            full_prediction = out.text
        trials.append(
            Trial(
                scenario=sc["id"],
                method=method.value,
                kind=sc.get("kind", ""),
                edit_type=sc.get("edit_type", ""),
                context_tokens=len(live.prompt),
                distance_tokens=distance,
                update_s=stats.seconds,
                ttft_s=stats.seconds + out.first_token_seconds,
                encoded=live.counts.edits + live.counts.requests - spent,
                prediction=out.text,
                target=target,
                exact=out.text.rstrip() == target.rstrip(),
                similarity=edit_similarity(out.text.rstrip(), target.rstrip()),
                agrees_with_full=out.text == full_prediction if UpdatePolicy.FULL in methods else None,
                target_nll=target_nll(live, target),
            )
        )
    return trials


def unmap_cursor(cursor: int, edits: Sequence[TextEdit]) -> int:
    """The offset in the text before `edits` of a caret at `cursor` after them (inside new text: its start)."""
    shift = 0
    for e in edits:
        new_start = e.start + shift
        if cursor < new_start:
            break
        if cursor <= new_start + len(e.text):
            return e.start
        shift += len(e.text) - (e.end - e.start)
    return cursor - shift


def mid_file_edits(engine: Engine, vocab: Vocabulary, scenarios: list[dict], count: int, tokens: int) -> list[dict]:
    """Insert one line in the middle of a `tokens`-token context, the caret at its end; time full vs PIE."""
    rows = []
    for sc in scenarios:
        if len(rows) == count:
            break
        text = apply_edits(sc["before"], sc["edits"])[: sc["cursor"]]
        cut = window_cut(engine, text, tokens)
        if cut == 0:
            continue  # shorter than the context we want
        text = text[cut:]
        mid = text.find("\n", len(text) // 2) + 1
        rest = text[mid:]
        indent = rest[: len(rest) - len(rest.lstrip(" "))]
        line = f"{indent}total_count = compute_total(items, start=0)\n"
        base = LiveDocument(engine, text, fim=False, window=tokens + 512)  # the caret at the end
        base.prompt_logits()  # the request before the edit
        row: dict = {"scenario": sc["id"], "context_tokens": len(base.tokens)}
        for method in (UpdatePolicy.FULL, UpdatePolicy.PIE):
            live = base.fork(method)
            stats = live.apply_edits([TextEdit(mid, mid, line)])
            out = decode(live, vocab, max_tokens=1)  # the request at the caret: its cache work, then a token
            row[f"{method.value}_update_s"] = stats.seconds
            row[f"{method.value}_ttft_s"] = stats.seconds + out.first_token_seconds
        rows.append(row)
    return rows


def same_predictions(trials: list[Trial], reference: list[dict]) -> dict[str, tuple[int, int]]:
    """Per method: (predictions identical to the reference run's for the same scenario, scenarios in both)."""
    want = {(t["scenario"], t["method"]): t["prediction"] for t in reference}
    out: dict[str, tuple[int, int]] = {}
    for t in trials:
        if (t.scenario, t.method) in want:
            same, n = out.get(t.method, (0, 0))
            out[t.method] = (same + (t.prediction == want[t.scenario, t.method]), n + 1)
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarize(trials: list[Trial]) -> dict:
    by_method: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        by_method[t.method].append(t)

    def stats(ts: list[Trial]) -> dict:
        return {
            "n": len(ts),
            "update_ms_p50": 1000 * statistics.median(t.update_s for t in ts),
            "update_ms_p90": 1000 * pct([t.update_s for t in ts], 0.9),
            "ttft_ms_p50": 1000 * statistics.median(t.ttft_s for t in ts),
            "ttft_ms_p90": 1000 * pct([t.ttft_s for t in ts], 0.9),
            "exact_match": 100 * sum(t.exact for t in ts) / len(ts),
            "edit_similarity": 100 * statistics.mean(t.similarity for t in ts),
            "agreement_with_full": None
            if any(t.agrees_with_full is None for t in ts)
            else 100 * sum(bool(t.agrees_with_full) for t in ts) / len(ts),
            "target_nll": statistics.mean(t.target_nll for t in ts),
        }

    def distance_bucket(t: Trial) -> str:
        return "<100 tok" if t.distance_tokens < 100 else "100-1000 tok" if t.distance_tokens < 1000 else ">=1000 tok"

    out: dict = {"methods": {m: stats(ts) for m, ts in by_method.items()}}
    for name, key in (
        ("by_kind", lambda t: t.kind),
        ("by_edit_type", lambda t: t.edit_type),
        ("by_distance", distance_bucket),
    ):
        groups: dict[str, dict[str, list[Trial]]] = defaultdict(lambda: defaultdict(list))
        for t in trials:
            groups[key(t)][t.method].append(t)
        out[name] = {g: {m: stats(ts) for m, ts in per.items()} for g, per in sorted(groups.items())}
    return out


def targets(methods: dict[str, Any]) -> list[tuple[str, bool]]:
    """The quality targets, judged on the summary's per-method figures: (target, met); none without pie and full."""
    pie, full = methods.get("pie"), methods.get("full")
    if pie is None or full is None:
        return []
    return [
        (
            f"exact match within {EXACT_SLACK_POINTS:.0f} point of full's",
            pie["exact_match"] >= full["exact_match"] - EXACT_SLACK_POINTS,
        ),
        (
            f"target NLL within {100 * NLL_SLACK:.0f}% of full's",
            pie["target_nll"] <= full["target_nll"] * (1 + NLL_SLACK),
        ),
    ]


def table(result: dict[str, Any]) -> str:
    """The written JSON as a markdown table: a row per method (the targets judged on pie's), then the
    mid-file insertion's edit-to-first-token times."""
    methods = result["summary"]["methods"]
    judged = targets(methods)
    lines = [
        "| method | n | update p50 / p90 (ms) | TTFT p50 / p90 (ms) | exact match % | edit sim % | agrees w/ full % "
        "| target NLL/token | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, s in methods.items():
        agree = "n/a" if s["agreement_with_full"] is None else f"{s['agreement_with_full']:.1f}"
        name = "pie (before any refresh)" if m == "pie" else m
        target = "; ".join(t for t, _ in judged) if m == "pie" and judged else "-"
        met = "; ".join("met" if ok else "missed" for _, ok in judged) if m == "pie" and judged else "-"
        lines.append(
            f"| {name} | {s['n']} | {s['update_ms_p50']:.0f} / {s['update_ms_p90']:.0f} "
            f"| {s['ttft_ms_p50']:.0f} / {s['ttft_ms_p90']:.0f} | {s['exact_match']:.1f} | {s['edit_similarity']:.1f} "
            f"| {agree} | {s['target_nll']:.3f} | {target} | {met} |"
        )
    mid = result.get("mid_file", [])
    if mid:
        full = 1000 * statistics.median(r["full_ttft_s"] for r in mid)
        pie = 1000 * statistics.median(r["pie_ttft_s"] for r in mid)
        tokens = round(statistics.median(r["context_tokens"] for r in mid))
        lines.append(
            f"| one line inserted mid-file at {tokens} tokens, request at the end: full / pie | {len(mid)} | - "
            f"| {full:.0f} / {pie:.0f} ({full / pie:.1f}x) | - | - | - | - | - | - |"
        )
    return "\n".join(lines)


def select(scenarios: list[dict], limit: int | None) -> list[dict]:
    """An evenly spaced subset, so a limited run still covers every edit type and length."""
    if limit is None or limit >= len(scenarios):
        return scenarios
    return [scenarios[i * len(scenarios) // limit] for i in range(limit)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench edits", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS)
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    ap.add_argument("--all", action="store_true", help="every scenario (180: hours), not --limit's subset")
    ap.add_argument("--limit", type=int, default=None, help=f"an evenly spaced subset of N scenarios ({DEFAULT_LIMIT})")
    ap.add_argument("--context-tokens", type=int, default=None, help="contextTokens (the server's default: 4096)")
    ap.add_argument(
        "--mid-file", type=int, default=None, help=f"mid-file insertion trials ({DEFAULT_MID_FILE}; 0: skip)"
    )
    ap.add_argument("--mid-file-tokens", type=int, default=4096, help="their context (default 4096)")
    ap.add_argument("--model", default=None, help="model path (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=Settings().threads)
    ap.add_argument(
        "--weights",
        default=Settings().weights,
        choices=WEIGHT_CHOICES,
        help="the runner's weight format (the server's default: auto)",
    )
    ap.add_argument("--device", default=Settings().device, help="cpu or cuda[:N]")
    ap.add_argument(
        "--methods",
        nargs="*",
        default=[m.value for m in METHODS],
        choices=[m.value for m in METHODS],
        help="update methods to compare (agreement is with `full` when it runs first)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write per-trial results and summary here")
    ap.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="an earlier --json run (e.g. fp32 weights): report how many predictions are identical to its",
    )
    args = ap.parse_args(argv)
    quick = QUICK if args.quick else {}
    limit = None if args.all else args.limit or quick.get("limit", DEFAULT_LIMIT)
    mid_count = args.mid_file if args.mid_file is not None else quick.get("mid_file", DEFAULT_MID_FILE)
    mid_tokens = quick.get("mid_file_tokens", args.mid_file_tokens)
    settings = Settings(
        model_path=args.model,
        threads=args.threads,
        weights=args.weights,
        device=args.device,
        context_tokens=args.context_tokens or quick.get("context_tokens", Settings().context_tokens),
    )

    loaded = load_model(settings.model_path, threads=settings.threads)
    methods = [UpdatePolicy(m) for m in args.methods]
    engine = Engine.from_loaded(loaded, settings.weights, settings.device)
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    scenarios = [json.loads(line) for line in args.scenarios.read_text().splitlines() if line.strip()]
    chosen = select(scenarios, limit)
    trials: list[Trial] = []
    skipped = 0
    t0 = time.perf_counter()
    for i, sc in enumerate(chosen, 1):
        result = run_scenario(engine, vocab, sc, settings.context_tokens, methods)
        if result is None:
            skipped += 1
            continue
        trials += result
        done = {t.method: t for t in result}
        print(
            f"[{i}/{len(chosen)} {time.perf_counter() - t0:.0f}s] {sc['id']}: "
            + " ".join(f"{m}={'Y' if t.exact else '.'}{1000 * t.update_s:.0f}ms" for m, t in done.items()),
            file=sys.stderr,
            flush=True,
        )
    mid = mid_file_edits(engine, vocab, scenarios, mid_count, mid_tokens) if mid_count else []
    summary = summarize(trials)
    if args.reference:
        summary["same_as_reference"] = same_predictions(trials, json.loads(args.reference.read_text())["trials"])
        for method, (same, n) in summary["same_as_reference"].items():
            print(f"{method}: {same}/{n} predictions identical to {args.reference.name}'s", file=sys.stderr)
    payload = {
        "scenarios": len(chosen),
        "skipped": skipped,
        "summary": summary,
        "mid_file": mid,
        "trials": [asdict(t) for t in trials],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, "edits", model=settings.model_path, settings=settings, **payload)
    print(table(json.loads(json.dumps(payload))))  # the table of what the file holds
    return 0
