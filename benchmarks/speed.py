"""Speed benchmark: how fast the runner decodes, verifies drafts, prefills and patches a cache.

For each weight format (default: `gguf`, the embedded model's own blocks and the server's
default, and `fp32`, the reference of the targets), in its own subprocess (so peak RSS is that
format's alone): per-token decode latency with 0 (an empty context, as `llama-bench`'s tg
figure), 256, 1k and 4k tokens cached; the cost of one pass over q = 1, 2, 4, 8, 16 tokens at
1k cached, relative to q = 1 (what draft verification pays); prefill tokens/s at 512 and 2048;
a one-line mid-file edit at 4k tokens through `LiveDocument`, as the server does it, timed
from the edit to ready to decode: the patch and the last-token pass that gives the logits
after the prompt (`prompt_logits`), the first thing a suggestion needs (PIE, and a full
re-encode of the prompt for comparison); peak RSS; quality against fp32 on 512 tokens of
`argparse.py` in one pass (next-token NLL, top-1 agreement). Inputs are real Python (the
standard library's own files). `--shapes` adds real code models' shapes with random Q4_1
weights (`shapes.py`).

llama.cpp for reference: with `--llamacpp DIR` (a llama.cpp build), its `llama-bench` on the
same files in the same run (decode after 0 and 1024 cached tokens, prefill of 512). Without
it, the figures recorded in issue 10's text (`LLAMA_CPP_RECORDED`: a hard-coded constant,
measured there with an empty context), shown only in the columns where they were measured and
never judged against a target. `--quick`: the gguf format alone at small sizes.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import write_json
from benchmarks.shapes import SHAPES, shape_config, shape_gguf
from completion.live.document import LiveDocument, TextEdit, UpdatePolicy
from completion.live.kvcache import KVCache
from completion.model.checkpoint import Checkpoint
from completion.model.engine import Engine
from completion.model.formats import FORMATS
from completion.model.loading import embedded_model_path, load_model
from completion.model.runner import CPU_ONLY_FORMATS, Runner
from completion.settings import Settings

CACHED = (0, 256, 1024, 4096)
PASS_SIZES = (1, 2, 4, 8, 16)
PREFILL = (512, 2048)
STEPS = 16  # decode steps timed per cache size
REPEATS = 5  # passes timed per size (minimum taken)
SLOW_PREFILL_S = 20.0  # a format slower than this at 512 tokens skips the 2048 prefill
DEFAULT_FORMATS = ("gguf", "fp32")
# Not measured here: the figures issue 10's text gives for llama.cpp on this machine (llama-bench, Q4_1 of the
# embedded model): tg64 at 102 tokens/s from an empty context, pp512 258 and pp2048 192 tokens/s.
LLAMA_CPP_RECORDED = {
    "format": "llama.cpp Q4_1 (recorded in issue 10, not measured here)",
    "measured": False,
    "source": "issue 10's text: llama-bench tg64 (empty context) 102 tok/s = 9.8 ms; pp512 258, pp2048 192 tok/s",
    "decode_ms": {"0": 9.8},
    "prefill_tps": {"512": 258, "2048": 192},
}
SOURCES = ("argparse.py", "typing.py", "inspect.py", "textwrap.py")  # int8 calibrates on textwrap.py, not argparse


@dataclass(frozen=True)
class Sizes:
    """What is measured: cached sizes for decode, the cached size and q's of the pass costs, prefill sizes, the
    edited document's tokens, the tokens of the quality check."""

    cached: tuple[int, ...] = CACHED
    pass_at: int = 1024
    passes: tuple[int, ...] = PASS_SIZES
    prefill: tuple[int, ...] = PREFILL
    edit_tokens: int = 4096
    quality_tokens: int = 512


FULL = Sizes()
QUICK = Sizes(cached=(0, 256), pass_at=256, passes=(1, 8), prefill=(256,), edit_tokens=512, quality_tokens=128)


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


