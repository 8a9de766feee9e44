"""Where drafts come from: earlier occurrences of the tokens just written, in the prompt or the project.

Code repeats itself: when the last few tokens already occur somewhere, what followed them
there is a good guess for what comes next. Two sources, both over token ids of the
serving tokenizer:

- the prompt plus the tokens decoded so far (`match_lengths`, a vectorised scan: a window
  of a few thousand tokens is scanned in tens of microseconds, and there is no index to
  keep current while the user types);
- the project (`ProjectStore`): every indexed file's tokens, in shards of up to
  `SHARD_TOKENS`. Each shard keeps its files' tokens end to end (with a separator) and a
  sorted table of hashed `KEY_TOKENS`-grams; a lookup is one binary search per shard and
  a vectorised backward extension of every hit to its full match length. A changed file
  rebuilds only its shard. Shards are immutable and swapped in whole, so the model
  thread reads them while the indexing thread replaces them.

Why a hashed n-gram table and not a suffix array: both answer "where does this context
occur" in one binary search; the table is one `argsort` to build (a suffix array needs
several sorting rounds) and the drafting gate wants matches of at least `KEY_TOKENS`
tokens anyway. Measured figures are in the README (`livekv bench drafting`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

KEY_TOKENS = 4  # a project match starts from this many tokens
MAX_MATCH = 16  # match lengths are counted up to here
SHARD_TOKENS = 1 << 18
MAX_HITS = 256  # hits examined per shard and lookup (the most recent files' first)
SEPARATOR = -1  # between files: no match runs across a file boundary
_HASH_BASE = np.uint64(1_000_003)


def match_lengths(stream: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """For each position i of `stream`, how many tokens ending at i equal the end of `tail` (at most len(tail))."""
    n, depth = len(stream), len(tail)
    lengths = np.zeros(n, dtype=np.int32)
    alive = np.ones(n, dtype=bool)
    for k in range(depth):
        if k >= n:
            break
        same = np.zeros(n, dtype=bool)
        same[k:] = stream[: n - k] == tail[depth - 1 - k]
        alive &= same
        if not alive.any():
            break
        lengths += alive
    return lengths


def _keys(stream: np.ndarray) -> np.ndarray:
    """Hash of the KEY_TOKENS tokens ending at each position (garbage before KEY_TOKENS - 1)."""
    ids = stream.astype(np.uint64)
    keys = np.zeros(len(stream), dtype=np.uint64)
    for k in range(KEY_TOKENS - 1, -1, -1):
        keys[KEY_TOKENS - 1 :] = keys[KEY_TOKENS - 1 :] * _HASH_BASE + ids[KEY_TOKENS - 1 - k : len(ids) - k]
    return keys


@dataclass(frozen=True)
class Hit:
    """A place where the context's end occurs: `match` tokens agree, `continuation` followed them."""

    match: int
    continuation: tuple[int, ...]


class _Shard:
    """Some files' tokens end to end, and their hashed n-grams sorted for binary search."""

    def __init__(self, files: dict[str, np.ndarray]) -> None:
        self.files = files
        parts: list[np.ndarray] = []
        for tokens in files.values():
            parts += [tokens.astype(np.int32), np.array([SEPARATOR], dtype=np.int32)]
        self.stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        ends = np.arange(KEY_TOKENS - 1, len(self.stream))
        windows = np.lib.stride_tricks.sliding_window_view(self.stream, KEY_TOKENS) if len(ends) else None
        usable = ends[(windows >= 0).all(axis=1)] if windows is not None else ends
        keys = _keys(self.stream)[usable]
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.ends = usable[order].astype(np.int32)

    @property
    def tokens(self) -> int:
        return sum(len(t) for t in self.files.values())

    @property
    def nbytes(self) -> int:
        return self.stream.nbytes + self.keys.nbytes + self.ends.nbytes + sum(t.nbytes for t in self.files.values())

    def hits(self, tail: np.ndarray, key: np.uint64, length: int) -> list[Hit]:
        """The hits of the longest match in this shard (at least KEY_TOKENS tokens)."""
        lo, hi = int(np.searchsorted(self.keys, key, "left")), int(np.searchsorted(self.keys, key, "right"))
        if lo == hi:
            return []
        ends = self.ends[max(lo, hi - MAX_HITS) : hi]
        # extend every hit backwards: the tokens before it against the tail's earlier tokens
        back = ends[:, None] - np.arange(len(tail))[None, :]
        before = np.where(back >= 0, self.stream[np.maximum(back, 0)], SEPARATOR)
        matches = np.cumprod(before == tail[::-1][None, :], axis=1).sum(axis=1)
        nxt = np.minimum(ends + 1, len(self.stream) - 1)
        matches[(ends + 1 >= len(self.stream)) | (self.stream[nxt] == SEPARATOR)] = 0  # nothing follows
        best = int(matches.max())
        if best < KEY_TOKENS:  # only hash collisions
            return []
        ends = ends[matches == best]
        ahead = ends[:, None] + 1 + np.arange(length)[None, :]
        follow = np.where(ahead < len(self.stream), self.stream[np.minimum(ahead, len(self.stream) - 1)], SEPARATOR)
        stops = np.where((follow == SEPARATOR).any(axis=1), (follow == SEPARATOR).argmax(axis=1), length)
        return [Hit(best, tuple(row[:stop])) for row, stop in zip(follow.tolist(), stops.tolist(), strict=True)]


