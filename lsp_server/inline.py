"""textDocument/inlineCompletion: ghost text at the cursor.

Each item replaces the partial word before the cursor (its range starts where that word
starts), so an editor that filters items against the typed text keeps them. When the editor
says a popup item is selected (`selectedCompletionInfo`, VS Code), the suggestions start with
that item, as VS Code shows only ghost text that extends it. The request
waits a short adaptive debounce, then runs on the model worker; it is answered empty if a
newer change arrives, and a $/cancelRequest stops the decoding between two tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from completion.decoding.suggest import partial_word_start
from lsp_server.positions import Lines, position_at

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer

EMPTY = types.InlineCompletionList(items=[])


async def inline_completion(ls: LiveKVServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    req = await ls.request_at(params.text_document.uri, params.position)
    if req is None:
        return EMPTY
    text = ls.mirrors[req.uri].text
    lines = Lines.of(text)
    start = partial_word_start(text, req.offset)
    line, character = position_at(lines, start, ls.encoding)
    here = types.Range(types.Position(line, character), params.position)
    partial = text[start : req.offset]
    req.starts_with = selected_rest(params.context.selected_completion_info, here, partial)
    answer = await ls.on_worker(ls.worker.complete, req)
    if answer is None or not ls.current(req):
        return EMPTY  # nothing computed for an old version is sent
    ls.notify_status(answer.seconds, answer.first_token_seconds)
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=partial + d.text, range=here) for d in answer.drafts]
    )


SELECTED_MAX_CHARS = 200  # healing costs a lookup per character per step: a popup item is a name, not a file


def selected_rest(selected: types.SelectedCompletionInfo | None, here: types.Range, partial: str) -> str:
    """What the selected popup item adds to the partial word, when it replaces exactly that word;
    "" when nothing is selected, the item replaces other text, spans lines or is oversized (then
    it is not followed)."""
    if selected is None or selected.range != here or not selected.text.startswith(partial):
        return ""
    rest = selected.text[len(partial) :]
    return rest if len(rest) <= SELECTED_MAX_CHARS and "\n" not in rest else ""
