"""Multiple-drafts benchmark: k inline drafts by each method, their cost and how often one is right.

At the edit benchmark's positions (`benchmarks/data/edits.jsonl`: a real standard-library
file after a realistic edit, the cursor at the start of a real line) the document is the
file with the line(s) to predict taken out, so neither the prompt, the suffix that
post-processing checks against, nor the project's n-grams hold the answer. The prompt is
the last `--context-tokens` tokens before the cursor (prefix-only: the embedded model has no
FIM). The project for the superposed drafts' n-grams is every other scenario's file plus
this open document, as the server indexes a workspace and its open documents.

Two modes: `line` (one line, stop at the newline, at most 48 tokens; the target is the real
line) and `3-line` (multi-line, at most 3 lines, 64 tokens, ending at a blank line too; the
target is the real lines up to 3 or the first blank one). The prompt is encoded once per
position; the modes differ only after the cursor. For each k in --ks (line mode; 1 2 3 5)
and --multiline-ks (3-line mode; 1 3 by default, to keep a default run within 20 minutes on
2 cores) and each
method (`branches`, `superposed`, `beam`, `greedy-runs`; `--alphas` adds superposed variants
with other n-gram weights) the drafts go through `completion.decoding.suggest.inline`, the server's
code path: deduplicated and post-processed, no monitors. k = 1 is plain greedy decoding for
every method (the reference), run once; `greedy+drafting` is the same with the server's
retrieval drafter (same output, fewer passes) for reference. Nothing is decoded twice per
cell, so no cache warms another.

Reported per mode, method and k: latency p50 (ms) and the median per-position ratio to
greedy's; distinct drafts shown per request; exact match of the first draft and best-of-k
(any draft) against the real text; edit similarity of the first draft and the best draft;
how often the first draft equals greedy's suggestion.

    livekv bench drafts [--limit 40] [--context-tokens 1024] [--ks 1 2 3 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchmarks.edits import DEFAULT_SCENARIOS, edit_similarity, select, window_cut
from benchmarks.scenarios import apply_edits
from completion.decoding.suggest import DRAFT_METHODS, CompletionOptions, inline
from completion.decoding.superposed import SuperposedConfig
from completion.drafting.datastore import ProjectStore
from completion.drafting.drafter import Drafter
from completion.drafting.ngrams import NgramModel
from completion.live.document import LiveDocument, TextEdit
from completion.model.engine import Engine
from completion.model.loading import load_model
from completion.model.vocab import Vocabulary

MODES = {
    "line": CompletionOptions(max_tokens=48, time_budget=None),
    "3-line": CompletionOptions(max_tokens=64, multiline=True, max_lines=3, time_budget=None),
}
KS = (1, 2, 3, 5)
MULTILINE_KS = (1, 3)  # 3-line drafts cost ~3x a line's: the default run stays within 20 minutes


@dataclass
class Trial:
    scenario: str
    mode: str
    method: str
    k: int
    seconds: float
    drafts: list[str]
    target: str
    first_exact: bool
    best_exact: bool
    first_similarity: float
    best_similarity: float
    same_as_greedy: bool


def normal(text: str) -> str:
    """Text as compared: trailing whitespace of each line and of the whole ignored."""
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def target_lines(rest: str, mode: str) -> str:
    """The real text after the cursor that the mode asks for: one line, or up to 3 before a blank one."""
    lines = rest.split("\n")
    if mode == "line":
        return lines[0]
    out = [lines[0]]
    for line in lines[1:3]:
        if not line.strip():
            break
        out.append(line)
    return "\n".join(out)


def prompt_window(engine: Engine, sc: dict, context_tokens: int) -> tuple[str, int, int]:
    """(file after the edit, where the context window starts in it (a line start), cursor)."""
    after = apply_edits(sc["before"], sc["edits"])
    return after, window_cut(engine, after[: sc["cursor"]], context_tokens), sc["cursor"]


def methods_for(alphas: list[float], wanted: list[str]) -> dict[str, tuple[str, SuperposedConfig]]:
    """Row name -> (draft method, superposed settings)."""
    default = SuperposedConfig()
    out = {}
    for m in wanted:
        if m != "superposed":
            out[m] = (m, default)
            continue
        for a in alphas:
            name = "superposed" if a == default.alpha else f"superposed a={a:g}"
            out[name] = ("superposed", replace(default, alpha=a))
    return out


def run_position(
    engine: Engine,
    vocab: Vocabulary,
    store: ProjectStore,
    ngrams: NgramModel,
    sc: dict,
    args: argparse.Namespace,
    rows: dict[str, tuple[str, SuperposedConfig]],
) -> list[Trial]:
    """Every mode, method and k at one position. The prompt is encoded once: the modes differ only
    after the cursor (how many real lines are taken out), which a prefix-only prompt does not hold."""
    after, cut, cursor = prompt_window(engine, sc, args.context_tokens)
    live: LiveDocument | None = None
    removed = 0  # characters of `after` taken out at the cursor so far
    trials: list[Trial] = []
    for mode in args.modes:
        target = target_lines(after[cursor:], mode)
        text = after[:cursor] + after[cursor + len(target) + 1 :]
        if live is None:
            live = LiveDocument(engine, text[cut:], cursor=cursor - cut, fim=False, window=args.context_tokens + 256)
        else:  # take out the further lines: an edit after the prompt's end, nothing to encode
            c = cursor - cut
            live.apply_edits([TextEdit(c, c + len(target) + 1 - removed, "")], cursor=c)
        removed = len(target) + 1
        assert live.text == text[cut:]
        # the open document as the project index holds it; its n-grams are counted on the server's
        # indexing thread, so here before the timed requests
        store.update(sc["source"], engine.tokenizer(text, add_special_tokens=False).input_ids)
        ngrams.warm()
        live.prompt_logits()
        # room for the widest request's tokens now: a buffer growing inside one timed request (a copy
        # of the whole cache) would be charged to whichever method happens to run first
        live.kv.reserve(max(args.ks + args.multiline_ks) * MODES[mode].max_tokens + 1)  # the gap decoding writes into
        ks = args.ks if mode == "line" else args.multiline_ks
        trials += mode_trials(live, vocab, store, ngrams, sc["id"], mode, target, ks, args.with_drafting, rows)
    return trials


def mode_trials(
    live: LiveDocument,
    vocab: Vocabulary,
    store: ProjectStore,
    ngrams: NgramModel,
    scenario: str,
    mode: str,
    target: str,
    ks: list[int],
    with_drafting: bool,
    rows: dict[str, tuple[str, SuperposedConfig]],
) -> list[Trial]:
    want = normal(target)
    greedy_text: str | None = None

    def trial(method: str, k: int, options: CompletionOptions, drafter: Drafter | None = None) -> Trial:
        t0 = time.perf_counter()
        drafts = [d.text for d in inline(live, vocab, options, drafter=drafter, ngrams=ngrams)]
        seconds = time.perf_counter() - t0
        sims = [edit_similarity(normal(d), want) for d in drafts] or [0.0]
        return Trial(
            scenario=scenario,
            mode=mode,
            method=method,
            k=k,
            seconds=seconds,
            drafts=drafts,
            target=target,
            first_exact=bool(drafts) and normal(drafts[0]) == want,
            best_exact=any(normal(d) == want for d in drafts),
            first_similarity=sims[0],
            best_similarity=max(sims),
            same_as_greedy=greedy_text is None or (drafts[0] if drafts else "") == greedy_text,
        )

    base = MODES[mode]
    # untimed: the first decode after the prompt's encoding (and the n-gram counting) runs slower
    # than the ones after it; it must not be charged to whichever method runs first
    inline(live, vocab, replace(base, max_tokens=4))
    greedy = trial("greedy", 1, base)
    greedy_text = greedy.drafts[0] if greedy.drafts else ""
    trials = [greedy]
    if with_drafting:
        trials.append(trial("greedy+drafting", 1, base, Drafter(store)))
    for k in ks:
        if k == 1:
            continue  # every method is greedy decoding at k = 1
        for name, (method, config) in rows.items():
            trials.append(trial(name, k, replace(base, drafts=k, draft_method=method, superposed=config)))
    return trials


def summarize(trials: list[Trial]) -> dict:
    greedy = {(t.scenario, t.mode): t for t in trials if t.method == "greedy"}
    cells: dict[tuple[str, str, int], list[Trial]] = {}
    for t in trials:
        cells.setdefault((t.mode, t.method, t.k), []).append(t)
    out: dict = {}
    for (mode, method, k), ts in cells.items():
        ratios = [t.seconds / greedy[t.scenario, t.mode].seconds for t in ts]
        out.setdefault(mode, {}).setdefault(method, {})[str(k)] = {
            "n": len(ts),
            "latency_ms_p50": 1000 * statistics.median(t.seconds for t in ts),
            "latency_ms_mean": 1000 * statistics.mean(t.seconds for t in ts),
            "x_greedy_p50": statistics.median(ratios),
            "distinct_drafts": statistics.mean(len(t.drafts) for t in ts),
            "first_exact": 100 * sum(t.first_exact for t in ts) / len(ts),
            "best_exact": 100 * sum(t.best_exact for t in ts) / len(ts),
            "first_similarity": 100 * statistics.mean(t.first_similarity for t in ts),
            "best_similarity": 100 * statistics.mean(t.best_similarity for t in ts),
            "first_is_greedy": 100 * sum(t.same_as_greedy for t in ts) / len(ts),
        }
    return out


def print_table(summary: dict, file=sys.stdout) -> None:
    p = lambda s="": print(s, file=file)  # noqa: E731
    p(
        "| mode | method | k | n | latency p50 ms | x greedy (p50) | distinct | first EM % | best-of-k EM % "
        "| first / best edit sim % | first = greedy % |"
    )
    p("|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, methods in summary.items():
        for method, ks in methods.items():
            for k, s in ks.items():
                p(
                    f"| {mode} | {method} | {k} | {s['n']} | {s['latency_ms_p50']:.0f} | {s['x_greedy_p50']:.2f} "
                    f"| {s['distinct_drafts']:.2f} | {s['first_exact']:.1f} | {s['best_exact']:.1f} "
                    f"| {s['first_similarity']:.1f} / {s['best_similarity']:.1f} | {s['first_is_greedy']:.1f} |"
                )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench drafts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS)
    ap.add_argument("--limit", type=int, default=40, help="an evenly spaced subset of N scenarios (0: all)")
    ap.add_argument("--context-tokens", type=int, default=1024)
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    ap.add_argument("--ks", nargs="*", type=int, default=list(KS), help="drafts per request, line mode (1: greedy)")
    ap.add_argument(
        "--multiline-ks", nargs="*", type=int, default=list(MULTILINE_KS), help="drafts per request, 3-line mode"
    )
    ap.add_argument("--methods", nargs="*", default=list(DRAFT_METHODS), choices=list(DRAFT_METHODS))
    ap.add_argument(
        "--alphas",
        nargs="*",
        type=float,
        default=[SuperposedConfig().alpha],
        help="n-gram weights of the superposed rows (tuning: 0 0.2 0.4 0.54)",
    )
    ap.add_argument("--with-drafting", action="store_true", help="add a greedy row with the retrieval drafter")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write per-trial results and the summary here")
    args = ap.parse_args(argv)

    loaded = load_model(threads=args.threads)
    engine = Engine.from_loaded(loaded)
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    scenarios = [json.loads(line) for line in args.scenarios.read_text().splitlines() if line.strip()]
    chosen = select(scenarios, args.limit or None)
    # the project: every scenario's file as it is after the edit (each position replaces its own by the document)
    files = {sc["source"]: apply_edits(sc["before"], sc["edits"]) for sc in scenarios}
    store = ProjectStore()
    ids = engine.tokenizer(list(files.values()), add_special_tokens=False).input_ids
    store.update_many(dict(zip(files, ids, strict=True)))
    ngrams = NgramModel(store)
    t_index = time.perf_counter()
    ngrams.warm()
    print(
        f"project: {len(files)} files, {store.tokens} tokens; n-grams counted in {time.perf_counter() - t_index:.1f} s",
        file=sys.stderr,
    )
    rows = methods_for(args.alphas, args.methods)
    load_before = os.getloadavg()
    trials: list[Trial] = []
    t0 = time.perf_counter()
    for i, sc in enumerate(chosen, 1):
        result = run_position(engine, vocab, store, ngrams, sc, args, rows)
        store.update(sc["source"], engine.tokenizer(files[sc["source"]], add_special_tokens=False).input_ids)
        trials += result
        print(
            f"[{i}/{len(chosen)} {time.perf_counter() - t0:.0f}s] {sc['id']}: "
            + " ".join(
                f"{t.mode[0]}:{t.method}/{t.k}={'Y' if t.best_exact else '.'}{1000 * t.seconds:.0f}" for t in result
            ),
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
                    "context_tokens": args.context_tokens,
                    "threads": args.threads,
                    "scenarios": len(chosen),
                    "project_tokens": store.tokens,
                    "superposed": asdict(SuperposedConfig()),
                    "alphas": args.alphas,
                    "seconds": time.perf_counter() - t0,
                    "load_average": {"before": load_before, "after": os.getloadavg()},
                    "summary": summary,
                    "trials": [asdict(t) for t in trials],
                },
                indent=1,
            )
        )
    return 0
