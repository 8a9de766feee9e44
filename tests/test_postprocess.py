"""Post-processing of raw completions: the cursor context, each rule through `postprocess`, and
properties over random text."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from completion.decoding.postprocess import EditContext, postprocess


def pp(completion: str, prefix: str = "", suffix: str = "", *, multiline: bool = True) -> str | None:
    return postprocess(completion, EditContext(prefix, suffix), multiline=multiline)


def test_context_lines() -> None:
    ctx = EditContext("import os\n    x = f(", "a)\n\n  \n    return x\nmore")
    assert ctx.line_before == "    x = f("
    assert ctx.line_after == "a)"
    assert ctx.next_line == "return x"
    assert EditContext("", "").next_line == ""
    assert EditContext("\n".join(map(str, range(100))), "").window.split("\n") == list(map(str, range(50, 100)))


@pytest.mark.parametrize("multiline", [True, False])
@pytest.mark.parametrize("completion", ["", " ", "\n", "  \n\t \n", "\r\n"])
def test_nothing_to_show_is_none(completion: str, multiline: bool) -> None:
    assert pp(completion, "x = ", "\n", multiline=multiline) is None


def test_trailing_whitespace_is_trimmed_leading_is_kept() -> None:
    assert pp(" 1  ", "x =", "\n", multiline=False) == " 1"
    assert pp("a = 1   \nb = 2\t\n\n", "", "\n") == "a = 1\nb = 2"
    assert pp("\n    return x  \n\n", "def f(x):", "\n") == "\n    return x"
    assert pp("a = 1\r\nb = 2\r\n") == "a = 1\nb = 2"


def test_single_line_keeps_the_first_line() -> None:
    assert pp("a = 1\nb = 2", multiline=False) == "a = 1"
    assert pp("a = 1\nb = 2", multiline=True) == "a = 1\nb = 2"
    assert pp("\n    return 1", "def f():", "\n", multiline=False) is None


def test_repeat_of_the_rest_of_the_cursor_line_is_dropped() -> None:
    assert pp("y = 2", "x = 1\n", "y = 2\nz = 3\n") is None
    assert pp(" b) ", "f(a,", " b)\n") is None


@pytest.mark.parametrize("multiline", [True, False])
def test_repeat_of_the_next_line_is_dropped(multiline: bool) -> None:
    assert pp("return 1", "def f():\n    ", "\n\n    return 1\n", multiline=multiline) is None


def test_first_line_is_kept_when_the_cursor_line_has_text() -> None:
    assert pp("y", "    x = ", "\n    y\n") == "y"


def test_multiline_run_into_the_following_code_is_cut() -> None:
    prefix = "def f(a, b):\n    total = a + b\n    "
    suffix = "\n    return total\n\n\ndef g():\n    pass\n"
    completion = "total *= 2\n    return total\n\n\ndef g():\n    pass"
    assert pp(completion, prefix, suffix) == "total *= 2"


@pytest.mark.parametrize(
    ("prefix", "suffix", "completion", "expected"),
    [
        ("foo(", ")", "a, b)", "a, b"),
        ("if foo(", "):\n    pass\n", "a, b):", "a, b"),
        ('print("a (', '")\n', ' b")', " b"),  # cursor inside a string
        ("xs = [f(", ")]\n", "1)]", "1"),
        ("f(", ")", "g()", "g()"),  # the completion's own bracket stays
        ("f(", ")", 'g(")")', 'g(")")'),
        ("foo(", "x)", "a)", "a)"),  # the rest of the line is code: not chopped
    ],
)
def test_overlap_with_the_closers_after_the_cursor(prefix: str, suffix: str, completion: str, expected: str) -> None:
    assert pp(completion, prefix, suffix, multiline=False) == expected


@pytest.mark.parametrize(
    ("prefix", "completion", "expected"),
    [
        ("", "x = f(a))", "x = f(a)"),
        ("x = [", "1, 2)", "1, 2"),  # a closer of the wrong kind closes nothing
        ("", 'print(")")', 'print(")")'),
        ("", "x = ')' + \"]\"  # ) ]", "x = ')' + \"]\"  # ) ]"),
        ("", "s = '''\n)\n'''", "s = '''\n)\n'''"),
        ('x = """\n', 'text )\n"""', 'text )\n"""'),  # the prefix left a docstring open
        ("x = 1  # note (", "see below)", "see below)"),  # the prefix left a comment open
        ("result = call(\n    a,\n    ", "b)", "b)"),  # opened lines above the cursor
        ("f(\n" + "x\n" * 60, "y)", "y"),  # opened before the scanned window
    ],
)
def test_unmatched_closing_brackets_are_cut(prefix: str, completion: str, expected: str) -> None:
    assert pp(completion, prefix, "\n") == expected


def test_spaces_become_tabs_in_a_tab_file() -> None:
    prefix = "class A:\n\tdef f(self):\n\t\t"
    assert pp("x = 1\n        return x", prefix, "\n") == "x = 1\n\t\treturn x"
    assert pp("x = 1\n          return x", prefix, "\n") == "x = 1\n\t\t  return x"


def test_tabs_become_spaces_of_the_file_width() -> None:
    prefix = "def f():\n  if x:\n    "
    assert pp("y = 1\n\t\ty = 2", prefix, "\n") == "y = 1\n    y = 2"


def test_unindented_prefix_leaves_indentation_alone() -> None:
    assert pp("if x:\n\ty = 1", "", "\n") == "if x:\n\ty = 1"


def test_a_dedent_ends_the_block() -> None:
    prefix = "def f(x):\n    "
    assert pp("y = x + 1\n    return y\n\nprint(f(1))", prefix, "\n") == "y = x + 1\n    return y"
    assert pp("a = 1\n\n    b = 2", prefix, "\n") == "a = 1\n\n    b = 2"  # blank lines do not end it
    assert pp("\n    return 1\n\nx = f()", "def f():", "\n") == "\n    return 1\n\nx = f()"


def test_unicode() -> None:
    assert pp('héllo wörld 😀")', 'greeting = print("', '")\n', multiline=False) == "héllo wörld 😀"
    assert pp("naïve = 'ü' 😀  \nπ = 3", "", "\n", multiline=False) == "naïve = 'ü' 😀"


TEXT = st.text(alphabet=st.sampled_from(list("ab1 =:,()[]{}'\"#\\\n\t\r\u00e9\U0001f600")), max_size=40)


@given(completion=TEXT, prefix=TEXT, suffix=TEXT, multiline=st.booleans())
def test_output_is_shown_text_or_none(completion: str, prefix: str, suffix: str, multiline: bool) -> None:
    out = pp(completion, prefix, suffix, multiline=multiline)
    assert out is None or (out.strip() and not out[-1].isspace())
    if out is not None and "\r" not in completion:
        assert "\r" not in out
    if out is not None and not multiline:
        assert "\n" not in out
        assert completion.split("\n", 1)[0].startswith(out)


@given(completion=TEXT, prefix=TEXT, suffix=TEXT)
def test_multiline_output_only_cuts_when_nothing_needs_reindenting(completion: str, prefix: str, suffix: str) -> None:
    assume("\t" not in completion + prefix)
    out = pp(completion, prefix, suffix)
    assert out is None or "\n".join(line.rstrip() for line in completion.split("\n")).startswith(out)
