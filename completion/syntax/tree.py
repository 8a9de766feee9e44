"""DocTree: a tree-sitter syntax tree of one document, kept in step with its edits.

This module owns every tree-sitter call (the API broke in five minor releases from 0.22 to
0.26; the versions are pinned exactly in pyproject.toml). tree-sitter supplies *structure*:
which statement the cursor's line opens, where it ends, the enclosing definitions, whether
the cursor is in a string or a comment. It is not a judge of validity (it accepts most
indentation errors, Python 2 statements, and has no "incomplete input" verdict): `codeop`
stays that (monitors/syntax.py).

Offsets in and out are characters of the `str` text, as everywhere in livekv; tree-sitter
counts UTF-8 bytes (lone surrogates encoded with `surrogatepass`) and rows by `\\n`. ASCII
text (the common case) maps one to one; otherwise the prefix is encoded, once per edit.
Documents over MAX_CHARS, with NULs or with a lone `\\r` line end get no tree (`reason_without`)
and keep the hand-written paths.
"""

from __future__ import annotations

import builtins
import re
import time
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import tree_sitter as ts
import tree_sitter_python as tsp

from completion.decoding.lexer import Lex, lex

if TYPE_CHECKING:
    from completion.live.document import TextEdit

PYTHON = ts.Language(tsp.language())
MAX_CHARS = 1_000_000  # about 19 bytes of tree per byte of text: no tree above ~19 MB
_LONE_CR = re.compile(r"\r(?!\n)")
# Parses stop after this long (the tree is then dropped): tree-sitter-python parses a run of comment lines
# after a statement in quadratic time (measured: 1,000 lines 30-130 ms, 2,000 lines 0.13-0.46 s, 15,000
# lines 66 s), and a parse holds the GIL.
FULL_PARSE_SECONDS = 0.5
EDIT_PARSE_SECONDS = 0.1
READ_CHUNK = 1 << 16
_EXCEPT_STAR = re.compile(rb"except\s*\*")

# Statement kinds that own a block (`body`), and the clauses that continue one of them.
COMPOUND = frozenset(
    {
        "if_statement",
        "for_statement",
        "while_statement",
        "try_statement",
        "with_statement",
        "function_definition",
        "class_definition",
        "decorated_definition",
        "match_statement",
    }
)
CLAUSES = frozenset(
    {"elif_clause", "else_clause", "except_clause", "except_group_clause", "finally_clause", "case_clause"}
)
DEFINITIONS = frozenset({"function_definition", "class_definition"})
# Names every file uses: they say nothing about which definitions the code at the cursor works with.
COMMON_NAMES = frozenset(dir(builtins)) | frozenset(typing.__all__) | {"self", "cls"}
BRACKETS = {
    "argument_list": "(",
    "parameters": "(",
    "parenthesized_expression": "(",
    "tuple": "(",
    "generator_expression": "(",
    "list": "[",
    "list_comprehension": "[",
    "subscript": "[",
    "dictionary": "{",
    "dictionary_comprehension": "{",
    "set": "{",
    "set_comprehension": "{",
}
CLOSERS = {"(": ")", "[": "]", "{": "}"}


def reason_without(text: str) -> str | None:
    """Why a text gets no tree (None: it gets one)."""
    if len(text) > MAX_CHARS:
        return f"over {MAX_CHARS} characters"
    if "\0" in text:
        return "it holds NUL characters"
    if "\r" in text and _LONE_CR.search(text):
        return "it has lone \\r line ends (tree-sitter counts rows by \\n only)"
    return None


class SlowParse(ValueError):
    """A parse ran past its time budget (tree-sitter's worst cases are quadratic): keep no tree."""


