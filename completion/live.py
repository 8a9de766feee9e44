"""LiveDocument: a document's text, its tokens and a KV cache kept in step with every edit.

Invariant (tested): `tokens` is exactly `build_layout(tokenize(text), cursor)` and the
KV cache holds one entry per token, computed at that token's position. Entries may be
*stale* (computed under an older left context: positions >= `exact_len`) but never
misplaced. An edit becomes token splices; PIE applies each splice by keeping the
prefix, encoding the new tokens at their positions and rotating the keys of the
shifted suffix by the position delta. `refresh()` re-encodes the stale part exactly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch

from completion.engine import Engine
from completion.kvcache import KVCache
from completion.layout import Layout, build_layout
from completion.tokens import Splice, TokenizedText


class UpdatePolicy(StrEnum):
    PIE = "pie"  # rotate shifted keys, encode only new tokens
    PREFIX_REUSE = "prefix-reuse"  # keep KV up to the first change, re-encode the rest (llama.cpp)
    FULL = "full"  # re-encode everything (the exact reference)
    NO_ROTATION = "no-rotation"  # reuse shifted KV unrotated: a deliberately broken baseline


@dataclass(frozen=True)
class TextEdit:
    """Replace text[start:end] (character offsets into the text before the batch) with `text`."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class UpdateStats:
    encoded: int  # tokens run through the model
    reused: int  # tokens whose KV was kept (rotated or not)
    seconds: float


def validate_edits(edits: Sequence[TextEdit], length: int) -> int:
    """Check edits are in range, ascending and non-overlapping; return the new text length."""
    prev_end = 0
    new_length = length
    for e in edits:
        if not (0 <= e.start <= e.end <= length):
            raise ValueError(f"edit [{e.start}, {e.end}) out of range for a text of length {length}")
        if e.start < prev_end:
            raise ValueError(f"edit [{e.start}, {e.end}) overlaps or precedes the previous edit ending at {prev_end}")
        prev_end = e.end
        new_length += len(e.text) - (e.end - e.start)
    return new_length


def map_cursor(cursor: int, edits: Sequence[TextEdit]) -> int:
    """Where the caret ends up: after text inserted at it, shifted by edits before it."""
    shift = 0
    for e in edits:
        if e.start > cursor:
            break
        if e.end <= cursor:  # before the caret, or typed at it
            shift += len(e.text) - (e.end - e.start)
        else:  # the caret was inside replaced text: it lands after the new text
            return e.start + shift + len(e.text)
    return cursor + shift


