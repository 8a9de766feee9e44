"""The syntax monitor on synthetic logits over the real vocabulary, `complete_statements`, a tiny
random model decoding with and without the monitor, and the benchmark's point selection."""

from __future__ import annotations

import ast
import codeop
import io
import tokenize
import warnings
from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from benchmarks.syntax import document_at, select_points, splice_valid, statement_starts, stdlib_root
from completion.decoding.decode import decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from completion.syntax.tree import DocTree
from monitors.base import MonitorStats, Site
from monitors.syntax import Lex, SyntaxMonitor, complete_statements, lex

INF = float("-inf")
READS = {"read": "the text"}  # how the monitor finds its region: from the text, or from a syntax tree


@pytest.fixture(autouse=True, params=["the text", "a syntax tree"])
def reading(request: pytest.FixtureRequest) -> None:
    """Every test twice: the region read off the text (documents without a tree) and off the tree."""
    READS["read"] = request.param


def site(text: str, cursor: int, heal: str = "") -> Site:
    tree = DocTree.of(text) if READS["read"] == "a syntax tree" else None
    return Site(text, cursor, heal, tree=tree)


def tid(vocab: Vocabulary, piece: bytes) -> int:
    ids = vocab.equal_to(piece)
    assert ids, piece
    return ids[0]


def ranked(vocab: Vocabulary, *pieces: bytes) -> torch.Tensor:
    """Logits that are -inf but for `pieces`, best first."""
    logits = torch.full((vocab.size,), INF)
    for rank, piece in enumerate(pieces):
        logits[tid(vocab, piece)] = 10.0 - rank
    return logits


def monitor(vocab: Vocabulary, text: str, heal: str = "", **kwargs: object) -> SyntaxMonitor:
    return SyntaxMonitor(vocab, site(text, len(text), heal), **kwargs)  # type: ignore[arg-type]


def greedy(vocab: Vocabulary, logits: torch.Tensor) -> bytes:
    return vocab.pieces[int(torch.argmax(logits))]


def python_prefix(source: str) -> bool:
    """The stdlib's own verdict (codeop): complete or incomplete, not an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            codeop.compile_command(source, "<test>", "exec")
        except SyntaxError:
            return False
    return True


def through_last_statement(source: str) -> str:
    """`source` up to the end of its last logical line, found by Python's own tokenizer."""
    end = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NEWLINE and tok.string:  # not the one added at the end of the input
                end = tok.end
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # the end of an unfinished text
    if end == 0:
        return ""
    lines = source.splitlines(keepends=True)
    return "".join(lines[: end[0]])


# -- one step on synthetic logits ---------------------------------------------------------


def test_a_mismatched_closer_is_replaced_by_the_next_valid_candidate(vocab: Vocabulary) -> None:
    stats = MonitorStats()
    logits = ranked(vocab, b")", b"]")
    before = logits.clone()
    out = monitor(vocab, "def f(x):\n    y = [x", stats=stats)([], logits)
    assert greedy(vocab, out) == b"]"
    assert out[tid(vocab, b")")] == INF and out[tid(vocab, b"]")] == logits[tid(vocab, b"]")]
    assert torch.equal(logits, before)  # never in place
    assert (stats.steps, stats.repairs, stats.constrained) == (1, 1, 1)


def test_a_closer_counts_brackets_opened_lines_before_the_cursor(vocab: Vocabulary) -> None:
    text = "def f(x):\n    y = {\n        'a': [x,\n              1],\n        'b': 2"
    assert greedy(vocab, monitor(vocab, text)([], ranked(vocab, b")", b"]", b"}"))) == b"}"


