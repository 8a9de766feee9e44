"""jedi, asked from the decoding loop: names that may follow a point in the code.

jedi is not thread-safe, so every call runs on one thread, the same for every analyzer of the process; the decoding
loop waits for an answer up to a time limit and goes on unconstrained when it is late (the
answer still lands in the cache for the next suggestion). Answers are cached by the question
itself (the code jedi sees, the point, the project), so a question asked ahead of the request
(`prefetch`, when a change puts the caret at a trigger) is the request's own, and typing the rest of
a name after `obj.` asks nothing new. A jedi failure, or a call
stuck for longer than STUCK_SECONDS (every later question waits behind it), is passed to
`on_error`: the owner tells the user once. jedi only parses: project
modules are never imported, compiled extensions inside the project are never loaded, and no
module is auto-imported.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jedi

from monitors import jedi_files
from monitors.environment import project_paths

log = logging.getLogger(__name__)
jedi.settings.auto_import_modules = []  # jedi imports these for real (default: ["gi"]); nothing is
jedi_files.install()  # no file through a link out of the project, no secret, is read
CACHE_ENTRIES = 512
STUCK_SECONDS = 10.0  # far above jedi's first call (it loads its stubs then: seconds on a busy machine)


@functools.cache
def server_environment() -> jedi.api.environment.Environment:
    """The server's own interpreter for jedi, always (one per process, as jedi caches its default):
    jedi's default is VIRTUAL_ENV's when the editor set it, and starting that one would run the
    project's site code (`.pth` import lines, `sitecustomize`)."""
    return jedi.create_environment(sys.executable, safe=False)


@dataclass(frozen=True)
class Names:
    """What jedi knows at a point: the legal names, or None when it cannot tell (no constraint)."""

    names: frozenset[str] | None
    why: str  # "resolved"; or "unresolved" (jedi knows nothing), "dynamic" (__getattr__),
    # "opaque" (only dunder members: None or a bare object), "error"
    seconds: float  # jedi's own time


@dataclass(frozen=True)
class Query:
    code: str  # the document as it should be analysed, cut or not after the point
    line: int  # 1-based
    column: int  # 0-based, in characters
    path: str | None
    root: str | None
    signature: bool = False  # ask for the keyword parameters of the call around the point instead


