"""What a runner is built from: a model's config, its rotary embedding, and its weights by name.

Two sources. A transformers model (`from_model`) gives dense fp32 weights. A GGUF file
(`from_gguf`) gives each tensor as the file stores it: blocks the kernels multiply as they are
(Q4_0, Q4_1, Q8_0), or fp32 for the norms and for block types the kernels lack (dequantized,
so still exact). Its bytes are read straight into the runner's buffers (`fused` reads q, k and v
into one), never through a full-precision copy of the model, so loading a 1.5B model needs about
its file's size in memory. Names are transformers' (`model.layers.0.self_attn.q_proj.weight`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, quants
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from completion.model.blocks import KERNEL_TYPES, Blocks

log = logging.getLogger(__name__)

Weight = torch.Tensor | Blocks

# GGUF tensor names (per layer, `blk.N.` dropped) to transformers' names under `model.layers.N.`.
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def rotary_embedding(config: PretrainedConfig) -> nn.Module:
    """transformers' own rotary embedding module for this config (every RoPE type it implements)."""
    arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, "")
    module = importlib.import_module(f"transformers.models.{config.model_type}.modeling_{config.model_type}")
    rotary: nn.Module = getattr(module, arch.removesuffix("ForCausalLM") + "RotaryEmbedding")(config=config)
    return rotary


def check_supported(config: PretrainedConfig) -> None:
    if config.model_type not in SUPPORTED_MODELS:
        supported = ", ".join(sorted(SUPPORTED_MODELS))
        raise RunnerUnsupported(f"model type {config.model_type!r} is not supported (supported: {supported})")


def hf_name(gguf_name: str) -> str | None:
    stem, _, suffix = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        mapped = LAYER_NAMES.get(part)
        return None if mapped is None else f"model.layers.{layer}.{mapped}.{suffix}"
    mapped = TOP_NAMES.get(stem)
    return None if mapped is None else f"{mapped}.{suffix}"


SUPPORTED_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})


class RunnerUnsupported(ValueError):
    """The model's architecture is not one the runner implements."""


@dataclass
class Checkpoint:
    config: PretrainedConfig
    rotary: nn.Module
    model: PreTrainedModel | None = None  # the transformers model, when one was loaded (int8 calibrates on it)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)  # weights held as fp32 tensors
    gguf: GGUFFile | None = None

    @classmethod
    def from_model(cls, model: PreTrainedModel) -> Checkpoint:
        check_supported(model.config)
        dense = {name: t.detach() for name, t in model.state_dict().items()}
        return cls(config=model.config, rotary=model.model.rotary_emb, model=model, dense=dense)

    @classmethod
    def from_gguf(cls, path: Path, config: PretrainedConfig) -> Checkpoint:
        check_supported(config)
        return cls(config=config, rotary=rotary_embedding(config), gguf=GGUFFile(path, config))

    def has(self, name: str) -> bool:
        return name in self.dense or (self.gguf is not None and name in self.gguf.tensors)

    def fused(self, names: Sequence[str]) -> Weight:
        """The weights of several linears on one input stacked along the output rows (one: as it is).

        Blocks when every part is in the same kernel block type, else fp32."""
        if self.gguf is not None and all(n in self.gguf.tensors for n in names):
            return self.gguf.read(names)
        parts = [self.dense[n] for n in names]
        return parts[0] if len(parts) == 1 else torch.cat([p.float() for p in parts])

    def bias(self, names: Sequence[str]) -> torch.Tensor | None:
        if not self.has(names[0]):
            return None
        stacked = self.fused(names)
        assert isinstance(stacked, torch.Tensor)  # biases are stored as float tensors
        return stacked

    def vector(self, name: str) -> torch.Tensor:
        """A norm weight (GGUF files store them as F32)."""
        weight = self.fused([name])
        if not isinstance(weight, torch.Tensor):
            raise ValueError(f"{name} is stored in blocks; a float tensor was expected")
        return weight


class GGUFFile:
    """A GGUF file's tensors by transformers' name; bytes read on demand with plain reads (no memory map
    left touched, so reading costs no resident memory beyond the buffers read into)."""

    def __init__(self, path: Path, config: PretrainedConfig) -> None:
        self.path = path
        reader = GGUFReader(path)
        self.tensors = {name: t for t in reader.tensors if (name := hf_name(t.name)) is not None}
        arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
        # llama.cpp's converter interleaves the rotary halves of q and k rows for the "llama" architecture;
        # transformers (and this runner) use the rotate_half layout, so those rows are put back.
        self.permuted = arch == "llama"
        self.config = config
        del reader

    def _raw(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        out = np.empty(int(t.n_bytes), dtype=np.uint8)
        with open(self.path, "rb") as f:
            f.seek(int(t.data_offset))
            f.readinto(out.data)
        return out

    def _rows(self, name: str) -> int:
        t = self.tensors[name]
        return int(t.shape[-1]) if len(t.shape) > 1 else 1

    def _unpermute(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Undo llama.cpp's q/k row permutation (rows are whole output rows: blocks or floats alike)."""
        if not self.permuted or not name.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
            return rows
        heads = self.config.num_attention_heads if "q_proj" in name else self.config.num_key_value_heads
        dim = rows.shape[0] // heads // 2
        return rows.reshape(heads, dim, 2, *rows.shape[1:]).swapaxes(2, 1).reshape(rows.shape)

    def read(self, names: Sequence[str]) -> Weight:
        kinds = {int(self.tensors[n].tensor_type) for n in names}
        if len(kinds) == 1 and (kind := kinds.pop()) in KERNEL_TYPES:
            parts = [self._unpermute(n, self._raw(n).reshape(self._rows(n), -1)) for n in names]
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
            in_features = int(self.tensors[names[0]].shape[0])
            return Blocks(torch.from_numpy(np.ascontiguousarray(data)), kind, in_features)
        dense = [self._dense(n) for n in names]
        return dense[0] if len(dense) == 1 else torch.cat(dense)

    def _dense(self, name: str) -> torch.Tensor:
        t = self.tensors[name]
        kind = GGMLQuantizationType(int(t.tensor_type))
        raw = self._raw(name)
        shape = [int(s) for s in reversed(t.shape)]
        if kind == GGMLQuantizationType.F32:
            values = raw.view(np.float32).reshape(shape)
        elif kind == GGMLQuantizationType.F16:
            values = raw.view(np.float16).astype(np.float32).reshape(shape)
        else:
            log.info("%s is %s, which the kernels lack: kept as fp32 (exact)", name, kind.name)
            values = quants.dequantize(raw.reshape(shape[0], -1), kind).astype(np.float32).reshape(shape)
        return torch.from_numpy(self._unpermute(name, np.ascontiguousarray(values)).copy())
