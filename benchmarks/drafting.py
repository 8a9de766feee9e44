"""Drafting benchmark: how much faster retrieval drafts make greedy decoding, and that nothing changes.

The project is the installed `jedi` package (pinned in pyproject.toml), a workspace folder of the
server's engine session (`EngineSession`): walked into its indexes as the server walks one. At
each position (a line start, after the indentation, in the second half of a jedi file; one
position per file, fixed seed) the document is the file cut at the cursor, opened in the session
under the file's own name, so neither the prompt nor the index holds the code that follows (an
open document replaces its saved file in the indexes; it is closed after the position, and the
saved file comes back). The document is left to settle as after a pause (the prompt encoded,
idle-time steps run: the rest of the cache, its refresh, the cross-file context), then asked at
the cursor with `EngineSession.complete`, once untimed (so jedi's answers and the logits after the
prompt are there for every timed request alike) and once per method. Modes, as settings:

- `line`: the server's defaults (one line: stop at the end of the line, at most `maxTokens`, 48);
- `multiline`: `multiline: true`, the server's multi-line suggestions (to the block's end);
- `prose`: `multiline: true` on the English module docstrings of standard-library files (opened
  as untitled documents), text the project (code) has little of; the worst case, where nothing
  matches at all, is the `wrong-drafts` method below.

Methods, all the session's requests at the same caret, interleaved per position:
- `greedy`: `drafting: false`, one token per pass (the reference output);
- `drafting`: the server's defaults: the session's own drafter (prompt lookup, then project store);
- `wrong-drafts`: the same drafter with every draft made wrong (its tokens replaced by others than
  greedy's), put in the session's place: what drafting costs where nothing ever matches;
- `pld-ours`: transformers' prompt lookup algorithm (n-gram of 2 then 1, first match, 10 tokens) as
  the session's drafter: drafting strategies compared on one runner;
- `hf-greedy`, `hf-pld`: transformers' `generate` on the Hugging Face model, greedy and with
  `prompt_lookup_num_tokens=10`, on the session's prompt, as many new tokens as greedy wrote: what
  a user of transformers could switch on today (baselines by name: not the server's path).
  generate() starts from the prompt (its assisted decoding re-feeds the whole prompt on its first
  pass, so a prefilled cache would be read twice and misplaced) and is timed from the end of its
  first pass (found with a stopping criterion, which generate() asks once per pass), as ours are
  timed after the prompt's pass; for `hf-pld` that first pass also verified a draft, whose tokens
  so come free. HF cannot heal the token under the cursor, so its text may differ from ours from
  the first token; `hf-pld` is held to `hf-greedy`'s output.

Ours are timed as the server answers: `Answer.seconds`, from the request to its items (cursor
update, monitors, decoding, post-processing). The tokens each decoded and its passes are read
beside the session without changing what it does: a processor last in the chain notes each
step's pick (`engine_session.Picks`), and the drafter in use is wrapped to note each pass's size.
"Identical" compares the decoded tokens with the reference's; where `timeBudgetMs` (the server's
3 s) cut a decode short, its tokens must be a prefix of the other's.

What changed from the benchmark before it went through the session (its results are not
comparable row for row): the server's stop rules, time budget, monitors and post-processing are
in every request (before: a custom stop, no budget, no monitors, the decode loop alone);
`multiline` and `prose` decode the server's multi-line suggestion, at most 48 tokens to the
block's end (before: 64 tokens, no stop but end-of-sequence); the prompt window is the server's
`contextTokens` (4096) unless `--context-tokens` says otherwise (before: 1024), with the server's
cross-file context in front; and the server's drafter keeps its state across requests (before: a
new one per position). The JSON records the settings that differ from the defaults: the common
ones under `settings`, each mode's and method's under `mode_settings` and `method_settings`.

Reported per mode and method: tokens/s, speed-up over `greedy`, tokens per forward pass,
and outputs token-identical to the method's reference (`greedy`; `hf-greedy` for `hf-pld`).
What caps the speed-up on this CPU is the cost of a pass over 1 + draft tokens against a
one-token step: it is measured in the same run (q = 1..11 at the benchmark's context, before
and after the positions, the smaller of the two; a component measurement on the session's
runner), and each of our methods also gets the speed-up those costs predict from its passes'
sizes (`projected`), a figure the machine's load does not move. The index of a 1,000-file
project (the first `--index-files` files of the installed `transformers` package; 0 skips it) is
measured too, on the project token store alone: time, tokens, memory, and the time of one lookup.

    livekv bench drafting [--positions N] [--context-tokens N] [--modes ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import statistics
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from benchmarks.common import non_default, setting
from benchmarks.engine_session import MonitorTap, index, settle, start, with_settings
from benchmarks.speed import time_passes
from completion.drafting.datastore import ProjectStore
from completion.drafting.drafter import Drafter
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.formats import WEIGHT_CHOICES
from completion.model.loading import LoadedModel, load_model
from completion.project.files import python_files
from completion.project.token_store import ProjectIndex
from completion.session import EngineSession
from completion.settings import Settings

SEED = 0
MODES: dict[str, dict[str, Any]] = {"line": {}, "multiline": {"multiline": True}, "prose": {"multiline": True}}
METHODS = ("greedy", "drafting", "wrong-drafts", "pld-ours", "hf-greedy", "hf-pld")
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"greedy": {"drafting": False}, "drafting": {}}
PLD_TOKENS = 10
INDEX_FILES = 1000
LOOKUPS = 200
COSTED_SIZES = tuple(range(1, PLD_TOKENS + 2))  # 1 + the longest draft (PLD's)


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def code_positions(root: Path, count: int, rng: random.Random) -> list[tuple[str, int]]:
    """(path, offset) pairs: one line start (after indentation) in the second half of each of `count` files."""
    files = [p for p in python_files(root, max_bytes=500_000) if p.read_text().count("\n") >= 150]
    rng.shuffle(files)
    out = []
    for path in files[:count]:
        lines = path.read_text().splitlines(keepends=True)
        starts = [sum(map(len, lines[:i])) for i in range(len(lines))]
        candidates = [
            starts[i] + len(line) - len(line.lstrip())
            for i, line in enumerate(lines)
            if i >= len(lines) // 2 and line.strip() and not line.lstrip().startswith(("#", '"', "'"))
        ]
        out.append((str(path), rng.choice(candidates)))
    return out


def prose_documents(count: int) -> list[str]:
    """Beginnings of long English module docstrings from the standard library, cut mid-sentence."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text()))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc and len(doc) > 1500 and doc.count(">>>") == 0:
            cut = doc.rfind(" ", 0, 800)
            docs.append('"""' + doc[:cut])
    return docs[:count]


