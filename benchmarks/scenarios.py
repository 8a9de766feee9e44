"""Generate the edit benchmark's scenarios from real standard-library code.

Each scenario is a document in two states. `after` is always real code: a Python
standard-library file (capped near 40,000 characters at a statement boundary, so it
still compiles). `before` is a plausible earlier state, made by undoing one realistic
change above the cursor: a line the user then inserted, a line they then deleted,
a name they then renamed everywhere, an argument they then changed, or a parameter
they then added. `edits` turn `before` into `after`; the model must complete the
line at `cursor` in `after` having seen the edits.

One JSON object per line:
`{"id", "kind", "edit_type", "before", "edits": [{"start", "end", "text"}], "cursor",
"target", "source"}`. Edit offsets are into `before`, sorted and non-overlapping;
`cursor` is an offset into `after` where the target line starts.

    python -m benchmarks.scenarios --out benchmarks/data/edits.jsonl [--count N] [--seed S]

The output depends only on the seed, the count, the stdlib of the running Python and
the tokenizer; running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import io
import json
import keyword
import random
import re
import sysconfig
import tokenize
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

EDIT_TYPES = ("insert_line", "delete_line", "rename", "change_argument", "add_parameter")
CONTEXT_BUCKETS = ((1000, 2000), (2000, 3000), (3000, 4000), (4000, 6000))
DISTANCE_BUCKETS = ("near", "mid", "far")
NEAR_LINES = 5  # an edit at most this many lines above the target line is "near"
FAR_TOKENS = 1000  # an edit at least this many tokens above the cursor is "far"
MAX_CHARS = 40_000  # longer files are cut at the last statement boundary before this
MAX_PER_FILE = 4
MIN_TARGET_CHARS = 12
LINES_AFTER_TARGET = 3  # the capped file keeps at least this many lines after the target
# A slot first wants its distance and a change related to the target line, then only
# the distance, then anything.
RELATED_ATTEMPTS = 100
DISTANCE_ATTEMPTS = 200
ATTEMPTS_PER_SLOT = 600
SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "encodings", "pydoc_data"}
SIMPLE_STATEMENTS = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Expr,
    ast.Return,
    ast.Raise,
    ast.Assert,
    ast.Import,
    ast.ImportFrom,
    ast.Delete,
)
UNRENAMABLE = {"self", "cls", "mcs", "metacls"} | set(dir(builtins)) | set(keyword.kwlist)
DEBUG_PRINTS = ('print("DEBUG {n}:", {n})', 'print(f"{n}={{{n}!r}}")', "print({n!r}, {n})")
IDENT = re.compile(r"[A-Za-z_]\w*")

TokenEnds = Callable[[str], list[int]]  # text -> end character offset of each model token
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Change:
    """`after[start:end]` reads `text` in `before`: one span of the undone change."""

    start: int
    end: int
    text: str


@dataclass
class SourceFile:
    """One capped stdlib file with everything the generators look up in it."""

    path: str
    text: str
    lines: list[str]
    line_starts: list[int]  # one more than lines: the last is len(text) + 1
    tree: ast.Module
    token_ends: list[int]  # sorted end offsets of the model's tokens over `text`
    targets: list[int]  # 0-based indices of lines fit to be the target line
    statements: list[tuple[ast.stmt, list[ast.stmt], int]]  # statement, its block, index
    functions: list[FunctionNode]
    classes: list[ast.ClassDef]
    in_fstring: set[int]  # id() of every node inside an f-string
    strings: list[str]  # source of short one-line string literals, in file order

    def offset(self, lineno: int, col: int) -> int:
        """Character offset of an ast position (1-based line, UTF-8 byte column)."""
        line = self.lines[lineno - 1]
        if not line.isascii():
            col = len(line.encode()[:col].decode())
        return self.line_starts[lineno - 1] + col

    def span(self, node: ast.expr | ast.stmt | ast.arg) -> tuple[int, int]:
        """Character offsets of a node's source (ast.parse always sets the end position)."""
        end = self.offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
        return self.offset(node.lineno, node.col_offset), end

    def tokens_before(self, offset: int) -> int:
        return bisect_right(self.token_ends, offset)

    def enclosing_function(self, line: int) -> FunctionNode | None:
        """Innermost function whose body holds 0-based `line`."""
        inside = [f for f in self.functions if f.body[0].lineno <= line + 1 <= (f.end_lineno or 0)]
        return max(inside, key=lambda f: f.lineno, default=None)

    def enclosing_class(self, line: int) -> ast.ClassDef | None:
        inside = [c for c in self.classes if c.lineno <= line + 1 <= (c.end_lineno or 0)]
        return max(inside, key=lambda c: c.lineno, default=None)


