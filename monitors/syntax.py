"""The syntax monitor: keep greedy decoding on text that can still become valid Python.

PICARD (Scholak et al., 2021) showed that rejecting a constrained decoder's inadmissible
top candidates, and taking the best admissible one among the next few, fixes most syntax
errors of a small model at a small cost. This monitor does the same for Python, cheaply:

* The strict lexer of `completion.decoding.lexer` (brackets, strings, triple quotes, escapes,
  `#` comments, backslash line joins) runs over the decoded bytes; its state after every
  generated prefix is memoized, so a step lexes only the new token's bytes. (Hence the monitor
  keeps its own text rather than using base.Transcript, which re-decodes every step and holds
  only TAIL_CHARS of the document.)
* A token is invalid if its bytes close a bracket that is not the innermost open one
  (brackets the document opened before the cursor count), put a newline in a single-quoted
  string, or end a logical line after which the text is no longer a valid *prefix* of
  Python. Only that last check needs the parser, and it runs only at logical line ends.
* "Valid prefix" is what `codeop` decides for the REPL (Python 3.11+): compile with
  `PyCF_ALLOW_INCOMPLETE_INPUT | PyCF_DONT_IMPLY_DEDENT` (plus `PyCF_ONLY_AST`: we want the
  parser's verdict, not the compiler's `'return' outside function`); the text is a valid
  prefix if it compiles or the SyntaxError's message is exactly "incomplete input" (codeop
  tells the two apart the same way). Checked empirically on 3.11, texts ending in a newline:

      def f():\\n                        incomplete -> valid (the body is still to come)
      x = (1,\\n                         incomplete -> valid (never at a logical line end anyway)
      if x:\\n    y\\nelse:\\n               incomplete -> valid
      try:\\n    y\\n                     incomplete -> valid (except/finally still to come)
      @dec\\n  /  x = 1 \\\\\\n               incomplete -> valid
      def f():\\n    return 1\\n           compiles   -> valid (no DEDENT is implied at the end)
      def f():\\n    y\\nz\\n               compiles   -> valid (back at the top level)
      def f():\\n    return x +\\n         "invalid syntax" -> invalid
      def f():\\n    y\\n  z\\n             "unindent does not match ..." -> invalid
      s = 'abc\\n                        "unterminated string literal" -> invalid
      x = [1, 2)\\n                      "closing parenthesis ... does not match" -> invalid

* The parser sees a *region*, not the file, and never the lines above it: one synthetic header
  per enclosing block stands in for them (`if 1:`, or `try:`/`match _:`/`case 0:`/... when that
  block's real header was a `try`, `except`, `else`, `match` or `case`, so the clauses that may
  follow it stay legal), each indented with the real header's own whitespace. The enclosing
  headers are the lines of smaller indentation found walking back; that chain is the
  tokenizer's indent stack, so dedents are judged as in the real file. The document is checked
  once, from the innermost `def` or `class` (with its decorators) around the last statement
  before the cursor's line, or from the outermost statement around it when there is none
  (module-level code: the top-level statement, `if` blocks included). The steps are parsed
  from that last statement on, a few lines, so a line end inside a 2,000-line class or a
  300-line function costs a parse of those lines only. Finding the lines needs the lexer's
  state at each line start, so the document is lexed forward from at most CAP_LINES /
  CAP_CHARS before the cursor: from the file's start when it is that short, else from the
  least indented line in that window that starts a def, a class, a decorator or an import
  (or, failing those, a name), assumed to be outside strings and brackets. If it is not, the
  document check fails and the monitor stands aside.
* With the document's syntax tree (completion/syntax/tree.py) the region is read off the tree
  instead (`region_from_tree`): the last statement before the cursor's line and the blocks around
  it, so only that statement is lexed and checked, and nothing is guessed; the text path above is
  the fallback where the tree cannot say (an ERROR node or a misaligned statement there, the
  cursor's line continuing a statement, no tree), lexed from the definition the tree finds.
* If the document's own text (region start to cursor) is not a valid prefix, the monitor is
  inactive for the suggestion: it could not tell its own mistakes from the user's. When the
  user has written code on the cursor's line, its indentation is checked too (as if a `def`
  started there); a blank cursor line is not, since the model may still indent further.

Only the top candidate is checked on the usual step (a few microseconds); when it is invalid,
the next candidates are checked in order, up to `k` in all, and the invalid ones before the
first valid one are set to -inf so greedy decoding picks it. `k` bounds the work (each check
may parse the region) and keeps the suggestion close to what the model wanted; if none of the
k is valid, the logits are returned unchanged (never an all -inf row) and the monitor stands
aside for the rest of that branch. Special tokens (empty pieces) count as valid. With
sampling instead of greedy, only the rejected top candidates are removed.

`complete_statements` uses the same machinery after decoding: it cuts a multi-line suggestion
back to its last complete statement.
"""

