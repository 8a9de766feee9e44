"""`livekv demo`: an editor session against the real server, with the embedded model.

It starts `livekv serve` as a subprocess and acts as its LSP client: opens a real Python
file (the standard library's textwrap.py) with one line emptied, then edits it the way a
person would (deletes a line, puts it back, renames a name, adds a line at the top of the
file far above the cursor, types part of a line key by key with pauses) and asks for an
inline completion after each step and at each pause in the typing, printing every
suggestion with its keystroke-to-suggestion latency and the tokens the server ran through
the model for it (`livekv/documentState`: a suggestion after an edit anywhere costs the
new tokens, not a re-read). It ends with a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import keyword
import re
import statistics
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from completion.live.document import TextEdit
from completion.model.formats import WEIGHT_CHOICES
from lsp_server.editor import Answer, Editor

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
    top = doc.find("\n", doc.find("\nimport ") + 1) + 1  # after the first import: far above the cursor
    line = "import functools  # added far above the cursor\n"
    steps.append(
        Step(
            f"add a line at the top, {cursor - top} characters above the cursor",
            [TextEdit(top, top, line)],
            cursor + len(line),
        )
    )
    cursor += len(line)
    indent = len(target) - len(target.lstrip())
    typed = target[: indent + max(3, len(target.strip()) // 2)]
    steps.append(Step(f"type {typed.strip()!r}, one key at a time", [], cursor + len(typed), typed))
    return doc, steps[0].cursor, target, steps


PAUSE_BEFORE = set(" .(,:)[=")
TYPING_GAP = 0.12  # seconds between keys


async def play(path: Path, options: dict) -> list[tuple[str, Answer]]:
    text, _, target, steps = session(path.read_text(encoding="utf-8"))
    editor = Editor()
    results: list[tuple[str, Answer]] = []
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        await editor.start(options, root)
        uri = f"file://{root}/{path.name}"
        await editor.open(uri, text)
        print(
            f"server started, model loaded and {path.name} ({len(text)} chars) opened in "
            f"{time.perf_counter() - t0:.1f}s (its cache grows while you pause); "
            f"the line being written is {target.strip()!r}\n"
        )
        for step in steps:
            if not step.typed:
                before = await encoded(editor, uri)
                for e in sorted(step.edits, key=lambda e: -e.start):  # back to front: offsets stay valid
                    editor.edit(uri, e.start, e.end, e.text)
                pressed = time.perf_counter()
                answer = await show(editor, uri, step.cursor, pressed, step.description, before)
                results.append((step.description, answer))
                continue
            at = step.cursor - len(step.typed)
            print(f"- {step.description}")
            before = await encoded(editor, uri)
            for i, ch in enumerate(step.typed):
                editor.edit(uri, at + i, at + i, ch)
                pressed = time.perf_counter()
                nxt = step.typed[i + 1] if i + 1 < len(step.typed) else " "
                if (nxt in PAUSE_BEFORE and ch not in PAUSE_BEFORE) or i + 1 == len(step.typed):
                    label = f"typed {step.typed[: i + 1].strip()!r}"
                    results.append((label, await show(editor, uri, at + i + 1, pressed, "  " + label, before)))
                    before = await encoded(editor, uri)
                else:
                    await asyncio.sleep(TYPING_GAP)
        await editor.stop()
    return results


async def show(editor: Editor, uri: str, offset: int, pressed: float, label: str, before: int) -> Answer:
    """Ask at `offset`; print the suggestion, its latency and the tokens encoded since `before`."""
    answer = await editor.inline(uri, offset, since=pressed)
    first = (
        "" if answer.first_token_seconds is None else f", first token after {1000 * answer.first_token_seconds:.0f} ms"
    )
    cost = await encoded(editor, uri) - before
    print(f"- {label}\n    suggestion {answer.text!r} in {1000 * answer.seconds:.0f} ms{first}")
    print(f"    the server encoded {cost} tokens for the keystrokes and the request")
    await asyncio.sleep(0.3)  # reading the ghost text
    return answer


async def encoded(editor: Editor, uri: str) -> int:
    """Tokens the server has run through the model for the document's edits and requests so far
    (the idle-time refresh and growth are not counted: nobody waits for them)."""
    counts = (await editor.state_dict(uri)).get("encoded") or {}
    return int(counts.get("edits", 0)) + int(counts.get("requests", 0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE, help="Python file to edit (default: stdlib textwrap.py)")
    ap.add_argument("--model", default=None, help="model path (default: the embedded model)")
    ap.add_argument("--weights", default=None, choices=WEIGHT_CHOICES, help="weight format (default: the server's)")
    args = ap.parse_args(argv)
    options = {"modelPath": args.model, "indexWorkspace": False}
    if args.weights:
        options["weights"] = args.weights
    results = asyncio.run(play(args.file, options))
    print("\n| step | keystroke -> suggestion (ms) | suggestion |\n|---|---|---|")
    for label, a in results:
        print(f"| {label} | {1000 * a.seconds:.0f} | {a.text!r} |")
    latencies = [a.seconds for _, a in results]
    print(
        f"\n{len(results)} suggestions, keystroke -> suggestion median {1000 * statistics.median(latencies):.0f} ms, "
        f"{sum(1 for _, a in results if a.text)} non-empty"
    )
    return 0
