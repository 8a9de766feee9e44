"""N-gram models of the project, for rescoring superposed drafts.

Superposed Decoding (Shen et al. 2024) rescores each draft's candidate tokens with n-gram
models. Here they are counted over the project store's token ids (workspace files and open
documents, see `project.py`), orders 2 to 4: the paper found nothing gained past 4.

Why backoff, unlike the paper: the paper multiplies in the n-gram probability and so drops
every token the n-grams never saw after that context (a hard filter). A project is a small
corpus: most contexts are rare or unseen, and the filter would throw out the model's best
token for whatever the project happens to contain. So the model's own distribution is the
order-0 term of the interpolation (Jelinek-Mercer style):

    p(v | ctx) = (w0 p_model(v) + sum over seen orders n of w_n count(ctx_n, v) / count(ctx_n))
                 / (w0 + sum over seen orders n of w_n)

An order whose context never occurs drops out of both sums, so with no seen context p is the
model's p, and a token the project never wrote after ctx keeps w0/(...) of its model mass.
The weights are the paper's for bigram to 4-gram (0.01, 0.04, 0.15); w0 = 0.05.

Counting: per store shard, sorted tables of hashed c-token contexts (followed by a token) and
hashed (c+1)-grams, c = 1..3; a count is two binary searches, every draft and candidate of a
step in one vectorised `searchsorted`. Shards are immutable, so a shard's tables are built
once (48 bytes per token) and dropped with the shard.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import cast

import numpy as np

from completion.drafting.datastore import SEPARATOR, ProjectStore

ORDERS = (2, 3, 4)
WEIGHTS = {2: 0.01, 3: 0.04, 4: 0.15}  # the paper's interpolation weights for these orders
MODEL_WEIGHT = 0.05  # the order-0 term: the model's own distribution
MAX_TOKENS = 2_000_000  # shards past this many tokens are not counted (48 bytes per token)
_BASE = np.uint64(1_000_003)


def _hashes(stream: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash of the n tokens ending at each position i >= n-1, and whether they are all real tokens."""
    ids = stream.astype(np.uint64)
    m = len(stream) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    keys = np.zeros(m, dtype=np.uint64)
    valid = np.ones(m, dtype=bool)
    for k in range(n):  # oldest token first: hash(ctx + [v]) == hash(ctx) * BASE + v
        keys = keys * _BASE + ids[k : k + m]
        valid &= stream[k : k + m] != SEPARATOR
    return keys, valid


def hash_tokens(tokens: Sequence[int]) -> np.uint64:
    """The hash `_hashes` gives these tokens."""
    return cast(np.uint64, _hashes(np.asarray(tokens, dtype=np.int32), len(tokens))[0][0])


class NgramTable:
    """Counts of one token stream (files end to end, SEPARATOR between them)."""

    def __init__(self, stream: np.ndarray) -> None:
        self.contexts: dict[int, np.ndarray] = {}  # c -> sorted hashes of c-token contexts followed by a token
        self.grams: dict[int, np.ndarray] = {}  # c -> sorted hashes of (c+1)-grams
        for n in ORDERS:
            c = n - 1
            ctx, ctx_ok = _hashes(stream[:-1], c)  # a context must be followed by something
            followed = stream[c:] != SEPARATOR
            self.contexts[c] = np.sort(ctx[ctx_ok & followed])
            grams, grams_ok = _hashes(stream, n)
            self.grams[c] = np.sort(grams[grams_ok])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.contexts.values(), *self.grams.values()))


def _count(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return np.searchsorted(table, keys, "right") - np.searchsorted(table, keys, "left")


class NgramModel:
    """Interpolated n-gram probabilities over a project store's current shards."""

    def __init__(self, store: ProjectStore) -> None:
        self.store = store
        self._tables: weakref.WeakKeyDictionary[object, NgramTable] = weakref.WeakKeyDictionary()

    def tables(self) -> list[NgramTable]:
        """One table per shard (built on first use; `warm` builds them ahead, off the model thread)."""
        out, total = [], 0
        for shard in self.store.shards:
            total += len(shard.stream)
            if total > MAX_TOKENS:
                break
            table = self._tables.get(shard)
            if table is None:
                table = self._tables[shard] = NgramTable(shard.stream)
            out.append(table)
        return out

    def warm(self) -> None:
        """Build the tables of new shards now (the indexing thread calls this after each change)."""
        self.tables()

    def counts(
        self, contexts: Sequence[Sequence[int]], candidates: np.ndarray
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per context length c: (count(ctx_c) per draft (k,), count(ctx_c, v) per candidate (k, n)).

        `contexts[i]` is draft i's token ids so far (the prompt's included); `candidates` (k, n) ids."""
        k, n = candidates.shape
        tables = self.tables()
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for order in ORDERS:
            c = order - 1
            usable = np.array([len(ctx) >= c for ctx in contexts])
            ctx_keys = np.array([hash_tokens(ctx[-c:]) if len(ctx) >= c else 0 for ctx in contexts], dtype=np.uint64)
            gram_keys = ctx_keys[:, None] * _BASE + candidates.astype(np.uint64)  # hash(ctx + [v])
            ctx_count = np.zeros(k, dtype=np.int64)
            gram_count = np.zeros((k, n), dtype=np.int64)
            for t in tables:
                ctx_count += _count(t.contexts[c], ctx_keys)
                gram_count += _count(t.grams[c], gram_keys.ravel()).reshape(k, n)
            out[c] = (np.where(usable, ctx_count, 0), np.where(usable[:, None], gram_count, 0))
        return out

    def interpolate(
        self, contexts: Sequence[Sequence[int]], candidates: np.ndarray, model_probs: np.ndarray
    ) -> np.ndarray:
        """p(v | ctx) of the module docstring for each draft's candidates: (k, n), from the model's (k, n)."""
        num = MODEL_WEIGHT * model_probs.astype(np.float64)
        den = np.full((len(contexts), 1), MODEL_WEIGHT)
        for c, (ctx_count, gram_count) in self.counts(contexts, candidates).items():
            seen = ctx_count > 0
            w = WEIGHTS[c + 1] * seen  # unseen contexts drop out of the mixture
            num += w[:, None] * gram_count / np.maximum(ctx_count, 1)[:, None]
            den += w[:, None]
        return cast(np.ndarray, num / den)
