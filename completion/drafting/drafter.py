"""Draft proposals for the decoding loop: the next tokens guessed from where the context's end occurred before.

Sources, in order, the first that has something wins:
1. the prompt (the document around the cursor) and the tokens decoded so far: a match of
   `min_local_match` tokens is enough, the longest match wins and, among equally long
   ones, the most recent; a short match (under 4 tokens) drafts at most
   `short_match_length` tokens, as its guesses are right about half the time;
2. the project store, with a stricter gate (the continuation most of its hits agree on,
   after a match of at least `KEY_TOKENS`): measured, its drafts' first token is right
   a third of the time;
3. the model's own predictions (Token Recycling's idea, one chain instead of a tree): the
   token the model last predicted after the current one, then after that one, and so on.
   The table learns from every pass and is kept across suggestions.

The draft length adapts to how drafts have fared (as transformers' assistant heuristic:
longer after a fully accepted draft, shorter otherwise), down to one token: a one-token
step runs as a two-row product anyway (`formats._Dense`), so a pass over the token and a
one-token draft costs little more (1.03-1.08x measured), a pass over 4 tokens about 1.4x,
8 tokens about 2x (`livekv bench drafting` measures these in its run). And drafting pauses
where drafts keep missing: after `pause_after` drafts in a row with nothing accepted, only a
long prompt match is drafted for 1, 2, 4, ... passes (up to `max_pause`), so text where
nothing matches costs next to nothing over plain greedy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from completion.drafting.datastore import MAX_MATCH, ProjectStore, majority_path, match_lengths

LONG_MATCH = 4  # prompt matches this long are trusted: full-length drafts, even while drafting pauses


@dataclass(frozen=True)
class DraftConfig:
    min_local_match: int = 2  # tokens of the prompt's own text that must match
    project_share: float = 0.6  # a project draft token needs this share of the hits still agreeing
    start_length: int = 1  # grows by 2 after each fully accepted draft
    min_length: int = 1  # a 1-token draft rides in the row a single-token step pads with: nearly free
    max_length: int = 7  # a draft of 7 makes an 8-token pass, the most the runner's fast path takes
    short_match_length: int = 3  # the longest draft after a prompt match of fewer than 4 tokens
    successors: bool = True  # when nothing matches, chain the model's own last predictions
    pause_after: int = 4  # drafts in a row with nothing accepted before drafting pauses (0: never)
    max_pause: int = 32  # passes; each further miss doubles the pause, up to this


@dataclass
class DraftStats:
    proposals: int = 0  # drafts proposed (non-empty)
    local: int = 0  # of which from the prompt
    project: int = 0  # of which from the project store
    successors: int = 0
    proposed_tokens: int = 0
    accepted_tokens: int = 0


class Drafter:
    """Stateful across one decode (the stream) and across decodes (the draft length, the successor table)."""

    def __init__(self, project: ProjectStore | None = None, config: DraftConfig = DraftConfig()) -> None:
        self.project = project
        self.config = config
        self.length = config.start_length
        self.stats = DraftStats()
        self._prompt = np.zeros(0, dtype=np.int32)
        self._successor: dict[int, int] = {}  # token -> what the model predicted after it last time
        self._misses = 0  # drafts in a row of which nothing was accepted
        self._pause = 0  # passes left in which only a long prompt match is drafted

    def begin(self, prompt: Sequence[int]) -> None:
        """A new decode starts from these prompt tokens."""
        self._prompt = np.asarray(prompt, dtype=np.int32)

    def propose(self, generated: Sequence[int], limit: int) -> list[int]:
        """Up to min(limit, the current draft length) tokens to follow the prompt plus `generated`."""
        length = min(limit, self.length)
        if length <= 0:
            return []
        stream = np.concatenate([self._prompt, np.asarray(generated, dtype=np.int32)])
        paused = self._pause > 0
        self._pause = max(self._pause - 1, 0)
        draft = self._local(stream, length, long_only=paused)
        source = "local"
        if not draft and not paused and self.project is not None:
            hits = self.project.hits(stream, length)
            draft = majority_path([h.continuation for h in hits], self.config.project_share)
            source = "project"
        if not draft and not paused and self.config.successors and len(stream):
            draft = self._chain(int(stream[-1]), length)
            source = "successors"
        if draft:
            self.stats.proposals += 1
            self.stats.proposed_tokens += len(draft)
            setattr(self.stats, source, getattr(self.stats, source) + 1)
        return draft

    def _local(self, stream: np.ndarray, length: int, long_only: bool = False) -> list[int]:
        if len(stream) <= self.config.min_local_match:
            return []
        lengths = match_lengths(stream[:-1], stream[-MAX_MATCH:])  # the last position would match itself
        best = int(lengths.max())
        if best < (LONG_MATCH if long_only else self.config.min_local_match):
            return []
        if best < LONG_MATCH:
            length = min(length, self.config.short_match_length)
        end = int(np.flatnonzero(lengths == best)[-1])  # the most recent of the longest matches
        return cast(list[int], stream[end + 1 : end + 1 + length].tolist())

    def _chain(self, token: int, length: int) -> list[int]:
        out: list[int] = []
        while len(out) < length and (token := self._successor.get(token, -1)) >= 0:
            out.append(token)
        return out

    def observe(self, fed: Sequence[int], predicted: Sequence[int]) -> None:
        """The model's top token after each fed token (what the successor chains replay)."""
        self._successor.update(zip(fed, predicted, strict=True))

    def feedback(self, proposed: int, accepted: int) -> None:
        """How a draft of `proposed` tokens fared: `accepted` of them were what greedy decoding chose."""
        self.stats.accepted_tokens += accepted
        c = self.config
        self.length = min(c.max_length, self.length + 2) if accepted == proposed else max(c.min_length, self.length - 1)
        self._misses = self._misses + 1 if accepted == 0 else 0
        if c.pause_after and self._misses >= c.pause_after:
            self._pause = min(c.max_pause, 2 ** (self._misses - c.pause_after))
