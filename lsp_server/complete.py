"""`livekv complete FILE --line L --col C`: suggestions at one place in a file, without an editor.

Runs the server's engine session in-process, with the server's default settings but for the
flags given (the JSON records them all, with monitors and drafting): loads the model, encodes the
file up to the position, and prints the inline draft(s) and popup items there with their timings
(or one JSON object with `--json`). Lines and columns are 1-based characters, as editors show them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from completion.model.formats import WEIGHT_CHOICES
from completion.session import EngineSession
from completion.settings import Settings


def offset_of(text: str, line: int, col: int) -> int:
    """Offset of 1-based (line, col); ValueError naming the bad value when it is outside the file."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is outside the file (1..{len(lines)})")
    if not 1 <= col <= len(lines[line - 1]) + 1:
        raise ValueError(f"column {col} is outside line {line} (1..{len(lines[line - 1]) + 1})")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col - 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv complete", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--line", type=int, required=True, help="1-based line")
    ap.add_argument("--col", type=int, required=True, help="1-based column (characters)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--multiline", action="store_true", help="complete to the end of the block")
    ap.add_argument("--drafts", type=int, default=1, help="inline drafts (default 1)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--model", default=None, help="model path (default: the embedded model)")
    ap.add_argument("--weights", default="auto", choices=WEIGHT_CHOICES, help="weight format (default auto)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        text = args.file.read_text(encoding="utf-8")
        cursor = offset_of(text, args.line, args.col)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        print(f"livekv complete: {err}", file=sys.stderr)
        return 2
    settings = Settings(
        model_path=args.model,
        threads=args.threads,
        weights=args.weights,
        device=args.device,
        max_tokens=args.max_tokens,
        multiline=args.multiline,
        drafts=args.drafts,
    )
    session = EngineSession(settings)
    t0 = time.perf_counter()
    session.load()
    if session.load_error:
        print(f"livekv complete: {session.load_error}", file=sys.stderr)
        return 2
    load_s = time.perf_counter() - t0
    uri = args.file.resolve().as_uri()
    session.workspace.roots = [str(args.file.resolve().parent)]
    t0 = time.perf_counter()
    session.open(uri, text)
    prompt_tokens = session.warm(uri, cursor)
    encode_s = time.perf_counter() - t0
    answer = session.complete(uri, cursor)
    t0 = time.perf_counter()
    items = session.popup(uri, cursor) or []
    popup_s = time.perf_counter() - t0
    drafts = answer.drafts if answer else []
    result = {
        "model": session.model_name,
        "settings": asdict(settings),
        "prompt_tokens": prompt_tokens,
        "load_seconds": load_s,
        "encode_seconds": encode_s,
        "items": [asdict(i) for i in answer.items] if answer else [],
        "drafts": [asdict(d) for d in drafts],
        "popup": [asdict(i) for i in items],
        "popup_seconds": popup_s,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{session.model_name}: loaded in {load_s:.1f}s; {prompt_tokens} prompt tokens encoded in {encode_s:.1f}s")
    for d in drafts:
        print(f"inline ({1000 * d.first_token_seconds:.0f} ms to first token, {1000 * d.seconds:.0f} ms): {d.text!r}")
    if not drafts:
        print("inline: (nothing worth showing)")
    print(f"popup ({1000 * popup_s:.0f} ms): " + ", ".join(i.label for i in items))
    return 0
