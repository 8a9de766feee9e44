"""Drafting benchmark: how much faster retrieval drafts make greedy decoding, and that nothing changes.

The project is the installed `jedi` package (pinned in pyproject.toml), a workspace folder of the
server's engine session (`EngineSession`): walked into its indexes as the server walks one. At
each position (a line start, after the indentation, in the second half of a jedi file; one
position per file, fixed seed) the document is the file cut at the cursor, opened in the session
under the file's own name, so neither the prompt nor the index holds the code that follows (an
open document replaces its saved file in the indexes; it is closed after the position, and the
saved file comes back). The document is left to settle as after a pause (the prompt encoded,
idle-time steps run: the rest of the cache, its refresh, the cross-file context), then asked at
the cursor with `EngineSession.complete`: once untimed with `greedy`'s settings (the warm-up: jedi's
answers and the logits after the prompt are there for every timed request alike, and the first
decode after the prefill is charged to no method; its tokens are what `wrong-drafts` makes wrong),
then once per method, in an order rotated by one per position. Modes, as settings:

- `line`: the server's defaults (one line: stop at the end of the line, at most `maxTokens`, 48);
- `multiline`: `multiline: true`, the server's multi-line suggestions (to the block's end);
- `prose`: `multiline: true` on the English module docstrings of standard-library files (opened
  as untitled documents), text the project (code) has little of; the worst case, where nothing
  matches at all, is the `wrong-drafts` method below.

Methods, all the session's requests at the same caret:
- `greedy`: `drafting: false`, one token per pass (the reference output);
- `drafting`: the server's defaults: the session's own drafter (prompt lookup, then project store);
- `wrong-drafts`: the same drafter with every draft made wrong (its tokens replaced by others than
  greedy's), put in the session's place: what drafting costs where nothing ever matches;
- `pld-tuned`: transformers' prompt lookup algorithm (the n-gram of `max_n` down to 1 tokens at the
  end, its first earlier match in the prompt and output, the `tokens` after it) as the session's
  drafter: drafting strategies compared on one runner. Its `tokens` (`prompt_lookup_num_tokens`) and
  `max_n` (`max_matching_ngram_size`) are the fastest of a sweep (`PLD_GRID`) over `--tune-positions`
  multiline positions of other jedi files (seed + 1) run before the measurement, recorded under
  `pld_sweep`;
- `hf-greedy`, `hf-pld`: transformers' `generate` on the Hugging Face model, greedy and with the
  tuned `prompt_lookup_num_tokens` / `max_matching_ngram_size`, on the session's prompt, as many new
  tokens as greedy wrote: what a user of transformers could switch on today (baselines by name: not
  the server's path). generate() starts from the prompt (its assisted decoding re-feeds the whole
  prompt on its first pass, so a prefilled cache would be read twice and misplaced) and is timed
  from the end of its first pass (found with a stopping criterion, which generate() asks once per
  pass), as ours are timed after the prompt's pass; for `hf-pld` that first pass also verified a
  draft, whose tokens so come free. HF cannot heal the token under the cursor, so its text may
  differ from ours from the first token; `hf-pld` is held to `hf-greedy`'s output. The two run
  after ours, in an order alternating per position.

Ours are timed as the server answers: `Answer.seconds`, from the request to its items (cursor
update, monitors, decoding, post-processing). The tokens each decoded and its passes are read
beside the session without changing what it does: a processor last in the chain notes each
step's pick (`engine_session.Picks`), and the drafter in use is wrapped to note each pass's size.
"Identical" compares the decoded tokens with the reference's; where `timeBudgetMs` (the server's
3 s) cut a decode short, its tokens must be a prefix of the other's.

Reported per mode and method: tokens/s, speed-up over `greedy`, tokens per forward pass,
and outputs token-identical to the method's reference (`greedy`; `hf-greedy` for `hf-pld`); the
positions where drafts gave under 10% of the tokens (`low_acceptance`) and drafting's speed there.
What caps the speed-up on this CPU is the cost of a pass over 1 + draft tokens against a
one-token step: it is measured in the same run (q = 1..11 at the benchmark's context, before
and after the positions, the smaller of the two; a component measurement on the session's
runner), and each of our methods also gets the speed-up those costs predict from its passes'
sizes (`projected`), a figure the machine's load does not move. The index of a 1,000-file
project (the first `--index-files` files of the installed `transformers` package; 0 skips it) is
measured too, on the project token store alone: time, tokens, memory, and the time of one lookup.

Targets (README), as `table()` judges them: 100% token-identical (every drafted output to greedy's,
`hf-pld` to `hf-greedy`'s); ≥ 1.3x over prompt lookup decoding, per mode: drafting's tokens/s over
the faster of `pld-tuned` and `greedy` (a user would switch a slower PLD off); never more than 5%
slower where nothing matches: drafting's speed at the low-acceptance positions and `wrong-drafts`'
in every mode ≥ 0.95x greedy's; ≥ 2x over greedy on multi-line.

The default run (4 positions per mode, 2 tuning positions, the 1,000-file index) took 8
minutes on 2 cores (2026-12-05) (a position costs ~50 s: settling the document, our 4 requests and transformers'
2; the run before it had 16 per mode), so its figures are of few positions; `--positions 16` for
more. `--quick` runs the line mode at 1 position, 1 tuning position and a 50-file index (~2.5 minutes).

    livekv bench drafting [--quick] [--positions N] [--context-tokens N] [--modes ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
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

from benchmarks.common import non_default, target_row, write_json
from benchmarks.engine_session import (
    MonitorTap,
    add_setting_flags,
    flag_settings,
    index,
    refresh_in_one_pass,
    settle,
    start,
    with_settings,
)
from benchmarks.speed import time_passes
from completion.drafting.datastore import ProjectStore
from completion.drafting.drafter import Drafter
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.loading import LoadedModel, load_model
from completion.project.files import python_files
from completion.project.token_store import ProjectIndex
from completion.session import EngineSession
from completion.settings import Settings

SEED = 0
MODES: dict[str, dict[str, Any]] = {"line": {}, "multiline": {"multiline": True}, "prose": {"multiline": True}}
OURS = ("greedy", "drafting", "wrong-drafts", "pld-tuned")  # the session's requests, rotated per position
METHODS = (*OURS, "hf-greedy", "hf-pld")
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"greedy": {"drafting": False}, "drafting": {}}
# prompt lookup's sweep: (prompt_lookup_num_tokens, max_matching_ngram_size); transformers' docs use 10 and 2
PLD_GRID = tuple(itertools.product((2, 4, 10), (1, 2, 3)))
# a position costs ~50 s on 2 cores (settling the document, 4 of our requests and 2 of transformers')
POSITIONS, TUNE_POSITIONS, INDEX_FILES = 4, 2, 1000
DEFAULT = {"positions": POSITIONS, "tune_positions": TUNE_POSITIONS, "index_files": INDEX_FILES, "modes": list(MODES)}
QUICK = {"positions": 1, "tune_positions": 1, "index_files": 50, "modes": ["line"]}
LOOKUPS = 200
COSTED_SIZES = tuple(range(1, max(t for t, _ in PLD_GRID) + 2))  # 1 + the longest draft (PLD's)
SPEEDUP_OVER_PLD, NO_MATCH_FLOOR, MULTILINE_SPEEDUP = 1.3, 0.95, 2.0


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

    def __init__(self, tokens: int, max_n: int) -> None:
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


def hf_generate(loaded: LoadedModel, prompt: list[int], new: int, pld: PromptLookup | None) -> tuple[list, float]:
    """transformers' greedy, or prompt lookup decoding with `pld`'s parameters, of `new` tokens; seconds after
    the prompt's pass."""
    ids = torch.tensor([prompt])
    kwargs = {"prompt_lookup_num_tokens": pld.tokens, "max_matching_ngram_size": pld.max_n} if pld else {}
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
        self.pld = PromptLookup(*PLD_GRID[0])  # replaced by the sweep's fastest (`tune_pld`)
        self.drafters: dict[str, Drafter] = {
            "drafting": self.server_drafter,
            "wrong-drafts": self.wrong,
            "pld-tuned": self.pld,
        }

    def use_pld(self, pld: PromptLookup) -> None:
        self.pld = self.drafters["pld-tuned"] = pld

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