from __future__ import annotations

import ast
import re
import time
import warnings
from typing import NamedTuple

import torch

from completion.decoding.lexer import Lex, lex, strip_comment
from completion.model.vocab import Vocabulary
from completion.syntax.tree import DocTree
from monitors.base import MonitorStats, Site

CAP_LINES = 300  # how far before the cursor the document is lexed to find the region
CAP_CHARS = 20_000
# codeop's flags (Python 3.11+), and only the parser: the compiler's errors depend on context
# the region does not have (`return` outside a function, `await` outside async, nonlocal).
PyCF_DONT_IMPLY_DEDENT = 0x200
PyCF_ALLOW_INCOMPLETE_INPUT = 0x4000
_FLAGS = ast.PyCF_ONLY_AST | PyCF_ALLOW_INCOMPLETE_INPUT | PyCF_DONT_IMPLY_DEDENT

_INDENT = re.compile(rb"[ \t\f]*")
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_EXCEPT_STAR = re.compile(rb"except\s*\*")
_DEFINES = re.compile(rb"(?:async[ \t]+)?def\b|class\b")
_CLAUSES = {b"else", b"elif", b"except", b"except*", b"finally"}
# Lines that start a statement outside any string, almost surely (where lexing may start).
_SURE_STATEMENT = re.compile(
    r"(?m)^([ \t]*)(?:(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(|class[ \t]+\w+[ \t]*[(:]|@\w|import[ \t]+\w"
    r"|from[ \t]+[\w.]+[ \t]+import\b)"
)
_NAME_FIRST = re.compile(r"(?m)^([ \t]*)[A-Za-z_@]")


def valid_prefix(source: str) -> bool:
    """Whether `source` (ending at a logical line's end) can still become valid Python."""
    with warnings.catch_warnings():  # invalid escapes etc. are not our business (and tests run with -W error)
        warnings.simplefilter("ignore")
        try:
            compile(source, "<livekv>", "exec", _FLAGS, dont_inherit=True)
        except SyntaxError as e:
            return e.msg == "incomplete input"
        except ValueError:  # a null byte
            return False
    return True


# -- the region ---------------------------------------------------------------------------


class Region(NamedTuple):
    head: bytes  # synthetic headers of the enclosing blocks + the document from the last statement to `end`
    state: Lex  # the lexer's state at `end`
    error: str  # "" when the document's own text is a valid prefix, else why not


class _Line(NamedTuple):
    offset: int  # in the lexed window's bytes
    ws: bytes  # the indentation
    width: int  # its column, tabs to multiples of 8 like Python's tokenizer
    word: bytes  # the first name on the line (b"" if it starts otherwise)
    code: bool  # not blank or comment-only


def _window_start(text: str, end: int) -> int:
    """Where to start lexing: the file's start when it is near, else a likely statement start."""
    start = max(0, end - CAP_CHARS)
    nl = end
    for _ in range(CAP_LINES):
        nl = text.rfind("\n", 0, nl)
        if nl < 0:
            break
    start = max(start, nl + 1)
    if start == 0:
        return 0
    if text[start - 1] != "\n":
        start = text.find("\n", start, end) + 1 or text.rfind("\n", 0, end) + 1
    window = text[start:end]
    for pattern in (_SURE_STATEMENT, _NAME_FIRST):  # prose in a docstring rarely looks like the first
        best, width = None, None
        for m in pattern.finditer(window):
            w = len(m.group(1).expandtabs(8))
            if width is None or w < width:
                best, width = start + m.start(), w
                if w == 0:
                    break
        if best is not None:
            return best
    return start


