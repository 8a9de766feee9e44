"""Stop rules on plain text: where single-line, block-end and suffix-overlap rules cut a completion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from completion.decoding.stops import BlockEnd, StopRule, SuffixOverlap, first_stop, indent_of, stop_at_newline


def never(text: str) -> int | None:
    return None


def test_stop_at_newline_cuts_at_the_first_line_end() -> None:
    assert stop_at_newline("") is None
    assert stop_at_newline("x = compute(y)") is None
    assert stop_at_newline("x = 1\ny = 2\n") == 5
    assert stop_at_newline("\n    return x") == 0  # a completion that opens with a newline shows nothing


def test_indent_of_counts_tabs_to_the_next_multiple_of_eight() -> None:
    assert indent_of("") == 0
    assert indent_of("    x") == 4
    assert indent_of("\tx") == 8
    assert indent_of("  \tx") == 8
    assert indent_of("\t  x") == 10
    assert indent_of("      ") == 6


# -- BlockEnd -------------------------------------------------------------------------


def test_block_end_keeps_an_openers_body_and_cuts_at_the_next_statement_at_its_level() -> None:
    rule = BlockEnd("    def f(x):")
    text = "\n        return x\n    def g(y):\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "\n        return x"


def test_block_end_treats_the_cursor_line_completed_by_the_first_line_as_the_opener() -> None:
    rule = BlockEnd("    def f(x")
    text = "):\n        return x\n    def g(y):\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "):\n        return x"


def test_block_end_at_top_level_opener_ignores_blank_lines_and_cuts_at_the_next_definition() -> None:
    rule = BlockEnd("def f():")
    text = "\n    a = 1\n\n    b = 2\ndef g():\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "\n    a = 1\n\n    b = 2"


def test_block_end_non_opener_cuts_only_at_a_line_indented_less_than_the_cursor_line() -> None:
    rule = BlockEnd("        x = ")
    text = "1\n        y = 2\n\n        z = 3\n    w = 4\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "1\n        y = 2\n\n        z = 3"
    # lines at the cursor line's indentation or deeper, and blank lines, go on
    assert rule("1\n        y = 2\n            z = 3\n\n        w = 4\n") is None


def test_block_end_top_level_non_opener_ends_at_a_blank_line() -> None:
    rule = BlockEnd("x = ")
    text = "1\ny = 2\n\nz = 3\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "1\ny = 2"


def test_block_end_counts_tabs_as_eight_columns() -> None:
    rule = BlockEnd("\tif x:")
    text = "\n\t\ty()\n        z()\n\tw()\n"  # 8 spaces == one tab: back at the opener's level
    cut = rule(text)
    assert cut is not None and text[:cut] == "\n\t\ty()"


@pytest.mark.parametrize(
    ("cursor_line", "text"),
    [
        ("    def f(x):  # helper", "\n        return x\n    def g(y):\n"),
        ("    def f(x):", "  # helper\n        return x\n    def g(y):\n"),
        ("    def f(x):  # Bob's helper", "\n        return x\n    def g(y):\n"),  # a quote in the comment
        ('    if s == "#":', "\n        return x\n    def g(y):\n"),  # a # in a string
    ],
)
def test_block_end_sees_an_opener_followed_by_a_comment(cursor_line: str, text: str) -> None:
    cut = BlockEnd(cursor_line)(text)
    assert cut is not None and text[:cut].endswith("return x")


@pytest.mark.parametrize(
    ("cursor_line", "text"),
    [
        ("    def f(x):", "\n        return x\n    def g"),
        ("    def f(x):", "\n        return x\n"),  # the empty last line is still being written too
        ("        x = ", "1\n        y = 2\n    w"),
        ("x = ", "1\ny = 2\n"),
        ("x = ", "1\n"),
    ],
)
def test_block_end_never_judges_the_last_line(cursor_line: str, text: str) -> None:
    assert BlockEnd(cursor_line)(text) is None


def test_block_end_judges_nothing_before_the_first_line_ends() -> None:
    assert BlockEnd("    def f(x):")("") is None
    assert BlockEnd("x = ")("compute(y)") is None


# -- SuffixOverlap -----------------------------------------------------------------------


def test_suffix_overlap_cuts_before_the_first_non_blank_suffix_line() -> None:
    rule = SuffixOverlap(")  # rest of the cursor line\n\n   \n    return total\n    x = 1\n")
    text = "a + b\n    total += 1\n    return total\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "a + b\n    total += 1"
    # stripped comparison: the indentation the model chose does not matter
    assert rule("a\nreturn total  \nmore") == 1


def test_suffix_overlap_never_cuts_the_first_line_nor_judges_the_last() -> None:
    rule = SuffixOverlap("\n    return total\n")
    assert rule("    return total\nx\n") is None  # the first line completes the cursor line
    assert rule("x\n    return total") is None  # still being written


def test_suffix_overlap_ignores_the_rest_of_the_cursor_line() -> None:
    rule = SuffixOverlap("foo(bar)\n")
    assert rule("a\nfoo(bar)\nb\n") is None


@pytest.mark.parametrize("suffix", ["", "no newline at all", "\n)\n", "\n   \n  }  \n", "rest\n\n\n"])
def test_suffix_overlap_has_no_target_without_a_line_of_two_chars(suffix: str) -> None:
    rule = SuffixOverlap(suffix)
    assert rule("x\n)\n}\n\nrest\nno newline at all\n") is None


# -- first_stop ------------------------------------------------------------------------


def test_first_stop_takes_the_earliest_cut() -> None:
    def at(n: int) -> StopRule:
        return lambda text: n if len(text) > n else None

    text = "0123456789"
    assert first_stop([at(7), never, at(3), at(5)])(text) == 3
    assert first_stop([at(20), never])(text) is None
    assert first_stop([])(text) is None


def test_first_stop_of_block_end_and_suffix_overlap() -> None:
    rule = first_stop([BlockEnd("    def f(x):"), SuffixOverlap("\n        return x\n")])
    # the suffix's first line shows up before the block ends
    text = "\n        y = x\n        return x\n    def g(y):\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "\n        y = x"
    # the block ends first
    text = "\n        y = x\n\n    def h():\n        return x\n"
    cut = rule(text)
    assert cut is not None and text[:cut] == "\n        y = x\n"


# -- properties --------------------------------------------------------------------------

# pieces rather than characters, so indented lines and blank lines are common
code_text = st.lists(st.sampled_from([*"ab:( )\n\t#", "    ", "\n    ", "\n\n", "ab"]), max_size=30).map("".join)
one_line = st.lists(st.sampled_from([*"ab:( )\t#", "    ", "ab"]), max_size=8).map("".join)
cursor_lines = st.text(alphabet=st.sampled_from(list(" \tx:=(")), max_size=12)


def check_cut(text: str, cut: int | None, *, first_line_ends: bool) -> None:
    if cut is None:
        return
    assert 0 <= cut <= len(text)
    assert cut == len(text) or text[cut] == "\n"
    if first_line_ends:
        # a whole line was judged: the cut is at or after the first line's end, before the last line
        assert text.find("\n") <= cut < text.rfind("\n")


@st.composite
def text_and_suffix(draw: st.DrawFn) -> tuple[str, str]:
    """A completion and a suffix whose next line is often one of the completion's lines."""
    text = draw(code_text)
    lines = [line for line in text.split("\n")[1:-1] if len(line.strip()) >= 2]  # lines a rule may cut before
    if not lines or draw(st.booleans()):
        return text, draw(code_text)
    return text, draw(one_line) + "\n" + draw(st.sampled_from(lines)) + "\n"


@given(text_suffix=text_and_suffix(), cursor_line=cursor_lines, more=code_text)
def test_cuts_are_at_line_ends_and_stable_as_the_text_grows(
    text_suffix: tuple[str, str], cursor_line: str, more: str
) -> None:
    text, suffix = text_suffix
    check_cut(text, stop_at_newline(text), first_line_ends=False)
    rules: list[StopRule] = [BlockEnd(cursor_line), SuffixOverlap(suffix)]
    for rule in [*rules, first_stop(rules)]:
        cut = rule(text)
        check_cut(text, cut, first_line_ends=True)
        if cut is not None:
            # decoding calls the rule after every token: a cut, once asked for, must not move
            assert rule(text + more) == cut
