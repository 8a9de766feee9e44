"""How a file is cut into the pieces cross-file context picks from: whole definitions, or line windows.

By definitions (Continue's collapsed chunks, Tabby's and cAST's syntax splits): each function or
class that fits `max_lines` is one chunk, whole; a bigger class is its own lines with its members' bodies
collapsed to `...`, and each member a chunk of its own under the class's
signature line; a bigger function is its signature and docstring over `...`, its body in line windows;
module-level code between definitions is in line windows. Each chunk of a top-level definition carries
its name, so the definitions the code at the cursor names can be looked up directly. Files without a
syntax tree (too big to parse, NULs, a lone `\\r`, a parse past its deadline) are cut into line windows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from completion.syntax.tree import Definition, DocTree, SlowParse

LINE_BREAK = re.compile(r"\r\n?|\n")
MAX_DEFINITION_LINES = 30  # a definition up to this long is one chunk, whole
MAX_PARSE_CHARS = 200_000  # a parse holds the GIL (about 25 ms at this size): larger files get line windows


@dataclass(frozen=True)
class Chunk:
    start: int  # the rows of the file it shows whole (a collapsed one: its signature's): overlaps are not repeated
    end: int  # exclusive
    text: str
    name: str | None = None  # the top-level function or class it is (chunks of its members do not carry it)


def line_windows(lines: list[str], lo: int, hi: int, size: int, stride: int) -> list[Chunk]:
    """Windows of `size` lines every `stride` lines over rows [lo, hi), blank edges trimmed, blank ones left out."""
    chunks: list[Chunk] = []
    for start in range(lo, hi, stride):
        end = min(start + size, hi)
        a, b = start, end
        while a < b and not lines[a].strip():  # blank edges cost budget and say nothing
            a += 1
        while b > a and not lines[b - 1].strip():
            b -= 1
        if a < b and not (chunks and (chunks[-1].start, chunks[-1].end) == (a, b)):
            chunks.append(Chunk(a, b, "\n".join(lines[a:b])))
        if end == hi:
            break
    return chunks


def definition_chunks(text: str, lines: list[str], size: int, stride: int) -> list[Chunk] | None:
    """The file by definitions (module-level code between them in line windows), in row order; None when
    it has no tree."""
    if len(text) > MAX_PARSE_CHARS:
        return None
    try:
        tree = DocTree.of(text)
    except SlowParse:
        return None
    if tree is None:
        return None
    chunks: list[Chunk] = []
    row = 0
    for d in tree.outline():
        chunks += line_windows(lines, row, d.start, size, stride)
        chunks += _definition(lines, d, [], size, stride, top=True)
        row = d.end
    chunks += line_windows(lines, row, len(lines), size, stride)
    return sorted(chunks, key=lambda c: c.start)


def _definition(lines: list[str], d: Definition, above: list[str], size: int, stride: int, *, top: bool) -> list[Chunk]:
    """`d` as chunks; `above`: its class's signature lines, shown over a member."""
    name = d.name if top else None
    if d.end - d.start <= MAX_DEFINITION_LINES:
        return [Chunk(d.start, d.end, "\n".join(above + lines[d.start : d.end]), name)]
    head = lines[d.start : d.doc_end]
    if d.members:
        collapsed, row = [], d.start
        for m in d.members:  # the class's own lines, each member's body collapsed
            collapsed += lines[row : m.body] + ([_indent_of(lines, m) + "..."] if m.body < m.end else [])
            row = m.end
        collapsed = (collapsed + lines[row : d.end])[:MAX_DEFINITION_LINES]
        chunks = [Chunk(d.start, d.body, "\n".join(above + collapsed), name)]
        for m in d.members:
            chunks += _definition(lines, m, above + lines[d.start : d.body], size, stride, top=False)
        return chunks
    chunks = [Chunk(d.start, d.body, "\n".join(above + head + [_indent_of(lines, d) + "..."]), name)]
    return chunks + line_windows(lines, d.doc_end, d.end, size, stride)


def _indent_of(lines: list[str], d: Definition) -> str:
    """The indentation of the definition's body."""
    for line in lines[d.body : d.end]:
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    first = lines[d.start] if d.start < len(lines) else ""
    return first[: len(first) - len(first.lstrip())] + "    "
