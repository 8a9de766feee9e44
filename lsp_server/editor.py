"""A scripted editor: starts `livekv serve` as a subprocess and talks LSP to it as VS Code does.

`livekv demo` and `livekv bench latency` use it to type into a real file key by key,
with pauses, and to ask for inline completions, timing each answer from the keystroke.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server.positions import Lines, position_at

CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(dynamic_registration=False),
        inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
        completion=types.CompletionClientCapabilities(),
    ),
    window=types.WindowClientCapabilities(work_done_progress=True),
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
)


@dataclass(frozen=True)
class Answer:
    text: str  # the first item's insert text ("" when none)
    seconds: float  # keystroke (or request) -> answer received, measured here
    server_seconds: float | None  # request start on the server's worker -> answer ready
    first_token_seconds: float | None  # request start on the worker -> first token chosen
    jedi_asked: int | None = None  # points the monitors asked jedi about (`livekv/status`)
    jedi_ready: int | None = None  # ... whose answer was there already

    @property
    def to_first_token(self) -> float | None:
        """Keystroke -> first token: the wait measured here minus the server's time after its first token."""
        if self.server_seconds is None or self.first_token_seconds is None:
            return None
        return self.seconds - (self.server_seconds - self.first_token_seconds)


class Editor:
    def __init__(self) -> None:
        self.client = LanguageClient("livekv-editor", "1")
        self.status: list[dict[str, Any]] = []
        self.messages: list[str] = []  # the server's window/logMessage and window/showMessage texts, in order
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.client.feature("livekv/status")(lambda params: self.status.append(_plain(params)))
        self.client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)(lambda params: None)
        self.client.feature(types.PROGRESS)(lambda params: None)
        self.client.feature(types.WINDOW_LOG_MESSAGE)(lambda params: self.messages.append(params.message))
        self.client.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: self._shown(params))

    async def start(self, options: dict[str, Any], root: str, log_file: str | None = None) -> None:
        cmd = [sys.executable, "-m", "lsp_server.cli", "serve", *(["--log-file", log_file] if log_file else [])]
        await self.client.start_io(*cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        server = self.client._server
        assert server is not None and server.stderr is not None
        self._drain = asyncio.ensure_future(_drain(server.stderr))  # a full stderr pipe would block the server
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=CAPABILITIES,
                client_info=types.ClientInfo(name="livekv-editor"),
                root_uri=f"file://{root}",
                initialization_options=options,
            )
        )
        self.client.initialized(types.InitializedParams())

    def _shown(self, params: types.ShowMessageParams) -> None:
        self.messages.append(params.message)
        print(f"server: {params.message}")

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()
        self._drain.cancel()

    async def open(self, uri: str, text: str) -> None:
        """Open a document and wait until the server holds it (the user starts typing later)."""
        self.open_now(uri, text)
        await self.state(uri)

    def open_now(self, uri: str, text: str) -> None:
        """Send didOpen and return at once (a request may follow straight away)."""
        self.texts[uri], self.versions[uri] = text, 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text))
        )

    def close(self, uri: str) -> None:
        self.texts.pop(uri, None)
        self.versions.pop(uri, None)
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))

    async def state(self, uri: str) -> Any:
        """`livekv/documentState`: answered by the worker after everything sent before it."""
        return await self.client.protocol.send_request_async("livekv/documentState", {"uri": uri})

    async def state_dict(self, uri: str) -> dict[str, Any]:
        """`state(uri)` as plain dicts and lists (pygls hands unknown results over as named tuples)."""
        state = to_plain(await self.state(uri))
        return state if isinstance(state, dict) else {}

    def edit(self, uri: str, start: int, end: int, new: str) -> None:
        text = self.texts[uri]
        lines = Lines.of(text)
        a, b = position_at(lines, start), position_at(lines, end)
        self.texts[uri] = text[:start] + new + text[end:]
        self.versions[uri] += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=self.versions[uri], uri=uri),
                [types.TextDocumentContentChangePartial(types.Range(types.Position(*a), types.Position(*b)), new)],
            )
        )

    async def inline(self, uri: str, offset: int, since: float | None = None) -> Answer:
        """Ask for ghost text at `offset`; `since` (a time.perf_counter() value) is the keystroke time."""
        t0 = time.perf_counter() if since is None else since
        before = len(self.status)
        line, character = position_at(Lines.of(self.texts[uri]), offset)
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri),
                position=types.Position(line, character),
                context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
            )
        )
        seconds = time.perf_counter() - t0
        await asyncio.sleep(0)  # let the status notification sent just before the answer be handled
        items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
        status = self.status[before] if len(self.status) > before else {}
        server = status.get("latencyMs")
        first = status.get("firstTokenMs")
        text = ""
        if items:
            start = items[0].range.start if items[0].range else types.Position(line, character)
            typed = character - start.character if start.line == line else 0
            text = str(items[0].insert_text)[typed:]
        return Answer(
            text,
            seconds,
            None if server is None else server / 1000,
            None if first is None else first / 1000,
            status.get("jediAsked"),
            status.get("jediReady"),
        )


def _plain(params: Any) -> dict[str, Any]:
    """The status notification's fields (pygls hands unknown params over as attribute objects)."""
    keys = ("latencyMs", "firstTokenMs", "model", "jediAsked", "jediReady")
    return {k: params.get(k) if isinstance(params, dict) else getattr(params, k, None) for k in keys}


def to_plain(value: Any) -> Any:
    """A JSON value pygls decoded into named tuples (objects of an unknown method's result) as dicts and lists."""
    if hasattr(value, "_fields"):
        return {k: to_plain(getattr(value, k)) for k in value._fields}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
