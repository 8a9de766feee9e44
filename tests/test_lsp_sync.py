"""End-to-end: document sync (didOpen/didChange/didClose) over stdio with VS Code's and Neovim's capabilities.

After every group of edits the server's three copies of the document (its mirror, pygls's workspace and
the engine's cache) must equal the client's text. VS Code negotiates UTF-16 positions and Neovim UTF-8,
so the astral and accented characters below are counted differently by each.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import (
    EDITORS,
    Doc,
    assert_in_sync,
    document_state,
    encoding_of,
    initialize,
    partial_change,
    pos,
    server_capabilities,
    units,
)
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

SOURCE = """class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def total(self):
        return sum(item.price for item in self.items)


def checkout(cart):
"""

# The server's log goes to a file so a test can check what was logged (warnings and up); the server
# creates it, one per test process, and it is removed after the module.
LOG = Path(tempfile.gettempdir()) / f"livekv-e2e-sync-{os.getpid()}.log"
SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server.cli", "serve", "--log-file", str(LOG)])


@pytest.fixture(scope="module", autouse=True)
def remove_log() -> Iterator[None]:
    yield  # module-scoped autouse: torn down after both servers have stopped
    LOG.unlink(missing_ok=True)


@pytest_lsp.fixture(scope="module", config=SERVER, params=EDITORS)
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest, tiny_model_dir: str):
    # no cross-file context: each test opens look-alike documents, and sync needs neither it nor the embedded model
    await initialize(lsp_client, request.param, {"modelPath": tiny_model_dir, "maxTokens": 16, "crossFileChars": 0})
    yield
    await lsp_client.shutdown_session()


def log_text() -> str:
    return LOG.read_text(encoding="utf-8") if LOG.exists() else ""


def new_messages(client: LanguageClient, before: int) -> list[types.ShowMessageParams]:
    return client.messages[before:]


@pytest.mark.asyncio(loop_scope="module")
async def test_incremental_sync_in_the_editors_encoding(client: LanguageClient) -> None:
    sync = server_capabilities(client).text_document_sync
    assert isinstance(sync, types.TextDocumentSyncOptions)
    assert sync.open_close and sync.change == types.TextDocumentSyncKind.Incremental
    offered = client.capabilities.general.position_encodings  # Neovim offers UTF-8 first, VS Code nothing
    assert encoding_of(client) == (offered[0] if offered else "utf-16")


@pytest.mark.asyncio(loop_scope="module")
async def test_typing_key_by_key(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/typing.py", SOURCE).open()
    await assert_in_sync(doc)
    caret = doc.type(len(doc.text), "    tot")
    await assert_in_sync(doc)
    assert doc.text.endswith("def checkout(cart):\n    tot")
    doc.replace(caret - 1, caret, "")  # backspace
    doc.type(caret - 1, "tal()\n")
    await assert_in_sync(doc)
    assert doc.text.endswith("def checkout(cart):\n    total()\n")


@pytest.mark.asyncio(loop_scope="module")
async def test_line_deletions(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/deletions.py", SOURCE).open()
    start = doc.offset("        self.items.append(item)\n", end=False)
    doc.replace(start, start + len("        self.items.append(item)\n"), "")  # a whole line, like `dd`
    await assert_in_sync(doc)
    assert "append" not in doc.text
    # a range over two lines: joins `def total(self):` with the line after it
    doc.replace(doc.offset("def total(self):"), doc.offset("return sum", end=False), " ")
    await assert_in_sync(doc)
    assert "def total(self): return sum(" in doc.text


@pytest.mark.asyncio(loop_scope="module")
async def test_astral_and_accented_characters_before_edits_on_the_same_line(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/unicode.py", SOURCE).open()
    doc.replace(0, 0, 'label = "😀 café"  # note\n')
    await assert_in_sync(doc)
    # Every edit below is on that line after the two characters, so its column depends on counting
    # 😀 (2 UTF-16 units, 4 UTF-8 bytes) and é (1 UTF-16 unit, 2 UTF-8 bytes) the way the client does.
    doc.replace(doc.offset("note", end=False), doc.offset("note"), "mood")
    doc.type(doc.offset("# mood"), " ok")
    await assert_in_sync(doc)
    doc.replace(doc.offset("caf"), doc.offset("café"), "e")  # delete é, type e
    doc.replace(doc.offset("😀"), doc.offset("😀"), "😀")  # right after the astral character
    doc.type(doc.offset("mood ok"), "!")
    await assert_in_sync(doc)
    assert doc.text.startswith('label = "😀😀 cafe"  # mood ok!\nclass Cart:')
    doc.replace(doc.offset('"😀', end=False), doc.offset('cafe"'), "'x'")  # a range starting before both
    await assert_in_sync(doc)
    assert doc.text.startswith("label = 'x'  # mood ok!\n")


@pytest.mark.asyncio(loop_scope="module")
async def test_several_changes_in_one_notification(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/multi.py", SOURCE).open()
    # VS Code sends multi-cursor edits as one didChange whose changes apply one after another
    first = doc.change_range(doc.offset("def add"), doc.offset("def add"), "_item")
    second = doc.change_range(doc.offset("def total"), doc.offset("def total"), "_price")
    third = doc.change_range(0, 0, "# 😀\n")
    doc.send(first, second, third)
    await assert_in_sync(doc)
    assert "def add_item(self, item)" in doc.text and "def total_price(self)" in doc.text


@pytest.mark.asyncio(loop_scope="module")
async def test_whole_document_change(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/whole.py", SOURCE).open()
    doc.replace_all("import os\n\n\ndef main():\n    print(os.getcwd())  # é 😀\n")
    await assert_in_sync(doc)
    doc.type(doc.offset("# é 😀"), " cwd")
    await assert_in_sync(doc)
    doc.replace_all("")
    await assert_in_sync(doc)
    doc.type(0, "x = 1")
    await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_lower_version_is_applied_in_arrival_order_and_logged(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/versions.py", SOURCE, version=10).open()
    doc.type(len(doc.text), "    a")  # versions 11..15
    assert doc.version == 15
    logged = len(log_text())
    doc.send(doc.change_range(len(doc.text), len(doc.text), "b"), version=12)
    await assert_in_sync(doc)
    assert doc.text.endswith("    ab")
    assert "file:///project/versions.py has version 12 <= 15; applied in arrival order" in log_text()[logged:]
    doc.type(len(doc.text), "c")  # the next version after the low one is accepted as usual
    await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_change_for_an_unknown_document_leaves_the_others_untouched(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/bystander.py", SOURCE).open()
    await assert_in_sync(doc)
    client.text_document_did_change(partial_change("file:///project/never_opened.py", 2, pos(0, 0), pos(0, 0), "x"))
    await assert_in_sync(doc)
    state = await document_state(client, "file:///project/never_opened.py")
    assert state["mirror"] is None and state["engine"] is None
    doc.type(0, "# still here\n")
    await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_change_for_an_unknown_document_is_ignored_quietly(client: LanguageClient) -> None:
    before, logged = len(client.messages), len(log_text())
    uri = "file:///project/never_opened_either.py"
    client.text_document_did_change(partial_change(uri, 2, pos(0, 0), pos(0, 0), "x"))
    await document_state(client, uri)  # the error message, if any, is sent before this reply
    assert [m.message for m in new_messages(client, before) if m.type == types.MessageType.Error] == []
    assert f"change for unknown document {uri} ignored" in log_text()[logged:]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_change_outside_the_document_is_reported_and_not_applied(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/out_of_range.py", 'label = "😀"\n' + SOURCE).open()
    await assert_in_sync(doc)
    before = len(client.messages)
    bad = [
        (pos(999, 0), pos(999, 0)),  # a line past the end of the document
        (pos(2, 4), pos(1, 0)),  # a range that ends before it starts
        (pos(0, 10), pos(0, 10)),  # inside 😀 (after its first UTF-16 unit / UTF-8 byte)
    ]
    for start, end in bad:
        client.text_document_did_change(partial_change(doc.uri, doc.version + 1, start, end, "oops"))
        state = await document_state(client, doc.uri)
        assert state["mirror"] == state["engine"] == doc.text  # what the server had, unchanged
    shown = new_messages(client, before)
    assert len(shown) == len(bad)
    assert all(m.type == types.MessageType.Warning and "ignored" in m.message for m in shown)
    assert "past the end of the document" in shown[0].message
    assert "ends before it starts" in shown[1].message
    assert "inside a character" in shown[2].message
    # the server is still up and keeps applying the client's next changes
    doc.type(len(doc.text), "pass\n")
    state = await document_state(client, doc.uri)
    assert state["mirror"] == state["engine"] == doc.text


@pytest.mark.asyncio(loop_scope="module")
async def test_a_rejected_change_leaves_all_three_copies_equal(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/out_of_range_workspace.py", SOURCE).open()
    client.text_document_did_change(partial_change(doc.uri, doc.version + 1, pos(999, 0), pos(999, 0), "oops"))
    await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_close_then_reopen(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/reopened.py", SOURCE).open()
    doc.type(0, "# v1\n")
    doc.close()
    state = await document_state(client, doc.uri)
    assert state["mirror"] is None and state["workspace"] is None and state["engine"] is None
    doc = Doc(client, doc.uri, "# v2\n" + SOURCE).open()
    await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_column_past_the_end_of_a_line_is_its_end(client: LanguageClient) -> None:
    # pygls clamped such a column to one before the end on a last line, in the params our handler then
    # read: "x = 1" became "x = !1", and after "😀" the column fell inside the emoji and was refused
    for text in ("x = 1", "a😀", "first\r\nx = 1"):
        doc = Doc(client, f"file:///project/past_end_{len(text)}.py", text).open()
        line = text.count("\n")
        client.text_document_did_change(partial_change(doc.uri, doc.version + 1, pos(line, 99), pos(line, 99), "!"))
        doc.text, doc.version = text + "!", doc.version + 1
        await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_notification_with_one_bad_change_applies_none_of_its_changes(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/atomic.py", SOURCE).open()
    before, shown = doc.text, len(client.messages)
    good = doc.change_range(0, 0, "# first\n")
    bad = types.TextDocumentContentChangePartial(range=types.Range(pos(999, 0), pos(999, 0)), text="oops")
    doc.send(good, bad)
    doc.text = before  # refused whole: the editor is told, and the server keeps what it had
    await assert_in_sync(doc)
    assert ["past the end" in m.message for m in new_messages(client, shown)] == [True]
    doc.type(0, "ok")
    await assert_in_sync(doc)


@pytest.mark.asyncio(loop_scope="module")
async def test_only_lsp_line_breaks_end_lines(client: LanguageClient) -> None:
    # \f, \x85 and \u2028 are line breaks to str.splitlines (and so to pygls' copy) but not to LSP;
    # a lone \r is one to LSP
    doc = Doc(client, "file:///project/breaks.py", "a\x0cb\x85c\u2028d\re\n").open()
    end_of_first = units("a\x0cb\x85c\u2028d", encoding_of(client))
    client.text_document_did_change(partial_change(doc.uri, 2, pos(0, end_of_first), pos(1, 1), "X"))
    doc.text, doc.version = "a\x0cb\x85c\u2028dX\n", 2
    await assert_in_sync(doc)
