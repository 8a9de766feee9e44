"""The model worker: one thread that owns the engine and every document's live cache.

All operations run on that thread in the order they were submitted, so a change always
reaches the cache before the completion request that follows it. The event loop only
records the newest version of each document; a completion polls it between tokens and
stops as soon as its version is superseded, so nothing computed for an old version is
ever returned.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from completion.decode import greedy_decode
from completion.engine import Engine
from completion.live import LiveDocument, TextEdit, UpdatePolicy
from completion.model import ModelLoadError, load_model
from completion.store import DocumentStore
from completion.vocab import Vocabulary
from lsp_server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suggestion:
    text: str
    seconds: float  # request arrival on the worker -> suggestion ready
    first_token_seconds: float


class ModelWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livekv-model")
        self.engine: Engine | None = None
        self.vocab: Vocabulary | None = None
        self.model_name: str | None = None
        self.load_error: str | None = None
        self.store = DocumentStore(settings.memory_budget_mb << 20)
        self.latest: dict[str, int] = {}  # newest version per document, written by the event loop
        self.last_suggestion: Suggestion | None = None

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- everything below runs on the worker thread ------------------------------------

    def load(self) -> None:
        s = self.settings
        try:
            loaded = load_model(s.model_path, dtype=s.dtype, threads=s.threads)
        except ModelLoadError as err:
            self.load_error = str(err)
            log.error("model not loaded: %s", err)
            return
        self.engine = Engine.from_loaded(loaded)
        self.vocab = Vocabulary(self.engine.tokenizer, self.engine.model.config.vocab_size)
        self.model_name = loaded.name
        log.info("model %s ready (PIE %s)", loaded.name, "on" if self.engine.rope else self.engine.pie_refusal)

    def cacheable(self, text: str) -> str | None:
        """Why a document gets no cache (too large or binary), or None."""
        if len(text.encode("utf-8", "surrogatepass")) > self.settings.max_file_bytes:
            return f"larger than maxFileBytes ({self.settings.max_file_bytes})"
        if "\x00" in text:
            return "binary content"
        return None

    def open(self, uri: str, text: str) -> None:
        if self.engine is None:
            return
        reason = self.cacheable(text)
        if reason:
            log.info("%s not cached: %s", uri, reason)
            self.store.close(uri)
            return
        policy = UpdatePolicy.PIE if self.settings.use_pie else UpdatePolicy.FULL
        self.store.add(
            uri, LiveDocument(self.engine, text, cursor=0, window=self.settings.context_tokens, policy=policy)
        )

    def change(self, uri: str, edits: list[TextEdit], text_after: str) -> None:
        """Apply one change; `text_after` is the client's text after it (checked, never trusted blindly)."""
        if uri not in self.store:
            self.open(uri, text_after)
            return
        doc = self.store.get(uri)
        doc.apply_edits(edits)
        if doc.text != text_after:  # cannot happen unless a bug: resynchronise rather than drift
            log.error("cache text drifted from the client's for %s; re-opening", uri)
            self.open(uri, text_after)

    def text_of(self, uri: str) -> str | None:
        return self.store.get(uri).text if uri in self.store else None

    def close(self, uri: str) -> None:
        self.store.close(uri)

    def complete(self, uri: str, version: int, offset: int) -> Suggestion | None:
        """A suggestion at `offset`, or None if the document is unknown, uncached or superseded."""
        t0 = time.perf_counter()
        if self.engine is None or self.vocab is None or uri not in self.store:
            return None
        if self.latest.get(uri) != version:
            return None
        doc = self.store.get(uri)
        doc.move_cursor(offset)
        out = greedy_decode(
            doc,
            self.vocab,
            max_tokens=self.settings.max_tokens,
            time_budget=self.settings.time_budget_ms / 1000,
            should_stop=lambda: self.latest.get(uri) != version,
        )
        if out.stop == "cancelled" or self.latest.get(uri) != version:
            return None
        suggestion = Suggestion(out.text.rstrip(), time.perf_counter() - t0, out.first_token_seconds)
        self.last_suggestion = suggestion
        return suggestion
