"""Rotating cached keys by d must equal encoding at positions shifted by d (exactness test (a))."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.models.gpt2 import GPT2Config
from transformers.models.llama import LlamaConfig
from transformers.models.mistral import MistralConfig

from completion.model.rope import PieUnsupported, RotaryParams, rotary_params, rotate_keys
from tests.conftest import TINY, tiny_model

VOCAB = 500


def keys_at(model: torch.nn.Module, ids: torch.Tensor, start: int) -> list[torch.Tensor]:
    cache = DynamicCache(config=model.config)
    pos = torch.arange(start, start + ids.shape[1])
    with torch.inference_mode():
        model(input_ids=ids, position_ids=pos[None], cache_position=pos, past_key_values=cache, use_cache=True)
    return [layer.keys for layer in cache.layers]


@pytest.mark.parametrize("kind", ["llama", "llama-linear", "llama3", "qwen2"])
@pytest.mark.parametrize("delta", [1, 37, 700, -20])
def test_rotated_keys_equal_keys_encoded_at_shifted_positions(kind: str, delta: int) -> None:
    model = tiny_model(kind, VOCAB)
    rope = rotary_params(model)
    ids = torch.randint(0, VOCAB, (1, 48), generator=torch.Generator().manual_seed(1))
    base = 100
    moved = keys_at(model, ids, base)
    direct = keys_at(model, ids, base + delta)
    for k_moved, k_direct in zip(moved, direct, strict=True):
        rotated = rotate_keys(k_moved, delta, rope)
        assert (rotated - k_direct).abs().max().item() <= 1e-4
        # The check has teeth: unrotated keys are far off.
        assert (k_moved - k_direct).abs().max().item() > 1e-2


def test_rotation_composes_and_leaves_non_rotary_dims_alone() -> None:
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8))
    rope = RotaryParams(inv_freq=inv_freq, rotary_dim=8)  # head_dim 16: partial rotary
    keys = torch.randn(1, 2, 5, 16)
    twice = rotate_keys(rotate_keys(keys, 300, rope), -120, rope)
    once = rotate_keys(keys, 180, rope)
    assert torch.allclose(twice, once, atol=1e-5)
    assert torch.equal(once[..., 8:], keys[..., 8:])
    assert torch.allclose(rotate_keys(once, -180, rope), keys, atol=1e-5)
    assert rotate_keys(keys, 0, rope) is keys


def test_bf16_keys_rotate_in_float32_and_keep_dtype() -> None:
    model = tiny_model("llama", VOCAB)
    keys = torch.randn(1, 2, 4, 16).to(torch.bfloat16)
    out = rotate_keys(keys, 5, rotary_params(model))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            LlamaConfig(
                vocab_size=VOCAB, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}, **TINY
            ),
            "depends on sequence length",
        ),
        (MistralConfig(vocab_size=VOCAB, sliding_window=64, **TINY), "sliding-window"),
        (GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=1, n_head=4), "not a supported RoPE"),
    ],
)
def test_models_pie_cannot_patch_are_refused_with_a_reason(config: object, reason: str) -> None:
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(PieUnsupported, match=reason):
        rotary_params(model)
