"""`livekv bench speed`'s measurements on a tiny model: they run the real cache and report every size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from benchmarks import shapes
from benchmarks.speed import (
    PASS_SIZES,
    STEPS,
    print_table,
    quality_vs_fp32,
    time_decode,
    time_passes,
    time_prefill,
)
from completion.live.kvcache import KVCache
from completion.model.blocks import BlockLinear
from completion.model.checkpoint import Checkpoint
from completion.model.engine import Engine
from completion.model.kernels import cpu_ops
from completion.model.runner import Runner


def test_decode_and_pass_timings_use_the_cache_they_are_given(tiny_engine: Callable[[str], Engine]) -> None:
    engine = tiny_engine("llama")
    ids = list(range(100, 1300))
    kv = KVCache(engine.runner)
    kv.encode(ids[: 1024 + STEPS])
    passes = time_passes(kv, ids, 1024)
    assert set(passes) == {str(q) for q in PASS_SIZES} and all(ms > 0 for ms in passes.values())
    assert len(kv) == 1024 + PASS_SIZES[-1]
    assert time_decode(kv, ids, 256) > 0 and len(kv) == 256 + STEPS
    assert time_prefill(engine.runner, ids, 512) > 0


def test_table_shows_skipped_measurements_as_dashes(capsys: pytest.CaptureFixture[str]) -> None:
    slow = {"format": "int4-wo", "decode_ms": {"256": 170.0, "1024": 171.0}, "prefill_tps": {"512": 8.0}}
    print_table([slow])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| int4-wo | 170.0 / 171.0 / - | - / - / - / - | 8 / - | - (-) | - | - (-) / - |"


def test_quality_of_fp32_against_itself_is_perfect_agreement(tiny_engine: Callable[[str], Engine]) -> None:
    runner = tiny_engine("llama").runner
    quality = quality_vs_fp32(runner, runner, list(range(100, 700)))
    assert quality["top1_same_as_fp32"] == 1.0 and quality["nll"] == quality["nll_fp32"] > 0


def test_a_shape_is_written_as_a_q4_1_gguf_the_runner_reads_as_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cpu_ops() is None:
        pytest.skip("livekv's CPU kernels are not built on this machine")
    tiny = {**shapes.SHAPES["qwen2-0.5b"], "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2}
    monkeypatch.setitem(shapes.SHAPES, "tiny", {**tiny, "num_attention_heads": 4, "vocab_size": 300})
    path = shapes.write_shape_gguf("tiny", tmp_path / "tiny.gguf")
    runner = Runner(Checkpoint.from_gguf(path, shapes.shape_config("tiny")), "gguf")
    assert isinstance(runner.layers[1].gate_up, BlockLinear) and runner.vocab_size == 300
    assert runner.layers[1].gate_up.blocks.kind == 3 and runner.layers[0].qkv.bias is not None  # type: ignore[union-attr]
    keys, values = runner.new_buffer(8)
    logits = runner.forward(keys, values, torch.tensor([1, 2, 3]), torch.arange(3), 0)
    assert logits is not None and logits.shape == (300,) and torch.isfinite(logits).all()
