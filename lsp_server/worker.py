"""The model worker: one thread that runs the engine session, in the order jobs were submitted.

A change always reaches the cache before the completion request that follows it. The event loop
only records the newest version of each document; a completion polls it (and its request's
cancel flag) between tokens and stops as soon as it is superseded, so nothing computed for an old
version is ever returned. Engine policy (which cache, which monitors, what an answer holds) is
the session's (completion/session.py); this module only schedules.

When no request is queued for a while, the worker runs the session's background steps, each
re-checking the queue, so a request never waits for more than one step. Project indexing runs on
a second thread, never the model's.

Crash safety: an exception in a job (a model that runs out of memory, a bug) is passed to
`on_fault` (the server logs it and tells the user once per kind) and the job's answer is None,
so a request gets an empty result and the thread goes on (the session has already dropped a
cache the failure may have left half-updated).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from completion.decoding.suggest import PopupItem
from completion.project.token_store import IndexReport
from completion.session import Answer, EngineSession, OnFault, Selected
from completion.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def log_fault(where: str, err: Exception) -> None:
    """The default `on_fault` (a worker without a server: tests): log it."""
    log.error("%s failed", where, exc_info=err)


@dataclass
class Request:
    """One completion request: where, for which version, and a flag the event loop sets on $/cancelRequest."""

    uri: str
    version: int
    offset: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    selected: Selected | None = None  # the popup item the editor has selected


class ModelWorker:
    def __init__(self, settings: Settings, on_fault: OnFault = log_fault) -> None:
        self.on_fault = on_fault
        self.session = EngineSession(settings)
        self.session.workspace.wake = lambda: self._on_indexer(self._index_documents)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livekv-model")
        self._indexer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livekv-index")
        self._lock = threading.Lock()
        self._pending = 0  # submitted jobs not finished yet
        self._timer: threading.Timer | None = None
        self._background = False  # a background step is queued or running
        self._closed = False
        self.latest: dict[str, int] = {}  # newest version per document, written by the event loop
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
        self.session.shutdown()

    def apply_settings(self, settings: Settings) -> Future[Any]:
        """New settings, applied on the model thread between two jobs."""
        return self.submit(self.session.apply_settings, settings)

    # -- the project: its own thread, never the model's -------------------------------------

    def index_root(self, root: str, *, snippets: bool = True, tokens: bool = True) -> Future[IndexReport | None]:
        """Walk a workspace folder into the indexes asked for (after the model has loaded)."""

        def run() -> IndexReport:
            report = self.session.workspace.index_root(
                root, snippets=snippets, tokens=tokens, should_stop=lambda: self._closed
            )
            self.session.warm_ngrams()
            log.info(
                "workspace index: %d files of %s, %d tokens in %.1f s, %.1f MB",
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
        return self._on_indexer(lambda: self.session.workspace.files_changed(paths))

    def _on_indexer(self, fn: Callable[[], T]) -> Future[T | None]:
        """`fn()` on the indexing thread; an exception is a fault (as on the model thread), the answer None."""

        def run() -> T | None:
            try:
                return fn()
            except Exception as err:
                self.on_fault("the project indexer", err)
                return None

        if self._closed:
            done: Future[T | None] = Future()
            done.set_result(None)
            return done
        return self._indexer.submit(run)

    def _index_documents(self) -> None:
        self.session.workspace.index_documents()
        self.session.warm_ngrams()

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
        if self._closed or self.session.engine is None:
            return
        self._timer = threading.Timer(self.session.settings.idle_refresh_ms / 1000, self._start_background)
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
            if not self._pending and not self._closed:
                more = self.session.background_step()
                self.background_steps += 1
        except Exception as err:  # as in `_run`; the chain starts again after the next job
            self.on_fault("the model worker (background step)", err)
        finally:
            with self._lock:
                more = more and not self._pending and not self._closed
                self._background = more
                if more:
                    self._pool.submit(self._background_step)

    def _superseded(self, req: Request) -> bool:
        return req.cancelled.is_set() or self.latest.get(req.uri) != req.version

    def complete(self, req: Request) -> Answer | None:
        """Inline suggestions for the request, or None if unknown, uncached, cancelled or superseded."""
        stop = lambda: self._superseded(req)  # noqa: E731
        return None if stop() else self.session.complete(req.uri, req.offset, selected=req.selected, should_stop=stop)

    def popup(self, req: Request) -> list[PopupItem] | None:
        stop = lambda: self._superseded(req)  # noqa: E731
        return None if stop() else self.session.popup(req.uri, req.offset, should_stop=stop)