@dataclass
class Generated:
    """One scenario and the numbers the summary reports about it."""

    scenario: dict[str, object]
    context_tokens: int
    distance: str


def apply_edits(before: str, edits: list[dict]) -> str:
    """Apply sorted, non-overlapping `{"start", "end", "text"}` edits (offsets into `before`)."""
    pieces: list[str] = []
    pos = 0
    for edit in edits:
        start, end = edit["start"], edit["end"]
        if not pos <= start <= end <= len(before):
            raise ValueError(f"edit {edit!r} is out of order, overlapping or out of range")
        pieces += [before[pos:start], edit["text"]]
        pos = end
    pieces.append(before[pos:])
    return "".join(pieces)


def edit_kind(edits: list[dict]) -> str:
    if all(e["start"] == e["end"] for e in edits):
        return "insertion"
    if all(e["text"] == "" for e in edits):
        return "deletion"
    return "replacement"


def stdlib_files() -> list[tuple[str, Path]]:
    """(relative path, path) of the stdlib's .py files, minus tests and generated tables."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if SKIPPED_DIRS & set(rel.parts) or rel.parts[0].startswith("config-"):
            continue
        if rel.name.startswith("_sysconfigdata"):
            continue
        found.append((rel.as_posix(), path))
    return sorted(found)


def _compiles(text: str, name: str) -> bool:
    """True if `text` compiles without errors or warnings (so it stays valid on newer Pythons)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compile(text, name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, Warning):
            return False
    return True


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text)] + [len(text) + 1]


def _cap(text: str, tree: ast.Module) -> str:
    """Cut a long file after the last top-level statement or class member ending by MAX_CHARS."""
    if len(text) <= MAX_CHARS:
        return text
    starts = _line_starts(text)
    ends = [n.end_lineno for n in tree.body]
    ends += [m.end_lineno for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body]
    cuts = [starts[e] for e in ends if e is not None and starts[e] <= MAX_CHARS]
    return text[: max(cuts)] if cuts else text


def _target_lines(text: str, lines: list[str]) -> list[int]:
    """Lines that start a logical line of code: no comment, docstring or lone bracket."""
    string_starts = {tokenize.STRING, getattr(tokenize, "FSTRING_START", tokenize.STRING)}
    skipped = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    found = []
    at_start = True
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NEWLINE:
            at_start = True
        elif tok.type not in skipped and at_start:
            at_start = False
            row, col = tok.start
            line = lines[row - 1]
            if (
                tok.type not in string_starts
                and not line[:col].strip()
                and len(line.strip()) >= MIN_TARGET_CHARS
                and 1 <= row - 1 < len(lines) - 1 - LINES_AFTER_TARGET
            ):
                found.append(row - 1)
    return found


def _statements(tree: ast.Module) -> list[tuple[ast.stmt, list[ast.stmt], int]]:
    found = []
    for node in ast.walk(tree):
        for _, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                found += [(stmt, value, i) for i, stmt in enumerate(value)]
    return sorted(found, key=lambda s: (s[0].lineno, s[0].col_offset))


