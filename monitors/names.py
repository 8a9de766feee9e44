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
lets decoding go on unconstrained rather than wait. With `whole_names` and a tree search lent by the
greedy loop, a resolved point's legal names are ranked by the model's probability of the whole name
(monitors.whole_names) and only the best may be written there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import torch

from completion.decoding.decode import TreeSearchFactory
from completion.model.vocab import Vocabulary
from monitors.analysis import Analyzer, Names, Query
from monitors.base import MonitorStats, Site, Transcript, Written, add_where, keep_only
from monitors.triggers import Trigger, TriggerFn
from monitors.vocab import NameMasks
from monitors.whole_names import best_name, searched_names

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
        whole_names: bool = False,
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
        self.whole_names = whole_names
        self.search: TreeSearchFactory | None = None  # lent by the greedy loop, on its cache (decode.TreeSearch)
        self.stats = stats or MonitorStats()
        self.transcript = Transcript(vocab, site)
        self._site_key = site.key if site.key is not None else (site.path, hash(site.text), site.cursor)
        self._asked: dict[object, Future[Names]] = {}  # points this suggestion has waited for once
        self._masks: dict[tuple[frozenset[str], bytes, bytes, bool], np.ndarray | None] = {}
        self._used: frozenset[str] | None = None
        self._chosen: dict[object, str | None] = {}  # point -> the whole name chosen there

    def use_search(self, search: TreeSearchFactory | None) -> None:
        self.search = search

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        waited = scoring = 0.0
        try:
            written = self.transcript.at(generated)
            top = self.vocab.pieces[int(torch.argmax(logits))]
            trigger = next((t for f in self.triggers if (t := f(written, top)) is not None), None)
            if trigger is None:
                return logits
            key = self._point(trigger, written)
            names, waited = self._names(trigger, written, key)
            out, scoring = self._constrain(generated, logits, names, trigger, written, key)
            return out
        finally:
            self.stats.steps += 1
            self.stats.seconds += time.perf_counter() - t0 - waited - scoring
            self.stats.analyzer_seconds += waited
            self.stats.scoring_seconds += scoring

    def prefetch(self) -> bool:
        """Ask jedi now about the trigger at the cursor, if there is one, without waiting for its answer."""
        written = self.transcript.at([])
        for top in _PREFETCH_TOPS:
            trigger = next((t for f in self.triggers if (t := f(written, top)) is not None), None)
            if trigger is not None:
                self.analyzer.prefetch(self._query(trigger, written))
                return True
        return False

    def _point(self, trigger: Trigger, written: Written) -> object:
        """Names the point where the name begins, the same while the rest of the name is written."""
        head = (written.certain + trigger.virtual)[: trigger.start]
        return (self._site_key, head[written.tail_len :])

    def _names(self, trigger: Trigger, written: Written, key: object) -> tuple[Names | None, float]:
        """jedi's answer for the trigger's point (None while it is late) and the time spent waiting."""
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

    def _constrain(
        self, generated: list[int], logits: torch.Tensor, names: Names | None, trigger: Trigger, w: Written, key: object
    ) -> tuple[torch.Tensor, float]:
        """Hard mask when jedi resolved the point (to the whole name chosen there, when names are
        scored); then the document's own member names get `bias`. Also returns the scoring pass's time."""
        out, scoring = logits, 0.0
        legal = names.names if names is not None else None
        if trigger.kind == "keyword":  # only `name=` tokens are judged, and only when jedi knows the call
            mask = None
            if legal is not None:
                mask_key = (legal, b"=", trigger.partial(w), False)
                if mask_key not in self._masks:
                    self._masks[mask_key] = self.masks.keyword_mask(legal, trigger.partial(w))
                mask = self._masks[mask_key]
            kept = keep_only(logits, mask) if mask is not None else None
            if kept is None:
                return logits, scoring
            self.stats.constrained += 1
            return kept, scoring
        if legal is not None:
            mask = self._mask(legal, trigger, w)
            kept = keep_only(logits, mask) if mask is not None else None
            if kept is None:  # nothing legal continues what is written, or healing ruled it out
                return logits, scoring
            out = kept
            if self.whole_names and not trigger.region and (self.search is not None or key in self._chosen):
                t0 = time.perf_counter()
                chosen = self._choose(generated, kept, legal, trigger, w, key)
                scoring = time.perf_counter() - t0
                one = self._mask(frozenset([chosen]), trigger, w) if chosen is not None else None
                only = keep_only(logits, one) if one is not None else None
                if only is not None:
                    self.stats.constrained += 1
                    return only, scoring
        if self.bias > 0 and trigger.kind == "member":
            favoured = self._used_members() if legal is None else self._used_members() & legal
            bonus = self._mask(favoured, trigger, w) if favoured else None
            if bonus is not None:
                out = add_where(out, bonus, self.bias)
        if out is not logits:
            self.stats.constrained += 1
        return out, scoring

    def _choose(
        self, generated: list[int], kept: torch.Tensor, legal: frozenset[str], trigger: Trigger, w: Written, key: object
    ) -> str | None:
        """The legal name the model gives the highest probability as a whole at this point (None: none
        could be spelled in tokens); remembered for the point."""
        if key in self._chosen:
            return self._chosen[key]
        assert self.search is not None
        fixed = w.certain + trigger.virtual
        typed = fixed[trigger.start :]  # the name's bytes so far, decoded or certain to come
        names = frozenset(n for n in legal if n.encode().startswith(typed))
        if any(trigger.start + len(n.encode()) <= len(w.done) for n in names):
            self._chosen[key] = None  # a legal name is written already: ending it is the model's call
            return None
        logprobs = torch.log_softmax(kept.float(), dim=-1)
        skip = max(0, trigger.start - len(w.done))  # bytes before the name (a healed `.`)
        if len(self.vocab.pieces[int(torch.argmax(kept))]) <= skip:
            return None  # the model writes the lead alone first: choose at the next step, from the name's tokens
        chosen = None
        searched = searched_names(names, typed)
        if len(searched) == 1:
            chosen = next(iter(searched))
        elif searched:
            search = self.search(generated)
            try:
                chosen, _, passes = best_name(
                    search,
                    logprobs,
                    searched,
                    self.masks,
                    spelled=w.done[trigger.start :],
                    need=fixed[len(w.done) :],
                    skip=skip,
                )
            finally:
                search.close()
            self.stats.scored += 1
            self.stats.scoring_passes += passes
            if chosen is None and passes == 0 and skip:
                return None  # no name the search ranks starts in the lead's tokens: choose after the lead
        self._chosen[key] = chosen
        return chosen

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