class LiveDocument:
    def __init__(
        self,
        engine: Engine,
        text: str,
        *,
        cursor: int | None = None,
        context: str = "",
        fim: bool = True,
        window: int = 4096,
        suffix_tokens: int | None = None,
        policy: UpdatePolicy = UpdatePolicy.PIE,
    ) -> None:
        if window < 64:
            raise ValueError(f"window must be >= 64 tokens, got {window}")
        suffix_tokens = window // 8 if suffix_tokens is None else suffix_tokens
        if not 0 <= suffix_tokens <= window // 4:
            raise ValueError(f"suffix_tokens must be in [0, window/4], got {suffix_tokens}")
        self.engine = engine
        if engine.rope is None and policy is not UpdatePolicy.FULL:
            # No rotation possible: re-encode from the first change, or all of it when
            # sliding-window layers cannot be cropped.
            policy = UpdatePolicy.FULL if engine.sliding_window else UpdatePolicy.PREFIX_REUSE
        self.policy = policy
        self.fim = engine.fim if fim else None
        self.window = window
        self.suffix_tokens = suffix_tokens
        self.doc = TokenizedText(engine.tokenizer, text)
        self.cursor = len(text) if cursor is None else cursor
        if not 0 <= self.cursor <= len(text):
            raise ValueError(f"cursor {self.cursor} out of range for a text of length {len(text)}")
        self.context = context
        self._head = self._head_tokens(context)
        self._window_start = 0
        self.kv = KVCache(engine.runner)
        self.tokens: list[int] = []  # what the KV cache holds, one entry per token
        self.exact_len = 0  # KV [0, exact_len) equals a full re-encode
        self.next_logits: torch.Tensor | None = None  # logits after tokens[-1], when known
        self._update([])

    # -- public API -------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.doc.text

    @property
    def heal(self) -> str:
        """Text between the end of the prompt and the cursor, re-decoded by token healing."""
        return self.layout.heal

    @property
    def stale(self) -> int:
        """How many cached positions hold KV computed under an older left context."""
        return len(self.tokens) - self.exact_len

    def apply_edits(self, edits: Sequence[TextEdit], cursor: int | None = None) -> UpdateStats:
        """Apply non-overlapping ascending edits and patch the cache; the caret follows the edits
        unless `cursor` (an offset into the new text) is given. Bad input raises ValueError and
        changes nothing."""
        new_length = validate_edits(edits, len(self.doc.text))
        if cursor is not None and not 0 <= cursor <= new_length:
            raise ValueError(f"cursor {cursor} out of range for a text of length {new_length}")
        new_cursor = map_cursor(self.cursor, edits) if cursor is None else cursor
        doc_splices = self._edit_document(edits)
        # An evicted cache has nothing to patch: the diff in `_update` re-encodes it whole.
        layout_splices = self._layout_splices(doc_splices) if self.tokens else []
        self.cursor = new_cursor
        return self._update(layout_splices)

    def move_cursor(self, cursor: int) -> UpdateStats:
        return self.apply_edits([], cursor)

    def set_context(self, context: str) -> UpdateStats:
        """Replace the cross-file context segment at the front (a splice like any other)."""
        self.context = context
        self._head = self._head_tokens(context)
        return self._update([])

    def refresh(self, max_tokens: int | None = None) -> int:
        """Re-encode up to `max_tokens` stale positions exactly; returns how many were done."""
        n, e = len(self.tokens), self.exact_len
        if e >= n:
            return 0
        end = n if max_tokens is None else min(n, e + max_tokens)
        logits = self.kv.encode(self.tokens[e:end], at=e, want_logits=end == n)
        self.exact_len = end
        if end == n:
            self.next_logits = logits
        return end - e

    def prompt_logits(self) -> torch.Tensor:
        """Logits for the token after the prompt; re-runs the last token if they are not known."""
        if self.next_logits is None:
            n = len(self.tokens)
            # re-encoded in its slot, not cropped and appended: if the pass fails (out of memory),
            # the cache still holds one entry per token
            self.next_logits = self.kv.encode(self.tokens[-1:], at=n - 1, want_logits=True)
            if self.exact_len == n - 1:
                self.exact_len = n
        assert self.next_logits is not None
        return self.next_logits

    def fork(self, policy: UpdatePolicy) -> LiveDocument:
        """A copy with its own cache and another update policy (for comparisons)."""
        other = copy.copy(self)
        other.doc = self.doc.copy()
        other.kv = self.kv.copy()
        other.tokens = list(self.tokens)
        other.policy = policy
        return other

    def evict(self) -> None:
        """Drop the KV cache to free memory; the next update re-encodes the document."""
        self.kv = KVCache(self.engine.runner)
        self.tokens, self.exact_len, self.next_logits = [], 0, None

    # -- internals --------------------------------------------------------------------

    def _head_tokens(self, context: str) -> list[int]:
        head = [self.engine.start]
        if context:
            head += self.engine.tokenizer(context, add_special_tokens=False, split_special_tokens=True).input_ids
        if len(head) > self.window // 2:
            raise ValueError(f"context is {len(head)} tokens; at most window/2 = {self.window // 2} allowed")
        return head

    def _edit_document(self, edits: Sequence[TextEdit]) -> list[Splice]:
        """Apply edits front to back; return document splices, each in the indexing left by the previous ones."""
        splices: list[Splice] = []
        shift = 0
        for e in edits:
            s = self.doc.apply_edit(e.start + shift, e.end + shift, e.text)
            shift += len(e.text) - (e.end - e.start)
            if s.start == s.end and not s.tokens:
                continue
            while splices and s.start < splices[-1].start + len(splices[-1].tokens):
                s = self._merge(splices.pop(), s)
            splices.append(s)
        return splices

    def _merge(self, first: Splice, second: Splice) -> Splice:
        """One splice equal to `first` then `second` when they touch (indices of `first`'s input)."""
        start = min(first.start, second.start)
        end_mid = max(first.start + len(first.tokens), second.end)  # in the indexing after `first`
        end_old = end_mid - first.delta
        end_new = end_mid + second.delta
        return Splice(start, end_old, tuple(self.doc.ids[start:end_new]))

    def _layout_splices(self, doc_splices: list[Splice]) -> list[Splice]:
        """Map document splices that fall inside the prompt's prefix or suffix regions to layout
        splices; stop at the first one that straddles a region edge (the diff in `_update` covers it)."""
        lay = self.layout
        w, k = lay.window_start, lay.cursor_token
        js, je = lay.suffix_start, lay.suffix_end
        pb, sb = lay.prefix_base, lay.suffix_base
        out: list[Splice] = []
        for s in doc_splices:
            d = s.delta
            if w <= s.start and s.end <= k:
                out.append(Splice(pb + s.start - w, pb + s.end - w, s.tokens))
                k, js, je, sb = k + d, js + d, je + d, sb + d
            elif s.end <= w:  # before the window: only indices move
                w, k, js, je = w + d, k + d, js + d, je + d
            elif self.fim is not None and js <= s.start and s.end <= je:
                out.append(Splice(sb + s.start - js, sb + s.end - js, s.tokens))
                je += d
            elif s.start >= (je if self.fim is not None else k + 1):
                continue  # after everything the prompt shows
            else:
                break
        self._window_start = max(0, w)
        return out

    def _layout_at(self, window_start: int) -> Layout:
        return build_layout(
            self.doc,
            self.cursor,
            head=self._head,
            fim=self.fim,
            window_start=window_start,
            suffix_tokens=self.suffix_tokens,
        )

    def _compute_layout(self) -> Layout:
        """Layout for the current text and cursor, moving the window start only when the
        prompt leaves [window - window/4, window] so typing does not shift it every key."""

        lay = self._layout_at
        layout = lay(self._window_start)
        slack = self.window // 8
        if len(layout.tokens) > self.window or (
            layout.window_start > 0 and len(layout.tokens) < self.window - 2 * slack
        ):
            target = self.window - slack
            w = max(0, layout.window_start + len(layout.tokens) - target)
            while 0 < w < len(self.doc.ids) and self.doc.offsets[w - 1] == self.doc.offsets[w]:
                w += 1  # never start inside a character split over tokens
            layout = lay(w)
        self._window_start = layout.window_start
        return layout

    def _update(self, layout_splices: list[Splice]) -> UpdateStats:
        """Apply layout splices, then one more splice from diffing against the true layout."""
        t0 = time.perf_counter()
        encoded = self._apply(layout_splices)
        # Two steps when the window start moves: first the cursor/text change under the old
        # window, then the window move. A single diff of a prompt changed at both ends would
        # find no common tail and re-encode everything in between.
        first = self._layout_at(self._window_start)  # too long when the cursor jumped far ahead: skip it
        steps = [first] if len(first.tokens) <= self.window + self.window // 4 else []
        for layout in [*steps, self._compute_layout()]:
            self.layout = layout
            final = diff_splice(self.tokens, layout.tokens)
            if final is not None:
                encoded += self._apply([final])
        assert self.tokens == self.layout.tokens
        stats = UpdateStats(encoded, len(self.tokens) - encoded, time.perf_counter() - t0)
        return stats

    def _apply(self, splices: list[Splice]) -> int:
        """Patch tokens and KV with running-index splices under the update policy; return tokens encoded."""
        if not splices:
            return 0
        old_tokens = self.tokens
        new_tokens = apply_splices(old_tokens, splices)
        first = splices[0].start
        policy = self.policy
        if policy is UpdatePolicy.FULL or not old_tokens:
            start = 0
        elif policy is UpdatePolicy.PREFIX_REUSE:
            start = first
        else:
            start = None
        if start is not None:
            if start == 0:
                self.kv = KVCache(self.engine.runner)
            else:
                self.kv.crop(start)
            self.next_logits = self.kv.encode(new_tokens[start:], want_logits=True) if len(new_tokens) > start else None
            encoded = len(new_tokens) - start
            self.exact_len = len(new_tokens) if self.exact_len >= start else self.exact_len
        else:
            encoded = self._apply_rotating(splices, len(old_tokens))
            self.exact_len = min(self.exact_len, first)
            if self.exact_len == first:
                self.exact_len += len(splices[0].tokens)
        self.tokens = new_tokens
        return encoded

    def _apply_rotating(self, splices: list[Splice], n_old: int) -> int:
        """PIE: keep [0, first), move the old segments between and after the splices to their new
        slots with keys rotated by the running delta, then encode each splice's tokens in place."""
        rope = self.engine.rope if self.policy is UpdatePolicy.PIE else None
        moves, delta, prev_end = [], 0, None
        for s in splices:
            if prev_end is not None:
                moves.append((prev_end, s.start - delta, delta))
            prev_end = s.end - delta
            delta += s.delta
        assert prev_end is not None
        moves.append((prev_end, n_old, delta))
        self.kv.move(moves, n_old + delta, rope)
        logits = None
        for s in splices:
            logits = self.kv.encode(s.tokens, at=s.start, want_logits=True) if s.tokens else None
        # Logits are only current if the last token of the sequence was just encoded.
        self.next_logits = logits if prev_end == n_old and logits is not None else None
        return sum(len(s.tokens) for s in splices)


