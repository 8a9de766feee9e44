"""The transformer forward pass over a live document's KV buffer, in plain tensors.

Why not the Hugging Face forward: on a 2-core CPU a decode step of a 135M model is
bound by overhead, not by arithmetic. transformers grows `DynamicCache` by `torch.cat`
(copying the whole cache every token), expands grouped KV heads with `repeat_kv` for
any pass longer than one token, and runs three projections where one fused matrix
would do. Here the cache is a preallocated buffer written in place, attention takes
the grouped heads as they are (SDPA `enable_gqa`), q/k/v and gate/up are fused, and
the linear layers are whatever weight format `formats.py` built. The arithmetic is
the same as transformers' Llama family (Llama, Mistral, Qwen2, Qwen3): tests compare
logits with the Hugging Face model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from completion.model.formats import FORMATS, Linear, make_linear
from completion.model.smooth import activation_ranges, smoothing_scales

SUPPORTED_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})
CPU_ONLY_FORMATS = frozenset({"int8", "int4-wo"})  # fbgemm, and the CPU int4 packing


class RunnerUnsupported(ValueError):
    """The model's architecture is not one this runner implements."""


@dataclass
class Layer:
    attn_norm: torch.Tensor
    qkv: Linear  # q, k and v projections stacked along the output dimension
    q_norm: torch.Tensor | None  # Qwen3 normalises each head's queries and keys
    k_norm: torch.Tensor | None
    o: Linear
    mlp_norm: torch.Tensor
    gate_up: Linear  # gate and up projections stacked
    down: Linear


