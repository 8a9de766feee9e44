"""Document sync: didOpen/didChange/didClose mirrored on the event loop and passed on as character edits.

The mirror is the server's copy of the client's text; every change is converted to
offsets against it (one range at a time, in order) and queued to the model worker at
once, so the cache is warm before the next completion request arrives.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lsprotocol import types

from completion.live import TextEdit
from lsp_server.positions import Lines, PositionError, offset_at

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer


def did_open(ls: LiveKVServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.open_mirror(doc.uri, doc.version, doc.text)
    ls.worker.submit(ls.worker.open, doc.uri, doc.text)


def did_change(ls: LiveKVServer, params: types.DidChangeTextDocumentParams) -> None:
    uri, version = params.text_document.uri, params.text_document.version
    mirror = ls.mirrors.get(uri)
    if mirror is None:
        ls.log.warning("change for unknown document %s ignored", uri)
        return
    if version <= mirror.version:
        ls.log.warning("change for %s has version %s <= %s; applied in arrival order", uri, version, mirror.version)
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            edit = TextEdit(0, len(mirror.text), change.text)
        else:
            lines = Lines.of(mirror.text)
            try:
                start = offset_at(lines, change.range.start.line, change.range.start.character, ls.encoding)
                end = offset_at(lines, change.range.end.line, change.range.end.character, ls.encoding)
            except PositionError as err:
                reject(ls, uri, f"{err}; the document may be out of sync, please reopen it")
                return
            if end < start:
                reject(ls, uri, "its range ends before it starts")
                return
            edit = TextEdit(start, end, change.text)
        mirror.text = mirror.text[: edit.start] + edit.text + mirror.text[edit.end :]
        ls.worker.submit(ls.worker.change, uri, [edit], mirror.text)
    mirror.version = version
    mirror.typed(time.monotonic())
    ls.worker.latest[uri] = version


def reject(ls: LiveKVServer, uri: str, why: str) -> None:
    """Refuse a change: say so, and put pygls' copy (which applied it already) back to the mirror's."""
    ls.show(f"change to {uri} ignored: {why}")
    mirror = ls.mirrors[uri]
    language = ls.workspace.get_text_document(uri).language_id or "python"
    ls.workspace.put_text_document(types.TextDocumentItem(uri, language, mirror.version, mirror.text))


def did_close(ls: LiveKVServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.mirrors.pop(uri, None)
    ls.worker.latest.pop(uri, None)
    ls.worker.submit(ls.worker.close, uri)
