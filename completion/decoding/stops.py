"""Stop rules: where a completion ends, decided on its text while it is being decoded.

A rule sees the completion text so far (what would be inserted at the cursor) and returns
the length to cut it to, or None to go on. Rules only judge whole lines (or the first
line's end), so a line is never cut while the model is still writing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from completion.decoding.lexer import strip_comment
from completion.syntax.tree import DocTree

StopRule = Callable[[str], int | None]


def indent_of(line: str) -> int:
    """Indentation width of a line, a tab counting as 8 columns like Python's tokenizer."""
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(8))


def stop_at_newline(text: str) -> int | None:
    """Single-line mode: the suggestion ends with the cursor's line."""
    i = text.find("\n")
    return None if i < 0 else i


@dataclass(frozen=True)
class BlockEnd:
    """Multi-line mode: stop where indentation returns above the cursor's block.

    `cursor_line` is the document's text from the start of the cursor's line to the cursor.
    If that line (completed by the suggestion's first line) opens a block (ends with ':'),
    the body is what we complete, so a line back at the cursor line's indentation ends it;
    otherwise only a line indented less than the cursor line does. At the top level a blank
    line ends the suggestion too, or it would run on into the next definition.
    """

    cursor_line: str

    def __call__(self, text: str) -> int | None:
        lines = text.split("\n")
        if len(lines) < 2:
            return None
        base = indent_of(self.cursor_line)
        opener = strip_comment(self.cursor_line + lines[0]).rstrip().endswith(":")  # `def f():  # note` too
        start = len(lines[0]) + 1
        for line in lines[1:-1]:  # the last line may still be growing
            if line.strip():
                width = indent_of(line)
                if width < base or (opener and width <= base):
                    return start - 1
            elif base == 0 and not opener:
                return start - 1
            start += len(line) + 1
        return None


@dataclass
class StructureEnd:
    """Multi-line mode with a syntax tree: stop where the statement the cursor's line opens ends
    (an `if … else:` the suggestion writes is kept whole, where `BlockEnd` cuts before the `else:`),
    or, on a blank line in a block, where that block ends (`DocTree.statement_end`). Judged on
    complete lines only, once per new line (memoized); where the tree has no structure to go by
    (the top level, an ERROR node), `fallback` (the indentation rule) decides."""

    tree: DocTree
    cursor: int
    fallback: StopRule
    _seen: dict[str, tuple[bool, int | None]] = field(default_factory=dict)

    def __call__(self, text: str) -> int | None:
        last = text.rfind("\n")
        if last <= 0:
            return None
        complete = text[:last]
        if complete not in self._seen:
            self._seen[complete] = self.tree.statement_end(self.cursor, complete)
        known, cut = self._seen[complete]
        return cut if known else self.fallback(text)


def block_wanted(text: str, cursor: int, tree: DocTree | None) -> bool:
    """`multiline: "auto"`: a block where the cursor opens an empty one (at the end of a `def …:` or
    `if …:` line, on the blank first line of its body) or follows an opening bracket at a line's end;
    a line everywhere else (inside a call's arguments, a string, a comment, after a statement)."""
    line_end = text.find("\n", cursor)
    if text[cursor : len(text) if line_end < 0 else line_end].strip(" \t\r)]}"):
        return False  # code after the cursor: finish this line
    if tree is not None:
        if tree.in_string_or_comment(cursor):
            return False
        if tree.empty_block_opened(cursor):
            return True
    before = text[:cursor]
    line = before[before.rfind("\n") + 1 :]
    if line.rstrip().endswith(("(", "[", "{")):
        return True
    if tree is not None:
        return False
    code_line = line if line.strip() else before.rstrip()[before.rstrip().rfind("\n") + 1 :]
    return strip_comment(code_line).rstrip().endswith(":")  # without a tree: a header line, empty or not


@dataclass(frozen=True)
class SuffixOverlap:
    """Stop when the completion starts re-typing the text after the cursor.

    With a suffix in view (FIM, or the document below the cursor in prefix-only mode) a
    model often finishes the gap and then writes the next existing line again; the cut
    is placed before the first completed line equal to the suffix's first non-blank line.
    """

    suffix: str

    def __call__(self, text: str) -> int | None:
        target = next((s.strip() for s in self.suffix.split("\n")[1:] if s.strip()), "")
        if len(target) < 2:
            return None
        lines = text.split("\n")
        start = len(lines[0]) + 1
        for line in lines[1:-1]:
            if line.strip() == target:
                return start - 1
            start += len(line) + 1
        return None


@dataclass(frozen=True)
class LineLimit:
    """Stop after `lines` complete lines (multi-line suggestions of a bounded size)."""

    lines: int

    def __call__(self, text: str) -> int | None:
        parts = text.split("\n")
        return len("\n".join(parts[: self.lines])) if len(parts) > self.lines else None


def first_stop(rules: Sequence[StopRule]) -> StopRule:
    """One rule from several: the earliest cut any of them asks for."""

    def rule(text: str) -> int | None:
        cuts = [c for c in (r(text) for r in rules) if c is not None]
        return min(cuts) if cuts else None

    return rule
