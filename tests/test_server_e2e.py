"""The real server over stdio, driven by pytest-lsp with the capabilities VS Code and Neovim send."""

from __future__ import annotations

import asyncio
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

URI = "file:///project/shop.py"
SOURCE = """class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def total(self):
        return sum(item.price for item in self.items)


def checkout(cart):
"""

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server.cli", "serve"])


@pytest_lsp.fixture(scope="module", config=SERVER, params=["visual-studio-code", "neovim"])
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(request.param),
            client_info=types.ClientInfo(name=request.param),
            initialization_options={"maxTokens": 24},
        )
    )
    yield
    await lsp_client.shutdown_session()


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def change(version: int, start: types.Position, end: types.Position, text: str) -> types.DidChangeTextDocumentParams:
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start, end), text=text)],
    )


async def inline(client: LanguageClient, at: types.Position) -> types.InlineCompletionList:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=at,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    assert isinstance(result, types.InlineCompletionList)
    return result


async def document_state(client: LanguageClient) -> dict[str, str | None]:
    state = await client.protocol.send_request_async("livekv/documentState", {"uri": URI})
    return {key: getattr(state, key) for key in ("mirror", "workspace", "engine")}


@pytest.mark.asyncio(loop_scope="module")
async def test_advertises_inline_completion_and_incremental_sync(client: LanguageClient) -> None:
    caps = client.protocol.server_capabilities if hasattr(client.protocol, "server_capabilities") else None
    assert caps is None or caps.inline_completion_provider


@pytest.mark.asyncio(loop_scope="module")
async def test_typing_session_keeps_three_copies_equal_and_suggests(client: LanguageClient) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=URI, language_id="python", version=1, text=SOURCE))
    )
    last = SOURCE.count("\n")  # the empty line after `def checkout(cart):`
    version = 1
    for i, ch in enumerate("    tot"):  # typed one key at a time
        version += 1
        client.text_document_did_change(change(version, pos(last, i), pos(last, i), ch))
    version += 1  # an astral character and a line deletion, in UTF-16 units
    client.text_document_did_change(change(version, pos(0, 0), pos(0, 0), "# 😀 shop\n"))
    version += 1
    client.text_document_did_change(change(version, pos(1, 0), pos(2, 0), ""))
    state = await document_state(client)
    assert state["mirror"] == state["workspace"] == state["engine"]
    assert state["engine"].startswith("# 😀 shop\n    def __init__")
    result = await inline(client, pos(last, 7))
    assert len(result.items) == 1
    item = result.items[0]
    # the item replaces the partial word "tot", so editors that filter by the typed text keep it
    assert item.insert_text.startswith("tot") and len(item.insert_text) > 3 and "\n" not in item.insert_text
    assert item.range == types.Range(pos(last, 4), pos(last, 7))


@pytest.mark.asyncio(loop_scope="module")
async def test_a_newer_change_supersedes_a_pending_request(client: LanguageClient) -> None:
    state = await document_state(client)
    lines = state["mirror"].split("\n")
    last = len(lines) - 1
    pending = asyncio.ensure_future(
        client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=pos(last, 0),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
            )
        )
    )
    await asyncio.sleep(0.05)  # the request is on the server, decoding
    client.text_document_did_change(change(100, pos(last, 0), pos(last, 0), "x"))
    result = await pending
    assert result is not None and not result.items


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_requests_get_empty_results_and_the_server_stays_up(client: LanguageClient) -> None:
    other = types.TextDocumentIdentifier(uri="file:///nowhere.py")
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=other,
            position=pos(0, 0),
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
        )
    )
    assert result is not None and not result.items
    assert not (await inline(client, pos(9999, 0))).items
    state = await document_state(client)
    assert state["mirror"] == state["engine"]
