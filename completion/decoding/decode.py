"""The decoding loop over a LiveDocument's cache, with logits processors and stop rules.

A processor is a callable `(generated_ids, logits) -> logits` that returns new logits
(never edits them in place); processors compose in a list, like transformers' logits
processors. Decoded tokens go into the gap of the document's cache at the decode point
(`LiveDocument.decoding`), so a completion leaves the document's cache as it found it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from completion.decoding.stops import StopRule, stop_at_newline
from completion.drafting.drafter import Drafter
from completion.live.document import LiveDocument
from completion.model.vocab import Vocabulary

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
    pass_sizes: tuple[int, ...] = ()  # tokens fed by each forward pass after the prompt's (1 + the draft)

    @property
    def passes(self) -> int:
        """Forward passes after the prompt's (fewer than tokens when drafts were accepted)."""
        return len(self.pass_sizes)


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
    drafter: Drafter | None = None,
) -> Completion:
    """Decode from the prompt's end; `should_stop` is polled between tokens (cancellation).

    With a `drafter` (greedy only), each forward pass feeds the chosen token plus a guess of the
    tokens after it; the logits after every guessed token are kept, and a guess counts only if
    the loop, running the processors on exactly the prefix greedy decoding would have, picks
    that same token. So the output is greedy's, in fewer passes; unused guesses are cropped.
    """
    t0 = time.perf_counter()
    generator = torch.Generator().manual_seed(sampling.seed)
    healing = TokenHealing(vocab, live.heal)
    chain: list[Processor] = [healing, *processors]
    eos = set(live.engine.tokenizer.all_special_ids)
    drafting = drafter is not None and sampling.temperature == 0
    if drafter is not None:
        drafter.begin(live.prompt)
    generated: list[int] = []
    ahead: list[tuple[int, torch.Tensor]] = []  # guessed tokens in the cache, each with the logits after it
    drafted = accepted = 0
    pass_sizes: list[int] = []
    first = 0.0
    reason = "max_tokens"
    text = ""

    def text_of(ids: list[int]) -> str | None:
        """The suggestion's text for these ids, or None while they have not re-created the healed text."""
        if healing.remaining(ids):
            return None
        return vocab.decode(ids)[len(healing.heal) :].decode("utf-8", errors="replace")

    def guess(limit: int) -> list[int]:
        """A draft cut before an end-of-sequence token and after the token where the stop rule fires."""
        assert drafter is not None
        draft = drafter.propose(generated, limit)[: max(limit, 0)]
        for i, tok in enumerate(draft):
            done = text_of(generated + draft[: i + 1])
            if tok in eos or (done is not None and stop(done) is not None):
                return draft[:i]
        return draft

    with live.decoding() as (kv, logits):
        prompt_len = len(kv)
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
            done = text_of(generated)
            if done is not None:
                text = done
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
            if len(generated) == max_tokens:  # no pass for a token nobody will read
                break
            if ahead and ahead[0][0] == tok:  # the guess was right: its logits are already computed
                logits = ahead.pop(0)[1]
                accepted += 1
                continue
            if drafter is not None and drafted:
                drafter.feedback(drafted, accepted)
            kv.crop(prompt_len + len(generated) - 1)  # drop the wrong guesses
            draft = guess(max_tokens - len(generated) - 1) if drafting else []
            pass_sizes.append(1 + len(draft))
            if draft:
                rows = kv.encode_scored([tok, *draft])
                logits, ahead = rows[0], list(zip(draft, rows[1:], strict=True))
            else:
                rows = kv.encode([tok], logits="last")[None]
                logits, ahead = rows[0], []
            if drafting:
                drafter.observe([tok, *draft], rows.argmax(-1).tolist())
            drafted, accepted = len(draft), 0
        if drafter is not None and drafted:  # how the last draft fared
            drafter.feedback(drafted, accepted)
    return Completion(text, generated, first, time.perf_counter() - t0, reason, tuple(pass_sizes))