def rotated(items: Sequence[str], turn: int) -> list[str]:
    """`items` starting at the `turn`-th: each position runs the methods in another order."""
    turn %= len(items)
    return [*items[turn:], *items[:turn]]


def run_position(
    bench: Bench, uri: str, offset: int, mode: Settings, tallies: dict[str, Tally], turn: int
) -> dict[str, object]:
    """Run every method at one position, ours in an order rotated by `turn`; returns the position's record."""
    session = bench.session
    settings = {m: with_settings(mode, METHOD_SETTINGS.get(m, {})) for m in OURS}
    # untimed: jedi's answers, the prompt's logits, the first decode after the prefill; greedy's tokens
    bench.wrong.greedy = bench.request(uri, offset, settings["greedy"]).tokens
    ours: dict[str, Run] = {}
    accepted = {name: drafter.stats.accepted_tokens for name, drafter in bench.drafters.items()}
    for name in rotated(OURS, turn):
        ours[name] = bench.request(uri, offset, settings[name], name)
    accepted = {name: bench.drafters[name].stats.accepted_tokens - accepted[name] for name in accepted}
    reference = ours["greedy"]
    for name in OURS:
        out, t = ours[name], tallies[name]
        t.tokens += len(out.tokens)
        t.seconds += out.seconds
        t.add_passes(out.pass_sizes)
        t.identical += same_output(reference, out)
        t.runs += 1
        t.ratios.append(rate(out) / rate(reference) if rate(reference) else 0.0)
    record: dict[str, Any] = {
        "order": rotated(OURS, turn),
        "tokens": len(reference.tokens),
        "accepted": accepted["drafting"],
        "accepted_by_method": accepted,  # draft tokens greedy chose (wrong-drafts: none while greedy is known)
        "tokens_by_method": {name: len(out.tokens) for name, out in ours.items()},
        "seconds": {name: out.seconds for name, out in ours.items()},
    }
    prompt = session.store.get(uri).prompt
    hf: dict[str, list[int]] = {}
    for name in rotated(("hf-greedy", "hf-pld"), turn):
        tokens, seconds = hf_generate(
            bench.loaded, prompt, max(len(reference.tokens), 1), bench.pld if name == "hf-pld" else None
        )
        hf[name] = tokens
        record["seconds"][name] = seconds
        record["tokens_by_method"][name] = len(tokens)
        t = tallies[name]
        t.tokens += len(tokens)
        t.seconds += seconds
        t.passes += len(tokens)  # not reported by generate(); tokens/pass is left out for HF
        t.runs += 1
        t.ratios.append(len(tokens) / seconds / rate(reference) if rate(reference) else 0.0)
    tallies["hf-greedy"].identical += 1  # the reference of hf-pld: its output is HF's greedy by definition
    tallies["hf-pld"].identical += hf["hf-pld"] == hf["hf-greedy"]
    return record


