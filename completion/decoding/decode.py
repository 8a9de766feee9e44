"""The decoding loop over a LiveDocument's cache, with logits processors and stop rules.

A processor is a callable `(generated_ids, logits) -> logits` that returns new logits
(never edits them in place); processors compose in a `ProcessorList`, like transformers'
logits processors. Decoded tokens go into the gap of the document's cache at the decode point
(`LiveDocument.decoding`), so a completion leaves the document's cache as it found it.
What every decoding method starts from (the deadline, token healing, the processor chain, the
end-of-sequence ids) is `Setup`; the multi-draft methods (branches, beam, superposed) use it too.
A processor that ranks whole continuations by the model (the name monitor, over the names jedi lists)
gets a `TreeSearch` from the greedy loop: paths grown as a tree in the cache, a pass per layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from completion.decoding.stops import StopRule, stop_at_newline
from completion.drafting.drafter import Drafter
from completion.live.document import LiveDocument
from completion.live.kvcache import KVCache
from completion.model.vocab import Vocabulary

Processor = Callable[[list[int], torch.Tensor], torch.Tensor]
# (generated) -> a search over token paths after them, on the decoder's cache at that step
TreeSearchFactory = Callable[[list[int]], "TreeSearch"]


@runtime_checkable
class UsesTreeSearch(Protocol):
    """A processor that can rank continuations by the model when the decoding loop lends it a tree search."""

    def use_search(self, search: TreeSearchFactory | None) -> None: ...


class ProcessorList:
    """Processors applied in order, each to the previous one's output; itself a Processor."""

    def __init__(self, processors: Iterable[Processor]) -> None:
        self.processors = tuple(processors)

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        for p in self.processors:
            logits = p(generated, logits)
        return logits

    def use_search(self, search: TreeSearchFactory | None) -> None:
        """Lend `search` to the processors that take one (None takes it back)."""
        for p in self.processors:
            if isinstance(p, UsesTreeSearch):
                p.use_search(search)


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

    def text(self, generated: list[int]) -> str | None:
        """The suggestion's text for these ids, or None while they have not re-created the healed text."""
        if self.remaining(generated):
            return None
        return self.vocab.decode(generated)[len(self.heal) :].decode("utf-8", errors="replace")

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


