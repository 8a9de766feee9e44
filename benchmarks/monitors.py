"""Monitor benchmark: does the dereference monitor make the identifier after `obj.` right?

For each point (a real dereference in real code, see benchmarks/monitor_points.py) the
document, with the target identifier cut out, is opened in the server's engine session
(`EngineSession`) with the caret right after the dot, left to settle as after a pause (the
prompt encoded, idle-time steps run), and asked for an inline suggestion there
(`EngineSession.complete`) once per variant:

- `plain`: every monitor off (`monitorMembers`, `monitorImports`, `monitorKeywords`,
  `monitorSyntax`: false);
- `first-token`: every monitor on, `monitorWholeNames` false: jedi's members as a hard mask when it
  answers within `jediTimeoutMs` (300 ms), greedy picking the best legal first token;
- `whole-names`: the same with `monitorWholeNames` true: the legal names ranked by the model's
  probability of the whole name;
- `first-token-30s`: `first-token` with `jediTimeoutMs` 30000: what the server's timeout costs.

Each monitored variant sets `monitorWholeNames` itself, so the rows mean the same whatever the default;
the one that is the server's default is marked in the table (`summary.default_variant`).
Every other setting is the server's default except `indexWorkspace: false` (the points' root is
the whole site-packages, jedi's project for the points, not a workspace to walk) and what a flag
changes (`--context-tokens`, `--model`, `--threads`, `--weights`, `--set`); the JSON records the
settings that differ from the defaults, the common ones under `summary.settings` and each
variant's under `summary.variants.*.settings`, and the environment the server's detection found for
the root (`summary.environment`). The prediction is the identifier the suggestion starts with (up to
its first non-identifier character).

Reported per variant: exact match over all points, over those where jedi resolves the receiver
(the benchmark's own call, no time limit), and per receiver kind (`receiver_kind`: `self`, `module`,
`imported`, `local`, `chain`); hallucinated members (jedi resolved the receiver and the prediction
is not among its names) among all points and among resolved ones; how often the request's jedi
answer came in time (of the points where the request asked jedi); the monitors' own time per token
and its share of decoding (waiting for jedi and the whole-name search excluded), and the whole-name
search's time and tree passes per point where it ran (`whole_name_ms_mean`, `whole_name_passes_mean`).

Each variant's request is the first at its point: jedi's answers are forgotten before it
(`Analyzer.forget`), so the session asks jedi afresh instead of reusing the answer the previous
variant's request (or the benchmark's own question) left in its cache. The document is opened with
the caret at the dot, so no change puts it there: the server's prefetch (jedi asked when a change
makes a trigger) does not run, and the figures are those of a request that asks jedi itself
(`bench latency`'s typing flows measure the prefetch).

    livekv bench monitors [--points FILE.jsonl[.gz]] [--root DIR] [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import re
import statistics
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import non_default, setting, target_row, write_json
from benchmarks.edits import select
from benchmarks.engine_session import MonitorTap, settle, start, with_settings
from completion.model.formats import WEIGHT_CHOICES
from completion.session import EngineSession
from completion.settings import Settings
from monitors.analysis import Query
from monitors.environment import project_paths

DEFAULT_POINTS = Path(__file__).parent / "data" / "monitor_points.jsonl.gz"
_IDENT = re.compile(r"\w*")
_ALL_OFF = {"monitorMembers": False, "monitorImports": False, "monitorKeywords": False, "monitorSyntax": False}
VARIANTS: dict[str, dict[str, bool | int]] = {
    "plain": _ALL_OFF,
    "first-token": {"monitorWholeNames": False},
    "whole-names": {"monitorWholeNames": True},
    "first-token-30s": {"monitorWholeNames": False, "jediTimeoutMs": 30_000},
}
KINDS = ("self", "module", "imported", "local", "chain")
BASE = {"indexWorkspace": False}  # the points' root is site-packages: jedi's project, not a folder to walk


@dataclass
class Trial:
    point: str
    receiver: str
    kind: str  # receiver_kind
    target: str
    jedi: str  # resolved / unresolved / dynamic / error (the benchmark's own jedi call, no time limit)
    jedi_knows: bool  # the target is among jedi's names
    names: int
    predictions: dict[str, str]
    exact: dict[str, bool]
    hallucinated: dict[str, bool]  # jedi resolved and the prediction is not among its names
    tokens: dict[str, int]
    decode_s: dict[str, float]  # the suggestion's decoding, waiting for jedi excluded
    monitor_s: dict[str, float]  # inside the monitors, waiting for jedi and the whole-name pass excluded
    scoring_s: dict[str, float]  # choosing whole names, the model's tree passes included
    scoring_passes: dict[str, int]  # the whole-name search's tree passes
    jedi_asked: dict[str, bool]  # the request asked jedi (its suggestion reached a trigger)
    jedi_late: dict[str, bool]  # the request's jedi answer came after jediTimeoutMs: decoded unconstrained
    jedi_s: float  # jedi's time at the trigger (the benchmark's call, once per point)
    prompt_tokens: int


def load_points(path: Path) -> list[dict]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def receiver_kind(point: dict, root: str) -> str:
    """What the receiver is, read from the file's own code: `self` (or `cls`); `chain` (the result of a
    call or subscript, or an attribute: `f().`, `a[i].`, `a.b.`); `module` (a name an `import` binds, or
    a `from` import of a module file); `imported` (another name a `from` import binds); else `local`."""
    name, text, offset = point["receiver"], point["text"], point["offset"]
    if name in ("self", "cls"):
        return "self"
    if name in (")", "]") or text[: offset - 1 - len(name)].endswith("."):
        return "chain"
    here = Path(root, point["path"]).parent
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return "module"
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if (a.asname or a.name) == name:
                    base = Path(root) if node.level == 0 else here.parents[node.level - 2] if node.level > 1 else here
                    folder = base.joinpath(*(node.module or "").split(".")) if node.module else base
                    found = (folder / f"{a.name}.py").is_file() or (folder / a.name / "__init__.py").is_file()
                    return "module" if found else "imported"
    return "local"


def run_point(session: EngineSession, variants: dict[str, Settings], point: dict, root: str, tap: MonitorTap) -> Trial:
    # the document as the user has it before typing the identifier: the target is not in it
    text = point["text"][: point["offset"]] + point["text"][point["offset"] + len(point["target"]) :]
    offset = point["offset"]
    path = os.path.join(root, point["path"])
    uri = Path(path).as_uri()
    session.open(uri, text)
    prompt_tokens = settle(session, uri, offset)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1)
    assert session.monitors is not None
    t0 = time.perf_counter()
    known = session.monitors.analyzer.ask(Query(text, line, column, path, root))
    names = known.result()
    jedi_s = time.perf_counter() - t0
    legal = names.names or frozenset()
    trial = Trial(
        point["id"], point["receiver"], receiver_kind(point, root), point["target"], names.why,
        point["target"] in legal, len(legal), {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, jedi_s, prompt_tokens,
    )  # fmt: skip
    for variant, settings in variants.items():
        session.apply_settings(settings)
        session.monitors.analyzer.forget()  # jedi is asked afresh, not answered from the last variant's question
        tap.clear()
        answer = session.complete(uri, offset)
        stats = tap.last().stats
        draft = answer.drafts[0] if answer is not None and answer.drafts else None
        suggestion = draft.text if draft is not None else ""
        prediction = suggestion[: _IDENT.match(suggestion).end()]  # type: ignore[union-attr]
        trial.predictions[variant] = prediction
        trial.exact[variant] = prediction == point["target"]
        trial.hallucinated[variant] = names.names is not None and prediction not in legal
        trial.tokens[variant] = draft.tokens if draft is not None else 0
        seconds = draft.seconds if draft is not None else (answer.seconds if answer is not None else 0.0)
        trial.decode_s[variant] = seconds - stats.analyzer_seconds
        trial.monitor_s[variant] = stats.seconds
        trial.scoring_s[variant] = stats.scoring_seconds
        trial.scoring_passes[variant] = stats.scoring_passes
        trial.jedi_asked[variant] = stats.triggers > 0
        trial.jedi_late[variant] = stats.timeouts > 0
    session.close(uri)
    return trial


def rate(flags: list[bool]) -> float | None:
    return round(100 * sum(flags) / len(flags), 1) if flags else None


def summarize(trials: list[Trial], variants: dict[str, Settings]) -> dict:
    resolved = [t for t in trials if t.jedi == "resolved"]
    out: dict = {
        "points": len(trials),
        "jedi_resolved_pct": rate([t.jedi == "resolved" for t in trials]),
        "jedi_knows_target_pct": rate([t.jedi_knows for t in trials]),
        "jedi_s_mean": round(statistics.mean(t.jedi_s for t in trials), 4) if trials else None,
        "kinds": {k: sum(t.kind == k for t in trials) for k in KINDS},
        "default_variant": "whole-names" if Settings().monitor_whole_names else "first-token",
        "variants": {},
    }
    for v, settings in variants.items():
        tokens = sum(t.tokens[v] for t in trials)
        monitor_s = sum(t.monitor_s[v] for t in trials)
        decode_s = sum(t.decode_s[v] for t in trials)
        scored = [t.scoring_s[v] for t in trials if t.scoring_passes[v] > 0]
        passes = [t.scoring_passes[v] for t in trials if t.scoring_passes[v] > 0]
        out["variants"][v] = {
            "settings": non_default(settings),
            "exact_pct": rate([t.exact[v] for t in trials]),
            "exact_resolved_pct": rate([t.exact[v] for t in resolved]),
            "exact_by_kind_pct": {k: rate([t.exact[v] for t in trials if t.kind == k]) for k in KINDS},
            "hallucinated_pct": rate([t.hallucinated[v] for t in trials]),
            "hallucinated_resolved_pct": rate([t.hallucinated[v] for t in resolved]),
            "jedi_in_time_pct": rate([not t.jedi_late[v] for t in trials if t.jedi_asked[v]]),
            "jedi_late_pct": rate([t.jedi_late[v] for t in trials]),
            "monitor_ms_per_token": round(1000 * monitor_s / tokens, 3) if tokens else None,
            "decode_ms_per_token": round(1000 * decode_s / tokens, 2) if tokens else None,
            "monitor_share_pct": round(100 * monitor_s / decode_s, 2) if decode_s else None,
            "whole_name_points": len(scored),
            "whole_name_ms_mean": round(1000 * statistics.mean(scored), 1) if scored else None,
            "whole_name_passes_mean": round(statistics.mean(passes), 2) if passes else None,
        }
    return out


TARGETS = {
    "exact": "exact match ≥ plain + 6 points",
    "hallucinated": "hallucinated ≤ 2% of resolved points at the server's jediTimeoutMs",
    "monitor": "monitor work ≤ 5% of a decode step",
}


def verdicts(summary: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Each target's measured figure (the server's variant) and whether it is met."""
    server, plain = summary["variants"][summary["default_variant"]], summary["variants"]["plain"]
    gain = round(server["exact_pct"] - plain["exact_pct"], 1)
    share = server["monitor_share_pct"]
    return {
        "exact": (f"{gain:+} points", gain >= 6),
        "hallucinated": (f"{server['hallucinated_resolved_pct']}%", server["hallucinated_resolved_pct"] <= 2),
        "monitor": (f"{share}%", share is not None and share <= 5),
    }