def tune_pld(bench: Bench, positions: list[tuple[str, int]], mode: Settings) -> dict[str, Any]:
    """prompt lookup's (tokens, max_n) from `PLD_GRID` that decodes fastest over `positions` (tokens/s, summed),
    each position after its warm-up, greedy and the grid's configurations in an order rotated per position."""
    session = bench.session
    greedy = with_settings(mode, METHOD_SETTINGS["greedy"])
    names = ["greedy", *(f"tokens={t} max_n={n}" for t, n in PLD_GRID)]
    configs = dict(zip(names[1:], PLD_GRID, strict=True))
    tokens, seconds = dict.fromkeys(names, 0), dict.fromkeys(names, 0.0)
    for turn, (path, offset) in enumerate(positions):
        uri, text = Path(path).as_uri(), Path(path).read_text()[:offset]
        session.apply_settings(mode)
        session.open(uri, text)
        settle(session, uri, len(text))
        bench.request(uri, len(text), greedy)  # untimed warm-up
        for name in rotated(names, turn):
            if name != "greedy":
                bench.use_pld(PromptLookup(*configs[name]))
            run = bench.request(
                uri, len(text), mode if name != "greedy" else greedy, "pld-tuned" if name != "greedy" else "greedy"
            )
            tokens[name] += len(run.tokens)
            seconds[name] += run.seconds
        session.close(uri)
        print(f"pld sweep {turn + 1}/{len(positions)}", file=sys.stderr, flush=True)
    tps = {name: tokens[name] / seconds[name] if seconds[name] else 0.0 for name in names}
    best = max(names[1:], key=lambda name: tps[name])
    bench.use_pld(PromptLookup(*configs[best]))
    return {
        "positions": [{"path": path, "offset": offset} for path, offset in positions],
        "tokens_per_s": tps,
        "speedup": {name: tps[name] / tps["greedy"] if tps["greedy"] else 0.0 for name in names[1:]},
        "chosen": {"tokens": configs[best][0], "max_n": configs[best][1]},
    }


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
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    ap.add_argument("--positions", type=int, default=None, help=f"positions per mode ({POSITIONS})")
    ap.add_argument(
        "--tune-positions", type=int, default=None, help=f"positions of prompt lookup's sweep ({TUNE_POSITIONS})"
    )
    ap.add_argument("--modes", nargs="+", default=None, choices=list(MODES), help="(default: all; --quick: line)")
    add_setting_flags(ap)
    ap.add_argument(
        "--index-files", type=int, default=None, help=f"files of the index measurement ({INDEX_FILES}; 0: skip it)"
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULT).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    base = flag_settings(args)
    loaded = load_model(base.model_path, threads=base.threads)  # its HF model is the baselines'
    session = start(base, loaded)
    assert session.engine is not None
    settled = refresh_in_one_pass(session)
    bench = Bench(session, loaded)
    t0 = time.perf_counter()
    jedi_root = str(site_packages() / "jedi")
    project = index(session, jedi_root)
    before = pass_costs(session.engine, base.context_tokens)
    tuning = code_positions(Path(jedi_root), args.tune_positions, random.Random(SEED + 1))
    sweep = tune_pld(bench, tuning, with_settings(base, MODES["multiline"])) if tuning else None
    rng = random.Random(SEED)
    results: dict[str, dict] = {}
    tallies_by_mode: dict[str, dict[str, Tally]] = {}
    records: list[dict] = []
    turn = 0
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
            record = run_position(bench, uri, len(text), mode_settings, tallies, turn)
            turn += 1
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
    payload = {
        "mode_settings": {m: non_default(with_settings(base, MODES[m]), base) for m in args.modes},
        "method_settings": {m: METHOD_SETTINGS.get(m, {}) for m in OURS},
        "method_drafter": {"drafting": "the session's", "wrong-drafts": "WrongDrafts", "pld-tuned": "PromptLookup"},
        "pld_tuned": {"tokens": bench.pld.tokens, "max_n": bench.pld.max_n},
        "pld_sweep": sweep,
        "context_tokens": base.context_tokens,
        "pass_ms": {"before": before, "after": after, "used": pass_ms},
        "pass_cost": costs,
        "positions": args.positions,
        "settle": settled,
        "project": {"package": "jedi", **project},
        "modes": results,
        "low_acceptance": no_match_summary(records),
        "records": records,
        "index_files": index_report(session.engine.tokenizer, args.index_files) if args.index_files else None,
        "seconds": time.perf_counter() - t0,
    }
    result = json.loads(json.dumps(payload))  # what the JSON holds: the printed table is rendered from it
    write_json(args.json, "drafting", model=args.model_path, settings=base, **payload)
    print(table(result))
    return 0


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The README's targets from the written JSON: (sentence, measured figure, met)."""
    modes, out = result["modes"], []
    ours = [(m, r) for rows in modes.values() for m, r in rows.items() if m in OURS[1:]]
    same = sum(r["identical"] for _, r in ours) + sum(rows["hf-pld"]["identical"] for rows in modes.values())
    runs = sum(r["runs"] for _, r in ours) + sum(rows["hf-pld"]["runs"] for rows in modes.values())
    out.append(("100% token-identical to greedy", f"{same}/{runs}", same == runs))
    pld = result["pld_tuned"]
    for mode, rows in modes.items():
        drafting, pld_tps, greedy = (rows[m]["tokens_per_s"] for m in ("drafting", "pld-tuned", "greedy"))
        baseline = max(pld_tps, greedy)
        x = drafting / baseline if baseline else 0.0
        which = "pld-tuned" if pld_tps >= greedy else "greedy (faster than pld-tuned)"
        out.append((
            f"{mode}: ≥ {SPEEDUP_OVER_PLD}x over prompt lookup (tokens={pld['tokens']}, max_n={pld['max_n']}; "
            "greedy where faster)",
            f"{x:.2f}x over {which}",
            x >= SPEEDUP_OVER_PLD,
        ))  # fmt: skip
    idle = result["low_acceptance"]
    wrong = min(rows["wrong-drafts"]["speedup"] for rows in modes.values())
    figures = [wrong] + ([idle["speedup"]] if idle["positions"] else [])
    out.append((
        f"never more than {100 * (1 - NO_MATCH_FLOOR):.0f}% slower where nothing matches",
        (f"low acceptance {idle['speedup']:.2f}x ({idle['positions']} positions)" if idle["positions"]
         else "no low-acceptance positions") + f", wrong-drafts ≥ {wrong:.2f}x",
        min(figures) >= NO_MATCH_FLOOR,
    ))  # fmt: skip
    if "multiline" in modes:
        x = modes["multiline"]["drafting"]["speedup"]
        out.append((f"≥ {MULTILINE_SPEEDUP:g}x over greedy on multi-line", f"{x:.2f}x", x >= MULTILINE_SPEEDUP))
    return out


def table(result: dict[str, Any]) -> str:
    """The written JSON as a markdown table: a row per mode and method, then the targets."""
    lines = [
        "| mode | method | tokens/s | vs greedy | per position (median) | projected | tokens/pass | identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, rows in result["modes"].items():
        for method, r in rows.items():
            hf = method.startswith("hf")
            per_pass = "-" if hf else f"{r['tokens_per_pass']:.2f}"
            projected = "-" if hf or r["projected_speedup"] is None else f"{r['projected_speedup']:.2f}x"
            lines.append(
                f"| {mode} | {method} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f}x | "
                f"{r['median_position_speedup']:.2f}x | {projected} | {per_pass} | {r['identical']}/{r['runs']} |"
            )
    for target, figure, met in targets(result):
        lines.append(target_row(8, target, figure, met))
    return "\n".join(lines)
