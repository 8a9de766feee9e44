"""Cross-file context: snippets from the workspace that look like the code around the cursor.

Like Copilot's "neighboring tabs": open/edited documents and workspace .py files read from disk
are cut into overlapping line windows; a completion gets the windows whose identifiers overlap
most with the text near the cursor, rendered as a comment block for the front of the prompt.
Files are only read as text, never imported or run. An open document joins only if the walk of a
workspace folder the index has walked would list it (`workspace.shared_path`: no secret, ignored or
outside file the user opens reaches the other documents' prompts). The rendered block must be a pure
function of the index state and the query: the caller re-encodes the front of the KV cache when it changes.
"""

from __future__ import annotations

import heapq
import keyword
import math
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from completion.live.layout import REPO_MARKERS
from completion.project.chunks import LINE_BREAK, Chunk, definition_chunks, line_windows
from completion.project.files import shared_path, workspace_files

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords, and self/cls which occur in nearly every method, say nothing about which file is related.
_STOPWORDS = frozenset(keyword.kwlist) | {"self", "cls"}
_RECENCY_BOOST = 0.1  # the most recently touched file scores up to 10% higher: it wins near-ties, not relevance
_RENDER_CANDIDATES = 32
Chunking = Literal["definitions", "lines"]
Style = Literal["comments", "markers"]
REPO_NAME, FILE_SEP = REPO_MARKERS
_LANE_FORMAT: dict[int, Literal["B", "H", "I"]] = {1: "B", 2: "H", 4: "I"}  # memoryview formats for 1/2/4-byte counters


@dataclass(frozen=True)
class Snippet:
    path: str  # display path (relative to the workspace root when known)
    start_line: int  # 0-based, like LSP positions
    text: str
    score: float


@dataclass(frozen=True)
class _File:
    """A file's chunks plus, per identifier, a counter vector over its chunks: lane i (`width` bytes) of
    `lanes[w]` is 1 if chunk i contains w. Summing the query's vectors is one C-level big-int sum per file and
    yields every chunk's intersection size at once (no lane can overflow: a count never exceeds the chunk's
    size); a per-chunk set intersection was too slow for 10k chunks."""

    path: str
    chunks: tuple[Chunk, ...]  # in line order
    defines: dict[str, int]  # the chunk of each top-level function or class, by name
    sizes: tuple[int, ...]  # distinct identifiers per chunk
    width: int
    lanes: dict[str, int]


def identifiers(text: str) -> frozenset[str]:
    """Identifier-like words of `text`, minus keywords and 1-character names (interned: lookups compare by identity)."""
    return frozenset(sys.intern(w) for w in _IDENT.findall(text) if len(w) > 1 and w not in _STOPWORDS)


def _norm_key(key: str) -> str:
    """One key per file whether it arrives as a file:// URI (editor) or a path (folder walk)."""
    if key.startswith("file://"):
        key = unquote(urlparse(key).path)
        if os.name == "nt" and re.match(r"/[A-Za-z]:", key):
            key = key[1:]
    elif "://" in key or key.startswith("untitled:"):
        return key
    return os.path.normcase(os.path.normpath(key))


