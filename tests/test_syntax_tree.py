"""The live syntax tree (completion/syntax/tree.py) and the structure rules built on it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from completion.decoding.stops import BlockEnd, StructureEnd, block_wanted
from completion.live.document import TextEdit
from completion.syntax.tree import MAX_CHARS, DocTree, SlowParse, reason_without

PIECES = ["a", "x = 1", " ", "    ", "é", "中", "😀", "\ud800", "\t", "\n", "\r\n", "\r", "\x00", "\x0c", ":", "(", ")"]
PIECES += ["def f(x):\n    ", "if x:\n", "else:\n", '"""', "'", "#", "return x\n", "[1,", "]"]
texts = st.lists(st.sampled_from(PIECES), max_size=25).map("".join)
inserts = st.lists(st.sampled_from(PIECES), max_size=4).map("".join)
# one batch: (where, length, text) triples placed in ascending, non-overlapping order
batches = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 6), inserts), min_size=1, max_size=3)


def as_edits(text: str, batch: list[tuple[float, int, str]]) -> list[TextEdit]:
    edits, floor = [], 0
    for where, length, new in sorted(batch):
        start = max(floor, int(where * len(text)))
        end = min(len(text), start + length)
        edits.append(TextEdit(start, end, new))
        floor = end
    return edits


def apply(text: str, edits: list[TextEdit]) -> str:
    for e in reversed(edits):
        text = text[: e.start] + e.text + text[e.end :]
    return text


@settings(max_examples=150, deadline=None)
@given(start=texts, steps=st.lists(batches, max_size=8), probe=st.floats(0, 1))
def test_the_incremental_tree_equals_a_fresh_parse_after_any_edits(start: str, steps: list, probe: float) -> None:
    """As LiveDocument keeps it: edited in place while the text may have a tree, rebuilt when it may again."""
    text, tree = start, DocTree.of(start)
    for batch in steps:
        edits = as_edits(text, batch)
        text = apply(text, edits)
        if tree is None or not tree.edit(edits):
            tree = DocTree.of(text)
        if tree is None:
            assert reason_without(text) is not None
            continue
        assert tree.text == text and tree.caught_up().equals_fresh_parse()
        offset = int(probe * len(text))
        if text[offset - 1 : offset + 1] != "\ud800":
            assert tree.byte_of(offset) == len(text[:offset].encode("utf-8", "surrogatepass"))
            assert tree.char_of(tree.byte_of(offset)) == offset


def test_texts_without_a_tree_say_why() -> None:
    assert "NUL" in (reason_without("x = 1\x00") or "")
    assert "lone \\r" in (reason_without("x = 1\ry = 2") or "")
    assert reason_without("x = 1\r\ny = 2\r\n") is None  # CRLF files parse fine
    assert "characters" in (reason_without("x" * (MAX_CHARS + 1)) or "")
    assert DocTree.of("\x00") is None
    tree = DocTree("x = 1\n")
    assert not tree.edit([TextEdit(0, 0, "\x00")])  # the caller drops it


def test_a_parse_that_runs_out_of_time_stops_and_leaves_no_tree() -> None:
    """15,000 comment lines after a statement take tree-sitter about a minute (quadratic): cancelled."""
    slow = "x = 1\n" + "# c\n" * 15_000
    with pytest.raises(SlowParse):
        DocTree(slow)
    tree = DocTree("x = 1\n")
    assert tree.edit([TextEdit(6, 6, "# c\n" * 15_000)])  # positions only: the parse comes when it is read
    with pytest.raises(SlowParse):
        tree.caught_up()
    assert DocTree(slow[:200]).statement_end(6, "# c\n" * 15_000 + "y = 2\nz") == (False, None)


IF_ELSE = """class A:
    def f(self, xs):
        total = 0
        for x in xs:
            if x > 0:
        return total
"""
IF_ELSE_COMPLETION = (
    "\n                total += x\n            else:\n                total -= x\n        print(total)\n        z"
)


def test_an_if_else_the_suggestion_writes_is_kept_whole() -> None:
    cursor = IF_ELSE.index("if x > 0:") + len("if x > 0:")
    cursor_line = IF_ELSE[IF_ELSE.rfind("\n", 0, cursor) + 1 : cursor]
    whole = "\n                total += x\n            else:\n                total -= x"
    assert BlockEnd(cursor_line)(IF_ELSE_COMPLETION) == len("\n                total += x")  # before `else:`
    rule = StructureEnd(DocTree(IF_ELSE), cursor, BlockEnd(cursor_line))
    assert rule(IF_ELSE_COMPLETION) == len(whole)
    assert rule(IF_ELSE_COMPLETION[: IF_ELSE_COMPLETION.index("else:")]) is None  # the `else:` may still come


def test_a_header_at_the_cursor_ends_with_its_body() -> None:
    text = "class Stack:\n    def push(self, x):\n        self.items.append(x)\n\n    def is_empty(self):"
    completion = "\n        return len(self.items) == 0\n\n    def size(self):"
    for cursor_text in (text, text + "\n        "):  # at the header's end, and on its body's blank first line
        written = completion if cursor_text == text else completion.lstrip("\n ")
        known, cut = DocTree(cursor_text).statement_end(len(cursor_text), written)
        assert known and written[:cut].rstrip().endswith("== 0"), cursor_text


def kept_on_blank_line(text: str, blank: str, completion: str) -> str:
    """What the stop keeps of `completion` (its last line still growing) typed on the line `blank`."""
    cursor = text.index(blank + "\n") + len(blank)
    known, cut = DocTree(text).statement_end(cursor, completion[: completion.rfind("\n")])
    assert known
    return completion[:cut]


