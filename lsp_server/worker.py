"""The model worker: one thread that owns the engine and every document's live cache.

All operations run on that thread in the order they were submitted, so a change always
reaches the cache before the completion request that follows it. The event loop only
records the newest version of each document; a completion polls it (and its request's
cancel flag) between tokens and stops as soon as it is superseded, so nothing computed
for an old version is ever returned.

When no request is queued for a while, the worker does background work in short steps,
each re-checking the queue, so a request never waits for more than one step: it moves the
cross-file context of the document in use towards the current best snippets, then
re-encodes stale cache positions exactly (PIE leaves them stale after an edit).

Crash safety: an exception in a job (a model that runs out of memory, a bug) is passed to
`on_fault` (the server logs it and tells the user once per kind) and the job's answer is None,
so a request gets an empty result and the thread goes on. A failure half-way through an
update of a document's cache (an edit, a cursor move, a background step) may leave its tokens,
KV and text out of step, so that document's cache is dropped and rebuilt whole from its text
at the next request. Decoding needs no such care: it crops what it appended even when it fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from completion.decoding.decode import Processor, TokenHealing
from completion.decoding.suggest import CompletionOptions, Draft, PopupItem, inline, popup
from completion.decoding.superposed import SuperposedConfig
from completion.drafting.drafter import Drafter
from completion.drafting.ngrams import NgramModel
from completion.live.document import LiveDocument, TextEdit, UpdatePolicy
from completion.live.store import DocumentStore
from completion.model.engine import Engine
from completion.model.loading import ModelLoadError, load_model
from completion.model.vocab import Vocabulary
from completion.project.snippets import SnippetIndex
from completion.project.token_store import IndexReport, ProjectIndex
from lsp_server.settings import Settings
from monitors.base import MonitorStats, Site
from monitors.chain import MonitorConfig, Monitors
from monitors.syntax import complete_statements

log = logging.getLogger(__name__)
T = TypeVar("T")
REFRESH_CHUNK = 32  # stale or missing tokens encoded per background step (~100 ms on 2 CPU cores)
# A request encodes at most this many missing tokens of a document still growing (just opened, or
# evicted); past that it is answered from a short preview: the last PREVIEW_TOKENS before the caret.
FIRST_ANSWER_TOKENS = 256
PREVIEW_TOKENS = 256
CONTEXT_STEP_CHARS = 300  # cross-file context grows by about this much per background step
QUERY_LINES = 30  # lines above the cursor that pick the cross-file snippets
OnFault = Callable[[str, Exception], None]  # (where, the error): called on the thread where it happened


def log_fault(where: str, err: Exception) -> None:
    """The default `on_fault` (a worker without a server: the CLI, benchmarks, tests): log it."""
    log.error("%s failed", where, exc_info=err)


@dataclass
class Request:
    """One completion request: where, for which version, and a flag the event loop sets on $/cancelRequest."""

    uri: str
    version: int
    offset: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    starts_with: str = ""  # text the suggestion must begin with (the rest of a popup item the editor selected)


@dataclass(frozen=True)
class Answer:
    drafts: list[Draft]
    seconds: float  # request start on the worker -> drafts ready
    first_token_seconds: float | None  # request start on the worker -> first token chosen


class ModelWorker:
    def __init__(self, settings: Settings, on_fault: OnFault = log_fault) -> None:
        self.settings = settings
        self.on_fault = on_fault
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livekv-model")
        self._lock = threading.Lock()
        self._pending = 0  # submitted jobs not finished yet
        self._timer: threading.Timer | None = None
        self._background = False  # a background step is queued or running
        self._closed = False
        self.engine: Engine | None = None
        self.vocab: Vocabulary | None = None
        self.monitors: Monitors | None = None
        self.roots: list[str] = []  # workspace folders: jedi's projects
        self.model_name: str | None = None
        self.load_error: str | None = None
        self.store = DocumentStore(settings.memory_budget_mb << 20)
        self.index = SnippetIndex()
        self.project: ProjectIndex | None = None  # token ids for drafting, once the tokenizer is loaded
        self.drafter: Drafter | None = None
        self.ngrams: NgramModel | None = None  # the project's n-grams, for superposed drafts
        self._indexer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livekv-index")
        self._to_index: dict[str, str] = {}  # open documents' newest text, not yet in the project index
        self._indexed: dict[str, str] = {}  # the text last indexed per open document
        self.latest: dict[str, int] = {}  # newest version per document, written by the event loop
        # Documents whose cache a fault dropped: their newest text, opened again at the next request.
        self.unencoded: dict[str, str] = {}
        # Short caches at the caret of documents still growing: what their first answers decode on.
        self.previews: dict[str, LiveDocument] = {}
        self.last_answer: Answer | None = None
        self.background_steps = 0

    # -- called from the event loop ----------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            self._pending += 1
        future = self._pool.submit(self._run, fn, *args)
        future.add_done_callback(self._dropped)
        return future

    def _dropped(self, future: Future[Any]) -> None:
        """A job cancelled while queued ($/cancelRequest) never runs `_run`: count it out here."""
        if future.cancelled():
            self._finished()

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._indexer.shutdown(wait=False, cancel_futures=True)
        if self.monitors is not None:
            self.monitors.shutdown()

    def index_folder(self, root: str) -> int:
        """Read the workspace's .py files into the snippet index (runs on its own thread: no model work)."""
        return self.index.index_folder(root, should_stop=lambda: self._closed)

    # -- the project index for drafting: its own thread, never the model's ----------------

    def index_project(self, root: str) -> Future[IndexReport | None]:
        """Tokenize the folder's .py files into the project index (after the model has loaded)."""

        def run() -> IndexReport | None:
            if self.project is None:
                return None
            report = self.project.index_folder(root, should_stop=lambda: self._closed)
            self._warm_ngrams()
            log.info(
                "project index: %d files of %s, %d tokens in %.1f s, %.1f MB",
                report.files,
                root,
                report.tokens,
                report.seconds,
                report.nbytes / 2**20,
            )
            return report

        return self._on_indexer(run)

    def files_changed(self, paths: list[str]) -> Future[int | None]:
        """Files created, changed or deleted on disk (`workspace/didChangeWatchedFiles`)."""
        project, roots = self.project, list(self.roots)
        return self._on_indexer(lambda: 0 if project is None else project.files_changed(paths, roots))

    def _on_indexer(self, fn: Callable[[], T]) -> Future[T | None]:
        """`fn()` on the indexing thread; an exception is a fault (as on the model thread), the answer None."""

        def run() -> T | None:
            try:
                return fn()
            except Exception as err:
                self.on_fault("the project indexer", err)
                return None

        return self._indexer.submit(run)

    def _queue_for_index(self, uri: str, text: str | None) -> None:
        """Record an open document's text (None: closed) and have the indexer take the newest."""
        with self._lock:
            first = not self._to_index
            self._to_index[uri] = text
        if first and not self._closed:
            self._on_indexer(self._index_documents)

    def _index_documents(self) -> None:
        with self._lock:
            todo, self._to_index = self._to_index, {}
        if self.project is None:
            return
        for uri, text in todo.items():
            key = fs_path(uri) or uri
            if text is None:
                self.project.document_closed(key, self.roots)
            else:
                self.project.update_document(key, text)
        self._warm_ngrams()

    def _warm_ngrams(self) -> None:
        """Count the changed shards' n-grams here, on the indexing thread, not at the next request."""
        s = self.settings
        if self.ngrams is not None and s.drafts > 1 and s.draft_method == "superposed" and SuperposedConfig().alpha > 0:
            self.ngrams.warm()

    # -- everything below runs on the worker thread ------------------------------------

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as err:  # the crash-safety boundary: reported (never silent), the job answers None
            self.on_fault(f"the model worker ({fn.__name__})", err)
            return None
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1
            idle = self._pending == 0
        if idle:
            self._arm_background()

    def _arm_background(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closed or self.engine is None:
            return
        self._timer = threading.Timer(self.settings.idle_refresh_ms / 1000, self._start_background)
        self._timer.daemon = True
        self._timer.start()

    def _start_background(self) -> None:
        with self._lock:  # under the lock: shutdown() cannot slip in before the submit
            if self._closed or self._pending or self._background:
                return
            self._background = True  # one chain of steps at a time
            self._pool.submit(self._background_step)

    def _background_step(self) -> None:
        """One short step of background work; queues the next while nothing else is waiting."""
        more = False
        try:
            recent = self.store.most_recent()
            if recent is not None and self.engine is not None and not self._pending and not self._closed:
                uri, doc = recent
                with self._updating(uri, doc.text):
                    grown = doc.refresh(REFRESH_CHUNK)
                    doc.counts.refresh += grown
                    more = grown > 0 or self._step_context(uri, doc)
                if not doc.missing:
                    self.previews.pop(uri, None)
                self.background_steps += 1
        except Exception as err:  # as in `_run`; the chain starts again after the next job
            self.on_fault("the model worker (background step)", err)
        finally:
            with self._lock:
                more = more and not self._pending and not self._closed
                self._background = more
                if more:
                    self._pool.submit(self._background_step)

    def _step_context(self, uri: str, doc: LiveDocument) -> bool:
        """Move the document's cross-file context one step towards the best snippets; False if it is there.

        A whole new context would cost one long forward pass; growing it in steps keeps every
        step short, and each intermediate prompt is a valid one (the snippets cut at a line end).
        """
        target = self._context_for(uri, doc)
        if doc.context == target:
            return False
        if not target.startswith(doc.context):
            doc.set_context("")  # dropping the old context is a deletion: rotation only
            return True
        cut = target.find("\n", len(doc.context) + CONTEXT_STEP_CHARS)
        doc.set_context(target if cut < 0 else target[: cut + 1])
        return True

    def _context_for(self, uri: str, doc: LiveDocument) -> str:
        budget = self.settings.cross_file_chars
        if budget == 0:
            return ""
        text, c = doc.text, doc.cursor
        if self._indexed.get(uri) is not text:
            self.index.update(uri, text)  # this file's snippets serve the other open files
            self._indexed[uri] = text
        start = c
        for _ in range(QUERY_LINES):
            start = text.rfind("\n", 0, start)
            if start < 0:
                break
        query = text[max(0, start) : text.find("\n", c) if "\n" in text[c:] else len(text)]
        context = self.index.render(query, exclude=uri, budget_chars=budget)
        tokens = doc.engine.tokenizer(context, split_special_tokens=True).input_ids
        return context if len(tokens) < doc.window // 4 else ""

    def load(self) -> None:
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
        self.vocab = Vocabulary(self.engine.tokenizer, self.engine.runner.vocab_size)
        self.project = ProjectIndex(self.engine.tokenizer)
        self.drafter = Drafter(self.project.store)
        self.ngrams = NgramModel(self.project.store)
        self.monitors = Monitors(self.vocab)
        self.monitors.analyzer.on_error = lambda err: self.on_fault("jedi", err)
        self.monitors.analyzer.warm_up()  # jedi loads its builtins stubs on its own thread meanwhile
        self.model_name = f"{loaded.name} {s.weights}"
        log.info("model %s ready (PIE %s)", loaded.name, "on" if self.engine.rope else self.engine.pie_refusal)

    def cacheable(self, text: str) -> str | None:
        """Why a document gets no cache (too large or binary), or None."""
        if len(text.encode("utf-8", "surrogatepass")) > self.settings.max_file_bytes:
            return f"larger than maxFileBytes ({self.settings.max_file_bytes})"
        if "\x00" in text:
            return "binary content"
        return None

    def open(self, uri: str, text: str) -> None:
        self.unencoded.pop(uri, None)
        reason = self.cacheable(text)
        self._queue_for_index(uri, None if reason else text)
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
            )
        self.store.add(uri, doc)

    def change(self, uri: str, edits: list[TextEdit], text_after: str) -> None:
        """Apply one change; `text_after` is the client's text after it (checked, never trusted blindly)."""
        reason = self.cacheable(text_after)
        self._queue_for_index(uri, None if reason else text_after)
        if reason is not None:
            self.open(uri, text_after)  # says why and drops the cache
            return
        if uri in self.unencoded:
            self.unencoded[uri] = text_after
            return
        if uri not in self.store:
            self.open(uri, text_after)
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
            "previewEncoded": asdict(preview.counts) if preview is not None else None,
        }

    def close(self, uri: str) -> None:
        self.store.close(uri)
        self.previews.pop(uri, None)
        self.unencoded.pop(uri, None)
        self._indexed.pop(uri, None)
        self._queue_for_index(uri, None)

    def _ready(self, req: Request) -> LiveDocument | None:
        """The cache to decode on at the request's cursor (the document's, or while it is still
        growing and far from the caret, its preview), or None if unknown, uncached or superseded."""
        if self.engine is None or self._superseded(req):
            return None
        if req.uri in self.unencoded:
            self.open(req.uri, self.unencoded[req.uri])
        if req.uri not in self.store:  # unknown, or too large or binary
            return None
        doc = self.store.get(req.uri)
        with self._updating(req.uri, doc.text):
            doc.move_cursor(req.offset)
            if doc.prepare(budget=None if doc.defers else FIRST_ANSWER_TOKENS):  # a baseline does all it needs
                self.previews.pop(req.uri, None)
                return doc
            preview = self.previews.get(req.uri)
            if preview is None:
                preview = LiveDocument(
                    self.engine,
                    doc.text,
                    cursor=req.offset,
                    window=PREVIEW_TOKENS,
                    policy=UpdatePolicy.PREFIX_REUSE,
                    encode=False,
                )
                self.previews[req.uri] = preview
            preview.move_cursor(req.offset)
            preview.prepare()
        return preview

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

    def _superseded(self, req: Request) -> bool:
        return req.cancelled.is_set() or self.latest.get(req.uri) != req.version

    def complete(self, req: Request) -> Answer | None:
        """Inline drafts at the request's offset, or None if unknown, uncached, cancelled or superseded."""
        t0 = time.perf_counter()
        doc = self._ready(req)
        if doc is None or self.vocab is None:
            return None
        s = self.settings
        options = CompletionOptions(
            max_tokens=s.max_tokens,
            multiline=s.multiline,
            drafts=s.drafts,
            time_budget=s.time_budget_ms / 1000,
            draft_method=s.draft_method,
        )
        t1 = time.perf_counter()
        stats = MonitorStats()
        site = self._site(req, doc)
        processors = self._monitors(site, stats)
        if req.starts_with:  # healing through the selected item's rest, then free decoding
            processors = [TokenHealing(self.vocab, doc.heal + req.starts_with), *processors]
        drafter = self.drafter if s.drafting else None
        drafts = inline(
            doc,
            self.vocab,
            options,
            processors=processors,
            should_stop=lambda: self._superseded(req),
            drafter=drafter,
            ngrams=self.ngrams,
        )
        if self._superseded(req):
            return None
        if s.multiline and s.monitor_syntax:  # multi-line suggestions end on a complete statement
            drafts = [d for d in (replace(d, text=complete_statements(d.text, site)) for d in drafts) if d.text]
        first = (t1 - t0) + drafts[0].first_token_seconds if drafts else None
        answer = Answer(drafts, time.perf_counter() - t0, first)
        log.info(
            "completion for %s v%d: cursor update %.0f ms, then %s",
            req.uri,
            req.version,
            1000 * (t1 - t0),
            ", ".join(
                f"first token {1000 * d.first_token_seconds:.0f} ms, {1000 * d.seconds:.0f} ms, "
                f"{d.tokens} tokens in {d.passes} passes"
                for d in drafts
            ),
        )
        if stats.steps:
            log.info(
                "monitors: %.1f ms over %d steps, %d jedi calls (%d resolved, %d late, %.0f ms waited), %d repairs",
                1000 * stats.seconds,
                stats.steps,
                stats.triggers,
                stats.resolved,
                stats.timeouts,
                1000 * stats.analyzer_seconds,
                stats.repairs,
            )
        self.last_answer = answer
        return answer

    def popup(self, req: Request) -> list[PopupItem] | None:
        doc = self._ready(req)
        if doc is None or self.vocab is None or self.settings.popup_items == 0:
            return None
        items = popup(
            doc,
            self.vocab,
            width=self.settings.popup_items,
            processors=self._monitors(self._site(req, doc), MonitorStats()),
            should_stop=lambda: self._superseded(req),
        )
        return None if self._superseded(req) else items

    def _site(self, req: Request, doc: LiveDocument) -> Site:
        path = fs_path(req.uri)
        return Site(doc.text, doc.cursor, doc.heal, path, self._root_of(path), key=(req.uri, req.version, req.offset))

    def _monitors(self, site: Site, stats: MonitorStats) -> list[Processor]:
        """The monitors for a suggestion at the site, as the settings ask."""
        if self.monitors is None:
            return []
        s = self.settings
        config = MonitorConfig(
            members=s.monitor_members,
            imports=s.monitor_imports,
            keywords=s.monitor_keywords,
            syntax=s.monitor_syntax,
            jedi_timeout=s.jedi_timeout_ms / 1000,
        )
        return self.monitors.for_site(site, config, stats)

    def _root_of(self, path: str | None) -> str | None:
        """The workspace folder holding `path` (the innermost), else the file's own folder."""
        if path is None:
            return None
        inside = [r for r in self.roots if path.startswith(r.rstrip("/") + "/")]
        return max(inside, key=len) if inside else str(Path(path).parent)


def fs_path(uri: str) -> str | None:
    """The file a `file://` URI names (None for other schemes: untitled buffers and the like)."""
    return unquote(urlparse(uri).path) if uri.startswith("file://") else None
