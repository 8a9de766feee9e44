"""Where the name monitors trigger: pure functions of the text so far."""

from __future__ import annotations

import pytest

from monitors.base import Written
from monitors.triggers import Trigger, imports, in_code, keyword, member


def written(done: str, rest: str = "") -> Written:
    return Written(done.encode(), rest.encode(), 0)


@pytest.mark.parametrize(
    ("done", "rest", "start", "lead", "partial"),
    [
        ("x = obj.", "", 8, b"", b""),
        ("x = obj.app", "", 8, b"", b"app"),
        ("x = obj", ".", 8, b".", b""),  # the dot is healed text still to come
        ("x = obj", ".ap", 8, b".", b""),  # ... and part of the name too: healing makes it
        ("x = obj.a", "p", 8, b"", b"a"),
        ("f(x).", "", 5, b"", b""),
        ("d[0].", "", 5, b"", b""),
        ("s = 'a,b'.", "", 10, b"", b""),
        ("self.items.", "", 11, b"", b""),
    ],
)
def test_member_trigger(done: str, rest: str, start: int, lead: bytes, partial: bytes) -> None:
    w = written(done, rest)
    t = member(w, b"")
    assert t == Trigger("member", start)
    assert (t.lead(w), t.partial(w)) == (lead, partial)


@pytest.mark.parametrize(
    "done",
    ["x = 1.", "x = 1.5", "# see obj.", "s = 'obj.", "from . ", "x = ...", "x = obj", "x = (obj)"],
)
def test_no_member_trigger(done: str) -> None:
    assert member(written(done), b"") is None


def test_a_dot_token_proposed_after_a_receiver_triggers_a_region() -> None:
    w = written("y = obj")
    t = member(w, b".append")
    assert t == Trigger("member", len("y = obj") + 1, b".")
    assert t.region and t.lead(w) == b"." and t.partial(w) == b""
    assert member(w, b" + 1") is None  # not a dereference: nothing to check
    assert member(written("y = 1"), b".5") is None  # a float, not a member


@pytest.mark.parametrize(
    ("done", "start", "virtual"),
    [
        ("import ", 7, b""),
        ("import os, sy", 11, b""),
        ("from os import ", 15, b""),
        ("from os import (pa", 16, b""),
        ("from os import path as p, ", 26, b""),
        ("from ", 5, b""),
        ("import", 7, b" "),  # the space still to come: a region
        ("from os import", 15, b" "),
    ],
)
def test_import_trigger(done: str, start: int, virtual: bytes) -> None:
    assert imports(written(done), b"") == Trigger("import", start, virtual)


@pytest.mark.parametrize("done", ["import os ", "from os import path as ", "important", "x = from_"])
def test_no_import_trigger(done: str) -> None:
    assert imports(written(done), b"") is None


@pytest.mark.parametrize(
    ("line", "code"),
    [("x = a.", True), ("x = 'a'.", True), ("x = 'a.", False), ('x = """a.', False), ("x  # a.", False),
     ("x = 'it''s' + b.", True), (r"x = 'a\'.", False)],
)  # fmt: skip
def test_in_code(line: str, code: bool) -> None:
    assert in_code(line.encode()) is code


@pytest.mark.parametrize(
    ("done", "top", "start"),
    [
        ("f(a, memo", b"=", 9 - 4),
        ("f(memo", b"=", 2),
        ("f(", b"memo=", 2),  # a tokenizer with `name=` tokens
        ("f(x, ", b" =", 5),
    ],
)
def test_keyword_trigger(done: str, top: bytes, start: int) -> None:
    assert keyword(written(done), top) == Trigger("keyword", start)


@pytest.mark.parametrize(
    ("done", "top"),
    [("f(a, memo", b"=="), ("f(a, memo", b")"), ("x = memo", b"="), ("f(a.b", b"="), ("f('a, memo", b"=")],
)
def test_no_keyword_trigger(done: str, top: bytes) -> None:
    assert keyword(written(done), top) is None
