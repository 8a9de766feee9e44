"""Contention benchmark: the server's suggestions when other programs hold the laptop's cores, per OpenMP wait
policy.

A laptop running an editor also runs a browser, a build, a test run. The runner's CPU kernels and torch's ops
run in one OpenMP team of `threads` threads (2 by default); after each parallel region libgomp's threads spin
(by default ~300,000 times) waiting for the next. When another process holds a core, a spinning thread keeps it
from the thread the region waits for, and every one of a forward pass's ~200 regions waits a scheduler slice.
This measures the engine session's own path (`EngineSession`, the server's defaults) in a fresh process per
cell, so the policy is read when torch starts:

- open → first suggestion: a ~1,500-character standard-library file opened and asked at the end of its last
  line (the prompt encoded, then the suggestion decoded), as the first ghost text after opening a file;
- keystroke → suggestion: one character typed at the caret, then the suggestion there (median of 6);
- prefill: a 1,000-token document's prompt encoded (`warm`), ms per token;

under each load (`idle`; `1 busy`, `2 busy`: that many processes spinning on a core each, started before the
cell and stopped after it) and each wait policy: `default` (libgomp's own: spin, then sleep), `passive`
(`OMP_WAIT_POLICY=PASSIVE`: sleep at once) and `spin-10k` (`GOMP_SPINCOUNT=10000`; `spin-100k` on request).
The policy `livekv` sets for the server when the environment sets none is the row marked (the server). The
targets: under `1 busy`, the server's keystroke → suggestion at most 1.5x its idle figure; idle, within 10%
of `default`'s.

    livekv bench contention [--loads 0 1 2] [--policies default passive spin-10k] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from benchmarks.common import target_row, write_json

POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin-10k": {"GOMP_SPINCOUNT": "10000"},
    "spin-100k": {"GOMP_SPINCOUNT": "100000"},
}
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SOURCE = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
KEYSTROKES = 6


def server_policy() -> str:
    """The policy `livekv` (lsp_server/cli.py) sets when the environment sets none."""
    from lsp_server.cli import OMP_DEFAULTS

    return next(name for name, env in POLICIES.items() if env == OMP_DEFAULTS)


def measure_here(keystrokes: int) -> dict[str, float]:
    """In this process (its OpenMP policy already fixed): the three figures of one cell."""
    from completion.live.document import TextEdit
    from completion.session import EngineSession
    from completion.settings import Settings

    session = EngineSession(Settings())
    session.load()
    if session.load_error:
        raise SystemExit(f"model not loaded: {session.load_error}")
    assert session.monitors is not None
    session.monitors.analyzer.warm_up().result()
    full = SOURCE.read_text()
    text = full[: full.index("\n", 1500) + 1]
    uri = "file:///contention/first.py"
    session.open(uri, text)
    t = time.perf_counter()
    session.complete(uri, len(text) - 1)
    first = time.perf_counter() - t
    caret, typed = len(text) - 1, []
    for i in range(keystrokes):
        char = "x" if i % 2 == 0 else "\b"
        if char == "x":
            text, caret = text[:caret] + "x" + text[caret:], caret + 1
            session.change(uri, [TextEdit(caret - 1, caret - 1, "x")], text)
        else:
            text, caret = text[: caret - 1] + text[caret:], caret - 1
            session.change(uri, [TextEdit(caret, caret + 1, "")], text)
        t = time.perf_counter()
        session.complete(uri, caret)
        typed.append(time.perf_counter() - t)
    long_uri, long_text = "file:///contention/long.py", full
    session.open(long_uri, long_text)
    tokens_before = session.warm(long_uri, 0)
    t = time.perf_counter()
    tokens = session.warm(long_uri, min(len(long_text), 4000)) - tokens_before
    prefill = time.perf_counter() - t
    session.shutdown()
    return {
        "first_suggestion_s": round(first, 3),
        "keystroke_ms_p50": round(1000 * statistics.median(typed), 1),
        "prefill_ms_per_token": round(1000 * prefill / max(tokens, 1), 2),
        "prefill_tokens": tokens,
    }


def measure(policy: str, load: int, keystrokes: int) -> dict[str, Any]:
    """One cell in a fresh process under `policy`'s environment, with `load` busy processes beside it."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    env |= POLICIES[policy]  # `python -m benchmarks.contention` never runs lsp_server/cli.py's default
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.contention", "--one", str(keystrokes)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
    finally:
        for process in busy:
            process.kill()
            process.wait()
    return {"policy": policy, "load": load, **json.loads(out.stdout.strip().splitlines()[-1])}


def table(result: dict[str, Any]) -> str:
    """Per load and policy: open → first suggestion, keystroke → suggestion, prefill; then the targets."""
    server = result["server_policy"]
    lines = [
        "| load | OpenMP wait policy | open → first suggestion (s) | keystroke → suggestion p50 (ms) "
        "| prefill (ms/token) |",
        "|---|---|---|---|---|",
    ]
    cells = {(c["load"], c["policy"]): c for c in result["cells"]}
    for c in result["cells"]:
        name = f"{c['policy']} (the server)" if c["policy"] == server else c["policy"]
        load = "idle" if c["load"] == 0 else f"{c['load']} busy"
        lines.append(
            f"| {load} | {name} | {c['first_suggestion_s']} | {c['keystroke_ms_p50']} | {c['prefill_ms_per_token']} |"
        )
    idle, busy, base = cells.get((0, server)), cells.get((1, server)), cells.get((0, "default"))
    if idle and busy:
        ratio = busy["keystroke_ms_p50"] / idle["keystroke_ms_p50"]
        lines.append(target_row(5, "1 busy core: keystroke → suggestion ≤ 1.5x idle", f"{ratio:.2f}x", ratio <= 1.5))
    if idle and base:
        ratio = idle["keystroke_ms_p50"] / base["keystroke_ms_p50"]
        lines.append(target_row(5, "idle: within 10% of libgomp's default", f"{ratio:.2f}x", ratio <= 1.1))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench contention", description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", nargs="*", type=int, default=[0, 1, 2], help="busy processes beside the server")
    ap.add_argument("--policies", nargs="*", default=["default", "passive", "spin-10k"], choices=list(POLICIES))
    ap.add_argument("--keystrokes", type=int, default=KEYSTROKES)
    ap.add_argument("--quick", action="store_true", help="a smoke run: idle and 1 busy, default and passive")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a cell's own process
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_here(args.one)))
        return 0
    if args.quick:
        args.loads, args.policies, args.keystrokes = [0, 1], ["default", "passive"], 2
    cells = []
    for load in args.loads:
        for policy in args.policies:
            cells.append(measure(policy, load, args.keystrokes))
            print(json.dumps(cells[-1]), file=sys.stderr, flush=True)
    result = json.loads(json.dumps({"server_policy": server_policy(), "source": str(SOURCE), "cells": cells}))
    write_json(args.json, "contention", **result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
