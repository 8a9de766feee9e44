"""The decoding loop over a LiveDocument's cache, with logits processors and stop rules.

A processor is a callable `(generated_ids, logits) -> logits` that returns new logits
(never edits them in place); processors compose in a list, like transformers' logits
processors. Decoded tokens extend the cache only for the duration of the call: they are
cropped off afterwards, so a completion leaves the document's cache as it found it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from completion.live import LiveDocument
from completion.stops import StopRule, stop_at_newline
from completion.vocab import Vocabulary

Processor = Callable[[list[int], torch.Tensor], torch.Tensor]


class TokenHealing:
    """Constrain the first tokens to re-create `heal` (the text the prompt backed up over).

    A token is allowed while healing if it starts with the remaining heal bytes, or is itself a
    prefix of them (then healing continues on the next token). Pure in `generated`: no state.
    """

    def __init__(self, vocab: Vocabulary, heal: str) -> None:
        self.vocab = vocab
        self.heal = heal.encode()

    def remaining(self, generated: list[int]) -> bytes:
        return self.vocab.remaining(self.heal, generated)

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        rest = self.remaining(generated)
        if not rest:
            return logits
        allowed = [self.vocab.starting_with(rest)]
        allowed += [torch.tensor(self.vocab.equal_to(rest[:i]), dtype=torch.long) for i in range(1, len(rest))]
        ids = torch.cat(allowed)
        if ids.numel() == 0:  # no token can heal (should not happen): decode unconstrained
            return logits
        masked = torch.full_like(logits, float("-inf"))
        masked[ids] = logits[ids]
        return masked


@dataclass(frozen=True)
class Sampling:
    """Greedy when `temperature` is 0 (the default: completions are reproducible)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def pick(self, logits: torch.Tensor, generator: torch.Generator) -> int:
        if self.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            # keep the smallest set of tokens whose mass reaches top_p (at least one)
            keep = torch.cumsum(sorted_probs, 0) - sorted_probs < self.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=generator))


GREEDY = Sampling()


@dataclass(frozen=True)
class Completion:
    text: str  # what to insert at the cursor (the healed text removed)
    tokens: list[int]
    first_token_seconds: float
    seconds: float
    stop: str  # "rule", "eos", "max_tokens", "time" or "cancelled"


@torch.inference_mode()
def decode(
    live: LiveDocument,
    vocab: Vocabulary,
    *,
    max_tokens: int = 48,
    processors: Sequence[Processor] = (),
    stop: StopRule = stop_at_newline,
    sampling: Sampling = GREEDY,
    time_budget: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Completion:
    """Decode from the prompt's end; `should_stop` is polled between tokens (cancellation)."""
    t0 = time.perf_counter()
    generator = torch.Generator().manual_seed(sampling.seed)
    healing = TokenHealing(vocab, live.heal)
    chain: list[Processor] = [healing, *processors]
    eos = set(live.engine.tokenizer.all_special_ids)
    prompt_len = len(live.tokens)
    generated: list[int] = []
    first = 0.0
    reason = "max_tokens"
    text = ""
    try:
        logits = live.prompt_logits()
        for _ in range(max_tokens):
            for p in chain:
                logits = p(generated, logits)
            tok = sampling.pick(logits, generator)
            if not generated:
                first = time.perf_counter() - t0
            if tok in eos:
                reason = "eos"
                break
            generated.append(tok)
            if not healing.remaining(generated):
                text = vocab.decode(generated)[len(healing.heal) :].decode("utf-8", errors="replace")
                cut = stop(text)
                if cut is not None:
                    text, reason = text[:cut], "rule"
                    break
            if should_stop is not None and should_stop():
                reason = "cancelled"
                break
            if time_budget is not None and time.perf_counter() - t0 > time_budget:
                reason = "time"
                break
            logits = live.kv.encode([tok], want_logits=True)
            assert logits is not None
    finally:
        live.kv.crop(prompt_len)
    return Completion(text, generated, first, time.perf_counter() - t0, reason)