def table(result: dict[str, Any]) -> str:
    """The variants (exact match overall, where jedi resolves, per receiver kind; hallucinations; jedi in time;
    monitor cost), then the targets with the server's figures."""
    summary = result["summary"]
    kinds = summary["kinds"]
    resolved = round(summary["points"] * summary["jedi_resolved_pct"] / 100)
    lines = [
        f"| variant | exact % ({summary['points']}) | exact, resolved % ({resolved}) | "
        + " | ".join(f"{k} ({kinds.get(k, 0)})" for k in KINDS)
        + " | hallucinated % | hallucinated, resolved % | jedi in time % | monitor ms/token (of step) "
        "| whole-name search ms (passes) |",
        "|---" * (8 + len(KINDS)) + "|",
    ]
    for name, v in summary["variants"].items():
        shown = f"{name} (the server)" if name == summary["default_variant"] else name
        cost = "-" if not v["monitor_ms_per_token"] else f"{v['monitor_ms_per_token']} ({v['monitor_share_pct']}%)"
        search = (
            "-" if v["whole_name_ms_mean"] is None else f"{v['whole_name_ms_mean']} ({v['whole_name_passes_mean']})"
        )
        by_kind = " | ".join(
            "-" if v["exact_by_kind_pct"][k] is None else str(v["exact_by_kind_pct"][k]) for k in KINDS
        )
        in_time = "-" if v["jedi_in_time_pct"] is None else v["jedi_in_time_pct"]
        lines.append(
            f"| {shown} | {v['exact_pct']} | {v['exact_resolved_pct']} | {by_kind} | {v['hallucinated_pct']} "
            f"| {v['hallucinated_resolved_pct']} | {in_time} | {cost} | {search} |"
        )
    for key, (figure, met) in verdicts(summary).items():
        lines.append(target_row(8 + len(KINDS), TARGETS[key], figure, met))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench monitors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=Path, default=DEFAULT_POINTS, help="JSON lines (.jsonl or .jsonl.gz)")
    ap.add_argument(
        "--root", type=Path, default=Path(sysconfig.get_paths()["purelib"]), help="the points' project root"
    )
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of N points")
    ap.add_argument("--context-tokens", type=int, default=None, help="contextTokens (default: the server's)")
    ap.add_argument("--model", "--model-path", dest="model", default=None, help="modelPath (default: embedded)")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: the server's)")
    ap.add_argument("--weights", default=None, choices=WEIGHT_CHOICES, help="weights (default: the server's)")
    ap.add_argument(
        "--set", type=setting, action="append", default=[], metavar="KEY=JSON", help="another server setting"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 6 points")
    ap.add_argument("--json", type=Path, default=None, help="write per-point results and the summary here")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit = 6

    flags = {
        "contextTokens": args.context_tokens,
        "modelPath": args.model,
        "threads": args.threads,
        "weights": args.weights,
    }
    base = with_settings(Settings(), {**BASE, **{k: v for k, v in flags.items() if v is not None}, **dict(args.set)})
    variants = {name: with_settings(base, overlay) for name, overlay in VARIANTS.items()}
    session = start(base)
    assert session.monitors is not None
    tap = MonitorTap(session.monitors)
    root = os.path.abspath(args.root)
    session.workspace.roots = [root]  # jedi's project for the points; nothing walked (indexWorkspace: false)
    points = select(load_points(args.points), args.limit)
    trials: list[Trial] = []
    t0 = time.perf_counter()
    for i, point in enumerate(points, 1):
        trials.append(run_point(session, variants, point, root, tap))
        t = trials[-1]
        print(
            f"[{i}/{len(points)}] {t.point}: {t.target!r} jedi={t.jedi} "
            + " ".join(f"{v}={p!r}" for v, p in t.predictions.items()),
            file=sys.stderr,
        )
    session.shutdown()
    summary = summarize(trials, variants)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["model"] = session.model_name
    summary["weights"] = base.weights
    summary["context_tokens"] = base.context_tokens
    found = project_paths(root, base.environment_path)
    summary["environment"] = {"found_by": found.found_by, "environment": found.environment, "paths": found.paths}
    result = json.loads(json.dumps({"summary": summary, "trials": [asdict(t) for t in trials]}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, "monitors", model=args.model, settings=base, **result)
    print(table(result))
    return 0
