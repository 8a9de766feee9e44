"""The plain-tensor runner against the Hugging Face forward, and the KV buffer it writes in place."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.models.mistral import MistralConfig
from transformers.models.qwen3 import Qwen3Config

from completion.live.kvcache import KVCache
from completion.model.rope import rotary_params
from completion.model.runner import Runner
from tests.conftest import TINY, tiny_model

VOCAB = 300
torch.manual_seed(0)
IDS = torch.randint(0, VOCAB, (70,)).tolist()


def hf_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0]


def random_model(config: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


MODELS = {
    "llama": lambda: tiny_model("llama", VOCAB),
    "llama3": lambda: tiny_model("llama3", VOCAB),
    "llama-linear": lambda: tiny_model("llama-linear", VOCAB),
    "qwen2": lambda: tiny_model("qwen2", VOCAB),  # q/k/v biases
    "qwen3": lambda: random_model(Qwen3Config(vocab_size=VOCAB, head_dim=16, **TINY)),  # per-head q/k norms
    "mistral-window": lambda: random_model(MistralConfig(vocab_size=VOCAB, sliding_window=16, **TINY)),
}


@pytest.mark.parametrize("kind", list(MODELS))
def test_runner_logits_equal_transformers_prefill_and_step_by_step(kind: str) -> None:
    model = MODELS[kind]()
    ref = hf_logits(model, IDS)
    kv = KVCache(Runner(model))
    # uneven chunks: a prefill, single steps, a multi-token pass on top of a cache
    got = [kv.encode_scored(IDS[:30])]
    got += [kv.encode_scored([t]) for t in IDS[30:37]]
    got += [kv.encode_scored(IDS[37:])]
    assert len(kv) == len(IDS) and kv.capacity >= len(IDS)
    assert (torch.cat(got) - ref).abs().max().item() <= 1e-4


def test_tree_pass_equals_each_branch_run_alone() -> None:
    model = tiny_model("llama", VOCAB)
    runner = Runner(model)
    kv = KVCache(runner)
    kv.encode(IDS[:40])
    # two branches of two tokens after the prompt: [a1, a2] and [b1, b2]
    a, b = IDS[40:42], IDS[42:44]
    visible = torch.zeros(4, 44, dtype=torch.bool)
    visible[:, :40] = True
    visible[0, 40] = visible[1, 40:42] = True
    visible[2, 42] = visible[3, 42:44] = True
    tree = kv.encode_tree(a + b, [40, 41, 40, 41], visible)
    ref_a, ref_b = hf_logits(model, IDS[:40] + a)[40:], hf_logits(model, IDS[:40] + b)[40:]
    assert (tree - torch.cat([ref_a, ref_b])).abs().max().item() <= 1e-4


def test_encoding_in_place_rewrites_only_its_slots() -> None:
    kv = KVCache(Runner(tiny_model("llama", VOCAB)))
    kv.encode(IDS[:50])
    keys = kv.keys[:, :, :50].clone()
    kv.encode(IDS[10:20], at=10)  # the same tokens again: same KV, nothing after slot 20 touched
    assert len(kv) == 50
    assert (kv.keys[:, :, :50] - keys).abs().max().item() <= 1e-5
    assert torch.equal(kv.keys[:, :, 20:50], keys[:, :, 20:])


@pytest.mark.parametrize("shift", [-7, 5, 40])
def test_move_rotates_keys_to_their_new_positions(shift: int) -> None:
    """Moving slots [20, 50) by `shift` (overlapping itself) equals encoding them there, in layer 0."""
    model = tiny_model("llama", VOCAB)
    runner, rope = Runner(model), rotary_params(model)
    kv = KVCache(runner, rope=rope)
    kv.encode(IDS[:50])
    values = kv.values[:, :, 20:50].clone()
    kv.move([(20, 50, shift)], 50 + shift)
    assert len(kv) == 50 + shift
    assert torch.equal(kv.values[:, :, 20 + shift : 50 + shift], values)
    # layer-0 keys depend on the token and its position only
    ref = KVCache(runner)
    ref.encode([0] * (20 + shift) + IDS[20:50])
    got, want = kv.keys[0, :, 20 + shift : 50 + shift], ref.keys[0, :, 20 + shift : 50 + shift]
    assert (got - want).abs().max().item() <= 1e-4


def test_buffer_grows_in_steps_and_copies_keep_their_contents() -> None:
    kv = KVCache(Runner(tiny_model("llama", VOCAB)))
    assert kv.nbytes == 0
    kv.encode(IDS[:10])
    first = kv.capacity
    kv.encode(IDS[10:])
    assert kv.capacity == first  # 70 slots still fit the first allocation
    snapshot = kv.keys[:, :, :70].clone()
    kv.reserve(first + 1)
    assert kv.capacity >= first + first // 4
    assert torch.equal(kv.keys[:, :, :70], snapshot)  # growing kept every slot
    other = kv.copy()
    kv.crop(5)
    kv.encode(IDS[:3])  # overwrites slots 5..7 of kv only
    assert len(other) == 70 and torch.equal(other.keys[:, :, :70], snapshot)
    assert not torch.equal(kv.keys[:, :, 5:8], snapshot[:, :, 5:8])


def test_a_buffer_grown_while_decoding_can_be_patched_after_it() -> None:
    """Decoding runs under inference mode; a buffer it grew must still take an edit's in-place move
    (an inference tensor refuses in-place updates outside inference mode: found by the soak run)."""
    kv = KVCache(Runner(tiny_model("llama", VOCAB)))
    with torch.inference_mode():
        kv.encode(IDS[:10])
        kv.reserve(kv.capacity + 1)
    kv.move([(2, 10, 3)], 13)
    kv.encode(IDS[:3], at=2)
    assert len(kv) == 13


@pytest.mark.parametrize("weight_format", ["int8", "int4-wo"])
def test_cpu_only_formats_are_refused_on_a_gpu_before_anything_is_built(weight_format: str) -> None:
    with pytest.raises(ValueError, match="CPU kernels only"):
        Runner(tiny_model("llama", VOCAB), weight_format, "cuda")


def test_gap_moves_and_lagging_keys_equal_an_eager_cache() -> None:
    """Splices at the gap leave the keys after it lagging; moving the gap across them (both ways) and
    closing it gives the keys and values of a cache moved and rotated at once, to float tolerance."""
    model = tiny_model("llama", VOCAB)
    runner, rope = Runner(model), rotary_params(model)
    gap, eager = KVCache(runner, rope=rope), KVCache(runner, rope=rope)
    gap.encode(IDS[:60])
    eager.encode(IDS[:60])
    steps = [(40, 42, 5), (44, 44, 3), (10, 20, 0), (30, 31, 1), (55, 55, 2)]  # (start, end, new) each
    for start, end, new in steps:
        gap.splice(start, end, new)
        gap.encode(IDS[:new], at=start) if new else None
        n = len(eager)
        eager.move([(end, n, new - (end - start))], n + new - (end - start))
        eager.encode(IDS[:new], at=start) if new else None
        assert len(gap) == len(eager)
    gap.gap_to(5)  # everything after slot 5 now lags
    (gk, gv), (ek, ev) = gap.dense(), eager.dense()
    assert (gk - ek).abs().max().item() <= 1e-4 and (gv - ev).abs().max().item() <= 1e-4


def test_a_prompt_view_writes_into_the_gap_only() -> None:
    kv = KVCache(Runner(tiny_model("llama", VOCAB)))
    kv.encode(IDS[:50])
    keys, values = (t.clone() for t in kv.dense())
    view = kv.prompt_view(20)
    assert len(view) == 20
    view.encode(IDS[50:60])
    view.encode_scored(IDS[60:64])
    assert len(kv) == 50
    after_keys, after_values = kv.dense()
    assert torch.equal(after_keys, keys) and torch.equal(after_values, values)
