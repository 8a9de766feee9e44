"""Several continuations decoded side by side, one forward pass per step for all of them.

The branches start from the prompt's `width` best first tokens and then continue greedily.
They share the prompt's cache: each step appends one token per live branch, all at the
branch's own next position, under a mask that lets a branch see the prompt and its own
earlier tokens only (a tree layout). On a CPU a k-token step costs little more than a
1-token step, since reading the weights dominates. Popup items and extra inline drafts
come from here; the branch tokens are cropped off the cache afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from completion.decoding.decode import Processor, TokenHealing
from completion.decoding.stops import StopRule
from completion.live.document import LiveDocument
from completion.model.vocab import Vocabulary


@dataclass(frozen=True)
class Branch:
    text: str  # what to insert at the cursor (the healed text removed)
    tokens: list[int]
    logprob: float  # sum over the branch's tokens, under the processed distribution


@torch.inference_mode()
def decode_branches(
    live: LiveDocument,
    vocab: Vocabulary,
    *,
    width: int,
    max_tokens: int,
    stop: StopRule,
    processors: Sequence[Processor] = (),
    time_budget: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Branch]:
    """Up to `width` branches, best first by log-probability; [] if cancelled."""
    if width < 1 or max_tokens < 1:
        raise ValueError(f"width and max_tokens must be >= 1, got {width} and {max_tokens}")
    t0 = time.perf_counter()
    healing = TokenHealing(vocab, live.heal)
    chain: list[Processor] = [healing, *processors]
    eos = set(live.engine.tokenizer.all_special_ids)

    def process(generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        for p in chain:
            logits = p(generated, logits)
        return torch.log_softmax(logits, dim=-1)

    def finished(generated: list[int]) -> tuple[bool, str]:
        """Whether a branch is done, and its text so far."""
        if healing.remaining(generated):
            return False, ""
        text = vocab.decode(generated)[len(healing.heal) :].decode("utf-8", errors="replace")
        cut = stop(text)
        return (True, text[:cut]) if cut is not None else (False, text)

    with live.decoding() as (kv, prompt_logits):
        prompt_len = len(kv)
        first = process([], prompt_logits)
        top = torch.topk(first, min(width, int(torch.isfinite(first).sum())))
        branches = [[int(t)] for t in top.indices if int(t) not in eos]
        scores = [float(first[b[0]]) for b in branches]
        texts = [""] * len(branches)
        done = [False] * len(branches)
        slots: list[list[int]] = [[] for _ in branches]  # cache indices holding each branch's fed tokens
        for i, b in enumerate(branches):
            done[i], texts[i] = finished(b)
        for _ in range(max_tokens - 1):
            live_ids = [i for i, d in enumerate(done) if not d]
            if not live_ids or (should_stop is not None and should_stop()):
                break
            if time_budget is not None and time.perf_counter() - t0 > time_budget:
                break
            n_cached = len(kv)
            visible = torch.zeros(len(live_ids), n_cached + len(live_ids), dtype=torch.bool)
            visible[:, :prompt_len] = True
            for row, i in enumerate(live_ids):
                slots[i].append(n_cached + row)
                visible[row, slots[i]] = True
            logits = kv.encode_tree(
                [branches[i][-1] for i in live_ids],
                [prompt_len + len(branches[i]) - 1 for i in live_ids],
                visible,
            )
            for row, i in enumerate(live_ids):
                logprobs = process(branches[i], logits[row])
                tok = int(torch.argmax(logprobs))
                if tok in eos or not torch.isfinite(logprobs[tok]):
                    done[i] = True
                    continue
                branches[i].append(tok)
                scores[i] += float(logprobs[tok])
                done[i], texts[i] = finished(branches[i])
    if should_stop is not None and should_stop():
        return []
    out = [Branch(t, b, s) for t, b, s in zip(texts, branches, scores, strict=True)]
    return sorted(out, key=lambda br: -br.logprob)