def _synthetic(line: _Line) -> bytes:
    """A header that accepts the same clauses after its block as the real one (never fewer)."""
    ws = line.ws
    if line.word == b"try":
        return ws + b"try:\n"
    if line.word in (b"except", b"except*"):
        return ws + b"try:\n" + ws + b" pass\n" + ws + line.word + b" _:\n"
    if line.word == b"else":  # of a try (finally may follow), or of if/for/while (nothing may)
        return ws + b"try:\n" + ws + b" pass\n" + ws + b"except _:\n" + ws + b" pass\n" + ws + b"else:\n"
    if line.word == b"match":
        return ws + b"match _:\n"
    if line.word == b"case":
        return ws + b"case 0:\n"
    return ws + b"if 1:\n"  # if/elif/for/while accept else/elif after it, def/class/with nothing


# The synthetic header for each kind of block owner the tree names (the rest take `if 1:`).
_HEADER_WORDS = {
    "try_statement": b"try",
    "except_clause": b"except",
    "except_group_clause": b"except*",
    "else_clause": b"else",
    "match_statement": b"match",
    "case_clause": b"case",
}


def region_from_tree(tree: DocTree, text: str, end: int) -> Region | None:
    """The region from the document's syntax tree: the last statement before the cursor's line and
    the blocks around it are read off the tree, so only that statement's lines are lexed and
    checked (a few lines, wherever the cursor is). None where the tree cannot say (no statement
    before the cursor's line, an ERROR node there, the cursor's line continuing a statement):
    `region_at` reads the document instead."""
    before = tree.statement_before(end)
    if before is None:
        return None
    doc = text[before.start : end].encode("utf-8", "surrogatepass")
    starts = [0]
    state, _ = lex(Lex(), doc, starts)
    if state.error:
        return Region(b"", state, f"the document has {state.error}")
    line = doc.rfind(b"\n") + 1
    if starts[-1] != line or line == 0:
        return None  # the cursor's line continues a statement (or is the statement's own line)
    chain = [
        _Line(0, h.indent.encode("utf-8", "surrogatepass"), 0, _HEADER_WORDS.get(h.kind, b""), True)
        for h in before.headers
    ]
    head = b"".join(_synthetic(h) for h in chain)
    if chain[0].ws if chain else doc[: len(doc) - len(doc.lstrip(b" \t\f"))]:
        head = b"if 1:\n" + head  # the outermost block is itself indented: the file is not Python
    checked = head + doc[:line]
    after = _INDENT.match(doc, line).end()  # type: ignore[union-attr]
    name = _WORD.match(doc, after)
    word = b"except*" if _EXCEPT_STAR.match(doc, after) else name.group() if name else b""
    if after < len(doc) and doc[after] not in b"#\r\n" and word not in _CLAUSES and word != b"case":
        checked += doc[line:after] + b"def _(): pass\n"  # the cursor line's code must start a statement
    if not valid_prefix(checked.decode("utf-8", "replace")):
        return Region(head + doc, state, "the document before the cursor is not a valid prefix")
    return Region(head + doc, state, "")


