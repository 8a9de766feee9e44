"""Pick the dereference-monitor benchmark's points: real `receiver.attribute` sites in installed code.

A point is a file and a character offset right after a dot, where the file really has
`receiver.target`; the benchmark completes from that offset and checks whether the
dereference monitor keeps the suggestion to attributes jedi knows (it does not matter here
whether jedi resolves the receiver: that is what the benchmark measures).

Files come from the pure-Python packages jedi, parso and pygls in the running environment's
site-packages (`sysconfig.get_paths()["purelib"]`, the project root; pyproject.toml pins
their versions, so every checkout sees the same files). Skipped: jedi/third_party, typeshed,
`.pyi` stubs, `test`/`tests` directories, files under 1 KB or over 40 KB (which keeps the
shipped gzip small), and files that are not plain UTF-8 with `\\n` line ends.

Dereferences are found with `tokenize`: a NAME (not a keyword), `)` or `]`, then OP `.`, then
a NAME directly after the dot, all on one physical line; so nothing in strings, comments or
f-strings, and number receivers never qualify. Logical lines that are `import`/`from`
statements or decorators are skipped. A point is "trivial" when its target already appears
as a name earlier on the same line (`a.value < b.value`, `name.name`); those are only used if
there are not enough others. At most one point per line.

Selection is deterministic (sorted files, `random.Random(seed)`): files are visited round
robin in a shuffled order, each file's candidates in a shuffled order, taking at most
`MAX_PER_FILE` per file, until `count` points are chosen, with at most `SELF_SHARE` of the
points on `self.` and at most `OTHER_SHARE` on any other one receiver (`)` and `]` count as
receivers). Output is sorted by path and offset, one JSON object per line, gzipped with no
timestamp, so running it twice gives byte-identical files:

`{"id", "path", "text", "offset", "target", "receiver"}` where `path` is relative to the
project root, `text` the whole file, `offset` the character offset right after the dot,
`target` the identifier that follows it and `receiver` the last token before the dot.

    python -m benchmarks.monitor_points --out benchmarks/data/monitor_points.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import keyword
import random
import sysconfig
import tokenize
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("jedi", "parso", "pygls")
SKIPPED_DIRS = {"test", "tests", "third_party", "typeshed", "__pycache__"}
MIN_BYTES = 1024
MAX_BYTES = 40 * 1024
MAX_PER_FILE = 6
SELF_SHARE = 0.35
OTHER_SHARE = 0.15
DEFAULT_COUNT = 300
DEFAULT_SEED = 0
DEFAULT_OUT = Path("benchmarks/data/monitor_points.jsonl.gz")

_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ tokenizes f-strings
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
_LINE_BREAKS = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT}


@dataclass(frozen=True)
class Dereference:
    """One `receiver.target` site in a file's text."""

    offset: int  # character offset right after the dot
    target: str
    receiver: str  # the receiver's last token: a name, ")" or "]"
    line: int  # 1-based
    column: int  # 0-based column of the target
    trivial: bool  # the target already appears as a name earlier on the line


def project_root() -> Path:
    """Where jedi, parso and pygls are installed: the environment's pure-Python site-packages."""
    return Path(sysconfig.get_paths()["purelib"])


