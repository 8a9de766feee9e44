"""Helpers for the end-to-end tests: start the real server over stdio, keep a client-side copy of each
open document the way an editor does, and read the server's three copies back with `livekv/documentState`.

The client-side `Doc` converts its own positions (a plain count of code units per line), independent of
`lsp_server.positions`, so a conversion bug on either side shows up as a text mismatch.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server.cli", "serve"])
EDITORS = ["visual-studio-code", "neovim"]  # pytest-lsp's captured initialize parameters

# Each client's initialize result, by id(client): the pytest-lsp fixture yields the client itself.
_results: dict[int, types.InitializeResult] = {}
# Capabilities the server registered with each client (client/registerCapability), by id(client).
registrations: dict[int, list[types.Registration]] = {}


async def initialize(
    client: LanguageClient,
    editor: str,
    options: dict[str, Any],
    *,
    root_uri: str | None = None,
    capabilities: types.ClientCapabilities | None = None,
) -> types.InitializeResult:
    """`initialize` + `initialized` with the editor's real capabilities and the given initializationOptions.

    The server gets one torch thread unless told otherwise: the test machine's two cores are shared with
    other work, and two threads contending with it make every forward pass about ten times slower."""
    options = {"threads": 1, **options}

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams) -> None:  # as an editor does: accept and remember
        registrations.setdefault(id(client), []).extend(params.registrations)

    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities or client_capabilities(editor),
            client_info=types.ClientInfo(name=editor),
            initialization_options=options,
            root_uri=root_uri,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name="workspace")] if root_uri else None,
        )
    )
    _results[id(client)] = result
    return result


def server_capabilities(client: LanguageClient) -> types.ServerCapabilities:
    return _results[id(client)].capabilities


def encoding_of(client: LanguageClient) -> str:
    """The position encoding the server chose from the client's offer (UTF-16 when none was offered)."""
    encoding = server_capabilities(client).position_encoding or types.PositionEncodingKind.Utf16
    return encoding.value if isinstance(encoding, types.PositionEncodingKind) else str(encoding)


def units(text: str, encoding: str) -> int:
    """Length of `text` in the code units of an LSP position encoding."""
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def partial_change(
    uri: str, version: int, start: types.Position, end: types.Position, text: str
) -> types.DidChangeTextDocumentParams:
    """A didChange with one range change, positions given raw (for out-of-range and bad-version cases)."""
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start, end), text=text)],
    )


class Doc:
    """An editor buffer: its text and version, sent to the server as didOpen/didChange/didClose."""

    def __init__(self, client: LanguageClient, uri: str, text: str, version: int = 1) -> None:
        self.client, self.uri, self.text, self.version = client, uri, text, version
        self.encoding = encoding_of(client)

    def open(self) -> Doc:
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=self.uri, language_id="python", version=self.version, text=self.text)
            )
        )
        return self

    def close(self) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=self.uri))
        )

    def position(self, offset: int) -> types.Position:
        """The LSP position of a character offset of the current text ('\\n' line breaks)."""
        assert 0 <= offset <= len(self.text)
        line_start = self.text.rfind("\n", 0, offset) + 1
        return pos(self.text.count("\n", 0, offset), units(self.text[line_start:offset], self.encoding))

    def offset(self, needle: str, *, end: bool = True) -> int:
        """Offset just after (or at, with end=False) the only occurrence of `needle`."""
        assert self.text.count(needle) == 1, needle
        at = self.text.index(needle)
        return at + len(needle) if end else at

    def change_range(self, start: int, end: int, text: str) -> types.TextDocumentContentChangePartial:
        """A range change against the current text; applied to it locally, as an editor would."""
        change = types.TextDocumentContentChangePartial(
            range=types.Range(self.position(start), self.position(end)), text=text
        )
        self.text = self.text[:start] + text + self.text[end:]
        return change

    def send(self, *changes: types.TextDocumentContentChangeEvent, version: int | None = None) -> None:
        self.version = self.version + 1 if version is None else version
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
                content_changes=list(changes),
            )
        )

    def replace(self, start: int, end: int, text: str) -> None:
        self.send(self.change_range(start, end, text))

    def type(self, offset: int, keys: str) -> int:
        """Type `keys` one didChange per key from `offset`; returns the caret offset after them."""
        for key in keys:
            self.replace(offset, offset, key)
            offset += len(key)
        return offset

    def replace_all(self, text: str) -> None:
        self.text = text
        self.send(types.TextDocumentContentChangeWholeDocument(text=text))


async def document_state(client: LanguageClient, uri: str) -> dict[str, Any]:
    """`livekv/documentState` as a dict: mirror, workspace, engine, cachedDocuments, cacheBytes, cachedTokens,
    projectFiles, lastSuggestion (a list of (tokens, passes), one per draft)."""
    state = await client.protocol.send_request_async("livekv/documentState", {"uri": uri})
    keys = ("mirror", "workspace", "engine", "cachedDocuments", "cacheBytes", "cachedTokens", "projectFiles")
    out = {key: getattr(state, key) for key in keys}
    out["lastSuggestion"] = [(d.tokens, d.passes) for d in state.lastSuggestion]
    return out


async def cache_state(client: LanguageClient, uri: str) -> dict[str, Any]:
    """The document's cache in numbers (`livekv/documentState`): tokens held, missing and stale, the
    decode point, and the tokens run through the model for it so far by cause (edits, requests, refresh)."""
    state = await client.protocol.send_request_async("livekv/documentState", {"uri": uri})
    keys = ("cachedTokens", "layoutTokens", "missingTokens", "staleTokens", "decodeAt", "updatePolicy")
    out = {key: getattr(state, key) for key in keys}
    out["encoded"] = {key: getattr(state.encoded, key) for key in ("edits", "requests", "refresh")}
    out["preview"] = state.previewEncoded is not None
    return out


async def assert_in_sync(doc: Doc) -> None:
    """The server's mirror, pygls workspace and engine cache all hold exactly the client's text."""
    state = await document_state(doc.client, doc.uri)
    assert state["mirror"] == doc.text
    assert state["workspace"] == doc.text
    assert state["engine"] == doc.text


def inline_params(uri: str, position: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )


async def inline(client: LanguageClient, uri: str, position: types.Position) -> types.InlineCompletionList:
    result = await client.text_document_inline_completion_async(inline_params(uri, position))
    assert isinstance(result, types.InlineCompletionList)
    return result


async def eventually(
    check: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition", interval: float = 0.05
) -> None:
    """Wait until `check()` (sync or async) is truthy. The timeout only bounds a failing test's wait;
    it is far above the time the condition takes, so no assertion depends on speed. A check that asks
    the server for the result of idle-time work must poll less often than `idleRefreshMs`: every
    request postpones that work."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
