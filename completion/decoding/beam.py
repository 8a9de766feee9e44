"""Beam search over a live document's cache, and the draft bookkeeping it shares with superposed decoding.

`Search` keeps the `width` best unfinished drafts ("alive") and the `width` best finished
ones; each step offers it scored extensions `(score, parent, token)` and it keeps the best,
sending a draft to the finished set when its stop rule fires or the model ends the sequence.
Texts are compared as they will be shown, so two tokenizations of the same text, or drafts
that differ only in trailing whitespace once finished, count once (the better one).

`decode_beam` is beam search proper: every alive draft is fed its own last token in one
tree-masked pass on the document's cache (as `branches.py` does), so k beams cost one
forward over k tokens per step. The scores are sums of log-probabilities, not length
normalised: greedy's choice keeps a score near zero, so the top draft tracks greedy. Beam
tokens are cropped off the cache afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

import torch

from completion.decoding.branches import Branch, DraftArgs, tree_pass
from completion.decoding.decode import Processor, TokenHealing
from completion.decoding.stops import StopRule
from completion.live.document import LiveDocument
from completion.model.vocab import Vocabulary

Candidate = tuple[float, int, int]  # (score of the extended draft, index of the alive draft it extends, token)


class Search:
    """The alive and finished drafts of a search that keeps the `width` best of each."""

    def __init__(self, vocab: Vocabulary, heal: str, stop: StopRule, eos: Set[int], width: int) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.stop, self.eos, self.width = stop, eos, width
        self.healing = TokenHealing(vocab, heal)
        self.alive: list[list[int]] = [[]]
        self.scores: list[float] = [0.0]
        self.finished: list[Branch] = []

    def step(self, candidates: Iterable[Candidate]) -> list[int]:
        """Keep the best extensions; returns, for each new alive draft, the index of the draft it extends."""
        alive: list[list[int]] = []
        scores: list[float] = []
        parents: list[int] = []
        seen_alive: set[str | tuple[int, ...]] = set()
        shown = {b.text.rstrip() for b in self.finished}
        for score, parent, tok in sorted(candidates, key=lambda c: -c[0]):
            if len(alive) == self.width:
                break
            if score == float("-inf"):
                break
            base = self.alive[parent]
            tokens = base if tok in self.eos else [*base, tok]
            text = self.healing.text(tokens)
            cut = None if text is None or tok in self.eos else self.stop(text)
            if tok in self.eos or cut is not None:  # finished
                if text is None:
                    continue  # ended before the healed text was re-created: nothing to show
                text = text if cut is None else text[:cut]
                if text.rstrip() not in shown:
                    shown.add(text.rstrip())
                    self.finished.append(Branch(text, tokens, score))
                continue
            key = text if text is not None else tuple(tokens)
            if key in seen_alive:
                continue
            seen_alive.add(key)
            alive.append(tokens)
            scores.append(score)
            parents.append(parent)
        self.finished = sorted(self.finished, key=lambda b: -b.logprob)[: self.width]
        self.alive, self.scores = alive, scores
        return parents

    def done(self) -> bool:
        """No draft left to extend, or `width` finished ones that no extension can beat (scores only fall)."""
        if not self.alive:
            return True
        return len(self.finished) == self.width and self.finished[-1].logprob >= max(self.scores)

    def results(self) -> list[Branch]:
        """The best `width` drafts, finished or not, best first (unfinished: cut short by a limit)."""
        shown = {b.text.rstrip() for b in self.finished}
        rest = []
        for tokens, score in zip(self.alive, self.scores, strict=True):
            text = self.healing.text(tokens)
            if text is not None and text.rstrip() not in shown:
                shown.add(text.rstrip())
                rest.append(Branch(text, tokens, score))
        return sorted(self.finished + rest, key=lambda b: -b.logprob)[: self.width]


def processed_logprobs(
    chain: Processor, drafts: list[list[int]], logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Each draft's processors applied to its row of logits (one shared row may serve all), then
    log-softmax at `temperature`: (k, vocab)."""
    rows = [chain(generated, logits if logits.dim() == 1 else logits[i]) for i, generated in enumerate(drafts)]
    return torch.log_softmax(torch.stack(rows) / temperature, dim=-1)


@torch.inference_mode()
def decode_beam(live: LiveDocument, vocab: Vocabulary, args: DraftArgs) -> list[Branch]:
    """Up to `width` drafts by beam search, best first by log-probability; [] if cancelled."""
    s = args.setup(live, vocab)
    search = Search(vocab, live.heal, args.stop, s.eos, args.width)
    slots: list[list[int]] = [[]]  # cache slots holding each alive draft's fed tokens
    with live.decoding() as (kv, prompt_logits):
        prompt_len = len(kv)
        logits = prompt_logits[None]  # (alive, vocab)
        for step in range(args.max_tokens):
            logprobs = processed_logprobs(s.chain, search.alive, logits)
            top = torch.topk(logprobs, min(args.width, logprobs.shape[-1]), dim=-1)
            candidates = [
                (search.scores[i] + float(v), i, int(t))
                for i, (vs, ts) in enumerate(zip(top.values, top.indices, strict=True))
                for v, t in zip(vs, ts, strict=True)
            ]
            parents = search.step(candidates)
            if search.done() or step == args.max_tokens - 1:
                break
            if s.deadline.cancelled():
                return []
            if s.deadline.expired():
                break
            slots = [[*slots[p], len(kv) + row] for row, p in enumerate(parents)]
            logits = tree_pass(kv, prompt_len, search.alive, slots)
    return [] if s.deadline.cancelled() else search.results()
