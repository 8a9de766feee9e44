"""The livekv language server (pygls): lifecycle, configuration and the shared request path.

Features live one per module (sync, inline, popup, debug) as thin handlers; this module holds
the server's state, the lifecycle handlers, and `build_server()` which registers them all.

Crash safety: an unexpected exception anywhere (a handler, the model worker, jedi) goes to
`LiveKVServer.fault`, which logs it and tells the user once per kind (see lsp_server.faults).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer

from completion.project.workspace import fs_path
from completion.session import Answer
from completion.settings import RESTART_SETTINGS, Settings
from lsp_server import debug, inline, popup, sync
from lsp_server.faults import fault_kind, fault_message, guarded, resyncing
from lsp_server.mirror import Mirror
from lsp_server.positions import PositionError, offset_at
from lsp_server.protocol import LiveKVProtocol
from lsp_server.worker import ModelWorker, Request

VERSION = "0.2.0"
T = TypeVar("T")


class LiveKVServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "livekv",
            VERSION,
            protocol_cls=LiveKVProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.log = logging.getLogger("livekv.server")
        self.settings = Settings()
        self.worker = ModelWorker(self.settings, self.fault)
        self.loop: asyncio.AbstractEventLoop | None = None  # the event loop, once `initialize` runs on it
        self._faults: dict[str, int] = {}  # how often each kind of fault happened
        self._faults_lock = threading.Lock()  # faults come from the worker and jedi threads too
        self.mirrors: dict[str, Mirror] = {}
        self.encoding = "utf-16"
        self.client_progress = False
        self.client_watches_files = False  # the client can register workspace/didChangeWatchedFiles
        self.started = False  # `initialized` has been handled (it loads the model)
        self.indexing: asyncio.Future[None] | None = None  # a walk started by a setting turned on

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio with livekv's reader (`LiveKVProtocol.serve_io`) instead of pygls' loop."""
        assert isinstance(self.protocol, LiveKVProtocol)
        self.protocol.serve_io(stdin or sys.stdin.buffer, stdout or sys.stdout.buffer)

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client on host:port with the same reader as stdio (pygls' TCP loop has none of its
        checks). The CLI passes 127.0.0.1 only."""
        with socket.create_server((host, port)) as listener:
            self.log.info("listening on %s:%d", host, port)
            connection, peer = listener.accept()
        self.log.info("client connected from %s:%d", *peer[:2])
        with connection, connection.makefile("rb") as reader, connection.makefile("wb") as writer:
            assert isinstance(self.protocol, LiveKVProtocol)
            self.protocol.serve_io(reader, writer)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        self.log.warning("%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"livekv: {message}"))

    def fault(self, where: str, err: Exception) -> None:
        """An unexpected error in `where`: logged (its traceback the first time), and shown to the user
        the first time its kind happens. Callable from any thread."""
        kind = fault_kind(where, err)
        with self._faults_lock:
            count = self._faults[kind] = self._faults.get(kind, 0) + 1
        if count > 1:  # the same traceback again: one line, so a per-keystroke fault does not flood the log
            self.log.error("%s failed again (%s, %d times)", where, type(err).__name__, count)
            return
        self.log.error("%s failed", where, exc_info=err)
        if self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(self.show, fault_message(where, err), types.MessageType.Error)
        except RuntimeError:  # the event loop is closed: the session is over, there is no one to tell
            pass

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls' report of an exception in a handler `guarded`/`resyncing` do not wrap, or in pygls itself.
        pygls would show each one with its own text, then shut down its thread pool and (over TCP) stop
        listening; here it is a fault like any other, named after the function that raised."""
        data = error.data if isinstance(error, JsonRpcException) else None
        frames = data.get("traceback") if isinstance(data, dict) else None
        last = re.search(r"line \d+, in (\S+)", frames[-1]) if frames else None
        kind = "request" if source is FeatureRequestError else "notification"
        where = f"{last.group(1)} (in a {kind} handler)" if last else "pygls"
        if frames and source is not FeatureRequestError:  # pygls logs a request's traceback itself
            self.log.error("%s failed: %s\n%s", where, error, "".join(frames))
        self.fault(where, error)

    def resync(self, uri: str) -> None:
        """After a document notification failed: pygls' copy and the worker's take the mirror's text
        (the change that failed may be lost: the editor's next full text, or reopening, brings it)."""
        mirror = self.mirrors.get(uri)
        if mirror is None:  # closed, or never opened
            self.worker.latest.pop(uri, None)
            self.worker.submit(self.worker.session.close, uri)
            return
        self.worker.latest[uri] = mirror.version
        self.worker.submit(self.worker.session.open, uri, mirror.text)
        known = self.workspace.text_documents.get(uri)
        language = known.language_id if known is not None and known.language_id else "python"
        self.workspace.put_text_document(types.TextDocumentItem(uri, language, mirror.version, mirror.text))

    def report_settings(self, problems: list[str]) -> None:
        """A bad setting is logged and sent to the editor's log (it was replaced by its default)."""
        for problem in problems:
            self.log.warning("%s", problem)
            self.window_log_message(types.LogMessageParams(types.MessageType.Warning, f"livekv: {problem}"))

    def open_mirror(self, uri: str, version: int, text: str) -> None:
        self.mirrors[uri] = Mirror(version, text, last_change=time.monotonic())
        self.worker.latest[uri] = version

    async def request_at(self, uri: str, position: types.Position) -> Request | None:
        """A worker request for the document's current version at `position`, after the debounce;
        None (logged) for an unknown document, a bad position, or a change during the debounce."""
        mirror = self.mirrors.get(uri)
        if mirror is None:
            self.log.info("request for unknown document %s", uri)
            return None
        try:
            offset = offset_at(mirror.lines, position.line, position.character, self.encoding)
        except PositionError as err:
            self.log.info("request at a bad position in %s: %s", uri, err)
            return None
        req = Request(uri, mirror.version, offset)
        wait = mirror.debounce(time.monotonic(), self.settings.debounce_ms / 1000)
        if wait > 0:
            await asyncio.sleep(wait)
        return req if self.current(req) else None

    async def on_worker(self, fn: Callable[[Request], T], req: Request) -> T:
        """Run `fn(req)` on the model worker; a $/cancelRequest (this task cancelled) sets the
        request's cancel flag, which the decoding loop checks between tokens."""
        try:
            return await asyncio.wrap_future(self.worker.submit(fn, req))
        except asyncio.CancelledError:
            req.cancelled.set()
            raise

    def current(self, req: Request) -> bool:
        """Whether the request's document is still open at the request's version."""
        mirror = self.mirrors.get(req.uri)
        return mirror is not None and mirror.version == req.version

    def notify_status(self, answer: Answer) -> None:
        """`livekv/status`: the last suggestion's latency, for an editor's status line, and how many of the
        points jedi was asked about had their answer there already (`jediReady` of `jediAsked`)."""
        first = answer.first_token_seconds
        self.protocol.notify(
            "livekv/status",
            {
                "latencyMs": round(1000 * answer.seconds),
                "firstTokenMs": None if first is None else round(1000 * first),
                "model": self.worker.session.model_name,
                "jediAsked": answer.monitor_stats.triggers,
                "jediReady": answer.monitor_stats.ready,
            },
        )

    async def index_workspace(self, snippets: bool, tokens: bool) -> None:
        """Walk each workspace folder once (on the indexing thread) into the indexes asked for, with a
        progress report."""
        roots = self.worker.session.workspace.roots
        if not ((snippets or tokens) and roots):
            return
        reports = [self.worker.index_root(root, snippets=snippets, tokens=tokens) for root in roots]
        done = asyncio.gather(*map(asyncio.wrap_future, reports))
        await self.progress("indexing workspace", done, lambda: f"{sum(r.files for r in done.result() if r)} files")

    async def progress(self, title: str, work: asyncio.Future[object], message: object = None) -> None:
        """Show `$/progress` for `work` when the client supports it (token created first, as LSP requires)."""
        if not self.client_progress:
            await work
            return
        token = f"livekv-{title}-{time.monotonic_ns()}"
        await self.work_done_progress.create_async(token)
        self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=f"livekv: {title}"))
        try:
            await work
        finally:
            end = message() if callable(message) else message
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=None if end is None else str(end)))


