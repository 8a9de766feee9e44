"""Fuzzing the JSON-RPC layer: the framing reader on its own, then the real server over stdio.

The server must answer every malformed message that JSON-RPC 2.0 says to answer (ParseError -32700
with id null for a body that is not JSON, InvalidRequest -32600 for JSON that is not a message,
MethodNotFound -32601 for an unknown request, InvalidParams -32602 for params that do not fit the
method), ignore unknown notifications, find the next message again after broken headers or a
truncated body, survive a Content-Length of 10**12, and keep the documents it holds unchanged. One
server serves the whole module; after every example a `livekv/documentState` request must be
answered with the bystander document's text, unchanged.
"""

from __future__ import annotations

import io
import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from raw_lsp import RawServer, frame

from lsp_server.protocol import MAX_CONTENT_LENGTH, Unframed, read_frame

BYSTANDER = "file:///project/bystander.py"
BYSTANDER_TEXT = "def total(items):\n    return sum(i.price for i in items)  # 😀 café\r\n"
SERVER_METHODS = {"livekv/documentState"} | set(types.METHOD_TO_TYPES)
# Notifications that would change what the next example sees: not sent with random params.
STATEFUL = {types.EXIT, types.INITIALIZED, types.INITIALIZE, types.SHUTDOWN}
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- the framing reader alone (fast: many examples) --------------------------------------------

bodies = st.binary(min_size=0, max_size=80)


def frames_of(stream: bytes) -> list[bytes | Unframed]:
    source, out = io.BytesIO(stream), []
    while (item := read_frame(source, limit=1000)) is not None:
        out.append(item)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(bodies, max_size=5), st.data())
def test_well_formed_frames_come_back_in_order_whatever_the_header_spelling(
    messages: list[bytes], data: st.DataObject
) -> None:
    stream = b""
    for body in messages:
        name = data.draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH", "Content-length"]))
        eol = data.draw(st.sampled_from([b"\r\n", b"\n"]))
        space = data.draw(st.sampled_from([b" ", b"", b"  \t"]))
        extra = data.draw(st.sampled_from([b"", b"Content-Type: application/vscode-jsonrpc; charset=utf-8" + eol]))
        length = name.encode() + b":" + space + b"%d" % len(body) + eol
        repeat = data.draw(st.booleans())  # the same Content-Length twice is harmless
        stream += extra + length + (length if repeat else b"") + extra + eol + body
    assert frames_of(stream) == messages


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).filter(lambda junk: b"\n" not in junk), st.lists(bodies, min_size=1, max_size=3))
def test_after_junk_without_line_breaks_the_next_header_is_found(junk: bytes, messages: list[bytes]) -> None:
    # e.g. the rest of a body shorter than its Content-Length: it runs into the next header line
    stream = junk + b"".join(frame(body) for body in messages)
    assert frames_of(stream) == messages


@settings(max_examples=100, deadline=None)
@given(st.integers(1001, 10**15), bodies)
def test_a_content_length_over_the_limit_is_skipped_and_the_next_message_read(length: int, body: bytes) -> None:
    stream = b"Content-Length: %d\r\n\r\n{}" % length + frame(body)
    skipped, after = frames_of(stream)
    assert isinstance(skipped, Unframed) and "over the limit" in skipped.reason
    assert after == body


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([b"", b"Content-Type: x\r\n", b"Content-Length: -3\r\n", b"Content-Length: 1e3\r\n"]), bodies)
def test_headers_without_a_usable_length_are_reported(headers: bytes, body: bytes) -> None:
    skipped, *_ = frames_of(headers + b"\r\n" + frame(body))
    assert isinstance(skipped, Unframed) and "without a Content-Length" in skipped.reason


def test_the_end_of_input_inside_a_body_ends_the_stream() -> None:
    assert frames_of(b"Content-Length: 10\r\n\r\n{}") == []
    assert frames_of(frame(b"{}") + b"Content-Len") == [b"{}"]


# -- the real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawServer]:
    log = tmp_path_factory.mktemp("fuzz-protocol") / "server.log"
    raw = RawServer(log)
    try:
        raw.initialize({"modelPath": tiny_model_dir, "crossFileChars": 0})
        raw.open(BYSTANDER, BYSTANDER_TEXT)
        yield raw
    finally:
        raw.kill()


def assert_serving(server: RawServer) -> None:
    """The server answers a well-formed request, with the bystander document as it was opened."""
    state = server.document_state(BYSTANDER)
    assert state["mirror"] == state["workspace"] == state["engine"] == BYSTANDER_TEXT


@dataclass
class Case:
    """A message body and what the server must answer: an error code for `id` (None: an error with
    "id": null), any reply for `id` (codes empty), or nothing (`reply` False)."""

    body: bytes
    reply: bool = True
    id: Any = None
    codes: tuple[int, ...] = ()
    label: str = field(default="", compare=False)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)
