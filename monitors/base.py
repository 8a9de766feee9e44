"""What every monitor shares: where the suggestion is, and the text decoded so far.

A monitor is a logits processor, `(generated_ids, logits) -> logits` (see completion.decoding.decode),
pure in `generated`: side-by-side branches call it with different token lists, and the same
list always gets the same answer. It reads the text as bytes: the document before the prompt's
end, the decoded tokens, then the part of the healed text no token has produced yet (token
healing will produce it, so it is as good as written).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from completion.model.vocab import Vocabulary
from completion.syntax.tree import DocTree

TAIL_CHARS = 2000  # document text before the suggestion that monitors look at (jedi gets all of it)


@dataclass(frozen=True)
class Site:
    """The document around one suggestion, as it is now in the editor (not as saved)."""

    text: str
    cursor: int
    heal: str  # the text before the cursor that token healing re-decodes
    path: str | None = None  # the document's file, so jedi resolves its imports
    root: str | None = None  # the workspace folder: jedi's project
    key: object = None  # names this document version, for caches (e.g. (uri, version))
    tree: DocTree | None = None  # the document's live syntax tree, when it has one (never reparsed here)

    @property
    def before(self) -> str:
        """Document text before the prompt's end (the cursor, less the healed text)."""
        return self.text[: self.cursor - len(self.heal)]


@dataclass(frozen=True)
class Written:
    """The text at one decoding step: `done` is decided, `rest` is healed text still to come."""

    done: bytes  # the document's tail (TAIL_CHARS) + decoded bytes
    rest: bytes
    tail_len: int  # bytes of `done` that come from the document

    @property
    def certain(self) -> bytes:
        return self.done + self.rest

    def decoded(self, upto: int) -> bytes:
        """Bytes produced by the suggestion (healed text included) up to index `upto` of `certain`."""
        return self.certain[self.tail_len : max(upto, self.tail_len)]


class Transcript:
    """Turns `generated` token ids into the text monitors read."""

    def __init__(self, vocab: Vocabulary, site: Site) -> None:
        self.vocab = vocab
        self.site = site
        self.tail = site.before[-TAIL_CHARS:].encode("utf-8", "surrogatepass")
        self.heal = site.heal.encode("utf-8", "surrogatepass")

    def at(self, generated: list[int]) -> Written:
        rest = self.vocab.remaining(self.heal, generated)
        return Written(self.tail + self.vocab.decode(generated), rest, len(self.tail))

    def document_text(self, written: Written, upto: int) -> str:
        """The document with the suggestion's text up to index `upto` of `written.certain` at the
        cursor, cut there: what a static analyzer should see before the point it is asked about. A point
        inside the document's own text (`obj.na|`: the name begins before the cursor) cuts the document
        there, so the question is the same while the rest of the name is typed."""
        if upto < written.tail_len:
            return self.site.before[: len(self.site.before) - len(written.done[upto : written.tail_len].decode())]
        added = written.decoded(upto)[len(self.heal) :].decode("utf-8", "replace")
        if len(written.decoded(upto)) < len(self.heal):  # the point is inside the healed text
            return self.site.before + written.decoded(upto).decode("utf-8", "replace")
        return self.site.text[: self.site.cursor] + added


@dataclass
class MonitorStats:
    """What monitors did during one or more suggestions (the benchmark and the logs read it)."""

    steps: int = 0  # processor calls
    seconds: float = 0.0  # time inside monitors, waiting for jedi and the scoring pass excluded
    triggers: int = 0  # distinct points where a monitor asked the analyzer
    ready: int = 0  # ... and found the answer there already (asked ahead by a prefetch, or an earlier request)
    resolved: int = 0  # ... and got names to constrain with
    timeouts: int = 0  # ... and went on unconstrained because the answer was late
    analyzer_seconds: float = 0.0  # time spent waiting for the analyzer
    constrained: int = 0  # steps where a mask or bias was applied
    scored: int = 0  # points where the model searched the legal names for the best whole one
    scoring_passes: int = 0  # ... the tree passes those searches took
    scoring_seconds: float = 0.0  # time choosing whole names, the model's pass included
    repairs: int = 0  # steps where the syntax monitor replaced the top candidate

    def timed(self) -> _Timer:
        return _Timer(self)


class _Timer:
    """`with stats.timed():` adds the block's time to `seconds` and counts a step."""

    def __init__(self, stats: MonitorStats) -> None:
        self.stats = stats

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.stats.steps += 1
        self.stats.seconds += time.perf_counter() - self.t0


def keep_only(logits: torch.Tensor, allowed: np.ndarray) -> torch.Tensor | None:
    """New logits with every token outside the bool mask `allowed` at -inf; None if that would
    leave no finite logit (the caller then keeps the logits it had: the one fallback)."""
    if logits.device.type != "cpu":
        mask = torch.from_numpy(allowed).to(logits.device)
        out = logits.masked_fill(~mask, float("-inf"))
        return out if bool(torch.isfinite(out).any()) else None
    src = logits.numpy()  # numpy: single-threaded, microseconds (see monitors.vocab)
    masked = np.where(allowed, src, np.float32(-np.inf)).astype(src.dtype, copy=False)
    return torch.from_numpy(masked) if np.isfinite(masked[allowed]).any() else None


def add_where(logits: torch.Tensor, where: np.ndarray, bonus: float) -> torch.Tensor:
    """New logits with `bonus` added to the tokens in the bool mask `where`."""
    if logits.device.type != "cpu":
        return logits + bonus * torch.from_numpy(where).to(logits.device)
    src = logits.numpy()
    return torch.from_numpy(src + np.where(where, np.float32(bonus), np.float32(0)).astype(src.dtype, copy=False))
