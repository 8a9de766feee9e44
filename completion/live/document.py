"""LiveDocument: a document's text, its tokens and a KV cache kept in step with every edit.

Invariant (tested): `tokens` is exactly the layout of a fresh tokenization of the text
(`layout.py`) and the KV cache holds its first `len(kv)` tokens, each computed at its
position. With PIE and a prefix-only model the layout is the whole (windowed) document,
independent of the caret: a request decodes after the prompt's `decode_at` tokens and
never re-encodes the text between an edit and the caret. Entries may be *stale*
(computed under an older left context: positions >= `exact_len`) or missing (a document
still growing, or evicted: positions >= len(kv)) but never misplaced.

An edit becomes token splices; PIE applies each splice by keeping the prefix, encoding
the new tokens at their positions and shifting the entries after it by the position
delta (their keys rotated, lazily: see `kvcache.py`). A caret or window move that changes
the layout is a relayout: entries move to their new slots, rotated and marked stale, and
only tokens the cache never held are encoded. `refresh()` re-encodes the stale part
exactly and grows the missing part, from the first inexact position on.

The baselines (`prefix-reuse`, `full`) keep the last prompt, which ends at the caret, and
do their work when a request comes, as a server without PIE would.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import torch

from completion.live.kvcache import KVCache
from completion.live.layout import Layout, build_layout, context_tokens, healed_token
from completion.live.tokens import Splice, TokenizedText
from completion.model.engine import Engine
from completion.syntax.tree import DocTree, SlowParse, reason_without

log = logging.getLogger(__name__)
# Logits kept per document: after the last tokens encoded (what a request right after typing reads).
LOGITS_KEPT = 16


class UpdatePolicy(StrEnum):
    PIE = "pie"  # the whole document cached; rotate shifted keys, encode only new tokens
    PREFIX_REUSE = "prefix-reuse"  # the last prompt cached; a request keeps its common prefix (llama.cpp)
    FULL = "full"  # every request encodes its prompt whole
    NO_ROTATION = "no-rotation"  # as PIE, shifted KV reused unrotated: a deliberately broken baseline


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


@dataclass
class EncodeCounts:
    """Tokens run through the model for one document, by cause (`livekv/documentState` shows them)."""

    edits: int = 0  # splices, relayouts (caret or window moves in FIM and long files), context steps
    requests: int = 0  # on a request's path: the prompt's missing part, the last-token pass, baselines' work
    refresh: int = 0  # idle time: stale entries re-encoded, missing ones grown


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
        encode: bool = True,
        syntax_tree: bool = True,
    ) -> None:
        """`encode` False: tokenize only; the KV grows at idle time (`refresh`) or for a request (`prepare`).
        `syntax_tree`: keep a tree-sitter tree of the text in step with it (`syntax`; None where the text
        gets none: see completion/syntax/tree.py)."""
        if window < 64:
            raise ValueError(f"window must be >= 64 tokens, got {window}")
        suffix_tokens = window // 8 if suffix_tokens is None else suffix_tokens
        if not 0 <= suffix_tokens <= window // 4:
            raise ValueError(f"suffix_tokens must be in [0, window/4], got {suffix_tokens}")
        self.engine = engine
        if engine.rope is None and policy in (UpdatePolicy.PIE, UpdatePolicy.NO_ROTATION):
            # No rotation possible: reuse the prompt's prefix, or re-encode it whole when
            # sliding-window layers cannot be cropped.
            policy = UpdatePolicy.FULL if engine.sliding_window else UpdatePolicy.PREFIX_REUSE
        self.policy = policy
        self.fim = engine.fim if fim else None
        self.window = window
        self.suffix_tokens = suffix_tokens
        self.doc = TokenizedText(engine.tokenizer, text)
        self.keeps_tree = syntax_tree
        self._tree: DocTree | None = None
        self.tree_seconds = 0.0  # the last edit's tree upkeep (`livekv/documentState`, `bench soak`)
        self.parse_seconds = 0.0  # the last reparse, when the tree was read after edits
        self.keep_tree(syntax_tree)
        self.cursor = len(text) if cursor is None else cursor
        if not 0 <= self.cursor <= len(text):
            raise ValueError(f"cursor {self.cursor} out of range for a text of length {len(text)}")
        self.context = context
        self._head = self._head_tokens(context)
        self._window = (0, len(self.doc.ids))  # document tokens [start, end) of the layout
        self.kv = self._new_kv()
        self.exact_len = 0  # KV [0, exact_len) equals a full re-encode
        self._logits: dict[int, torch.Tensor] = {}  # prompt length -> logits after it, while still current
        self.counts = EncodeCounts()
        self._prepared = False  # baselines: the last `prepare` is still current (no edit or move since)
        self.layout = self._compute_layout()
        self.tokens = list(self.layout.tokens)  # what the cache holds; KV covers tokens[:len(kv)]
        self.uids = list(self.layout.uids)
        if encode:
            self.counts.edits += self.refresh()

    # -- public API -------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.doc.text

    @property
    def heal(self) -> str:
        """Text between the end of the prompt and the cursor, re-decoded by token healing."""
        return self.layout.heal

    @property
    def prompt(self) -> list[int]:
        """The tokens decoding continues: the layout up to the decode point."""
        return self.tokens[: self.layout.decode_at]

    @property
    def defers(self) -> bool:
        """Baselines keep the last prompt and do all their work when a request comes (`prepare`)."""
        return self.policy in (UpdatePolicy.PREFIX_REUSE, UpdatePolicy.FULL)

    @property
    def stale(self) -> int:
        """How many cached positions hold KV computed under an older left context."""
        return len(self.kv) - self.exact_len

    @property
    def missing(self) -> int:
        """Layout tokens with no KV yet (a document still growing, or evicted)."""
        return len(self.tokens) - len(self.kv)

    def apply_edits(self, edits: Sequence[TextEdit], cursor: int | None = None) -> UpdateStats:
        """Apply non-overlapping ascending edits and patch the cache; the caret keeps its place in the
        text (typing at it carries it along) unless `cursor` (an offset into the new text) is given.
        Bad input raises ValueError and changes nothing."""
        new_length = validate_edits(edits, len(self.doc.text))
        if cursor is not None and not 0 <= cursor <= new_length:
            raise ValueError(f"cursor {cursor} out of range for a text of length {new_length}")
        t0 = time.perf_counter()
        self._prepared = False
        new_cursor = map_cursor(self.cursor, edits) if cursor is None else cursor
        runs = self._doc_runs()
        first, end = self._window
        encoded = 0
        for splice in self._edit_document(edits):
            first, end = map_index(first, splice, inside_to_end=False), map_index(end, splice, inside_to_end=True)
            if not self.defers:
                encoded += self._splice_doc(splice, runs)
        self._edit_tree(edits)
        self.cursor = new_cursor
        self._window = (first, end)
        if not self.defers:
            encoded += self._relayout(self._compute_layout())
        self.counts.edits += encoded
        return UpdateStats(encoded, len(self.kv) - encoded, time.perf_counter() - t0)

    def move_cursor(self, cursor: int) -> UpdateStats:
        """Put the caret at `cursor`: no KV work in a document layout unless the window must move;
        in FIM layouts the regions' entries move across it (rotated, marked stale)."""
        return self.apply_edits([], cursor)

    @property
    def syntax(self) -> DocTree | None:
        """The syntax tree of the text as it is now: reparsed here (incrementally) if edits came since."""
        tree = self._tree
        if tree is not None and tree.pending:
            t0 = time.perf_counter()
            self._start_tree(tree.caught_up)
            self.parse_seconds = time.perf_counter() - t0
        return self._tree

    def catch_up_tree(self) -> bool:
        """Reparse after edits now (idle time), so the next request finds the tree ready; False if
        there was nothing to do."""
        pending = self._tree is not None and self._tree.pending
        if pending:
            self.syntax  # noqa: B018 (the property reparses)
        return pending

    @property
    def has_tree(self) -> bool:
        """Whether the document holds a tree (without reparsing it)."""
        return self._tree is not None

    def keep_tree(self, on: bool) -> None:
        """Start (a full parse) or drop the syntax tree (the `syntaxTree` setting). A text whose parse
        runs out of time keeps none (and is not parsed again) until this is called again."""
        self.keeps_tree, self._tree = on, None
        if on:
            self._start_tree(lambda: DocTree.of(self.text))

    def _start_tree(self, make: Callable[[], DocTree | None]) -> None:
        try:
            self._tree = make()
        except SlowParse as err:
            log.info("no syntax tree for this document: %s", err)
            self.keeps_tree, self._tree = False, None

    def set_context(self, context: str) -> UpdateStats:
        """Replace the cross-file context segment at the front (a splice like any other)."""
        t0 = time.perf_counter()
        old, self._head = self._head, self._head_tokens(context)
        self.context = context
        self._prepared = False
        encoded = 0
        splice = diff_splice(old, self._head)
        if splice is not None and not self.defers:
            uids = tuple(-1 - i for i in range(splice.start, splice.start + len(splice.tokens)))
            encoded = self._splice_layout(splice, uids)
            encoded += self._relayout(self._compute_layout())
        self.counts.edits += encoded
        return UpdateStats(encoded, len(self.kv) - encoded, time.perf_counter() - t0)

    def prepare(self, budget: int | None = None) -> bool:
        """Make the prompt at the caret ready in the KV cache (a baseline does its work here, once per
        call: `full` encodes the prompt whole). Returns False, doing nothing, when that needs more
        than `budget` tokens encoded (a document that is still growing)."""
        if self.defers:
            layout = self._compute_layout()
            kept = 0
            if self.policy is UpdatePolicy.PREFIX_REUSE:
                kept = common_prefix(self.tokens[: len(self.kv)], layout.tokens)
            if kept == len(layout.tokens) and kept in self._logits:
                self.layout = layout  # the same tokens; the caret (and so the healed text) may differ
                self._prepared = True
                return True
            kept = min(kept, len(layout.tokens) - 1)  # at least one token runs, for the logits
            need = len(layout.tokens) - kept
            if budget is not None and need > budget:
                return False
            self.kv.crop(kept)
            self._changed(kept)
            logits = self.kv.encode(layout.tokens[kept:], at=kept, logits="last")
            assert logits is not None
            self.layout, self.tokens, self.uids = layout, list(layout.tokens), list(layout.uids)
            self.exact_len = len(self.tokens)
            self._keep_logits(len(self.tokens), logits)
            self.counts.requests += len(layout.tokens) - kept
            self._prepared = True
            return True
        start, end = len(self.kv), self.layout.decode_at
        if end <= start:
            return True
        if budget is not None and end - start > budget:
            return False
        self._encode(start, end)
        self.counts.requests += end - start
        return True

    def prompt_logits(self) -> torch.Tensor:
        """Logits for the token after the prompt; runs the prompt's last token if they are not known."""
        if not (self.defers and self._prepared):
            self.prepare()
        p = self.layout.decode_at
        logits = self._logits.get(p)
        if logits is None:
            # the prompt's last token runs again in the gap, seeing the entries before it: a request
            # leaves the document's own entries exactly as they were
            visible = torch.ones(1, p + 1, dtype=torch.bool)
            visible[0, p - 1] = False
            logits = self.kv.prompt_view(p).encode_tree(self.tokens[p - 1 : p], [p - 1], visible)[0]
            self.counts.requests += 1
            self._keep_logits(p, logits)
        return logits

    @contextmanager
    def decoding(self) -> Iterator[tuple[KVCache, torch.Tensor]]:
        """A cache of the prompt to decode on, and the logits after it. The cache writes into the
        gap at the decode point, so the entries of the text after the caret are never touched."""
        logits = self.prompt_logits()
        yield self.kv.prompt_view(self.layout.decode_at), logits

    def refresh(self, max_tokens: int | None = None) -> int:
        """Re-encode up to `max_tokens` stale or missing positions exactly, from the first one that
        is not exact (so the text just after an edit comes first); returns how many were done."""
        total, exact = len(self.tokens), self.exact_len
        if exact >= total or self.defers:
            return 0
        end = total if max_tokens is None else min(total, exact + max_tokens)
        self._encode(exact, end)
        return end - exact

    def fork(self, policy: UpdatePolicy) -> LiveDocument:
        """A copy with its own cache and another update policy (for comparisons)."""
        other = copy.copy(self)
        other.doc = self.doc.copy()
        other.kv = self.kv.copy()
        other.kv.rope = self.engine.rope if policy is not UpdatePolicy.NO_ROTATION else None
        other.tokens, other.uids, other._logits = list(self.tokens), list(self.uids), dict(self._logits)
        other.counts = EncodeCounts()
        other._tree = None if self._tree is None else self._tree.copy()
        other.policy = policy
        return other

    def evict(self) -> None:
        """Drop the KV cache to free memory; it grows again at idle time or for a request."""
        self.kv = self._new_kv()
        self.exact_len, self._logits = 0, {}

    # -- internals --------------------------------------------------------------------

    def _new_kv(self) -> KVCache:
        return KVCache(self.engine.runner, rope=None if self.policy is UpdatePolicy.NO_ROTATION else self.engine.rope)

    def _head_tokens(self, context: str) -> list[int]:
        head = [self.engine.start]
        if context:
            head += context_tokens(self.engine.tokenizer, context, self.engine.markers)
        if len(head) > self.window // 2:
            raise ValueError(f"context is {len(head)} tokens; at most window/2 = {self.window // 2} allowed")
        return head

    def _encode(self, start: int, end: int) -> None:
        """Encode layout tokens [start, end) in place (start <= len(kv)); a short run keeps the logits
        after each of its tokens, which is what a request right after typing there reads."""
        tokens = self.tokens[start:end]
        rows = self.kv.encode(tokens, at=start, logits="all" if len(tokens) <= LOGITS_KEPT else "last")
        self._changed(start)
        if self.exact_len == start:  # attended to an exact prefix: exact too
            self.exact_len = end
        assert rows is not None
        if rows.dim() == 1:
            self._keep_logits(end, rows)
        else:
            for i, row in enumerate(rows):
                self._keep_logits(start + i + 1, row)

    def _keep_logits(self, prompt_len: int, logits: torch.Tensor) -> None:
        self._logits[prompt_len] = logits
        while len(self._logits) > LOGITS_KEPT:  # bounded: each row is a vocabulary of floats
            del self._logits[next(iter(self._logits))]

    def _changed(self, slot: int) -> None:
        """Entry `slot` changed: logits after any prompt that contains it are out of date."""
        for p in [p for p in self._logits if p > slot]:
            del self._logits[p]

    def _edit_document(self, edits: Sequence[TextEdit]) -> list[Splice]:
        """Apply edits front to back; return document splices, each in the indexing left by the previous ones."""
        splices: list[Splice] = []
        shift = 0
        for e in edits:
            s = self.doc.apply_edit(e.start + shift, e.end + shift, e.text)
            shift += len(e.text) - (e.end - e.start)
            if s.start == s.end and not s.tokens:
                continue
            splices.append(s)
        return splices

    def _edit_tree(self, edits: Sequence[TextEdit]) -> None:
        """Keep the syntax tree in step (incrementally), or start one when the text can have it again."""
        if not edits or not self.keeps_tree:
            return
        t0 = time.perf_counter()
        tree = self._tree
        self._start_tree(lambda: tree if tree is not None and tree.edit(edits) else DocTree.of(self.text))
        self.tree_seconds = time.perf_counter() - t0

    def _doc_runs(self) -> list[list[int]]:
        """[slot, first, end) for each stretch of document tokens the cache holds in order."""
        lay = self.layout
        runs = [[lay.prefix_base, lay.window_start, lay.window_end]]
        if self.fim is not None:
            runs.append([lay.suffix_base, lay.suffix_start, lay.suffix_end])
        return runs

    def _splice_doc(self, s: Splice, runs: list[list[int]]) -> int:
        """Patch the cache for one document splice that falls inside a run of it; the runs after it
        shift. A splice across a run's edge (and every one after it) is left to the relayout."""
        patched, encoded = False, 0
        for run in runs:
            slot, first, end = run
            if not patched and first <= s.start and s.end <= end:
                uids = tuple(self.doc.uids[s.start : s.start + len(s.tokens)])
                encoded = self._splice_layout(Splice(slot + s.start - first, slot + s.end - first, s.tokens), uids)
                run[2] += s.delta
                patched = True
            elif s.end <= first:
                run[0] += s.delta if patched else 0
                run[1] += s.delta
                run[2] += s.delta
            elif s.start < end:  # across this run's edge
                runs.clear()
                return 0
        return encoded

    def _splice_layout(self, s: Splice, uids: tuple[int, ...]) -> int:
        """PIE on one layout splice: the gap moves there, the new tokens are encoded into it, the
        entries after it lag by the delta. Returns tokens encoded."""
        n_kv = len(self.kv)
        complete = n_kv == len(self.tokens)
        self.tokens[s.start : s.end] = s.tokens
        self.uids[s.start : s.end] = uids
        if s.start > n_kv or (s.start == n_kv and not complete):  # after what is encoded: tokens only
            return 0
        if s.end > n_kv:  # across the encoded end: it ends at the splice
            self.kv.crop(s.start)
            self.exact_len = min(self.exact_len, s.start)
            self._changed(s.start)
            return 0
        self.kv.splice(s.start, s.end, len(s.tokens))
        self._changed(s.start)
        if self.exact_len >= s.start:
            self.exact_len = s.start
        if not s.tokens:
            return 0
        self._encode(s.start, s.start + len(s.tokens))
        return len(s.tokens)

    def _relayout(self, layout: Layout) -> int:
        """Make the cache hold `layout`: entries whose token it still shows move to their new slots
        (keys rotated, stale from the first moved one), new tokens are encoded. Returns tokens encoded."""
        if layout.uids == self.uids:
            self.layout = layout
            return 0
        n_kv = len(self.kv)
        where = {u: i for i, u in enumerate(self.uids[:n_kv])}
        unencoded = set(self.uids[n_kv:])
        src = [where.get(u, -1) for u in layout.uids]
        kept = 0
        while kept < min(len(src), n_kv) and src[kept] == kept and layout.tokens[kept] == self.tokens[kept]:
            kept += 1
        # The new cache covers layout [0, length): up to the first token not encoded before either.
        length = kept
        while length < len(src) and not (src[length] < 0 and layout.uids[length] in unencoded):
            length += 1
        moves: list[tuple[int, int, int]] = []
        fresh: list[tuple[int, int]] = []
        t = kept
        while t < length:
            u = t
            if src[t] < 0:
                while u < length and src[u] < 0:
                    u += 1
                fresh.append((t, u))
            else:
                while u < length and src[u] >= 0 and src[u] - src[t] == u - t:
                    u += 1
                moves.append((src[t], src[t] + u - t, t - src[t]))
            t = u
        self.kv.move(moves, length)
        self._changed(kept)
        self.layout, self.tokens, self.uids = layout, list(layout.tokens), list(layout.uids)
        self.exact_len = min(self.exact_len, kept)
        for lo, hi in fresh:
            self._encode(lo, hi)
        return sum(hi - lo for lo, hi in fresh)

    def _compute_layout(self) -> Layout:
        if self.fim is None and not self.defers:
            return self._document_layout()
        return self._prompt_layout()

    def _layout_at(self, window_start: int, window_end: int | None = None) -> Layout:
        return build_layout(
            self.doc,
            self.cursor,
            head=self._head,
            fim=self.fim,
            window_start=window_start,
            window_end=window_end,
            suffix_tokens=self.suffix_tokens,
        )

    def _document_layout(self) -> Layout:
        """The whole text when it fits the window; else a window holding the caret with at least
        half a window before it, moved only when the caret leaves that (so typing never moves it)."""
        total = len(self.doc.ids)
        room = self.window - len(self._head)
        if total <= room:
            self._window = (0, total)
            return self._layout_at(0, total)
        caret = healed_token(self.doc, self.cursor)
        first, end = self._window
        slack = room // 8
        fits = room - 2 * slack <= end - first <= room or (end == total and end - first <= room)
        if not (fits and first <= caret <= end and (first == 0 or caret - first >= room // 2)):
            end = min(total, max(caret + slack, room))
            first = self._char_start(end - room)
            self._window = (first, end)
        return self._layout_at(first, end)

    def _prompt_layout(self) -> Layout:
        """Layout for the current text and cursor, moving the window start only when the
        prompt leaves [window - window/4, window] so typing does not shift it every key."""
        layout = self._layout_at(self._window[0])
        slack = self.window // 8
        if len(layout.tokens) > self.window or (
            layout.window_start > 0 and len(layout.tokens) < self.window - 2 * slack
        ):
            target = self.window - slack
            layout = self._layout_at(self._char_start(max(0, layout.window_start + len(layout.tokens) - target)))
        self._window = (layout.window_start, layout.window_end)
        return layout

    def _char_start(self, w: int) -> int:
        """`w`, or the next token if w would start inside a character split over tokens."""
        while 0 < w < len(self.doc.ids) and self.doc.offsets[w - 1] == self.doc.offsets[w]:
            w += 1
        return w


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


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    p = 0
    while p < n and a[p] == b[p]:
        p += 1
    return p


def map_index(x: int, s: Splice, *, inside_to_end: bool) -> int:
    """Where document token index x lands after splice s (an index inside the replaced
    tokens goes to the start of the new ones, or their end)."""
    if x <= s.start:
        return x
    if x >= s.end:
        return x + s.delta
    return s.start + len(s.tokens) if inside_to_end else s.start


def fresh_layout(doc: LiveDocument) -> list[int]:
    """The tokens a document with this text, cursor and context must hold (the invariant above),
    from a fresh tokenization of its text and of its cross-file context (baselines: the prompt
    they will hold once a request has prepared it)."""
    document = doc.fim is None and not doc.defers
    return build_layout(
        TokenizedText(doc.engine.tokenizer, doc.text),
        doc.cursor,
        head=doc._head_tokens(doc.context),
        fim=doc.fim,
        window_start=doc.layout.window_start,
        window_end=doc.layout.window_end if document else None,
        suffix_tokens=doc.suffix_tokens,
    ).tokens


def tree_fresh(doc: LiveDocument) -> bool | None:
    """Whether the document's syntax tree is the tree of its text (and absent only where the text may
    have none); None when it keeps no tree."""
    if not doc.keeps_tree:
        return None
    tree = doc.syntax
    if tree is None:
        return reason_without(doc.text) is not None or not doc.keeps_tree
    return tree.text == doc.text and tree.equals_fresh_parse()


def kv_error(doc: LiveDocument) -> float:
    """Largest absolute difference between the document's KV and a full re-encode of its tokens."""
    ref = KVCache(doc.engine.runner)
    ref.encode(doc.tokens[: len(doc.kv)])
    keys, values = doc.kv.dense()
    ref_keys, ref_values = ref.dense()
    return max((keys - ref_keys).abs().max().item(), (values - ref_values).abs().max().item())


def kv_sample_error(doc: LiveDocument, entries: Sequence[int]) -> float:
    """Largest absolute difference, at ascending cache `entries`, between the first layer's keys and values
    and a fresh encode of their tokens at their positions. The first layer sees no context, so this holds
    for stale entries too: a cheap check that every entry holds its token rotated to its new position."""
    if not entries:
        return 0.0
    ref = KVCache(doc.engine.runner)
    alone = torch.eye(len(entries), dtype=torch.bool)  # each token sees only itself
    ref.encode_tree([doc.tokens[e] for e in entries], list(entries), alone)
    keys, values = doc.kv.layer_entries(0, entries)
    ref_keys, ref_values = ref.dense()
    return max((keys - ref_keys[0]).abs().max().item(), (values - ref_values[0]).abs().max().item())
