"""LiveDocument exactness (issue tests (b), (c)), layout invariants under random edits, bad input."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerBase

from completion.live.document import (
    LiveDocument,
    TextEdit,
    UpdatePolicy,
    diff_splice,
    fresh_layout,
    map_cursor,
    tree_fresh,
)
from completion.live.kvcache import KVCache
from completion.live.layout import FIM_TEMPLATES
from completion.live.store import DocumentStore
from completion.model.checkpoint import RunnerUnsupported
from completion.model.engine import Engine
from tests.conftest import TINY, tiny_model

SOURCE = '''import os


class Inventory:
    """Items on the shelf."""

    def __init__(self, items):
        self.items = list(items)
        self.count = len(self.items)

    def add(self, item, quantity=1):
        for _ in range(quantity):
            self.items.append(item)
        self.count += quantity
        return self.count

    def names(self):
        return sorted({item.name for item in self.items})


def load(path):
    with open(path, encoding="utf-8") as f:
        return Inventory(line.strip() for line in f)
'''

EDIT_AT = SOURCE.index("        self.count += quantity")
ONE_LINE_EDIT = TextEdit(EDIT_AT, EDIT_AT, "        total = quantity * 2  # restock\n")


def layers(kv: KVCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A snapshot of every layer's keys and values (the buffer itself is written in place)."""
    keys, values = kv.dense()
    return [(keys[i].clone(), values[i].clone()) for i in range(keys.shape[0])]


def full_encode(engine: Engine, tokens: list[int]) -> KVCache:
    kv = KVCache(engine.runner)
    kv.encode(tokens)
    return kv


def max_diff(a: KVCache, b: KVCache, start: int, end: int) -> float:
    (a_keys, a_values), (b_keys, b_values) = a.dense(), b.dense()
    keys = (a_keys[:, :, start:end] - b_keys[:, :, start:end]).abs().max().item()
    values = (a_values[:, :, start:end] - b_values[:, :, start:end]).abs().max().item()
    return max(keys, values)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "llama3"])
def test_pie_matches_full_reencode_where_it_must(tiny_engine: Callable[[str], Engine], kind: str) -> None:
    engine = tiny_engine(kind)
    live = LiveDocument(engine, SOURCE, fim=False)
    before, old_tokens = layers(live.kv), list(live.tokens)
    stats = live.apply_edits([ONE_LINE_EDIT])
    after_text = SOURCE[:EDIT_AT] + ONE_LINE_EDIT.text + SOURCE[EDIT_AT:]
    ref = LiveDocument(engine, after_text, fim=False)  # encoded from scratch: exact
    assert live.tokens == ref.tokens
    splice = diff_splice(old_tokens, live.tokens)
    assert splice is not None
    first_change, m = splice.start, stats.encoded
    assert 0 < m < 30 and stats.reused > 100
    # (b) the unchanged prefix is bit-identical: PIE never recomputes it.
    for (k_old, v_old), (k_new, v_new) in zip(before, layers(live.kv), strict=True):
        assert torch.equal(k_old[..., :first_change, :], k_new[..., :first_change, :])
        assert torch.equal(v_old[..., :first_change, :], v_new[..., :first_change, :])
    assert torch.equal(layers(live.kv)[0][0][..., :first_change, :], layers(ref.kv)[0][0][..., :first_change, :])
    # The new tokens' KV equals a full re-encode's.
    assert max_diff(live.kv, ref.kv, first_change, first_change + m) <= 1e-5
    # Layer 0 keys depend only on token and position, so rotated suffix keys must match there.
    k_live, k_ref = layers(live.kv)[0][0], layers(ref.kv)[0][0]
    assert (k_live - k_ref).abs().max().item() <= 1e-4
    assert live.stale > 0
    # refresh() makes the whole cache equal a full re-encode; (c) so are the logits.
    assert live.refresh() > 0 and live.stale == 0
    assert max_diff(live.kv, ref.kv, 0, len(ref.tokens)) <= 1e-4
    assert (live.prompt_logits() - ref.prompt_logits()).abs().max().item() <= 1e-4


def test_no_rotation_baseline_is_detectably_wrong(tiny_engine: Callable[[str], Engine]) -> None:
    engine = tiny_engine("llama")
    live = LiveDocument(engine, SOURCE, fim=False, policy=UpdatePolicy.NO_ROTATION)
    live.apply_edits([ONE_LINE_EDIT])
    ref = full_encode(engine, live.tokens)
    assert (layers(live.kv)[0][0] - layers(ref)[0][0]).abs().max().item() > 1e-2


