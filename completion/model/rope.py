"""Rotate cached RoPE keys by a position delta: the arithmetic core of PIE.

Keys are cached *after* rotation, k_p = R(p) k. Rotations compose, R(p + d) = R(d) R(p),
so a key computed at position p is moved to p + d by applying R(d) alone; values carry
no position and are left untouched. We use the model's own `inv_freq` (already scaled
for static schemes such as linear/llama3/yarn) and deliberately not its
`attention_scaling`: that factor is baked into the cached keys once and must not be
applied again. Schemes whose frequencies depend on sequence length are not additive,
so such models are refused and fall back to exact re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

# rope_type values whose inv_freq is fixed, so rotation by a delta is exact.
ADDITIVE_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})
# Architectures using the `rotate_half` (GPT-NeoX) layout that transformers' code implements.
ROTATE_HALF_MODELS = frozenset({"llama", "qwen2", "qwen3", "mistral", "starcoder2"})


class PieUnsupported(ValueError):
    """The model's position encoding cannot be patched by rotation; re-encode instead."""


@dataclass(frozen=True)
class RotaryParams:
    inv_freq: torch.Tensor  # (rotary_dim // 2,) float64
    rotary_dim: int  # leading dims of each head that are rotated (partial rotary leaves the rest)


def rotary_params(model: PreTrainedModel) -> RotaryParams:
    """Read the rotation a model applies to keys; raise PieUnsupported with the reason if PIE can't work."""
    return rotary_params_of(model.config, getattr(getattr(model, "model", None), "rotary_emb", None))


def rotary_params_of(config: PretrainedConfig, rotary: nn.Module | None) -> RotaryParams:
    """`rotary_params` from a config and its rotary embedding module (a GGUF checkpoint has no model)."""
    model_type = getattr(config, "model_type", "?")
    if model_type not in ROTATE_HALF_MODELS:
        raise PieUnsupported(f"model type {model_type!r} is not a supported RoPE architecture")
    if rotary is None or not hasattr(rotary, "inv_freq"):
        raise PieUnsupported(f"model type {model_type!r} has no rotary position embedding")
    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type not in ADDITIVE_ROPE_TYPES:
        raise PieUnsupported(f"RoPE scaling {rope_type!r} depends on sequence length; rotation is not exact")
    layer_types = getattr(config, "layer_types", None) or []
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    if sliding or "sliding_attention" in layer_types:
        raise PieUnsupported("sliding-window attention: reused keys would see a different window")
    inv_freq = rotary.inv_freq
    assert isinstance(inv_freq, torch.Tensor)  # a registered buffer
    inv_freq = inv_freq.detach().to(torch.float64).cpu()
    return RotaryParams(inv_freq=inv_freq, rotary_dim=2 * inv_freq.numel())


def rotation(delta: int, rope: RotaryParams, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of R(delta) over the rotary dims, float32; angles in float64 so large deltas stay exact."""
    angles = delta * rope.inv_freq  # (rotary_dim/2,)
    cos = torch.cat([angles.cos(), angles.cos()]).to(device=device, dtype=torch.float32)
    sin = torch.cat([angles.sin(), angles.sin()]).to(device=device, dtype=torch.float32)
    return cos, sin


def rotate_keys(
    keys: torch.Tensor, delta: int, rope: RotaryParams, cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """Return keys (..., seq, head_dim) moved by `delta` positions, computed in float32.

    `cos_sin` from `rotation()` saves recomputing it for every layer.
    """
    if delta == 0:
        return keys
    cos, sin = cos_sin if cos_sin is not None else rotation(delta, rope, keys.device)
    rd = rope.rotary_dim
    half = rd // 2
    rot = keys[..., :rd].to(torch.float32)
    rotated_half = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    out = rot * cos + rotated_half * sin
    if rd < keys.shape[-1]:
        out = torch.cat([out, keys[..., rd:].to(torch.float32)], dim=-1)
    return out.to(keys.dtype)
