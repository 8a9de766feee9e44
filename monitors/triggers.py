"""Where static analysis knows which name comes next: pure functions of the text so far.

Each trigger looks at the certain text (the document's tail, the decoded bytes, and healed
text still to come) and says where a name begins. A name may begin inside the text already
written (`obj.ap` -> the rest of a member), right at its end (`obj.`), or one byte past it:
after `import` the space is still to come, and a token like `.append` proposes a dot and a
member at once. That byte is the trigger's `virtual` lead, and such triggers only constrain
tokens that begin a name (region masks), leaving `import (` or `x .` alone. Keyword
arguments are checked the other way round: only tokens that write `name=` are judged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from completion.decoding.lexer import Lex, lex
from monitors.base import Written
from monitors.vocab import ASSIGNMENT, is_ident_byte

_ID = rb"[A-Za-z_\x80-\xff][\w\x80-\xff]*"
_RECEIVER = rb"(?:(?<![\w\x80-\xff])" + _ID + rb"|[)\]}'\"])"
_MEMBER = re.compile(_RECEIVER + rb"\.([\w\x80-\xff]*)\Z")
_RECEIVER_END = re.compile(_RECEIVER + rb"\Z")
_ALIAS = rb"(?:[ \t]+as[ \t]+\w+)?"
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+(?:[\w.]+" + _ALIAS + rb"[ \t]*,[ \t]*)*(\w*)\Z")
_FROM_IMPORT = re.compile(
    rb"^[ \t]*from[ \t]+[\w.]+[ \t]+import[ \t]+(?:\([ \t]*)?(?:\w+" + _ALIAS + rb"[ \t]*,[ \t]*)*(\w*)\Z"
)
_FROM = re.compile(rb"^[ \t]*from[ \t]+(\w*)\Z")
_KEYWORD_END = re.compile(rb"^[ \t]*(?:import|from|from[ \t]+[\w.]+[ \t]+import)\Z")
_ARGUMENT = re.compile(rb"[(,][ \t]*(" + _ID + rb")?\Z")


@dataclass(frozen=True)
class Trigger:
    kind: str  # "member", "import" or "keyword": which monitor setting it belongs to
    start: int  # index in `certain + virtual` where the name begins
    virtual: bytes = b""  # bytes not written yet that the name waits for (a `.` or a space)

    def lead(self, written: Written) -> bytes:
        """What the next token must start with before the name continues."""
        done = len(written.done)
        return (written.certain + self.virtual)[done : self.start] if self.start > done else b""

    def partial(self, written: Written) -> bytes:
        """Identifier bytes of the name already decided."""
        return written.done[self.start :]

    @property
    def region(self) -> bool:
        return bool(self.virtual)


TriggerFn = Callable[[Written, bytes], "Trigger | None"]  # (text so far, the top candidate's bytes)


def _line(text: bytes) -> bytes:
    return text[text.rfind(b"\n") + 1 :]


def in_code(line: bytes) -> bool:
    """Whether the end of `line` is code, not inside a string or a comment (one line is enough
    for triggers: a name after a dot inside a multi-line string is jedi's to refuse). The lexer
    forgives: the line may close brackets opened above it."""
    return lex(Lex(), line, forgive=True)[0].in_code


def member(written: Written, top: bytes) -> Trigger | None:
    """After `receiver.` (and inside the name after it); or a `.name` token proposed after a receiver."""
    certain = written.certain
    line = _line(certain)
    m = _MEMBER.search(line)
    if m is not None:
        start = len(certain) - len(m.group(1))
        return Trigger("member", start) if in_code(line[: m.start(1) - 1]) else None
    if (
        not written.rest
        and len(top) > 1
        and top[:1] == b"."
        and is_ident_byte(top[1])
        and _RECEIVER_END.search(line)
        and in_code(line)
    ):
        return Trigger("member", len(certain) + 1, b".")
    return None


def imports(written: Written, top: bytes) -> Trigger | None:
    """Module names after `import` and `from`, and a module's names after `from m import`."""
    certain = written.certain
    line = _line(certain)
    for pattern in (_IMPORT, _FROM_IMPORT, _FROM):
        m = pattern.search(line)
        if m is not None:
            return Trigger("import", len(certain) - len(m.group(1)))
    if not written.rest and _KEYWORD_END.search(line):
        return Trigger("import", len(certain) + 1, b" ")
    return None


def keyword(written: Written, top: bytes) -> Trigger | None:
    """A keyword argument the model is about to write: `name=` right after `(` or `,`.

    Asked only when the top candidate writes the `=`, so jedi is called once per keyword
    argument the model wants, not at every argument."""
    if written.rest or not ASSIGNMENT.match(top):
        return None
    certain = written.certain
    line = _line(certain)
    m = _ARGUMENT.search(line)
    if m is None or not in_code(line):
        return None
    return Trigger("keyword", len(certain) - len(m.group(1) or b""))
