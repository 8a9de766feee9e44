"""Clean a raw model completion before the editor shows it as ghost text.

Each rule is a small function `(text, ctx) -> text` that cuts the text short or re-indents it;
`postprocess` composes them in order and returns None when nothing worth showing is left.
Pure text: no model, no LSP. Brackets are read with the Python lexer (`lexer.py`), forgiving.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from completion.decoding.lexer import OPENER_OF, Lex, lex

WINDOW_LINES = 50  # prefix lines scanned for open brackets and for the indentation style
DEFAULT_INDENT = 4  # indent width when the prefix does not show one, and the assumed width of a model's spaces
_CLOSERS = set(")]}\"'`:,;") | {" ", "\t"}  # what the cursor line's rest may hold for `drop_closing_overlap`


@dataclass(frozen=True)
class EditContext:
    """The document around the cursor: `prefix` before it (at least the last few lines), `suffix`
    after it (at least the next ~20 lines)."""

    prefix: str
    suffix: str

    @property
    def line_before(self) -> str:
        """The cursor line up to the cursor."""
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @property
    def line_after(self) -> str:
        """The rest of the cursor line after the cursor."""
        end = self.suffix.find("\n")
        return self.suffix if end < 0 else self.suffix[:end]

    @property
    def next_line(self) -> str:
        """The first non-blank line after the cursor line, stripped ('' when there is none)."""
        start = self.suffix.find("\n")
        while start >= 0:
            end = self.suffix.find("\n", start + 1)
            line = self.suffix[start + 1 : end if end >= 0 else None].strip()
            if line:
                return line
            start = end
        return ""

    @property
    def window(self) -> str:
        """The last WINDOW_LINES lines of the prefix, the cursor line included."""
        return "\n".join(self.prefix.rsplit("\n", WINDOW_LINES)[-WINDOW_LINES:])


Step = Callable[[str, EditContext], str]


def _bracket_scan(text: str, ctx: EditContext) -> tuple[int | None, set[int]]:
    """Scan `text` as the continuation of the prefix window: the offset of the first closing bracket
    that closes nothing (neither an opener in `text` nor one still open in the prefix), and the
    offsets of the closers whose opener is in `text` itself. The lexer forgives, since the window
    may begin inside a bracket (a stray closer in the prefix is ignored)."""
    prefix, _ = lex(Lex(), ctx.window.encode("utf-8", "surrogatepass"), forgive=True)
    data = text.encode("utf-8", "surrogatepass")
    found: list[int] = []
    lex(prefix, data, brackets=found, forgive=True)
    stack = [(c, False) for c in prefix.stack]  # (opener, opened in `text`)
    own: set[int] = set()
    for i in found:
        c = data[i]
        if c not in OPENER_OF:
            stack.append((c, True))
        elif not stack or stack[-1][0] != OPENER_OF[c]:
            return _chars(data, i), own
        elif stack.pop()[1]:
            own.add(_chars(data, i))
    return None, own


def _chars(data: bytes, i: int) -> int:
    """The character offset of byte `i` of UTF-8 `data`."""
    return len(data[:i].decode("utf-8", "surrogatepass"))


def _indent_style(window: str) -> tuple[bool | None, int]:
    """(indents with tabs, indent width) of the prefix: tabs when more lines start with a tab than
    with a space (None when no line is indented); width is the gcd of the space indents."""
    leads = re.findall(r"(?m)^[ \t]+(?=\S)", window)
    tabs = sum(lead.startswith("\t") for lead in leads)
    width = math.gcd(*(len(lead) for lead in leads if "\t" not in lead))
    # A gcd of 1 comes from an odd aligned continuation line, not from a 1-space style.
    return (tabs > len(leads) - tabs if leads else None), (width if width >= 2 else DEFAULT_INDENT)


def _indent(line: str, width: int) -> int:
    """The column where `line`'s text starts, tabs counted as `width`."""
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(width))


def trim_trailing_whitespace(text: str, ctx: EditContext) -> str:
    """Trailing blanks on any line are noise the user would delete. Leading ones stay: the first
    line continues the cursor line (after `x =` the model emits ` 1`), and a completion that opens
    with a newline and an indent keeps that structure."""
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()