def time_runner(runner: Runner, ids: list[int], row: dict, sizes: Sizes = FULL) -> None:
    """Prefill tokens/s, decode ms/token at each cached size and the pass costs at `sizes.pass_at`, into
    `row`; a runner too slow to prefill 512 tokens in SLOW_PREFILL_S is measured up to 1k cached tokens only."""
    row["prefill_tps"] = {}
    for n in sizes.prefill:
        row["prefill_tps"][str(n)] = time_prefill(runner, ids, n)
        if n / row["prefill_tps"][str(n)] > SLOW_PREFILL_S:
            row["skipped"] = f"prefill of {n} tokens took over {SLOW_PREFILL_S:.0f} s: no longer contexts measured"
            break
    cached = [n for n in sizes.cached if "skipped" not in row or n <= 1024]
    kv = KVCache(runner)
    kv.encode(ids[: max(*cached, sizes.pass_at) + max(STEPS, *sizes.passes)])
    decode = {}
    for n in sorted({*cached, sizes.pass_at}, reverse=True):  # each measurement crops the cache shorter
        if n == sizes.pass_at:
            passes = time_passes(kv, ids, n, sizes.passes)
        if n in cached:
            decode[str(n)] = time_decode(kv, ids, n)
    row["decode_ms"] = {str(n): decode[str(n)] for n in cached}
    row[f"pass_ms_at_{sizes.pass_at}"] = passes
    row[f"pass_ratio_at_{sizes.pass_at}"] = {q: ms / passes["1"] for q, ms in passes.items()}


def time_pie_edit(engine: Engine, text: str, tokens: int, full: bool) -> dict[str, float]:
    """A one-line insertion in the middle of a `tokens`-token document, timed from the edit to ready to
    decode at its end: the patch, then the logits after the prompt (the prompt's last token run again,
    the first thing a suggestion needs); PIE, and a full re-encode of the prompt (`full`). Also the patch
    alone (`pie_patch`) and the tokens run for the logits after it (`pie_ready_tokens`: at least 1)."""
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
        patched = finished(engine.runner.device)
        requests = live.counts.requests
        live.prompt_logits()
        out[policy.value] = 1000 * (finished(engine.runner.device) - t0)
        if policy is UpdatePolicy.PIE:
            out["pie_patch"] = 1000 * (patched - t0)
            out["pie_ready_tokens"] = live.counts.requests - requests
        out["tokens"] = len(live.tokens)
    return out


def quality_vs_fp32(runner: Runner, reference: Runner, ids: list[int], tokens: int = 512) -> dict[str, float]:
    """Next-token NLL of the first `tokens` tokens, and how often the top-1 token equals fp32's."""
    got = KVCache(runner).encode_scored(ids[:tokens])
    want = KVCache(reference).encode_scored(ids[:tokens])
    targets = torch.tensor(ids[1 : tokens + 1], device=runner.device)
    return {
        "nll": torch.nn.functional.cross_entropy(got, targets).item(),
        "nll_fp32": torch.nn.functional.cross_entropy(want, targets).item(),
        "top1_same_as_fp32": (got.argmax(-1) == want.argmax(-1)).float().mean().item(),
    }


def measure(weights: str, threads: int, device: str, sizes: Sizes = FULL) -> dict:
    """Every figure for one format of the embedded model."""
    loaded = load_model(threads=threads)
    engine = Engine.from_loaded(loaded, weights, device)
    text, ids = corpus(engine.tokenizer, max(*sizes.cached, sizes.edit_tokens) + STEPS + 64)
    row: dict = {"format": engine.runner.weight_format, "setting": weights, "threads": threads, "device": device}
    t0 = time.perf_counter()
    time_runner(engine.runner, ids, row, sizes)
    if "skipped" not in row:
        row["edit_to_ready_ms"] = time_pie_edit(engine, text, sizes.edit_tokens, full=True)
    row["seconds"] = time.perf_counter() - t0
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reference = Runner(loaded.model, "fp32", device)  # after the RSS reading
    row["quality"] = quality_vs_fp32(engine.runner, reference, ids, sizes.quality_tokens)
    return row


