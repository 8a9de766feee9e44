"""The `livekv` command line: the language server, benchmarks and the demo."""

from __future__ import annotations

import os
import sys

# `python -m lsp_server.cli` puts the working folder first on sys.path, and editors start the server in the
# user's workspace: a workspace module named like a dependency (`tokenizers.py`) would run. Nothing is imported
# from there, as with `python -P` (only the editable install or site-packages provide livekv itself).
if not sys.flags.safe_path and sys.path and sys.path[0] == os.getcwd():
    del sys.path[0]
# Before anything imports huggingface_hub, which reads this once: no network at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import argparse  # the imports after the sys.path fix above
import ctypes
import importlib
import logging

# Before torch starts OpenMP, which reads these once. libgomp's threads spin after each parallel region; when
# another program holds a core (a laptop's browser, a build) a spinning thread starves the one its team waits
# for, at each of a pass's ~200 regions: in `livekv bench contention` PASSIVE (sleep at once) keeps the
# suggestion's time near its idle figure. A user's own setting of either variable wins.
OMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ.update(OMP_DEFAULTS)

BENCHMARKS = {
    "cache": "benchmarks.cache",
    "edits": "benchmarks.edits",
    "latency": "benchmarks.latency",
    "speed": "benchmarks.speed",
    "monitors": "benchmarks.monitors",
    "syntax": "benchmarks.syntax",
    "context": "benchmarks.context",
    "multiline": "benchmarks.multiline",
    "drafting": "benchmarks.drafting",
    "drafts": "benchmarks.drafts",
    "soak": "benchmarks.soak",
    "contention": "benchmarks.contention",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(
        prog="livekv",
        description="Code completion over a live, edit-patched KV cache (PIE).",
        epilog="`livekv <command> --help` describes each command's options "
        "(serve, complete, demo, "
        "bench cache|edits|latency|speed|monitors|syntax|context|multiline|drafting|drafts|soak|contention).",
    )
    ap.add_argument("--log-level", default="WARNING", help="logging level for stderr (default WARNING)")
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT instead (never other hosts)")
    serve.add_argument("--log-file", help="also write logs to this file")
    # add_help off: `livekv bench edits --help` reaches the suite's own parser, which lists its options
    bench = sub.add_parser("bench", help="reproducible measurements (JSON out, one table printed)", add_help=False)
    bench.add_argument(
        "suite",
        nargs="?",
        choices=list(BENCHMARKS),
        help="cache: the whole-document cache's cost per caret move, decode step and far edit; "
        "edits: update latency and next-line quality after edits, in the server's flow; "
        "latency: keystroke-to-suggestion through the real server in six editing flows, per update policy; "
        "speed: decode, draft-pass, prefill and PIE costs per weight format; "
        "monitors: the identifier after `obj.` with and without the jedi monitor; "
        "syntax: multi-line suggestions that keep the file parseable, with and without the syntax monitor; "
        "context: next lines that name other files' code, by cross-file chunking and rendering; "
        "multiline: the edit benchmark's next statements with multiline false, true and auto; "
        "drafting: decode speed with retrieval drafts against greedy and prompt lookup decoding; "
        "drafts: several inline drafts per request (branches, superposed, beam, greedy runs): cost and best-of-k; "
        "soak: a long seeded editing session through the server: cache invariants, memory, p95 latency; "
        "contention: suggestions while other processes hold the cores, per OpenMP wait policy",
    )
    sub.add_parser("complete", help="print suggestions at FILE --line L --col C (in-process, no editor)")
    sub.add_parser("demo", help="replay edits on a real file with the embedded model; print suggestions and timings")
    args, rest = ap.parse_known_args(argv)
    # Logs never go to stdout: in stdio mode it carries the protocol.
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if getattr(args, "log_file", None):
        handlers.append(logging.FileHandler(args.log_file))
    logging.basicConfig(
        level=args.log_level.upper(), handlers=handlers, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # pygls logs every message sent and received at INFO: suggestions and document texts. Only an
        # explicit --log-level DEBUG lets document text into the logs.
        logging.getLogger("pygls").setLevel(logging.WARNING)
    if args.command == "serve":
        if rest:
            ap.error(f"unrecognized arguments: {' '.join(rest)}")
        from lsp_server.server import build_server

        return_freed_memory()
        server = build_server()
        if args.tcp is not None:
            server.start_tcp("127.0.0.1", args.tcp)
        else:
            server.start_io()
        return 0
    if args.command == "bench":
        if args.suite is None:
            bench.print_help()
            return 0 if rest in ([], ["-h"], ["--help"]) else 2
        return importlib.import_module(BENCHMARKS[args.suite]).main(rest)
    if args.command == "complete":
        from lsp_server.complete import main as complete

        return complete(rest)
    from lsp_server.demo import main as demo

    return demo(rest)


MMAP_THRESHOLD = 1 << 20  # bytes: blocks this large get their own mapping, unmapped when freed


def return_freed_memory() -> None:
    """glibc raises its mmap threshold each time a large block is freed, after which freed KV buffers
    (10-35 MB each, as documents grow, are evicted and re-encoded) stay in the heap: in `bench soak`
    RSS climbed 67 MB over 3,000 events, and stays flat with the threshold fixed at 1 MiB
    (`M_MMAP_THRESHOLD`; a no-op without glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD (malloc.h); fixing it stops the dynamic raise


if __name__ == "__main__":
    sys.exit(main())
