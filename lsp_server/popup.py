"""textDocument/completion: popup items from the model's continuations of the word at the cursor.

Items are whole identifiers (the partial word included) with a text edit replacing that
partial word, ranked by the model's log-probability (sortText keeps that order), and the
list is marked incomplete so the editor asks again as the user types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from lsp_server.positions import position_at

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer

EMPTY = types.CompletionList(is_incomplete=True, items=[])


async def completion(ls: LiveKVServer, params: types.CompletionParams) -> types.CompletionList:
    req = await ls.request_at(params.text_document.uri, params.position)
    if req is None:
        return EMPTY
    items = await ls.on_worker(ls.worker.popup, req)
    if not items or not ls.current(req):
        return EMPTY
    lines = ls.mirrors[req.uri].lines
    out = []
    for rank, item in enumerate(items):
        line, character = position_at(lines, item.start, ls.encoding)
        span = types.Range(types.Position(line, character), params.position)
        out.append(
            types.CompletionItem(
                label=item.label,
                kind=types.CompletionItemKind.Text,
                detail="livekv",
                sort_text=f"{rank:03d}",
                filter_text=item.label,
                text_edit=types.TextEdit(range=span, new_text=item.label),
            )
        )
    return types.CompletionList(is_incomplete=True, items=out)
