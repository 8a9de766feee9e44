"""An incremental lexer of Python's strings, comments and brackets, over UTF-8 bytes.

It tracks only what decides how the next byte reads: the open brackets, whether the text is in a
string (and its quote: one or three of ' or ") or a comment, a pending backslash, and one or two
quotes ending the text whose meaning the next byte decides ('' or the start of '''). The state is
an immutable `Lex`, so a text lexed in pieces ends in the state of the whole text: the syntax
monitor lexes one token at a time and keeps the state after each. The syntax monitor,
post-processing's bracket checks and the monitor triggers all read Python through `lex`, so they
agree on escapes and triple quotes.

Python 3.11's rules, simplified: f-string replacement fields are string text (their quotes differ
from the outer ones), and string prefixes (`r`, `b`, `f`, ...) need no state, because a backslash
keeps the next character in the string in raw strings too (`r'\\''` is one string, `r'\\'` is
unterminated).

Strict lexing (the default) stops at the first error Python's tokenizer would report: a closer that
does not close the innermost open bracket, a newline in a single-quoted string. `forgive=True` reads
on past both, as an editor must read a window of text that may start inside a bracket or hold
unfinished lines: the stray closer is left unmatched, the newline ends the string.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_CODE = re.compile(rb"[()\[\]{}'\"#\\\n]")  # the bytes that change the state in code
_IN_STRING = {
    b"'": re.compile(rb"['\\\n]"),
    b'"': re.compile(rb'["\\\n]'),
    b"'''": re.compile(rb"['\\]"),
    b'"""': re.compile(rb'["\\]'),
}
OPENER_OF = {ord(")"): ord("("), ord("]"): ord("["), ord("}"): ord("{")}
_OPENERS = b"([{"
_NL, _CR, _BACKSLASH, _HASH = 10, 13, 92, 35


class Lex(NamedTuple):
    """The lexer's state after some text; immutable, so branches share their common prefix's."""

    stack: bytes = b""  # open brackets, innermost last
    mode: bytes = b""  # b"" in code, b"#" in a comment, else the quote that opened the current string
    pending: bytes = b""  # 1 or 2 quotes ending the text in code: '' or the start of ''' is not known yet
    run: int = 0  # closing quotes seen so far at the end of a triple-quoted string
    escape: bool = False  # the last byte was a backslash: the next one is escaped (or joins lines)
    code: bool = False  # the current logical line has code (not only blanks and a comment)
    error: str = ""  # why the text can no longer be Python ("" while it can)

    @property
    def in_string(self) -> bool:
        return self.mode not in (b"", b"#") or len(self.pending) == 1

    @property
    def in_code(self) -> bool:
        """The text ends in code: not in a string or a comment."""
        return not self.in_string and self.mode != b"#"

    @property
    def at_statement_end(self) -> bool:
        """The text could end here: no open bracket or string, no pending line join."""
        return not (self.error or self.stack or self.escape or self.in_string)