@pytest.mark.parametrize("policy", list(UpdatePolicy))
def test_every_policy_keeps_tokens_and_cache_length_in_step(
    tiny_engine: Callable[[str], Engine], policy: UpdatePolicy
) -> None:
    live = LiveDocument(tiny_engine("llama"), SOURCE, fim=False, policy=policy)
    live.apply_edits([TextEdit(10, 12, ""), ONE_LINE_EDIT, TextEdit(len(SOURCE) - 5, len(SOURCE), "x)\n")])
    assert live.prepare()  # the baselines do their work here, when a request comes
    assert len(live.kv) == len(live.tokens) and live.tokens == fresh_layout(live)
    if live.defers:
        assert live.stale == 0


def test_deletion_needs_no_forward_pass(tiny_engine: Callable[[str], Engine]) -> None:
    live = LiveDocument(tiny_engine("llama"), SOURCE, fim=False)
    start = SOURCE.index("    def names")
    end = SOURCE.index("\n\n\ndef load")
    stats = live.apply_edits([TextEdit(start - 1, end, "")], cursor=len(SOURCE) - (end - start + 1))
    assert stats.encoded <= 2  # the token under the cursor may re-split; nothing else is encoded


def test_bad_edits_raise_and_change_nothing(tiny_engine: Callable[[str], Engine]) -> None:
    live = LiveDocument(tiny_engine("llama"), SOURCE, fim=False)
    text, tokens, kv_len, keys = live.text, list(live.tokens), len(live.kv), live.kv.dense()[0].clone()
    bad = [
        ([TextEdit(5, 3, "x")], None),
        ([TextEdit(0, len(SOURCE) + 1, "")], None),
        ([TextEdit(-1, 0, "x")], None),
        ([TextEdit(10, 20, "a"), TextEdit(15, 25, "b")], None),
        ([TextEdit(30, 30, "a"), TextEdit(10, 10, "b")], None),
        ([TextEdit(0, 0, "x")], len(SOURCE) + 5),
    ]
    for edits, cursor in bad:
        with pytest.raises(ValueError):
            live.apply_edits(edits, cursor)
        assert live.text == text and live.tokens == tokens and len(live.kv) == kv_len
        assert torch.equal(live.kv.dense()[0], keys)


def test_map_cursor_follows_typing_and_shifts() -> None:
    assert map_cursor(10, [TextEdit(10, 10, "abc")]) == 13  # typed at the caret
    assert map_cursor(10, [TextEdit(2, 4, "")]) == 8  # deletion before
    assert map_cursor(10, [TextEdit(12, 14, "zz")]) == 10  # after the caret
    assert map_cursor(10, [TextEdit(8, 12, "q")]) == 9  # caret inside replaced text


@pytest.fixture(scope="module")
def fim_engine(tokenizer: PreTrainedTokenizerBase) -> Engine:
    """The embedded tokenizer plus StarCoder FIM markers, on a tiny model (the FIM layout)."""
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]})
    return Engine.from_model(tiny_model("llama", len(tok)), tok)


FRAGMENTS = ["x", "self.", "    ", "\n", "\r\n", "\t", "é", "😀", "def f(a, b):\n    return a\n", "# 注释\n", "", "()"]
edit_ops = st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 12), st.sampled_from(FRAGMENTS), st.floats(0, 1)),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("use_fim", [False, True])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=edit_ops, window=st.sampled_from([64, 4096]))
def test_cache_tokens_equal_layout_of_fresh_tokenization(
    tiny_engine: Callable[[str], Engine], fim_engine: Engine, use_fim: bool, ops: list, window: int
) -> None:
    engine = fim_engine if use_fim else tiny_engine("llama")
    live = LiveDocument(engine, SOURCE, cursor=EDIT_AT, window=window, suffix_tokens=16)
    for where, length, text, caret in ops:
        start = int(where * len(live.text))
        end = min(len(live.text), start + length)
        if caret < 0.3:  # sometimes the cursor jumps elsewhere, like a click
            live.move_cursor(int(caret / 0.3 * len(live.text)))
        live.apply_edits([TextEdit(start, end, text)])
        assert live.tokens == fresh_layout(live)
        assert tree_fresh(live)
        assert len(live.kv) == len(live.tokens) <= window
    live.refresh()
    assert max_diff(live.kv, full_encode(engine, live.tokens), 0, len(live.tokens)) <= 1e-4


