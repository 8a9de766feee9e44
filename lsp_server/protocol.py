"""The JSON-RPC protocol under the server: what pygls does, except where it would fail on the client's input."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from lsprotocol import types
from pygls.protocol import LanguageServerProtocol, lsp_method


class LiveKVProtocol(LanguageServerProtocol):
    """pygls' protocol, except that a change to a document that was never opened is ignored
    (logged by our handler) instead of failing with a KeyError shown to the user."""

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        if params.text_document.uri in self.workspace.text_documents:
            yield from super().lsp_text_document__did_change(params)
        elif (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None
