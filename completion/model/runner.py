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
from types import ModuleType

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from completion.model.blocks import BLOCK_FORMATS, BlockLinear, Blocks
from completion.model.checkpoint import Checkpoint, Weight
from completion.model.formats import BLOCK_WEIGHTS, FORMATS, Linear, make_linear
from completion.model.kernels import cpu_ops
from completion.model.smooth import activation_ranges, smoothing_scales

CPU_ONLY_FORMATS = frozenset({"int8", "int4-wo", "gguf", "q4_0", "q4_1", "q8_0"})  # fbgemm, int4 packing, our kernels


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


class Runner:
    """Weights of one model in one format, and the forward pass that reads and extends a KV buffer."""

    def __init__(
        self,
        source: PreTrainedModel | Checkpoint,
        weight_format: str = "fp32",
        device: str | torch.device = "cpu",
        calibration: Sequence[int] = (),
    ) -> None:
        """`calibration`: token ids of typical text; int8 uses them to smooth activation outliers."""
        ck = source if isinstance(source, Checkpoint) else Checkpoint.from_model(source)
        config = ck.config
        if weight_format not in FORMATS:
            raise ValueError(f"weight format must be one of {FORMATS}, got {weight_format!r}")
        self.device = torch.device(device)
        if self.device.type != "cpu" and weight_format in CPU_ONLY_FORMATS:
            raise ValueError(f"weight format {weight_format!r} has CPU kernels only; use fp32 or bf16 on {device}")
        if weight_format == "gguf" and ck.gguf is None:
            raise ValueError("weight format 'gguf' (the file's own blocks) needs a .gguf model")
        self.ops = cpu_ops() if weight_format in BLOCK_WEIGHTS else None
        if weight_format in BLOCK_WEIGHTS and self.ops is None:
            raise ValueError(f"weight format {weight_format!r} needs livekv's CPU kernels, which are not built here")
        if weight_format == "int8" and calibration and ck.model is None:
            raise ValueError("weight format 'int8' calibrates on a transformers model; load the model in fp32")
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
        self.rotary = ck.rotary.to(self.device)  # transformers' own cos/sin, every RoPE type

        def dense(t: torch.Tensor) -> torch.Tensor:
            return t.detach().float().to(self.device).contiguous()

        ranges = (
            activation_ranges(ck.model, calibration) if weight_format == "int8" and ck.model and calibration else None
        )

        def smoothed(norm: torch.Tensor, weight: Weight, name: str) -> tuple[torch.Tensor, Weight]:
            """The norm weight divided and the linear weight multiplied by SmoothQuant scales (int8 only)."""
            if ranges is None or not isinstance(weight, torch.Tensor):
                return dense(norm), weight
            scales = smoothing_scales(ranges[name], weight)
            return dense(norm) / scales, weight * scales

        self.embed_weight: Weight = self._weight(ck.fused(["model.embed_tokens.weight"]), embedding=True)
        self.layers = []
        for i in range(self.n_layers):
            pre = f"model.layers.{i}."
            att = [f"{pre}self_attn.{p}_proj" for p in "qkv"]
            qkv = ck.fused([f"{n}.weight" for n in att])
            attn_norm, qkv = smoothed(ck.vector(f"{pre}input_layernorm.weight"), qkv, f"{pre}self_attn.q_proj")
            gate_up = ck.fused([f"{pre}mlp.gate_proj.weight", f"{pre}mlp.up_proj.weight"])
            gate_up_bias = ck.bias([f"{pre}mlp.gate_proj.bias", f"{pre}mlp.up_proj.bias"])
            mlp_norm, gate_up = smoothed(
                ck.vector(f"{pre}post_attention_layernorm.weight"), gate_up, f"{pre}mlp.gate_proj"
            )
            down = ck.fused([f"{pre}mlp.down_proj.weight"])
            if ranges is not None:  # the down projection's input is silu(gate) * up: scale the up rows
                assert isinstance(down, torch.Tensor) and isinstance(gate_up, torch.Tensor)  # int8 starts from fp32
                scales = smoothing_scales(ranges[f"{pre}mlp.down_proj"], down)
                unscale = torch.cat([torch.ones_like(scales), 1 / scales])
                gate_up = gate_up * unscale[:, None]
                gate_up_bias = None if gate_up_bias is None else gate_up_bias * unscale
                down = down * scales
            q_norm, k_norm = f"{pre}self_attn.q_norm.weight", f"{pre}self_attn.k_norm.weight"
            self.layers.append(
                Layer(
                    attn_norm=attn_norm,
                    qkv=self._linear(qkv, ck.bias([f"{n}.bias" for n in att])),
                    q_norm=dense(ck.vector(q_norm)) if ck.has(q_norm) else None,
                    k_norm=dense(ck.vector(k_norm)) if ck.has(k_norm) else None,
                    o=self._linear(
                        ck.fused([f"{pre}self_attn.o_proj.weight"]), ck.bias([f"{pre}self_attn.o_proj.bias"])
                    ),
                    mlp_norm=mlp_norm,
                    gate_up=self._linear(gate_up, gate_up_bias),
                    down=self._linear(down, ck.bias([f"{pre}mlp.down_proj.bias"])),
                )
            )
        tied = not ck.has("lm_head.weight")
        lm_head = ck.fused(["model.embed_tokens.weight" if tied else "lm_head.weight"])
        self.norm, lm_head = smoothed(ck.vector("model.norm.weight"), lm_head, "lm_head")
        self.lm_head = self._linear(lm_head, None if tied else ck.bias(["lm_head.bias"]))
        self.vocab_size = config.vocab_size if tied else self._out_features(lm_head)

    @staticmethod
    def _out_features(weight: Weight) -> int:
        return weight.out_features if isinstance(weight, Blocks) else int(weight.shape[0])

    def _weight(self, weight: Weight, embedding: bool = False) -> Weight:
        """The weight in this runner's format: blocks kept (or made) for the block formats, else fp32.

        Embeddings are kept as blocks whenever they come as blocks and the kernels are here: a lookup
        dequantizes the rows it reads."""
        ops = self.ops
        if isinstance(weight, Blocks):
            wanted = BLOCK_FORMATS.get(self.weight_format)
            if ops is not None and (self.weight_format == "gguf" or wanted == weight.kind):
                return weight
            weight = weight.rows(ops if ops is not None else _require_ops())
        if self.weight_format in BLOCK_FORMATS and not embedding:
            return Blocks.quantize(weight, BLOCK_FORMATS[self.weight_format])
        return weight.detach().float().to(self.device).contiguous()

    def _linear(self, weight: Weight, bias: torch.Tensor | None) -> Linear:
        weight = self._weight(weight)
        bias = None if bias is None else bias.detach().float().to(self.device)
        if isinstance(weight, Blocks):
            assert self.ops is not None  # blocks are kept only where the kernels are
            return BlockLinear(self.ops, weight, bias)
        return make_linear("fp32" if self.weight_format in BLOCK_WEIGHTS else self.weight_format, weight, bias)

    def embed_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The input embeddings of token ids, (n, hidden) fp32."""
        if isinstance(self.embed_weight, Blocks):
            assert self.ops is not None  # blocks are kept only where the kernels are
            return self.embed_weight.rows(self.ops, ids.reshape(-1).cpu()).to(self.device)
        return F.embedding(ids.to(self.device), self.embed_weight)

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
            x = self.embed_rows(tokens)  # (q, hidden)
        else:
            x = embeddings.to(self.device, torch.float32).clone()  # the kernels add into x in place
        cos, sin = self.rotary(x[:1], positions[None])  # (1, q, head_dim) each
        if self.ops is not None:
            x = self._kernel_layers(self.ops, x, keys, values, cos[0], sin[0], at, visible)
        else:
            x = self._torch_layers(x, keys, values, cos, sin, at, visible)
        if logits == "none":
            return None
        if logits == "last":
            x = x[-1:]
        out = self.lm_head(self._norm(x, self.norm)).float()
        return out[0] if logits == "last" else out

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.ops is not None:
            return self.ops.rms_norm(x, weight, self.eps)  # type: ignore[no-any-return]
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _kernel_layers(
        self,
        ops: ModuleType,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        at: int,
        visible: torch.Tensor | None,
    ) -> torch.Tensor:
        """The decoder layers as the CPU kernels' fused steps: a norm, one product per projection
        (residuals added in place), RoPE with the KV write, and attention over the cache."""
        q = x.shape[0]
        end = at + q
        mask = visible if visible is not None or self.sliding_window is None else self._mask(q, at, None)
        for i, layer in enumerate(self.layers):
            rotated = ops.rope_store(
                layer.qkv(ops.rms_norm(x, layer.attn_norm, self.eps)),
                cos,
                sin,
                keys[i],
                values[i],
                at,
                self.n_heads,
                layer.q_norm,
                layer.k_norm,
                self.eps,
            )
            _add_product(x, layer.o, ops.attend(rotated, keys[i], values[i], end, at, mask, self.scaling))
            _add_product(x, layer.down, ops.silu_mul(layer.gate_up(ops.rms_norm(x, layer.mlp_norm, self.eps))))
        return x

    def _torch_layers(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        at: int,
        visible: torch.Tensor | None,
    ) -> torch.Tensor:
        q = x.shape[0]
        end = at + q
        mask = self._mask(q, at, visible)
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
        return x

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


def _add_product(x: torch.Tensor, linear: Linear, h: torch.Tensor) -> None:
    """x += linear(h), in place: block linears add inside the kernel."""
    if isinstance(linear, BlockLinear):
        linear.add_into(x, h)
    else:
        x += linear(h)


def _require_ops() -> ModuleType:
    ops = cpu_ops()
    if ops is None:
        raise ValueError(
            "this model's weights are GGUF blocks of a type that needs livekv's CPU kernels (not built here)"
        )
    return ops


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' rotate_half RoPE on (heads, q, head_dim) with cos/sin (1, q, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
