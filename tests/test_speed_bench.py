"""`livekv bench speed`'s measurements on a tiny model: they run the real cache and report every size."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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
from completion.model.engine import Engine


def test_decode_and_pass_timings_use_the_cache_they_are_given(tiny_engine: Callable[[str], Engine]) -> None:
    engine = tiny_engine("llama")
    ids = list(range(100, 1300))
    kv = KVCache(engine.runner)
    kv.encode(ids[: 1024 + STEPS])
    passes = time_passes(kv, ids, 1024)
    assert set(passes) == {str(q) for q in PASS_SIZES} and all(ms > 0 for ms in passes.values())
    assert len(kv) == 1024 + PASS_SIZES[-1]
    assert time_decode(kv, ids, 256) > 0 and len(kv) == 256 + STEPS
    assert time_prefill(engine, ids, 512) > 0


def test_table_shows_skipped_measurements_as_dashes(capsys: pytest.CaptureFixture[str]) -> None:
    slow = {"format": "int4-wo", "decode_ms": {"256": 170.0, "1024": 171.0}, "prefill_tps": {"512": 8.0}}
    print_table([slow])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| int4-wo | 170.0 / 171.0 / - | - / - / - / - | 8 / - | - (-) | - | - (-) / - |"


def test_quality_of_fp32_against_itself_is_perfect_agreement(tiny_engine: Callable[[str], Engine]) -> None:
    runner = tiny_engine("llama").runner
    quality = quality_vs_fp32(runner, runner, list(range(100, 700)))
    assert quality["top1_same_as_fp32"] == 1.0 and quality["nll"] == quality["nll_fp32"] > 0
