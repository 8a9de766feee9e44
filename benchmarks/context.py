"""Cross-file context benchmark: does the next line come out right when it names code of other files?

Points are drawn deterministically (fixed seed) from installed pure-Python packages (default: parso,
cattrs, click, attr, as this environment has them): statements inside function bodies that fit on
their line and read (a plain name) a top-level function or class that another file of the package defines and
the point's own file does not. At each point the user is about to write that line: the file with
the line's text removed (the cursor after its indentation) is opened in the server's engine
session (`EngineSession`) under its own path, the package's folder as the workspace (walked as the
server walks one; the open file is excluded from its own context), left to settle as after a pause
(the prompt encoded, idle-time steps run: the cross-file context among them) and asked for a
suggestion there, once per mode:

- `off`: `crossFileChars: 0`, no cross-file context;
- `lines`: 20-line windows every 10 lines (the chunks before definitions), as comment blocks;
- `definitions`: whole definitions (completion/project/chunks.py), as comment blocks;
- `definitions+markers`: the same behind the model's repository markers (`<repo_name>`, `<file_sep>`);
- `lines+markers`: line windows behind the markers.

The session's default is `definitions` rendered with markers when the model's vocabulary has them
(`EngineSession.context_style`); the other modes swap the session's snippet index or its style, which
are not settings (the JSON names each mode's). Every setting is the server's default but for what a
flag changes; the JSON records those (`settings`). Figures per mode: exact match of the suggestion's
first line against the real line, edit similarity, and how often the context held the definition the
line names (`hit`).

    livekv bench context [--packages parso cattrs ...] [--points N] [--context-tokens N] [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import random
import statistics
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import target_row, write_json
from benchmarks.edits import edit_similarity
from benchmarks.engine_session import (
    ONE_PASS_SETTLE,
    add_setting_flags,
    flag_settings,
    index,
    refresh_in_one_pass,
    settle,
    start,
    with_settings,
)
from completion.project.snippets import Chunking, SnippetIndex, Style
from completion.session import EngineSession

DEFAULT_PACKAGES = ("parso", "cattrs", "click", "attr")
SEED = 0
MIN_TARGET_CHARS = 8  # shorter lines (`pass`, `i += 1`) say nothing about context
MODES: dict[str, tuple[Chunking, Style] | None] = {
    "off": None,
    "lines": ("lines", "comments"),
    "definitions": ("definitions", "comments"),
    "definitions+markers": ("definitions", "markers"),
    "lines+markers": ("lines", "markers"),
}


@dataclass(frozen=True)
class Point:
    package: str
    path: str  # relative to the package's folder
    offset: int  # where the line's code starts (after its indentation)
    target: str  # the line's code
    names: tuple[str, ...]  # the names it uses that other files of the package define


@dataclass
class Trial:
    package: str
    path: str
    line: int
    mode: str
    suggestion: str
    exact: bool
    similarity: float
    hit: bool  # the context held a definition of one of the point's names
    context_chars: int
    seconds: float


def package_root(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _defined(tree: ast.Module) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}


def select_points(packages: Sequence[str], points: int, seed: int = SEED) -> tuple[list[Point], dict[str, Path]]:
    """Up to `points` positions spread evenly over the packages, the same on every run for one environment."""
    roots = {p: r for p in packages if (r := package_root(p)) is not None}
    chosen: list[Point] = []
    rng = random.Random(seed)
    for package, root in roots.items():
        parsed: dict[str, tuple[str, ast.Module]] = {}
        for path in sorted(root.rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    parsed[path.relative_to(root).as_posix()] = (text, ast.parse(text))
            except (UnicodeDecodeError, SyntaxError, ValueError):
                continue
        owners: dict[str, set[str]] = {}
        for rel, (_, tree) in parsed.items():
            for name in _defined(tree):
                owners.setdefault(name, set()).add(rel)
        candidates = [p for rel, (text, tree) in parsed.items() for p in _points(package, rel, text, tree, owners)]
        chosen += rng.sample(candidates, min(len(candidates), -(-points // len(roots))))
    return chosen[:points], roots


def _points(package: str, rel: str, text: str, tree: ast.Module, owners: dict[str, set[str]]) -> list[Point]:
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    own = _defined(tree)
    found: dict[int, Point] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for stmt in (s for body in fn.body for s in ast.walk(body) if isinstance(s, ast.stmt)):
            if stmt.end_lineno != stmt.lineno or isinstance(stmt, ast.FunctionDef | ast.ClassDef):
                continue
            line = lines[stmt.lineno - 1]
            code = line.lstrip()
            names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            elsewhere = tuple(sorted(n for n in names if n not in own and owners.get(n, set()) - {rel}))
            if elsewhere and len(code.rstrip()) >= MIN_TARGET_CHARS and not code.startswith("#"):
                offset = starts[stmt.lineno - 1] + len(line) - len(code)
                found[offset] = Point(package, rel, offset, code.rstrip(), elsewhere)
    return [found[k] for k in sorted(found)]


def document_at(text: str, point: Point) -> str:
    """The file with the point's line emptied (its indentation kept, the cursor at its end)."""
    return text[: point.offset] + text[text.index("\n", point.offset) if "\n" in text[point.offset :] else len(text) :]


