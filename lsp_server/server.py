"""The livekv language server (pygls): thin handlers over the model worker.

Each handler converts positions (lsp_server.positions), hands the work to the model
worker, and converts back. Document changes are mirrored on the event loop in order and
passed on as character edits, so the worker's caches always see the client's text.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from completion.live import TextEdit
from lsp_server.positions import Lines, PositionError, offset_at
from lsp_server.settings import Settings
from lsp_server.worker import ModelWorker

log = logging.getLogger(__name__)
VERSION = "0.1.0"


@dataclass
class Mirror:
    """The server's copy of one open document, as the client has it."""

    version: int
    text: str


class LiveKVServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("livekv", VERSION, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings = Settings()
        self.worker = ModelWorker(self.settings)
        self.mirrors: dict[str, Mirror] = {}
        self.encoding = "utf-16"

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        log.warning("%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"livekv: {message}"))


server = LiveKVServer()


@server.feature(types.INITIALIZE)
def initialize(ls: LiveKVServer, params: types.InitializeParams) -> None:
    ls.settings, problems = Settings.from_json(params.initialization_options)
    ls.worker = ModelWorker(ls.settings)
    general = params.capabilities.general
    if general and general.position_encodings and types.PositionEncodingKind.Utf16 not in general.position_encodings:
        log.info("client offers %s; staying with utf-16 as pygls negotiates", general.position_encodings)
    for problem in problems:
        log.warning("%s", problem)


@server.feature(types.INITIALIZED)
async def initialized(ls: LiveKVServer, params: types.InitializedParams) -> None:
    await asyncio.wrap_future(ls.worker.submit(ls.worker.load))
    if ls.worker.load_error:
        ls.show(f"model not loaded, completions are off: {ls.worker.load_error}", types.MessageType.Error)
    else:
        ls.window_log_message(types.LogMessageParams(types.MessageType.Info, f"livekv: {ls.worker.model_name} ready"))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: LiveKVServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.mirrors[doc.uri] = Mirror(doc.version, doc.text)
    ls.worker.latest[doc.uri] = doc.version
    ls.worker.submit(ls.worker.open, doc.uri, doc.text)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: LiveKVServer, params: types.DidChangeTextDocumentParams) -> None:
    uri, version = params.text_document.uri, params.text_document.version
    mirror = ls.mirrors.get(uri)
    if mirror is None:
        log.warning("change for unknown document %s ignored", uri)
        return
    if version <= mirror.version:
        log.warning("change for %s has version %s <= %s; applied anyway in arrival order", uri, version, mirror.version)
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            edit = TextEdit(0, len(mirror.text), change.text)
        else:
            lines = Lines.of(mirror.text)
            try:
                start = offset_at(lines, change.range.start.line, change.range.start.character, ls.encoding)
                end = offset_at(lines, change.range.end.line, change.range.end.character, ls.encoding)
            except PositionError as err:
                ls.show(f"change to {uri} ignored: {err}; the document may be out of sync, please reopen it")
                return
            if end < start:
                ls.show(f"change to {uri} ignored: its range ends before it starts")
                return
            edit = TextEdit(start, end, change.text)
        mirror.text = mirror.text[: edit.start] + edit.text + mirror.text[edit.end :]
        ls.worker.submit(ls.worker.change, uri, [edit], mirror.text)
    mirror.version = version
    ls.worker.latest[uri] = version


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: LiveKVServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.mirrors.pop(uri, None)
    ls.worker.latest.pop(uri, None)
    ls.worker.submit(ls.worker.close, uri)


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: LiveKVServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    uri = params.text_document.uri
    mirror = ls.mirrors.get(uri)
    if mirror is None:
        log.info("inline completion for unknown document %s", uri)
        return types.InlineCompletionList(items=[])
    try:
        offset = offset_at(Lines.of(mirror.text), params.position.line, params.position.character, ls.encoding)
    except PositionError as err:
        log.info("inline completion at a bad position: %s", err)
        return types.InlineCompletionList(items=[])
    version = mirror.version
    suggestion = await asyncio.wrap_future(ls.worker.submit(ls.worker.complete, uri, version, offset))
    if (
        suggestion is None
        or not suggestion.text.strip()
        or ls.mirrors.get(uri) is not mirror
        or mirror.version != version
    ):
        return types.InlineCompletionList(items=[])  # nothing computed for an old version is sent
        return types.InlineCompletionList(items=[])
    ls.protocol.notify("livekv/status", {"latencyMs": round(1000 * suggestion.seconds), "model": ls.worker.model_name})
    here = types.Range(params.position, params.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=suggestion.text, range=here)])


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: LiveKVServer, params: types.DidChangeConfigurationParams) -> None:
    settings, problems = Settings.from_json(params.settings, base=ls.settings)
    for problem in problems:
        log.warning("%s", problem)
    if (settings.model_path, settings.dtype, settings.threads) != (
        ls.settings.model_path,
        ls.settings.dtype,
        ls.settings.threads,
    ):
        ls.show("model settings change takes effect after a restart")
    ls.settings = ls.worker.settings = settings


@server.feature(types.SHUTDOWN)
def shutdown(ls: LiveKVServer, params: None) -> None:
    ls.worker.shutdown()


@server.feature("livekv/documentState")
async def document_state(ls: LiveKVServer, params: object) -> dict[str, object]:
    """The three copies of a document's text (client mirror, pygls workspace, engine), for tests and debugging."""
    uri = params["uri"] if isinstance(params, dict) else params.uri  # type: ignore[attr-defined]
    mirror = ls.mirrors.get(uri)
    engine_text = await asyncio.wrap_future(ls.worker.submit(ls.worker.text_of, uri))
    return {
        "mirror": mirror.text if mirror else None,
        "workspace": ls.workspace.get_text_document(uri).source if mirror else None,
        "engine": engine_text,
    }