def _fuse(*linears: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several linears on the same input; a single one is not copied."""
    if len(linears) == 1:
        bias: torch.Tensor | None = linears[0].bias
        return linears[0].weight.detach(), None if bias is None else bias.detach()
    weight = torch.cat([lin.weight.detach().float() for lin in linears])
    biases = [lin.bias for lin in linears]
    bias = None if biases[0] is None else torch.cat([b.detach().float() for b in biases])
    return weight, bias


class Runner:
    """Weights of one model in one format, and the forward pass that reads and extends a KV buffer."""

    def __init__(
        self,
        model: PreTrainedModel,
        weight_format: str = "fp32",
        device: str | torch.device = "cpu",
        calibration: Sequence[int] = (),
    ) -> None:
        """`calibration`: token ids of typical text; int8 uses them to smooth activation outliers."""
        config = model.config
        if config.model_type not in SUPPORTED_MODELS:
            raise RunnerUnsupported(
                f"model type {config.model_type!r} is not supported (supported: {', '.join(sorted(SUPPORTED_MODELS))})"
            )
        if weight_format not in FORMATS:
            raise ValueError(f"weight format must be one of {FORMATS}, got {weight_format!r}")
        self.device = torch.device(device)
        if self.device.type != "cpu" and weight_format in CPU_ONLY_FORMATS:
            raise ValueError(f"weight format {weight_format!r} has CPU kernels only; use fp32 or bf16 on {device}")
        self.config = config
        self.weight_format = weight_format
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.scaling = self.head_dim**-0.5
        self.eps = config.rms_norm_eps
        window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        self.sliding_window: int | None = window
        self.rotary = model.model.rotary_emb.to(self.device)  # transformers' own cos/sin, every RoPE type

        def dense(t: torch.Tensor) -> torch.Tensor:
            return t.detach().float().to(self.device).contiguous()

        def linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
            return make_linear(weight_format, weight.to(self.device), None if bias is None else bias.to(self.device))

        ranges = activation_ranges(model, calibration) if weight_format == "int8" and calibration else None

        def smoothed(norm: torch.Tensor, weight: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
            """The norm weight divided and the linear weight multiplied by SmoothQuant scales (int8 only)."""
            if ranges is None:
                return dense(norm), weight
            scales = smoothing_scales(ranges[name], weight)
            return dense(norm) / scales, weight * scales

        self.embed = dense(model.model.embed_tokens.weight)
        self.layers = []
        for i, block in enumerate(model.model.layers):
            att, mlp = block.self_attn, block.mlp
            q_norm = getattr(att, "q_norm", None)
            k_norm = getattr(att, "k_norm", None)
            qkv, qkv_bias = _fuse(att.q_proj, att.k_proj, att.v_proj)
            attn_norm, qkv = smoothed(block.input_layernorm.weight, qkv, f"model.layers.{i}.self_attn.q_proj")
            gate_up, gate_up_bias = _fuse(mlp.gate_proj, mlp.up_proj)
            mlp_norm, gate_up = smoothed(
                block.post_attention_layernorm.weight, gate_up, f"model.layers.{i}.mlp.gate_proj"
            )
            down, down_bias = _fuse(mlp.down_proj)
            if ranges is not None:  # the down projection's input is silu(gate) * up: scale the up rows
                scales = smoothing_scales(ranges[f"model.layers.{i}.mlp.down_proj"], down)
                unscale = torch.cat([torch.ones_like(scales), 1 / scales])
                gate_up = gate_up * unscale[:, None]
                gate_up_bias = None if gate_up_bias is None else gate_up_bias * unscale
                down = down * scales
            self.layers.append(
                Layer(
                    attn_norm=attn_norm,
                    qkv=linear(qkv, qkv_bias),
                    q_norm=None if q_norm is None else dense(q_norm.weight),
                    k_norm=None if k_norm is None else dense(k_norm.weight),
                    o=linear(*_fuse(att.o_proj)),
                    mlp_norm=mlp_norm,
                    gate_up=linear(gate_up, gate_up_bias),
                    down=linear(down, down_bias),
                )
            )
        lm_head, lm_head_bias = _fuse(model.lm_head)
        self.norm, lm_head = smoothed(model.model.norm.weight, lm_head, "lm_head")
        self.lm_head = linear(lm_head, lm_head_bias)
        self.vocab_size = model.lm_head.out_features

    def new_buffer(self, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty keys and values: (layers, kv_heads, capacity, head_dim) each, fp32. Never inference
        tensors, even when decoding (inference mode) grows a cache: an edit's move updates them in place."""
        shape = (self.n_layers, self.n_kv_heads, capacity, self.head_dim)
        with torch.inference_mode(False):
            return torch.empty(shape, device=self.device), torch.empty(shape, device=self.device)

    @torch.inference_mode()
    def forward(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        tokens: torch.Tensor | None,
        positions: torch.Tensor,
        at: int,
        visible: torch.Tensor | None = None,
        logits: str = "last",
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Run `tokens` at RoPE `positions`, writing their keys and values into slots at..at+q.

        Each token attends to slots [0, at) and causally to the new ones, or, when `visible`
        (q, at+q) bool is given, exactly to the slots it marks. `logits`: "last" gives
        (vocab,), "all" gives (q, vocab), "none" skips the lm_head. `embeddings` (q, hidden),
        given instead of `tokens`, are the input vectors themselves (superposed decoding feeds
        a weighted sum of several tokens' embeddings).
        """
        if (tokens is None) == (embeddings is None):
            raise ValueError("give exactly one of tokens and embeddings")
        if embeddings is None:
            assert tokens is not None  # exactly one of the two is given (checked above)
            x = F.embedding(tokens, self.embed)  # (q, hidden)
        else:
            x = embeddings.to(self.device)
        q = x.shape[0]
        end = at + q
        mask = self._mask(q, at, visible)
        cos, sin = self.rotary(self.embed[:1], positions[None])  # (1, q, head_dim) each
        nq, hd = self.n_heads * self.head_dim, self.head_dim
        for i, layer in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), layer.attn_norm, self.eps)
            qkv = layer.qkv(h).view(q, self.n_heads + 2 * self.n_kv_heads, hd).transpose(0, 1)
            if layer.q_norm is not None:
                xq = F.rms_norm(qkv[: self.n_heads], (hd,), layer.q_norm, self.eps)
                xk = F.rms_norm(qkv[self.n_heads : -self.n_kv_heads], (hd,), layer.k_norm, self.eps)
                qk = _rope(torch.cat([xq, xk]), cos, sin)
            else:
                qk = _rope(qkv[: -self.n_kv_heads], cos, sin)  # queries and keys rotated together
            keys[i, :, at:end] = qk[self.n_heads :]
            values[i, :, at:end] = qkv[-self.n_kv_heads :]
            att = F.scaled_dot_product_attention(
                qk[None, : self.n_heads],
                keys[i, :, :end][None],
                values[i, :, :end][None],
                attn_mask=mask,
                scale=self.scaling,
                enable_gqa=True,
            )
            x = x + layer.o(att[0].transpose(0, 1).reshape(q, nq))
            h = F.rms_norm(x, (x.shape[-1],), layer.mlp_norm, self.eps)
            gate, up = layer.gate_up(h).chunk(2, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        if logits == "none":
            return None
        if logits == "last":
            x = x[-1:]
        out = self.lm_head(F.rms_norm(x, (x.shape[-1],), self.norm, self.eps)).float()
        return out[0] if logits == "last" else out

    def _mask(self, q: int, at: int, visible: torch.Tensor | None) -> torch.Tensor | None:
        """Boolean (q, at+q) attention mask, or None when every token sees every slot (one token, no window)."""
        if visible is not None:
            mask = visible.to(self.device)
        elif q == 1 and self.sliding_window is None:
            return None
        else:
            slots = torch.arange(at + q, device=self.device)
            mask = slots[None, :] <= (at + torch.arange(q, device=self.device))[:, None]
        if self.sliding_window is not None:
            # Mistral's window: a token sees the last `window` positions, itself included; slots hold
            # consecutive positions, so slot distance is position distance.
            slots = torch.arange(at + q, device=self.device)
            mask = mask & (slots[None, :] > (at + torch.arange(q, device=self.device))[:, None] - self.sliding_window)
        return mask


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' rotate_half RoPE on (heads, q, head_dim) with cos/sin (1, q, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
