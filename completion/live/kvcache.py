"""One sequence's KV cache: a preallocated gap buffer that the runner writes in place.

The cache holds a whole document, but decoding at a caret must see only the text before
it, in one contiguous run of slots (attention over a slice, no mask). So the buffer has a
gap: logical entries [0, front) sit in slots [0, front), the rest sit at the far end of the
buffer, after the gap. Decoding writes into the gap (`prompt_view`); an edit moves the gap to
where it happens and encodes its tokens into it. Moving the gap copies the entries it
crosses (a memory copy, never a forward pass).

Keys behind the gap lag: an edit before them shifts their positions by its delta, and
rather than rotate them all at every keystroke the cache records the shift (`lag`) and
rotates an entry only when it crosses the gap to the front. So typing at the caret costs
the new tokens alone, however long the text after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from completion.model.rope import RotaryParams, rotate_keys, rotation
from completion.model.runner import Runner

# Prefill chunk: bounds the attention scratch memory of long encodes.
ENCODE_CHUNK = 1024
# Buffers grow to the next multiple of this many slots, and by at least a quarter.
GROWTH_STEP = 256
# Room kept free in the gap when a decode starts: decoding and drafts write there.
DECODE_ROOM = 256
# Entries copied per step of a gap move or a relayout (bounds the scratch memory).
COPY_CHUNK = 1024

Move = tuple[int, int, int]  # logical entries [start, end) move by `shift` (keys rotated by the same delta)


class KVCache:
    def __init__(self, runner: Runner, capacity: int = 0, rope: RotaryParams | None = None) -> None:
        """`rope`: how crossing the gap rotates lagging keys (None: they are never rotated, the
        deliberately broken no-rotation baseline, or a cache that never lags)."""
        self.runner = runner
        self.rope = rope
        self.keys, self.values = runner.new_buffer(capacity)  # (layers, kv_heads, capacity, head_dim)
        self.front = 0  # entries [0, front) in slots [0, front)
        self.back = 0  # entries [front, front + back) in slots [back_at, back_at + back)
        self.back_at = capacity
        self.lag = 0  # keys behind the gap are rotated for their position minus `lag`

    def __len__(self) -> int:
        return self.front + self.back

    @property
    def length(self) -> int:
        return len(self)

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held, the unused capacity included (what a memory budget must count)."""
        return self.keys.nbytes + self.values.nbytes

    # -- the gap --------------------------------------------------------------------------

    def reserve(self, gap: int) -> None:
        """Make the gap at least `gap` slots, reallocating (front and back copied) if needed."""
        if self.back_at - self.front >= gap:
            return
        need = self.front + gap + self.back
        size = max(need, self.capacity + self.capacity // 4)
        size = -(-size // GROWTH_STEP) * GROWTH_STEP
        keys, values = self.runner.new_buffer(size)
        f, b, at = self.front, self.back, self.back_at
        keys[:, :, :f], values[:, :, :f] = self.keys[:, :, :f], self.values[:, :, :f]
        keys[:, :, size - b :], values[:, :, size - b :] = self.keys[:, :, at : at + b], self.values[:, :, at : at + b]
        self.keys, self.values, self.back_at = keys, values, size - b

    def gap_to(self, x: int) -> None:
        """Move the gap to entry x: entries it crosses are copied, keys rotated out of or into the lag."""
        assert 0 <= x <= len(self), (x, len(self))
        if x > self.front:  # entries [front, x) come forward, their keys catch up with the lag
            n = x - self.front
            self._copy(self.back_at, self.front, n, self.lag)
            self.front, self.back, self.back_at = x, self.back - n, self.back_at + n
        elif x < self.front:  # entries [x, front) go behind the gap and start lagging
            n = self.front - x
            self._copy(x, self.back_at - n, n, -self.lag)
            self.front, self.back, self.back_at = x, self.back + n, self.back_at - n
        if self.back == 0:
            self.lag, self.back_at = 0, self.capacity

    def _copy(self, src: int, dst: int, n: int, rotate_by: int) -> None:
        """Copy slots [src, src+n) to [dst, dst+n), rotating keys by `rotate_by` (ranges may overlap)."""
        rope = self.rope if rotate_by else None
        turn = rotation(rotate_by, rope, self.keys.device) if rope is not None else None
        # Chunks go in the order that never overwrites a source before it is read.
        starts = range(0, n, COPY_CHUNK) if dst <= src else reversed(range(0, n, COPY_CHUNK))
        for lo in starts:
            hi = min(n, lo + COPY_CHUNK)
            keys = self.keys[:, :, src + lo : src + hi].clone()
            if rope is not None:
                keys = rotate_keys(keys, rotate_by, rope, turn)
            self.keys[:, :, dst + lo : dst + hi] = keys
            self.values[:, :, dst + lo : dst + hi] = self.values[:, :, src + lo : src + hi].clone()

    # -- edits ------------------------------------------------------------------------------

    def splice(self, start: int, end: int, new: int) -> None:
        """Replace entries [start, end) by `new` slots for the caller to encode (`encode(at=start)`);
        the entries after shift by the delta, lagging by it until they cross the gap."""
        assert 0 <= start <= end <= len(self), (start, end, len(self))
        if self.front <= start:
            self.gap_to(start)
            dropped = end - start  # at the head of the back region
            self.back, self.back_at = self.back - dropped, self.back_at + dropped
        elif self.front >= end:
            self.gap_to(end)
            self.front = start
        else:
            dropped = end - self.front
            self.front, self.back, self.back_at = start, self.back - dropped, self.back_at + dropped
        if self.back == 0:
            self.lag, self.back_at = 0, self.capacity
        else:
            self.lag += new - (end - start)
        self.reserve(new)
        self.front += new

    def crop(self, n: int) -> None:
        """Keep the first n entries."""
        assert 0 <= n <= len(self), (n, len(self))
        if n <= self.front:
            self.front, self.back = n, 0
            self.lag, self.back_at = 0, self.capacity
        else:
            self.back = n - self.front

    def move(self, moves: Sequence[Move], length: int) -> None:
        """Move entry ranges by their shifts (keys rotated by the same delta), then set the length.
        The gap is closed first (the buffer becomes plain slots); sources are read before anything
        is written, so ranges may overlap. Relayouts use this (FIM regions, window moves)."""
        self.gap_to(len(self))
        moves = [m for m in moves if m[1] > m[0] and m[2] != 0]
        top = max([length, *(end + shift for _, end, shift in moves)])
        self.reserve(top - self.front)
        if moves:
            lo, hi = min(m[0] for m in moves), max(m[1] for m in moves)
            rope = self.rope
            turns = {shift: rotation(shift, rope, self.keys.device) for _, _, shift in moves} if rope else {}
            for layer in range(self.runner.n_layers):
                old_keys = self.keys[layer, :, lo:hi].clone()
                old_values = self.values[layer, :, lo:hi].clone()
                for start, end, shift in moves:
                    keys = old_keys[:, start - lo : end - lo]
                    if rope is not None:
                        keys = rotate_keys(keys, shift, rope, turns[shift])
                    self.keys[layer, :, start + shift : end + shift] = keys
                    self.values[layer, :, start + shift : end + shift] = old_values[:, start - lo : end - lo]
        self.front = length

    # -- the model ------------------------------------------------------------------------

    def encode(self, tokens: Sequence[int], *, at: int | None = None, logits: str = "none") -> torch.Tensor | None:
        """Run the model over `tokens` in entries at.. (default: the end), each attending to the
        entries before it; the length grows to cover them. Entries after them are left as they are.

        `logits`: "last" returns the logits after the last token (vocab,), "all" after every
        token (len(tokens), vocab), "none" nothing.
        """
        at = len(self) if at is None else at
        q = len(tokens)
        assert 0 <= at <= len(self), (at, len(self))
        end = at + q
        if end >= len(self):  # everything from `at` on is overwritten
            if at > self.front:
                self.gap_to(at)
            self.front, self.back, self.back_at, self.lag = at, 0, self.capacity, 0
        elif end > self.front:
            self.gap_to(end)
        self.reserve(max(0, end - self.front))
        rows: list[torch.Tensor] = []
        out = None
        for lo in range(0, q, ENCODE_CHUNK):
            chunk = tokens[lo : lo + ENCODE_CHUNK]
            last = lo + ENCODE_CHUNK >= q
            mode = logits if logits == "all" or last else "none"
            out = self._forward(chunk, at + lo, mode)
            if logits == "all" and out is not None:
                rows.append(out)
        self.front = max(self.front, end)
        if logits == "all":
            return torch.cat(rows) if rows else None
        return out if logits == "last" else None

    def prompt_view(self, at: int) -> KVCache:
        """A cache of entries [0, at) for one decode: it shares this buffer's front and writes into
        the gap, so decoding never touches the entries after `at`; drop it when done."""
        self.gap_to(at)
        self.reserve(DECODE_ROOM)
        view = KVCache.__new__(KVCache)
        view.runner, view.rope = self.runner, None
        view.keys, view.values = self.keys[:, :, : self.back_at], self.values[:, :, : self.back_at]
        view.front, view.back, view.back_at, view.lag = at, 0, self.back_at, 0
        return view

    def copy(self) -> KVCache:
        """An independent copy (a benchmark forks one encoded document into several methods)."""
        self.gap_to(len(self))
        n = len(self)
        other = KVCache(self.runner, max(n, 1), self.rope)
        other.keys[:, :, :n] = self.keys[:, :, :n]
        other.values[:, :, :n] = self.values[:, :, :n]
        other.front = n
        return other

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of every entry at its position: (layers, kv_heads, len, head_dim) each (tests)."""
        self.gap_to(len(self))
        return self.keys[:, :, : self.front], self.values[:, :, : self.front]

    def layer_entries(self, layer: int, entries: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's keys and values of ascending logical `entries` at their positions, without moving
        the gap (lagging keys are rotated in a copy): (kv_heads, len(entries), head_dim) each (checks)."""
        assert list(entries) == sorted(entries) and all(0 <= e < len(self) for e in entries), entries
        slots = [e if e < self.front else self.back_at + e - self.front for e in entries]
        keys, values = self.keys[layer][:, slots], self.values[layer][:, slots]  # copies (advanced indexing)
        behind = sum(e >= self.front for e in entries)
        if behind and self.lag and self.rope is not None:
            keys[:, -behind:] = rotate_keys(keys[:, -behind:], self.lag, self.rope)
        return keys, values

    def encode_scored(self, tokens: Sequence[int]) -> torch.Tensor:
        """Like `encode` for a short sequence, returning the logits after every token: (len, vocab)."""
        assert 0 < len(tokens) <= ENCODE_CHUNK
        out = self.encode(tokens, logits="all")
        assert out is not None
        return out

    def encode_tree(self, tokens: Sequence[int], positions: Sequence[int], visible: torch.Tensor) -> torch.Tensor:
        """Append `tokens` at explicit `positions` where each sees only the cache entries `visible` marks.

        `visible` is (len(tokens), len(self) + len(tokens)) bool: row i says which cached and new
        entries token i attends to (itself included). Several branches can so share one prompt.
        Returns the logits after every token: (len(tokens), vocab).
        """
        n = len(tokens)
        assert self.back == 0, "tree passes append to a cache without a gap (a prompt view)"
        assert visible.shape == (n, self.front + n), (visible.shape, n, self.front)
        self.reserve(n)
        device = self.runner.device
        logits = self.runner.forward(
            self.keys,
            self.values,
            torch.tensor(list(tokens), device=device),
            torch.tensor(list(positions), device=device),
            self.front,
            visible=visible,
            logits="all",
        )
        assert logits is not None  # logits="all" always returns them
        self.front += n
        return logits

    def encode_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Append input vectors (q, hidden) instead of tokens, at the next positions; returns the
        logits after the last one: (vocab,). Superposed decoding feeds mixtures of embeddings here."""
        n = embeddings.shape[0]
        assert self.back == 0, "embedding passes append to a cache without a gap (a prompt view)"
        self.reserve(n)
        positions = torch.arange(self.front, self.front + n, device=self.runner.device)
        logits = self.runner.forward(self.keys, self.values, None, positions, self.front, embeddings=embeddings)
        self.front += n
        assert logits is not None
        return logits

    def _forward(self, tokens: Sequence[int], at: int, logits: str) -> torch.Tensor | None:
        device = self.runner.device
        positions = torch.arange(at, at + len(tokens), device=device)
        ids = torch.tensor(list(tokens), device=device)
        return self.runner.forward(self.keys, self.values, ids, positions, at, logits=logits)