def test_appending_at_the_end_with_the_caret_elsewhere_is_encoded(tiny_engine: Callable[[str], Engine]) -> None:
    """The splice lands just past the last encoded entry: a complete cache stays complete."""
    engine = tiny_engine("llama")
    live = LiveDocument(engine, SOURCE, cursor=EDIT_AT, window=4096, suffix_tokens=16)
    live.move_cursor(0)
    live.apply_edits([TextEdit(len(live.text), len(live.text), "x")])
    assert live.missing == 0 and len(live.kv) == len(live.tokens) == len(fresh_layout(live))
    assert max_diff(live.kv, full_encode(engine, live.tokens), 0, len(live.tokens)) <= 1e-4


def test_long_file_keeps_a_window_and_stays_exact_after_refresh(tiny_engine: Callable[[str], Engine]) -> None:
    engine = tiny_engine("llama")
    text = SOURCE * 6
    live = LiveDocument(engine, text, fim=False, window=256)
    assert live.layout.window_start > 0 and len(live.tokens) <= 256
    for _ in range(30):  # typing at the end pushes the window forward by rotation
        live.apply_edits([TextEdit(len(live.text), len(live.text), "value = 1\n")])
        assert len(live.tokens) <= 256 and live.tokens == fresh_layout(live)
    live.refresh()
    assert max_diff(live.kv, full_encode(engine, live.tokens), 0, len(live.tokens)) <= 1e-4


def test_context_segment_change_is_a_splice(tiny_engine: Callable[[str], Engine]) -> None:
    live = LiveDocument(tiny_engine("llama"), SOURCE, fim=False, context="# from utils.py\ndef helper(): pass\n")
    stats = live.set_context("# from utils.py\ndef helper(x): pass\n")
    assert 0 < stats.encoded < 10
    assert live.tokens == fresh_layout(live)


