"""`livekv complete FILE --line L --col C`: suggestions at one place in a file, without an editor.

Runs the same engine as the server in-process: loads the model, encodes the file, and
prints the inline draft(s) and popup items at the position with their timings (or one
JSON object with `--json`). Lines and columns are 1-based characters, as editors show them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from completion.decoding.suggest import CompletionOptions, inline, popup
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.formats import FORMATS
from completion.model.loading import ModelLoadError, load_model
from completion.model.vocab import Vocabulary


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
    ap.add_argument("--weights", default="fp32", choices=FORMATS, help="weight format (default fp32)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        text = args.file.read_text(encoding="utf-8")
        cursor = offset_of(text, args.line, args.col)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        print(f"livekv complete: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        loaded = load_model(args.model, threads=args.threads)
        engine = Engine.from_loaded(loaded, args.weights, args.device)
    except (ModelLoadError, ValueError, RuntimeError) as err:
        print(f"livekv complete: {err}", file=sys.stderr)
        return 2
    vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    doc = LiveDocument(engine, text, cursor=cursor, encode=False)
    doc.prepare()  # the text before the cursor: a one-off answer needs nothing after it
    encode_s = time.perf_counter() - t0
    options = CompletionOptions(max_tokens=args.max_tokens, multiline=args.multiline, drafts=args.drafts)
    drafts = inline(doc, vocab, options)
    t0 = time.perf_counter()
    items = popup(doc, vocab)
    popup_s = time.perf_counter() - t0
    result = {
        "model": loaded.name,
        "prompt_tokens": len(doc.prompt),
        "load_seconds": load_s,
        "encode_seconds": encode_s,
        "drafts": [asdict(d) for d in drafts],
        "popup": [asdict(i) for i in items],
        "popup_seconds": popup_s,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{loaded.name}: loaded in {load_s:.1f}s; {len(doc.prompt)} prompt tokens encoded in {encode_s:.1f}s")
    for d in drafts:
        print(f"inline ({1000 * d.first_token_seconds:.0f} ms to first token, {1000 * d.seconds:.0f} ms): {d.text!r}")
    if not drafts:
        print("inline: (nothing worth showing)")
    print(f"popup ({1000 * popup_s:.0f} ms): " + ", ".join(i.label for i in items))
    return 0