# valid ids that never collide with the raw client's own (1, 2, 3, ...)
ids = st.integers(10**9, 10**30) | st.integers(-(10**30), -1) | st.text(max_size=12)
bad_ids = st.none() | st.booleans() | st.floats(allow_nan=False) | st.lists(json_scalars, max_size=2) | st.just({})
structured = (
    st.none() | st.dictionaries(st.text(max_size=6), json_values, max_size=4) | st.lists(json_values, max_size=3)
)
unknown_methods = (st.text(max_size=20) | st.text(max_size=12).map(lambda m: "$/" + m)).filter(
    lambda m: m not in SERVER_METHODS
)
# requests the server handles, and one it does not (pygls checks the params of every LSP method first)
request_methods = st.sampled_from(
    [types.TEXT_DOCUMENT_INLINE_COMPLETION, types.TEXT_DOCUMENT_COMPLETION, types.TEXT_DOCUMENT_HOVER]
)
notification_methods = st.sampled_from(
    [
        types.TEXT_DOCUMENT_DID_OPEN,
        types.TEXT_DOCUMENT_DID_CHANGE,
        types.TEXT_DOCUMENT_DID_CLOSE,
        types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        types.CANCEL_REQUEST,
        types.SET_TRACE,
    ]
)


def dumps(message: Any) -> bytes:
    return json.dumps(message).encode()


def not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


@st.composite
def malformed(draw: st.DrawFn) -> Case:
    """One message body from a family of malformed (or merely unusual) ones, and the answer it needs."""
    kind = draw(st.integers(0, 14))
    msg_id = draw(ids)
    method = draw(unknown_methods)
    if kind == 0:  # not JSON at all
        body = draw((st.binary(max_size=60) | st.text(max_size=60).map(str.encode)).filter(not_json))
        return Case(body, codes=(-32700,), label="not JSON")
    if kind == 1:  # a request cut short
        whole = dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": draw(structured)})
        return Case(whole[: draw(st.integers(0, len(whole) - 1))], codes=(-32700,), label="truncated JSON")
    if kind == 2:  # invalid UTF-8 inside a string
        whole = dumps({"jsonrpc": "2.0", "id": msg_id, "method": "x"})
        cut = whole.index(b'"x"') + 1
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80", b"\xf8\x88\x80\x80\x80"]))
        return Case(whole[:cut] + bad + whole[cut:], codes=(-32700,), label="invalid UTF-8")
    if kind == 3:  # JSON that is not an object (LSP has no batches)
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return Case(dumps(value), codes=(-32600,), label="not an object")
    if kind == 4:  # wrong or missing "jsonrpc"
        version = draw(st.none() | st.text(max_size=5).filter(lambda v: v != "2.0") | st.integers() | st.just(2.0))
        message = {"id": msg_id, "method": method, **({} if version is None else {"jsonrpc": version})}
        return Case(dumps(message), id=msg_id, codes=(-32600,), label="bad jsonrpc")
    if kind == 5:  # "method" that is not a string
        message = {"jsonrpc": "2.0", "id": msg_id, "method": draw(json_values.filter(lambda v: not isinstance(v, str)))}
        return Case(dumps(message), id=msg_id, codes=(-32600,), label="bad method")
    if kind == 6:  # an id that is neither an integer nor a string: it cannot be echoed
        message = {"jsonrpc": "2.0", "id": draw(bad_ids), "method": method}
        return Case(dumps(message), codes=(-32600,), label="bad id")
    if kind == 7:  # params that are neither an object nor an array
        params = draw(json_scalars.filter(lambda v: v is not None))
        message = {"jsonrpc": "2.0", "id": msg_id, "method": draw(request_methods | unknown_methods), "params": params}
        return Case(dumps(message), id=msg_id, codes=(-32600,), label="bad params type")
    if kind == 8:  # unknown request, params present, absent or null, extra members
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if (params := draw(structured | st.just("absent"))) != "absent":
            message["params"] = params
        message.update(draw(st.dictionaries(st.sampled_from(["extra", "x", "meta"]), json_values, max_size=2)))
        return Case(dumps(message), id=msg_id, codes=(-32601,), label="unknown request")
    if kind == 9:  # unknown notification (including "$/..."): ignored
        return Case(dumps({"jsonrpc": "2.0", "method": method, "params": draw(structured)}), reply=False)
    if kind == 10:  # a known request whose params do not fit its method
        params = draw(st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=4) | st.lists(json_values))
        message = {"jsonrpc": "2.0", "id": msg_id, "method": draw(request_methods), "params": params}
        return Case(dumps(message), id=msg_id, codes=(-32602,), label="bad params")
    if kind == 11:  # a known notification whose params do not fit: logged, never answered
        params = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4) | st.lists(json_values))
        return Case(dumps({"jsonrpc": "2.0", "method": draw(notification_methods), "params": params}), reply=False)
    if kind == 12:  # a notification method sent as a request
        message = {"jsonrpc": "2.0", "id": msg_id, "method": draw(notification_methods), "params": {}}
        return Case(dumps(message), id=msg_id, codes=(-32600,), label="request to a notification")
    if kind == 13:  # livekv's own request with any params: some answer (a result or an error), never silence
        message = {"jsonrpc": "2.0", "id": msg_id, "method": "livekv/documentState", "params": draw(structured)}
        return Case(dumps(message), id=msg_id, label="documentState")
    # a response from the client to a request the server never made: ignored
    reply = {"result": draw(json_values)} if draw(st.booleans()) else {"error": {"code": -1, "message": "no"}}
    return Case(dumps({"jsonrpc": "2.0", "id": msg_id, **reply}), reply=False)


