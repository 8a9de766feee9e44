"""The docs' benchmark tables, rendered from the committed results so that no figure is typed by hand.

In README.md, benchmarks/README.md and RELIABILITY.md a table sits between two markers:

    <!-- table: SUITE benchmarks/results/SUITE.json -->
    ...
    <!-- /table -->

and is `benchmarks.SUITE.table(json.load(path))`, the table the suite printed when it wrote that JSON.
`<!-- table: targets DOC -->` collects the targets of every table marked in DOC into one table with a
link to the suite's section and its results: each `| target: ... |` row, and in a table whose last two
columns are `target | met`, each row's targets (several joined by "; ") with their verdicts.

    python -m benchmarks.tables          # rewrite the docs' tables from the results
    python -m benchmarks.tables --check  # exit 1 naming each doc whose tables differ (tests/test_tables.py)
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys

from benchmarks.common import REPO

DOCS = ("README.md", "benchmarks/README.md", "RELIABILITY.md")
MARKED = re.compile(r"(<!-- table: (\S+) (\S+) -->\n).*?(<!-- /table -->)", re.S)
TARGET_ROW = re.compile(r"^\| target: (.*?) \| (.*?) \|", re.M)
LETTER = re.compile(r"[A-Za-z]")
VERDICT = re.compile(r"^(met|missed)\b")


def suite_table(suite: str, results: str) -> str:
    """A suite's table from its results JSON (a path from the repository's root)."""
    module = importlib.import_module(f"benchmarks.{suite}")
    return str(module.table(json.loads((REPO / results).read_text())))


def targets_table(doc: str) -> str:
    """Every target row of the suites' tables marked in `doc`: the suite, the target, the measured figure."""
    text = (REPO / doc).read_text()
    rows = ["| benchmark | target | measured |", "|---|---|---|"]
    for _, suite, results, _ in MARKED.findall(text):
        if suite == "targets":
            continue
        table = suite_table(suite, results)
        for target, figure in TARGET_ROW.findall(table) + column_targets(table):
            rows.append(f"| [{suite}]({doc}#{suite}) ([JSON]({results})) | {target} | {figure} |")
    return "\n".join(rows)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def column_targets(table: str) -> list[tuple[str, str]]:
    """(target, verdict) for each target of a table whose last columns are `target | met`, the target named
    with its row (and its second cell where the first repeats); a target without words (`<= 0.001`) bounds
    the row's second cell, which it is shown with."""
    lines = table.splitlines()
    if not lines or cells(lines[0])[-2:] != ["target", "met"]:
        return []
    first = cells(lines[0])[0]
    rows = [cells(line) for line in lines[2:] if not line.startswith("| target: ")]
    labels = [row[0] for row in rows]
    found = []
    for row in rows:
        label = row[0] if labels.count(row[0]) == 1 else f"{row[0]}, {row[1]}"
        for target, verdict in zip(row[-2].split("; "), row[-1].split("; "), strict=True):
            verdict = VERDICT.sub(r"**\1**", verdict)
            if target == "-":
                continue
            if LETTER.search(target):
                found.append((f"{target} ({first} {label})", verdict))
            else:
                found.append((f"{row[0]} {target}", f"{row[1]}: {verdict}"))
    return found


def render(suite: str, source: str) -> str:
    return targets_table(source) if suite == "targets" else suite_table(suite, source)


def rendered(text: str) -> str:
    """`text` with each marked table replaced by its rendering."""
    return MARKED.sub(lambda m: f"{m[1]}{render(m[2], m[3])}\n{m[4]}", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a doc's tables differ")
    args = ap.parse_args(argv)
    stale = []
    for doc in DOCS:
        path = REPO / doc
        if not path.exists():
            continue
        text = path.read_text()
        new = rendered(text)
        if new != text:
            stale.append(doc)
            if not args.check:
                path.write_text(new)
    if stale:
        verb = "differ from their results" if args.check else "rewritten"
        print(f"tables {verb}: {', '.join(stale)}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