class WrongDrafts(Drafter):
    """The server's drafter, every draft made wrong from its first token (greedy's output is known):
    the worst case, text where nothing matches, with the lookups and the draft length as they are."""

    def __init__(self, project: ProjectStore | None, vocab_size: int) -> None:
        super().__init__(project)
        self.greedy: list[int] = []  # greedy's tokens at the position, set before each request
        self.vocab_size = vocab_size

    def propose(self, generated: Sequence[int], limit: int) -> list[int]:
        draft = super().propose(generated, limit)
        right = self.greedy[len(generated) : len(generated) + len(draft)]
        return [(tok + 1) % self.vocab_size for tok in right] + draft[len(right) :]


class PromptLookup(Drafter):
    """transformers' PromptLookupCandidateGenerator in our loop: n-gram of max_n down to 1, the first match."""

    def __init__(self, tokens: int = PLD_TOKENS, max_n: int = 2) -> None:
        super().__init__()
        self.tokens, self.max_n = tokens, max_n

    def propose(self, generated: Sequence[int], limit: int) -> list[int]:
        stream = np.concatenate([self._prompt, np.asarray(generated, dtype=np.int32)])
        for n in range(min(self.max_n, len(stream) - 1), 0, -1):
            windows = np.lib.stride_tricks.sliding_window_view(stream[:-1], n)
            hits = np.flatnonzero((windows == stream[-n:]).all(axis=1))
            if len(hits):
                start = int(hits[0]) + n
                return stream[start : start + min(self.tokens, limit)].tolist()
        return []


