"""SmoothQuant scales for the int8 format: move activation outliers into the weights.

The int8 format quantizes activations per pass with one scale. A few hidden channels of
these models carry activations 10-50x larger than the rest, so one scale leaves the
other channels with a handful of levels. Dividing channel j of the input by s_j and
multiplying column j of the weight by s_j changes nothing in exact arithmetic, but
with s_j = sqrt(max|x_j| / max|W_j|) both sides quantize well (Xiao et al., 2023,
alpha = 0.5). The division is folded into the RMSNorm weight (or the up projection)
that produces the input, so decoding pays nothing. The activation ranges come from
one fp32 pass over a calibration text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ALPHA = 0.5


@torch.inference_mode()
def activation_ranges(model: nn.Module, calibration: Sequence[int]) -> dict[str, torch.Tensor]:
    """max |x| per input channel of every q, gate, down projection and the lm_head, by module name."""
    watched = {
        name: module
        for name, module in model.named_modules()
        if name.endswith(("q_proj", "gate_proj", "down_proj")) or name == "lm_head"
    }
    ranges: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
            ranges[name] = torch.maximum(ranges[name], seen) if name in ranges else seen

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in watched.items()]
    try:
        model(torch.tensor([list(calibration)], device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def smoothing_scales(act_max: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """s_j = sqrt(max|x_j| / max|W_j|) over input channel j of `weight` (out, in)."""
    w_max = weight.abs().amax(0).clamp(min=1e-5)
    return (act_max.clamp(min=1e-5) ** ALPHA / w_max ** (1 - ALPHA)).clamp(min=1e-5)
