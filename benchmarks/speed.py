"""Speed benchmark: how fast the runner decodes, verifies drafts, prefills and patches a cache.

For each weight format, in its own subprocess (so peak RSS is that format's alone):
per-token decode latency with 256/1k/4k tokens cached; the cost of one pass over
q = 1, 2, 4, 8, 16 tokens at 1k cached, relative to q = 1 (what draft verification
pays); prefill tokens/s at 512 and 2048; the PIE update of a one-line mid-file edit at
4k tokens (through `LiveDocument`, as the server does it); peak RSS; quality against fp32
on 512 tokens of `argparse.py` in one pass (next-token NLL, top-1 agreement). Inputs are real
Python (the standard library's own files). llama.cpp's figures for the same model on
this machine are printed beside them as given in the issue, or, with `--llamacpp DIR` (a
llama.cpp build), measured with its `llama-bench` on the same files in the same run.
`--shapes` adds real code models' shapes with random Q4_1 weights (`shapes.py`).

    livekv bench speed [--formats fp32 gguf ...] [--shapes qwen2-0.5b qwen2-1.5b] [--llamacpp DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.shapes import SHAPES, shape_config, shape_gguf
from completion.live.document import LiveDocument, TextEdit, UpdatePolicy
from completion.live.kvcache import KVCache
from completion.model.checkpoint import Checkpoint
from completion.model.engine import Engine
from completion.model.formats import FORMATS
from completion.model.loading import embedded_model_path, load_model
from completion.model.runner import CPU_ONLY_FORMATS, Runner

CACHED = (256, 1024, 4096)
PASS_SIZES = (1, 2, 4, 8, 16)
PREFILL = (512, 2048)
STEPS = 16  # decode steps timed per cache size
REPEATS = 5  # passes timed per size (minimum taken)
SLOW_PREFILL_S = 20.0  # a format slower than this at 512 tokens skips the 2048 prefill
LLAMA_CPP = {
    "format": "llama.cpp Q4_1 (issue figures)",
    "decode_ms": {"1024": 9.8},
    "prefill_tps": {"512": 258, "2048": 192},
}
SOURCES = ("argparse.py", "typing.py", "inspect.py", "textwrap.py")  # int8 calibrates on textwrap.py, not argparse
QUALITY_TOKENS = 512


def corpus(tokenizer: object, n: int) -> tuple[str, list[int]]:
    """At least n tokens of real Python from the standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((stdlib / name).read_text() for name in SOURCES)
    ids = tokenizer(text).input_ids  # type: ignore[operator]
    assert len(ids) >= n, (len(ids), n)
    return text, ids