class PassSizes(Drafter):
    """A drafter in the session's place that passes every call on to `inner` and notes each pass's size
    (the decode loop tells its drafter what each pass fed: the chosen token and the draft)."""

    def __init__(self, inner: Drafter) -> None:  # no state of its own but the sizes: `inner` keeps it
        self.inner = inner
        self.sizes: list[int] = []

    def begin(self, prompt: Sequence[int]) -> None:
        self.sizes = []
        self.inner.begin(prompt)

    def propose(self, generated: Sequence[int], limit: int) -> list[int]:
        return self.inner.propose(generated, limit)

    def observe(self, fed: Sequence[int], predicted: Sequence[int]) -> None:
        self.sizes.append(len(fed))
        self.inner.observe(fed, predicted)

    def feedback(self, proposed: int, accepted: int) -> None:
        self.inner.feedback(proposed, accepted)


@dataclass
class Run:
    """One of our requests: the tokens it decoded, its time, the sizes of its passes after the prompt's."""

    tokens: list[int]
    seconds: float
    pass_sizes: list[int]
    cut: bool  # timeBudgetMs ended it


def same_output(ref: Run, out: Run) -> bool:
    """Token-identical, or where the time budget cut one short, its tokens a prefix of the other's."""
    if ref.tokens == out.tokens:
        return True
    short, long = (ref, out) if len(ref.tokens) < len(out.tokens) else (out, ref)
    return short.cut and long.tokens[: len(short.tokens)] == short.tokens


@dataclass
class Tally:
    tokens: int = 0
    seconds: float = 0.0
    passes: int = 0
    identical: int = 0
    runs: int = 0
    ratios: list[float] = field(default_factory=list)  # per position: these tokens/s / greedy's
    sizes: dict[int, int] = field(default_factory=dict)  # pass size -> how many passes fed that many tokens

    def add_passes(self, sizes: Sequence[int]) -> None:
        self.passes += len(sizes) + 1  # the first token came from the prompt's pass
        for q in sizes:
            self.sizes[q] = self.sizes.get(q, 0) + 1

    def cost(self, costs: dict[int, float]) -> float:
        """The passes after the prompt's, in one-token steps, per token decoded."""
        return sum(n * costs[q] for q, n in self.sizes.items()) / max(self.tokens, 1)

    def row(self, greedy: Tally, costs: dict[int, float]) -> dict[str, object]:
        tps = self.tokens / self.seconds if self.seconds else 0.0
        projected = greedy.cost(costs) / self.cost(costs) if self.sizes and self.cost(costs) else None
        return {
            "projected_speedup": projected,
            "pass_sizes": dict(sorted(self.sizes.items())),
            "runs": self.runs,
            "tokens": self.tokens,
            "tokens_per_s": tps,
            "speedup": tps / (greedy.tokens / greedy.seconds) if greedy.seconds and greedy.tokens else 0.0,
            "median_position_speedup": statistics.median(self.ratios) if self.ratios else 0.0,
            "tokens_per_pass": self.tokens / self.passes if self.passes else 0.0,
            "identical": self.identical,
        }


