"""Weights in GGUF blocks (Q4_0, Q4_1, Q8_0) and the linear layer that multiplies them as they are.

A block is 32 consecutive weights of one output row with an fp16 scale (and, for Q4_1, an fp16
minimum); a row of the matrix is its blocks end to end, exactly the GGUF tensor's bytes. The
kernel (`kernels/cpu_ops.cpp`) multiplies fp32 activations with the blocks, so the product is the
fp32-dequantized matrix's to float tolerance: a GGUF model runs as the model it is. Weights that
come as fp32 (a Hugging Face folder) are quantized to these blocks with the `gguf` package's
reference quantizer, the same arithmetic as llama.cpp's.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants

# The block formats the kernels read, by the name the `weights` setting uses.
BLOCK_FORMATS = {
    "q4_0": GGMLQuantizationType.Q4_0,
    "q4_1": GGMLQuantizationType.Q4_1,
    "q8_0": GGMLQuantizationType.Q8_0,
}
KERNEL_TYPES = frozenset(int(t) for t in BLOCK_FORMATS.values())
NO_IDS = torch.empty(0, dtype=torch.long)


@dataclass(frozen=True)
class Blocks:
    """An (out_features, in_features) matrix stored as GGUF blocks: `data` is (out_features, bytes per row)."""

    data: torch.Tensor  # uint8
    kind: int  # the GGML type id
    in_features: int

    @property
    def out_features(self) -> int:
        return int(self.data.shape[0])

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    @classmethod
    def quantize(cls, weight: torch.Tensor, kind: int) -> Blocks:
        """fp32 (out, in) weights to blocks (in_features a multiple of 32)."""
        block, _ = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        if weight.shape[1] % block:
            raise ValueError(f"block formats need in_features divisible by {block}, got {weight.shape[1]}")
        data = quants.quantize(weight.detach().float().cpu().numpy(), GGMLQuantizationType(kind))
        return cls(torch.from_numpy(np.ascontiguousarray(data)), kind, int(weight.shape[1]))

    def rows(self, ops: ModuleType, ids: torch.Tensor = NO_IDS) -> torch.Tensor:
        """fp32 weights of the rows `ids` (all rows when empty): embedding lookups, references."""
        return ops.block_dequantize(self.data, self.kind, self.in_features, ids)  # type: ignore[no-any-return]


class BlockLinear:
    """y = x W^T + b with W in blocks; `add_into(out, x)` adds the product into `out` (a residual add)."""

    def __init__(self, ops: ModuleType, blocks: Blocks, bias: torch.Tensor | None) -> None:
        self.ops, self.blocks, self.bias = ops, blocks, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.blocks
        return self.ops.block_linear(x, b.data, b.kind, self.bias, None)  # type: ignore[no-any-return]

    def add_into(self, out: torch.Tensor, x: torch.Tensor) -> None:
        b = self.blocks
        self.ops.block_linear(x, b.data, b.kind, self.bias, out)