class _Lexer:
    """One `lex` call: the state as it changes while `data` is read, one mode at a time."""

    # slots: the syntax monitor lexes every candidate token it checks, so attribute access counts
    __slots__ = (
        "brackets", "code", "data", "end", "error", "escape", "forgive", "mode", "pending", "run", "shift", "stack",
        "starts",
    )  # fmt: skip

    def __init__(
        self, state: Lex, data: bytes, starts: list[int] | None, brackets: list[int] | None, forgive: bool
    ) -> None:
        self.shift = len(state.pending)  # the undecided quotes are read again with what follows them
        self.data = state.pending + data
        self.stack = bytearray(state.stack)
        self.mode, self.run, self.escape, self.code = state.mode, state.run, state.escape, state.code
        self.pending = b""
        self.error = ""
        self.end = -1  # just after the last newline that ended a logical line holding code
        self.starts, self.brackets, self.forgive = starts, brackets, forgive

    def lex(self) -> tuple[Lex, int]:
        i, n = 0, len(self.data)
        while i < n and not self.error:
            if self.escape:
                i = self.read_escaped(i)
            elif not self.mode:
                i = self.read_code(i)
            elif self.mode == b"#":
                i = self.read_comment(i)
            elif len(self.mode) == 1:
                i = self.read_short_string(i)
            else:
                i = self.read_long_string(i)
        end = self.end - self.shift if self.end >= 0 else -1
        if self.error:
            return Lex(error=self.error), end
        return Lex(bytes(self.stack), self.mode, self.pending, self.run, self.escape, self.code), end

    def read_escaped(self, i: int) -> int:
        """The byte after a backslash: kept in a string, or a line join in code."""
        c = self.data[i]
        if c == _CR:  # a CRLF line ending: the escape applies to the LF
            return i + 1
        self.escape = False
        if self.mode or c == _NL:
            return i + 1
        return i  # a stray backslash in code: the parser rejects the line when it ends

    def read_code(self, i: int) -> int:
        m = _CODE.search(self.data, i)
        j = len(self.data) if m is None else m.start()
        if not self.code and self.data[i:j].strip():
            self.code = True
        if m is None:
            return j
        c = self.data[j]
        if c == _NL:
            self.line_end(j + 1)
        elif c in _OPENERS or c in OPENER_OF:
            self.bracket(j, c)
        elif c == _HASH:
            self.mode = b"#"
        elif c == _BACKSLASH:
            self.escape = True
        else:
            return self.quote(j, c)
        return j + 1

    def line_end(self, i: int) -> None:
        """A newline in code (at `i - 1`): it ends a logical line unless a bracket is open."""
        if self.stack:
            return
        if self.code:
            self.end = i
        self.code = False
        if self.starts is not None:
            self.starts.append(i - self.shift)

    def bracket(self, j: int, c: int) -> None:
        self.code = True
        if self.brackets is not None:
            self.brackets.append(j - self.shift)
        if c in _OPENERS:
            self.stack.append(c)
        elif self.stack and self.stack[-1] == OPENER_OF[c]:
            self.stack.pop()
        elif not self.forgive:
            self.error = f"unmatched {chr(c)!r}"

    def quote(self, j: int, c: int) -> int:
        """A quote in code at `j`: it opens a string, or is an empty string, or waits for the next byte."""
        self.code = True
        n = len(self.data)
        k = j + 1
        while k < n and k < j + 3 and self.data[k] == c:
            k += 1
        if k - j == 3:
            self.mode, self.run = self.data[j:k], 0
        elif k == n:  # the text ends in 1 or 2 quotes: '' or the start of '''
            self.pending = self.data[j:]
        elif k - j == 1:
            self.mode = self.data[j:k]
        return k  # two quotes before another byte: an empty string

    def read_comment(self, i: int) -> int:
        j = self.data.find(b"\n", i)
        if j < 0:
            return len(self.data)
        self.mode = b""
        return j  # the newline ends the comment and is read as code

    def read_short_string(self, i: int) -> int:
        m = _IN_STRING[self.mode].search(self.data, i)
        if m is None:
            return len(self.data)
        j = m.start()
        c = self.data[j]
        if c == _BACKSLASH:
            self.escape = True
        elif c != _NL:
            self.mode = b""
        elif self.forgive:
            self.mode = b""
            return j  # the unterminated string ends with its line; the newline is read as code
        else:
            self.error = "newline in a single-quoted string"
        return j + 1

    def read_long_string(self, i: int) -> int:
        m = _IN_STRING[self.mode].search(self.data, i)
        if m is None:
            self.run = 0
            return len(self.data)
        j = m.start()
        if j > i:
            self.run = 0
        if self.data[j] == _BACKSLASH:
            self.escape, self.run = True, 0
        else:
            self.run += 1
            if self.run == 3:
                self.mode, self.run = b"", 0
        return j + 1


def lex(
    state: Lex,
    data: bytes,
    starts: list[int] | None = None,
    *,
    brackets: list[int] | None = None,
    forgive: bool = False,
) -> tuple[Lex, int]:
    """Lex `data` after `state`: the new state, and the index in `data` just after the last newline
    that ended a logical line holding code (-1 if none). `starts`, if given, gets the index after
    every logical line end (where a statement may start), `brackets` the index of every bracket in
    code. Strict lexing stops at the first error (see the module docstring)."""
    if state.error:
        return state, -1
    return _Lexer(state, data, starts, brackets, forgive).lex()


def strip_comment(line: str) -> str:
    """`line` without its `#` comment (a `#` in a string is text), the line read from code on."""
    data = line.encode("utf-8", "surrogatepass")
    i = data.find(b"#")
    while i >= 0:
        if lex(Lex(), data[:i], forgive=True)[0].in_code:
            return data[:i].decode("utf-8", "surrogatepass")
        i = data.find(b"#", i + 1)
    return line