class ProjectStore:
    """Token ids of the project's files (from disk or, for open documents, the editor), by key."""

    def __init__(self, shard_tokens: int = SHARD_TOKENS) -> None:
        self.shard_tokens = shard_tokens
        self._shards: list[_Shard] = []
        self._lock = threading.Lock()  # writers only: readers take the list as it is

    def __len__(self) -> int:
        return sum(len(s.files) for s in self._shards)

    def __contains__(self, key: str) -> bool:
        return any(key in s.files for s in self._shards)

    def keys(self) -> list[str]:
        return [key for s in self._shards for key in s.files]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self._shards)

    @property
    def shards(self) -> list[_Shard]:
        """The current shards: each immutable, and the list is replaced, never changed in place."""
        return self._shards

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._shards)

    def update(self, key: str, tokens: Sequence[int]) -> None:
        """Add or replace one file's tokens (rebuilds the one shard it lands in)."""
        self.update_many({key: tokens})

    def update_many(self, files: dict[str, Sequence[int]]) -> None:
        """Add or replace several files at once: the shards they touch are rebuilt once each."""
        arrays = {key: np.asarray(tokens, dtype=np.int32) for key, tokens in files.items()}
        with self._lock:
            shards = [s.files for s in self._shards]
            touched = set()
            for key, tokens in arrays.items():
                home = next((i for i, f in enumerate(shards) if key in f), None)
                if home is None:
                    home = next((i for i, f in enumerate(shards) if _size(f) + len(tokens) <= self.shard_tokens), None)
                if home is None:
                    shards.append({})
                    home = len(shards) - 1
                shards[home] = {**shards[home], key: tokens}
                touched.add(home)
            self._shards = [_Shard(f) if i in touched else self._shards[i] for i, f in enumerate(shards)]

    def remove(self, key: str) -> None:
        with self._lock:
            self._shards = [
                _Shard({k: t for k, t in s.files.items() if k != key}) if key in s.files else s for s in self._shards
            ]
            self._shards = [s for s in self._shards if s.files]

    def hits(self, context: Sequence[int] | np.ndarray, length: int) -> list[Hit]:
        """The places where the longest match of the context's end occurs (at least KEY_TOKENS tokens, up to
        MAX_HITS examined per shard), each with up to `length` tokens that followed it there."""
        if len(context) < KEY_TOKENS:
            return []
        tail = np.asarray(context[-MAX_MATCH:], dtype=np.int32)
        key = _keys(tail[-KEY_TOKENS:])[-1]
        found = [hit for shard in self._shards for hit in shard.hits(tail, key, length)]
        best = max((h.match for h in found), default=0)
        return [h for h in found if h.match == best]


def _size(files: dict[str, np.ndarray]) -> int:
    return sum(len(t) for t in files.values())


def majority_path(continuations: Iterable[Sequence[int]], share: float) -> list[int]:
    """The path through the continuations' trie that the most of them follow, token by token, while
    the leading token is followed by at least `share` of those still on the path."""
    alive = [tuple(c) for c in continuations]
    path: list[int] = []
    while alive:
        votes: dict[int, int] = {}
        for c in alive:
            if len(c) > len(path):
                votes[c[len(path)]] = votes.get(c[len(path)], 0) + 1
        if not votes:
            break
        best, count = max(votes.items(), key=lambda kv: kv[1])
        if count < share * len(alive):
            break
        path.append(best)
        alive = [c for c in alive if len(c) > len(path) - 1 and c[len(path) - 1] == best]
    return path