@pytest.mark.parametrize(
    ("text", "written", "expected"),
    [
        ("def f(x):\n    return x +", "", b" y"),  # the line cannot end here
        ("def f(x):\n    ", "return x +", b" y"),  # ... whether the user or the model wrote it
        ("x = 'abc", "", b" y"),  # a newline inside a single-quoted string
        ("def f(x):\n    y = 1\n", "  z = 2", b" y"),  # an unindent to no outer level
        ("def f(x):\n    y = 1\n", "    else:", b" y"),  # else after no if
        ("def f(x):\n    try:\n        y = 1\n", "    z = 2", b" y"),  # a try needs its except
    ],
)
def test_a_newline_that_makes_the_text_invalid_is_rejected(
    vocab: Vocabulary, tokenizer: PreTrainedTokenizerBase, text: str, written: str, expected: bytes
) -> None:
    stats = MonitorStats()
    generated = tokenizer(written, add_special_tokens=False).input_ids
    out = monitor(vocab, text, stats=stats)(generated, ranked(vocab, b"\n", b" y", b"'"))
    assert greedy(vocab, out) == expected
    assert stats.repairs == 1


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n    return (x +",  # inside parentheses: not the end of a logical line
        "def f(x):\n    return x + 1",
        "def f(x):\n    if x:",  # a block header: its body is still to come
        "def f(x):\n    if x:\n        y = 1\n    else:",
        "def f(x):\n    try:\n        y = 1\n    except ValueError:",
        "def f(x):\n    try:\n        y = 1\n    except* ValueError:\n        pass\n    except* TypeError:",
        "def f(x):\n    try:\n        y = 1\n    finally:",
        "def f(x):\n    for i in x:\n        y = 1\n    else:",
        "def f(x):\n    match x:\n        case 1:\n            pass\n        case 2:",
        "def f(x):\n    y = 1\nz = 2",  # back at the top level
        "class A:\n    @property",  # a decorator waits for its def
        "x = 1 \\",  # a backslash joins the lines
        "x = '''abc",  # triple-quoted strings span lines
        "def f(x):\n    return x  # a comment (",
    ],
)
def test_a_valid_top_candidate_leaves_the_logits_untouched(vocab: Vocabulary, text: str) -> None:
    logits = ranked(vocab, b"\n", b" y")
    m = monitor(vocab, text)
    assert m.active, m.reason
    assert m([], logits) is logits


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("def f(x):\n    try:\n        y = 1\n", "    except ValueError:"),
        ("def f(x):\n    if x:\n        if y:\n            z = 1\n", "    elif y:"),  # two levels out
        ("def f(x):\n    try:\n        pass\n    except E:\n        y = 1\n", "    else:\n        z = 2\n    finally:"),
        ("def f(x):\n    try:\n        pass\n    except* E:\n        pass\n", "    except* F:"),
        ("def f(x):\n    match x:\n        case 1:\n            pass\n", "        case 2:"),
        ("class A:\n    def f(self):\n        return 1\n", "\n    @property\n    def g(self):"),
        ("class A:\n    def f(self):\n        return 1\n", "\n\ndef g():\n    return 2"),
    ],
)
def test_clauses_the_model_writes_after_the_document_are_judged_in_context(
    vocab: Vocabulary, tokenizer: PreTrainedTokenizerBase, text: str, written: str
) -> None:
    """The parser sees synthetic headers for the blocks around the cursor: they must accept every
    clause the real ones would."""
    generated = [*tokenizer(written, add_special_tokens=False).input_ids, tid(vocab, b"\n")]
    m = monitor(vocab, text)
    for n, tok in enumerate(generated):
        # an alternative that is always valid (no newline, bracket or quote), so a rejection shows
        other = b"x" if vocab.pieces[tok] == b" y" else b" y"
        offered = ranked(vocab, vocab.pieces[tok], other)
        assert m(generated[:n], offered) is offered, vocab.decode(generated[: n + 1])


def test_a_method_deep_in_a_long_class_is_judged_on_a_short_region(
    vocab: Vocabulary, tokenizer: PreTrainedTokenizerBase
) -> None:
    methods = "".join(f"    def m{i}(self, x):\n        return x + {i}\n\n" for i in range(400))
    text = "class Big:\n" + methods + "    def last(self, x):\n        if x:\n            return x +"
    m = monitor(vocab, text)
    assert m.active and len(m.region.head) < 200  # the enclosing headers, not 400 methods
    assert greedy(vocab, m([], ranked(vocab, b"\n", b" y"))) == b" y"
    logits = ranked(vocab, b"\n", b" y")
    assert monitor(vocab, text[: -len(" +")])([], logits) is logits
    m = monitor(vocab, "class Big:\n" + methods)
    assert len(m.region.head) < 200
    dedent = tokenizer("  y = 1", add_special_tokens=False).input_ids  # the levels are 0, 4 and 8: not 2
    assert greedy(vocab, m(dedent, ranked(vocab, b"\n", b" y"))) == b" y"


def test_lexing_starts_outside_a_long_docstring(vocab: Vocabulary) -> None:
    """Far from the file's start, lexing begins at a line that surely starts a statement: not at
    prose in column 0 of a module docstring, which would put all the code inside a string."""
    prose = "".join(f"Line {i} of the docstring, flush left\n" for i in range(150))
    code = "".join(f"def f{i}(x):\n    return x\n\n" for i in range(80))
    text = '"""' + prose + '"""\nimport os\n\n' + code + "def g(x):\n    return x +"
    m = monitor(vocab, text)
    assert m.active, m.reason
    assert greedy(vocab, m([], ranked(vocab, b"\n", b" y"))) == b" y"


