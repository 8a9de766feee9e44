"""Monitor benchmark: does the dereference monitor make the identifier after `obj.` right?

For each point (a real dereference in real code, see benchmarks/monitor_points.py) the
document, with the target identifier cut out, is encoded up to the dot, then the identifier
is decoded three ways from the same cache: `plain` (no monitor), `monitor` (jedi's members
as a hard mask when it resolves the receiver, nothing otherwise) and `monitor+bias` (the
same, plus a bonus for the member names the document itself uses, among the legal ones
when jedi resolved). The prediction is the identifier decoded (up to the first
non-identifier character).

    livekv bench monitors [--points FILE.jsonl[.gz]] [--root DIR] [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.edits import select
from completion.decoding.decode import decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.formats import FORMATS
from completion.model.loading import load_model
from completion.model.vocab import Vocabulary
from monitors.analysis import Query
from monitors.base import MonitorStats, Site
from monitors.chain import MonitorConfig, Monitors

DEFAULT_POINTS = Path(__file__).parent / "data" / "monitor_points.jsonl.gz"
_IDENT = re.compile(r"\w*")
MAX_TOKENS = 24  # long names split into many tokens (TEXT_DOCUMENT_WILL_SAVE...): let them finish
BIAS = 2.0
VARIANTS = {
    "plain": None,
    "monitor": MonitorConfig(imports=False, syntax=False, jedi_timeout=30.0),
    "monitor+bias": MonitorConfig(imports=False, syntax=False, jedi_timeout=30.0, bias=BIAS),
}


@dataclass
class Trial:
    point: str
    receiver: str
    target: str
    jedi: str  # resolved / unresolved / dynamic / error
    jedi_knows: bool  # the target is among jedi's names
    names: int
    predictions: dict[str, str]
    exact: dict[str, bool]
    hallucinated: dict[str, bool]  # jedi resolved and the prediction is not among its names
    tokens: dict[str, int]
    decode_s: dict[str, float]
    monitor_s: dict[str, float]  # inside the monitor, waiting for jedi excluded
    jedi_s: float  # jedi's time at the trigger (once per point)


def identifier_end(text: str) -> int | None:
    end = _IDENT.match(text).end()  # type: ignore[union-attr]
    return end if end < len(text) else None


def load_points(path: Path) -> list[dict]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def run_point(engine: Engine, vocab: Vocabulary, monitors: Monitors, point: dict, root: Path, window: int) -> Trial:
    # the document as the user has it before typing the identifier: the target is not in it
    text = point["text"][: point["offset"]] + point["text"][point["offset"] + len(point["target"]) :]
    offset = point["offset"]
    path = str(root / point["path"])
    live = LiveDocument(engine, text, cursor=offset, window=window)
    site = Site(text, offset, live.heal, path, str(root), key=("bench", point["id"]))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1)
    t0 = time.perf_counter()
    known = monitors.analyzer.ask(("bench-names", point["id"]), lambda: Query(text, line, column, path, str(root)))
    names = known.result()
    jedi_s = time.perf_counter() - t0
    legal = names.names or frozenset()
    trial = Trial(
        point["id"], point["receiver"], point["target"], names.why, point["target"] in legal, len(legal),
        {}, {}, {}, {}, {}, {}, jedi_s,
    )  # fmt: skip
    live.prompt_logits()  # the prompt's cost is shared; decode times below are the decoding only
    for variant, config in VARIANTS.items():
        stats = MonitorStats()
        processors = [] if config is None else monitors.for_site(site, config, stats)
        out = decode(live, vocab, max_tokens=MAX_TOKENS, processors=processors, stop=identifier_end)
        prediction = out.text[: _IDENT.match(out.text).end()]  # type: ignore[union-attr]
        trial.predictions[variant] = prediction
        trial.exact[variant] = prediction == point["target"]
        trial.hallucinated[variant] = names.names is not None and prediction not in legal
        trial.tokens[variant] = len(out.tokens)
        trial.decode_s[variant] = out.seconds - stats.analyzer_seconds
        trial.monitor_s[variant] = stats.seconds
    return trial


def rate(flags: list[bool]) -> float | None:
    return round(100 * sum(flags) / len(flags), 1) if flags else None


def summarize(trials: list[Trial]) -> dict:
    resolved = [t for t in trials if t.jedi == "resolved"]
    out: dict = {
        "points": len(trials),
        "jedi_resolved_pct": rate([t.jedi == "resolved" for t in trials]),
        "jedi_knows_target_pct": rate([t.jedi_knows for t in trials]),
        "jedi_s_mean": round(statistics.mean(t.jedi_s for t in trials), 4) if trials else None,
        "variants": {},
    }
    for v in VARIANTS:
        tokens = sum(t.tokens[v] for t in trials)
        monitor_s = sum(t.monitor_s[v] for t in trials)
        decode_s = sum(t.decode_s[v] for t in trials)
        out["variants"][v] = {
            "exact_pct": rate([t.exact[v] for t in trials]),
            "exact_resolved_pct": rate([t.exact[v] for t in resolved]),
            "hallucinated_resolved_pct": rate([t.hallucinated[v] for t in resolved]),
            "monitor_ms_per_token": round(1000 * monitor_s / tokens, 3) if tokens else None,
            "decode_ms_per_token": round(1000 * decode_s / tokens, 2) if tokens else None,
            "monitor_share_pct": round(100 * monitor_s / decode_s, 2) if decode_s else None,
        }
    return out


def print_table(summary: dict, file=sys.stdout) -> None:
    p = lambda s="": print(s, file=file)  # noqa: E731
    p(
        f"{summary['points']} points; jedi resolved {summary['jedi_resolved_pct']}% of receivers, "
        f"knew the target in {summary['jedi_knows_target_pct']}%, {1000 * summary['jedi_s_mean']:.0f} ms per call"
    )
    p()
    p("| variant | exact % | exact, jedi resolved % | hallucinated, jedi resolved % | monitor ms/token | of step % |")
    p("|---|---|---|---|---|---|")
    for v, s in summary["variants"].items():
        p(
            f"| {v} | {s['exact_pct']} | {s['exact_resolved_pct']} | {s['hallucinated_resolved_pct']} "
            f"| {s['monitor_ms_per_token']} | {s['monitor_share_pct']} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench monitors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=Path, default=DEFAULT_POINTS, help="JSON lines (.jsonl or .jsonl.gz)")
    ap.add_argument(
        "--root", type=Path, default=Path(sysconfig.get_paths()["purelib"]), help="the points' project root"
    )
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of N points")
    ap.add_argument("--context-tokens", type=int, default=1024, help="prompt window before the dot")
    ap.add_argument("--model", default=None, help="model path (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="fp32", choices=FORMATS)
    ap.add_argument("--json", type=Path, default=None, help="write per-point results and the summary here")
    args = ap.parse_args(argv)

    engine = Engine.from_loaded(load_model(args.model, threads=args.threads), args.weights)
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    monitors = Monitors(vocab)
    monitors.analyzer.warm_up().result()
    points = select(load_points(args.points), args.limit)
    trials: list[Trial] = []
    t0 = time.perf_counter()
    for i, point in enumerate(points, 1):
        trials.append(run_point(engine, vocab, monitors, point, args.root, args.context_tokens))
        t = trials[-1]
        print(
            f"[{i}/{len(points)}] {t.point}: {t.target!r} jedi={t.jedi} "
            + " ".join(f"{v}={p!r}" for v, p in t.predictions.items()),
            file=sys.stderr,
        )
    monitors.shutdown()
    summary = summarize(trials)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["weights"] = args.weights
    summary["context_tokens"] = args.context_tokens
    print_table(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "trials": [asdict(t) for t in trials]}, indent=1))
    return 0
