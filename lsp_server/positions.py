"""LSP positions <-> character offsets: the only place encodings are converted.

LSP counts lines split by '\\n', '\\r\\n' or '\\r', and columns in the negotiated encoding
(UTF-16 code units by default, so an astral character such as an emoji counts 2). A
column past the end of its line means the end of the line (the spec says so); a line
past the end of the document, or a column inside a surrogate pair, is an error.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
ENCODINGS = ("utf-16", "utf-8", "utf-32")


class PositionError(ValueError):
    """A position that does not exist in the document."""


@dataclass(frozen=True)
class Lines:
    """Start offset of every line of a text, and where each line's content ends."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]  # offset of the line break (or end of text)

    @classmethod
    def of(cls, text: str) -> Lines:
        starts, ends = [0], []
        for m in _LINE_BREAK.finditer(text):
            ends.append(m.start())
            starts.append(m.end())
        ends.append(len(text))
        return cls(text, tuple(starts), tuple(ends))


def _units(ch: str, encoding: str) -> int:
    if encoding == "utf-16":
        return 2 if ord(ch) > 0xFFFF else 1
    if encoding == "utf-8":  # a lone surrogate (possible in a JSON string) counts as its 3 bytes
        return len(ch.encode("utf-8", "surrogatepass"))
    return 1


def _one_unit_each(segment: str, encoding: str) -> bool:
    """Whether every character of `segment` is one code unit (the common case, checked at C speed)."""
    return segment.isascii() or (encoding == "utf-16" and max(segment) <= "\uffff")


def offset_at(lines: Lines, line: int, column: int, encoding: str = "utf-16") -> int:
    """Character offset of an LSP position."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown position encoding {encoding!r}")
    if line < 0 or column < 0:
        raise PositionError(f"negative position ({line}, {column})")
    if line >= len(lines.starts):
        raise PositionError(f"line {line} is past the end of the document ({len(lines.starts)} lines)")
    start, end = lines.starts[line], lines.ends[line]
    if encoding == "utf-32" or _one_unit_each(lines.text[start:end], encoding):
        return min(start + column, end)
    units = 0
    for i in range(start, end):
        if units == column:
            return i
        units += _units(lines.text[i], encoding)
        if units > column:
            raise PositionError(f"column {column} of line {line} falls inside a character")
    return end


def position_at(lines: Lines, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """LSP (line, column) of a character offset."""
    if not 0 <= offset <= len(lines.text):
        raise PositionError(f"offset {offset} is outside the document (length {len(lines.text)})")
    line = bisect.bisect_right(lines.starts, offset) - 1
    start = lines.starts[line]
    offset = min(offset, lines.ends[line])  # inside a CRLF: the end of the line
    if encoding == "utf-32":
        return line, offset - start
    segment = lines.text[start:offset]
    if encoding == "utf-16":  # surrogatepass: a lone surrogate is one unit, as in the client's string
        return line, len(segment.encode("utf-16-le", "surrogatepass")) // 2
    return line, len(segment.encode("utf-8", "surrogatepass"))