def test_when_none_of_k_is_valid_the_logits_come_back_unchanged(vocab: Vocabulary) -> None:
    stats = MonitorStats()
    text = "def f(x):\n    y = [x"
    logits = ranked(vocab, b")", b"}", b"))", b"]")
    assert monitor(vocab, text, stats=stats, k=3)([], logits) is logits  # the valid "]" is 4th: beyond k
    assert stats.repairs == 0
    assert greedy(vocab, monitor(vocab, text, k=4)([], logits)) == b"]"
    only_invalid = ranked(vocab, b")")  # every other candidate is -inf already: skipped, never unmasked
    out = monitor(vocab, text)([], only_invalid)
    assert out is only_invalid and torch.isfinite(out).any()


def test_special_tokens_count_as_valid(vocab: Vocabulary, tokenizer: PreTrainedTokenizerBase) -> None:
    eos = tokenizer.eos_token_id
    assert vocab.pieces[eos] == b""
    logits = ranked(vocab, b")")
    logits[eos] = 9.0
    out = monitor(vocab, "def f(x):\n    y = [x")([], logits)
    assert int(torch.argmax(out)) == eos


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n    return x +\n    ",  # a finished line that is not Python
        "x = [1)\ny = (",  # a mismatched bracket
        "s = 'abc\nt = (",  # an unterminated string
        "def f(x):\n    y = 1\n      z = 2\n    ",  # an unexpected indent
        "def f(x):\n    y = 1\n  z",  # the user's own line is at no indentation level
        "def f(x):\n    try:\n        y = 1\n    z",  # ... or where no statement may start
    ],
)
def test_an_invalid_document_switches_the_monitor_off(vocab: Vocabulary, text: str) -> None:
    stats = MonitorStats()
    m = monitor(vocab, text, stats=stats)
    assert not m.active and m.reason
    logits = ranked(vocab, b")", b"]")
    assert m([], logits) is logits
    assert stats.steps == 1 and stats.repairs == 0


def test_the_monitor_is_pure_in_generated(vocab: Vocabulary, tokenizer: PreTrainedTokenizerBase) -> None:
    text = "def f(x):\n    y = "
    paren = tokenizer("(x", add_special_tokens=False).input_ids
    square = tokenizer("[x", add_special_tokens=False).input_ids
    m = monitor(vocab, text)
    logits = ranked(vocab, b")", b"]")
    results = [(greedy(vocab, m(paren, logits)), greedy(vocab, m(square, logits))) for _ in range(3)]
    assert results == [(b")", b"]")] * 3  # interleaved branches do not disturb each other
    fresh = monitor(vocab, text)
    assert greedy(vocab, fresh(square, logits)) == b"]" and fresh(paren, logits) is logits
    # a branch that took an invalid token (no valid candidate) is left alone from then on
    broken = [*square, tid(vocab, b")")]
    stray = ranked(vocab, b"}", b"]")
    assert m(broken, stray) is stray


def test_a_greedy_loop_over_several_lines(vocab: Vocabulary) -> None:
    stats = MonitorStats()
    m = monitor(vocab, "def f(x):\n    ", stats=stats)
    steps = [
        ((b"return",), b"return"),
        ((b" (",), b" ("),
        ((b"x",), b"x"),
        ((b" +",), b" +"),
        ((b"\n", b" y"), b"\n"),  # inside "(": not the end of a logical line
        ((b" y",), b" y"),
        ((b"]", b")"), b")"),  # "]" closes nothing
        ((b"\n",), b"\n"),  # `return (x +\n y)` is complete
        ((b"    ",), b"    "),
        ((b"x",), b"x"),
        ((b" +",), b" +"),
        ((b"\n", b" y"), b" y"),  # would end `x +`
        ((b"\n",), b"\n"),
    ]
    generated: list[int] = []
    for offered, expected in steps:
        generated.append(int(torch.argmax(m(generated, ranked(vocab, *offered)))))
        assert vocab.pieces[generated[-1]] == expected, vocab.decode(generated)
    assert (stats.steps, stats.repairs) == (len(steps), 2)


