"""Weight formats for the runner's linear layers: each is a callable `y = linear(x)` on fp32 x.

Decoding one token reads every weight once, so a smaller format is a faster one as
long as its kernel streams the weights at memory speed. Which kernels do on this kind
of CPU (AVX2, no AVX-512/AMX) is measured by `livekv bench speed`; the formats are:

- fp32: MKL GEMV/GEMM, exact.
- bf16: weights in bfloat16 (activations rounded to bf16 for the product, output fp32).
- int8: per-output-channel symmetric int8 weights through fbgemm's dynamic-quantized
  GEMM (activations quantized per block of rows, per tensor; outliers smoothed first,
  see `smooth.py`).
- int8-wo / int4-wo: weight-only kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`
  with groups of 32, the GGUF Q4 group size), activations stay fp32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F

Linear = Callable[[torch.Tensor], torch.Tensor]
# gguf: a GGUF file's own blocks as they are; q4_0/q4_1/q8_0: those blocks made at load (see blocks.py).
BLOCK_WEIGHTS = ("gguf", "q4_0", "q4_1", "q8_0")
DENSE_FORMATS = ("fp32", "bf16", "int8", "int8-wo", "int4-wo")  # what make_linear builds
FORMATS = (*DENSE_FORMATS, *BLOCK_WEIGHTS)
# auto: a GGUF model's own blocks where the kernels are built (exact and fastest), else fp32.
WEIGHT_CHOICES = ("auto", *FORMATS)
INT4_GROUP = 32
# int8 quantizes activations with one scale per call, so a long prefill would share one scale
# over hundreds of tokens. Measured on SmolLM2 (300 tokens of argparse.py, top-1 agreement with
# fp32 / prefill tok/s at 512): one call 67% / 670, blocks of 32 rows 84% / 475, 8 rows 87% / 375,
# per token 90% / 114.
INT8_ROWS = 32
# Up to this many rows the fp32 product runs as W @ x^T (see `_Dense`).
FEW_ROWS = 8


def make_linear(weight_format: str, weight: torch.Tensor, bias: torch.Tensor | None) -> Linear:
    """A linear layer y = x W^T + b with W stored in `weight_format`."""
    weight = weight.float().contiguous()
    if weight_format == "fp32":
        return _Dense(weight, bias)
    if weight_format == "bf16":
        return _Bf16(weight, bias)
    if weight_format == "int8":
        return _Int8Dynamic(weight, bias)
    if weight_format == "int8-wo":
        return _Int8WeightOnly(weight, bias)
    if weight_format == "int4-wo":
        return _Int4WeightOnly(weight, bias)
    raise ValueError(f"weight format must be one of {DENSE_FORMATS}, got {weight_format!r}")


class _Dense:
    """fp32 through MKL. For a few rows (a decode step, a draft verification) the product is computed as
    W @ x^T: measured on this 2-core CPU over the embedded model's weights (memory-bound, 540 MB per
    pass), `F.linear` takes 73 ms for 1 row and ~150 ms for 2-8 rows, W @ x^T 52 ms for 2 rows and 62 ms
    for 4. One row is padded to two so a decode step and a verification pass run the same kernel.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        if rows > FEW_ROWS or x.device.type != "cpu":
            return F.linear(x, self.weight, self.bias)
        padded = x if rows > 1 else x.repeat(2, 1)  # a real second row: a stride-0 view takes a slow path
        y = torch.mm(self.weight, padded.t()).t()[:rows].contiguous()  # SDPA wants contiguous rows
        return y if self.bias is None else y + self.bias


class _Bf16:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight.to(torch.bfloat16), bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.to(torch.bfloat16), self.weight).float()
        return y if self.bias is None else y + self.bias


class _Int8Dynamic:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)  # the quantized API's move to torchao
            qweight = torch.quantize_per_channel(weight.cpu(), scales, zeros, axis=0, dtype=torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.float().cpu())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # reduce_range: fbgemm's AVX2 kernel accumulates u8*s8 pairs in int16 and needs 7-bit activations
        if x.shape[0] <= INT8_ROWS:
            return cast(torch.Tensor, torch.ops.quantized.linear_dynamic(x, self.packed, True))
        # torch.split is Tensor.split with annotations
        return torch.cat(
            [torch.ops.quantized.linear_dynamic(rows, self.packed, True) for rows in torch.split(x, INT8_ROWS)]
        )


class _Int8WeightOnly:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.weight = (weight / self.scales[:, None]).round().clamp(-127, 127).to(torch.int8)
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int8pack_mm(x, self.weight, self.scales)
        return y if self.bias is None else y + self.bias


class _Int4WeightOnly:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        n, k = weight.shape
        if k % INT4_GROUP:
            raise ValueError(f"int4-wo needs input size divisible by {INT4_GROUP}, got {k}")
        groups = weight.reshape(n, k // INT4_GROUP, INT4_GROUP)
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scales = ((high - low) / 15).clamp(min=1e-12)
        codes = ((groups - low) / scales).round().clamp(0, 15).to(torch.int32).reshape(n, k)
        # the kernel computes (code - 8) * scale + zero
        zeros = low + 8 * scales
        self.packed = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
        self.scales_zeros = torch.stack([scales.reshape(n, -1), zeros.reshape(n, -1)], dim=-1).transpose(0, 1)
        self.scales_zeros = self.scales_zeros.contiguous()
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int4pack_mm_for_cpu(x, self.packed, INT4_GROUP, self.scales_zeros)
        return y if self.bias is None else y + self.bias
