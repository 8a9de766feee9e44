"""Multiple-drafts benchmark: k inline drafts by each method, their cost and how often one is right.

At the edit benchmark's positions (`benchmarks/data/edits.jsonl`: a real standard-library
file after a realistic edit, the cursor at the start of a real line) the document is the
file with the line(s) to predict taken out, so neither the prompt, the suffix that
post-processing checks against, nor the project holds the answer. The project is every
scenario's file as it is after its edit, written to a temporary folder (one flat file per
scenario) and walked as a workspace folder of the server's engine session (`EngineSession`),
as the server walks one: its cross-file snippets and its tokens (the drafter's store and the
superposed drafts' n-grams). The document is opened in the session under its own file's name
(an open document replaces its saved file in the indexes; it is closed after the position, and
the saved file comes back), left to settle as after a pause (the prompt encoded, idle-time
steps run) and asked at the cursor with `EngineSession.complete`.

Two modes: `line` (the server's defaults: one line, at most `maxTokens`, 48; the target is the
real line) and `3-line` (`multiline: true`: the server's multi-line suggestion, to the block's
end; the target is the real lines up to 3 or the first blank one, and each draft is compared
on as many of its own lines, cut the same way). The line mode's document is opened first; the
3-line mode's takes the further lines out with an edit after the caret (`EngineSession.change`),
so the prompt is encoded once per position.

Rows, every request with `drafts: k`, `draftMethod` and `ngramWeight` set and every other setting
the server's default (monitors, post-processing and `drafting` on):
- `greedy+drafting` (k = 1): the server's single draft, greedy decoding with the retrieval drafter:
  **the reference** of every ratio and of "first draft = one draft";
- `greedy` (k = 1, `drafting: false`): plain greedy, one token per pass (the same text): an extra row
  and a second ratio (`x greedy`);
- `branches`, `superposed`, `beam`, `greedy-runs` at each k > 1 of --ks (line mode; 1 3 by default)
  and --multiline-ks (3-line mode; 1 3); `--alphas` adds superposed rows with other n-gram weights.
  `greedy-runs` gets the session's drafter, as the server gives it (`drafting` on): each trial records
  the draft tokens the drafter got accepted (`drafted_tokens`).
At each position and mode an untimed request comes first (the first decode after encoding runs
slower), then every row once, in an order rotated by one per position, so no row always runs
first; the n-grams a cell uses are counted before it, as the server's indexing thread does.

The default run (10 of the 180 scenarios, evenly spaced; ks 1 3; k = 2 and 5 by `--ks 1 2 3 5`)
took 12 minutes on 2 cores (2026-12-05), most of it settling each document (its idle-time steps: 30-120 s
a position against ~20 s of requests), so exact match moves in steps of 10 points; `--limit 40` is
the run before it (~25-40 minutes). `--quick` runs 1 scenario the same way (~1.5 minutes).

Reported per mode, method and k: latency p50 (ms, `Answer.seconds`: the request to its items),
the median per-position ratio to the server's single draft (`x one draft`) and to plain greedy;
distinct drafts shown per request; exact match of the first draft and best-of-k (any draft)
against the real text; edit similarity of the first draft and the best draft; how often the first
draft equals the single draft's suggestion. The targets (README), judged on the server's default
method (`draftMethod`) at k = 3 in line mode against `greedy+drafting`: latency ≤ 1.3x one draft
(median per position); best-of-3 exact match ≥ one draft's + 5 points; first-draft exact match no
worse than one draft's by more than 1 point.

    livekv bench drafts [--quick] [--limit 10] [--context-tokens N] [--ks 1 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import non_default, setting, target_row, write_json
from benchmarks.edits import DEFAULT_SCENARIOS, edit_similarity, select
from benchmarks.engine_session import index, refresh_in_one_pass, settle, start, with_settings
from benchmarks.scenarios import apply_edits
from completion.decoding.suggest import DRAFT_METHODS
from completion.decoding.superposed import SuperposedConfig
from completion.live.document import TextEdit
from completion.session import EngineSession
from completion.settings import Settings

MODES: dict[str, dict[str, Any]] = {"line": {}, "3-line": {"multiline": True}}
KS = (1, 3)  # the targets' k; 2 and 5 by --ks: the default run stays near 12 minutes on 2 cores
MULTILINE_KS = (1, 3)  # multi-line drafts cost ~3x a line's
LIMIT = 10  # a position costs ~20 s of requests and 30-120 s of settling (idle-time steps) on 2 cores
QUICK_LIMIT = 1
WARM_UP = {"maxTokens": 4, "drafting": False}
REFERENCE = "greedy+drafting"  # the server's single draft: what k drafts are measured against
JUDGED_K = 3
LATENCY_X = 1.3
BEST_GAIN_POINTS = 5.0
FIRST_SLACK_POINTS = 1.0


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
    same_as_one_draft: bool  # the first draft is the single draft's (greedy+drafting's) suggestion
    drafted_tokens: int  # draft tokens the session's drafter got accepted in this request
    settings: dict[str, Any]  # the request's settings that differ from the server's defaults


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


def project_name(source: str) -> str:
    """A scenario's file in the project folder: one flat module per scenario, named after its source
    ("email/policy.py:129" -> "email_policy_py_129.py"), so no folder shadows a standard-library package."""
    return re.sub(r"\W", "_", source) + ".py"


def methods_for(alphas: list[float], wanted: list[str]) -> dict[str, dict[str, Any]]:
    """Row name -> the settings of its requests (draftMethod, ngramWeight)."""
    default = Settings().ngram_weight
    out: dict[str, dict[str, Any]] = {}
    for m in wanted:
        if m != "superposed":
            out[m] = {"draftMethod": m}
            continue
        for a in alphas:
            name = "superposed" if a == default else f"superposed a={a:g}"
            out[name] = {"draftMethod": "superposed", "ngramWeight": a}
    return out


def run_position(
    session: EngineSession,
    base: Settings,
    sc: dict,
    folder: Path,
    args: argparse.Namespace,
    rows: dict[str, dict[str, Any]],
    turn: int,
) -> list[Trial]:
    """Every mode, method and k at one position, the rows' order rotated by `turn`. The document is opened for
    the first mode; the next takes out the further lines with an edit after the caret, which a prefix-only prompt
    does not hold."""
    after, cursor = apply_edits(sc["before"], sc["edits"]), sc["cursor"]
    uri = (folder / project_name(sc["source"])).as_uri()
    removed = 0  # characters of `after` taken out at the cursor so far
    trials: list[Trial] = []
    for mode in [m for m in MODES if m in args.modes]:  # each mode takes out more: line first
        target = target_lines(after[cursor:], mode)
        text = after[:cursor] + after[cursor + len(target) + 1 :]
        if not removed:
            session.open(uri, text)
        else:  # take out the further lines: an edit after the prompt's end
            session.change(uri, [TextEdit(cursor, cursor + len(target) + 1 - removed, "")], text)
        removed = len(target) + 1
        assert session.text_of(uri) == text
        mode_settings = with_settings(base, MODES[mode])
        session.apply_settings(mode_settings)
        settle(session, uri, cursor)
        ks = args.ks if mode == "line" else args.multiline_ks
        trials += mode_trials(session, uri, cursor, mode_settings, sc["id"], mode, target, ks, rows, turn)
    session.close(uri)
    return trials


def compared(draft: str, mode: str) -> str:
    """What of a draft is held against the target: all of it in line mode, else its lines as the target's are cut."""
    return draft if mode == "line" else target_lines(draft, mode)


