"""End-to-end: textDocument/completion (the popup menu) over stdio with VS Code's capabilities.

Items are whole identifiers from the model's continuations of the word at the cursor, each with a text
edit over that partial word, in the model's order (sortText), in a list marked incomplete so the
editor asks again as the user types.
"""

from __future__ import annotations

import pytest
import pytest_lsp
from lsp_helpers import SERVER, Doc, initialize, pos, server_capabilities
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.integration  # the server it starts loads the embedded model

SOURCE = """class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def clear(self):
"""


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, "visual-studio-code", {"maxTokens": 16, "crossFileChars": 0})
    yield
    await lsp_client.shutdown_session()


def configure(client: LanguageClient, settings: dict[str, object]) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"livekv": settings}))


async def completion(client: LanguageClient, uri: str, position: types.Position) -> types.CompletionList:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )
    assert isinstance(result, types.CompletionList)
    return result


@pytest.mark.asyncio(loop_scope="module")
async def test_advertises_completion_with_dot_trigger(client: LanguageClient) -> None:
    provider = server_capabilities(client).completion_provider
    assert provider is not None and list(provider.trigger_characters or []) == ["."]


@pytest.mark.asyncio(loop_scope="module")
async def test_items_complete_the_partial_member_name(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/cart.py", SOURCE).open()
    caret = doc.type(len(doc.text), "        self.it")
    result = await completion(client, doc.uri, doc.position(caret))
    doc.close()
    assert result.is_incomplete is True
    assert result.items
    line = doc.text.count("\n")
    for item in result.items:
        assert item.label.startswith("it")
        assert isinstance(item.text_edit, types.TextEdit)
        # the edit replaces the typed `it` (from the start of the partial word up to the cursor)
        assert item.text_edit.range == types.Range(pos(line, 13), pos(line, 15))
        assert item.text_edit.new_text == item.label == item.filter_text
    labels = [item.label for item in result.items]
    assert len(set(labels)) == len(labels)
    sort_texts = [item.sort_text for item in result.items]
    assert sort_texts == sorted(sort_texts) and len(set(sort_texts)) == len(sort_texts)
    assert labels[0] == "items"  # the attribute the class defines, first


@pytest.mark.asyncio(loop_scope="module")
async def test_after_the_trigger_character_the_edit_is_empty(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/dot.py", SOURCE).open()
    caret = doc.type(len(doc.text), "        self.")
    result = await completion(client, doc.uri, doc.position(caret))
    doc.close()
    assert result.is_incomplete is True and result.items
    for item in result.items:
        assert isinstance(item.text_edit, types.TextEdit)
        assert item.text_edit.range == types.Range(doc.position(caret), doc.position(caret))
        assert item.text_edit.new_text == item.label and item.label.isidentifier()


@pytest.mark.asyncio(loop_scope="module")
async def test_unknown_document_gets_an_empty_list(client: LanguageClient) -> None:
    result = await completion(client, "file:///project/never_opened.py", pos(0, 0))
    assert result.is_incomplete is True and len(result.items) == 0


@pytest.mark.asyncio(loop_scope="module")
async def test_popup_items_zero_turns_the_popup_off(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/off.py", SOURCE).open()
    caret = doc.type(len(doc.text), "        self.it")
    configure(client, {"popupItems": 0})
    result = await completion(client, doc.uri, doc.position(caret))
    configure(client, {"popupItems": 6})
    doc.close()
    assert len(result.items) == 0
