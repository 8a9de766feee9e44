"""Allowed-token masks for "the next characters spell one of these names", in milliseconds.

A static analyzer answers with names (members of an object, modules); the decoder needs
the tokens that keep the text on one of them: a token is allowed if its bytes are a prefix
of a legal name's rest, or the whole rest followed by a byte that ends an identifier
(`append(`, `name)\\n`). With the vocabulary sorted by bytes (completion.model.vocab), the tokens
that start with a name's rest are one contiguous span, and a per-token table of "how many
identifier bytes does this token start with" picks the ones that end the name right there,
so a mask costs one bisection and one vectorised comparison per name: never a loop over
the vocabulary. Tokens are bytes, so leading spaces (`Ġname`) and byte-level pieces are
handled like any other byte.

Two shapes: `hard` (nothing else may come next; after `obj.`) and `region` (only tokens that
begin an identifier after `lead` are checked, the rest are free; after `import` with the
space still to come, or a `.name` token proposed where no dot has been written yet).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import torch

from completion.model.vocab import Vocabulary

ASSIGNMENT = re.compile(rb" ?([\w\x80-\xff]*)=(?!=)")  # a token that writes `name=` (or `=` after a name)
_IDENT = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _IDENT[_c] = True
_IDENT[0x80:] = True  # UTF-8 bytes of non-ASCII identifier characters


def is_ident_byte(b: int) -> bool:
    return bool(_IDENT[b])


def ident_run(piece: bytes, start: int = 0) -> int:
    """Identifier bytes at the start of `piece[start:]`."""
    n = start
    while n < len(piece) and _IDENT[piece[n]]:
        n += 1
    return n - start


class NameMasks:
    """Per-vocabulary tables, built once per tokenizer (about 50 ms for 49k tokens)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._ids = vocab.sorted_ids.numpy()
        # identifier bytes each sorted piece starts with, at offset 0 and after a 1-byte lead
        self._run0 = np.array([ident_run(p) for p in vocab.sorted_pieces], dtype=np.int32)
        self._run1 = np.array([ident_run(p, 1) for p in vocab.sorted_pieces], dtype=np.int32)
        self._len = np.array([len(p) for p in vocab.sorted_pieces], dtype=np.int32)
        # by token id: the tokens after which a name is over (special tokens, a first byte not an identifier's)
        self.name_ends = torch.tensor([not p or not _IDENT[p[0]] for p in vocab.pieces], dtype=torch.bool)
        # tokens that write a keyword argument's `=`: (id, led by a space, the name bytes before it)
        self._assignments = [
            (i, p[:1] == b" ", m.group(1)) for i, p in enumerate(vocab.pieces) if (m := ASSIGNMENT.match(p))
        ]

    def mask(
        self, names: Iterable[str], partial: bytes = b"", lead: bytes = b"", region: bool = False
    ) -> np.ndarray | None:
        """Bool mask over the vocabulary, or None if no token could continue a legal name.

        `partial`: identifier bytes already written; `lead`: bytes the next token must start
        with before the name continues (a `.` or a space that is certain to come). numpy, not
        torch: these are small element-wise jobs, and torch's thread pool makes them cost
        milliseconds instead of microseconds whenever another process holds a core.
        """
        allowed = self._allowed(names, partial, lead)
        if region:
            mask = np.ones(self.vocab.size, dtype=bool)
            mask[self._beginning_names(lead)] = False
        else:
            mask = np.zeros(self.vocab.size, dtype=bool)
            for i in range(1, len(lead) + 1):  # a piece of the lead alone: the name comes next step
                mask[self.vocab.equal_to(lead[:i])] = True
        mask[allowed] = True
        return mask if region or mask.any() else None

    def keyword_mask(self, names: Iterable[str], partial: bytes) -> np.ndarray:
        """Every token allowed but those that would write `x=` for an `x` not in `names`
        (`partial`: the identifier written since the argument began)."""
        legal = {n.encode() for n in names}
        mask = np.ones(self.vocab.size, dtype=bool)
        for i, spaced, name in self._assignments:
            if (partial and spaced) or (name if spaced else partial + name) not in legal:
                mask[i] = False
        return mask

    def _allowed(self, names: Iterable[str], partial: bytes, lead: bytes) -> np.ndarray:
        """Ids of tokens `lead + x` where `partial + x` is a prefix of a name, or a name then a non-identifier byte."""
        spans: list[np.ndarray] = []  # positions in the sorted vocabulary
        exact: list[int] = []  # token ids
        whole_name = False
        for name in names:
            b = name.encode()
            if not b.startswith(partial) or len(b) == 0:
                continue
            rest = b[len(partial) :]
            if not rest:
                whole_name = True
                continue
            for i in range(1, len(rest) + 1):  # tokens that stop inside (or at the end of) the name
                exact.extend(self.vocab.equal_to(lead + rest[:i]))
            spans.append(self._ending_after(lead, rest))
        if whole_name:  # the name is written: any token that starts with a non-identifier byte ends it
            spans.append(self._ending_after(lead, b""))
        positions = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
        return np.concatenate([self._ids[positions], np.array(exact, dtype=np.int64)])

    def _ending_after(self, lead: bytes, rest: bytes) -> np.ndarray:
        """Sorted positions of tokens `lead + rest + c...` with c a non-identifier byte (rest may be empty)."""
        lo, hi = self.vocab.span(lead + rest)
        ok = (self._runs(lead, lo, hi) == len(rest)) & (self._len[lo:hi] > len(lead) + len(rest))
        return lo + np.flatnonzero(ok)

    def _beginning_names(self, lead: bytes) -> np.ndarray:
        """Tokens `lead + c...` with c an identifier byte: the ones a region constrains."""
        lo, hi = self.vocab.span(lead)
        return self._ids[lo + np.flatnonzero(self._runs(lead, lo, hi) > 0)]

    def _runs(self, lead: bytes, lo: int, hi: int) -> np.ndarray:
        if len(lead) == 0:
            return self._run0[lo:hi]
        if len(lead) == 1:
            return self._run1[lo:hi]
        return np.array([ident_run(p, len(lead)) for p in self.vocab.sorted_pieces[lo:hi]], dtype=np.int32)
