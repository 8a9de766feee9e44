"""The Python lexer, and its three readers agreeing on escapes, raw strings, triple quotes and
f-strings: the syntax monitor (strict), post-processing's bracket cut and the monitor triggers."""

from __future__ import annotations

import pytest

from completion.decoding.lexer import Lex, lex, strip_comment
from completion.decoding.postprocess import EditContext, balance_brackets
from monitors.triggers import in_code

# (a line, what its end is in: "code", "string" or "comment")
ENDINGS = [
    (r"x = '\''", "code"),  # an escaped quote
    (r"x = '\\''", "string"),  # an escaped backslash: the last quote opens a new string
    (r"x = r'\''", "code"),  # raw: the backslash still keeps the quote in the string
    (r"x = r'\'", "string"),  # ...so this one is not closed
    (r"x = rb'\\' + b'\\'", "code"),
    ('x = """a"b"""', "code"),
    ('x = """a""', "string"),  # two of the three closing quotes
    (r'x = """a\""""', "code"),  # an escaped quote, then the three that close
    (r'x = """a\"""', "string"),
    ("x = ''''''", "code"),  # an empty triple-quoted string
    ("x = ''", "code"),
    ("x = '''", "string"),
    ("x = f\"{d['k']}\"", "code"),  # f-strings: the fields' quotes differ from the outer ones
    ("x = f'{d[\"k\"]!r:>{w}}' + f\"{'('}\"", "code"),  # brackets and quotes in fields are string text
    ("x = f\"{d['k']", "string"),
    ('x = "a # b"', "code"),
    ("x = 1  # it's", "comment"),
]


@pytest.mark.parametrize(("line", "where"), ENDINGS)
def test_the_three_readers_agree(line: str, where: str) -> None:
    data = line.encode()
    state, _ = lex(Lex(), data)  # the syntax monitor's reading
    assert not state.error
    assert state.in_string is (where == "string")
    assert (state.mode == b"#") is (where == "comment")
    assert in_code(data) is (where == "code")  # the triggers'
    # post-processing's: a closer typed next closes nothing in code, and is text in a string or comment
    assert balance_brackets(")", EditContext(line, "")) == ("" if where == "code" else ")")


@pytest.mark.parametrize(("line", "where"), ENDINGS)
def test_lexing_byte_by_byte_gives_the_state_of_the_whole(line: str, where: str) -> None:
    state = Lex()
    for b in line.encode():
        state, _ = lex(state, bytes([b]))
    assert state == lex(Lex(), line.encode())[0]


@pytest.mark.parametrize(
    ("prefix", "completion", "shown"),
    [
        ("s = 'a\\", "')", "')"),  # after a backslash in a string: the completion's quote is escaped
        ("x = '''a''", "')", "'"),  # the third closing quote: the bracket after it is code
        ("x = 'a\\\r\n", "b')", "b'"),  # a CRLF line join inside a string
    ],
)
def test_the_prefix_s_state_carries_into_the_completion(prefix: str, completion: str, shown: str) -> None:
    state, _ = lex(Lex(), prefix.encode())
    assert lex(state, completion.encode())[0].in_code is (shown != completion)
    assert balance_brackets(completion, EditContext(prefix, "")) == shown


def test_strict_lexing_stops_where_forgiving_reads_on() -> None:
    assert lex(Lex(), b"x)")[0].error == "unmatched ')'"
    found: list[int] = []
    state, _ = lex(Lex(), b"x) + [1]", brackets=found, forgive=True)
    assert not state.error and state.stack == b"" and found == [1, 5, 7]  # the stray closer is left alone
    assert lex(Lex(), b"s = 'ab\n")[0].error
    state, _ = lex(Lex(), b"s = 'ab\n(", forgive=True)
    assert state.in_code and state.stack == b"("  # the newline ended the unterminated string


def test_bracket_offsets_are_in_the_data_given() -> None:
    """Quotes left undecided at the end of one piece are re-read with the next: offsets stay the piece's."""
    state, _ = lex(Lex(), b"x = ''")
    assert state.pending == b"''"
    found: list[int] = []
    state, _ = lex(state, b"[1]", brackets=found)
    assert found == [0, 2] and state.in_code and not state.stack


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("def f():  # it's a helper", "def f():  "),
        ('if s == "#":  # note', 'if s == "#":  '),
        ("x = '''#''' + y", "x = '''#''' + y"),
        ("# only a comment", ""),
        ("s = 'é' # ü", "s = 'é' "),
    ],
)
def test_strip_comment(line: str, code: str) -> None:
    assert strip_comment(line) == code
