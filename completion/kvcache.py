"""One sequence's KV cache and the forward pass that extends it at explicit positions.

A thin layer over transformers' `DynamicCache`: the model's own attention code reads
and extends it, while we crop it, take segments out of it, and append (rotated)
segments to it. Position i of the cache always holds the token at position i: we never
leave gaps, so the positions passed to the model are simply `len(cache) + arange(m)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from completion.rope import RotaryParams, rotate_keys, rotation

# Prefill chunk: bounds the attention scratch memory of long encodes.
ENCODE_CHUNK = 1024

Segment = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (1, kv_heads, n, head_dim)


class KVCache:
    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.cache = DynamicCache(config=model.config)
        self.length = 0

    def __len__(self) -> int:
        return self.length

    @property
    def nbytes(self) -> int:
        total = 0
        for layer in self.cache.layers:
            if layer.is_initialized:
                total += layer.keys.nbytes + layer.values.nbytes
        return total

    def copy(self) -> KVCache:
        """An independent copy (a benchmark forks one encoded document into several methods)."""
        other = KVCache(self.model)
        other.append(self.segment(0, self.length), 0, None)
        return other

    def crop(self, n: int) -> None:
        """Keep the first n positions."""
        assert 0 <= n <= self.length, (n, self.length)
        for layer in self.cache.layers:
            if layer.is_initialized:
                layer.keys = layer.keys[..., :n, :]
                layer.values = layer.values[..., :n, :]
        self.length = n

    def segment(self, start: int, end: int) -> Segment:
        """Views of positions [start, end) in every layer (tensors are replaced, never written in place)."""
        assert 0 <= start <= end <= self.length, (start, end, self.length)
        return [(la.keys[..., start:end, :], la.values[..., start:end, :]) for la in self.cache.layers]

    def append(self, segment: Segment, delta: int, rope: RotaryParams | None) -> None:
        """Append a segment taken from elsewhere, its keys rotated by `delta` (None: not rotated)."""
        n = segment[0][0].shape[-2]
        if n == 0:
            return
        cos_sin = rotation(delta, rope, segment[0][0].device) if rope is not None else None
        for layer, (keys, values) in zip(self.cache.layers, segment, strict=True):
            if rope is not None:
                keys = rotate_keys(keys, delta, rope, cos_sin)
            layer.update(keys, values)
        self.length += n

    @torch.inference_mode()
    def encode(self, tokens: Sequence[int], *, want_logits: bool = False) -> torch.Tensor | None:
        """Run the model over `tokens` at positions len(self).., extending the cache.

        Returns the logits after the last token (shape (vocab,)) when asked for.
        """
        logits = None
        device = self.model.device
        for lo in range(0, len(tokens), ENCODE_CHUNK):
            chunk = tokens[lo : lo + ENCODE_CHUNK]
            positions = torch.arange(self.length, self.length + len(chunk), device=device)
            last = lo + ENCODE_CHUNK >= len(tokens)
            out = self.model(
                input_ids=torch.tensor([list(chunk)], device=device),
                position_ids=positions[None],
                cache_position=positions,
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=1,
            )
            self.length += len(chunk)
            if last and want_logits:
                logits = out.logits[0, -1].float()
        assert self.cache.get_seq_length() == self.length
        return logits

    @torch.inference_mode()
    def encode_scored(self, tokens: Sequence[int]) -> torch.Tensor:
        """Like `encode` for a short sequence, returning the logits after every token: (len, vocab)."""
        assert 0 < len(tokens) <= ENCODE_CHUNK
        positions = torch.arange(self.length, self.length + len(tokens), device=self.model.device)
        out = self.model(
            input_ids=torch.tensor([list(tokens)], device=self.model.device),
            position_ids=positions[None],
            cache_position=positions,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.length += len(tokens)
        return out.logits[0].float()

    @torch.inference_mode()
    def encode_tree(self, tokens: Sequence[int], positions: Sequence[int], visible: torch.Tensor) -> torch.Tensor:
        """Append `tokens` at explicit `positions` where each sees only the cache entries `visible` marks.

        `visible` is (len(tokens), len(self) + len(tokens)) bool: row i says which cached and new
        entries token i attends to (itself included). Several branches can so share one prompt.
        Returns the logits after every token: (len(tokens), vocab).
        """
        n = len(tokens)
        assert visible.shape == (n, self.length + n), (visible.shape, n, self.length)
        device, dtype = self.model.device, self.model.dtype
        # an additive float mask works for every attention implementation (eager adds it, sdpa takes it)
        mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible.to(device), float("-inf"))
        out = self.model(
            input_ids=torch.tensor([list(tokens)], device=device),
            position_ids=torch.tensor([list(positions)], device=device),
            cache_position=torch.arange(self.length, self.length + n, device=device),
            attention_mask=mask[None, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.length += n
        return out.logits[0].float()