def test_healed_text_is_part_of_the_line(vocab: Vocabulary) -> None:
    text = "def f(x):\n    return [x, fo"
    m = monitor(vocab, text, heal="fo")
    assert m.active
    logits = ranked(vocab, b"foo", b")")
    assert m([], logits) is logits
    out = m([tid(vocab, b"foo")], ranked(vocab, b")", b"]"))
    assert greedy(vocab, out) == b"]"  # the "[" before the healed word is still open
    f = tid(vocab, b"f")
    assert greedy(vocab, m([f], ranked(vocab, b"o", b"oo"))) == b"o"  # a token inside the heal is fine


def test_a_user_error_inside_the_healed_text_switches_the_monitor_off(vocab: Vocabulary) -> None:
    text = "def f(x):\n    return [x)"
    assert not monitor(vocab, text, heal="x)").active


def test_arguments_are_checked(vocab: Vocabulary) -> None:
    with pytest.raises(ValueError, match="k must be"):
        monitor(vocab, "x = 1", k=0)
    with pytest.raises(ValueError, match="heal"):
        SyntaxMonitor(vocab, site("x = foo", 7, "bar"))


# -- the lexer ----------------------------------------------------------------------------

LEX_TEXTS = [
    'x = """a\n(""" + (\n  1)\ny = \'\'\nz = "\\\\" + r"\\"" + b\'\'\'x\'\'\'  # c )\n',
    "def f(x):\n    return [1, {2: (3,)}] \\\n        + g(x)\n",
    "s = \"a\\\nb\"\nt = f\"{x[0]}\" + ''''''\n",
]


@pytest.mark.parametrize("text", LEX_TEXTS)
def test_the_lexer_gives_the_same_state_whatever_the_token_boundaries(text: str) -> None:
    data = text.encode()
    whole, end = lex(Lex(), data)
    assert not whole.error and not whole.stack and whole.at_statement_end
    assert end == len(data)
    for cut in range(1, len(data)):
        left, e1 = lex(Lex(), data[:cut])
        right, e2 = lex(left, data[cut:])
        assert right == whole, cut
        assert (cut + e2 if e2 >= 0 else e1) == end, cut


def test_the_lexer_reports_what_python_would_reject() -> None:
    assert lex(Lex(), b"x = [1)")[0].error == "unmatched ')'"
    assert lex(Lex(), b"x = )")[0].error
    assert lex(Lex(), b"s = 'ab\n")[0].error
    assert not lex(Lex(), b"s = 'a\\\nb'\n")[0].error
    assert lex(Lex(), b"x = '''a\n(")[0].mode == b"'''"
    assert lex(Lex(), b"x = (1,\n")[1] == -1  # no logical line ended


# -- complete_statements ------------------------------------------------------------------

BODY = "def f(x):\n    "


@pytest.mark.parametrize(
    ("text", "suggestion", "expected"),
    [
        (BODY, "y = 1\n    return y", "y = 1\n    return y"),
        (BODY, "y = 1\n    return y\n", "y = 1\n    return y\n"),
        (BODY, "y = 1\n    return (y +", "y = 1\n"),  # an open bracket
        (BODY, "y = 1\n    z = 'abc", "y = 1\n"),  # an open string
        (BODY, "y = 1\n    if y:", "y = 1\n"),  # a block header without its body
        (BODY, "y = 1\n    if y:  # Bob's", "y = 1\n"),  # ... a quote in its comment
        (BODY, "y = 1\n    if y:\n        z = 2", "y = 1\n    if y:\n        z = 2"),
        (BODY, "y = 1\n    return y +", "y = 1\n"),  # complete brackets, but not a statement
        (BODY, "y = foo(1,\n            2)\n    z = 3", "y = foo(1,\n            2)\n    z = 3"),
        (BODY, "y = foo(1,\n            2", ""),
        (BODY, "y = 1", "y = 1"),  # single line: balanced
        (BODY, "y = foo(1", ""),  # single line: opens a bracket it does not close
        (BODY, "y = 'abc", ""),
        (BODY, "if not isinstance", ""),  # single line: balanced, but not a statement
        (BODY, "if y:", ""),  # ... a block header without its body
        ("x = [\n    ", "1, 2]", "1, 2]"),  # ... a closed bracket the line opened above: checked whole
        ("x = foo(", "a, b)", "a, b)"),  # closing the cursor's bracket is fine
        ("x = foo(", "a, b", "a, b"),  # ... and so is staying inside it
        ("x = foo(", "a, [b", ""),
        ("x = foo(\n    ", "a,\n    b)\ny = 2", "a,\n    b)\ny = 2"),  # brackets open at the cursor count
        ("x = foo(\n    ", "a,\n    b,\n", ""),
        ("x = [1)\n", "y = (\n", "y = (\n"),  # the document's own error: nothing to judge by
    ],
)
def test_complete_statements(text: str, suggestion: str, expected: str) -> None:
    assert complete_statements(suggestion, site(text, len(text), "")) == expected