def run_point(session: EngineSession, indexes: dict[str, SnippetIndex], root: Path, point: Point) -> list[Trial]:
    original = (root / point.path).read_text(encoding="utf-8")
    doc = document_at(original, point)
    uri = (root / point.path).as_uri()
    trials = []
    base = session.settings
    modes = list(MODES) if point.offset % 2 else list(reversed(MODES))  # neither order always finds caches warm
    for mode in modes:
        how = MODES[mode]
        if how is None:
            session.apply_settings(with_settings(base, {"crossFileChars": 0}))
        else:
            session.apply_settings(base)
            session.workspace.snippets, session.context_style = indexes[how[0]], how[1]
        session.open(uri, doc)
        settle(session, uri, point.offset)
        answer = session.complete(uri, point.offset)
        assert answer is not None, f"{uri} is not open in the session"
        live = session.store.get(uri)
        context = live.context
        session.close(uri)
        if how is not None:  # the open file's text replaced its disk copy in the index: put that back
            session.workspace.snippets_of(uri, original)
        text = answer.drafts[0].text.split("\n")[0].rstrip() if answer.drafts else ""
        trials.append(
            Trial(
                package=point.package,
                path=point.path,
                line=doc.count("\n", 0, point.offset) + 1,
                mode=mode,
                suggestion=text,
                exact=text == point.target,
                similarity=edit_similarity(text, point.target),
                hit=any(f"def {n}(" in context or f"class {n}" in context for n in point.names),
                context_chars=len(context),
                seconds=answer.seconds,
            )
        )
    session.apply_settings(base)
    return trials


def summarize(trials: Sequence[Trial]) -> dict[str, dict[str, float]]:
    out = {}
    for mode in MODES:
        ts = [t for t in trials if t.mode == mode]
        if ts:
            out[mode] = {
                "n": len(ts),
                "exact_match": 100 * sum(t.exact for t in ts) / len(ts),
                "edit_similarity": 100 * statistics.mean(t.similarity for t in ts),
                "hit": 100 * sum(t.hit for t in ts) / len(ts),
                "context_chars": statistics.mean(t.context_chars for t in ts),
                "seconds_p50": statistics.median(t.seconds for t in ts),
            }
    return out


def table(result: dict[str, Any]) -> str:
    """Per mode: exact match, edit similarity, how often the named definition was in the context, its size
    and the request's time; then the target (the server's definitions beat line windows)."""
    summary = result["summary"]
    lines = [
        "| mode | n | exact match % | edit sim % | definition in context % | context chars | request p50 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, s in summary.items():
        lines.append(
            f"| {mode} | {s['n']} | {s['exact_match']:.1f} | {s['edit_similarity']:.1f} | {s['hit']:.1f} "
            f"| {s['context_chars']:.0f} | {1000 * s['seconds_p50']:.0f} |"
        )
    ours, lines_mode = summary.get("definitions"), summary.get("lines")
    if ours and lines_mode:
        beats = ours["exact_match"] > lines_mode["exact_match"] or (
            ours["exact_match"] == lines_mode["exact_match"] and ours["edit_similarity"] > lines_mode["edit_similarity"]
        )
        figure = f"{ours['exact_match']:.1f} / {ours['edit_similarity']:.1f} against {lines_mode['exact_match']:.1f} / "
        lines.append(target_row(7, "definitions beat line windows (exact, then similarity)",
                                figure + f"{lines_mode['edit_similarity']:.1f}", beats))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench context", description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="*", default=list(DEFAULT_PACKAGES), help="installed packages to draw from")
    ap.add_argument("--points", type=int, default=40)
    add_setting_flags(ap)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 points")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.points = 4
    settings = flag_settings(args)
    points, roots = select_points(args.packages, args.points)
    if not points:
        raise SystemExit(f"no points: none of {', '.join(args.packages)} is installed with cross-file names")
    trials: list[Trial] = []
    model, default_style = None, None
    for package, root in roots.items():
        mine = [p for p in points if p.package == package]
        if not mine:
            continue
        session = start(settings)  # one package at a time is the workspace
        refresh_in_one_pass(session)
        model, default_style = session.model_name, session.context_style
        try:
            indexes: dict[str, SnippetIndex] = {"definitions": session.workspace.snippets}  # the server's
            walk = index(session, str(root))
            indexes["lines"] = SnippetIndex(chunking="lines")
            indexes["lines"].index_folder(str(root))
            print(f"{package}: {walk['files']} files indexed, {len(mine)} points", file=sys.stderr)
            for point in mine:
                done = run_point(session, indexes, root, point)
                trials += done
                marks = " ".join(f"{t.mode}={'Y' if t.exact else '.'}" for t in done)
                print(f"{point.package}/{point.path}:{done[0].line} {marks}", file=sys.stderr)
        finally:
            session.shutdown()
    result = json.loads(
        json.dumps(
            {
                "modes": {m: None if h is None else {"chunking": h[0], "style": h[1]} for m, h in MODES.items()},
                "session_default": {"chunking": "definitions", "style": default_style},
                "settle": ONE_PASS_SETTLE,
                "packages": {p: str(r) for p, r in roots.items()},
                "summary": summarize(trials),
                "trials": [asdict(t) for t in trials],
            }
        )
    )
    write_json(args.json_out, "context", model=model, settings=settings, **result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
