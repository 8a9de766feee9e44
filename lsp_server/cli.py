"""The `livekv` command line: benchmarks and the demo (the server arrives with its own issue)."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(
        prog="livekv",
        description="Code completion over a live, edit-patched KV cache (PIE).",
        epilog="`livekv bench edits --help` and `livekv demo --help` describe each command.",
    )
    ap.add_argument("--log-level", default="WARNING", help="logging level for stderr (default WARNING)")
    sub = ap.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="reproducible measurements (JSON out, one table printed)")
    bench.add_argument("suite", choices=["edits"], help="edits: update latency and next-line quality after edits")
    sub.add_parser("demo", help="replay edits on a real file with the embedded model; print suggestions and timings")
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "bench":
        from benchmarks.edits import main as bench_edits

        return bench_edits(rest)
    from lsp_server.demo import main as demo

    return demo(rest)


if __name__ == "__main__":
    sys.exit(main())