def initialize(ls: LiveKVServer, params: types.InitializeParams) -> None:
    ls.loop = asyncio.get_running_loop()
    ls.settings, problems = Settings.from_json(params.initialization_options)
    ls.worker = ModelWorker(ls.settings, ls.fault)
    # pygls has already chosen the client's preferred encoding (Neovim offers utf-8 first) and
    # advertised it; every conversion must use the same one.
    chosen = ls.workspace.position_encoding or types.PositionEncodingKind.Utf16
    ls.encoding = chosen.value if isinstance(chosen, types.PositionEncodingKind) else str(chosen)
    window = params.capabilities.window
    ls.client_progress = bool(window and window.work_done_progress)
    watched = params.capabilities.workspace and params.capabilities.workspace.did_change_watched_files
    ls.client_watches_files = bool(watched and watched.dynamic_registration)
    folders = params.workspace_folders or []
    uris = [f.uri for f in folders] or ([params.root_uri] if params.root_uri else [])
    ls.worker.session.workspace.roots = [p for u in uris if (p := fs_path(u)) is not None]
    ls.report_settings(problems)


async def initialized(ls: LiveKVServer, params: types.InitializedParams) -> None:
    if ls.started:  # a client that says it twice gets one model load and one workspace walk
        ls.log.warning("initialized received again; ignored")
        return
    ls.started = True
    loading = asyncio.wrap_future(ls.worker.submit(ls.worker.session.load, ls.fault))
    await ls.progress("loading model", loading, lambda: ls.worker.session.model_name or "failed")
    if ls.worker.session.load_error:
        ls.show(f"model not loaded, completions are off: {ls.worker.session.load_error}", types.MessageType.Error)
        return
    ls.window_log_message(
        types.LogMessageParams(types.MessageType.Info, f"livekv: {ls.worker.session.model_name} ready")
    )
    if ls.client_watches_files:  # the project index follows files saved, created and deleted outside the editor
        watcher = types.FileSystemWatcher(glob_pattern="**/*.py")
        options = types.DidChangeWatchedFilesRegistrationOptions(watchers=[watcher])
        registration = types.Registration("livekv-py-files", types.WORKSPACE_DID_CHANGE_WATCHED_FILES, options)
        try:
            await ls.client_register_capability_async(types.RegistrationParams([registration]))
        except Exception as err:  # a client that refuses loses only the file watching
            ls.log.warning("client refused to watch files (%s); the project index follows open documents only", err)
    await ls.index_workspace(*walked(ls.settings))