def region_at(text: str, end: int, tree: DocTree | None = None) -> Region:
    """The region ending at character offset `end` of `text` (see the module docstring), from the
    document's syntax tree where it has one (`region_from_tree`), else read off the text: lexed
    from the definition the tree finds around the last statement, or from `_window_start`'s guess."""
    if tree is not None and (region := region_from_tree(tree, text, end)) is not None:
        return region
    w0 = tree.region_start(end) if tree is not None else None
    if w0 is None:
        w0 = _window_start(text, end)
    doc = text[w0:end].encode("utf-8", "surrogatepass")
    starts = [0]
    state, _ = lex(Lex(), doc, starts)
    if state.error:
        return Region(b"", state, f"the document has {state.error}")
    lines = []
    for s in starts:
        after = _INDENT.match(doc, s).end()  # type: ignore[union-attr]
        ws = doc[s:after]
        name = _WORD.match(doc, after)
        word = b"except*" if _EXCEPT_STAR.match(doc, after) else name.group() if name else b""
        is_code = after < len(doc) and doc[after] not in b"#\r\n"
        lines.append(_Line(s, ws, len(ws.expandtabs(8)), word, is_code))

    def parent(i: int) -> int | None:
        return next((j for j in range(i - 1, -1, -1) if lines[j].code and lines[j].width < lines[i].width), None)

    def clause(i: int) -> bool:
        p = parent(i) if lines[i].word == b"case" else None
        return lines[i].word in _CLAUSES or (p is not None and lines[p].word == b"match")

    def enclosing(i: int) -> list[int]:
        """`i`, then the headers of the blocks around it, innermost first."""
        out = [i]
        while lines[i].width > 0 and (p := parent(i)) is not None:
            out.append(i := p)
        return out

    def wrapper(i: int) -> bytes:
        """Synthetic headers for the blocks around line `i`."""
        chain = [lines[j] for j in enclosing(i)[1:]]
        out = b"".join(_synthetic(line) for line in reversed(chain))
        if (chain[-1] if chain else lines[i]).width > 0:  # the window began inside a block
            out = b"if 1:\n" + out
        return out

    # The document is checked from the innermost def/class around the last statement before the
    # cursor's line (with its decorators), or from the outermost statement around it when there
    # is none; the steps are parsed from that last statement on, which is enough to judge them.
    cursor_line = len(lines) - 1
    last = next((i for i in range(cursor_line - 1, -1, -1) if lines[i].code and not clause(i)), cursor_line)
    around = enclosing(last)
    first = next((i for i in around if _DEFINES.match(doc, lines[i].offset + len(lines[i].ws))), around[-1])
    for i in range(first - 1, -1, -1):
        if lines[i].code:
            if lines[i].width != lines[first].width or doc[lines[i].offset + len(lines[i].ws)] != ord("@"):
                break
            first = i
    checked = wrapper(first) + doc[lines[first].offset : lines[cursor_line].offset]
    cursor = lines[cursor_line]
    if cursor.code and not clause(cursor_line) and first != cursor_line:
        # The user has written code on the cursor's line: its indentation must be a place where a
        # statement can start (a def, so that a decorator just above is satisfied too).
        checked += cursor.ws + b"def _(): pass\n"
    head = wrapper(last) + doc[lines[last].offset :]
    if checked.strip() and not valid_prefix(checked.decode("utf-8", "replace")):
        return Region(head, state, "the document before the cursor is not a valid prefix")
    return Region(head, state, "")


# -- the monitor --------------------------------------------------------------------------


def _top(logits: torch.Tensor) -> tuple[int, float]:
    """Greedy's choice and its logit. numpy's argmax (same tie rule: the first maximum) is ~10x
    faster than torch's on a CPU vector of 50k floats, which makes it most of the cheap step."""
    if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64) and logits.dim() == 1:
        a = logits.numpy()
        top = int(a.argmax())
        return top, float(a[top])
    top = int(torch.argmax(logits))
    return top, float(logits[top])


class SyntaxMonitor:
    """Logits processor: replace an invalid top candidate by the best valid one among the top `k`."""

    def __init__(self, vocab: Vocabulary, site: Site, stats: MonitorStats | None = None, k: int = 8) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not 0 <= site.cursor <= len(site.text) or not site.text[: site.cursor].endswith(site.heal):
            raise ValueError(f"cursor {site.cursor} and heal {site.heal!r} do not fit the document")
        self.vocab = vocab
        self.k = k
        self.stats = stats if stats is not None else MonitorStats()
        t0 = time.perf_counter()
        self.region = region_at(site.text, len(site.before), site.tree)
        self.reason = self.region.error  # why the monitor is inactive ("" while active)
        if not self.reason:
            # The healed text is the user's too: it must pass before the model's text is judged.
            heal = site.heal.encode("utf-8", "surrogatepass")
            after, line_end = lex(self.region.state, heal)
            if after.error:
                self.reason = f"the document has {after.error}"
            elif line_end >= 0 and not valid_prefix(self._source((), heal[:line_end])):
                self.reason = "the document before the cursor is not a valid prefix"
        self.stats.seconds += time.perf_counter() - t0  # setting up is monitor time, not a step
        self._states: dict[tuple[int, ...], Lex] = {(): self.region.state}

    @property
    def active(self) -> bool:
        return not self.reason

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        with self.stats.timed():
            if self.reason:
                return logits
            key = tuple(generated)
            state = self._state(key)
            if state.error:  # the branch already took an invalid token (none of k was valid)
                return logits
            top, value = _top(logits)
            if value == float("-inf") or self._ok(key, state, top):
                return logits
            return self._repair(key, state, logits)

    def _repair(self, key: tuple[int, ...], state: Lex, logits: torch.Tensor) -> torch.Tensor:
        values, ids = torch.topk(logits, min(self.k, logits.numel()))
        # argmax's order: higher logit first, then lower id, so the valid one is what greedy picks
        order = sorted(zip((-v for v in values.tolist()), ids.tolist(), strict=True))
        invalid: list[int] = []
        for neg, tok in order:
            if neg == float("inf"):  # -inf: healing (or another processor) forbade it already
                break
            if self._ok(key, state, tok):
                if not invalid:  # a tie argmax broke the other way: nothing to replace
                    return logits
                self.stats.repairs += 1
                self.stats.constrained += 1
                return logits.index_fill(0, torch.tensor(invalid, dtype=torch.long), float("-inf"))
            invalid.append(tok)
        return logits  # none of the k is valid: the tested fallback, never an all -inf row

    def _ok(self, key: tuple[int, ...], state: Lex, tok: int) -> bool:
        piece = self.vocab.pieces[tok]
        if not piece:
            return True  # special tokens
        child = (*key, tok)
        after = self._states.get(child)
        if after is None:
            after = self._states[child] = self._advance(key, state, piece)
        return not after.error

    def _advance(self, key: tuple[int, ...], state: Lex, piece: bytes) -> Lex:
        after, line_end = lex(state, piece)
        if not after.error and line_end >= 0 and not valid_prefix(self._source(key, piece[:line_end])):
            return after._replace(error="not a valid prefix of Python")
        return after

    def _state(self, key: tuple[int, ...]) -> Lex:
        """The state after `key`, from the longest memoized prefix (usually `key` or its parent)."""
        n = len(key)
        while key[:n] not in self._states:
            n -= 1
        state = self._states[key[:n]]
        for j in range(n, len(key)):
            self._ok(key[:j], state, key[j])
            state = self._states.get(key[: j + 1], state)  # absent only for special tokens
        return state

    def _source(self, key: tuple[int, ...], tail: bytes) -> str:
        return (self.region.head + self.vocab.decode(list(key)) + tail).decode("utf-8", "replace")


