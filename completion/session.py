"""The engine session: open documents, their live caches, the project, the monitors and the drafter,
answering `complete` / `popup` at an offset with finished answers. No LSP and no threads of its own.

The server's worker calls it on one thread and only schedules (queue, versions, cancellation, idle
time); `livekv complete`, `livekv demo` and the benchmarks call the same methods, so what they
measure is what the server does with the same settings.

Crash safety: a failure half-way through an update of a document's cache (an edit, a cursor move, a
background step) may leave its tokens, KV and text out of step, so that document's cache is dropped
and rebuilt whole from its text at the next request (`_updating`). The error still propagates: the
caller reports it. Decoding needs no such care: it crops what it appended even when it fails.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from completion.decoding.decode import Processor, TokenHealing
from completion.decoding.stops import block_wanted
from completion.decoding.suggest import CompletionOptions, Draft, PopupItem, inline, partial_word_start, popup
from completion.decoding.superposed import SuperposedConfig
from completion.drafting.drafter import Drafter
from completion.drafting.ngrams import NgramModel
from completion.live.document import (
    LiveDocument,
    TextEdit,
    UpdatePolicy,
    fresh_layout,
    kv_error,
    kv_sample_error,
    tree_fresh,
)
from completion.live.layout import context_tokens
from completion.live.store import DocumentStore
from completion.model.engine import Engine
from completion.model.loading import ModelLoadError, load_model
from completion.model.vocab import Vocabulary
from completion.project.snippets import Style
from completion.project.workspace import Workspace, fs_path
from completion.settings import Settings
from monitors.base import MonitorStats, Site
from monitors.chain import MonitorConfig, Monitors
from monitors.syntax import complete_statements

log = logging.getLogger(__name__)
REFRESH_CHUNK = 32  # stale or missing tokens encoded per background step (~100 ms on 2 CPU cores)
# A request encodes at most this many missing tokens of a document still growing (just opened, or
# evicted); past that it is answered from a short preview: the last PREVIEW_TOKENS before the caret.
FIRST_ANSWER_TOKENS = 256
PREVIEW_TOKENS = 256
CONTEXT_STEP_CHARS = 300  # cross-file context grows by about this much per background step
QUERY_LINES = 30  # lines above the cursor that pick the cross-file snippets
SELECTED_MAX_CHARS = 200  # healing costs a lookup per character per step: a popup item is a name, not a file
OnFault = Callable[[str, Exception], None]  # (where, the error)


@dataclass(frozen=True)
class Selected:
    """The popup item the editor has selected (VS Code's `selectedCompletionInfo`), in offsets."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class InlineItem:
    """One suggestion, ready to send: it replaces the text from `start` to the request's offset."""

    start: int
    text: str


@dataclass(frozen=True)
class Answer:
    items: list[InlineItem]
    drafts: list[Draft]  # how each was decoded (tokens, passes, timings)
    seconds: float  # request start -> items ready
    first_token_seconds: float | None  # request start -> first token chosen
    monitor_stats: MonitorStats = field(default_factory=MonitorStats)  # what the monitors did (jedi asked, ready)


class EngineSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.vocab: Vocabulary | None = None
        self.monitors: Monitors | None = None
        self.drafter: Drafter | None = None
        self.ngrams: NgramModel | None = None  # the project's n-grams, for superposed drafts
        self.model_name: str | None = None
        self.load_error: str | None = None
        self.workspace = Workspace()
        self.context_style: Style = "comments"  # how cross-file snippets are rendered (set with the model)
        self.store = DocumentStore(settings.memory_budget_mb << 20)
        # Documents whose cache a fault (or a setting) dropped: their newest text, opened again at the next request.
        self.unencoded: dict[str, str] = {}
        # Short caches at the caret of documents still growing: what their first answers decode on.
        self.previews: dict[str, LiveDocument] = {}
        self.changes: dict[str, int] = {}  # per document, a count of its changes: names a text for caches
        self.last_answer: Answer | None = None
        # Stale or missing tokens one idle step encodes; None: all of them in one step (a benchmark of what a
        # settled document answers, where the server's short steps would only make it slower to get there).
        self.refresh_chunk: int | None = REFRESH_CHUNK

    # -- the model --------------------------------------------------------------------------

    def load(self, on_fault: OnFault | None = None) -> None:
        """Load the model; a failure is kept in `load_error` (completions are then off)."""
        s = self.settings
        try:
            loaded = load_model(s.model_path, threads=s.threads)
            self.engine = Engine.from_loaded(loaded, s.weights, s.device)
        except ModelLoadError as err:  # its message names the path
            self.load_error = str(err)
            log.error("model not loaded: %s", err)
            return
        except Exception as err:  # a corrupt model folder fails in the loaders' own ways (safetensors, config checks)
            source = s.model_path or "the embedded model"
            self.load_error = f"could not load the model from {source}: {type(err).__name__}: {err}"
            log.error("model not loaded: %s", self.load_error, exc_info=err)
            return
        self.use_engine(self.engine, name=f"{loaded.name} {self.engine.runner.weight_format}", on_fault=on_fault)
        log.info("model %s ready (PIE %s)", loaded.name, "on" if self.engine.rope else self.engine.pie_refusal)

    def use_engine(self, engine: Engine, name: str, on_fault: OnFault | None = None) -> None:
        """Everything that needs the tokenizer: vocabulary, project token store, drafter, monitors."""
        self.engine, self.model_name = engine, name
        self.vocab = Vocabulary(engine.tokenizer, engine.runner.vocab_size)
        self.context_style = "markers" if engine.markers else "comments"
        self.workspace.use_tokenizer(engine.tokenizer)
        assert self.workspace.tokens is not None
        self.drafter = Drafter(self.workspace.tokens.store)
        self.ngrams = NgramModel(self.workspace.tokens.store)
        self.monitors = Monitors(self.vocab, self.settings.environment_path)
        if on_fault is not None:
            self.monitors.analyzer.on_error = lambda err: on_fault("jedi", err)
        self.monitors.analyzer.warm_up()  # jedi loads its builtins stubs on its own thread meanwhile

    def shutdown(self) -> None:
        if self.monitors is not None:
            self.monitors.shutdown()

    def apply_settings(self, settings: Settings) -> None:
        """New settings, in force at once: the memory budget is enforced, documents whose window or update
        policy changed are re-opened; the others are read at each use (see RESTART_SETTINGS for the rest)."""
        old, self.settings = self.settings, settings
        self.store.budget_bytes = settings.memory_budget_mb << 20
        self.store.enforce_budget()
        if (old.context_tokens, old.update_policy) != (settings.context_tokens, settings.update_policy):
            for uri in self.store.uris():
                self.unencoded[uri] = self.store.get(uri).text
                self.store.close(uri)
            self.previews.clear()
        if old.environment_path != settings.environment_path and self.monitors is not None:
            self.monitors.analyzer.use_environment(settings.environment_path)
        if old.syntax_tree != settings.syntax_tree:
            for doc in self.store.documents() + list(self.previews.values()):
                doc.keep_tree(settings.syntax_tree)

    # -- documents --------------------------------------------------------------------------

    def cacheable(self, text: str) -> str | None:
        """Why a document gets no cache (too large or binary), or None."""
        if len(text.encode("utf-8", "surrogatepass")) > self.settings.max_file_bytes:
            return f"larger than maxFileBytes ({self.settings.max_file_bytes})"
        if "\x00" in text:
            return "binary content"
        return None

    def open(self, uri: str, text: str) -> None:
        self.unencoded.pop(uri, None)
        self.changes[uri] = self.changes.get(uri, 0) + 1
        reason = self.cacheable(text)
        self.workspace.queue_document(uri, None if reason else text)
        if reason:
            log.info("%s not cached: %s", uri, reason)
            self.store.close(uri)
            return
        if self.engine is None:
            return
        self.previews.pop(uri, None)
        with self._updating(uri, text):
            # Nothing is encoded yet: the first request encodes what its caret needs (or answers from a
            # preview) and the cache grows at idle time, so opening a file never waits for all of it.
            doc = LiveDocument(
                self.engine,
                text,
                window=self.settings.context_tokens,
                policy=UpdatePolicy(self.settings.update_policy),
                encode=False,
                syntax_tree=self.settings.syntax_tree,
            )
        self.store.add(uri, doc)

    def change(self, uri: str, edits: list[TextEdit], text_after: str) -> None:
        """Apply one change; `text_after` is the client's text after it (checked, never trusted blindly)."""
        if self.cacheable(text_after) is not None or (uri not in self.store and uri not in self.unencoded):
            self.open(uri, text_after)  # says why and drops the cache, or opens an unknown document
            return
        self.changes[uri] += 1
        self.workspace.queue_document(uri, text_after)
        if uri in self.unencoded:
            self.unencoded[uri] = text_after
            return
        doc = self.store.get(uri)
        # The caret stays where the last request put it (typing at it carries it along): an edit
        # elsewhere is a splice of the whole-document cache, and coming back costs nothing.
        with self._updating(uri, text_after):
            doc.apply_edits(edits)
            if (preview := self.previews.get(uri)) is not None:
                preview.apply_edits(edits)
        if doc.text != text_after:  # cannot happen unless a bug: resynchronise rather than drift
            log.error("cache text drifted from the client's for %s; re-opening", uri)
            self.open(uri, text_after)
            return
        if self.monitors is not None:  # jedi starts on what the caret's trigger needs before the request comes
            # without the tree: reading it would reparse on every keystroke (the reparse waits for a request)
            self.monitors.prefetch(self._site(uri, doc, with_tree=False), self._monitor_config())

    def close(self, uri: str) -> None:
        self.store.close(uri)
        self.previews.pop(uri, None)
        self.unencoded.pop(uri, None)
        self.changes.pop(uri, None)
        self.workspace.queue_document(uri, None)

    def text_of(self, uri: str) -> str | None:
        if uri in self.unencoded:
            return self.unencoded[uri]
        return self.store.get(uri).text if uri in self.store else None

    def cache_state(self, uri: str) -> dict[str, object]:
        """The document's cache in numbers (`livekv/documentState`): tokens held, missing and stale,
        the decode point, and the tokens run through the model for it so far, by cause."""
        if uri not in self.store:
            return {"cachedTokens": 0}
        doc = self.store.get(uri)
        preview = self.previews.get(uri)
        return {
            "cachedTokens": len(doc.kv),
            "layoutTokens": len(doc.tokens),
            "missingTokens": doc.missing,
            "staleTokens": doc.stale,
            "decodeAt": doc.layout.decode_at,
            "updatePolicy": str(doc.policy),
            "encoded": asdict(doc.counts),
            "syntaxTree": doc.has_tree,
            "treeEditMs": round(1000 * doc.tree_seconds, 3),  # the last edit's tree upkeep (positions only)
            "treeParseMs": round(1000 * doc.parse_seconds, 3),  # the last reparse (when the tree was read)
            "previewEncoded": asdict(preview.counts) if preview is not None else None,
        }

    def check_cache(self, uri: str) -> dict[str, object]:
        """The live cache's invariant (DESIGN.md): whether the document's cached tokens are fresh, then
        (after re-encoding its stale positions, as the idle refresh would) the largest difference from a
        full re-encode of the tokens it holds (a document still growing is not grown). A document without KV
        (evicted, uncached, unknown) has nothing to check."""
        if uri not in self.store or uri in self.unencoded or not len(self.store.get(uri).kv):
            evicted = uri in self.store and uri not in self.unencoded
            return {"evicted": evicted, "tokensFresh": None, "kvMaxError": None, "staleBefore": 0}
        t0 = time.perf_counter()
        doc = self.store.get(uri)
        doc.prepare()  # the baselines hold their last prompt until a request prepares the next
        fresh = doc.tokens == fresh_layout(doc)
        tree = tree_fresh(doc)
        stale = doc.stale
        if stale:
            doc.refresh(stale)  # the stale entries only: the check compares what the cache holds, growing nothing
        return {
            "evicted": False,
            "tokensFresh": fresh,
            "treeFresh": tree,
            "kvMaxError": kv_error(doc),
            "staleBefore": stale,
            "checkMs": round(1000 * (time.perf_counter() - t0), 1),
        }

    def check_positions(self, uri: str, count: int, seed: int = 0) -> dict[str, object]:
        """The cheap check of the live cache, without refreshing it: at `count` cache entries drawn with
        `seed`, the first layer's KV against a fresh encode of their tokens at their positions
        (`kv_sample_error`). Nothing to compare without KV."""
        if uri not in self.store or uri in self.unencoded or not len(self.store.get(uri).kv):
            return {"sampledEntries": 0, "sampleMaxError": None}
        t0 = time.perf_counter()
        doc = self.store.get(uri)
        entries = sorted(random.Random(seed).sample(range(len(doc.kv)), min(count, len(doc.kv))))
        return {
            "sampledEntries": len(entries),
            "sampleMaxError": kv_sample_error(doc, entries),
            "sampleMs": round(1000 * (time.perf_counter() - t0), 1),
        }

    # -- requests ---------------------------------------------------------------------------

    def complete(
        self,
        uri: str,
        offset: int,
        *,
        selected: Selected | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Answer | None:
        """Inline suggestions at `offset`, each replacing the partial word before it; None if the document
        is unknown or uncached, or `should_stop()` said so."""
        t0 = time.perf_counter()
        doc = self._ready(uri, offset)
        if doc is None or self.vocab is None or (should_stop is not None and should_stop()):
            return None
        s = self.settings
        multiline = block_wanted(doc.text, offset, doc.syntax) if s.multiline == "auto" else bool(s.multiline)
        options = CompletionOptions(
            max_tokens=s.max_tokens,
            multiline=multiline,
            drafts=s.drafts,
            time_budget=s.time_budget_ms / 1000,
            draft_method=s.draft_method,
            superposed=SuperposedConfig(alpha=s.ngram_weight),
        )
        t1 = time.perf_counter()
        stats = MonitorStats()
        site = self._site(uri, doc)
        processors = self._monitors(site, stats)
        start = partial_word_start(doc.text, offset)
        partial = doc.text[start:offset]
        if rest := selected_rest(selected, start, offset, partial):  # heal through the item, then decode freely
            processors = [TokenHealing(self.vocab, doc.heal + rest), *processors]
        drafts = inline(
            doc,
            self.vocab,
            options,
            processors=processors,
            should_stop=should_stop,
            drafter=self.drafter if s.drafting else None,
            ngrams=self.ngrams,
        )
        if should_stop is not None and should_stop():
            return None
        if multiline and s.monitor_syntax:  # multi-line suggestions end on a complete statement
            drafts = [d for d in (replace(d, text=complete_statements(d.text, site)) for d in drafts) if d.text]
        first = (t1 - t0) + drafts[0].first_token_seconds if drafts else None
        items = [InlineItem(start, partial + d.text) for d in drafts]
        answer = Answer(items, drafts, time.perf_counter() - t0, first, stats)
        log_answer(uri, t1 - t0, drafts, stats)
        self.last_answer = answer
        return answer

    def popup(self, uri: str, offset: int, *, should_stop: Callable[[], bool] | None = None) -> list[PopupItem] | None:
        """Identifier items for the completion menu at `offset`, best first (None: as for `complete`)."""
        if self.settings.popup_items == 0:
            return None
        doc = self._ready(uri, offset)
        if doc is None or self.vocab is None:
            return None
        items = popup(
            doc,
            self.vocab,
            width=self.settings.popup_items,
            processors=self._monitors(self._site(uri, doc), MonitorStats()),
            should_stop=should_stop,
        )
        return None if should_stop is not None and should_stop() else items

    def warm(self, uri: str, offset: int) -> int:
        """Encode all that a request at `offset` reads, as idle time would: a one-off answer (the CLI)
        decodes on the whole text before the caret, not on a preview. Returns the prompt's tokens."""
        if uri not in self.store:
            return 0
        doc = self.store.get(uri)
        with self._updating(uri, doc.text):
            doc.move_cursor(offset)
            doc.prepare()
        return len(doc.prompt)

    def _ready(self, uri: str, offset: int) -> LiveDocument | None:
        """The cache to decode on at `offset` (the document's, or while it is still growing and far from
        the caret, its preview), or None if unknown or uncached."""
        if self.engine is None:
            return None
        if uri in self.unencoded:
            self.open(uri, self.unencoded[uri])
        if uri not in self.store:  # unknown, or too large or binary
            return None
        doc = self.store.get(uri)
        if not 0 <= offset <= len(doc.text):
            raise ValueError(f"offset {offset} is outside {uri} (0..{len(doc.text)})")
        with self._updating(uri, doc.text):
            doc.move_cursor(offset)
            if doc.prepare(budget=None if doc.defers else FIRST_ANSWER_TOKENS):  # a baseline does all it needs
                self.previews.pop(uri, None)
                return doc
            preview = self.previews.get(uri)
            if preview is None:
                preview = LiveDocument(
                    self.engine,
                    doc.text,
                    cursor=offset,
                    window=PREVIEW_TOKENS,
                    policy=UpdatePolicy.PREFIX_REUSE,
                    encode=False,
                    syntax_tree=self.settings.syntax_tree,
                )
                self.previews[uri] = preview
            preview.move_cursor(offset)
            preview.prepare()
        return preview

    def _site(self, uri: str, doc: LiveDocument, *, with_tree: bool = True) -> Site:
        path = fs_path(uri)
        root = self.workspace.root_of(path)
        key = (uri, self.changes.get(uri), doc.cursor)
        return Site(doc.text, doc.cursor, doc.heal, path, root, key=key, tree=doc.syntax if with_tree else None)

    def _monitors(self, site: Site, stats: MonitorStats) -> list[Processor]:
        """The monitors for a suggestion at the site, as the settings ask."""
        if self.monitors is None:
            return []
        return self.monitors.for_site(site, self._monitor_config(), stats)

    def _monitor_config(self) -> MonitorConfig:
        s = self.settings
        return MonitorConfig(
            members=s.monitor_members,
            imports=s.monitor_imports,
            keywords=s.monitor_keywords,
            syntax=s.monitor_syntax,
            whole_names=s.monitor_whole_names,
            jedi_timeout=s.jedi_timeout_ms / 1000,
        )

    # -- idle time --------------------------------------------------------------------------

    def background_step(self) -> bool:
        """One short step of idle-time work on the most recently used document: move its cross-file context
        one step, else encode missing or stale entries; False when there is nothing left to do.

        The context first: a change at the head leaves every document entry after it stale, so entries
        re-encoded before the context is complete would be re-encoded again (a 4k-token document is ~20 s
        of steps each time)."""
        recent = self.store.most_recent()
        if recent is None or self.engine is None:
            return False
        uri, doc = recent
        if doc.catch_up_tree():  # the syntax tree first: a parse costs well under a refresh chunk
            return True
        with self._updating(uri, doc.text):
            if self._step_context(uri, doc):
                more = True
            else:
                grown = doc.refresh(self.refresh_chunk)
                doc.counts.refresh += grown
                more = grown > 0
        if not doc.missing:
            self.previews.pop(uri, None)
        return more

    def _step_context(self, uri: str, doc: LiveDocument) -> bool:
        """Move the document's cross-file context one step towards the best snippets; False if it is there.

        A whole new context would cost one long forward pass; growing it in steps keeps every
        step short, and each intermediate prompt is a valid one (the snippets cut at a line end).
        """
        target = self.context_for(uri, doc)
        if doc.context == target:
            return False
        if not target.startswith(doc.context):
            doc.set_context("")  # dropping the old context is a deletion: rotation only
            return True
        cut = target.find("\n", len(doc.context) + CONTEXT_STEP_CHARS)
        doc.set_context(target if cut < 0 else target[: cut + 1])
        return True

    def context_for(self, uri: str, doc: LiveDocument) -> str:
        """The cross-file snippets for the document at its caret (those near the caret pick them)."""
        budget = self.settings.cross_file_chars
        if budget == 0:
            return ""
        text, c = doc.text, doc.cursor
        self.workspace.snippets_of(uri, text)  # this file's snippets serve the other open files
        start = c
        for _ in range(QUERY_LINES):
            start = text.rfind("\n", 0, start)
            if start < 0:
                break
        query = text[max(0, start) : text.find("\n", c) if "\n" in text[c:] else len(text)]
        tree = doc.syntax
        path = fs_path(uri)
        root = self.workspace.root_of(path)
        first = list(dict.fromkeys(tree.signature_names(c) + tree.used_names(c))) if tree is not None else []
        repo = Path(root).name if root else ""
        relative = os.path.relpath(path, root) if path and root else uri.rsplit("/", 1)[-1]
        limit = doc.window // 4  # tokens the context may take
        for _ in range(2):  # a context over the limit is rendered again in proportionally fewer characters
            context = self.workspace.snippets.render(
                query, exclude=uri, budget_chars=budget, first=first, style=self.context_style, repo=repo, path=relative
            )
            used = len(context_tokens(doc.engine.tokenizer, context, doc.engine.markers))
            if used < limit:
                return context
            budget = len(context) * (limit - 1) // used
        return ""

    def warm_ngrams(self) -> None:
        """Count the changed shards' n-grams (on the indexing thread, not at the next request) when they are used."""
        s = self.settings
        if self.ngrams is not None and s.drafts > 1 and s.draft_method == "superposed" and s.ngram_weight > 0:
            self.ngrams.warm()

    @contextmanager
    def _updating(self, uri: str, text: str) -> Iterator[None]:
        """Around an update of a document's cache: if it fails, the cache is dropped and the
        document re-encoded whole from `text` (its text after the update) at the next request."""
        try:
            yield
        except Exception:
            self.store.close(uri)
            self.previews.pop(uri, None)
            self.unencoded[uri] = text
            raise


def selected_rest(selected: Selected | None, start: int, offset: int, partial: str) -> str:
    """What the selected popup item adds to the partial word, when it replaces exactly that word;
    "" when nothing is selected, the item replaces other text, spans lines or is oversized (then
    it is not followed)."""
    if selected is None or (selected.start, selected.end) != (start, offset) or not selected.text.startswith(partial):
        return ""
    rest = selected.text[len(partial) :]
    return rest if len(rest) <= SELECTED_MAX_CHARS and "\n" not in rest else ""


def log_answer(uri: str, ready_seconds: float, drafts: list[Draft], stats: MonitorStats) -> None:
    log.info(
        "completion for %s: cursor update %.0f ms, then %s",
        uri,
        1000 * ready_seconds,
        ", ".join(
            f"first token {1000 * d.first_token_seconds:.0f} ms, {1000 * d.seconds:.0f} ms, "
            f"{d.tokens} tokens in {d.passes} passes"
            for d in drafts
        ),
    )
    if stats.steps:
        log.info(
            "monitors: %.1f ms over %d steps, %d jedi calls (%d ready, %d resolved, %d late, %.0f ms waited), "
            "%d repairs",
            1000 * stats.seconds,
            stats.steps,
            stats.triggers,
            stats.ready,
            stats.resolved,
            stats.timeouts,
            1000 * stats.analyzer_seconds,
            stats.repairs,
        )