def analyze(rel: str, path: Path, token_ends: TokenEnds) -> SourceFile | None:
    """Parse, cap and tokenize one file; None if it is unusable or too short for any bucket."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 3000 or not _compiles(text, rel):
        return None
    text = _cap(text, ast.parse(text))
    if not _compiles(text, rel):
        return None
    tree = ast.parse(text)
    lines = text.split("\n")
    starts = _line_starts(text)
    ends = sorted(token_ends(text))
    low, high = CONTEXT_BUCKETS[0][0], CONTEXT_BUCKETS[-1][1]
    targets = [t for t in _target_lines(text, lines) if low <= bisect_right(ends, starts[t]) < high]
    if not targets:
        return None
    nodes = list(ast.walk(tree))
    in_fstring = {id(m) for n in nodes if isinstance(n, ast.JoinedStr) for m in ast.walk(n)}
    strings: list[str] = []
    for node in nodes:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in in_fstring
            and node.lineno == node.end_lineno
            and 1 <= len(node.value) <= 40
        ):
            line = lines[node.lineno - 1]
            seg = line.encode()[node.col_offset : node.end_col_offset].decode()
            if seg[0] in "'\"" and seg[:3] not in ('"""', "'''") and seg not in strings:
                strings.append(seg)
    return SourceFile(
        path=rel,
        text=text,
        lines=lines,
        line_starts=starts,
        tree=tree,
        token_ends=ends,
        targets=targets,
        statements=_statements(tree),
        functions=[n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)],
        classes=[n for n in nodes if isinstance(n, ast.ClassDef)],
        in_fstring=in_fstring,
        strings=strings,
    )


def _idents(text: str) -> set[str]:
    return {w for w in IDENT.findall(text) if w not in UNRENAMABLE}


def _one_line(f: SourceFile, stmt: ast.stmt) -> bool:
    """The statement alone fills its line (apart from indentation and a trailing comment)."""
    if stmt.lineno != stmt.end_lineno:
        return False
    start, end = f.span(stmt)
    line_start = f.line_starts[stmt.lineno - 1]
    line_end = f.line_starts[stmt.lineno] - 1
    tail = f.text[end:line_end].strip()
    return not f.text[line_start:start].strip() and (not tail or tail.startswith("#"))


def _first_line(stmt: ast.stmt) -> int:
    """0-based first line of a statement, counting its decorators."""
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno] + [d.lineno for d in decorators]) - 1


def _scope_names(fn: FunctionNode) -> tuple[list[str], list[ast.Name], set[str]]:
    """(parameter names, every Name node inside, names that cannot be renamed locally)."""
    a = fn.args
    params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    params += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    names: list[ast.Name] = []
    blocked: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            names.append(node)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            blocked.update(node.names)
        elif node is not fn and isinstance(node, FunctionNode | ast.Lambda):
            blocked.update(p.arg for p in ast.walk(node.args) if isinstance(p, ast.arg))
    return params, names, blocked


def _distance(f: SourceFile, t: int, changes: list[Change]) -> str:
    cursor = f.line_starts[t]
    end = max(c.end for c in changes)
    if f.text.count("\n", end, cursor) <= NEAR_LINES:
        return "near"
    if f.tokens_before(cursor) - f.tokens_before(end) >= FAR_TOKENS:
        return "far"
    return "mid"


Option = tuple[int, list[Change]]  # (preference, lower is better; the undone change)


def _insert_line(f: SourceFile, t: int, rng: random.Random) -> list[Option]:
    """Undo inserting one real statement line above the cursor: `before` lacks it."""
    wanted = _idents(f.lines[t])
    options = []
    for stmt, block, _ in f.statements:
        line = stmt.lineno - 1
        if line >= t or len(block) < 2 or not isinstance(stmt, SIMPLE_STATEMENTS):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        if not _one_line(f, stmt) or len(f.lines[line].strip()) < 10:
            continue
        change = Change(f.line_starts[line], f.line_starts[line + 1], "")
        options.append((0 if _idents(f.lines[line]) & wanted else 1, [change]))
    return options


def _debug_names(f: SourceFile, line: int) -> list[str]:
    """Up to three variables bound just before 0-based `line`, most recent last."""
    fn = f.enclosing_function(line)
    if fn is None:
        return []
    params, names, _ = _scope_names(fn)
    comprehension_targets = {
        id(n) for c in ast.walk(fn) if isinstance(c, ast.comprehension) for n in ast.walk(c.target)
    }
    bound = {p: fn.lineno for p in params}
    for name in names:
        if id(name) in comprehension_targets:
            continue
        if isinstance(name.ctx, ast.Store) and name.lineno <= line:
            bound[name.id] = name.lineno
    ordered = sorted((ln, n) for n, ln in bound.items() if n not in UNRENAMABLE)
    return [n for _, n in ordered[-3:]]


