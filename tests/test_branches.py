"""Side-by-side branches must equal decoding each branch on its own (tiny model, exact)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from completion.decoding.branches import DraftArgs, decode_branches
from completion.decoding.decode import decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary

CODE = "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.it"


def never(text: str) -> int | None:
    return None


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_each_branch_equals_its_own_greedy_decode(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary, kind: str
) -> None:
    live = LiveDocument(tiny_engine(kind), CODE, fim=False)
    tokens, n = list(live.tokens), len(live.kv)
    branches = decode_branches(live, vocab, DraftArgs(width=4, max_tokens=6, stop=never))
    assert len(branches) == 4 and live.tokens == tokens and len(live.kv) == n
    assert [b.logprob for b in branches] == sorted((b.logprob for b in branches), reverse=True)
    for b in branches:

        def force_first(generated: list[int], logits: torch.Tensor, first: int = b.tokens[0]) -> torch.Tensor:
            if generated:
                return logits
            only = torch.full_like(logits, float("-inf"))
            only[first] = logits[first]
            return only

        alone = decode(live, vocab, max_tokens=6, processors=[force_first], stop=never)
        assert alone.tokens == b.tokens
        assert alone.text == b.text


def test_branches_stop_on_their_own_rule(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> None:
    live = LiveDocument(tiny_engine("llama"), CODE, fim=False)
    branches = decode_branches(live, vocab, DraftArgs(width=3, max_tokens=8, stop=lambda t: 2 if len(t) >= 2 else None))
    assert all(len(b.text) <= 2 for b in branches)
    assert decode_branches(live, vocab, DraftArgs(width=3, max_tokens=8, stop=never, should_stop=lambda: True)) == []
