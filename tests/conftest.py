"""Shared fixtures: tiny randomly initialised models built from configs (fast, exact), and the
embedded model for integration tests."""

from __future__ import annotations

import os
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerBase
from transformers.models.llama import LlamaConfig
from transformers.models.qwen2 import Qwen2Config

from completion.model.engine import Engine
from completion.model.loading import LoadedModel, load_model
from completion.model.vocab import Vocabulary
from monitors.vocab import NameMasks

torch.set_num_threads(2)

TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)


def tiny_config(kind: str, vocab_size: int) -> PretrainedConfig:
    """Llama/Qwen2 shapes with grouped KV heads; `kind` picks the RoPE variant."""
    if kind == "llama":
        return LlamaConfig(vocab_size=vocab_size, **TINY)
    if kind == "llama-linear":
        return LlamaConfig(
            vocab_size=vocab_size, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}, **TINY
        )
    if kind == "llama3":
        return LlamaConfig(
            vocab_size=vocab_size,
            rope_parameters={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 512,
                "rope_theta": 500000.0,
            },
            **TINY,
        )
    if kind == "qwen2":
        return Qwen2Config(vocab_size=vocab_size, **TINY)
    raise ValueError(kind)


def tiny_model(kind: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(kind, vocab_size), dtype=torch.float32)
    # Random init gives near-uniform attention; larger q/k weights make attention position-
    # sensitive, so a wrong rotation shows up clearly in the tests.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(8.0)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def embedded() -> LoadedModel:
    return load_model(threads=2)


@pytest.fixture(scope="session")
def tokenizer(embedded: LoadedModel) -> PreTrainedTokenizerBase:
    return embedded.tokenizer


@pytest.fixture(scope="session")
def vocab(tokenizer: PreTrainedTokenizerBase) -> Vocabulary:
    """The embedded tokenizer's vocabulary as bytes (the tiny models share the tokenizer)."""
    return Vocabulary(tokenizer, len(tokenizer))


@pytest.fixture(scope="session")
def masks(vocab: Vocabulary) -> NameMasks:
    return NameMasks(vocab)


@pytest.fixture(scope="session")
def tiny_engine(tokenizer: PreTrainedTokenizerBase) -> Callable[[str], Engine]:
    """Engine factory: a tiny random model of the given kind with the embedded tokenizer."""
    cache: dict[str, Engine] = {}

    def make(kind: str = "llama") -> Engine:
        if kind not in cache:
            cache[kind] = Engine.from_model(tiny_model(kind, len(tokenizer)), tokenizer)
        return cache[kind]

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> str:
    """A tiny random Llama with the embedded tokenizer saved as a Hugging Face folder: the server's
    `modelPath` for end-to-end tests that exercise the protocol, not the model (loads in a second)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_model("llama", len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
