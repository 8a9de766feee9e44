"""The JSON-RPC protocol under the server: what pygls does, except where it would fail on the client's input.

pygls 2.1's stdio loop (`pygls.io_.run_async`) loses the connection or the process on bad input: a
header it does not match exactly (`content-length: 5`) or a body shorter than its Content-Length
leaves it out of step for good, so every later message is ignored; `Content-Length: 1000000000000`
makes it allocate that many bytes and die of MemoryError; and a body it cannot parse or structure
gets no reply at all, so the client waits forever. Here instead:

- `read_frame` takes header names in any case, a Content-Length up to `MAX_CONTENT_LENGTH`, and
  finds the next message again after garbage (a header line that ends in `Content-Length: N`);
- `LiveKVProtocol.handle_body` answers what JSON-RPC 2.0 says: ParseError (-32700, id null) for a
  body that is not JSON, InvalidRequest (-32600) for JSON that is not a request, notification or
  response, InvalidParams (-32602) for a request whose params do not fit its method, naming the
  fields (JSON types are checked exactly: `"0"` is not a line number); requests after `shutdown`
  get InvalidRequest, as LSP asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, BinaryIO

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.io_ import StdoutWriter
from pygls.protocol import LanguageServerProtocol, lsp_method

log = logging.getLogger(__name__)

# A 10 MB document of control characters is about 60 MB of JSON (each escaped as \u00XX); four times
# that still fits in memory, and anything larger is not an editor's document.
MAX_CONTENT_LENGTH = 256 << 20
# Header names are case-insensitive (LSP's header part is HTTP's); searched at the end of a line, so
# that the header after a truncated body, read as the tail of one long line, is still found.
_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*(\d+)[ \t]*\r?\n\Z", re.IGNORECASE)
# The members pygls takes for each kind of message (it fails on a missing "params" or any other member).
_ENVELOPE = {
    "request": ("jsonrpc", "id", "method", "params"),
    "notification": ("jsonrpc", "method", "params"),
    "result": ("jsonrpc", "id", "result"),
    "error": ("jsonrpc", "id", "error"),
}


@dataclass(frozen=True)
class Unframed:
    """Input that could not be framed as a message: skipped, and why."""

    reason: str


def read_frame(stream: BinaryIO, limit: int = MAX_CONTENT_LENGTH) -> bytes | Unframed | None:
    """The next message body on `stream`, `Unframed` for a header block that gives no usable length,
    or None at the end of the input (also inside a body cut short by it).

    Lines that are not a Content-Length header (Content-Type, garbage between messages) are skipped;
    the last Content-Length before the blank line counts."""
    length: int | None = None
    too_large: int | None = None
    while True:
        line = stream.readline(limit)  # bounded: input without line breaks is read in pieces
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            if too_large is not None:
                return Unframed(f"Content-Length {too_large} is over the limit of {limit} bytes")
            if length is None:
                return Unframed("headers without a Content-Length")
            body = stream.read(length)
            return body if len(body) == length else None
        if m := _CONTENT_LENGTH.search(line):
            value = int(m.group(1))
            length, too_large = (value, None) if value <= limit else (None, value)


def envelope_problem(data: object) -> str | None:
    """Why `data` is not a JSON-RPC 2.0 request, notification or response (None if it is one)."""
    if not isinstance(data, dict):
        return f"a message must be a JSON object, not {type(data).__name__}"
    if data.get("jsonrpc") != "2.0":
        return f'"jsonrpc" must be "2.0", not {data.get("jsonrpc")!r}'
    if "method" in data:
        if not isinstance(data["method"], str):
            return f'"method" must be a string, not {type(data["method"]).__name__}'
        if "id" in data and not valid_id(data["id"]):
            return f'"id" must be an integer or a string, not {type(data["id"]).__name__}'
        if data.get("params") is not None and not isinstance(data["params"], dict | list):
            return f'"params" must be an object or an array, not {type(data["params"]).__name__}'
        return None
    if "id" not in data or ("result" in data) == ("error" in data):
        return 'a message needs a "method", or an "id" and one of "result" and "error"'
    return None


def valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _is_notification_method(method: str) -> bool:
    message_type = types.METHOD_TO_TYPES.get(method, (None,))[0]
    return message_type is not None and "id" not in attrs.fields_dict(message_type)


def _exactly(kind: type) -> Callable[[object, type], object]:
    """A cattrs structure hook that takes only JSON values of `kind` (cattrs' own calls `kind(value)`)."""

    def structure(value: object, _: type) -> object:
        if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"expected {kind.__name__}, not {value!r}")

    return structure