def finished(device: torch.device) -> float:
    """The time once the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_decode(kv: KVCache, ids: list[int], cached: int) -> float:
    """Median ms per token of STEPS single-token passes after the first `cached` tokens of `kv`."""
    kv.crop(cached)
    times = []
    for tok in ids[cached : cached + STEPS]:
        t0 = time.perf_counter()
        kv.encode([tok], logits="last")
        times.append(finished(kv.runner.device) - t0)
    return 1000 * statistics.median(times)


def time_passes(kv: KVCache, ids: list[int], cached: int, sizes: Sequence[int] = PASS_SIZES) -> dict[str, float]:
    """ms of one pass over q tokens (all logits, as verification needs) after `cached` tokens of `kv`."""
    out = {}
    for q in sizes:
        times = []
        for _ in range(REPEATS):
            kv.crop(cached)
            t0 = time.perf_counter()
            kv.encode_scored(ids[cached : cached + q])
            times.append(finished(kv.runner.device) - t0)
        out[str(q)] = 1000 * min(times)
    return out


def time_prefill(runner: Runner, ids: list[int], n: int) -> float:
    kv = KVCache(runner)
    t0 = time.perf_counter()
    kv.encode(ids[:n], logits="last")
    return n / (finished(runner.device) - t0)


def time_runner(runner: Runner, ids: list[int], row: dict) -> None:
    """Prefill tokens/s, decode ms/token at each cached size and the pass costs at 1k, into `row`; a
    runner too slow to prefill 512 tokens in SLOW_PREFILL_S is measured up to 1k cached tokens only."""
    row["prefill_tps"] = {}
    for n in PREFILL:
        row["prefill_tps"][str(n)] = time_prefill(runner, ids, n)
        if n / row["prefill_tps"][str(n)] > SLOW_PREFILL_S:
            row["skipped"] = f"prefill of {n} tokens took over {SLOW_PREFILL_S:.0f} s: no longer contexts measured"
            break
    cached = [n for n in CACHED if "skipped" not in row or n <= 1024]
    kv = KVCache(runner)
    kv.encode(ids[: max(cached) + STEPS])
    decode = {}
    for n in sorted(cached, reverse=True):  # each measurement crops the cache shorter
        if n == 1024:
            passes = time_passes(kv, ids, 1024)
        decode[str(n)] = time_decode(kv, ids, n)
    row["decode_ms"] = {str(n): decode[str(n)] for n in cached}
    row["pass_ms_at_1024"] = passes
    row["pass_ratio_at_1024"] = {q: ms / passes["1"] for q, ms in passes.items()}


def time_pie_edit(engine: Engine, text: str, tokens: int, full: bool) -> dict[str, float]:
    """A one-line insertion in the middle of a `tokens`-token document and the request at its end (the
    logits after the prompt, as a suggestion needs): PIE, and a full re-encode of the prompt."""
    ids = engine.tokenizer(text).input_ids
    doc = engine.tokenizer.decode(ids[: tokens - 1])
    doc = doc[: doc.rfind("\n") + 1]
    mid = doc.find("\n", len(doc) // 2) + 1
    line = doc[mid : doc.find("\n", mid) + 1]  # the next line again: a realistic, in-style insertion
    out = {}
    for policy in (UpdatePolicy.PIE, UpdatePolicy.FULL) if full else (UpdatePolicy.PIE,):
        live = LiveDocument(engine, doc, fim=False, window=tokens + 512, policy=policy)
        live.prompt_logits()  # the request before the edit
        t0 = finished(engine.runner.device)
        live.apply_edits([TextEdit(mid, mid, line)])
        live.prompt_logits()
        out[policy.value] = 1000 * (finished(engine.runner.device) - t0)
        out["tokens"] = len(live.tokens)
    return out


def quality_vs_fp32(runner: Runner, reference: Runner, ids: list[int]) -> dict[str, float]:
    """Next-token NLL of the first QUALITY_TOKENS tokens, and how often the top-1 token equals fp32's."""
    got = KVCache(runner).encode_scored(ids[:QUALITY_TOKENS])
    want = KVCache(reference).encode_scored(ids[:QUALITY_TOKENS])
    targets = torch.tensor(ids[1 : QUALITY_TOKENS + 1], device=runner.device)
    return {
        "nll": torch.nn.functional.cross_entropy(got, targets).item(),
        "nll_fp32": torch.nn.functional.cross_entropy(want, targets).item(),
        "top1_same_as_fp32": (got.argmax(-1) == want.argmax(-1)).float().mean().item(),
    }


def measure(weights: str, threads: int, device: str) -> dict:
    """Every figure for one format of the embedded model."""
    loaded = load_model(threads=threads)
    engine = Engine.from_loaded(loaded, weights, device)
    text, ids = corpus(engine.tokenizer, max(CACHED) + STEPS + 64)
    row: dict = {"format": engine.runner.weight_format, "setting": weights, "threads": threads, "device": device}
    t0 = time.perf_counter()
    time_runner(engine.runner, ids, row)
    if "skipped" not in row:
        row["pie_edit_4k_ms"] = time_pie_edit(engine, text, 4096, full=True)
    row["seconds"] = time.perf_counter() - t0
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["quality"] = quality_vs_fp32(engine.runner, Runner(loaded.model, "fp32", device), ids)  # after the RSS reading
    return row


def measure_shape(name: str, threads: int) -> dict:
    """A real code model's shape with random Q4_1 weights (`shapes.py`), on its own blocks (the default
    for a GGUF). Token ids are random: the weights are. No PIE edit or quality (they need a tokenizer
    and trained weights)."""
    torch.set_num_threads(threads)
    path = shape_gguf(name)
    runner = Runner(Checkpoint.from_gguf(path, shape_config(name)), "gguf")
    ids = torch.randint(0, runner.vocab_size, (max(CACHED) + STEPS + 64,), generator=torch.Generator().manual_seed(0))
    row: dict = {"format": f"gguf {name}", "shape": name, "threads": threads, "file_mb": path.stat().st_size / 2**20}
    t0 = time.perf_counter()
    time_runner(runner, ids.tolist(), row)
    row["seconds"] = time.perf_counter() - t0
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["rss_over_file"] = row["peak_rss_mb"] / row["file_mb"]
    return row