def apply_splices(tokens: list[int], splices: Sequence[Splice]) -> list[int]:
    """Apply splices given in running indexing (each after the previous ones), ascending."""
    out = list(tokens)
    for s in splices:
        assert 0 <= s.start <= s.end <= len(out), (s.start, s.end, len(out))
        out[s.start : s.end] = s.tokens
    return out


def diff_splice(old: list[int], new: list[int]) -> Splice | None:
    """The single splice turning `old` into `new` (common prefix and suffix kept), or None."""
    if old == new:
        return None
    n = min(len(old), len(new))
    p = 0
    while p < n and old[p] == new[p]:
        p += 1
    s = 0
    while s < n - p and old[-1 - s] == new[-1 - s]:
        s += 1
    return Splice(p, len(old) - s, tuple(new[p : len(new) - s]))


def fresh_layout(doc: LiveDocument) -> list[int]:
    """The prompt a document with this text, cursor and context must hold (the invariant above),
    from a fresh tokenization of its text and of its cross-file context."""
    return build_layout(
        TokenizedText(doc.engine.tokenizer, doc.text),
        doc.cursor,
        head=doc._head_tokens(doc.context),
        fim=doc.fim,
        window_start=doc.layout.window_start,
        suffix_tokens=doc.suffix_tokens,
    ).tokens


def kv_error(doc: LiveDocument) -> float:
    """Largest absolute difference between the document's KV and a full re-encode of its tokens."""
    ref = KVCache(doc.engine.runner)
    ref.encode(doc.tokens)
    n = len(doc.tokens)
    keys = (doc.kv.keys[:, :, :n] - ref.keys[:, :, :n]).abs().max().item()
    return max(keys, (doc.kv.values[:, :, :n] - ref.values[:, :, :n]).abs().max().item())