class SnippetIndex:
    """Chunks of up to `max_files` files, least recently touched evicted first. Thread-safe (folder walks run off
    the event loop)."""

    def __init__(
        self,
        *,
        chunking: Chunking = "definitions",
        chunk_lines: int = 20,
        stride: int = 10,
        max_files: int = 200,
        max_file_bytes: int = 500_000,
    ):
        for name, value in (("chunk_lines", chunk_lines), ("max_files", max_files), ("max_file_bytes", max_file_bytes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 1 <= stride <= chunk_lines:  # a larger stride would leave lines in no chunk
            raise ValueError(f"stride must be in 1..chunk_lines ({chunk_lines}), got {stride}")
        self.chunking, self.chunk_lines, self.stride = chunking, chunk_lines, stride
        self.max_files, self.max_file_bytes = max_files, max_file_bytes
        self._files: OrderedDict[str, _File] = OrderedDict()  # least recently touched first
        self._roots: list[str] = []  # the folders index_folder was given: only their files are shared
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, key: str) -> bool:
        return _norm_key(key) in self._files

    def _file(self, path: str, text: str) -> _File:
        lines = LINE_BREAK.split(text)  # the editor's line breaks, so line numbers match LSP positions
        cut = None
        if self.chunking == "definitions":
            cut = definition_chunks(text, lines, self.chunk_lines, self.stride)
        if cut is None:
            cut = line_windows(lines, 0, len(lines), self.chunk_lines, self.stride)
        kept = [(c, ws) for c in cut if (ws := identifiers(c.text))]
        chunks = tuple(c for c, _ in kept)
        sizes = tuple(len(ws) for _, ws in kept)
        width = next(w for w in (1, 2, 4) if max(sizes, default=0) < 256**w)
        lanes: dict[str, int] = {}
        for i, (_, ws) in enumerate(kept):
            for word in ws:
                lanes[word] = lanes.get(word, 0) | 1 << (8 * width * i)
        defines = {c.name: i for i, c in enumerate(chunks) if c.name is not None}
        return _File(path, chunks, defines, sizes, width, lanes)

    def update(self, key: str, text: str) -> None:
        """Add or replace an open document (`key`: its URI or path) and mark it most recently used. One the walk
        would not list (outside the folders walked, ignored, named like a secret, holding a private key, over
        `max_file_bytes`: huge files are noise and slow every query) is dropped instead, and so is one that becomes
        so (a key pasted in)."""
        nkey = _norm_key(key)
        with self._lock:
            roots = list(self._roots)
        path = shared_path(nkey, text, roots, max_bytes=self.max_file_bytes)
        if path is None:
            self.remove(key)
            return
        entry = self._file(path, text)
        with self._lock:
            self._files[nkey] = entry
            self._files.move_to_end(nkey)
            while len(self._files) > self.max_files:
                self._files.popitem(last=False)

    def remove(self, key: str) -> None:
        with self._lock:
            self._files.pop(_norm_key(key), None)

    def add_root(self, root: str) -> None:
        """From then on, open documents of `root` may join too (`update`)."""
        with self._lock:
            if (top := os.path.abspath(root)) not in self._roots:
                self._roots.append(top)

    @property
    def full(self) -> bool:
        return len(self._files) >= self.max_files

    def index_folder(
        self, root: str, *, max_files: int | None = None, should_stop: Callable[[], bool] | None = None
    ) -> int:
        """Add the workspace's .py files from disk (those `files.python_files` allows); return how many were added."""
        self.add_root(root)
        top = Path(os.path.abspath(root))
        added = 0
        # Checked before asking for the next file: the walk is lazy and stops where the index is full.
        walk = workspace_files(top, max_bytes=self.max_file_bytes, should_stop=should_stop)
        while not self.full and (max_files is None or added < max_files) and (file := next(walk, None)):
            added += self.add_disk_file(top, *file)
        return added

    def add_disk_file(self, top: Path, path: Path, text: str) -> bool:
        """Add a file read from disk by the walk of `top`; whether it was added. Files already indexed are kept
        (an open buffer is fresher than the disk), and disk files only fill free slots, as least recently used:
        a workspace walk never evicts what the user has open or edited."""
        key = _norm_key(str(path))
        if key in self._files or self.full:
            return False
        entry = self._file(path.relative_to(top).as_posix(), text)
        with self._lock:
            if key in self._files or self.full:
                return False
            self._files[key] = entry
            self._files.move_to_end(key, last=False)
            return True

    def snippets(
        self, query: str, *, exclude: str | None = None, limit: int = 8, first: Sequence[str] = ()
    ) -> list[Snippet]:
        """The top-level definitions named in `first` (in its order), then the best non-overlapping chunks by
        Jaccard similarity of identifiers with `query`, excluding file `exclude`. Order of the rest: score
        desc, then the more recently touched file, then line."""
        q = identifiers(query)
        if not (q or first) or limit < 1:
            return []
        skip = _norm_key(exclude) if exclude is not None else None
        with self._lock:
            files = [(k, f) for k, f in reversed(self._files.items()) if k != skip]  # most recently touched: rank 0
        found: list[tuple[float, int, int]] = []  # (-score, rank, chunk index): chunk order is line order
        for name in first:  # the first file (most recently touched) defining it
            if hit := next(((rank, f.defines[name]) for rank, (_, f) in enumerate(files) if name in f.defines), None):
                found.append((-math.inf, *hit))
        chosen = self._choose(files, found, limit)
        # Greedy selection below rejects at most `others` overlapping windows per chosen chunk, so the best
        # limit * (others + 1) candidates are enough and a full sort is not needed.
        others = 2 * (-(-self.chunk_lines // self.stride) - 1)
        found = []
        nq, n = len(q), len(files)
        for rank, (_, f) in enumerate(files):
            total = sum(filter(None, map(f.lanes.get, q)))
            if not total:
                continue
            counts = memoryview(total.to_bytes(len(f.chunks) * f.width, sys.byteorder)).cast(_LANE_FORMAT[f.width])
            boost = 1.0 + _RECENCY_BOOST * (1.0 - rank / n)
            sizes = f.sizes
            for i in compress(range(len(sizes)), counts):
                inter = counts[i]
                found.append((-boost * inter / (nq + sizes[i] - inter), rank, i))
        chosen += self._choose(files, heapq.nsmallest(limit * (others + 1), found), limit - len(chosen), chosen)
        return [s for _, _, s in chosen]

    @staticmethod
    def _choose(
        files: list[tuple[str, _File]],
        ranked: list[tuple[float, int, int]],
        limit: int,
        taken: Sequence[tuple[str, Chunk, Snippet]] = (),
    ) -> list[tuple[str, Chunk, Snippet]]:
        """Up to `limit` of `ranked`, in order, skipping chunks that overlap one taken (they would repeat lines)."""
        chosen: list[tuple[str, Chunk, Snippet]] = []
        for neg, rank, i in ranked:
            if len(chosen) >= limit:
                break
            key, f = files[rank]
            c = f.chunks[i]
            if not any(k == key and c.start < o.end and o.start < c.end for k, o, _ in (*taken, *chosen)):
                chosen.append((key, c, Snippet(f.path, c.start, c.text, -neg)))
        return chosen

    def render(
        self,
        query: str,
        *,
        exclude: str | None,
        budget_chars: int,
        first: Sequence[str] = (),
        style: Style = "comments",
        repo: str = "",
        path: str = "",
    ) -> str:
        """The best snippets that fit in `budget_chars` whole (never cut mid-line), or "". The best comes last,
        nearest the code being completed. `comments`: each a comment block under `# Path: …`; `markers`: real
        code under the model's repository markers, `repo` first and the current file's `path` last. In both
        styles, snippets or paths holding a marker's text are left out (markers are the model's special tokens)."""
        if budget_chars < 0:
            raise ValueError(f"budget_chars must be >= 0, got {budget_chars}")
        if any(m in repo + path for m in REPO_MARKERS):
            return ""
        tail = f"{FILE_SEP}{path}\n" if style == "markers" else ""
        used = len(REPO_NAME) + len(repo) + len(tail) if style == "markers" else 0
        blocks: list[str] = []
        for s in self.snippets(query, exclude=exclude, limit=_RENDER_CANDIDATES, first=first):
            if any(m in s.path + s.text for m in REPO_MARKERS):
                continue
            if style == "markers":
                block = f"{FILE_SEP}{s.path}\n{s.text}\n"
            else:
                body = "".join(f"# {line}\n" if line else "#\n" for line in s.text.split("\n"))
                block = f"# Path: {s.path}\n{body}" + ("\n" if blocks else "")  # blank separator line
            if used + len(block) <= budget_chars:
                blocks.append(block)
                used += len(block)
        if not blocks:
            return ""
        if style == "markers":
            return f"{REPO_NAME}{repo}" + "".join(reversed(blocks)) + tail
        return "".join(reversed(blocks))