def _parse(parser: ts.Parser, data: bytes, old: ts.Tree | None, seconds: float) -> ts.Tree:
    """Parse with a deadline: the read-callback form is the one that takes a progress callback."""
    deadline = time.perf_counter() + seconds
    read = lambda byte, _point: data[byte : byte + READ_CHUNK]  # noqa: E731
    late = lambda _byte, _error: time.perf_counter() > deadline  # noqa: E731
    try:
        if old is None:
            return parser.parse(read, progress_callback=late)
        return parser.parse(read, old, progress_callback=late)
    except ValueError as err:  # "Parsing failed": cancelled by the callback
        raise SlowParse(f"parsing took over {seconds * 1000:.0f} ms") from err


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _point(data: bytes, byte: int) -> tuple[int, int]:
    return data.count(b"\n", 0, byte), byte - (data.rfind(b"\n", 0, byte) + 1)


@dataclass(frozen=True)
class Scope:
    """One enclosing definition or compound statement, outermost first in `DocTree.scopes`."""

    kind: str  # the node type: function_definition, class_definition, if_statement, ...
    start: int  # character offsets of the whole statement (decorators included for a definition)
    end: int
    header_start: int  # the start of its header line's code (after the indentation)


@dataclass(frozen=True)
class Header:
    """The owner of one block around a statement: a compound statement or one of its clauses."""

    kind: str  # if_statement, try_statement, else_clause, except_clause, case_clause, ...
    indent: str  # the indentation of its line


@dataclass(frozen=True)
class StatementBefore:
    """The last statement before the cursor's line, innermost (a simple statement, or the header of
    a compound one whose body is still empty), and the blocks around it."""

    start: int  # character offset of its line's start (a decorator's, for a decorated definition)
    headers: tuple[Header, ...]  # outermost first


@dataclass(frozen=True)
class Definition:
    """A function or class in rows (0-based, `end` exclusive: rows as tree-sitter counts them, by `\\n`)."""

    kind: str  # function_definition or class_definition
    name: str
    start: int  # its first row (its first decorator's)
    body: int  # its body's first row: the signature is rows [start, body) (one row for a one-line definition)
    doc_end: int  # one past its docstring's last row (`body` when it has none)
    end: int
    members: tuple[Definition, ...] = ()  # a class's functions and classes


