"""Suggestions at the cursor: decode, stop, clean up. The engine side of inline and popup completion.

`inline` gives ghost-text drafts: one greedy draft, or several by the `draft_method`
(side-by-side branches, superposed decoding, beam search, or one greedy run per first token);
`popup` gives identifier items for the completion menu, also from branches. Both take a
LiveDocument whose cursor is already where the editor's caret is, and return plain text
and character offsets; positions and LSP types are the server's business.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from completion.decoding.beam import decode_beam
from completion.decoding.branches import Branch, DraftArgs, decode_branches
from completion.decoding.decode import GREEDY, Processor, Sampling, decode
from completion.decoding.postprocess import EditContext, postprocess
from completion.decoding.stops import (
    BlockEnd,
    LineLimit,
    StopRule,
    StructureEnd,
    SuffixOverlap,
    first_stop,
    stop_at_newline,
)
from completion.decoding.superposed import SuperposedConfig, decode_superposed
from completion.drafting.drafter import Drafter
from completion.drafting.ngrams import NgramModel
from completion.live.document import LiveDocument
from completion.model.vocab import Vocabulary

_PARTIAL_WORD = re.compile(r"(?![0-9])\w+$")  # Python identifiers are Unicode
_WORD = re.compile(r"\w*")
# Enough of the document around the cursor for post-processing's line and bracket checks.
AROUND_CHARS = 4000
# How several inline drafts are decoded (`livekv bench drafts` compares them):
# branches: the k best first tokens, each continued greedily, side by side in one tree pass per step;
# superposed: superposed decoding, one one-vector pass per step for all k (superposed.py);
# beam: beam search of width k, side by side in one tree pass per step (beam.py);
# greedy-runs: one greedy run per each of the k best first tokens, one after the other.
DRAFT_METHODS = ("branches", "superposed", "beam", "greedy-runs")
DEFAULT_DRAFT_METHOD = "superposed"  # the one that met the latency target in `livekv bench drafts`


@dataclass(frozen=True)
class CompletionOptions:
    max_tokens: int = 48
    multiline: bool = False
    drafts: int = 1  # inline drafts; more than one are decoded by `draft_method`
    time_budget: float | None = 3.0  # seconds
    sampling: Sampling = GREEDY
    draft_method: str = DEFAULT_DRAFT_METHOD  # one of DRAFT_METHODS
    max_lines: int | None = None  # multiline: also stop after this many lines
    superposed: SuperposedConfig = field(default_factory=SuperposedConfig)

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.drafts < 1:
            raise ValueError(f"max_tokens and drafts must be >= 1, got {self.max_tokens} and {self.drafts}")
        if self.draft_method not in DRAFT_METHODS:
            raise ValueError(f"draft_method must be one of {DRAFT_METHODS}, got {self.draft_method!r}")


@dataclass(frozen=True)
class Draft:
    text: str  # inserted at the cursor
    first_token_seconds: float
    seconds: float
    stop: str
    tokens: int = 0  # decoded (a single greedy draft; 0 for several drafts)
    passes: int = 0  # forward passes they took (fewer than tokens when drafting helped)


@dataclass(frozen=True)
class PopupItem:
    label: str  # the whole identifier, partial word included
    start: int  # offset where the partial word starts: the item replaces [start, cursor)
    score: float  # log-probability of the continuation; higher first


def partial_word_start(text: str, cursor: int) -> int:
    """Start of the identifier the cursor is in the middle or at the end of (== cursor if none)."""
    line_start = text.rfind("\n", 0, cursor) + 1
    m = _PARTIAL_WORD.search(text, line_start, cursor)
    return m.start() if m else cursor


def stop_rule(live: LiveDocument, multiline: bool, max_lines: int | None = None) -> StopRule:
    if not multiline:
        return stop_at_newline
    cursor_line = live.text[live.text.rfind("\n", 0, live.cursor) + 1 : live.cursor]
    suffix = live.text[live.cursor : live.cursor + AROUND_CHARS]
    block_end: StopRule = BlockEnd(cursor_line)
    if live.syntax is not None:
        block_end = StructureEnd(live.syntax, live.cursor, block_end)
    rules: list[StopRule] = [block_end, SuffixOverlap(suffix)]
    return first_stop(rules if max_lines is None else [*rules, LineLimit(max_lines)])


def edit_context(live: LiveDocument) -> EditContext:
    c = live.cursor
    return EditContext(prefix=live.text[max(0, c - AROUND_CHARS) : c], suffix=live.text[c : c + AROUND_CHARS])


def inline(
    live: LiveDocument,
    vocab: Vocabulary,
    options: CompletionOptions,
    *,
    processors: Sequence[Processor] = (),
    should_stop: Callable[[], bool] | None = None,
    drafter: Drafter | None = None,
    ngrams: NgramModel | None = None,
) -> list[Draft]:
    """Distinct cleaned-up drafts, best first; [] if cancelled or nothing is worth showing.

    `drafter` speeds up greedy decoding (the output is the same with or without it); `ngrams`
    rescore superposed drafts. The processors apply to every draft."""
    stop = stop_rule(live, options.multiline, options.max_lines)
    if options.drafts == 1:
        out = decode(
            live,
            vocab,
            max_tokens=options.max_tokens,
            processors=processors,
            stop=stop,
            sampling=options.sampling,
            time_budget=options.time_budget,
            should_stop=should_stop,
            drafter=drafter,
        )
        if out.stop == "cancelled":
            return []
        raw = [(out.text, out.first_token_seconds, out.seconds, out.stop, len(out.tokens), out.passes)]
    else:
        t0 = time.perf_counter()
        live.prompt_logits()  # kept on the document: the branches start from it
        first = time.perf_counter() - t0
        args = DraftArgs(options.drafts, options.max_tokens, stop, processors, options.time_budget, should_stop)
        method = options.draft_method
        if method == "superposed":
            branches = decode_superposed(live, vocab, args, ngrams=ngrams, config=options.superposed)
        elif method == "beam":
            branches = decode_beam(live, vocab, args)
        elif method == "greedy-runs":
            branches = greedy_runs(live, vocab, args, drafter=drafter)
        else:
            branches = decode_branches(live, vocab, args)
        seconds = time.perf_counter() - t0
        if not branches:
            return []  # cancelled
        raw = [(b.text, first, seconds, method, 0, 0) for b in branches]
    ctx = edit_context(live)
    drafts: list[Draft] = []
    for text, first, seconds, why, tokens, passes in raw:
        clean = postprocess(text, ctx, multiline=options.multiline)
        if clean is not None and all(d.text != clean for d in drafts):
            drafts.append(Draft(clean, first, seconds, why, tokens, passes))
    return drafts


class ForceFirst:
    """Allow only `token` as the first token (the processors before it have already run)."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        if generated:
            return logits
        only = torch.full_like(logits, float("-inf"))
        only[self.token] = logits[self.token]
        return only