# -- after decoding -----------------------------------------------------------------------


def _ends_on_header(text: str) -> bool:
    """The last code line opens a block (`if x:`) or is a decorator: its statement is not done."""
    for line in reversed(text.split("\n")):
        code = strip_comment(line).strip()
        if code:
            return code.endswith(":") or code.startswith("@")
    return False


def complete_statements(suggestion: str, site: Site) -> str:
    """The longest prefix of `suggestion` (text inserted at the cursor) that ends on a complete
    statement, so an accepted multi-line suggestion never leaves a statement half written.

    Multi-line: the prefix must end a logical line (a newline at bracket depth 0 outside
    strings, counting brackets open at the cursor, or the end of the text in that state), the
    region up to it must be a valid prefix of Python (that check is skipped when the document
    before the cursor is not one already), and its last line must not open a block or be a
    decorator. "" when no prefix qualifies. Single-line (no newline): returned unchanged if it
    closes what it opens (brackets and strings; closing brackets open before the cursor is
    fine) and, where it closes every bracket, the line it ends is a valid prefix that opens no
    block (`if not isinstance` is not a statement), else "". When the document before the cursor
    has a lexical error there is nothing to judge by, and the suggestion is returned unchanged.
    The text after the cursor is ignored.
    """
    region = region_at(site.text, site.cursor, site.tree)
    if region.state.error:
        return suggestion
    data = suggestion.encode("utf-8", "surrogatepass")
    if b"\n" not in data:
        start = region.state
        end, _ = lex(start, data)
        opened_string = end.in_string and not start.in_string
        own_brackets = len(end.stack) > len(start.stack) or end.stack != start.stack[: len(end.stack)]
        if end.error or end.escape or opened_string or own_brackets:
            return ""
        if end.stack or region.error:  # brackets open before the cursor stay open: the line goes on
            return suggestion
        source = (region.head + data).decode("utf-8", "replace")
        return "" if _ends_on_header(source) or not valid_prefix(source + "\n") else suggestion
    cuts: list[int] = []
    end, _ = lex(region.state, data, cuts)
    if end.at_statement_end and (not cuts or cuts[-1] != len(data)):
        cuts.append(len(data))
    for cut in reversed(cuts):
        source = (region.head + data[:cut]).decode("utf-8", "replace")
        if _ends_on_header(source):
            continue
        if region.error or valid_prefix(source if source.endswith("\n") else source + "\n"):
            return data[:cut].decode("utf-8", "surrogatepass")
    return ""