class Deadline:
    """When a decode ends early: the caller cancelled (`should_stop`, polled between steps) or the
    time budget ran out. The clock starts when the deadline is made."""

    def __init__(self, time_budget: float | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        self.start = time.perf_counter()
        self.time_budget = time_budget
        self.should_stop = should_stop

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float | None:
        """Seconds left of the budget (None without one)."""
        return None if self.time_budget is None else max(0.0, self.time_budget - self.elapsed())

    def cancelled(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def expired(self) -> bool:
        return self.time_budget is not None and self.elapsed() > self.time_budget

    def ended(self) -> str | None:
        """Why the decode must end now ("cancelled" or "time"), or None."""
        return "cancelled" if self.cancelled() else "time" if self.expired() else None


@dataclass(frozen=True)
class Setup:
    """What every decoding method starts from."""

    deadline: Deadline
    healing: TokenHealing
    chain: ProcessorList  # token healing first, then the caller's processors
    eos: frozenset[int]  # tokens that end the sequence (all the tokenizer's special tokens)


def setup(live: LiveDocument, vocab: Vocabulary, processors: Sequence[Processor], deadline: Deadline) -> Setup:
    healing = TokenHealing(vocab, live.heal)
    eos = frozenset(live.engine.tokenizer.all_special_ids)
    return Setup(deadline, healing, ProcessorList([healing, *processors]), eos)


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


def decode_one(kv: KVCache, tok: int) -> torch.Tensor:
    """One pass for one token at the end of the cache: the logits after it, (vocab,)."""
    logits = kv.encode([tok], logits="last")
    assert logits is not None
    return logits


def feed(kv: KVCache, tok: int, draft: list[int]) -> torch.Tensor:
    """One pass for the chosen token and a guess of the tokens after it: the logits after each,
    (1 + len(draft), vocab). Without a guess only the last logits are computed."""
    return kv.encode_scored([tok, *draft]) if draft else decode_one(kv, tok)[None]


class TreeSearch:
    """Token paths after the decoded tokens, grown as a tree in the cache a few nodes per pass: a node
    sees the prompt, the decoded tokens and its own ancestors (not the drafted tokens ahead, nor other
    branches), at the position its token would have. `close` crops the tree off the cache."""

    def __init__(self, kv: KVCache, prompt_len: int, generated: list[int]) -> None:
        self.kv = kv
        self.base = len(kv)  # the tree goes after every entry there is (drafted tokens ahead included)
        self.seen = prompt_len + len(generated)  # entries every node sees
        self.slots: dict[tuple[int, ...], list[int]] = {(): []}  # a fed path -> its tokens' cache slots

    def feed(self, paths: Sequence[tuple[int, ...]]) -> torch.Tensor:
        """One pass for the last token of each path (its parent fed already, or the root): the
        log-probabilities after each, (len(paths), vocab)."""
        start = len(self.kv)
        visible = torch.zeros(len(paths), start + len(paths), dtype=torch.bool)
        visible[:, : self.seen] = True
        for row, path in enumerate(paths):
            own = [*self.slots[path[:-1]], start + row]
            visible[row, own] = True
            self.slots[path] = own
        logits = self.kv.encode_tree([p[-1] for p in paths], [self.seen + len(p) - 1 for p in paths], visible)
        return torch.log_softmax(logits.float(), dim=-1)

    def close(self) -> None:
        self.kv.crop(self.base)
        self.slots = {(): []}


def ends(s: Setup, stop: StopRule, ids: list[int]) -> bool:
    """Whether decoding ends after `ids`: at an end-of-sequence token, or where the stop rule fires."""
    if ids[-1] in s.eos:
        return True
    text = s.healing.text(ids)
    return text is not None and stop(text) is not None


def guess(drafter: Drafter, generated: list[int], limit: int, done: Callable[[list[int]], bool]) -> list[int]:
    """The drafter's guess of the next tokens, cut before the token after which decoding would end
    (`done`): the loop never reads the logits after it."""
    draft = drafter.propose(generated, limit)[: max(limit, 0)]
    return next((draft[:i] for i in range(len(draft)) if done(generated + draft[: i + 1])), draft)


class Lookahead:
    """The forward passes after the prompt's, and the drafted tokens they fed ahead of the chosen ones.

    With a drafter (greedy only), each pass feeds the chosen token plus a guess of the tokens after
    it, and keeps the logits after every guessed token. A guess counts only if the loop, running the
    processors on exactly the prefix greedy decoding would have, picks that same token; the first
    miss crops the rest off the cache. So the output is greedy's, in fewer passes.
    """

    def __init__(
        self, kv: KVCache, drafter: Drafter | None, max_tokens: int, done: Callable[[list[int]], bool]
    ) -> None:
        self.kv, self.drafter, self.max_tokens, self.done = kv, drafter, max_tokens, done
        self.prompt_len = len(kv)
        self.ahead: list[tuple[int, torch.Tensor]] = []  # guessed tokens in the cache, each with the logits after it
        self.drafted = self.accepted = 0  # the last draft's length, and how many of it the loop chose
        self.pass_sizes: list[int] = []

    def next_logits(self, generated: list[int]) -> torch.Tensor:
        """The logits after `generated`: already computed if its last token was guessed, else a new pass."""
        tok = generated[-1]
        if self.ahead and self.ahead[0][0] == tok:
            self.accepted += 1
            return self.ahead.pop(0)[1]
        self.report()
        self.kv.crop(self.prompt_len + len(generated) - 1)  # drop the wrong guesses
        draft: list[int] = []
        if self.drafter is not None:
            draft = guess(self.drafter, generated, self.max_tokens - len(generated) - 1, self.done)
        rows = feed(self.kv, tok, draft)
        self.pass_sizes.append(len(rows))
        if self.drafter is not None:
            self.drafter.observe([tok, *draft], rows.argmax(-1).tolist())
        self.ahead = list(zip(draft, rows[1:], strict=True))
        self.drafted, self.accepted = len(draft), 0
        return rows[0]

    def report(self) -> None:
        """Tell the drafter how its last draft fared."""
        if self.drafter is not None and self.drafted:
            self.drafter.feedback(self.drafted, self.accepted)


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
    A `drafter` makes greedy decoding take fewer passes (`Lookahead`); sampling never drafts."""
    s = setup(live, vocab, processors, Deadline(time_budget, should_stop))
    generator = torch.Generator().manual_seed(sampling.seed)
    drafter = drafter if sampling.temperature == 0 else None
    if drafter is not None:
        drafter.begin(live.prompt)
    generated: list[int] = []
    text, reason, first = "", "max_tokens", 0.0
    with live.decoding() as (kv, logits):
        lookahead = Lookahead(kv, drafter, max_tokens, lambda ids: ends(s, stop, ids))
        prompt_len = len(kv)
        s.chain.use_search(lambda generated: TreeSearch(kv, prompt_len, generated))
        for _ in range(max_tokens):
            tok = sampling.pick(s.chain(generated, logits), generator)
            if not generated:
                first = s.deadline.elapsed()
            if tok in s.eos:
                reason = "eos"
                break
            generated.append(tok)
            done = s.healing.text(generated)
            cut = None if done is None else stop(done)
            text = text if done is None else done[:cut]
            if cut is not None:
                reason = "rule"
                break
            if ended := s.deadline.ended():
                reason = ended
                break
            if len(generated) == max_tokens:  # no pass for a token nobody will read
                break
            logits = lookahead.next_logits(generated)
        s.chain.use_search(None)  # the cache view ends here
        lookahead.report()  # how the last draft fared
    return Completion(text, generated, first, s.deadline.elapsed(), reason, tuple(lookahead.pass_sizes))