def mode_trials(
    session: EngineSession,
    uri: str,
    cursor: int,
    base: Settings,
    scenario: str,
    mode: str,
    target: str,
    ks: list[int],
    rows: dict[str, dict[str, Any]],
    turn: int,
) -> list[Trial]:
    """One request per row and k after an untimed one; the order rotated by `turn` (the reference among them)."""
    want = normal(target)
    drafter = session.drafter  # the server's: requests with `drafting` on decode with it
    assert drafter is not None

    def trial(method: str, k: int, values: dict[str, Any]) -> Trial:
        settings = with_settings(base, {"drafts": k, **values})
        session.apply_settings(settings)
        session.warm_ngrams()  # the server's indexing thread counts the n-grams the settings use
        accepted = drafter.stats.accepted_tokens
        answer = session.complete(uri, cursor)
        assert answer is not None, f"{uri} is not open in the session"
        drafts = [d.text for d in answer.drafts]
        shown = [normal(compared(d, mode)) for d in drafts]
        sims = [edit_similarity(d, want) for d in shown] or [0.0]
        return Trial(
            scenario=scenario,
            mode=mode,
            method=method,
            k=k,
            seconds=answer.seconds,
            drafts=drafts,
            target=target,
            first_exact=bool(shown) and shown[0] == want,
            best_exact=any(d == want for d in shown),
            first_similarity=sims[0],
            best_similarity=max(sims),
            same_as_one_draft=False,  # set once the reference has run
            drafted_tokens=drafter.stats.accepted_tokens - accepted,
            settings=non_default(settings),
        )

    # untimed: the first decode after the prompt's encoding runs slower than the ones after it;
    # it must not be charged to whichever method runs first
    session.apply_settings(with_settings(base, WARM_UP))
    session.complete(uri, cursor)
    cells: list[tuple[str, int, dict[str, Any]]] = [(REFERENCE, 1, {}), ("greedy", 1, {"drafting": False})]
    cells += [(name, k, values) for k in ks if k > 1 for name, values in rows.items()]  # k = 1: greedy for all
    turn %= len(cells)
    trials = [trial(*c) for c in cells[turn:] + cells[:turn]]
    (reference,) = [t for t in trials if t.method == REFERENCE]
    single = reference.drafts[0] if reference.drafts else ""
    for t in trials:
        t.same_as_one_draft = (t.drafts[0] if t.drafts else "") == single
    return trials


