"""What several benchmarks share: `--set KEY=JSON` server settings, percentiles, the JSON written."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def setting(arg: str) -> tuple[str, Any]:
    """`--set maxTokens=8`: a setting's camelCase key and its JSON value."""
    key, sep, value = arg.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{arg!r}: expected KEY=JSON")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{arg!r}: the value is not JSON ({err})") from None


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method); the value itself for a single sample."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def write_json(path: str | Path | None, benchmark: str, **payload: Any) -> None:
    """A benchmark's results as JSON at `path` (nothing when None), named by `benchmark`."""
    if path is not None:
        Path(path).write_text(json.dumps({"benchmark": benchmark, **payload}, indent=2))