class FirstPassClock(StoppingCriteria):
    """Never stops generate(); notes when its first forward pass (the prompt's) has been consumed.

    generate() asks its stopping criteria once per pass, after the pass's tokens are committed,
    in greedy and in assisted (prompt lookup) decoding alike."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        if self.first is None:
            self.first = time.perf_counter()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def hf_generate(loaded: LoadedModel, prompt: list[int], new: int, pld: bool) -> tuple[list, float]:
    """transformers' greedy or prompt lookup decoding of `new` tokens; seconds after the prompt's pass."""
    ids = torch.tensor([prompt])
    kwargs = {"prompt_lookup_num_tokens": PLD_TOKENS} if pld else {}
    clock = FirstPassClock()
    out = loaded.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        pad_token_id=loaded.tokenizer.eos_token_id,
        stopping_criteria=StoppingCriteriaList([clock]),
        **kwargs,
    )
    end = time.perf_counter()
    assert clock.first is not None
    return out[0, len(prompt) :].tolist(), max(end - clock.first, 1e-9)


class Bench:
    """The session, its drafters and what a request of each method reads."""

    def __init__(self, session: EngineSession, loaded: LoadedModel) -> None:
        assert session.engine is not None and session.monitors is not None and session.drafter is not None
        self.session, self.loaded = session, loaded
        self.tap = MonitorTap(session.monitors, picks=True)
        self.eos = frozenset(session.engine.tokenizer.all_special_ids)
        self.server_drafter = session.drafter
        store = session.workspace.tokens.store if session.workspace.tokens is not None else None
        self.wrong = WrongDrafts(store, session.engine.runner.vocab_size)
        self.drafters: dict[str, Drafter] = {
            "drafting": self.server_drafter,
            "wrong-drafts": self.wrong,
            "pld-ours": PromptLookup(),
        }

    def request(self, uri: str, offset: int, settings: Settings, method: str = "greedy") -> Run:
        """One request of `method` at the caret (the session's settings, and drafter, for the method)."""
        session = self.session
        session.apply_settings(settings)
        sizes = PassSizes(self.drafters[method]) if method in self.drafters else None
        session.drafter = sizes if sizes is not None else self.server_drafter
        self.tap.clear()
        try:
            answer = session.complete(uri, offset)
        finally:
            session.drafter = self.server_drafter
        assert answer is not None, f"{uri} is not open in the session"
        picks = self.tap.last().picks
        assert picks is not None
        tokens = picks.tokens(self.eos)
        passes = sizes.sizes if sizes is not None else [1] * max(len(picks.ids) - 1, 0)
        cut = answer.seconds >= settings.time_budget_ms / 1000
        return Run(tokens, answer.seconds, passes, cut)


def run_position(bench: Bench, uri: str, offset: int, mode: Settings, tallies: dict[str, Tally]) -> dict[str, object]:
    """Run every method at one position; returns the position's record."""
    session = bench.session
    settings = {m: with_settings(mode, METHOD_SETTINGS.get(m, {})) for m in METHODS if not m.startswith("hf")}
    bench.request(uri, offset, settings["greedy"])  # untimed: jedi's answers, the prompt's logits
    ours: dict[str, Run] = {}
    ours["greedy"] = reference = bench.request(uri, offset, settings["greedy"])
    bench.wrong.greedy = reference.tokens
    accepted = {name: drafter.stats.accepted_tokens for name, drafter in bench.drafters.items()}
    for name in ("drafting", "wrong-drafts", "pld-ours"):
        ours[name] = bench.request(uri, offset, settings[name], name)
        accepted[name] = bench.drafters[name].stats.accepted_tokens - accepted[name]
    for name, out in ours.items():
        t = tallies[name]
        t.tokens += len(out.tokens)
        t.seconds += out.seconds
        t.add_passes(out.pass_sizes)
        t.identical += same_output(reference, out)
        t.runs += 1
        t.ratios.append(rate(out) / rate(reference) if rate(reference) else 0.0)
    record: dict[str, object] = {
        "tokens": len(reference.tokens),
        "accepted": accepted["drafting"],
        "accepted_by_method": accepted,  # draft tokens greedy chose (wrong-drafts: none while greedy is known)
        "tokens_by_method": {name: len(out.tokens) for name, out in ours.items()},
        "seconds": {name: out.seconds for name, out in ours.items()},
    }
    prompt = session.store.get(uri).prompt
    hf_reference = reference.tokens
    for name, pld in (("hf-greedy", False), ("hf-pld", True)):
        tokens, seconds = hf_generate(bench.loaded, prompt, max(len(reference.tokens), 1), pld)
        record["seconds"][name] = seconds  # type: ignore[index]
        record["tokens_by_method"][name] = len(tokens)  # type: ignore[index]
        t = tallies[name]
        t.tokens += len(tokens)
        t.seconds += seconds
        t.passes += len(tokens)  # not reported by generate(); tokens/pass is left out for HF
        t.identical += tokens == hf_reference
        hf_reference = tokens
        t.runs += 1
        t.ratios.append(len(tokens) / seconds / rate(reference) if rate(reference) else 0.0)
    return record


def rate(run: Run) -> float:
    return len(run.tokens) / run.seconds if run.seconds else 0.0


LOW_ACCEPTANCE = 0.1  # drafts gave fewer than this share of the tokens: "nothing matched"


def no_match_summary(records: list[dict]) -> dict[str, float]:
    """Positions where drafts gave under LOW_ACCEPTANCE of the tokens: what drafting cost there, against greedy."""
    idle = [r for r in records if r["accepted"] < LOW_ACCEPTANCE * max(r["tokens"], 1)]

    def tps(method: str) -> float:
        seconds = sum(r["seconds"][method] for r in idle)
        return sum(r["tokens_by_method"][method] for r in idle) / seconds if seconds else 0.0

    return {"positions": len(idle), "speedup": tps("drafting") / tps("greedy") if idle and tps("greedy") else 0.0}


def pass_costs(engine: Engine, window: int) -> dict[int, float]:
    """ms of one pass over q = 1..11 tokens after `window` cached tokens of a standard-library file."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text()
    live = LiveDocument(engine, text, window=window + len(COSTED_SIZES), fim=False)
    live.prompt_logits()
    cached = len(live.tokens) - len(COSTED_SIZES)
    return {int(q): ms for q, ms in time_passes(live.kv, live.tokens, cached, COSTED_SIZES).items()}


def index_report(tokenizer: object, max_files: int) -> dict[str, float]:
    """Index the first `max_files` files of the installed transformers package; time lookups."""
    root = site_packages() / "transformers"
    index = ProjectIndex(tokenizer)  # type: ignore[arg-type]
    report = index.index_folder(str(root), max_files=max_files)
    rng = np.random.default_rng(SEED)
    files = sorted(index.store.keys())[:: max(1, len(index.store) // 10)]
    stream = np.concatenate([index.tokenizer(Path(f).read_text(), add_special_tokens=False).input_ids for f in files])
    t0 = time.perf_counter()
    found = 0
    for start_at in rng.integers(0, len(stream) - 20, LOOKUPS):
        found += bool(index.store.hits(stream[start_at : start_at + 12].tolist(), 8))
    lookup_ms = 1000 * (time.perf_counter() - t0) / LOOKUPS
    return {
        "files": report.files,
        "tokens": report.tokens,
        "index_seconds": report.seconds,
        "index_mb": report.nbytes / 2**20,
        "lookup_ms": lookup_ms,
        "lookups_with_hits": found / LOOKUPS,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench drafting", description=__doc__.split("\n\n")[0])
    ap.add_argument("--positions", type=int, default=12, help="positions per mode (default 12)")
    ap.add_argument("--context-tokens", type=int, default=None, help="contextTokens (default: the server's)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--model-path", default=None, help="modelPath (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: the server's)")
    ap.add_argument(
        "--weights", default=None, choices=WEIGHT_CHOICES, help="weights of our runner (default: the server's)"
    )
    ap.add_argument(
        "--set", type=setting, action="append", default=[], metavar="KEY=JSON", help="another server setting"
    )
    ap.add_argument("--index-files", type=int, default=INDEX_FILES, help="files of the index measurement (0: skip it)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    flags = {
        "contextTokens": args.context_tokens,
        "modelPath": args.model_path,
        "threads": args.threads,
        "weights": args.weights,
    }
    base = with_settings(Settings(), {**{k: v for k, v in flags.items() if v is not None}, **dict(args.set)})
    loaded = load_model(base.model_path, threads=base.threads)  # its HF model is the baselines'
    session = start(base, loaded)
    assert session.engine is not None
    bench = Bench(session, loaded)
    t0 = time.perf_counter()
    jedi_root = str(site_packages() / "jedi")
    project = index(session, jedi_root)
    load_before = os.getloadavg()
    before = pass_costs(session.engine, base.context_tokens)
    rng = random.Random(SEED)
    results: dict[str, dict] = {}
    tallies_by_mode: dict[str, dict[str, Tally]] = {}
    records: list[dict] = []
    for mode in args.modes:
        mode_settings = with_settings(base, MODES[mode])
        tallies = {m: Tally() for m in METHODS}
        if mode == "prose":
            documents = [(None, f"untitled:prose-{i}", doc) for i, doc in enumerate(prose_documents(args.positions))]
        else:
            documents = [
                (p, Path(p).as_uri(), Path(p).read_text()[:offset])
                for p, offset in code_positions(Path(jedi_root), args.positions, rng)
            ]
        for i, (path, uri, text) in enumerate(documents):
            session.apply_settings(mode_settings)
            session.open(uri, text)  # in place of its saved file in the indexes: that holds the answer
            prompt_tokens = settle(session, uri, len(text))
            record = run_position(bench, uri, len(text), mode_settings, tallies)
            session.close(uri)  # the saved file is back in the indexes
            records.append({"mode": mode, "path": path, "prompt_tokens": prompt_tokens, **record})
            print(f"{mode} {i + 1}/{len(documents)}", file=sys.stderr, flush=True)
        tallies_by_mode[mode] = tallies
    after = pass_costs(session.engine, base.context_tokens)
    session.shutdown()
    pass_ms = {q: min(before[q], after[q]) for q in before}
    costs = {q: ms / pass_ms[1] for q, ms in pass_ms.items()}
    for mode, tallies in tallies_by_mode.items():
        results[mode] = {m: tallies[m].row(tallies["greedy"], costs) for m in METHODS}
    out = {
        "machine": f"{os.cpu_count()} CPU cores; {session.model_name}, {base.threads} threads, on {base.device}",
        "model": session.model_name,
        "settings": non_default(base),
        "mode_settings": {m: non_default(with_settings(base, MODES[m]), base) for m in args.modes},
        "method_settings": {m: METHOD_SETTINGS.get(m, {}) for m in METHODS if not m.startswith("hf")},
        "method_drafter": {"drafting": "the session's", "wrong-drafts": "WrongDrafts", "pld-ours": "PromptLookup"},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "context_tokens": base.context_tokens,
        "pass_ms": {"before": before, "after": after, "used": pass_ms},
        "pass_cost": costs,
        "positions": args.positions,
        "project": {"package": "jedi", **project},
        "modes": results,
        "low_acceptance": no_match_summary(records),
        "records": records,
        "index_1000_files": index_report(session.engine.tokenizer, args.index_files) if args.index_files else None,
        "seconds": time.perf_counter() - t0,
    }
    print_table(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def print_table(out: dict) -> None:
    costs = " / ".join(f"{c:.2f}" for c in out["pass_cost"].values())
    print(f"cost of a pass over q = 1..11 tokens, in one-token steps: {costs}\n")
    print("| mode | method | tokens/s | vs greedy | per position (median) | projected | tokens/pass | identical |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, rows in out["modes"].items():
        for method, r in rows.items():
            hf = method.startswith("hf")
            per_pass = "-" if hf else f"{r['tokens_per_pass']:.2f}"
            projected = "-" if hf or r["projected_speedup"] is None else f"{r['projected_speedup']:.2f}x"
            print(
                f"| {mode} | {method} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f}x | "
                f"{r['median_position_speedup']:.2f}x | {projected} | {per_pass} | {r['identical']}/{r['runs']} |"
            )
    idle = out["low_acceptance"]
    print(
        f"\npositions where drafts gave under {LOW_ACCEPTANCE:.0%} of the tokens: {idle['positions']}, "
        f"drafting vs greedy there {idle['speedup']:.2f}x"
    )
    if (i := out["index_1000_files"]) is not None:
        print(
            f"\nindex of {i['files']} files ({i['tokens']} tokens): {i['index_seconds']:.1f} s, "
            f"{i['index_mb']:.1f} MB; lookup {i['lookup_ms']:.2f} ms ({100 * i['lookups_with_hits']:.0f}% with hits)"
        )