def check_answer(server: RawServer, case: Case) -> None:
    if case.reply and case.id is not None:
        reply = server.response(case.id, timeout=30)
        assert reply is not None, f"{case.label}: no reply to {case.body[:200]!r}"
        if case.codes:
            assert reply.get("error", {}).get("code") in case.codes, (case.label, reply)
    assert_serving(server)
    null_errors = [e["error"]["code"] for e in server.unattributed]
    server.unattributed.clear()
    expected = list(case.codes) if case.reply and case.id is None else []
    assert null_errors == expected, (case.label, case.body[:200])
    assert server.take_unasked() == {}, case.label


@settings(FUZZ, max_examples=250)
@given(malformed())
def test_malformed_messages_get_json_rpc_errors_and_the_server_keeps_serving(server: RawServer, case: Case) -> None:
    server.write(frame(case.body))
    check_answer(server, case)


@st.composite
def unframed(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """Bytes with broken framing, and the id of a request in them the server must still answer (None:
    nothing in them can be answered). Declared lengths stay under PAD, so padding completes any body."""
    msg_id = draw(st.integers(10**9, 10**12))
    body = dumps({"jsonrpc": "2.0", "id": msg_id, "method": draw(unknown_methods)})
    kind = draw(st.integers(0, 8))
    if kind == 0:  # header name in another case, LF line ends, odd spacing: all accepted
        name = draw(st.sampled_from([b"content-length", b"CONTENT-LENGTH", b"Content-length"]))
        eol = draw(st.sampled_from([b"\r\n", b"\n"]))
        return name + b":  %d" % len(body) + eol + eol + body, msg_id
    if kind == 1:  # extra and repeated headers around a correct Content-Length
        extra = draw(st.lists(st.sampled_from([b"Content-Type: text/plain\r\n", b"X-Junk: 1\r\n"]), max_size=3))
        length = b"Content-Length: %d\r\n" % len(body)
        return b"".join(extra) + length + length + b"".join(extra) + b"\r\n" + body, msg_id
    if kind == 2:  # no Content-Length at all
        return b"Content-Type: application/json\r\n\r\n" + body, None
    if kind == 3:  # a value that is not a length
        value = draw(st.sampled_from([b"-5", b"1e3", b"abc", b"", b"0x10", b"12 34"]))
        return b"Content-Length: " + value + b"\r\n\r\n" + body, None
    if kind == 4:  # two Content-Lengths that disagree
        a, b = draw(st.integers(0, 300)), draw(st.integers(0, 300))
        return b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (a, b) + body, None
    if kind == 5:  # a body shorter than its Content-Length
        return b"Content-Length: %d\r\n\r\n" % (len(body) + draw(st.integers(1, 300))) + body, None
    if kind == 6:  # a Content-Length the server must not try to read (10**12 made pygls die of MemoryError)
        length = draw(st.integers(MAX_CONTENT_LENGTH + 1, 10**15) | st.just(10**12))
        return b"Content-Length: %d\r\n\r\n" % length + body, None
    if kind == 7:  # line ends that are not line ends
        return b"Content-Length: %d\r\r" % len(body) + body, None
    return draw(st.binary(max_size=300)), None  # anything at all


PAD = b" " * 400  # completes a body the server is still reading, or joins the next header line


@settings(FUZZ, max_examples=120)
@given(unframed())
def test_broken_framing_is_recovered_from(server: RawServer, garbage: tuple[bytes, int | None]) -> None:
    data, msg_id = garbage
    server.write(data + PAD)
    if msg_id is not None:
        reply = server.response(msg_id, timeout=30)
        assert reply is not None and reply["error"]["code"] == -32601, (data[:200], reply)
    assert_serving(server)
    assert {e["error"]["code"] for e in server.unattributed} <= {-32700, -32600}
    server.unattributed.clear()
    server.take_unasked()  # answers to whatever the garbage held


@settings(FUZZ, max_examples=3)
@given(st.integers(2, 4), st.characters(codec="utf-8", exclude_categories=["Cs"]))
def test_huge_params(server: RawServer, megabytes: int, char: str) -> None:
    big = char * (megabytes << 20)
    reply = server.call("livekv/noSuchMethod", {"text": big}, timeout=60)
    assert reply["error"]["code"] == -32601
    uri = "file:///project/huge.py"
    server.open(uri, big)
    state = server.document_state(uri)
    assert state["mirror"] == state["workspace"] == big and state["engine"] is None  # over maxFileBytes: no cache
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert_serving(server)


positions = itertools.count()


@settings(FUZZ, max_examples=40)
@given(
    st.sampled_from(["line", "character"]),
    st.integers(max_value=-1)
    | st.integers(min_value=2**31)
    | st.floats(0, 3)
    | st.sampled_from(["0", "1", True, None]),
)
def test_a_position_that_is_no_integer_applies_nothing(server: RawServer, field: str, value: Any) -> None:
    # an editor's client library cannot even build one; cattrs used to turn "0" or 0.7 into 0
    uri = f"file:///project/position_{next(positions)}.py"
    server.open(uri, "abc\n")
    good = {"line": 0, "character": 1}
    change = {"range": {"start": {**good, field: value}, "end": {"line": 0, "character": 3}}, "text": "!"}
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]})
    state = server.document_state(uri)
    # lsprotocol checks the uinteger range; a column past the end of the line is its end (LSP), and
    # then the change is an insertion there
    clamped = field == "character" and type(value) is int and 0 < value < 2**31
    assert state["mirror"] == state["workspace"] == state["engine"] == ("abc!\n" if clamped else "abc\n")
    assert server.take_unasked() == {} and server.unattributed == []
    assert_serving(server)