def measure_shape(name: str, threads: int, sizes: Sizes = FULL) -> dict:
    """A real code model's shape with random Q4_1 weights (`shapes.py`), on its own blocks (the default
    for a GGUF). Token ids are random: the weights are. No PIE edit or quality (they need a tokenizer
    and trained weights)."""
    torch.set_num_threads(threads)
    path = shape_gguf(name)
    runner = Runner(Checkpoint.from_gguf(path, shape_config(name)), "gguf")
    n = max(*sizes.cached, *sizes.prefill) + STEPS + 64
    ids = torch.randint(0, runner.vocab_size, (n,), generator=torch.Generator().manual_seed(0))
    row: dict = {"format": f"gguf {name}", "shape": name, "threads": threads, "file_mb": path.stat().st_size / 2**20}
    t0 = time.perf_counter()
    time_runner(runner, ids.tolist(), row, sizes)
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
        "measured": True,
        "threads": threads,
        "prefill_tps": {"512": runs[0]["avg_ts"]},
        "decode_ms": {"0": 1000 / runs[1]["avg_ts"], "1024": 1000 / runs[2]["avg_ts"]},
        "command": " ".join(cmd[:-6]) + " ...",
    }


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def targets(row: dict, rows: list[dict], references: list[dict]) -> list[tuple[str, bool | None]]:
    """Issue 21's targets that apply to `row` (the embedded model's default format, the 1.5B shape), each with
    met (True), missed (False) or n/a (None: a figure it needs was not measured in this run). llama.cpp
    targets are judged only against llama.cpp measured in the same run, at the same context."""
    measured = {r["format"].removeprefix("llama.cpp Q4_1 "): r for r in references if r.get("measured")}
    decode, prefill = row.get("decode_ms", {}), row.get("prefill_tps", {})

    def at_most(value: float | None, bound: float | None) -> bool | None:
        return None if value is None or bound is None else value <= bound

    if row.get("setting") == "gguf":
        ref = measured.get("embedded", {})
        fp32 = next((r for r in rows if r.get("setting") == "fp32"), {})
        both = [n for n in prefill if n in fp32.get("prefill_tps", {})]
        quality = row.get("quality", {})
        return [
            ("decode @1k <= 12 ms", at_most(decode.get("1024"), 12)),
            ("decode @1k <= llama.cpp's @1k", at_most(decode.get("1024"), ref.get("decode_ms", {}).get("1024"))),
            ("q=8 pass <= 1.5x q=1 @1k", at_most(row.get("pass_ratio_at_1024", {}).get("8"), 1.5)),
            (
                "prefill >= fp32's",
                all(prefill[n] >= fp32["prefill_tps"][n] for n in both) if both else None,
            ),
            (
                "top-1 = fp32 >= 99.5%, NLL within 0.2%",
                None
                if not quality
                else quality["top1_same_as_fp32"] >= 0.995 and quality["nll"] <= 1.002 * quality["nll_fp32"],
            ),
        ]
    if row.get("shape") == "qwen2-1.5b":
        ref = measured.get("qwen2-1.5b", {})
        ref_decode, ref_prefill = ref.get("decode_ms", {}).get("1024"), ref.get("prefill_tps", {}).get("512")
        return [
            ("decode @1k <= 1.2x llama.cpp's", at_most(decode.get("1024"), ref_decode and 1.2 * ref_decode)),
            (
                "prefill @512 >= 2x llama.cpp's",
                None if ref_prefill is None or "512" not in prefill else prefill["512"] >= 2 * ref_prefill,
            ),
            ("peak RSS <= 1.5x the file", at_most(row.get("rss_over_file"), 1.5)),
        ]
    return []


