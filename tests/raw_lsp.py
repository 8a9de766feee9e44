"""A raw stdio client for the real server: writes arbitrary bytes, reads framed replies with a timeout.

pytest-lsp only sends well-formed messages; the fuzz tests need to send broken headers, truncated
bodies and invalid JSON, then check the server still answers a proper request. Every reply the
server writes is parsed strictly (a `Content-Length` header, a blank line, a JSON object), so a
server that ever writes a malformed frame fails the test that reads it.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

_HEADER = re.compile(rb"Content-Length: (\d+)\r\n")

# What a minimal editor offers: no progress, no file watching, so the server sends it no requests.
CAPABILITIES: dict[str, Any] = {"general": {"positionEncodings": ["utf-16"]}}


class ServerOutputError(AssertionError):
    """The server wrote something that is not a well-formed LSP frame."""


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def encode(message: dict[str, Any]) -> bytes:
    return frame(json.dumps(message).encode("utf-8"))


class RawServer:
    """`python -m lsp_server.cli serve` as a subprocess, its stderr in `log_path`."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._stderr = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lsp_server.cli", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._inbox: queue.Queue[dict[str, Any] | ServerOutputError | None] = queue.Queue()
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []  # everything the server sent that was not a response
        self._responses: dict[Any, dict[str, Any]] = {}  # by id, read but not asked for yet
        self.unattributed: list[dict[str, Any]] = []  # error responses with "id": null, in arrival order
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    # -- bytes out -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(encode(message))

    def request(self, method: str, params: Any = None) -> int:
        """Send a request; returns its id (read the reply with `response`)."""
        msg_id = next(self._ids)
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, **({} if params is None else {"params": params})})
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, **({} if params is None else {"params": params})})

    # -- frames in -------------------------------------------------------------------------

    def _read(self, stdout: IO[bytes] | None) -> None:
        assert stdout is not None
        try:
            while True:
                header = stdout.readline()
                if not header:
                    return
                m = _HEADER.fullmatch(header)
                if m is None:
                    raise ServerOutputError(f"bad header line from the server: {header[:200]!r}")
                length = int(m.group(1))
                headers_end = stdout.readline()
                while headers_end.startswith(b"Content-Type:"):
                    headers_end = stdout.readline()
                if headers_end != b"\r\n":
                    raise ServerOutputError(f"no blank line after the headers: {headers_end[:200]!r}")
                body = stdout.read(length)
                if len(body) != length:
                    raise ServerOutputError(f"body cut short: {len(body)} of {length} bytes")
                message = json.loads(body)
                if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                    raise ServerOutputError(f"not a JSON-RPC 2.0 message: {body[:200]!r}")
                self._inbox.put(message)
        except (ServerOutputError, ValueError) as err:
            self._inbox.put(err if isinstance(err, ServerOutputError) else ServerOutputError(str(err)))
        finally:
            self._inbox.put(None)  # end of output

    def next_message(self, timeout: float) -> dict[str, Any] | None:
        """The next message the server sent, or None if none came within `timeout` seconds."""
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, ServerOutputError):
            raise item
        if item is None:
            self._inbox.put(None)  # stays at end of output for later reads
            raise ServerOutputError(f"the server closed its output (exit code {self.proc.poll()})")
        return item

    def response(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any] | None:
        """The response to `msg_id` (None if it did not come within `timeout`); messages read on the way
        are kept: notifications in `notifications`, other responses for their own `response` call."""
        deadline = time.monotonic() + timeout
        while msg_id not in self._responses:
            message = self.next_message(max(0.0, deadline - time.monotonic()))
            if message is None:
                return None
            if "method" in message:
                self.notifications.append(message)
            elif message.get("id") is None:
                self.unattributed.append(message)
            else:
                self._responses[message.get("id")] = message
        return self._responses.pop(msg_id)

    def take_unasked(self) -> dict[Any, dict[str, Any]]:
        """The responses read so far that no `response` call asked for, by id (and forgets them)."""
        out, self._responses = self._responses, {}
        return out

    def call(self, method: str, params: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        """Request and wait for its response (failing if none comes)."""
        msg_id = self.request(method, params)
        reply = self.response(msg_id, timeout)
        assert reply is not None, f"no reply to {method} within {timeout} s"
        return reply

    def drain(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        """Everything the server sends until it is quiet for `quiet` seconds."""
        out = []
        while (message := self.next_message(quiet)) is not None:
            out.append(message)
        return out

    # -- a session -------------------------------------------------------------------------

    def initialize(self, options: dict[str, Any]) -> dict[str, Any]:
        """`initialize` (with `options` as initializationOptions, one torch thread) and `initialized`."""
        reply = self.call(
            "initialize",
            {
                "processId": None,
                "rootUri": None,
                "capabilities": CAPABILITIES,
                "initializationOptions": {"threads": 1, **options},
            },
            timeout=60.0,
        )
        assert "result" in reply, reply
        self.notify("initialized", {})
        return reply["result"]

    def open(self, uri: str, text: str, version: int = 1) -> None:
        item = {"uri": uri, "languageId": "python", "version": version, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})

    def document_state(self, uri: str) -> dict[str, Any]:
        reply = self.call("livekv/documentState", {"uri": uri})
        assert "result" in reply, reply
        return reply["result"]

    def stop(self, timeout: float = 30.0) -> int:
        """`shutdown` then `exit`; the process's exit code."""
        reply = self.call("shutdown", timeout=timeout)
        assert reply.get("result", "missing") is None, reply
        self.notify("exit")
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")