def source_files(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Eligible `.py` files under `root/<package>`, as sorted root-relative POSIX paths."""
    found = []
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            rel = path.relative_to(root)
            if SKIPPED_DIRS.intersection(rel.parts[:-1]) or not path.is_file():
                continue
            if MIN_BYTES <= path.stat().st_size <= MAX_BYTES:
                found.append(rel.as_posix())
    return sorted(found)


def read_source(path: Path) -> str | None:
    """The file's text if it reads back identically with `Path.read_text` (UTF-8, `\\n` only)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\r" in text or text.startswith("\ufeff"):
        return None
    return text


def _line_starts(text: str) -> list[int]:
    """Offset of each line's first character; tokenize's rows split on "\\n" only."""
    starts = [0]
    pos = text.find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def _significant_tokens(text: str) -> Iterator[tuple[tokenize.TokenInfo, bool]]:
    """Tokens outside f-strings, each with whether its logical statement is skipped
    (an import, a `from ... import`, or a decorator)."""
    fstring_depth = 0
    statement_start = True
    skipped = False
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if _FSTRING_START is not None and tok.type == _FSTRING_START:
            fstring_depth += 1
            continue
        if _FSTRING_END is not None and tok.type == _FSTRING_END:
            fstring_depth -= 1
            continue
        if fstring_depth:
            continue
        if tok.type == tokenize.NEWLINE or (tok.type == tokenize.OP and tok.string == ";"):
            statement_start = True
            skipped = False
            continue
        if tok.type in _LINE_BREAKS or tok.type == tokenize.ENDMARKER:
            continue
        if statement_start:
            skipped = tok.string in ("import", "from", "@")
            statement_start = False
        yield tok, skipped


def find_dereferences(text: str) -> list[Dereference]:
    """Every `receiver.target` site in `text` (see the module docstring for the rules),
    at most one per physical line (the first); [] if the text does not tokenize."""
    starts = _line_starts(text)
    found: list[Dereference] = []
    try:
        tokens = list(_significant_tokens(text))
    except (tokenize.TokenError, SyntaxError):
        return []
    names_on_line: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for tok, _ in tokens:
        if tok.type == tokenize.NAME:
            names_on_line[tok.start[0]].append((tok.start[1], tok.string))
    used_lines: set[int] = set()
    for i in range(1, len(tokens) - 1):
        (dot, skipped), (recv, _), (name, _) = tokens[i], tokens[i - 1], tokens[i + 1]
        if skipped or dot.type != tokenize.OP or dot.string != ".":
            continue
        if recv.type == tokenize.NAME:
            if keyword.iskeyword(recv.string):
                continue
        elif not (recv.type == tokenize.OP and recv.string in (")", "]")):
            continue
        if name.type != tokenize.NAME or keyword.iskeyword(name.string) or not name.string.isidentifier():
            continue
        row = dot.start[0]
        if recv.end[0] != row or name.start[0] != row or name.start[1] != dot.end[1] or row in used_lines:
            continue
        offset = starts[row - 1] + dot.end[1]
        before = {s for col, s in names_on_line[row] if col < dot.start[1]}
        used_lines.add(row)
        found.append(Dereference(offset, name.string, recv.string, row, name.start[1], name.string in before))
    return found


@dataclass(frozen=True)
class _Candidate:
    path: str
    deref: Dereference


def _pick(by_file: dict[str, list[_Candidate]], count: int, rng: random.Random) -> list[_Candidate]:
    """Round robin over shuffled files and shuffled candidates, under the per-file and
    receiver caps (shares of `count`); non-trivial candidates first, trivial ones after."""
    self_cap = int(SELF_SHARE * count)
    other_cap = int(OTHER_SHARE * count)
    files = sorted(by_file)
    rng.shuffle(files)
    queues: dict[str, dict[bool, list[_Candidate]]] = {}
    for path in files:
        queue = {False: [], True: []}
        for cand in by_file[path]:
            queue[cand.deref.trivial].append(cand)
        for group in queue.values():
            rng.shuffle(group)
        queues[path] = queue
    chosen: list[_Candidate] = []
    per_file: Counter[str] = Counter()
    per_receiver: Counter[str] = Counter()
    for trivial in (False, True):
        progress = True
        while progress and len(chosen) < count:
            progress = False
            for path in files:
                if len(chosen) >= count:
                    break
                queue = queues[path][trivial]
                while queue and per_file[path] < MAX_PER_FILE:
                    cand = queue.pop(0)
                    cap = self_cap if cand.deref.receiver == "self" else other_cap
                    if per_receiver[cand.deref.receiver] < cap:
                        chosen.append(cand)
                        per_file[path] += 1
                        per_receiver[cand.deref.receiver] += 1
                        progress = True
                        break
    return chosen


def select(texts: dict[str, str], count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[dict]:
    """Choose up to `count` points from `texts` (root-relative path -> text), deterministically.
    If the caps leave fewer than `count`, the caps are recomputed for the smaller number,
    so the receiver shares hold for what is returned."""
    by_file = {path: [_Candidate(path, d) for d in find_dereferences(texts[path])] for path in sorted(texts)}
    by_file = {path: cands for path, cands in by_file.items() if cands}
    target = count
    while True:
        chosen = _pick(by_file, target, random.Random(seed))
        if len(chosen) >= target or not chosen:
            break
        target = len(chosen)
    chosen.sort(key=lambda c: (c.path, c.deref.offset))
    return [
        {
            "id": f"{c.path}:{c.deref.line}:{c.deref.column}",
            "path": c.path,
            "text": texts[c.path],
            "offset": c.deref.offset,
            "target": c.deref.target,
            "receiver": c.deref.receiver,
        }
        for c in chosen
    ]


def generate(
    root: Path, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, packages: Iterable[str] = PACKAGES
) -> list[dict]:
    """The points for the files under `root` (see `source_files`)."""
    texts = {}
    for rel in source_files(root, packages):
        text = read_source(root / rel)
        if text is not None:
            texts[rel] = text
    return select(texts, count, seed)


def encode(points: list[dict]) -> bytes:
    """Gzipped JSON lines with a zero timestamp and no file name: same points, same bytes."""
    raw = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in points).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def load_points(path: Path = DEFAULT_OUT) -> list[dict]:
    """Read a points file written by `main` (gzipped JSON lines)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def receiver_mix(points: list[dict]) -> Counter[str]:
    return Counter(p["receiver"] for p in points)


def summary(points: list[dict], size: int | None = None) -> str:
    """Points, files, per-package counts, receiver mix and (if given) the file size."""
    n = len(points)
    files = Counter(p["path"] for p in points)
    packages = Counter(p["path"].split("/", 1)[0] for p in points)
    mix = receiver_mix(points)
    trivial_sites = _trivial_offsets(points)
    trivial = sum(1 for p in points if (p["path"], p["offset"]) in trivial_sites)
    out = [f"{n} points from {len(files)} files (at most {max(files.values(), default=0)} per file)"]
    out.append("packages: " + "  ".join(f"{k} {v}" for k, v in sorted(packages.items())))
    top = "  ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in mix.most_common(8)) if n else ""
    out.append(f"receivers: {len(mix)} distinct; {top}")
    out.append(f"trivial targets (name already earlier on the line): {trivial}")
    if size is not None:
        out.append(f"size: {size:,} bytes gzipped")
    return "\n".join(out)


def _trivial_offsets(points: list[dict]) -> set[tuple[str, int]]:
    """(path, offset) of the points whose target already appears earlier on the line."""
    found = set()
    for path, text in {p["path"]: p["text"] for p in points}.items():
        found.update((path, d.offset) for d in find_dereferences(text) if d.trivial)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.monitor_points", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--root", type=Path, default=None, help="project root (default: the venv's site-packages)")
    args = ap.parse_args(argv)
    points = generate(args.root or project_root(), args.count, args.seed)
    data = encode(points)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(summary(points, len(data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