def summarize(trials: list[Trial]) -> dict:
    reference = {(t.scenario, t.mode): t for t in trials if t.method == REFERENCE}
    greedy = {(t.scenario, t.mode): t for t in trials if t.method == "greedy"}
    cells: dict[tuple[str, str, int], list[Trial]] = {}
    for t in trials:
        cells.setdefault((t.mode, t.method, t.k), []).append(t)
    out: dict = {}
    for (mode, method, k), ts in cells.items():
        ratios = [t.seconds / reference[t.scenario, t.mode].seconds for t in ts]
        to_greedy = [t.seconds / greedy[t.scenario, t.mode].seconds for t in ts]
        out.setdefault(mode, {}).setdefault(method, {})[str(k)] = {
            "settings": ts[0].settings,
            "n": len(ts),
            "latency_ms_p50": 1000 * statistics.median(t.seconds for t in ts),
            "latency_ms_mean": 1000 * statistics.mean(t.seconds for t in ts),
            "x_one_draft_p50": statistics.median(ratios),
            "x_one_draft_mean": statistics.mean(ratios),
            "x_greedy_p50": statistics.median(to_greedy),
            "distinct_drafts": statistics.mean(len(t.drafts) for t in ts),
            "first_exact": 100 * sum(t.first_exact for t in ts) / len(ts),
            "best_exact": 100 * sum(t.best_exact for t in ts) / len(ts),
            "first_similarity": 100 * statistics.mean(t.first_similarity for t in ts),
            "best_similarity": 100 * statistics.mean(t.best_similarity for t in ts),
            "first_is_one_draft": 100 * sum(t.same_as_one_draft for t in ts) / len(ts),
            "drafted_tokens": statistics.mean(t.drafted_tokens for t in ts),
        }
    return out


def targets(summary: dict[str, Any], method: str) -> list[tuple[str, str, bool]]:
    """The README's targets at k = 3, line mode, for `method` against the single draft: (sentence, figure, met)."""
    one, judged = summary["line"][REFERENCE]["1"], summary["line"].get(method, {}).get(str(JUDGED_K))
    if judged is None:
        return []
    gain = judged["best_exact"] - one["first_exact"]
    loss = one["first_exact"] - judged["first_exact"]
    return [
        (
            f"k = {JUDGED_K} `{method}` drafts cost ≤ {LATENCY_X}x one draft (greedy+drafting, median per position)",
            f"{judged['x_one_draft_p50']:.2f}x",
            judged["x_one_draft_p50"] <= LATENCY_X,
        ),
        (
            f"best-of-{JUDGED_K} exact match ≥ one draft's + {BEST_GAIN_POINTS:g} points",
            f"{judged['best_exact']:.1f}% vs {one['first_exact']:.1f}% ({gain:+.1f})",
            gain >= BEST_GAIN_POINTS,
        ),
        (
            f"first draft's exact match no worse than one draft's by more than {FIRST_SLACK_POINTS:g} point",
            f"{judged['first_exact']:.1f}% vs {one['first_exact']:.1f}%",
            loss <= FIRST_SLACK_POINTS,
        ),
    ]


