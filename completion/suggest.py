"""Suggestions at the cursor: decode, stop, clean up. The engine side of inline and popup completion.

`inline` gives ghost-text drafts (one greedy draft, or several from side-by-side branches);
`popup` gives identifier items for the completion menu, also from branches. Both take a
LiveDocument whose cursor is already where the editor's caret is, and return plain text
and character offsets; positions and LSP types are the server's business.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from completion.branches import decode_branches
from completion.decode import GREEDY, Processor, Sampling, decode
from completion.drafter import Drafter
from completion.live import LiveDocument
from completion.postprocess import EditContext, postprocess
from completion.stops import BlockEnd, StopRule, SuffixOverlap, first_stop, stop_at_newline
from completion.vocab import Vocabulary

_PARTIAL_WORD = re.compile(r"(?![0-9])\w+$")  # Python identifiers are Unicode
_WORD = re.compile(r"\w*")
# Enough of the document around the cursor for post-processing's line and bracket checks.
AROUND_CHARS = 4000


@dataclass(frozen=True)
class CompletionOptions:
    max_tokens: int = 48
    multiline: bool = False
    drafts: int = 1  # inline drafts; more than one decodes side-by-side branches
    time_budget: float | None = 3.0  # seconds
    sampling: Sampling = GREEDY

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.drafts < 1:
            raise ValueError(f"max_tokens and drafts must be >= 1, got {self.max_tokens} and {self.drafts}")


@dataclass(frozen=True)
class Draft:
    text: str  # inserted at the cursor
    first_token_seconds: float
    seconds: float
    stop: str
    tokens: int = 0  # decoded (greedy drafts; 0 for side-by-side branches)
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


def stop_rule(live: LiveDocument, multiline: bool) -> StopRule:
    if not multiline:
        return stop_at_newline
    cursor_line = live.text[live.text.rfind("\n", 0, live.cursor) + 1 : live.cursor]
    suffix = live.text[live.cursor : live.cursor + AROUND_CHARS]
    return first_stop([BlockEnd(cursor_line), SuffixOverlap(suffix)])


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
) -> list[Draft]:
    """Distinct cleaned-up drafts, best first; [] if cancelled or nothing is worth showing.

    `drafter` speeds up the single greedy draft (the output is the same with or without it)."""
    stop = stop_rule(live, options.multiline)
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
        branches = decode_branches(
            live,
            vocab,
            width=options.drafts,
            max_tokens=options.max_tokens,
            stop=stop,
            processors=processors,
            time_budget=options.time_budget,
            should_stop=should_stop,
        )
        seconds = time.perf_counter() - t0
        raw = [(b.text, first, seconds, "branch", 0, 0) for b in branches]
    ctx = edit_context(live)
    drafts: list[Draft] = []
    for text, first, seconds, why, tokens, passes in raw:
        clean = postprocess(text, ctx, multiline=options.multiline)
        if clean is not None and all(d.text != clean for d in drafts):
            drafts.append(Draft(clean, first, seconds, why, tokens, passes))
    return drafts


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
        live,
        vocab,
        width=width,
        max_tokens=max_tokens,
        stop=_word_boundary,
        processors=processors,
        should_stop=should_stop,
    )
    items: list[PopupItem] = []
    for b in branches:
        word = b.text[: _WORD.match(b.text).end()]  # type: ignore[union-attr]
        label = partial + word
        if word and not label[0].isdigit() and all(i.label != label for i in items):
            items.append(PopupItem(label, start, b.logprob))
    return items
