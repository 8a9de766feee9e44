"""Incremental tokenization: turn a character edit into a token splice.

The live KV cache is patched per edit, so it must know which tokens an edit replaced.
Retokenizing a 16 KB file costs ~10 ms; instead `TokenizedText.apply_edit` retokenizes
a small window around the change and re-synchronises with the old tokens on both sides.
After every edit `ids` and `offsets` equal a fresh tokenization of `text` (the property
tests check this on every edit).

Window edges are *anchors*: a space whose preceding character is printable and not
whitespace. With the GPT-2 / Llama 3 / Qwen pre-tokenizer regexes and with Metaspace,
an anchor always starts a pre-token, and the pre-tokens before it are decided by the
text up to and including it. Tokens never cross pre-tokens, so the tokens left of an
unchanged anchor, and the tokens right of one, do not depend on the text beyond it.
For other tokenizers the anchor rule is a heuristic; two extra checks (the window's
first tokens must equal the old ones, and the old and new tokens must agree for
`_AGREE` tokens at the right sync point) make the window grow instead of guessing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

# Tokens that must agree on each side of the window before we trust a sync point.
_AGREE = 2
# Old tokens the first window reaches past the edit; enough in typical code to contain
# an anchor plus `_AGREE` agreeing tokens, so most edits need a single tokenizer call.
_RIGHT_REACH = 12


@dataclass(frozen=True)
class Splice:
    """Replace old tokens [start, end) with `tokens`."""

    start: int
    end: int
    tokens: tuple[int, ...]

    @property
    def delta(self) -> int:
        """Change in the number of tokens."""
        return len(self.tokens) - (self.end - self.start)


def fresh_tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[int], list[int]]:
    """Token ids of `text` (no special tokens added) and the char offset where each starts.

    Byte-level BPE can split one character into several tokens; each of those reports the
    offset of the character its first byte belongs to, so offsets are non-decreasing, not
    strictly increasing.
    """
    # split_special_tokens: a document that spells out "<|endoftext|>" is text, not the end of text
    enc = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    return list(enc["input_ids"]), [start for start, _ in enc["offset_mapping"]]


def _is_anchor(text: str, pos: int) -> bool:
    """A space after a printable non-space character: a pre-token boundary (module docstring).

    Python's isspace() is a superset of Unicode White_Space (the regexes' \\s), so a
    character it calls non-space is never whitespace to the tokenizer either.
    """
    if not 0 < pos < len(text) or text[pos] != " ":
        return False
    prev = text[pos - 1]
    return prev.isprintable() and not prev.isspace()


class TokenizedText:
    """A text and its tokens, kept equal to a fresh tokenization across edits."""

    text: str
    ids: list[int]  # token ids of `text`, no special tokens added
    offsets: list[int]  # char offset where each token starts; same length as `ids`
    uids: list[int]  # an identity per token that survives edits (new tokens get new ones): relayouts match on it

    def __init__(self, tokenizer: PreTrainedTokenizerBase, text: str) -> None:
        if not tokenizer.is_fast:
            raise ValueError(f"TokenizedText needs a fast tokenizer (for offsets), got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.text = text
        self.ids, self.offsets = fresh_tokenize(tokenizer, text)
        self.uids = list(range(len(self.ids)))
        self._next_uid = len(self.ids)

    def copy(self) -> TokenizedText:
        other = TokenizedText.__new__(TokenizedText)
        other.tokenizer, other.text = self.tokenizer, self.text
        other.ids, other.offsets, other.uids = list(self.ids), list(self.offsets), list(self.uids)
        other._next_uid = self._next_uid
        return other

    def token_index_at(self, char: int) -> int:
        """Number of tokens that start strictly before `char`."""
        return bisect_left(self.offsets, char)

    def apply_edit(self, start: int, end: int, new_text: str) -> Splice:
        """Replace text[start:end] with `new_text`; return the token splice in the old indexing."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(f"edit range [{start}, {end}) is not within the text (length {len(self.text)})")
        if self.text[start:end] == new_text:
            at = self.token_index_at(start)
            return Splice(at, at, ())
        new = self.text[:start] + new_text + self.text[end:]
        delta = len(new_text) - (end - start)
        window_ids, window_offs, first, sync_w, sync_j = self._window(new, start, end, start + len(new_text), delta)

        # Shrink [first, sync_j) to the tokens that really changed, so the cache keeps the rest.
        i, w0 = first, 0
        ids, offs = self.ids, self.offsets
        while w0 < sync_w and i < sync_j and window_ids[w0] == ids[i] and window_offs[w0] == offs[i]:
            i += 1
            w0 += 1
        j, w1 = sync_j, sync_w
        while w1 > w0 and j > i and window_ids[w1 - 1] == ids[j - 1] and window_offs[w1 - 1] == offs[j - 1] + delta:
            j -= 1
            w1 -= 1

        tokens = window_ids[w0:w1]
        self.text = new
        ids[i:j] = tokens
        offs[i:j] = window_offs[w0:w1]
        self.uids[i:j] = range(self._next_uid, self._next_uid + len(tokens))
        self._next_uid += len(tokens)
        if delta:
            shifted = i + len(tokens)
            offs[shifted:] = [o + delta for o in offs[shifted:]]
        return Splice(i, j, tuple(tokens))

    def _left_anchor(self, limit: int, start: int) -> int:
        """Largest token index <= limit that starts at an anchor before `start`, else 0."""
        offs, text = self.offsets, self.text
        for s in range(min(limit, len(offs) - 1), 0, -1):
            pos = offs[s]
            # Both characters that make `pos` an anchor must be unchanged by the edit, and only
            # the first token at a position starts there (byte fallback can split the '▁' a
            # Metaspace tokenizer writes for the space into several tokens at one offset).
            if pos < start and offs[s - 1] != pos and _is_anchor(text, pos):
                return s
        return 0

    def _window(
        self, new: str, start: int, end: int, ins_end: int, delta: int
    ) -> tuple[list[int], list[int], int, int, int]:
        """Retokenize a window of `new` around the edit until both of its edges are in sync.

        Returns the window's ids and absolute offsets, the old index of its first token,
        and the sync point: window token `sync_w` is old token `sync_j` (or the window
        reaches the end of the text: sync_w == len(window), sync_j == len(old)).
        """
        offs, ids, n = self.offsets, self.ids, len(self.offsets)
        edit_token = bisect_right(offs, start) - 1  # last token starting at or before the edit
        s = self._left_anchor(edit_token - _AGREE - 1, start)
        first_after = bisect_right(offs, end)  # first token starting after the replaced text
        reach = _RIGHT_REACH
        while True:
            a = offs[s] if s > 0 else 0
            u = first_after + reach
            b = offs[u] + delta if u < n else len(new)
            enc = self.tokenizer(
                new[a:b], add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True
            )
            w_ids: list[int] = enc["input_ids"]
            w_offs = [a + o for o, _ in enc["offset_mapping"]]

            if s > 0 and (w_ids[:_AGREE] != ids[s : s + _AGREE] or w_offs[:_AGREE] != offs[s : s + _AGREE]):
                # The window's start is not a boundary for this tokenizer: back off, doubling.
                s = self._left_anchor(s - max(_AGREE, edit_token - s), start)
                continue
            if b == len(new):
                return w_ids, w_offs, s, len(w_ids), n
            sync = self._right_sync(new, w_ids, w_offs, ins_end, delta)
            if sync is not None:
                return w_ids, w_offs, s, *sync
            reach *= 2

    def _right_sync(
        self, new: str, w_ids: list[int], w_offs: list[int], ins_end: int, delta: int
    ) -> tuple[int, int] | None:
        """First window token at an anchor past the insertion where `_AGREE` tokens equal the
        old ones at the same (shifted) offsets, as (window index, old index); None if the
        window is too short to contain one."""
        offs, ids, n = self.offsets, self.ids, len(self.offsets)
        # Candidates start past the insertion, so both characters that make q an anchor are
        # old text. The last window token may be cut short by the window's end, so it is
        # never one of the agreeing tokens.
        for w in range(bisect_right(w_offs, ins_end), len(w_offs) - _AGREE):
            q = w_offs[w]
            if not _is_anchor(new, q):
                continue
            j = bisect_left(offs, q - delta)
            if j + _AGREE > n or offs[j] != q - delta:
                continue
            if w_ids[w : w + _AGREE] == ids[j : j + _AGREE] and all(
                w_offs[w + t] == offs[j + t] + delta for t in range(_AGREE)
            ):
                return w, j
        return None