def table(result: dict[str, Any]) -> str:
    """The written JSON as a markdown table: a row per mode, method and k (the single draft first), then the
    targets, judged on the server's default method at k = 3 in line mode."""
    summary = result["summary"]
    lines = [
        "| mode | method | k | n | latency p50 ms | x one draft (p50) | x greedy (p50) | distinct | first EM % "
        "| best-of-k EM % | first / best edit sim % | first = one draft % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, methods in summary.items():
        for method in sorted(methods, key=lambda m: (m != REFERENCE, m != "greedy")):
            for k, c in methods[method].items():
                lines.append(
                    f"| {mode} | {method} | {k} | {c['n']} | {c['latency_ms_p50']:.0f} | {c['x_one_draft_p50']:.2f} "
                    f"| {c['x_greedy_p50']:.2f} | {c['distinct_drafts']:.2f} | {c['first_exact']:.1f} "
                    f"| {c['best_exact']:.1f} | {c['first_similarity']:.1f} / {c['best_similarity']:.1f} "
                    f"| {c['first_is_one_draft']:.1f} |"
                )
    if "line" in summary and REFERENCE in summary["line"]:
        for target, figure, met in targets(summary, result["draft_method"]):
            lines.append(target_row(12, target, figure, met))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench drafts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS)
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_LIMIT} scenarios")
    ap.add_argument("--limit", type=int, default=None, help=f"an evenly spaced subset of N scenarios ({LIMIT}; 0: all)")
    ap.add_argument("--context-tokens", type=int, default=None, help="contextTokens (default: the server's)")
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
        default=[Settings().ngram_weight],
        help="ngramWeight of the superposed rows (tuning: 0 0.2 0.4 0.54)",
    )
    ap.add_argument("--threads", type=int, default=None, help="threads (default: the server's)")
    ap.add_argument("--model-path", default=None, help="modelPath (default: the embedded model)")
    ap.add_argument(
        "--set", type=setting, action="append", default=[], metavar="KEY=JSON", help="another server setting"
    )
    ap.add_argument("--json", type=Path, default=None, help="write per-trial results and the summary here")
    args = ap.parse_args(argv)
    limit = args.limit if args.limit is not None else QUICK_LIMIT if args.quick else LIMIT

    flags = {"contextTokens": args.context_tokens, "threads": args.threads, "modelPath": args.model_path}
    base = with_settings(Settings(), {**{k: v for k, v in flags.items() if v is not None}, **dict(args.set)})
    session = start(base)
    settled = refresh_in_one_pass(session)
    scenarios = [json.loads(line) for line in args.scenarios.read_text().splitlines() if line.strip()]
    chosen = select(scenarios, limit or None)
    rows = methods_for(args.alphas, args.methods)
    with tempfile.TemporaryDirectory(prefix="livekv-drafts-") as tmp:
        # the project: every scenario's file as it is after the edit (each position opens its own as the document)
        folder = Path(tmp).resolve()
        for sc in scenarios:
            (folder / project_name(sc["source"])).write_text(apply_edits(sc["before"], sc["edits"]))
        project = index(session, str(folder))
        print(f"project: {project['files']} files, {project['tokens']} tokens", file=sys.stderr)
        trials: list[Trial] = []
        t0 = time.perf_counter()
        for i, sc in enumerate(chosen, 1):
            result = run_position(session, base, sc, folder, args, rows, i - 1)
            trials += result
            print(
                f"[{i}/{len(chosen)} {time.perf_counter() - t0:.0f}s] {sc['id']}: "
                + " ".join(
                    f"{t.mode[0]}:{t.method}/{t.k}={'Y' if t.best_exact else '.'}{1000 * t.seconds:.0f}" for t in result
                ),
                file=sys.stderr,
                flush=True,
            )
    session.shutdown()
    payload = {
        "reference": REFERENCE,
        "draft_method": base.draft_method,  # the server's: the one the targets are judged on
        "mode_settings": {m: MODES[m] for m in args.modes},
        "ks": {"line": args.ks, "3-line": args.multiline_ks},
        "scenarios": len(chosen),
        "project_files": project["files"],
        "project_tokens": project["tokens"],
        "superposed": asdict(SuperposedConfig()),
        "alphas": args.alphas,
        "settle": settled,
        "seconds": time.perf_counter() - t0,
        "summary": summarize(trials),
        "trials": [asdict(t) for t in trials],
    }
    result = json.loads(json.dumps(payload))  # what the JSON holds: the printed table is rendered from it
    write_json(args.json, "drafts", model=args.model_path, settings=base, **payload)
    print(table(result))
    return 0