def greedy_runs(
    live: LiveDocument, vocab: Vocabulary, args: DraftArgs, *, drafter: Drafter | None = None
) -> list[Branch]:
    """The k-separate-runs baseline: one greedy decode per each of the `width` best first tokens,
    one after the other (the same drafts as `decode_branches`, at k times the cost); [] if cancelled."""
    s = args.setup(live, vocab)
    first = torch.log_softmax(s.chain([], live.prompt_logits()), dim=-1)
    top = torch.topk(first, min(args.width, int(torch.isfinite(first).sum())))
    out: list[Branch] = []
    for tok, logprob in zip(top.indices.tolist(), top.values.tolist(), strict=True):
        run = decode(
            live,
            vocab,
            max_tokens=args.max_tokens,
            processors=[*args.processors, ForceFirst(tok)],
            stop=args.stop,
            time_budget=s.deadline.left(),
            should_stop=args.should_stop,
            drafter=drafter,
        )
        if run.stop == "cancelled":
            return []
        if run.tokens:  # an end-of-sequence first token gives nothing
            out.append(Branch(run.text, run.tokens, logprob))  # ranked by the first token
    return out


def _word_boundary(text: str) -> int | None:
    """Popup branches stop at the end of the identifier they started."""
    end = _WORD.match(text).end()  # type: ignore[union-attr]
    return end if end < len(text) else None


def popup(
    live: LiveDocument,
    vocab: Vocabulary,
    *,
    width: int = 8,
    max_tokens: int = 6,
    processors: Sequence[Processor] = (),
    should_stop: Callable[[], bool] | None = None,
) -> list[PopupItem]:
    """Identifier items for the completion menu: the model's `width` best continuations of
    the word at the cursor, each cut at the word's end; best first, no duplicates."""
    start = partial_word_start(live.text, live.cursor)
    partial = live.text[start : live.cursor]
    branches = decode_branches(
        live, vocab, DraftArgs(width, max_tokens, _word_boundary, processors, should_stop=should_stop)
    )
    items: list[PopupItem] = []
    for b in branches:
        word = b.text[: _WORD.match(b.text).end()]  # type: ignore[union-attr]
        label = partial + word
        if word and not label[0].isdigit() and all(i.label != label for i in items):
            items.append(PopupItem(label, start, b.logprob))
    return items
