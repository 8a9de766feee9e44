"""`livekv demo`: replay a short editing session on a real Python file with the embedded model.

Each step edits the document the way a person would (delete a line, insert one, rename
a name, type part of a line) and prints the next-line suggestion at the cursor, with
the time PIE took to patch the cache beside the time a full re-encode takes.
"""

from __future__ import annotations

import argparse
import builtins
import keyword
import re
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from completion.decode import decode
from completion.engine import Engine
from completion.live import LiveDocument, TextEdit, UpdatePolicy
from completion.model import load_model
from completion.vocab import Vocabulary

DEFAULT_FILE = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"


def pick_target_line(text: str) -> int:
    """Offset of an indented code line a little past the middle of the file."""
    pos = text.find("\n", len(text) * 55 // 100) + 1
    while pos < len(text):
        line = text[pos : text.find("\n", pos)]
        body = line.strip()
        if line.startswith("        ") and len(body) >= 20 and not body.startswith(("#", '"', "'")):
            return pos
        pos = text.find("\n", pos) + 1
    raise ValueError("no suitable code line found in the second half of the file")


def line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


@dataclass(frozen=True)
class Step:
    description: str
    edits: list[TextEdit]  # applied together, offsets into the text before the step
    cursor: int
    typed: str = ""  # typed one key per edit at `cursor - len(typed)` instead of `edits`


def session(text: str) -> tuple[str, int, str, list[Step]]:
    """The document (with the line the user is about to write emptied), cursor, that line, and steps."""
    cursor = pick_target_line(text)
    target = text[cursor : text.find("\n", cursor)]
    doc = text[:cursor] + text[cursor + len(target) :]
    prev = line_start(doc, cursor - 1)
    above = doc[prev:cursor]
    steps = [
        Step("open the file, cursor on an empty line", [], cursor),
        Step("delete the line above", [TextEdit(prev, cursor, "")], prev),
        Step("put it back (insert a line)", [TextEdit(prev, prev, above)], cursor),
    ]
    lo = max(0, cursor - 1500)
    names = [
        n
        for n in re.findall(r"[A-Za-z_]\w{2,}", target)
        if not keyword.iskeyword(n) and not hasattr(builtins, n) and re.search(rf"\b{n}\b", doc[lo:cursor])
    ]
    if names:
        hits = [m.start() + lo for m in re.finditer(rf"\b{names[0]}\b", doc[lo:cursor])]
        edits = [TextEdit(h, h + len(names[0]), names[0] + "_v2") for h in hits]
        cursor += 3 * len(hits)
        steps.append(Step(f"rename {names[0]} -> {names[0]}_v2 above the cursor ({len(hits)} places)", edits, cursor))
    indent = len(target) - len(target.lstrip())
    typed = target[: indent + max(3, len(target.strip()) // 2)]
    steps.append(Step(f"type {typed.strip()!r}, one key at a time", [], cursor + len(typed), typed))
    return doc, steps[0].cursor, target, steps


def apply_step(live: LiveDocument, step: Step) -> float:
    """Apply a step to the document; return the seconds spent patching the cache."""
    if not step.typed:
        return live.apply_edits(step.edits, cursor=step.cursor).seconds
    at = step.cursor - len(step.typed)
    return sum(live.apply_edits([TextEdit(at + i, at + i, ch)]).seconds for i, ch in enumerate(step.typed))


def as_one_edit(step: Step) -> Step:
    """The same change as a single update (what a full re-encode is timed on)."""
    if not step.typed:
        return step
    at = step.cursor - len(step.typed)
    return Step(step.description, [TextEdit(at, at, step.typed)], step.cursor)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE, help="Python file to edit (default: stdlib textwrap.py)")
    ap.add_argument("--model", default=None, help="model path (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window", type=int, default=4096, help="prompt window in tokens")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    loaded = load_model(args.model, threads=args.threads)
    print(
        f"model: {loaded.name} loaded in {time.perf_counter() - t0:.1f}s "
        f"({'converted-weights cache' if loaded.from_cache else 'converted from GGUF'})"
    )
    engine = Engine.from_loaded(loaded)
    vocab = Vocabulary(engine.tokenizer, engine.model.config.vocab_size)
    text, cursor, target, steps = session(args.file.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    live = LiveDocument(engine, text, cursor=cursor, window=args.window)
    print(
        f"file: {args.file} ({len(text)} chars); prompt {len(live.tokens)} tokens "
        f"encoded in {time.perf_counter() - t0:.1f}s; the line being written is {target.strip()!r}\n"
    )
    pie_total = full_total = 0.0
    for step in steps:
        full = live.fork(UpdatePolicy.FULL)
        pie_s = apply_step(live, step)
        full_s = apply_step(full, as_one_edit(step))
        out = decode(live, vocab)
        pie_total, full_total = pie_total + pie_s, full_total + full_s
        print(
            f"- {step.description}\n    PIE update {1000 * pie_s:6.0f} ms | full re-encode {1000 * full_s:6.0f} ms"
            f" | first token {1000 * out.first_token_seconds:4.0f} ms\n    suggestion: {out.text!r}"
        )
    t0 = time.perf_counter()
    refreshed = live.refresh()
    print(
        f"\nsummary: {len(steps)} steps; PIE updates took {1000 * pie_total:.0f} ms in all, full re-encodes "
        f"{1000 * full_total:.0f} ms ({full_total / max(pie_total, 1e-9):.0f}x); a background refresh would "
        f"re-encode the {refreshed} stale positions exactly in {time.perf_counter() - t0:.1f}s"
    )
    return 0
