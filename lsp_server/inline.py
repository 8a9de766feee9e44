"""textDocument/inlineCompletion: ghost text at the cursor.

The session answers with items that each replace the partial word before the cursor (their range
starts where that word starts), so an editor that filters items against the typed text keeps them.
When the editor says a popup item is selected (`selectedCompletionInfo`, VS Code), its range is
passed on in offsets and the suggestions start with that item, as VS Code shows only ghost text
that extends it. The request waits a short adaptive debounce, then runs on the model worker; it
is answered empty if a newer change arrives, and a $/cancelRequest stops the decoding between two tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from completion.session import Selected
from lsp_server.positions import Lines, PositionError, offset_at, position_at

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer

EMPTY = types.InlineCompletionList(items=[])


async def inline_completion(ls: LiveKVServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    req = await ls.request_at(params.text_document.uri, params.position)
    if req is None:
        return EMPTY
    lines = ls.mirrors[req.uri].lines
    req.selected = selected_offsets(params.context.selected_completion_info, lines, ls.encoding)
    answer = await ls.on_worker(ls.worker.complete, req)
    if answer is None or not ls.current(req):
        return EMPTY  # nothing computed for an old version is sent
    ls.notify_status(answer)
    return types.InlineCompletionList(
        items=[
            types.InlineCompletionItem(
                insert_text=item.text, range=types.Range(position(lines, item.start, ls), params.position)
            )
            for item in answer.items
        ]
    )


def position(lines: Lines, offset: int, ls: LiveKVServer) -> types.Position:
    return types.Position(*position_at(lines, offset, ls.encoding))


def selected_offsets(selected: types.SelectedCompletionInfo | None, lines: Lines, encoding: str) -> Selected | None:
    """The selected popup item in offsets (None when there is none or its range is not in the text)."""
    if selected is None:
        return None
    start, end = selected.range.start, selected.range.end
    try:
        a = offset_at(lines, start.line, start.character, encoding)
        b = offset_at(lines, end.line, end.character, encoding)
    except PositionError:
        return None
    return Selected(a, b, selected.text)
