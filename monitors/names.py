"""The name monitor (Monitor-Guided Decoding): at a trigger, only names jedi lists may follow.

After `obj.` the model may only write a member jedi finds on `obj` (with the project as
context and the document as it is now); after `import` only a module, after `from m import`
only a name of `m`; in a call, `name=` only for a parameter of the called function. When
jedi cannot resolve the point (an untyped parameter, `__getattr__`, `**kwargs`, a dynamic
object) decoding goes on unconstrained. With `bias` set, names the document itself uses
after a dot get a bonus either way (among the legal ones when jedi resolved): the file is
the best prior for which of forty members this code means. jedi is asked once per question
(the code it sees at the point), and when a change puts the caret at a trigger the question is
asked at once (`prefetch`), so its answer is often ready when the request comes; a late answer
lets decoding go on unconstrained rather than wait.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import torch

from completion.model.vocab import Vocabulary
from monitors.analysis import Analyzer, Names, Query
from monitors.base import MonitorStats, Site, Transcript, Written, add_where, keep_only
from monitors.triggers import Trigger, TriggerFn
from monitors.vocab import NameMasks

_USED_MEMBER = re.compile(r"\.([A-Za-z_]\w*)")
# The top candidates a prefetch tries: none (the text alone: `obj.`, `import `), and one writing
# `name=` (the keyword trigger waits for the model to propose one; in a call's parentheses it will).
_PREFETCH_TOPS = (b"", b"name=")


class NameMonitor:
    def __init__(
        self,
        vocab: Vocabulary,
        masks: NameMasks,
        analyzer: Analyzer,
        site: Site,
        triggers: Sequence[TriggerFn],
        *,
        timeout: float = 0.5,
        bias: float = 0.0,
        stats: MonitorStats | None = None,
    ) -> None:
        if timeout < 0 or bias < 0:
            raise ValueError(f"timeout and bias must be >= 0, got {timeout} and {bias}")
        self.vocab = vocab
        self.masks = masks
        self.analyzer = analyzer
        self.site = site
        self.triggers = list(triggers)
        self.timeout = timeout
        self.bias = bias
        self.stats = stats or MonitorStats()
        self.transcript = Transcript(vocab, site)
        self._site_key = site.key if site.key is not None else (site.path, hash(site.text), site.cursor)
        self._asked: dict[object, Future[Names]] = {}  # points this suggestion has waited for once
        self._masks: dict[tuple[frozenset[str], bytes, bytes, bool], np.ndarray | None] = {}
        self._used: frozenset[str] | None = None

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        waited = 0.0
        try:
            written = self.transcript.at(generated)
            top = self.vocab.pieces[int(torch.argmax(logits))]
            trigger = next((t for f in self.triggers if (t := f(written, top)) is not None), None)
            if trigger is None:
                return logits
            names, waited = self._names(trigger, written)
            return self._constrain(logits, names, trigger, written)
        finally:
            self.stats.steps += 1
            self.stats.seconds += time.perf_counter() - t0 - waited
            self.stats.analyzer_seconds += waited

    def prefetch(self) -> bool:
        """Ask jedi now about the trigger at the cursor, if there is one, without waiting for its answer."""
        written = self.transcript.at([])
        for top in _PREFETCH_TOPS:
            trigger = next((t for f in self.triggers if (t := f(written, top)) is not None), None)
            if trigger is not None:
                self.analyzer.prefetch(self._query(trigger, written))
                return True
        return False

    def _names(self, trigger: Trigger, written: Written) -> tuple[Names | None, float]:
        """jedi's answer for the trigger's point (None while it is late) and the time spent waiting."""
        head = (written.certain + trigger.virtual)[: trigger.start]
        key = (self._site_key, head[written.tail_len :])
        future = self._asked.get(key)
        if future is None:
            future = self.analyzer.ask(self._query(trigger, written))
            self._asked[key] = future
            self.stats.triggers += 1
            self.stats.ready += future.done()
            t0 = time.perf_counter()
            try:
                names = future.result(timeout=self.timeout)
            except (FutureTimeout, CancelledError):  # cancelled: a prefetch nobody asks for any more
                self.stats.timeouts += 1
                return None, time.perf_counter() - t0
            if names.names is not None:
                self.stats.resolved += 1
            return names, time.perf_counter() - t0
        return (future.result() if future.done() and not future.cancelled() else None), 0.0

    def _query(self, trigger: Trigger, written: Written) -> Query:
        code = self.transcript.document_text(written, min(trigger.start, len(written.certain)))
        code += trigger.virtual[: max(0, trigger.start - len(written.certain))].decode()
        line = code.count("\n") + 1
        column = len(code) - (code.rfind("\n") + 1)
        suffix = self.site.text[self.site.cursor :]
        return Query(code + suffix, line, column, self.site.path, self.site.root, trigger.kind == "keyword")

    def _constrain(self, logits: torch.Tensor, names: Names | None, trigger: Trigger, w: Written) -> torch.Tensor:
        """Hard mask when jedi resolved the point; then the document's own member names get `bias`."""
        out = logits
        legal = names.names if names is not None else None
        if trigger.kind == "keyword":  # only `name=` tokens are judged, and only when jedi knows the call
            mask = None
            if legal is not None:
                key = (legal, b"=", trigger.partial(w), False)
                if key not in self._masks:
                    self._masks[key] = self.masks.keyword_mask(legal, trigger.partial(w))
                mask = self._masks[key]
            kept = keep_only(logits, mask) if mask is not None else None
            if kept is None:
                return logits
            self.stats.constrained += 1
            return kept
        if legal is not None:
            mask = self._mask(legal, trigger, w)
            kept = keep_only(logits, mask) if mask is not None else None
            if kept is None:  # nothing legal continues what is written, or healing ruled it out
                return logits
            out = kept
        if self.bias > 0 and trigger.kind == "member":
            favoured = self._used_members() if legal is None else self._used_members() & legal
            bonus = self._mask(favoured, trigger, w) if favoured else None
            if bonus is not None:
                out = add_where(out, bonus, self.bias)
        if out is not logits:
            self.stats.constrained += 1
        return out

    def _mask(self, names: frozenset[str], trigger: Trigger, w: Written) -> np.ndarray | None:
        lead, partial = trigger.lead(w), trigger.partial(w)
        key = (names, lead, partial, trigger.region)
        if key not in self._masks:
            self._masks[key] = self.masks.mask(names, partial, lead, trigger.region)
        return self._masks[key]

    def _used_members(self) -> frozenset[str]:
        """Names the document writes after a dot: the guess when jedi cannot resolve a receiver."""
        if self._used is None:
            self._used = frozenset(_USED_MEMBER.findall(self.site.text))
        return self._used