def keep_first_line(text: str, ctx: EditContext) -> str:
    """Single-line mode shows only what fits on the cursor line."""
    return text.split("\n", 1)[0]


def cut_repeated_next_line(text: str, ctx: EditContext) -> str:
    """Models run on into the code below the cursor: from the first line equal to the next non-blank
    line of the suffix, the completion only re-types it. The first line counts only when it would
    make up the whole cursor line (nothing before the cursor or after it on that line)."""
    target = ctx.next_line
    whole_first = not ctx.line_before.strip() and not ctx.line_after.strip()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if target and (i > 0 or whole_first) and line.strip() == target:
            return "\n".join(lines[:i])
    return text


def convert_indentation(text: str, ctx: EditContext) -> str:
    """Continuation lines indented with spaces in a tab file (or tabs in a space file) would mix the
    styles; re-indent them the file's way. A model's spaces are taken as DEFAULT_INDENT wide."""
    tabs, width = _indent_style(ctx.window)
    lines = text.split("\n")
    for n, line in enumerate(lines[1:], 1):
        body = line.lstrip(" \t")
        lead = line[: len(line) - len(body)]
        if tabs and " " in lead:
            cols = len(lead.expandtabs(DEFAULT_INDENT))
            lines[n] = "\t" * (cols // DEFAULT_INDENT) + " " * (cols % DEFAULT_INDENT) + body
        elif tabs is False and "\t" in lead:
            lines[n] = " " * len(lead.expandtabs(width)) + body
    return "\n".join(lines)


def cut_at_dedent(text: str, ctx: EditContext) -> str:
    """A non-blank continuation line indented less than the cursor line means the model closed the
    block and went on to code nobody asked for; cut before it."""
    width = _indent_style(ctx.window)[1]
    lines = text.split("\n")
    base = _indent(ctx.line_before + lines[0], width)
    for i, line in enumerate(lines[1:], 1):
        if line.strip() and _indent(line, width) < base:
            return "\n".join(lines[:i])
    return text


def balance_brackets(text: str, ctx: EditContext) -> str:
    """A closing bracket that closes nothing (in the completion or still open in the prefix) is where
    the model lost track; cut before it. Brackets in strings and comments do not count."""
    cut = _bracket_scan(text, ctx)[0]
    return text if cut is None else text[:cut]


def drop_cursor_line_repeat(text: str, ctx: EditContext) -> str:
    """A completion that equals the rest of the cursor line would only type it a second time."""
    rest = ctx.line_after.strip()
    return "" if rest and text.strip() == rest else text


def drop_closing_overlap(text: str, ctx: EditContext) -> str:
    """When the cursor line goes on with closers only (`)`, `):`, `")`), a completion ending with the
    same characters would double them on accept (`foo(a, b))`): cut the longest such overlap. Not
    when the rest of the line holds code, and never a bracket the completion opened itself."""
    rest = ctx.line_after
    if not rest or not set(rest) <= _CLOSERS:
        return text
    own = _bracket_scan(text, ctx)[1]
    for k in range(min(len(rest), len(text)), 0, -1):
        if text.endswith(rest[:k]) and not any(i >= len(text) - k for i in own):
            return text[:-k]
    return text


def _steps(multiline: bool) -> list[Step]:
    """The rules in order: whitespace, line structure, repeats, brackets, then whitespace again for
    what the cuts left at the end."""
    lines: list[Step] = [convert_indentation, cut_at_dedent] if multiline else [keep_first_line]
    return [
        trim_trailing_whitespace,
        *lines,
        cut_repeated_next_line,
        balance_brackets,
        drop_cursor_line_repeat,
        drop_closing_overlap,
        trim_trailing_whitespace,
    ]


def postprocess(completion: str, ctx: EditContext, *, multiline: bool) -> str | None:
    """The text to show, or None when nothing worth showing is left (never an empty suggestion)."""
    text = completion
    for step in _steps(multiline):
        text = step(text, ctx)
        if not text.strip():
            return None
    return text