def test_complete_statements_ignores_the_text_after_the_cursor() -> None:
    text = BODY + "\n    return x\n"
    cursor = len(BODY)
    assert complete_statements("y = 1\n    z = (", site(text, cursor, "")) == "y = 1\n"


# -- decoding with a tiny random model ----------------------------------------------------


def never(text: str) -> int | None:
    return None


def only(vocab: Vocabulary, pieces: tuple[bytes, ...]) -> Callable[[list[int], torch.Tensor], torch.Tensor]:
    """A processor that lets the model write nothing but `pieces`."""
    allowed = torch.tensor([tid(vocab, p) for p in pieces])

    def restrict(generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, INF)
        out[allowed] = logits[allowed]
        return out

    return restrict


SOUP = (b"x", b" +", b"\n", b")", b" (", b"    ")  # enough for bracket soup, and for valid lines


@pytest.mark.parametrize(
    ("kind", "text", "plain_is_python"),
    [("llama", "def f(x):\n    y = [x, 1]\n    ", False), ("qwen2", "import os\n\n", True)],
)
def test_a_random_model_ends_only_valid_lines_with_the_monitor(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary, kind: str, text: str, plain_is_python: bool
) -> None:
    """A tiny random model limited to a few code tokens writes bracket soup. With the monitor, every
    line it ends keeps the document a valid prefix (the last line, still open, is the model's to
    finish: `complete_statements` cuts it off); plain, on the first seed, it ends lines that are not."""
    engine = tiny_engine(kind)
    written = {}
    for name in ("plain", "monitored"):
        live = LiveDocument(engine, text, fim=False)
        stats = MonitorStats()
        processors = [only(vocab, SOUP)]
        if name == "monitored":
            processors.append(SyntaxMonitor(vocab, site(live.text, live.cursor, live.heal), stats))
        written[name] = decode(live, vocab, max_tokens=48, processors=processors, stop=never).text
    assert stats.steps == 48 and stats.repairs > 0
    assert python_prefix(through_last_statement(text + written["monitored"]))
    assert python_prefix(through_last_statement(text + written["plain"])) == plain_is_python
    if written["monitored"].count("\n") > 1:
        cut = complete_statements(written["monitored"], site(text, len(text), ""))
        assert cut.endswith("\n") and python_prefix(text + cut)


# -- the benchmark's points ---------------------------------------------------------------


def test_benchmark_points_are_deterministic_statement_starts() -> None:
    root = stdlib_root()
    points = select_points(root, files=3, points=7)
    assert points == select_points(root, files=3, points=7)
    assert len(points) == 7 and len({p.path for p in points}) <= 3
    for p in points:
        text = (root / p.path).read_text(encoding="utf-8")
        line_start = text.rfind("\n", 0, p.offset) + 1
        assert not text[line_start : p.offset].strip() and text[p.offset] not in " \t\n"
        assert text.count("\n", 0, p.offset) + 1 == p.line
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
        starts = {
            (n.lineno, n.col_offset)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
            if isinstance(n, ast.stmt) and n is not f
        }
        col = len(text[line_start : p.offset].encode())
        assert (p.line, col) in starts
        doc = document_at(text, p.offset)
        assert splice_valid(doc, p.offset, "")  # the opened line leaves the file valid
        assert doc[p.offset :].startswith("\n" + text[line_start : p.offset])


def test_statement_starts_finds_function_body_statements_only() -> None:
    text = "x = 1\n\ndef f(a):\n    y = a; z = 2\n    if y:\n        return y\n\nclass A:\n    w = 3\n"
    found = [text[o : text.index("\n", o)] for o in statement_starts(text)]
    assert found == ["y = a; z = 2", "if y:", "return y"]


def test_splice_valid() -> None:
    doc = "def f(x):\n    \n    return x\n"
    cursor = len("def f(x):\n    ")
    assert splice_valid(doc, cursor, "y = x + 1")
    assert not splice_valid(doc, cursor, "y = x +")
    assert splice_valid("def f(x):\n    ", len("def f(x):\n    "), "if x:")  # at the end: a valid prefix
