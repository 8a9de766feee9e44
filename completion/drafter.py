"""Draft proposals for the decoding loop: the next tokens guessed from where the context's end occurred before.

The prompt (the document around the cursor) and the tokens decoded so far are searched
first: a match of `min_local_match` tokens is enough, the longest match wins and, among
equally long ones, the most recent. Only when the prompt has nothing does the project
store answer, with a stricter gate (the continuation most of its hits agree on, after a
match of at least `KEY_TOKENS`), because a wrong draft costs a longer forward pass.

The draft length adapts to how drafts have fared (as transformers' assistant heuristic:
longer after a fully accepted draft, shorter otherwise): on this CPU a pass over 4 tokens
costs about 1.2x a one-token step and over 8 tokens about 1.7x (`livekv bench speed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from completion.datastore import MAX_MATCH, ProjectStore, majority_path, match_lengths


@dataclass(frozen=True)
class DraftConfig:
    min_local_match: int = 2  # tokens of the prompt's own text that must match
    project_share: float = 0.6  # a project draft token needs this share of the hits still agreeing
    start_length: int = 4
    min_length: int = 2
    max_length: int = 7  # a draft of 7 makes an 8-token pass, the most the runner's fast path takes


@dataclass
class DraftStats:
    proposals: int = 0  # drafts proposed (non-empty)
    local: int = 0  # of which from the prompt
    project: int = 0  # of which from the project store
    proposed_tokens: int = 0
    accepted_tokens: int = 0
    lengths: list[int] = field(default_factory=list)  # the draft length in force at each proposal


class Drafter:
    """Stateful across one decode (the stream) and across decodes (the learnt draft length)."""

    def __init__(self, project: ProjectStore | None = None, config: DraftConfig = DraftConfig()) -> None:
        self.project = project
        self.config = config
        self.length = config.start_length
        self.stats = DraftStats()
        self._prompt = np.zeros(0, dtype=np.int32)

    def begin(self, prompt: Sequence[int]) -> None:
        """A new decode starts from these prompt tokens."""
        self._prompt = np.asarray(prompt, dtype=np.int32)

    def propose(self, generated: Sequence[int], limit: int) -> list[int]:
        """Up to min(limit, the current draft length) tokens to follow the prompt plus `generated`."""
        length = min(limit, self.length)
        if length <= 0:
            return []
        stream = np.concatenate([self._prompt, np.asarray(generated, dtype=np.int32)])
        draft = self._local(stream, length)
        source = "local"
        if not draft and self.project is not None:
            hits = self.project.hits(stream, length)
            draft = majority_path([h.continuation for h in hits], self.config.project_share)
            source = "project"
        if draft:
            self.stats.proposals += 1
            self.stats.proposed_tokens += len(draft)
            self.stats.lengths.append(self.length)
            setattr(self.stats, source, getattr(self.stats, source) + 1)
        return draft

    def _local(self, stream: np.ndarray, length: int) -> list[int]:
        if len(stream) <= self.config.min_local_match:
            return []
        lengths = match_lengths(stream[:-1], stream[-MAX_MATCH:])  # the last position would match itself
        best = int(lengths.max())
        if best < self.config.min_local_match:
            return []
        end = int(np.flatnonzero(lengths == best)[-1])  # the most recent of the longest matches
        return stream[end + 1 : end + 1 + length].tolist()

    def feedback(self, proposed: int, accepted: int) -> None:
        """How a draft of `proposed` tokens fared: `accepted` of them were what greedy decoding chose."""
        self.stats.accepted_tokens += accepted
        c = self.config
        self.length = min(c.max_length, self.length + 2) if accepted == proposed else max(c.min_length, self.length - 1)