def _delete_line(f: SourceFile, t: int, rng: random.Random) -> list[Option]:
    """Undo deleting a line: `before` has a debug print or a duplicated line above the cursor."""
    templates = list(DEBUG_PRINTS)
    if re.search(r"^import logging$", f.text, re.M):
        templates.append('logging.debug("{n}=%r", {n})')
    if re.search(r"^logger = ", f.text, re.M):
        templates.append('logger.debug("{n}=%r", {n})')
    wanted = _idents(f.lines[t])
    options = []
    for stmt, block, index in f.statements:
        first = _first_line(stmt)
        if first > t or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            continue
        code = f.lines[first].lstrip()
        indent = f.lines[first][: len(f.lines[first]) - len(code)]
        decorated = first != stmt.lineno - 1
        if (code[:1] == "@") != decorated or stmt.col_offset != len(indent.encode()):
            continue  # the statement does not start its line
        at = f.line_starts[first]
        lines = []
        names = _debug_names(f, first)
        if names:
            name = rng.choice(names)
            lines.append((0 if name in wanted else 1, rng.choice(templates).format(n=name)))
        copied: ast.stmt | None = stmt
        if not isinstance(stmt, SIMPLE_STATEMENTS) or not _one_line(f, stmt):
            copied = block[index - 1] if index > 0 else None
        if (
            copied is not None
            and isinstance(copied, SIMPLE_STATEMENTS)
            and _one_line(f, copied)
            and f.lines[copied.lineno - 1].strip() != f.lines[t].strip()
        ):
            copy = f.lines[copied.lineno - 1].strip()
            lines.append((0 if _idents(copy) & wanted else 1, copy))
        for preference, line in lines:
            options.append((preference, [Change(at, at, indent + line + "\n")]))
    return options


def _new_names(name: str) -> Iterator[str]:
    """Plausible earlier spellings of an identifier."""
    lead = name[: len(name) - len(name.lstrip("_"))]
    parts = [p for p in name.strip("_").split("_") if p]
    if len(parts) > 1:
        yield lead + parts[0] + "".join(p.title() for p in parts[1:])
        yield lead + "".join(p[0] for p in parts[:-1]) + parts[-1]
        yield lead + "_".join(parts[:-1])
    elif parts:
        word = parts[0]
        yield lead + word[0] + re.sub("[aeiou]", "", word[1:])
        yield lead + word[:3]
    yield name.lstrip("_") if lead else "_" + name
    for suffix in ("_obj", "_val", "_list", "2", "_tmp", "_new"):
        yield name + suffix
    for prefix in ("my_", "cur_", "the_"):
        yield lead + prefix + name.lstrip("_")


def _rename_to(f: SourceFile, name: str, rng: random.Random) -> str | None:
    fresh = [
        n
        for n in dict.fromkeys(_new_names(name))
        if n != name
        and len(n) >= 3
        and n.isidentifier()
        and n not in UNRENAMABLE
        and not re.search(rf"\b{re.escape(n)}\b", f.text)
    ]
    return rng.choice(fresh) if fresh else None


def _occurrences(f: SourceFile, name: str, starts: list[int], cursor: int) -> list[int] | None:
    """Sorted starts before the cursor, or None if any position does not read `name`."""
    found = sorted({s for s in starts if s < cursor})
    for s in found:
        around = f.text[s - 1 : s] + f.text[s + len(name) : s + len(name) + 1]
        if f.text[s : s + len(name)] != name or any(c.isalnum() or c == "_" for c in around):
            return None
    return found


