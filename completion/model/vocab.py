"""The vocabulary as bytes, indexed so constraints never loop over it per step.

Every token's bytes are computed once per tokenizer; tokens sorted by their bytes make
"all tokens that start with P" one contiguous range found by bisection, and a dict
finds the tokens equal to a given byte string.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

import torch
from transformers import PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode as _untyped_bytes_to_unicode

# GPT-2's byte -> printable character table (transformers leaves the function unannotated)
bytes_to_unicode: Callable[[], dict[int, str]] = _untyped_bytes_to_unicode

_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_pieces(tokenizer: PreTrainedTokenizerBase, size: int) -> list[bytes]:
    """Bytes of each token id below `size`; special and padding ids map to b""."""
    raw = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
    special = set(tokenizer.all_special_ids)
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    byte_level = type(decoder).__name__ == "ByteLevel"
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    pieces: list[bytes] = []
    for i, tok in enumerate(raw):
        if tok is None or i in special:
            pieces.append(b"")
        elif byte_level:
            pieces.append(bytes(byte_decoder[c] for c in tok) if all(c in byte_decoder for c in tok) else tok.encode())
        elif m := _SP_BYTE.fullmatch(tok):
            pieces.append(bytes([int(m.group(1), 16)]))
        else:  # SentencePiece-style: '▁' marks a space
            pieces.append(tok.replace("▁", " ").encode())
    return pieces + [b""] * (size - len(pieces))


def _successor(prefix: bytes) -> bytes | None:
    """Smallest byte string greater than every string starting with `prefix` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class Vocabulary:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, size: int) -> None:
        self.size = size
        self.pieces = token_pieces(tokenizer, size)
        order = sorted((i for i in range(size) if self.pieces[i]), key=self.pieces.__getitem__)
        self.sorted_pieces = [self.pieces[i] for i in order]  # non-empty pieces in byte order
        self.sorted_ids = torch.tensor(order, dtype=torch.long)  # their token ids
        self._by_piece: dict[bytes, list[int]] = {}
        for i, p in enumerate(self.pieces):
            if p:
                self._by_piece.setdefault(p, []).append(i)

    def span(self, prefix: bytes) -> tuple[int, int]:
        """[lo, hi) of the tokens whose bytes start with `prefix`, as indices into `sorted_pieces`."""
        lo = bisect.bisect_left(self.sorted_pieces, prefix)
        succ = _successor(prefix)
        hi = len(self.sorted_pieces) if succ is None else bisect.bisect_left(self.sorted_pieces, succ)
        return lo, hi

    def starting_with(self, prefix: bytes) -> torch.Tensor:
        """Ids of all non-empty tokens whose bytes start with `prefix`."""
        lo, hi = self.span(prefix)
        return self.sorted_ids[lo:hi]

    def equal_to(self, piece: bytes) -> list[int]:
        return self._by_piece.get(piece, [])

    def decode(self, ids: list[int]) -> bytes:
        return b"".join(self.pieces[i] for i in ids)

    def remaining(self, text: bytes, ids: list[int]) -> bytes:
        """What of `text` the tokens `ids` have not produced yet (b"" once produced or departed from)."""
        for t in ids:
            if not text:
                break
            piece = self.pieces[t]
            text = text[len(piece) :] if text.startswith(piece) else b""
        return text