class DocTree:
    """The tree of one document's text: edited and reparsed incrementally (`Tree.edit` + `parse`)."""

    def __init__(self, text: str, parser: ts.Parser | None = None) -> None:
        """Raises ValueError for a text `reason_without` refuses."""
        reason = reason_without(text)
        if reason is not None:
            raise ValueError(f"no syntax tree: {reason}")
        self.parser = parser or ts.Parser(PYTHON)
        self.text = text
        self.data = _encode(text)
        self.tree = _parse(self.parser, self.data, None, FULL_PARSE_SECONDS)
        self.pending = False  # edits applied to the tree's positions but not reparsed yet

    @classmethod
    def of(cls, text: str) -> DocTree | None:
        """The text's tree, or None where it may have none (SlowParse still raises: see LiveDocument)."""
        return None if reason_without(text) else cls(text)

    def copy(self) -> DocTree:
        other = object.__new__(DocTree)
        other.parser, other.text, other.data, other.tree = ts.Parser(PYTHON), self.text, self.data, self.tree.copy()
        other.pending = self.pending
        return other

    # -- keeping in step ------------------------------------------------------------

    def edit(self, edits: Sequence[TextEdit]) -> bool:
        """Apply ascending, non-overlapping edits (offsets into the text before them) to the tree's
        positions (`Tree.edit`, microseconds); the reparse waits for `caught_up`, so a burst of keys
        costs one incremental parse, when the tree is next read. Returns False when the new text may
        not have a tree (`reason_without`)."""
        text, data = self.text, self.data
        for e in reversed(edits):  # last first: the offsets of earlier edits stay valid
            start, end = self.byte_of(e.start, text, data), self.byte_of(e.end, text, data)
            new = _encode(e.text)
            after = data[:start] + new + data[end:]
            self.tree.edit(
                start, end, start + len(new), _point(data, start), _point(data, end), _point(after, start + len(new))
            )
            text, data = text[: e.start] + e.text + text[e.end :], after
        if reason_without(text) is not None:
            return False
        self.text, self.data, self.pending = text, data, True
        return True

    def caught_up(self) -> DocTree:
        """The tree reparsed after the edits since the last parse (incrementally); raises SlowParse
        when that ran out of time."""
        if self.pending:
            self.tree = _parse(self.parser, self.data, self.tree, EDIT_PARSE_SECONDS)
            self.pending = False
        return self

    def sexp(self) -> str:
        """The tree as an S-expression (equal for equal trees: the invariant test's check)."""
        return str(self.tree.root_node)

    def parses_cleanly(self) -> bool:
        """No ERROR or MISSING node anywhere (tree-sitter's own, lenient, idea of valid Python)."""
        return not self.tree.root_node.has_error

    def equals_fresh_parse(self) -> bool:
        """The invariant: the incrementally kept tree (caught up) is the tree of a fresh parse of the text."""
        self.caught_up()
        return self.sexp() == str(self.parser.parse(self.data).root_node) and self.data == _encode(self.text)

    # -- offsets ----------------------------------------------------------------------

    def byte_of(self, offset: int, text: str | None = None, data: bytes | None = None) -> int:
        text, data = (self.text, self.data) if text is None or data is None else (text, data)
        return offset if len(data) == len(text) else len(_encode(text[:offset]))

    def char_of(self, byte: int, data: bytes | None = None) -> int:
        data = self.data if data is None else data
        return byte if len(data) == len(self.text) else len(data[:byte].decode("utf-8", "surrogatepass"))

    # -- lookups ----------------------------------------------------------------------

    def _node_at(self, byte: int) -> ts.Node:
        """The smallest node around `byte`, preferring the token that ends there (the cursor's left)."""
        root = self.tree.root_node
        node = root.descendant_for_byte_range(max(byte - 1, 0), byte) or root
        return node

    def in_string_or_comment(self, offset: int) -> bool:
        """Whether the cursor is inside a string's text or a comment (exact across lines)."""
        byte = self.byte_of(offset)
        node: ts.Node | None = self._node_at(byte)
        while node is not None:
            if node.type == "comment":
                return node.start_byte < byte <= node.end_byte  # a comment runs to its line's end
            if node.type == "interpolation" and node.start_byte < byte < node.end_byte:
                return False  # an f-string's `{…}` is code
            if node.type == "string":
                return node.start_byte < byte < node.end_byte
            node = node.parent
        return False

    def under_error(self, offset: int) -> bool:
        """Whether the cursor is inside an ERROR node (its structure is a guess there)."""
        node: ts.Node | None = self._node_at(self.byte_of(offset))
        while node is not None:
            if node.is_error:
                return True
            node = node.parent
        return False

    def open_brackets(self, offset: int) -> str | None:
        """The brackets open at the cursor, outermost first ("" for none); None under an ERROR node."""
        byte = self.byte_of(offset)
        opened: list[str] = []
        node: ts.Node | None = self._node_at(byte)
        while node is not None:
            if node.is_error:
                return None
            bracket = BRACKETS.get(node.type)
            if bracket is not None and _open_at(node, bracket, byte):
                opened.append(bracket)
            node = node.parent
        return "".join(reversed(opened))

    def scopes(self, offset: int) -> list[Scope]:
        """The definitions and compound statements around the cursor, outermost first."""
        node: ts.Node | None = self._node_at(self.byte_of(offset))
        found: list[Scope] = []
        while node is not None:
            if node.type in COMPOUND and not (node.parent is not None and node.parent.type == "decorated_definition"):
                found.append(self._scope(node))
            node = node.parent
        return found[::-1]

    def _scope(self, node: ts.Node) -> Scope:
        header = node
        if node.type == "decorated_definition":
            header = node.child_by_field_name("definition") or node
        return Scope(
            node.type, self.char_of(node.start_byte), self.char_of(node.end_byte), self.char_of(header.start_byte)
        )

    def outline(self) -> list[Definition]:
        """The module's functions and classes (decorators included), with a class's members one level down:
        what cross-file snippets are cut into."""
        return [d for node in self.tree.root_node.named_children if (d := _definition(node)) is not None]

    def signature_names(self, offset: int) -> list[str]:
        """Names in the signatures around the cursor, innermost definition first: parameter and return
        annotations, and base classes (Continue's root path: the types the code at the cursor works with)."""
        found: list[str] = []
        node: ts.Node | None = self._node_at(self.byte_of(offset))
        while node is not None:
            if node.type in DEFINITIONS:
                typed = [node.child_by_field_name(f) for f in ("return_type", "superclasses")]
                params = node.child_by_field_name("parameters")
                typed += [p.child_by_field_name("type") for p in (params.named_children if params else [])]
                for part in filter(None, typed):
                    found += [n for n in _names_in(part) if n not in found]
            node = node.parent
        return found

    def used_names(self, offset: int, limit: int = 24) -> list[str]:
        """Up to `limit` names the innermost function around the cursor reads, nearest the cursor first
        (attribute names, strings and comments left out): what its code calls and builds on."""
        node: ts.Node | None = self._node_at(self.byte_of(offset))
        while node is not None and node.type != "function_definition":
            node = node.parent
        if node is None:
            return []
        byte = self.byte_of(offset)
        found = sorted(
            (abs(n.start_byte - byte), name) for n in _identifiers(node) if (name := _plain_name(n)) is not None
        )
        return list(dict.fromkeys(name for _, name in found))[:limit]

    def empty_block_opened(self, offset: int) -> bool:
        """Whether the cursor opens an empty block: at the end of a `def …:` / `if …:` line whose body
        is still empty, or on a blank first line of such a body."""
        byte = self.byte_of(offset)
        line_end = self.data.find(b"\n", byte)
        if self.data[byte : len(self.data) if line_end < 0 else line_end].strip():
            return False  # code after the cursor on its line
        colon = _last_code_byte(self.data, byte)
        if colon < 0 or self.data[colon : colon + 1] != b":":
            return False
        node = self._node_at(colon + 1)
        if node.type != ":" or node.parent is None:
            return False
        owner = node.parent
        body = owner.child_by_field_name("body") or owner.child_by_field_name("consequence")
        return not owner.has_error and body is not None and body.named_child_count == 0

    def region_start(self, offset: int) -> int | None:
        """Where the syntax monitor starts reading (monitors/syntax.py): the line of the innermost
        definition (decorators included) around the last code before the cursor's line, else of the
        top-level statement holding it; a statement start, so outside strings and brackets. None under
        an ERROR node (tree-sitter's recovery may have put that line inside a string)."""
        byte = self.byte_of(offset)
        last = _last_code_byte(self.data, self.data.rfind(b"\n", 0, byte) + 1)
        if last < 0:
            return 0
        node: ts.Node | None = self._node_at(last + 1)
        definition = top = None
        while node is not None:
            if node.is_error:
                return None
            if definition is None and node.type in DEFINITIONS:
                definition = node
            if definition is not None and node.type == "decorated_definition" and definition.parent == node:
                definition = node
            if node.parent is not None and node.parent.type == "module":
                top = node
            node = node.parent
        chosen = definition or top
        if chosen is None:
            return 0
        return self.char_of(self.data.rfind(b"\n", 0, chosen.start_byte) + 1)

    def statement_before(self, offset: int) -> StatementBefore | None:
        """The last statement before the cursor's line and the blocks around it (None: there is no
        code before that line, or it is under an ERROR node, where the structure is a guess)."""
        byte = self.byte_of(offset)
        end = self.data.rfind(b"\n", 0, byte) + 1
        while (last := _last_code_byte(self.data, end)) >= 0:
            node = self._node_at(last + 1)
            if node.type != "comment":
                break
            end = node.start_byte  # comment-only lines are not statements
        else:
            return None
        statement: ts.Node | None = None
        headers: list[Header] = []
        ancestor: ts.Node | None = node
        while ancestor is not None:
            parent = ancestor.parent
            if ancestor.is_error or not _aligned(ancestor):
                return None  # tree-sitter's recovery, or an indentation CPython would reject
            if statement is None and parent is not None and parent.type in ("block", "module"):
                statement = ancestor
            if ancestor.type == "block" and parent is not None:
                start = self.data.rfind(b"\n", 0, parent.start_byte) + 1
                indent = self.data[start : parent.start_byte].decode("utf-8", "surrogatepass")
                kind = parent.type
                if kind == "except_clause" and _EXCEPT_STAR.match(self.data, parent.start_byte):
                    kind = "except_group_clause"  # tree-sitter-python 0.25 names `except*` clauses alike
                headers.append(Header(kind, indent))
            ancestor = parent
        if statement is None:
            return None
        start = self.char_of(self.data.rfind(b"\n", 0, statement.start_byte) + 1)
        return StatementBefore(start, tuple(reversed(headers)))

    def statement_end(self, offset: int, completion: str) -> tuple[bool, int | None]:
        """Where a multi-line `completion` inserted at `offset` ends by structure: (known, cut).

        The statement the cursor's line opens ends inside the completion: the one the user started
        there, or on a blank line the first one the completion writes (the whole `if … else:`), or,
        on the blank first line of an empty body, the statement that body belongs to; after a simple
        statement (a docstring, a call over several lines) the rest of its block follows. `cut` is
        the length of the completion up to that end, once complete lines follow it; None: it goes
        on. `known` False: no structure to go by (the module's top level after a simple statement,
        an ERROR node): use indentation."""
        byte = self.byte_of(offset)
        written = _encode(completion)
        inserted = written + _encode(closers_of(completion))
        data = self.data[:byte] + inserted + self.data[byte:]
        edited = self.tree.copy()
        end_point = _point(data, byte + len(inserted))
        edited.edit(byte, byte, byte + len(inserted), _point(data, byte), _point(data, byte), end_point)
        try:
            root = _parse(self.parser, data, edited, EDIT_PARSE_SECONDS).root_node
        except SlowParse:
            return False, None
        line_start = data.rfind(b"\n", 0, byte) + 1
        code = data[line_start:byte]
        if self.empty_block_opened(offset):  # the header's own statement (its `:` is the last code before)
            first = _last_code_byte(data, byte)
        elif code.strip():  # the statement the user started on this line
            first = line_start + len(code) - len(code.lstrip())
        else:  # a blank line: the first statement the completion writes
            first = byte + len(inserted) - len(inserted.lstrip())
        owner = self._statement_on_row(root, first)
        if owner is None or owner.type not in COMPOUND | CLAUSES:  # a simple statement: its block goes on
            owner = root.descendant_for_byte_range(first, first)
            while owner is not None and owner.type not in ("block", "module"):
                owner = owner.parent
        if owner is None or owner.type == "module" or owner.has_error:
            return False, None
        cut = owner.end_byte - byte
        rest = written[cut:] if cut >= 0 else b""
        if not rest.strip() or b"\n" not in rest:
            return True, None
        return True, len(written[:cut].decode("utf-8", "surrogatepass"))

    @staticmethod
    def _statement_on_row(root: ts.Node, first: int) -> ts.Node | None:
        """The largest node that starts on `first`'s row without being a block or the module (a
        clause takes its whole statement): the statement that row opens."""
        node = root.named_descendant_for_byte_range(first, first)
        if node is None:
            return None
        row = node.start_point.row
        while node.parent is not None and node.parent.type not in ("block", "module"):
            if node.parent.start_point.row != row and node.type not in CLAUSES:
                break
            node = node.parent
        return node