def test_a_document_with_lone_surrogates(server: RawServer) -> None:
    # JSON can carry a lone surrogate ("\ud800"), and VS Code's strings can hold one
    uri = "file:///project/surrogates.py"
    text = "x = '\ud800'\ny = '\udfff😀'\n"
    server.open(uri, text)
    change = {"range": {"start": {"line": 1, "character": 6}, "end": {"line": 1, "character": 6}}, "text": "!"}
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]})
    expected = "x = '\ud800'\ny = '\udfff!😀'\n"
    state = server.document_state(uri)
    assert state["mirror"] == state["workspace"] == expected
    reply = server.call(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 2, "character": 0},
            "context": {"triggerKind": 2},
        },
        timeout=120,
    )
    assert "result" in reply, reply
    assert_serving(server)


def test_a_lone_surrogate_typed_into_a_cached_document(server: RawServer) -> None:
    # the tokenizer cannot take it: the engine's copy must still follow the text (it used to drift, and
    # the next completion failed with "cursor out of range")
    uri = "file:///project/surrogate_typed.py"
    server.open(uri, "import os\nx = 1\n")
    assert server.document_state(uri)["engine"] == "import os\nx = 1\n"
    for version, (line, text) in enumerate([(1, "\ud800"), (0, "y")], start=2):
        change = {
            "range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}},
            "text": text,
        }
        server.notify(
            "textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]}
        )
    state = server.document_state(uri)
    assert state["engine"] in (None, state["mirror"])
    position = {"line": 2, "character": 0}
    params = {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": 2}}
    assert "result" in server.call("textDocument/inlineCompletion", params, timeout=120)


def test_requests_after_shutdown_are_refused_and_exit_ends_the_process(server: RawServer) -> None:
    # last in the module: it stops the module's server
    assert_serving(server)
    assert server.call("shutdown")["result"] is None
    reply = server.call("livekv/documentState", {"uri": BYSTANDER})
    assert reply["error"]["code"] == -32600 and "shutting down" in reply["error"]["message"]
    server.notify("exit")
    assert server.wait(timeout=60) == 0


def test_tcp_uses_the_same_reader(tmp_path: Path) -> None:
    """`serve --tcp` reads with livekv's reader too: garbage first is answered, a lowercase header is read
    (pygls' TCP loop answered neither and ignored every later message)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "lsp_server.cli", "serve", "--tcp", str(port)]
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=60)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and server.poll() is None, "the server never listened"
                time.sleep(0.1)
        with connection, connection.makefile("rb") as replies:
            connection.sendall(frame(b"{not json"))
            body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "shutdown"}).encode()
            connection.sendall(b"content-length: %d\r\n\r\n" % len(body) + body)
            answers = [json.loads(read_frame(replies)) for _ in range(2)]  # type: ignore[arg-type]
        assert answers[0]["error"]["code"] == -32700 and answers[0]["id"] is None
        assert answers[1] == {"jsonrpc": "2.0", "id": 7, "result": None}
    finally:
        server.kill()
        server.wait(timeout=30)