def _rename(f: SourceFile, t: int, rng: random.Random) -> list[Option]:
    """Undo a rename: above the cursor, `before` spells a local or attribute differently.

    Locals and parameters are renamed throughout their function (its `def` line included),
    `self.` attributes throughout their class; the target line and what follows keep the name.
    """
    fn = f.enclosing_function(t)
    if fn is None:
        return []
    cursor = f.line_starts[t]
    params, names, blocked = _scope_names(fn)
    stored = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    arg_starts = {p.arg: f.offset(p.lineno, p.col_offset) for p in ast.walk(fn.args) if isinstance(p, ast.arg)}
    candidates: dict[str, list[int]] = {}
    for node in names:
        name = node.id
        if node.lineno != t + 1 or name in UNRENAMABLE or name in blocked or len(name) < 3:
            continue
        if name in params or name in stored:
            starts = [f.offset(n.lineno, n.col_offset) for n in names if n.id == name]
            candidates[name] = starts + ([arg_starts[name]] if name in arg_starts else [])
    cls = f.enclosing_class(t)
    if cls is not None:
        methods = {n.name for n in f.functions}
        attributes = [n for n in ast.walk(cls) if isinstance(n, ast.Attribute)]
        on_self = [n for n in attributes if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")]
        elsewhere = {n.attr for n in attributes if n not in on_self and n.lineno <= t}
        for node in on_self:
            name = node.attr
            if node.end_lineno != t + 1 or name in methods or name in elsewhere:
                continue  # renaming `other.name` too would be guesswork
            if len(name) < 3 or name in UNRENAMABLE or name.startswith("__"):
                continue
            candidates[name] = [f.span(n)[1] - len(name) for n in on_self if n.attr == name]
    options = []
    for name in sorted(candidates):
        found = _occurrences(f, name, candidates[name], cursor)
        new = _rename_to(f, name, rng)
        if found and new:
            options.append((0, [Change(s, s + len(name), new) for s in found]))
    return options


def _changed_argument(
    f: SourceFile, node: ast.expr, seg: str, fn: FunctionNode | None, rng: random.Random
) -> str | None:
    """Another plausible value for one argument, in source form, or None."""
    if isinstance(node, ast.Constant):
        try:
            if ast.literal_eval(seg) != node.value:
                return None
        except (ValueError, SyntaxError):
            return None
        value = node.value
        if isinstance(value, bool):
            return str(not value)
        if isinstance(value, int) and re.fullmatch(r"0|[1-9][0-9]*", seg):
            values = (value + 1, value - 1, value * 2, 1, 0)
            return str(rng.choice([v for v in values if v >= 0 and v != value]))
        if isinstance(value, float) and re.fullmatch(r"[0-9]+\.[0-9]+", seg):
            return repr(rng.choice([value * 2, value / 2]))
        if isinstance(value, str) and seg[0] in "'\"" and seg[:3] not in ('"""', "'''"):
            similar = [
                s for s in f.strings if s[0] == seg[0] and s != seg and abs(len(s) - len(seg)) <= max(3, len(seg) // 2)
            ]
            return rng.choice(similar) if similar else None
        return None
    if isinstance(node, ast.Name) and seg == node.id and fn is not None:
        params, names, _ = _scope_names(fn)
        stored = [n.id for n in names if isinstance(n.ctx, ast.Store) and n.lineno < node.lineno]
        bound = params + stored
        others = sorted({n for n in bound if n != node.id and n not in UNRENAMABLE})
        return rng.choice(others) if others else None
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _change_argument(f: SourceFile, t: int, rng: random.Random) -> list[Option]:
    """Undo changing one argument of a call above the cursor; calls related to the target first."""
    cursor = f.line_starts[t]
    wanted = _idents(f.lines[t])
    options = []
    for call in ast.walk(f.tree):
        if not isinstance(call, ast.Call) or id(call) in f.in_fstring or call.lineno > t:
            continue
        used = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)} | {_call_name(call)}
        preference = 0 if used & wanted else 1
        fn = f.enclosing_function(call.lineno - 1)
        arguments = [a for a in call.args if not isinstance(a, ast.Starred)]
        arguments += [k.value for k in call.keywords if k.arg is not None]
        for arg in arguments:
            if arg.lineno != arg.end_lineno:
                continue
            start, end = f.span(arg)
            if end > cursor:
                continue
            new = _changed_argument(f, arg, f.text[start:end], fn, rng)
            if new is not None and new != f.text[start:end]:
                options.append((preference, [Change(start, end, new)]))
    return options


