"""Shared fixtures: tiny randomly initialised models built from configs (fast, exact), the embedded
model's tokenizer alone, and the embedded model itself for integration tests.

Two tiers: `-m "not integration"` (`make test-fast`) never loads the embedded model's weights; a test that
does, in process or in a server it starts, is marked `integration`. In process this is checked: loading the
embedded model outside an integration test fails that test."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase
from transformers.models.llama import LlamaConfig
from transformers.models.qwen2 import Qwen2Config

from completion.model import loading
from completion.model.engine import Engine
from completion.model.loading import LoadedModel, ModelLoadError, load_model
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


# -- the embedded model: weights for integration tests only ----------------------------------------------

try:
    EMBEDDED_GGUF: Path | None = loading.embedded_model_path().resolve()
except ModelLoadError:  # not installed: the tests that need it fail on their own, naming the package
    EMBEDDED_GGUF = None

_running: pytest.Item | None = None  # the test being set up, run or torn down (None: collection, session end)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    global _running
    _running = item  # before setup: session and module fixtures are made in the first test that asks
    try:
        return (yield)
    finally:
        _running = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The plain case named before the session fixture is made (a failed one would fail every later user)."""
    if "embedded" in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None:
        pytest.fail(f"{item.nodeid} uses the embedded model: mark it integration", pytrace=False)


def _is_embedded(source: Path) -> bool:
    """The embedded GGUF, or a conversion of it (whatever the cache folder: it records its source)."""
    if EMBEDDED_GGUF is None:
        return False
    record = source / "livekv-source.json"
    if source.is_dir() and record.is_file():
        source = Path(json.loads(record.read_text())["gguf"])
    return source.resolve() == EMBEDDED_GGUF


def _guarded(load: Callable[..., object]) -> Callable[..., object]:
    def guard(source: Path, *args: object) -> object:
        if _is_embedded(Path(source)) and (_running is None or _running.get_closest_marker("integration") is None):
            where = _running.nodeid if _running is not None else "outside any test (collection?)"
            pytest.fail(f"{where}: a unit test loaded the embedded model: mark it integration", pytrace=False)
        return load(source, *args)

    guard.guarded = True  # type: ignore[attr-defined]
    return guard


# Every in-process load of the model goes through one of these (load_model looks them up at each call):
# a GGUF's config and tokenizer first, whose weights are then read as blocks or converted.
# Wrapped once: test modules that `from tests.conftest import ...` load this file a second time, whose
# `_running` no hook ever sets; its guard must not wrap the first one's.
if not getattr(loading._load_hf_dir, "guarded", False):
    loading._load_hf_dir = _guarded(loading._load_hf_dir)  # type: ignore[assignment]
    loading._convert_gguf = _guarded(loading._convert_gguf)  # type: ignore[assignment]
    loading._gguf_meta = _guarded(loading._gguf_meta)  # type: ignore[assignment]


@pytest.fixture(scope="session")
def embedded() -> LoadedModel:
    return load_model(threads=2)


def embedded_tokenizer() -> PreTrainedTokenizerBase:
    """The embedded model's tokenizer without its weights: from the converted cache when there is one
    (under a second; load_model takes its tokenizer from there too), else read from the GGUF's metadata
    (about ten seconds; nothing is dequantized, nothing is cached)."""
    if EMBEDDED_GGUF is None:
        loading.embedded_model_path()  # raises ModelLoadError, saying how to install it
    assert EMBEDDED_GGUF is not None
    converted = loading._conversion_dir(EMBEDDED_GGUF)
    if (converted / "config.json").is_file():
        return AutoTokenizer.from_pretrained(converted, local_files_only=True)
    return AutoTokenizer.from_pretrained(EMBEDDED_GGUF.parent, gguf_file=EMBEDDED_GGUF.name, local_files_only=True)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerBase:
    """The embedded tokenizer alone: unit tests get it without the embedded model's weights."""
    return embedded_tokenizer()


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