def _aligned(node: ts.Node) -> bool:
    """Whether a statement starts in its block's column (a clause in its statement's): tree-sitter
    accepts indentation CPython rejects, which would misplace the monitor's synthetic headers."""
    parent = node.parent
    if parent is None or node.type == "comment":
        return True
    if parent.type == "module":
        return node.start_point.column == 0
    if parent.type == "block":
        first: ts.Node | None = parent.named_child(0)
        while first is not None and first.type == "comment":
            first = first.next_named_sibling
        return first is None or node.start_point.column == first.start_point.column
    if node.type in CLAUSES:
        return node.start_point.column == parent.start_point.column
    return True


def _last_code_byte(data: bytes, end: int) -> int:
    """The index of the last byte before `end` that is not blank (-1 if none)."""
    i = end - 1
    while i >= 0 and data[i] in b" \t\r\n\x0c":
        i -= 1
    return i


def _open_at(node: ts.Node, bracket: str, byte: int) -> bool:
    """Whether `node`'s own bracket is open at `byte`: after its opener, before (or without) its closer."""
    opener = next((c for c in node.children if c.type == bracket), None)
    closer = next((c for c in reversed(node.children) if c.type == CLOSERS[bracket]), None)
    if opener is None or opener.end_byte > byte:
        return False
    return closer is None or closer.is_missing or byte <= closer.start_byte