def table(result: dict[str, Any]) -> str:
    """The rows and references of a run as a markdown table, from the JSON it wrote; a reference shows
    only the figures it has (a recorded one: decode from an empty context), others n/a."""
    rows, references = result["rows"], result["reference"]
    sizes = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["sizes"].items()})
    cached, prefill, passes = [str(n) for n in sizes.cached], [str(n) for n in sizes.prefill], sizes.passes[1:]
    header = (
        f"| format | decode ms/token @{' / '.join(cached)} | pass cost q={'/'.join(map(str, passes))} vs q=1 "
        f"@{sizes.pass_at} | prefill tok/s @{' / '.join(prefill)} | edit to ready to decode @{sizes.edit_tokens} "
        "ms: PIE (full) | peak RSS MB | NLL (fp32) / top-1 = fp32 % | target | met |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in [*rows, *references]:
        d, p = r.get("decode_ms", {}), r.get(f"pass_ratio_at_{sizes.pass_at}", {})
        pre, edit, qual = r.get("prefill_tps", {}), r.get("edit_to_ready_ms", {}), r.get("quality", {})
        top1 = qual.get("top1_same_as_fp32")
        judged = targets(r, rows, references)
        lines.append(
            f"| {r['format']} | {' / '.join(fmt(d.get(n), '.1f') for n in cached)} "
            f"| {' / '.join(fmt(p.get(str(q)), '.2f') for q in passes)} "
            f"| {' / '.join(fmt(pre.get(n), '.0f') for n in prefill)} "
            f"| {fmt(edit.get('pie'), '.0f')} ({fmt(edit.get('full'), '.0f')}) | {fmt(r.get('peak_rss_mb'), '.0f')} "
            f"| {fmt(qual.get('nll'), '.3f')} ({fmt(qual.get('nll_fp32'), '.3f')}) / "
            f"{fmt(None if top1 is None else 100 * top1, '.1f')} "
            f"| {'; '.join(name for name, _ in judged) or '-'} "
            f"| {'; '.join('n/a' if ok is None else 'met' if ok else 'missed' for _, ok in judged) or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench speed", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--formats", nargs="*", default=None, choices=FORMATS, help="default: gguf and fp32 (--quick: gguf)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (formats with CPU kernels only are refused)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--shapes", nargs="*", default=[], choices=sorted(SHAPES), help="real code models' shapes too")
    ap.add_argument("--llamacpp", type=Path, default=None, help="a llama.cpp build: time llama-bench on the same files")
    ap.add_argument("--quick", action="store_true", help="smoke size: one format (gguf), small sizes, no shapes")
    ap.add_argument("--one", choices=FORMATS, help=argparse.SUPPRESS)  # internal: measure one format, print JSON
    ap.add_argument("--one-shape", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.one:
        torch.manual_seed(0)
        print(json.dumps(measure(args.one, args.threads, args.device, sizes)))
        return 0
    if args.one_shape:
        print(json.dumps(measure_shape(args.one_shape, args.threads, sizes)))
        return 0
    on_cpu = torch.device(args.device).type == "cpu"
    default = ("gguf",) if args.quick else DEFAULT_FORMATS
    formats = args.formats or [f for f in default if on_cpu or f not in CPU_ONLY_FORMATS]
    shapes = [] if args.quick else args.shapes
    quick = ["--quick"] if args.quick else []
    jobs = [("--one", w, ["--device", args.device]) for w in formats] + [("--one-shape", s, []) for s in shapes]
    rows = []
    for flag, what, extra in jobs:
        cmd = [sys.executable, "-m", "benchmarks.speed", flag, what, "--threads", str(args.threads), *extra, *quick]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        if done.returncode != 0:
            print(f"{what}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{what}: {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    references: list[dict] = [LLAMA_CPP_RECORDED]
    if args.llamacpp is not None:
        references = [llama_bench(args.llamacpp, embedded_model_path(), args.threads, "Q4_1 embedded")]
        references += [llama_bench(args.llamacpp, shape_gguf(s), args.threads, f"Q4_1 {s}") for s in shapes]
    payload = {"sizes": asdict(sizes), "rows": rows, "reference": references}
    result = json.loads(json.dumps({"benchmark": "speed", **payload}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, "speed", settings=Settings(threads=args.threads, device=args.device), **payload)
        result = json.loads(args.json.read_text())
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