def _parameter_removal(text: str, start: int, end: int) -> tuple[int, int]:
    """Span to delete so that the parameter at text[start:end] and one comma disappear."""
    j = end
    while j < len(text) and text[j] in " \t":
        j += 1
    if j < len(text) and text[j] == ",":
        k = j + 1
        while k < len(text) and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "\n":
            line_start = text.rfind("\n", 0, start) + 1
            if not text[line_start:start].strip():  # the parameter has a line of its own
                return line_start, k + 1
            while start > 0 and text[start - 1] in " \t":
                start -= 1
            return start, j + 1
        return start, k
    i = start
    while i > 0 and text[i - 1] in " \t\n":
        i -= 1
    if i > 0 and text[i - 1] == ",":
        return i - 1, end
    return start, end


def _add_parameter(f: SourceFile, t: int, rng: random.Random) -> list[Option]:
    """Undo adding a parameter that the function uses by the target line: `before` lacks it."""
    fn = f.enclosing_function(t)
    if fn is None:
        return []
    a = fn.args
    positional_defaults = dict(zip(reversed(a.args), reversed(a.defaults), strict=False))
    keyword_defaults = dict(zip(a.kwonlyargs, a.kw_defaults, strict=True))
    used_at: dict[str, set[int]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and fn.body[0].lineno <= node.lineno <= t + 1:
            used_at.setdefault(node.id, set()).add(node.lineno)
    options = []
    for param in a.args + a.kwonlyargs:
        if param.arg in UNRENAMABLE or param.arg not in used_at:
            continue
        start, end = f.span(param)
        default = positional_defaults.get(param) or keyword_defaults.get(param)
        if default is not None:
            end = max(end, f.span(default)[1])
        removal = _parameter_removal(f.text, start, end)
        preference = 0 if t + 1 in used_at[param.arg] else 1
        options.append((preference, [Change(*removal, "")]))
    return options


# Every generator takes the same arguments, whether or not it draws random choices.
GENERATORS: dict[str, Callable[[SourceFile, int, random.Random], list[Option]]] = {
    "insert_line": _insert_line,
    "delete_line": _delete_line,
    "rename": _rename,
    "change_argument": _change_argument,
    "add_parameter": _add_parameter,
}


def _reverse_edits(changes: list[Change]) -> list[dict]:
    return [{"start": c.start, "end": c.end, "text": c.text} for c in changes]


def _forward_edits(after: str, changes: list[Change]) -> list[dict]:
    """Edits on `before` (the text with `changes` undone) that give back `after`."""
    edits = []
    shift = 0
    for c in changes:
        start = c.start + shift
        edits.append({"start": start, "end": start + len(c.text), "text": after[c.start : c.end]})
        shift += len(c.text) - (c.end - c.start)
    return edits


def _choose(
    f: SourceFile,
    t: int,
    options: list[Option],
    want: str | None,
    related: bool,
    rng: random.Random,
) -> list[Change] | None:
    """A random most-preferred option at the wanted distance whose `before` still compiles."""
    matching = [(p, c) for p, c in options if (want is None or _distance(f, t, c) == want) and (p == 0 or not related)]
    if not matching:
        return None
    best = min(p for p, _ in matching)
    pool = [c for p, c in matching if p == best]
    rng.shuffle(pool)
    for changes in pool[:5]:
        if _compiles(apply_edits(f.text, _reverse_edits(changes)), f.path):
            return changes
    return None


def generate(count: int, seed: int, token_ends: TokenEnds) -> list[Generated]:
    """`count` scenarios cycling through edit types, context buckets and distances."""
    rng = random.Random(seed)
    files = stdlib_files()
    rng.shuffle(files)
    analyzed: dict[str, SourceFile | None] = {}
    uses: Counter[str] = Counter()
    cursor_file = 0
    made: list[Generated] = []
    for slot in range(count):
        edit_type = EDIT_TYPES[slot % len(EDIT_TYPES)]
        low, high = CONTEXT_BUCKETS[(slot // len(EDIT_TYPES)) % len(CONTEXT_BUCKETS)]
        want = DISTANCE_BUCKETS[(slot // (len(EDIT_TYPES) * len(CONTEXT_BUCKETS))) % 3]
        for attempt in range(ATTEMPTS_PER_SLOT):
            rel, path = files[cursor_file % len(files)]
            cursor_file += 1
            if uses[rel] >= MAX_PER_FILE:
                continue
            if rel not in analyzed:
                analyzed[rel] = analyze(rel, path, token_ends)
            f = analyzed[rel]
            if f is None:
                continue
            targets = [t for t in f.targets if low <= f.tokens_before(f.line_starts[t]) < high]
            if not targets:
                continue
            t = rng.choice(targets)
            options = GENERATORS[edit_type](f, t, rng)
            wanted = want if attempt < DISTANCE_ATTEMPTS else None
            changes = _choose(f, t, options, wanted, attempt < RELATED_ATTEMPTS, rng)
            if changes is None:
                continue
            cursor = f.line_starts[t]
            context_tokens = len(token_ends(f.text[:cursor]))
            if not CONTEXT_BUCKETS[0][0] <= context_tokens <= CONTEXT_BUCKETS[-1][1]:
                continue
            before = apply_edits(f.text, _reverse_edits(changes))
            edits = _forward_edits(f.text, changes)
            assert apply_edits(before, edits) == f.text
            scenario: dict[str, object] = {
                "id": f"{slot:03d}-{edit_type}-{Path(rel).stem}",
                "kind": edit_kind(edits),
                "edit_type": edit_type,
                "before": before,
                "edits": edits,
                "cursor": cursor,
                "target": f.lines[t],
                "source": f"{rel}:{t + 1}",
            }
            made.append(Generated(scenario, context_tokens, _distance(f, t, changes)))
            uses[rel] += 1
            break
        else:
            raise RuntimeError(f"no {edit_type} scenario for slot {slot} ({low}-{high} tokens)")
    return made


def _bucket_name(tokens: int) -> str:
    for low, high in CONTEXT_BUCKETS:
        if low <= tokens < high:
            return f"{low // 1000}-{high // 1000}k"
    return f"{CONTEXT_BUCKETS[-1][0] // 1000}-{CONTEXT_BUCKETS[-1][1] // 1000}k"


def summary(made: list[Generated]) -> str:
    """Counts per edit type, kind, context bucket and distance bucket, and file spread."""
    rows = [
        ("edit_type", Counter(str(g.scenario["edit_type"]) for g in made)),
        ("kind", Counter(str(g.scenario["kind"]) for g in made)),
        ("context", Counter(_bucket_name(g.context_tokens) for g in made)),
        ("distance", Counter(g.distance for g in made)),
    ]
    out = [f"{len(made)} scenarios"]
    for label, counts in rows:
        out.append(f"{label:>10}: " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for edit_type in EDIT_TYPES:
        distances = Counter(g.distance for g in made if g.scenario["edit_type"] == edit_type)
        cells = "  ".join(f"{d} {distances[d]}" for d in DISTANCE_BUCKETS)
        out.append(f"{'':>12}{edit_type:<16}{cells}")
    files = Counter(str(g.scenario["source"]).rsplit(":", 1)[0] for g in made)
    out.append(f"{'files':>10}: {len(files)} distinct, at most {max(files.values())} per file")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/data/edits.jsonl"))
    parser.add_argument("--count", type=int, default=180)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from completion.model.loading import load_model  # heavy; only the CLI needs it

    tokenizer = load_model().tokenizer

    def token_ends(text: str) -> list[int]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [end for _, end in encoded["offset_mapping"]]

    made = generate(args.count, args.seed, token_ends)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as out:
        for g in made:
            out.write(json.dumps(g.scenario, ensure_ascii=False) + "\n")
    print(summary(made))


if __name__ == "__main__":
    main()
