"""Sampling.pick on a 16-token fake vocabulary, and seeded sampling through decode (tiny model)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from completion.decoding.decode import GREEDY, Sampling, decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary

LOGITS = torch.tensor([0.5, 1.0, -2.0, 3.0, 2.9, 0.0, -1.0, 2.5, 0.1, 0.2, -0.5, 1.5, 2.0, -3.0, 0.3, 0.4])
ARGMAX = 3


def draws(sampling: Sampling, logits: torch.Tensor, n: int, seed: int | None = None) -> list[int]:
    generator = torch.Generator().manual_seed(sampling.seed if seed is None else seed)
    return [sampling.pick(logits, generator) for _ in range(n)]


def test_temperature_zero_is_argmax_whatever_the_seed_or_top_p() -> None:
    for sampling in (GREEDY, Sampling(seed=7), Sampling(top_p=0.5, seed=3)):
        assert set(draws(sampling, LOGITS, 20)) == {ARGMAX}
    assert GREEDY.temperature == 0


def test_same_seed_gives_the_same_tokens() -> None:
    sampling = Sampling(temperature=1.5, seed=42)
    first = draws(sampling, LOGITS, 50)
    assert draws(sampling, LOGITS, 50) == first
    assert len(set(first)) > 1  # it does sample: a high temperature spreads over several tokens
    assert draws(sampling, LOGITS, 50, seed=43) != first


def test_tiny_top_p_keeps_only_the_argmax() -> None:
    sampling = Sampling(temperature=2.0, top_p=1e-6, seed=0)
    assert set(draws(sampling, LOGITS, 50)) == {ARGMAX}


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    probs = torch.softmax(LOGITS, dim=-1)
    top2 = float(probs[3] + probs[4])  # tokens 3 and 4 are the two most likely
    sampling = Sampling(temperature=1.0, top_p=top2 - 1e-3, seed=0)
    assert set(draws(sampling, LOGITS, 200)) == {3, 4}


def test_pick_leaves_the_logits_unchanged() -> None:
    logits = LOGITS.clone()
    draws(Sampling(temperature=0.7, top_p=0.9, seed=1), logits, 5)
    assert torch.equal(logits, LOGITS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": -1.0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
    ],
)
def test_bad_sampling_values_raise_value_error(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sampling(**kwargs)


def test_seeded_sampling_through_decode_is_reproducible(
    tiny_engine: Callable[[str], Engine], tokenizer: PreTrainedTokenizerBase
) -> None:
    vocab = Vocabulary(tokenizer, len(tokenizer))
    live = LiveDocument(tiny_engine("llama"), "def add(a, b):\n    return a", fim=False)

    def never(text: str) -> int | None:
        return None

    sampled = [decode(live, vocab, max_tokens=8, stop=never, sampling=Sampling(1.0, seed=s)).tokens for s in (5, 5, 6)]
    assert sampled[0] == sampled[1]
    assert sampled[0] != sampled[2]
    greedy = decode(live, vocab, max_tokens=8, stop=never).tokens
    assert decode(live, vocab, max_tokens=8, stop=never, sampling=Sampling(0.0, seed=99)).tokens == greedy
