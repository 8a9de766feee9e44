"""What every live document of one model shares: weights, tokenizer, RoPE facts, prompt markers."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from completion.live.layout import FimIds, detect_fim, repo_markers, start_token
from completion.model.checkpoint import Checkpoint
from completion.model.kernels import cpu_ops
from completion.model.loading import LoadedModel
from completion.model.rope import PieUnsupported, RotaryParams, rotary_params_of
from completion.model.runner import Runner

log = logging.getLogger(__name__)

CALIBRATION_TOKENS = 512


def calibration_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Typical Python for the int8 format's activation ranges: the standard library's textwrap."""
    try:
        text = Path(textwrap.__file__).read_text(encoding="utf-8")
    except OSError:
        return []
    ids: list[int] = tokenizer(text).input_ids
    return ids[:CALIBRATION_TOKENS]


@dataclass
class Engine:
    runner: Runner
    tokenizer: PreTrainedTokenizerBase
    rope: RotaryParams | None  # None: PIE refused, see `pie_refusal`
    pie_refusal: str | None
    fim: FimIds | None
    start: int  # document-start token placed at position 0
    sliding_window: bool  # caches must be rebuilt, not cropped
    markers: dict[str, int]  # the repository markers the vocabulary has (cross-file context is rendered with them)

    @classmethod
    def from_model(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        weights: str = "fp32",
        device: str | torch.device = "cpu",
    ) -> Engine:
        """Build the runner (weights in the given format, on the given device) and the PIE facts."""
        return cls.from_checkpoint(Checkpoint.from_model(model), tokenizer, weights, device)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        tokenizer: PreTrainedTokenizerBase,
        weights: str = "fp32",
        device: str | torch.device = "cpu",
    ) -> Engine:
        try:
            rope, refusal = rotary_params_of(checkpoint.config, checkpoint.rotary), None
        except PieUnsupported as err:
            rope, refusal = None, str(err)
            log.warning("PIE disabled for this model (%s); edits will re-encode exactly", err)
        calibration = calibration_ids(tokenizer) if weights == "int8" else ()
        return cls(
            runner=Runner(checkpoint, weights, device, calibration),
            tokenizer=tokenizer,
            rope=rope,
            pie_refusal=refusal,
            fim=detect_fim(tokenizer),
            start=start_token(tokenizer),
            sliding_window=refusal is not None and "sliding" in refusal,
            markers=repo_markers(tokenizer),
        )

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, weights: str = "auto", device: str | torch.device = "cpu") -> Engine:
        """`gguf` weights read the file's blocks and never load the transformers model."""
        weights = resolve_weights(weights, loaded, device)
        if weights == "gguf":
            if loaded.gguf is None:
                raise ValueError("weight format 'gguf' (the file's own blocks) needs a .gguf model")
            return cls.from_checkpoint(
                Checkpoint.from_gguf(loaded.gguf, loaded.config), loaded.tokenizer, weights, device
            )
        return cls.from_model(loaded.model, loaded.tokenizer, weights, device)


def resolve_weights(weights: str, loaded: LoadedModel, device: str | torch.device) -> str:
    """`auto`: a GGUF model's own blocks when the kernels are built and it runs on the CPU (the same
    model as fp32, to float tolerance, and the fastest format measured), else fp32."""
    if weights != "auto":
        return weights
    if loaded.gguf is not None and torch.device(device).type == "cpu" and cpu_ops() is not None:
        return "gguf"
    return "fp32"
