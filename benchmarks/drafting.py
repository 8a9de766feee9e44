"""Drafting benchmark: how much faster retrieval drafts make greedy decoding, and that nothing changes.

The project is the installed `jedi` package (pinned in pyproject.toml): all its files are
indexed as a workspace would be. At each position (a line start, after the indentation, in
the second half of a jedi file; one position per file, fixed seed) the document is the file
cut at the cursor, so neither the prompt nor the index holds the code that follows; the
file itself is taken out of the project index for that position (it is the open document,
the rest of the project is indexed but not open). Modes:

- `line`: one line (stop at the newline, at most 48 tokens), as the server's default;
- `multiline`: 64 tokens (no stop but end-of-sequence), the multi-line case;
- `prose`: 64 tokens continuing the English module docstrings of standard-library files,
  text the project (code) has little of; the worst case, where nothing matches at all, is
  the `wrong-drafts` method below.

Methods, timed on the same prefilled prompt, interleaved per position:
- `greedy`: our decoding loop, one token per pass (the reference output);
- `drafting`: the same loop with the server's drafter (prompt lookup, then project store);
- `wrong-drafts`: the same drafter with every draft made wrong (its tokens replaced by
  others than greedy's): what drafting costs where nothing ever matches;
- `pld-ours`: the same loop with transformers' prompt lookup algorithm (n-gram of 2 then 1,
  first match, 10 tokens) as the drafter: drafting strategies compared on one runner;
- `hf-greedy`, `hf-pld`: transformers' `generate` on the Hugging Face model, greedy and with
  `prompt_lookup_num_tokens=10`, as many new tokens as greedy wrote: what a user of
  transformers could switch on today. generate() starts from the prompt (its assisted
  decoding re-feeds the whole prompt on its first pass, so a prefilled cache would be read
  twice and misplaced) and is timed from the end of its first pass (found with a stopping
  criterion, which generate() asks once per pass), as ours are timed after the prompt's
  pass; for `hf-pld` that first pass also verified a draft, whose tokens so come free.
  HF cannot heal the token under the cursor, so its text may differ from ours from the
  first token; `hf-pld` is held to `hf-greedy`'s output.

Reported per mode and method: tokens/s, speed-up over `greedy`, tokens per forward pass,
and outputs token-identical to the method's reference (`greedy`; `hf-greedy` for `hf-pld`).
What caps the speed-up on this CPU is the cost of a pass over 1 + draft tokens against a
one-token step: it is measured in the same run (q = 1..11 at the benchmark's context, before
and after the positions, the smaller of the two), and each of our methods also gets the
speed-up those costs predict from its passes' sizes (`projected`), a figure the machine's
load does not move. The index of a 1,000-file project (the first 1,000
files of the installed `transformers` package) is measured too: time, tokens, memory, and
the time of one lookup.

    livekv bench drafting [--positions N] [--context-tokens 1024] [--json OUT]
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

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from benchmarks.speed import time_passes
from completion.decoding.decode import Completion, decode
from completion.decoding.stops import StopRule, stop_at_newline
from completion.drafting.datastore import ProjectStore
from completion.drafting.drafter import Drafter
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.loading import LoadedModel, load_model
from completion.model.vocab import Vocabulary
from completion.project.files import python_files
from completion.project.token_store import ProjectIndex

SEED = 0
MODES = {"line": (48, stop_at_newline), "multiline": (64, None), "prose": (64, None)}
METHODS = ("greedy", "drafting", "wrong-drafts", "pld-ours", "hf-greedy", "hf-pld")
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

    def __init__(self, project: ProjectStore, greedy: Sequence[int], vocab_size: int) -> None:
        super().__init__(project)
        self.greedy, self.vocab_size = list(greedy), vocab_size

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


@dataclass
class Tally:
    tokens: int = 0
    seconds: float = 0.0
    passes: int = 0
    identical: int = 0
    runs: int = 0
    ratios: list[float] = field(default_factory=list)  # per position: greedy seconds / these seconds
    sizes: dict[int, int] = field(default_factory=dict)  # pass size -> how many passes fed that many tokens

    def add_passes(self, sizes: Sequence[int]) -> None:
        self.passes += len(sizes) + 1  # the first token came from the prompt's pass
        for q in sizes:
            self.sizes[q] = self.sizes.get(q, 0) + 1

    def cost(self, costs: dict[int, float]) -> float:
        """The passes after the prompt's, in one-token steps."""
        return sum(n * costs[q] for q, n in self.sizes.items())

    def row(self, greedy: Tally, costs: dict[int, float]) -> dict[str, object]:
        tps = self.tokens / self.seconds if self.seconds else 0.0
        projected = greedy.cost(costs) / self.cost(costs) if self.sizes else None
        return {
            "projected_speedup": projected,
            "pass_sizes": dict(sorted(self.sizes.items())),
            "runs": self.runs,
            "tokens": self.tokens,
            "tokens_per_s": tps,
            "speedup": tps / (greedy.tokens / greedy.seconds) if greedy.seconds else 0.0,
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


def run_position(
    engine: Engine,
    loaded: LoadedModel,
    vocab: Vocabulary,
    index: ProjectIndex,
    text: str,
    window: int,
    max_tokens: int,
    stop: StopRule | None,
    tallies: dict[str, Tally],
) -> dict[str, object]:
    """Run every method at one position; returns the position's record."""
    live = LiveDocument(engine, text, window=window, fim=False)
    live.prompt_logits()  # the prefill is not what is measured
    kwargs = {"max_tokens": max_tokens, "stop": stop or (lambda s: None)}
    ours: dict[str, Completion] = {}
    drafter = Drafter(index.store)
    ours["greedy"] = decode(live, vocab, **kwargs)
    reference = ours["greedy"]
    wrong = WrongDrafts(index.store, reference.tokens, engine.runner.vocab_size)
    for name, method in (("drafting", drafter), ("wrong-drafts", wrong), ("pld-ours", PromptLookup())):
        ours[name] = decode(live, vocab, drafter=method, **kwargs)
    for name, out in ours.items():
        t = tallies[name]
        t.tokens += len(out.tokens)
        t.seconds += out.seconds
        t.add_passes(out.pass_sizes)
        t.identical += out.tokens == reference.tokens
        t.runs += 1
        t.ratios.append(reference.seconds / out.seconds)
    record: dict[str, object] = {
        "tokens": len(reference.tokens),
        "accepted": drafter.stats.accepted_tokens,
        "seconds": {name: out.seconds for name, out in ours.items()},
    }
    hf_reference = reference.tokens
    for name, pld in (("hf-greedy", False), ("hf-pld", True)):
        tokens, seconds = hf_generate(loaded, live.prompt, len(reference.tokens), pld)
        record["seconds"][name] = seconds  # type: ignore[index]
        t = tallies[name]
        t.tokens += len(tokens)
        t.seconds += seconds
        t.passes += len(tokens)  # not reported by generate(); tokens/pass is left out for HF
        t.identical += tokens == hf_reference
        hf_reference = tokens
        t.runs += 1
        t.ratios.append(reference.seconds / seconds)
    return record


LOW_ACCEPTANCE = 0.1  # drafts gave fewer than this share of the tokens: "nothing matched"


def no_match_summary(records: list[dict]) -> dict[str, float]:
    """Positions where drafts gave under LOW_ACCEPTANCE of the tokens: what drafting cost there, against greedy."""
    idle = [r for r in records if r["accepted"] < LOW_ACCEPTANCE * max(r["tokens"], 1)]
    greedy = sum(r["seconds"]["greedy"] for r in idle)
    drafting = sum(r["seconds"]["drafting"] for r in idle)
    return {"positions": len(idle), "speedup": greedy / drafting if idle else 0.0}


def pass_costs(engine: Engine, window: int) -> dict[int, float]:
    """ms of one pass over q = 1..11 tokens after `window` cached tokens of a standard-library file."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text()
    live = LiveDocument(engine, text, window=window + len(COSTED_SIZES), fim=False)
    live.prompt_logits()
    cached = len(live.tokens) - len(COSTED_SIZES)
    return {int(q): ms for q, ms in time_passes(live.kv, live.tokens, cached, COSTED_SIZES).items()}


def index_report(tokenizer: object) -> dict[str, float]:
    """Index the first INDEX_FILES files of the installed transformers package; time lookups."""
    root = site_packages() / "transformers"
    index = ProjectIndex(tokenizer)  # type: ignore[arg-type]
    report = index.index_folder(str(root), max_files=INDEX_FILES)
    rng = np.random.default_rng(SEED)
    files = sorted(index.store.keys())[:: max(1, len(index.store) // 10)]
    stream = np.concatenate([index.tokenizer(Path(f).read_text(), add_special_tokens=False).input_ids for f in files])
    t0 = time.perf_counter()
    found = 0
    for start in rng.integers(0, len(stream) - 20, LOOKUPS):
        found += bool(index.store.hits(stream[start : start + 12].tolist(), 8))
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
    ap.add_argument("--context-tokens", type=int, default=1024, help="prompt window (default 1024)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    loaded = load_model(threads=2)
    engine = Engine.from_loaded(loaded)
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    t0 = time.perf_counter()
    index = ProjectIndex(engine.tokenizer)
    project = index.index_folder(str(site_packages() / "jedi"))
    load_before = os.getloadavg()
    before = pass_costs(engine, args.context_tokens)
    rng = random.Random(SEED)
    results: dict[str, dict] = {}
    tallies_by_mode: dict[str, dict[str, Tally]] = {}
    records: list[dict] = []
    for mode in args.modes:
        max_tokens, stop = MODES[mode]
        tallies = {m: Tally() for m in METHODS}
        if mode == "prose":
            documents = [(None, doc) for doc in prose_documents(args.positions)]
        else:
            documents = [
                (p, Path(p).read_text()[:offset])
                for p, offset in code_positions(site_packages() / "jedi", args.positions, rng)
            ]
        for i, (path, text) in enumerate(documents):
            if path is not None:
                index.store.remove(path)  # the open document: its saved text would hold the answer
            record = run_position(engine, loaded, vocab, index, text, args.context_tokens, max_tokens, stop, tallies)
            records.append({"mode": mode, "path": path, **record})
            if path is not None:
                index.files_changed([path], [str(site_packages() / "jedi")])
            print(f"{mode} {i + 1}/{len(documents)}", file=sys.stderr, flush=True)
        tallies_by_mode[mode] = tallies
    after = pass_costs(engine, args.context_tokens)
    pass_ms = {q: min(before[q], after[q]) for q in before}
    costs = {q: ms / pass_ms[1] for q, ms in pass_ms.items()}
    for mode, tallies in tallies_by_mode.items():
        results[mode] = {m: tallies[m].row(tallies["greedy"], costs) for m in METHODS}
    out = {
        "machine": "2 CPU cores, no GPU; embedded SmolLM2-135M fp32, 2 threads",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "context_tokens": args.context_tokens,
        "pass_ms": {"before": before, "after": after, "used": pass_ms},
        "pass_cost": costs,
        "positions": args.positions,
        "project": {"package": "jedi", "files": project.files, "tokens": project.tokens},
        "modes": results,
        "low_acceptance": no_match_summary(records),
        "records": records,
        "index_1000_files": index_report(engine.tokenizer),
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
            projected = "-" if hf else f"{r['projected_speedup']:.2f}x"
            print(
                f"| {mode} | {method} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f}x | "
                f"{r['median_position_speedup']:.2f}x | {projected} | {per_pass} | {r['identical']}/{r['runs']} |"
            )
    idle = out["low_acceptance"]
    print(
        f"\npositions where drafts gave under {LOW_ACCEPTANCE:.0%} of the tokens: {idle['positions']}, "
        f"drafting vs greedy there {idle['speedup']:.2f}x"
    )
    i = out["index_1000_files"]
    print(
        f"\nindex of {i['files']} files ({i['tokens']} tokens): {i['index_seconds']:.1f} s, {i['index_mb']:.1f} MB; "
        f"lookup {i['lookup_ms']:.2f} ms ({100 * i['lookups_with_hits']:.0f}% with hits)"
    )