class LiveKVProtocol(LanguageServerProtocol):
    """pygls' protocol with livekv's stdio reader and replies to malformed messages; document
    changes are applied by `lsp_server.sync` alone (it keeps pygls' copy equal to its own)."""

    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        # cattrs converts what it can: {"line": "0"} or 0.7 became line 0 and {"text": 5} the text "5",
        # so a change with wrong types was applied somewhere; now it is InvalidParams
        for kind in (int, str, bool, float):
            converter.register_structure_hook(kind, _exactly(kind))

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        # pygls would apply the change to its copy first, with its own line splitting (str.splitlines:
        # also \f, \v, \x1c-\x1e, \x85, \u2028, \u2029) and its own clamping, which differ from LSP's
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    # -- the stdio loop --------------------------------------------------------------------

    def serve_io(self, stdin: BinaryIO, stdout: BinaryIO) -> None:
        """Serve LSP on a pair of byte streams until `exit` or the end of the input."""
        self.set_writer(StdoutWriter(stdout))
        try:
            asyncio.run(self._read_loop(stdin))
        except BrokenPipeError:
            log.error("connection to the client lost; stopping")
        except (KeyboardInterrupt, SystemExit):  # SystemExit: the `exit` notification
            pass
        finally:
            self._server.shutdown()

    async def _read_loop(self, stdin: BinaryIO) -> None:
        """Read one frame at a time on a daemon thread (a blocked read must not keep the process alive
        after `exit`) and handle it on the event loop."""
        loop = asyncio.get_running_loop()
        frames: asyncio.Queue[bytes | Unframed | None] = asyncio.Queue()
        wanted = threading.Semaphore(0)

        def read() -> None:
            while True:
                wanted.acquire()
                try:
                    frame = read_frame(stdin)
                except (OSError, ValueError) as err:  # stdin broken or closed under us: the end of the input
                    log.error("cannot read stdin: %s", err)
                    frame = None
                loop.call_soon_threadsafe(frames.put_nowait, frame)
                if frame is None:
                    return

        threading.Thread(target=read, name="livekv-stdin", daemon=True).start()
        while True:
            wanted.release()
            frame = await frames.get()
            if frame is None:
                log.info("end of input; stopping")
                return
            if isinstance(frame, Unframed):
                log.warning("input skipped: %s", frame.reason)
                self.send_error(None, JsonRpcInvalidRequest(f"input skipped: {frame.reason}"))
                continue
            try:
                self.handle_body(frame)
            except Exception:  # one message's failure must not end the session with the editor
                log.exception("unable to handle a message")

    # -- one message -----------------------------------------------------------------------

    def handle_body(self, body: bytes) -> None:
        """Parse, check and dispatch one message body, answering what cannot be dispatched."""
        try:
            data = json.loads(body)
        except ValueError as err:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
            log.warning("unparsable message: %s", err)
            self.send_error(None, JsonRpcParseError(f"message is not JSON: {err}"))
            return
        if (problem := envelope_problem(data)) is not None:
            log.warning("invalid message: %s", problem)
            msg_id = data.get("id") if isinstance(data, dict) and valid_id(data.get("id")) else None
            self.send_error(msg_id, JsonRpcInvalidRequest(f"invalid message: {problem}"))
            return
        is_request = "method" in data and "id" in data
        if is_request and _is_notification_method(data["method"]):
            self.send_error(data["id"], JsonRpcInvalidRequest(f"{data['method']} is a notification, not a request"))
            return
        kind = (
            ("request" if is_request else "notification")
            if "method" in data
            else "result"
            if "result" in data
            else "error"
        )
        data = {key: data.get(key) for key in _ENVELOPE[kind]}
        try:
            message = self.structure_message(data)
        except JsonRpcException as err:
            cause = err.__cause__
            why = "; ".join(cattrs.transform_error(cause)) if isinstance(cause, cattrs.BaseValidationError) else cause
            log.warning("message %s does not fit its method: %s", data.get("method"), why)
            if is_request:
                self.send_error(data["id"], JsonRpcInvalidParams(f"invalid params for {data['method']}: {why}"))
            return
        self.handle_message(message)

    def handle_message(self, message: Any) -> None:
        if self._shutdown and getattr(message, "method", types.EXIT) != types.EXIT and hasattr(message, "id"):
            self.send_error(message.id, JsonRpcInvalidRequest("the server is shutting down"))
            return
        super().handle_message(message)

    def send_error(self, msg_id: int | str | None, error: JsonRpcException) -> None:
        """An error response; with `"id": null` (as JSON-RPC asks) when the message's id is unknown."""
        if msg_id is not None:
            self._send_response(msg_id, error=error.to_response_error())
            return
        # pygls' ResponseErrorMessage would leave out a null id
        self._send_data({"jsonrpc": "2.0", "id": None, "error": {"code": error.code, "message": error.message}})