def test_on_a_blank_line_in_a_block_the_block_ends_where_the_suggestion_dedents() -> None:
    text = "def f(x):\n    a = 1\n    \n    return a\n"
    completion = "b = 2\n    if b:\n        c = 3\n    else:\n        c = 4\n    return c\nx = 5\ny"
    kept = "b = 2\n    if b:\n        c = 3\n    else:\n        c = 4\n    return c"
    assert kept_on_blank_line(text, "    ", completion) == kept


def test_on_a_blank_line_a_compound_statement_the_suggestion_writes_ends_it_whole() -> None:
    text = "def f(lines):\n    for line in lines:\n        x = 0\n        \n    return 1\n"
    completion = "if line:\n            a = 1\n        else:\n            a = 2\n        if line:\n            b"
    kept = "if line:\n            a = 1\n        else:\n            a = 2"
    assert kept_on_blank_line(text, "        ", completion) == kept
    top = "import os\n\n"
    known, cut = DocTree(top).statement_end(len(top), "def f():\n    return 1\n\ndef g():\n    pass")
    assert known and cut == len("def f():\n    return 1")


def test_a_simple_statement_on_the_cursor_line_ends_with_its_block() -> None:
    text = "def f(x):\n    a = \n    return a\n"
    cursor = text.index("a = ") + 4
    completion = "1\n    b = 2\nprint(f)"
    known, cut = DocTree(text).statement_end(cursor, completion)
    assert known and completion[:cut] == "1\n    b = 2"
    docstring = '"""Sum.\n\n    More.\n    """\n    return a\nprint(f)'  # over lines, yet simple: the body follows
    blank = "def f(x):\n    \n"
    known, cut = DocTree(blank).statement_end(len(blank) - 1, docstring)
    assert known and docstring[:cut] == docstring[: docstring.index("\nprint")]


def test_the_top_level_and_error_nodes_fall_back_to_indentation() -> None:
    text = "import os\n\n"
    assert DocTree(text).statement_end(len(text), "x = 1\ny = 2\n") == (False, None)  # one line at the top
    broken = "def f(x):\n    a = (\n"
    tree = DocTree(broken)
    cursor_line = "    a = ("
    rule = StructureEnd(tree, len(broken) - 1, BlockEnd(cursor_line))
    assert rule("1,\n2]\nreturn a\nz") == BlockEnd(cursor_line)("1,\n2]\nreturn a\nz") == 2
    # where the tree has structure it knows better: the statement `a = (1,\n2)` ends after `2)`
    assert StructureEnd(tree, len(broken) - 1, BlockEnd(cursor_line))("1,\n2)\nreturn a\nz") == 5


def test_multiline_auto_by_where_the_cursor_is() -> None:
    def wanted(text: str, marker: str = "|") -> bool:
        cursor = text.index(marker)
        plain = text.replace(marker, "")
        return block_wanted(plain, cursor, DocTree(plain))

    assert wanted("def f(x):|\n")  # an empty block opened
    assert wanted("if x:|\nelse:\n    pass\n")  # its else has a body; its own is empty
    assert not wanted("if x:  # note|\n")  # the cursor is in the comment
    assert wanted("def f(x):\n    |\n")  # the blank first line of the body
    assert wanted("xs = [|\n")  # an opening bracket at the line's end
    assert not wanted("def f(x):\n    return 1\n    |\n")  # a body that has statements
    assert not wanted("f(a, |)\n")  # inside a call's arguments
    assert not wanted('s = """\n    def f():|\n"""\n')  # in a (multi-line) string
    assert not wanted("# if x:|\n")  # in a comment
    assert not wanted("x = 1|\n")  # after a statement
    assert not wanted("if x:| y\n")  # code after the cursor


def test_lookups() -> None:
    text = 'class A:\n    @dec\n    def f(self, x=[1, 2]):\n        s = """a\n        b"""  # c\n        return g(x,\n'
    tree = DocTree(text)
    assert not tree.in_string_or_comment(text.index("s ="))
    assert tree.in_string_or_comment(text.index("        b"))
    assert tree.in_string_or_comment(text.index("# c") + 2)
    assert tree.open_brackets(text.index("1, 2")) == "(["
    assert tree.open_brackets(text.index("s =")) == ""
    kinds = [s.kind for s in tree.scopes(text.index("s ="))]
    assert kinds == ["class_definition", "decorated_definition"]
    decorated = tree.scopes(text.index("s ="))[-1]
    assert text[decorated.start :].startswith("@dec") and text[decorated.header_start :].startswith("def f")
    (outer,) = tree.outline()
    assert (outer.kind, outer.name, outer.start, outer.body, outer.end) == ("class_definition", "A", 0, 1, 6)
    assert [(m.name, m.start, m.body) for m in outer.members] == [("f", 1, 3)]  # the decorator's row starts it
    assert tree.under_error(len(text) - 1)  # `g(x,` is unfinished


def test_an_f_strings_replacement_field_is_code() -> None:
    text = 'x = f"total {obj.name} and"\n'
    tree = DocTree(text)
    assert not tree.in_string_or_comment(text.index("name"))
    assert tree.in_string_or_comment(text.index("and"))


def test_non_ascii_offsets_are_characters() -> None:
    text = "s = 'é😀'\nt = f(\n"
    tree = DocTree(text)
    assert tree.in_string_or_comment(text.index("😀"))
    assert not tree.in_string_or_comment(text.index("t ="))
    assert tree.char_of(tree.byte_of(text.index("t ="))) == text.index("t =")