def did_change_watched_files(ls: LiveKVServer, params: types.DidChangeWatchedFilesParams) -> None:
    paths = [p for change in params.changes if (p := fs_path(change.uri)) is not None and p.endswith(".py")]
    if paths:
        ls.worker.files_changed(paths)


def did_change_configuration(ls: LiveKVServer, params: types.DidChangeConfigurationParams) -> None:
    settings, problems = Settings.from_json(params.settings, base=ls.settings)
    ls.report_settings(problems)
    if changed := [f for f in RESTART_SETTINGS if getattr(settings, f) != getattr(ls.settings, f)]:
        ls.show(f"{', '.join(map(camel, changed))} take effect after a restart")
    old, ls.settings = ls.settings, settings
    ls.worker.apply_settings(settings)
    turned_on = [now and not before for now, before in zip(walked(settings), walked(old), strict=True)]
    if ls.started and ls.worker.session.engine is not None and any(turned_on):
        ls.indexing = asyncio.ensure_future(ls.index_workspace(*turned_on))  # the walk starts now


def walked(s: Settings) -> tuple[bool, bool]:
    """Which indexes the settings fill from the workspace's files: (cross-file snippets, drafting's tokens)."""
    return s.index_workspace and s.cross_file_chars > 0, s.index_workspace and s.drafting


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def shutdown(ls: LiveKVServer, params: None) -> None:
    ls.worker.shutdown()


def build_server() -> LiveKVServer:
    ls = LiveKVServer()
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.SHUTDOWN)(shutdown)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched_files)
    for method, handler in (
        (types.TEXT_DOCUMENT_DID_OPEN, sync.did_open),
        (types.TEXT_DOCUMENT_DID_CHANGE, sync.did_change),
        (types.TEXT_DOCUMENT_DID_CLOSE, sync.did_close),
    ):
        ls.feature(method)(resyncing(method, handler))
    inline_completion = guarded(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline.inline_completion, inline.EMPTY)
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(inline_completion)
    completion = guarded(types.TEXT_DOCUMENT_COMPLETION, popup.completion, popup.EMPTY)
    ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["."]))(completion)
    ls.feature("livekv/documentState")(debug.document_state)
    return ls