def test_store_evicts_least_recently_used_caches(tiny_engine: Callable[[str], Engine]) -> None:
    engine = tiny_engine("llama")
    one = LiveDocument(engine, SOURCE, fim=False).kv.nbytes
    store = DocumentStore(budget_bytes=int(2.5 * one))
    for name in "abc":
        store.add(name, LiveDocument(engine, SOURCE, fim=False))
    assert store.nbytes <= store.budget_bytes
    assert len(store.get("a").kv) == 0 or len(store.get("b").kv) == 0  # an older one was evicted
    doc = store.get("a")  # an evicted document grows its cache again: first what a request needs
    doc.move_cursor(len(doc.text) // 2)
    assert doc.prepare() and len(doc.kv) == doc.layout.decode_at < len(doc.tokens)
    doc.refresh()
    assert len(doc.kv) == len(doc.tokens) and doc.stale == 0
    with pytest.raises(KeyError, match="unknown document"):
        store.get("nope")


def test_rope_pie_cannot_patch_falls_back_to_exact_reencoding(tokenizer: PreTrainedTokenizerBase) -> None:
    from transformers import AutoModelForCausalLM
    from transformers.models.llama import LlamaConfig

    dynamic = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    config = LlamaConfig(vocab_size=len(tokenizer), rope_parameters=dynamic, **TINY)
    engine = Engine.from_model(AutoModelForCausalLM.from_config(config).eval(), tokenizer)
    assert engine.rope is None and "depends on sequence length" in (engine.pie_refusal or "")
    live = LiveDocument(engine, SOURCE, fim=False)
    assert live.policy is UpdatePolicy.PREFIX_REUSE
    live.apply_edits([ONE_LINE_EDIT])
    assert live.prepare() and live.stale == 0 and live.tokens == fresh_layout(live)


def test_architectures_the_runner_lacks_are_refused_by_name(tokenizer: PreTrainedTokenizerBase) -> None:
    from transformers import AutoModelForCausalLM
    from transformers.models.gpt2 import GPT2Config

    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(RunnerUnsupported, match="'gpt2' is not supported"):
        Engine.from_model(model.eval(), tokenizer)


def test_several_edits_use_a_running_delta(tiny_engine: Callable[[str], Engine]) -> None:
    """Three splices in one change: every shifted segment lands at its new position."""
    engine = tiny_engine("llama")
    live = LiveDocument(engine, SOURCE, fim=False)
    a, b = SOURCE.index("import os"), SOURCE.index("    def names")
    live.apply_edits(
        [TextEdit(a, a + 9, "import os, sys"), ONE_LINE_EDIT, TextEdit(b, b, "    # names\n")], cursor=len(SOURCE) - 1
    )
    ref = full_encode(engine, live.tokens)
    # Layer-0 keys depend only on token and position, so PIE's must match everywhere.
    assert (layers(live.kv)[0][0] - layers(ref)[0][0]).abs().max().item() <= 1e-4
    live.refresh()
    assert max_diff(live.kv, ref, 0, len(live.tokens)) <= 1e-4


def test_refresh_in_slices_converges_to_a_full_reencode(tiny_engine: Callable[[str], Engine]) -> None:
    engine = tiny_engine("qwen2")
    live = LiveDocument(engine, SOURCE, fim=False)
    live.apply_edits([TextEdit(0, 0, "import sys\n")])
    stale = live.stale
    assert stale > 100
    slices = 0
    while live.stale:
        assert live.refresh(max_tokens=40) <= 40
        slices += 1
    assert slices == -(-stale // 40)
    assert max_diff(live.kv, full_encode(engine, live.tokens), 0, len(live.tokens)) <= 1e-4
    assert live.refresh() == 0


@pytest.fixture(scope="module", params=[t.name for t in FIM_TEMPLATES])
def fim_template_engine(request: pytest.FixtureRequest, tokenizer: PreTrainedTokenizerBase) -> Engine:
    """A tiny model whose vocabulary has one FIM template's three markers."""
    template = next(t for t in FIM_TEMPLATES if t.name == request.param)
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": [template.prefix, template.suffix, template.middle]})
    engine = Engine.from_model(tiny_model("llama", len(tok)), tok)
    assert engine.fim is not None and engine.fim.template == template
    return engine


def test_fim_regions_follow_the_caret_by_moving_entries_not_re_encoding(fim_template_engine: Engine) -> None:
    """A caret move shifts tokens between the prefix and suffix regions: their entries move (rotated,
    stale) and only the suffix's new tail and the markers' neighbours are encoded; after a refresh the
    cache equals a full re-encode, for each of the four FIM templates."""
    live = LiveDocument(fim_template_engine, SOURCE, cursor=EDIT_AT, suffix_tokens=400)
    for offset in (EDIT_AT + 120, EDIT_AT - 200, EDIT_AT - 190, len(SOURCE) - 3):
        moved = abs(live.doc.token_index_at(offset) - live.doc.token_index_at(live.cursor))
        stats = live.move_cursor(offset)
        assert live.tokens == fresh_layout(live)
        assert stats.encoded <= moved + 2  # at most the suffix's new tail and <mid>; the regions are moved
        assert stats.reused >= len(live.tokens) - moved - 2
    assert live.stale > 0
    live.refresh()
    assert max_diff(live.kv, full_encode(fim_template_engine, live.tokens), 0, len(live.tokens)) <= 1e-4


def test_moving_the_caret_in_a_document_layout_encodes_nothing(tiny_engine: Callable[[str], Engine]) -> None:
    live = LiveDocument(tiny_engine("llama"), SOURCE, fim=False, cursor=len(SOURCE))
    keys = live.kv.dense()[0].clone()
    for offset in (10, EDIT_AT, len(SOURCE) // 2, len(SOURCE)):
        assert live.move_cursor(offset).encoded == 0
        assert live.prompt == fresh_layout(live)[: live.layout.decode_at] and live.tokens == fresh_layout(live)
    assert torch.equal(live.kv.dense()[0], keys)


def test_long_file_window_moves_by_relayout_and_a_far_jump_re_encodes(tiny_engine: Callable[[str], Engine]) -> None:
    """A window holds the caret; leaving it moves the window (entries kept, only new tokens encoded);
    a jump further than a window shares nothing, so everything is encoded."""
    text = SOURCE * 30  # about 3,000 tokens: either end is more than a window from the middle
    live = LiveDocument(tiny_engine("llama"), text, fim=False, window=512, cursor=len(text) // 2)
    w = live.layout.window_start
    small = live.move_cursor(live.doc.offsets[live.layout.window_end - 1] + 40)  # just past the window's end
    assert live.layout.window_start > w and 0 < small.encoded < 200 and small.reused > 300
    assert live.tokens == fresh_layout(live)
    far = live.move_cursor(len(text) if w > len(live.doc.ids) // 2 else 0)
    assert far.encoded >= len(live.tokens) - 1
    live.refresh()
    assert max_diff(live.kv, full_encode(live.engine, live.tokens), 0, len(live.tokens)) <= 1e-4
