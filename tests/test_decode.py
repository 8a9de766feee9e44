"""Vocabulary index, token healing and the greedy loop (tiny model; one embedded-model check)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from completion.decoding.decode import TokenHealing, decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.loading import LoadedModel
from completion.model.vocab import Vocabulary

CODE = "def add(a, b):\n    total = a + b\n    return total\n\n\ndef main():\n    print(add(1, 2))\n"


@pytest.mark.parametrize("prefix", [b"\n", b"ret", b" self", b"\xc3", b"\n    ", b"zzzzqq"])
def test_starting_with_equals_a_scan_of_the_vocabulary(vocab: Vocabulary, prefix: bytes) -> None:
    expected = {i for i, p in enumerate(vocab.pieces) if p and p.startswith(prefix)}
    assert set(vocab.starting_with(prefix).tolist()) == expected


def test_pieces_round_trip_real_text(vocab: Vocabulary, tokenizer: PreTrainedTokenizerBase) -> None:
    text = "x = 'é😀'\r\n\tif y:\n        return 中文"
    assert vocab.decode(tokenizer(text, add_special_tokens=False).input_ids).decode() == text


def test_healing_allows_only_tokens_that_recreate_the_text(vocab: Vocabulary) -> None:
    heal = TokenHealing(vocab, "ret")
    out = heal([], torch.zeros(vocab.size))
    allowed = torch.isfinite(out).nonzero().flatten().tolist()
    assert allowed and all(vocab.pieces[i].startswith(b"ret") or b"ret".startswith(vocab.pieces[i]) for i in allowed)
    r = vocab.equal_to(b"r")[0]
    assert heal.remaining([r]) == b"et"  # a shorter token leaves the rest to heal next
    done = [vocab.equal_to(b"return")[0]]
    assert heal.remaining(done) == b""
    logits = torch.randn(vocab.size)
    assert heal(done, logits) is logits  # healed: no constraint, scores untouched


def test_decode_leaves_the_cache_as_it_found_it(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> None:
    live = LiveDocument(tiny_engine("llama"), CODE, cursor=CODE.index("total\n") + 3, fim=False)
    tokens, keys = list(live.tokens), live.kv.dense()[0].clone()
    out = decode(live, vocab, max_tokens=8)
    assert out.tokens and vocab.decode(out.tokens).startswith(live.heal.encode())
    assert live.tokens == tokens and len(live.kv) == len(tokens)
    assert torch.equal(live.kv.dense()[0], keys)


@pytest.mark.integration
def test_embedded_model_heals_mid_identifier_and_completes(embedded: LoadedModel) -> None:
    engine = Engine.from_loaded(embedded)
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    text = CODE.replace("    return total\n", "    ret\n")
    live = LiveDocument(engine, text, cursor=text.index("ret\n") + 3)
    out = decode(live, vocab)
    assert live.heal == " ret"  # the whole token before the cursor, its leading space included
    assert out.text.startswith("urn"), out.text  # "ret" + "urn ..." = "return ..."
