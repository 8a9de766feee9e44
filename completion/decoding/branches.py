"""Several continuations decoded side by side, one forward pass per step for all of them; and what
every multi-draft method shares (its arguments, its result, the tree-masked pass).

The branches start from the prompt's `width` best first tokens and then continue greedily.
They share the prompt's cache: each step appends one token per live branch, all at the
branch's own next position, under a mask that lets a branch see the prompt and its own
earlier tokens only (a tree layout). On a CPU a k-token step costs little more than a
1-token step, since reading the weights dominates. Popup items and extra inline drafts
come from here; the branch tokens are cropped off the cache afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from completion.decoding.decode import Deadline, Processor, Setup, setup
from completion.decoding.stops import StopRule
from completion.live.document import LiveDocument
from completion.live.kvcache import KVCache
from completion.model.vocab import Vocabulary


@dataclass(frozen=True)
class Branch:
    text: str  # what to insert at the cursor (the healed text removed)
    tokens: list[int]
    logprob: float  # sum over the branch's tokens, under the processed distribution


@dataclass(frozen=True)
class DraftArgs:
    """What every multi-draft method (branches, beam, superposed, greedy runs) is asked for."""

    width: int  # drafts wanted
    max_tokens: int
    stop: StopRule
    processors: Sequence[Processor] = ()
    time_budget: float | None = None  # seconds
    should_stop: Callable[[], bool] | None = None  # polled between steps (cancellation)

    def __post_init__(self) -> None:
        if self.width < 1 or self.max_tokens < 1:
            raise ValueError(f"width and max_tokens must be >= 1, got {self.width} and {self.max_tokens}")

    def setup(self, live: LiveDocument, vocab: Vocabulary) -> Setup:
        """The deadline (its clock starts now), token healing and the processor chain."""
        return setup(live, vocab, self.processors, Deadline(self.time_budget, self.should_stop))


def tree_pass(kv: KVCache, prompt_len: int, drafts: Sequence[list[int]], slots: Sequence[list[int]]) -> torch.Tensor:
    """One pass feeding every draft's last token at the draft's own next position, each seeing the
    prompt and the cache slots of its own fed tokens (`slots`, this one's included): (drafts, vocab)."""
    n_cached = len(kv)
    visible = torch.zeros(len(drafts), n_cached + len(drafts), dtype=torch.bool)
    visible[:, :prompt_len] = True
    for row, own in enumerate(slots):
        visible[row, own] = True
    return kv.encode_tree([d[-1] for d in drafts], [prompt_len + len(d) - 1 for d in drafts], visible)


@torch.inference_mode()
def decode_branches(live: LiveDocument, vocab: Vocabulary, args: DraftArgs) -> list[Branch]:
    """Up to `width` branches, best first by log-probability; [] if cancelled."""
    s = args.setup(live, vocab)

    def finished(generated: list[int]) -> tuple[bool, str]:
        """Whether a branch is done, and its text so far."""
        text = s.healing.text(generated)
        cut = None if text is None else args.stop(text)
        return cut is not None, (text or "")[:cut]

    with live.decoding() as (kv, prompt_logits):
        prompt_len = len(kv)
        first = torch.log_softmax(s.chain([], prompt_logits), dim=-1)
        top = torch.topk(first, min(args.width, int(torch.isfinite(first).sum())))
        branches = [[int(t)] for t in top.indices if int(t) not in s.eos]
        scores = [float(first[b[0]]) for b in branches]
        done = [False] * len(branches)
        texts = [""] * len(branches)
        for i, b in enumerate(branches):
            done[i], texts[i] = finished(b)
        slots: list[list[int]] = [[] for _ in branches]  # cache slots holding each branch's fed tokens
        for _ in range(args.max_tokens - 1):
            live_ids = [i for i, d in enumerate(done) if not d]
            if not live_ids or s.deadline.ended():
                break
            for row, i in enumerate(live_ids):
                slots[i].append(len(kv) + row)
            logits = tree_pass(kv, prompt_len, [branches[i] for i in live_ids], [slots[i] for i in live_ids])
            for row, i in enumerate(live_ids):
                logprobs = torch.log_softmax(s.chain(branches[i], logits[row]), dim=-1)
                tok = int(torch.argmax(logprobs))
                if tok in s.eos or not torch.isfinite(logprobs[tok]):
                    done[i] = True
                    continue
                branches[i].append(tok)
                scores[i] += float(logprobs[tok])
                done[i], texts[i] = finished(branches[i])
    if s.deadline.cancelled():
        return []
    out = [Branch(t, b, sc) for t, b, sc in zip(texts, branches, scores, strict=True)]
    return sorted(out, key=lambda br: -br.logprob)
