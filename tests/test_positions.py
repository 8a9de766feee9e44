"""UTF-16 (and UTF-8/32) positions convert exactly, including astral characters and CRLF."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsp_server.positions import Lines, PositionError, offset_at, position_at

TEXT = "a😀b\r\nsecond é\rthird\n\nlast"


def test_astral_characters_count_two_utf16_units() -> None:
    lines = Lines.of(TEXT)
    assert offset_at(lines, 0, 3) == 2  # after 'a' (1) and the emoji (2)
    assert position_at(lines, 2) == (0, 3)
    with pytest.raises(PositionError, match="inside a character"):
        offset_at(lines, 0, 2)  # between the two surrogates


def test_lines_split_on_crlf_cr_and_lf() -> None:
    lines = Lines.of(TEXT)
    assert [TEXT[s:e] for s, e in zip(lines.starts, lines.ends, strict=True)] == [
        "a😀b",
        "second é",
        "third",
        "",
        "last",
    ]
    assert offset_at(lines, 1, 0) == TEXT.index("second")
    assert offset_at(lines, 2, 0) == TEXT.index("third")


def test_column_past_line_end_clamps_and_bad_lines_raise() -> None:
    lines = Lines.of(TEXT)
    assert offset_at(lines, 0, 99) == TEXT.index("\r\n")
    with pytest.raises(PositionError, match="past the end"):
        offset_at(lines, 5, 0)
    with pytest.raises(PositionError, match="negative"):
        offset_at(lines, -1, 0)
    with pytest.raises(PositionError, match="outside"):
        position_at(lines, len(TEXT) + 1)


@given(
    st.lists(st.sampled_from(["a", "é", "😀", "中", "\n", "\r\n", "\r", "\t", " "]), max_size=40).map("".join),
    st.sampled_from(["utf-16", "utf-8", "utf-32"]),
    st.data(),
)
def test_round_trip(text: str, encoding: str, data: st.DataObject) -> None:
    lines = Lines.of(text)
    offset = data.draw(st.integers(0, len(text)))
    if 0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n":
        offset -= 1  # the middle of a CRLF is not a position
    assert offset_at(lines, *position_at(lines, offset, encoding), encoding) == offset


@given(
    st.lists(
        st.sampled_from(["a", "é", "😀", "中", "\ud800", "\udc00", "\n", "\r\n", "\r", "\x0c", "\u2028"]), max_size=30
    ).map("".join),
    st.sampled_from(["utf-16", "utf-8"]),
    st.data(),
)
def test_columns_count_code_units_like_the_client(text: str, encoding: str, data: st.DataObject) -> None:
    """Against a reference that encodes each prefix of the line (lone surrogates as their own unit(s),
    as they are in a JSON string): the offset whose prefix has exactly `column` units, the line's end
    past it, and an error inside a character. Only \\n, \\r\\n and \\r end lines (not \\f or \\u2028)."""
    lines = Lines.of(text)
    assert len(lines.starts) == 1 + len(re.findall(r"\r\n|\r|\n", text))
    line = data.draw(st.integers(0, len(lines.starts) - 1))
    start, end = lines.starts[line], lines.ends[line]
    content = text[start:end]
    codec, width = ("utf-16-le", 2) if encoding == "utf-16" else ("utf-8", 1)

    def units(s: str) -> int:
        return len(s.encode(codec, "surrogatepass")) // width

    column = data.draw(st.integers(0, units(content) + 3))
    exact = [k for k in range(len(content) + 1) if units(content[:k]) == column]
    if column >= units(content):
        assert offset_at(lines, line, column, encoding) == end
    elif exact:
        assert offset_at(lines, line, column, encoding) == start + exact[0]
        assert position_at(lines, start + exact[0], encoding) == (line, column)
    else:
        with pytest.raises(PositionError, match="inside a character"):
            offset_at(lines, line, column, encoding)
