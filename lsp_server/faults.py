"""Crash safety: which faults are one kind, what the user is told, and the handler wrappers.

An unexpected exception anywhere (a handler, the model worker, jedi) goes to
`LiveKVServer.fault`: logged with its traceback, and shown to the user once per kind of fault
(`fault_kind`), never once per keystroke. The server goes on: completion requests are answered
empty (an error response would make editors report every failed keystroke themselves), a
failed document notification leaves the server's copies of that document equal to its mirror,
and the worker drops a cache that a failure may have left out of step (see lsp_server.worker).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer

T = TypeVar("T")
P = TypeVar("P")
MESSAGE_CHARS = 300  # of an error's text in the message shown (the log has all of it)


def fault_kind(where: str, err: Exception) -> str:
    """Faults of one kind are told once: running out of memory is one kind wherever it happens (a model
    that keeps running out of memory is one problem, and the sizes in its messages vary); any other
    error is its type and where it happened, so a second, different bug is still told."""
    if out_of_memory(err):
        return "out of memory"
    return f"{type(err).__name__} in {where}"


def out_of_memory(err: Exception) -> bool:
    """torch.OutOfMemoryError (a RuntimeError), the CPU allocator's RuntimeError, or Python's MemoryError."""
    text = str(err)
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def fault_message(where: str, err: Exception) -> str:
    what = f"{type(err).__name__}: {err}"[:MESSAGE_CHARS]
    if out_of_memory(err):
        return (
            f"the model ran out of memory in {where} ({what}); suggestions stay empty until memory is free "
            "(a smaller contextTokens or memoryBudgetMb needs less; repeats are only logged)"
        )
    return f"internal error in {where} ({what}); livekv goes on (the traceback is in its log, repeats are only logged)"


def guarded(
    method: str, handler: Callable[[LiveKVServer, P], Awaitable[T]], empty: T
) -> Callable[[LiveKVServer, P], Awaitable[T]]:
    """A completion handler whose exceptions are faults answered with `empty`: the editor sends these
    requests by itself as the user types, and would report each error response (VS Code pops up
    "Request ... failed", Neovim prints it), while the fault is already told once."""

    @functools.wraps(handler)  # pygls reads the signature (`ls` first) to pass the server
    async def run(ls: LiveKVServer, params: P) -> T:
        try:
            return await handler(ls, params)
        except Exception as err:
            ls.fault(method, err)
            return empty

    return run


def resyncing(method: str, handler: Callable[[LiveKVServer, Any], None]) -> Callable[[LiveKVServer, Any], None]:
    """A document notification whose exceptions are faults after which the document is resynchronised
    (`LiveKVServer.resync`), so no copy drifts from the others."""

    @functools.wraps(handler)
    def run(ls: LiveKVServer, params: Any) -> None:
        try:
            handler(ls, params)
        except Exception as err:
            ls.fault(method, err)
            uri = params.text_document.uri
            if method == types.TEXT_DOCUMENT_DID_CLOSE:  # closed in the editor, whatever failed
                ls.mirrors.pop(uri, None)
            ls.resync(uri)

    return run