def llama_bench(where: Path, gguf: Path, threads: int, label: str) -> dict:
    """llama.cpp's own `llama-bench` on the same file in the same run: prefill of 512 tokens, and
    decode of STEPS tokens after 0 and 1024 cached (`-d`)."""
    exe = next((p for p in (where / "bin" / "llama-bench", where / "llama-bench") if p.is_file()), None)
    if exe is None:
        raise FileNotFoundError(f"no llama-bench under {where} (or {where}/bin)")
    runs = []
    for args in (["-p", "512", "-n", "0"], ["-p", "0", "-n", str(STEPS)], ["-p", "0", "-n", str(STEPS), "-d", "1024"]):
        cmd = [str(exe), "-m", str(gguf), "-t", str(threads), "-r", "3", "-o", "json", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout)[0])
    return {
        "format": f"llama.cpp {label}",
        "threads": threads,
        "prefill_tps": {"512": runs[0]["avg_ts"]},
        "decode_ms": {"0": 1000 / runs[1]["avg_ts"], "1024": 1000 / runs[2]["avg_ts"]},
        "command": " ".join(cmd[:-6]) + " ...",
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    print(
        "| format | decode ms/token @256 / 1k / 4k | pass cost q=2/4/8/16 vs q=1 @1k | prefill tok/s @512 / 2048 "
        "| PIE edit @4k ms (full) | peak RSS MB | NLL (fp32) / top-1 = fp32 % |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d, p = r["decode_ms"], r.get("pass_ratio_at_1024", {})
        pre, pie, qual = r.get("prefill_tps", {}), r.get("pie_edit_4k_ms", {}), r.get("quality", {})
        top1 = qual.get("top1_same_as_fp32")
        print(
            f"| {r['format']} | {' / '.join(fmt(d.get(str(n)), '.1f') for n in CACHED)} "
            f"| {' / '.join(fmt(p.get(str(q)), '.2f') for q in PASS_SIZES[1:])} "
            f"| {' / '.join(fmt(pre.get(str(n)), '.0f') for n in PREFILL)} "
            f"| {fmt(pie.get('pie'), '.0f')} ({fmt(pie.get('full'), '.0f')}) | {fmt(r.get('peak_rss_mb'), '.0f')} "
            f"| {fmt(qual.get('nll'), '.3f')} ({fmt(qual.get('nll_fp32'), '.3f')}) / "
            f"{fmt(None if top1 is None else 100 * top1, '.1f')} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--formats", nargs="*", default=None, choices=FORMATS, help="default: every format the device runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (formats with CPU kernels only are refused)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--shapes", nargs="*", default=[], choices=sorted(SHAPES), help="real code models' shapes too")
    ap.add_argument("--llamacpp", type=Path, default=None, help="a llama.cpp build: time llama-bench on the same files")
    ap.add_argument("--one", choices=FORMATS, help=argparse.SUPPRESS)  # internal: measure one format, print JSON
    ap.add_argument("--one-shape", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        torch.manual_seed(0)
        print(json.dumps(measure(args.one, args.threads, args.device)))
        return 0
    if args.one_shape:
        print(json.dumps(measure_shape(args.one_shape, args.threads)))
        return 0
    on_cpu = torch.device(args.device).type == "cpu"
    formats = args.formats or [f for f in FORMATS if on_cpu or f not in CPU_ONLY_FORMATS]
    jobs = [("--one", w, ["--device", args.device]) for w in formats] + [("--one-shape", s, []) for s in args.shapes]
    rows = []
    for flag, what, extra in jobs:
        cmd = [sys.executable, "-m", "benchmarks.speed", flag, what, "--threads", str(args.threads), *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        if done.returncode != 0:
            print(f"{what}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{what}: {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    references = [LLAMA_CPP]
    if args.llamacpp is not None:
        references = [llama_bench(args.llamacpp, embedded_model_path(), args.threads, "Q4_1 embedded")]
        references += [llama_bench(args.llamacpp, shape_gguf(s), args.threads, f"Q4_1 {s}") for s in args.shapes]
    print_table([*rows, *references])
    print_ratios(rows, references)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "reference": references}, indent=1))
    return 0


def print_ratios(rows: list[dict], references: list[dict]) -> None:
    """Each block-format row against llama.cpp on the same file: decode at 1k and prefill at 512."""
    by_label = {r["format"].removeprefix("llama.cpp Q4_1 "): r for r in references if "command" in r}
    for row in rows:
        label = row.get("shape") or ("embedded" if row["format"] == "gguf" else None)
        ref = by_label.get(label or "")
        if ref is None:
            continue
        decode = row["decode_ms"]["1024"] / ref["decode_ms"]["1024"]
        prefill = row["prefill_tps"]["512"] / ref["prefill_tps"]["512"]
        rss = f", peak RSS {row['rss_over_file']:.2f}x the file" if "rss_over_file" in row else ""
        print(f"{row['format']}: decode @1k {decode:.2f}x llama.cpp's time, prefill @512 {prefill:.2f}x its speed{rss}")


if __name__ == "__main__":
    sys.exit(main())