def closers_of(text: str) -> str:
    """The closing brackets for those `text` leaves open (outside its strings and comments)."""
    state, _ = lex(Lex(), _encode(text), forgive=True)
    return "".join(CLOSERS[chr(b)] for b in reversed(state.stack))


def _definition(node: ts.Node) -> Definition | None:
    """The definition `node` is (a decorated one included), or None."""
    inner = node.child_by_field_name("definition") if node.type == "decorated_definition" else node
    if inner is None or inner.type not in DEFINITIONS:
        return None
    name, block = inner.child_by_field_name("name"), inner.child_by_field_name("body")
    if name is None or block is None or name.text is None:
        return None
    start, end = node.start_point.row, node.end_point.row + (node.end_point.column > 0)
    body = max(block.start_point.row, start + 1)  # a one-line definition is all signature
    doc_end = body
    first = block.named_children[0] if block.named_children else None
    if first is not None and first.type == "expression_statement" and first.named_children:
        if first.named_children[0].type == "string":
            doc_end = max(body, first.end_point.row + 1)
    members: tuple[Definition, ...] = ()
    if inner.type == "class_definition":
        members = tuple(d for child in block.named_children if (d := _definition(child)) is not None)
    text = name.text.decode("utf-8", "surrogatepass")
    return Definition(inner.type, text, start, min(body, end), min(doc_end, end), max(end, start + 1), members)


def _identifiers(node: ts.Node) -> Iterator[ts.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "identifier":
            yield n
        else:
            stack.extend(n.named_children)


def _plain_name(n: ts.Node) -> str | None:
    """An identifier's name unless it is an attribute's (`a.B`: `B`), a keyword argument's or a common one."""
    parent = n.parent
    if parent is not None and (
        (parent.type == "attribute" and parent.child_by_field_name("attribute") == n)
        or (parent.type == "keyword_argument" and parent.child_by_field_name("name") == n)
    ):
        return None
    name = n.text.decode("utf-8", "surrogatepass") if n.text is not None else None
    return None if name is None or name in COMMON_NAMES else name


def _names_in(node: ts.Node) -> Iterator[str]:
    """The identifiers of a type or base-class expression (`a.B` gives `B`), builtins and typing's left out."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "identifier" and n.text is not None:
            if not (
                n.parent is not None and n.parent.type == "attribute" and n.parent.child_by_field_name("attribute") != n
            ):
                name = n.text.decode("utf-8", "surrogatepass")
                if name not in COMMON_NAMES:
                    yield name
        elif n.type != "keyword_argument":
            stack.extend(reversed(n.named_children))