class Analyzer:
    def __init__(self, environment_path: str | None = None) -> None:
        """`environment_path`: the project's environment (setting `environmentPath`), read, never run."""
        self.environment_path = environment_path
        self._closed = False
        self._lock = threading.Lock()
        self._cache: OrderedDict[object, Future[Names]] = OrderedDict()
        self._projects: dict[str, jedi.Project] = {}
        self._started: float | None = None  # time.monotonic() when the running jedi call began
        self._stuck: float | None = None  # the start of the stuck call last reported
        self._prefetched: Future[Names] | None = None  # the last question asked ahead of a request
        # Told of each jedi failure (on the jedi thread) and of each stuck call (on the asking thread).
        self.on_error: Callable[[Exception], None] = lambda err: None

    def ask(self, query: Query) -> Future[Names]:
        """The (possibly still running) answer to `query`; jedi is asked only the first time it is seen, or
        again when that time failed (a failure may pass: the next request tries once more)."""
        started = self._started
        if started is not None and started != self._stuck and time.monotonic() - started > STUCK_SECONDS:
            self._stuck = started
            self.on_error(TimeoutError(f"jedi has been busy on one question for over {STUCK_SECONDS:.0f} s"))
        key = _key(query)
        with self._lock:
            future = self._cache.get(key)
            if future is None or future.cancelled() or (future.done() and _failed(future)):
                if self._closed:
                    raise RuntimeError("the analyzer is shut down")
                future = _jedi_thread().submit(self._complete, query)
                self._cache[key] = future
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            return future

    def prefetch(self, query: Query) -> Future[Names]:
        """`ask` ahead of the request. A prefetch still queued when the next comes is cancelled: typing
        on past a trigger must not leave jedi a queue of questions nobody asks any more."""
        future = self.ask(query)
        with self._lock:
            previous, self._prefetched = self._prefetched, future
        if previous is not None and previous is not future:
            previous.cancel()  # only a question jedi has not started; a later `ask` submits it again
        return future

    def forget(self) -> None:
        """Drop every cached answer (questions already running finish, unseen)."""
        with self._lock:
            self._cache.clear()

    def use_environment(self, environment_path: str | None) -> None:
        """Another project environment: jedi's projects are rebuilt (on its thread, between questions)."""
        self.environment_path = environment_path
        _jedi_thread().submit(self._projects.clear)

    def warm_up(self) -> Future[Names]:
        """Load jedi's builtins stubs (seconds, once) before the first real question."""
        return self.ask(Query("import os\nos.", 2, 3, None, None))

    def shutdown(self) -> None:
        """Cancel this analyzer's questions jedi has not started (the thread is the process's, see `_jedi_thread`)."""
        with self._lock:
            self._closed = True
            for future in self._cache.values():
                future.cancel()

    # -- on the jedi thread ----------------------------------------------------------

    def _project(self, root: str | None) -> jedi.Project | None:
        if root is None or not Path(root).is_dir():
            return None
        if root not in self._projects:
            found = project_paths(root, self.environment_path)
            log.info(
                "jedi for %s: environment %s (%s), %d added paths",
                root,
                found.environment,
                found.found_by,
                len(found.paths),
            )
            # jedi runs on the server's own interpreter (`server_environment`, given to every Script), never
            # the project's; compiled modules load only from that interpreter's own path
            self._projects[root] = jedi.Project(root, added_sys_path=found.paths, load_unsafe_extensions=False)
        return self._projects[root]

    def _complete(self, q: Query) -> Names:
        self._started = time.monotonic()
        try:
            return self._answer(q)
        finally:
            self._started = None

    def _answer(self, q: Query) -> Names:
        t0 = time.perf_counter()
        try:
            script = jedi.Script(q.code, path=q.path, project=self._project(q.root), environment=server_environment())
            if q.signature:
                return _keywords(script.get_signatures(q.line, q.column), time.perf_counter() - t0)
            completions = script.complete(q.line, q.column)
        except Exception as err:  # jedi has many internal failure modes; a monitor must survive them all
            log.warning("jedi failed at %s:%d:%d: %r", q.path, q.line, q.column, err)
            self.on_error(err)
            return Names(None, "error", time.perf_counter() - t0)
        names = frozenset(c.name for c in completions if c.type != "keyword")
        seconds = time.perf_counter() - t0
        if not names:
            return Names(None, "unresolved", seconds)
        if "__getattr__" in names:  # any name may exist: listing the known ones would be wrong
            return Names(None, "dynamic", seconds)
        if all(n.startswith("__") and n.endswith("__") for n in names):
            # only object's own members: jedi inferred None or a bare object, which code rarely
            # dereferences on purpose; it is more likely a value assigned elsewhere
            return Names(None, "opaque", seconds)
        return Names(names, "resolved", seconds)


@functools.cache
def _jedi_thread() -> ThreadPoolExecutor:
    """The one thread jedi runs on, for every analyzer of the process: jedi's state (its caches, its
    settings) is the process's, so two analyzers on two threads would race inside it."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="livekv-jedi")


def _failed(future: Future[Names]) -> bool:
    return future.exception() is not None or future.result().why == "error"


def _key(q: Query) -> tuple[object, ...]:
    """The cache key of a question: its code by a digest (a cache of whole documents would hold megabytes)."""
    digest = hashlib.blake2b(q.code.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return (digest, len(q.code), q.line, q.column, q.path, q.root, q.signature)


def _keywords(signatures: list[jedi.api.classes.Signature], seconds: float) -> Names:
    """The names a call accepts as keyword arguments (all its signatures together)."""
    if not signatures:
        return Names(None, "unresolved", seconds)
    names: set[str] = set()
    for signature in signatures:
        for param in signature.params:
            if param.kind == inspect.Parameter.VAR_KEYWORD:  # **kwargs: any name is accepted
                return Names(None, "dynamic", seconds)
            if param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                names.add(param.name)
    return Names(frozenset(names), "resolved", seconds)
