"""Document sync: didOpen/didChange/didClose mirrored on the event loop and passed on as character edits.

The mirror is the server's copy of the client's text; every change is converted to
offsets against it (one range at a time, in order) and queued to the model worker at
once, so the cache is warm before the next completion request arrives. pygls' copy of
the document is set to the mirror's text after each notification. A notification with a
range outside its text is refused whole (the user is told): nothing of it is applied.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lsprotocol import types

from completion.live.document import TextEdit
from lsp_server.positions import Lines, PositionError, offset_at

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer


def did_open(ls: LiveKVServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.open_mirror(doc.uri, doc.version, doc.text)
    ls.worker.submit(ls.worker.session.open, doc.uri, doc.text)


def did_change(ls: LiveKVServer, params: types.DidChangeTextDocumentParams) -> None:
    uri, version = params.text_document.uri, params.text_document.version
    mirror = ls.mirrors.get(uri)
    if mirror is None:
        ls.log.warning("change for unknown document %s ignored", uri)
        return
    if version <= mirror.version:
        ls.log.warning("change for %s has version %s <= %s; applied in arrival order", uri, version, mirror.version)
    try:
        steps = apply_changes(mirror.text, params.content_changes, ls.encoding)
    except PositionError as err:
        ls.show(f"change to {uri} ignored: {err}; the document may be out of sync, please reopen it")
        return
    for edit, text_after in steps:
        ls.worker.submit(ls.worker.session.change, uri, [edit], text_after)
    if steps:
        mirror.text = steps[-1][1]
    mirror.version = version
    mirror.typed(time.monotonic())
    ls.worker.latest[uri] = version
    # pygls' copy follows the mirror (LiveKVProtocol does not let pygls apply changes itself)
    language = ls.workspace.get_text_document(uri).language_id or "python"
    ls.workspace.put_text_document(types.TextDocumentItem(uri, language, version, mirror.text))


def apply_changes(
    text: str, changes: Sequence[types.TextDocumentContentChangeEvent], encoding: str
) -> list[tuple[TextEdit, str]]:
    """Each change as a character edit, with the text after it; they apply one after another, each
    against the text the previous one left (as LSP says). A range that is not in its text (a line
    past the end, a column inside a character, an end before its start) raises PositionError, and
    then none of the changes is applied."""
    steps = []
    for change in changes:
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            edit = TextEdit(0, len(text), change.text)
        else:
            lines = Lines.of(text)
            start, end = change.range.start, change.range.end
            a = offset_at(lines, start.line, start.character, encoding)
            b = offset_at(lines, end.line, end.character, encoding)
            if b < a:
                raise PositionError(
                    f"range {start.line}:{start.character}-{end.line}:{end.character} ends before it starts"
                )
            edit = TextEdit(a, b, change.text)
        text = text[: edit.start] + edit.text + text[edit.end :]
        steps.append((edit, text))
    return steps


def did_close(ls: LiveKVServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.mirrors.pop(uri, None)
    ls.worker.latest.pop(uri, None)
    ls.worker.submit(ls.worker.session.close, uri)
