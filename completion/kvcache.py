"""One sequence's KV cache: a preallocated buffer that the runner writes in place.

Slot i of the buffer always holds the token at position i (no gaps), so cropping is
setting a length, a PIE edit is moving the old tail to its new slots with its keys
rotated, and re-encoding stale slots writes them where they are. The buffer grows by
reallocation in large steps, never by concatenation per token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from completion.rope import RotaryParams, rotate_keys, rotation
from completion.runner import Runner

# Prefill chunk: bounds the attention scratch memory of long encodes.
ENCODE_CHUNK = 1024
# Buffers grow to the next multiple of this many slots, and by at least a quarter.
GROWTH_STEP = 256

Move = tuple[int, int, int]  # slots [start, end) move by `shift` (keys rotated by the same delta)


class KVCache:
    def __init__(self, runner: Runner, capacity: int = 0) -> None:
        self.runner = runner
        self.keys, self.values = runner.new_buffer(capacity)  # (layers, kv_heads, capacity, head_dim)
        self.length = 0

    def __len__(self) -> int:
        return self.length

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held, the unused capacity included (what a memory budget must count)."""
        return self.keys.nbytes + self.values.nbytes

    def reserve(self, n: int) -> None:
        """Make room for n slots, keeping the first `length`."""
        if n <= self.capacity:
            return
        size = max(n, self.capacity + self.capacity // 4)
        size = -(-size // GROWTH_STEP) * GROWTH_STEP
        keys, values = self.runner.new_buffer(size)
        keys[:, :, : self.length] = self.keys[:, :, : self.length]
        values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values

    def copy(self) -> KVCache:
        """An independent copy (a benchmark forks one encoded document into several methods)."""
        other = KVCache(self.runner, max(self.length, 1))
        other.keys[:, :, : self.length] = self.keys[:, :, : self.length]
        other.values[:, :, : self.length] = self.values[:, :, : self.length]
        other.length = self.length
        return other

    def crop(self, n: int) -> None:
        """Keep the first n positions."""
        assert 0 <= n <= self.length, (n, self.length)
        self.length = n

    def move(self, moves: Sequence[Move], length: int, rope: RotaryParams | None) -> None:
        """Move slot ranges by their shifts, rotating keys by the same delta (rope None: not rotated),
        then set the length. Sources are read before anything is written, so ranges may overlap."""
        moves = [m for m in moves if m[1] > m[0] and m[2] != 0]
        self.reserve(max([length, *(end + shift for _, end, shift in moves)]))
        if moves:
            lo, hi = min(m[0] for m in moves), max(m[1] for m in moves)
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
        self.length = length

    def encode(self, tokens: Sequence[int], *, at: int | None = None, want_logits: bool = False) -> torch.Tensor | None:
        """Run the model over `tokens` in slots at.. (default: the end), each attending to the
        slots before it; the length grows to cover them. Slots after them are left as they are.

        Returns the logits after the last token (shape (vocab,)) when asked for.
        """
        at = self.length if at is None else at
        assert 0 <= at <= self.length, (at, self.length)
        self.reserve(at + len(tokens))
        logits = None
        for lo in range(0, len(tokens), ENCODE_CHUNK):
            chunk = tokens[lo : lo + ENCODE_CHUNK]
            last = lo + ENCODE_CHUNK >= len(tokens)
            logits = self._forward(chunk, at + lo, "last" if last and want_logits else "none")
        self.length = max(self.length, at + len(tokens))
        return logits

    def encode_scored(self, tokens: Sequence[int]) -> torch.Tensor:
        """Like `encode` for a short sequence, returning the logits after every token: (len, vocab)."""
        assert 0 < len(tokens) <= ENCODE_CHUNK
        self.reserve(self.length + len(tokens))
        logits = self._forward(tokens, self.length, "all")
        self.length += len(tokens)
        return logits

    def encode_tree(self, tokens: Sequence[int], positions: Sequence[int], visible: torch.Tensor) -> torch.Tensor:
        """Append `tokens` at explicit `positions` where each sees only the cache entries `visible` marks.

        `visible` is (len(tokens), len(self) + len(tokens)) bool: row i says which cached and new
        entries token i attends to (itself included). Several branches can so share one prompt.
        Returns the logits after every token: (len(tokens), vocab).
        """
        n = len(tokens)
        assert visible.shape == (n, self.length + n), (visible.shape, n, self.length)
        self.reserve(self.length + n)
        device = self.runner.device
        logits = self.runner.forward(
            self.keys,
            self.values,
            torch.tensor(list(tokens), device=device),
            torch.tensor(list(positions), device=device),
            self.length,
            visible=visible,
            logits="all",
        )
        self.length += n
        return logits

    def encode_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Append input vectors (q, hidden) instead of tokens, at the next positions; returns the
        logits after the last one: (vocab,). Superposed decoding feeds mixtures of embeddings here."""
        n = embeddings.shape[0]
        self.reserve(self.length + n)
        positions = torch.arange(self.length, self.length + n, device=self.runner.device)
        logits = self.runner.forward(self.keys, self.values, None, positions, self.length, embeddings=embeddings)
        self.length += n
        assert logits is not None
        return logits

    def _forward(self, tokens: Sequence[int], at: int, logits: str) -> torch.Tensor | None:
        device = self.runner.device
        positions = torch.arange(at, at + len(tokens), device=device)
        ids = torch.tensor(list(tokens), device=device)
        return self.runner.forward(self.keys, self.values, ids, positions, at, logits=logits)
