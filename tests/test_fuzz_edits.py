"""Fuzzing document sync over stdio: random edit sequences, as VS Code (UTF-16) and Neovim (UTF-8) send them.

Texts mix astral characters (two UTF-16 units, four UTF-8 bytes), accents, CRLF and lone CR line breaks,
characters that Python's `str.splitlines` takes for line breaks but LSP does not (\\f, \\x85, \\u2028),
NULs and other control characters, and empty documents. Each notification carries one to three changes
(ranges, or the whole document); some carry a change whose range is not in the text (a line past the
end, an end before its start, a column inside a character), and then none of its changes may be applied
and the user is told. A column past the end of its line means the line's end (LSP says so). After each
sequence the server's three copies (mirror, pygls' workspace, engine cache) must equal the client's,
and an inline completion must be answered.

The client's positions are computed here from the LSP rules, independently of `lsp_server.positions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import pytest_lsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsp_helpers import EDITORS, SERVER, Doc, document_state, initialize, inline, pos, units
from lsprotocol import types
from pytest_lsp import LanguageClient

MAX_FILE_BYTES = 1 << 20  # the 10 MB document and binary content get no cache; everything else does
PIECES = [
    "a",
    "x = 1",
    " ",
    "é",
    "ß",
    "中",
    "😀",
    "𝔘",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\x00",
    "\x1b",
    "\x0c",
    "\x85",
    "\u2028",
]
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # LSP's, and only LSP's

texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
inserts = st.lists(st.sampled_from(PIECES), max_size=4).map("".join)


@pytest_lsp.fixture(scope="module", config=SERVER, params=EDITORS)
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest, tiny_model_dir: str):
    options = {"modelPath": tiny_model_dir, "crossFileChars": 0, "maxTokens": 2, "maxFileBytes": MAX_FILE_BYTES}
    await initialize(lsp_client, request.param, options)
    yield
    await lsp_client.shutdown_session()


class LspDoc(Doc):
    """`Doc` with LSP's line breaks (\\r\\n, \\r, \\n) instead of '\\n' alone."""

    def position(self, offset: int) -> types.Position:
        assert 0 <= offset <= len(self.text)
        assert self.text[offset - 1 : offset + 1] != "\r\n", "inside a CRLF"
        line, start = 0, 0
        for m in LINE_BREAK.finditer(self.text, 0, offset):
            line, start = line + 1, m.end()
        return pos(line, units(self.text[start:offset], self.encoding))

    def lines(self) -> list[str]:
        return LINE_BREAK.split(self.text)

    def line_end(self, line: int) -> int:
        """Offset of the end of `line`'s content (before its line break)."""
        return (
            [m.start() for m in LINE_BREAK.finditer(self.text)][line]
            if line < len(self.lines()) - 1
            else len(self.text)
        )


def cacheable(text: str) -> bool:
    return "\x00" not in text and len(text.encode("utf-8")) <= MAX_FILE_BYTES


async def assert_synced(doc: LspDoc) -> None:
    state = await document_state(doc.client, doc.uri)
    assert state["mirror"] == doc.text
    assert state["workspace"] == doc.text
    assert state["engine"] == (doc.text if cacheable(doc.text) else None)


def offset_in(text: str, data: st.DataObject) -> int:
    """An offset that is a position: not between the two characters of a CRLF."""
    offset = data.draw(st.integers(0, len(text)))
    return offset - 1 if text[offset - 1 : offset + 1] == "\r\n" else offset


@dataclass
class Bad:
    """A change whose range is not in the text, and the words of the message refusing it."""

    change: types.TextDocumentContentChangePartial
    why: str


def bad_change(doc: LspDoc, data: st.DataObject) -> Bad | None:
    lines = doc.lines()
    kind = data.draw(st.sampled_from(["past the end", "ends before", "inside"]))
    if kind == "past the end":
        line = len(lines) + data.draw(st.integers(0, 1000))
        start = pos(line, data.draw(st.integers(0, 5)))
        end = start if data.draw(st.booleans()) else pos(line + 1, 0)
        if data.draw(st.booleans()):  # a valid start, an end past the last line
            start = pos(0, 0)
        return Bad(types.TextDocumentContentChangePartial(range=types.Range(start, end), text="!"), "past the end")
    if kind == "ends before":
        if len(doc.text) == 0:
            return None
        a = offset_in(doc.text, data)
        b = offset_in(doc.text, data)
        if doc.position(a) == doc.position(b):
            return None
        start, end = sorted([doc.position(a), doc.position(b)], key=lambda p: (p.line, p.character))
        change = types.TextDocumentContentChangePartial(range=types.Range(end, start), text="!")
        return Bad(change, "ends before it starts")
    # a column after the first unit of a character that takes several
    wide = [i for i, ch in enumerate(doc.text) if units(ch, doc.encoding) > 1]
    if not wide:
        return None
    i = data.draw(st.sampled_from(wide))
    before = doc.position(i)
    inside = pos(before.line, before.character + data.draw(st.integers(1, units(doc.text[i], doc.encoding) - 1)))
    change = types.TextDocumentContentChangePartial(range=types.Range(inside, inside), text="!")
    return Bad(change, "inside a character")


def good_change(doc: LspDoc, data: st.DataObject) -> types.TextDocumentContentChangeEvent:
    """A change, applied to `doc.text` at once (as an editor does before it sends it)."""
    choice = data.draw(st.integers(0, 9))
    if choice == 0:
        doc.text = data.draw(texts)
        return types.TextDocumentContentChangeWholeDocument(text=doc.text)
    if choice == 1:  # typing at a column past the end of its line: at the line's end
        lines = doc.lines()
        line = data.draw(st.integers(0, len(lines) - 1))
        column = units(lines[line], doc.encoding) + data.draw(st.integers(1, 1000))
        end = doc.line_end(line)
        text = data.draw(inserts)
        doc.text = doc.text[:end] + text + doc.text[end:]
        return types.TextDocumentContentChangePartial(
            range=types.Range(pos(line, column), pos(line, column)), text=text
        )
    a, b = sorted([offset_in(doc.text, data), offset_in(doc.text, data)])
    return doc.change_range(a, b, data.draw(inserts))


HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
counter = iter(range(10**9))


@pytest.mark.asyncio(loop_scope="module")
@HYPOTHESIS
@given(start=texts, data=st.data())
async def test_random_edit_sequences_stay_in_sync(client: LanguageClient, start: str, data: st.DataObject) -> None:
    doc = LspDoc(client, f"file:///project/fuzz_{next(counter)}.py", start).open()
    refused = []
    for _ in range(data.draw(st.integers(1, 6))):
        before, changes = doc.text, []
        count = data.draw(st.integers(1, 3))
        refuse_at = data.draw(st.integers(0, count)) if data.draw(st.integers(0, 3)) == 0 else None
        bad = None
        for i in range(count + 1):
            # a bad change is made against the text the changes before it left, like any other
            if i == refuse_at and (bad := bad_change(doc, data)) is not None:
                changes.append(bad.change)
            if i < count:
                changes.append(good_change(doc, data))
        if bad is not None:
            refused.append(bad.why)
            doc.text = before  # the whole notification is refused
        doc.send(*changes)
    await assert_synced(doc)
    messages = [m.message for m in client.messages if f"change to {doc.uri} " in m.message]
    assert len(messages) == len(refused), messages
    assert all(why in m and "ignored" in m for why, m in zip(refused, messages, strict=True)), messages
    result = await inline(client, doc.uri, doc.position(offset_in(doc.text, data)))
    assert all(isinstance(item.insert_text, str) for item in result.items)
    doc.close()


def big_document(megabytes: int) -> str:
    """Python-looking lines with CRLF and CR line breaks, accents and emoji, about `megabytes` MB."""
    line = "def f_{0}(x):  # é 😀\r\n    return x * {0}\r    pass\n"
    text = "".join(line.format(i) for i in range(megabytes * 2**20 // len(line.format(0).encode())))
    return text


@pytest.mark.asyncio(loop_scope="module")
async def test_a_10_mb_document_and_binary_content(client: LanguageClient) -> None:
    bystander = LspDoc(client, "file:///project/bystander.py", "import os\n\n\ndef main():\n").open()
    big = LspDoc(client, "file:///project/big.py", big_document(10)).open()
    await assert_synced(big)
    middle = len(big.text) // 2
    middle -= big.text[middle - 1 : middle + 1] == "\r\n"
    big.replace(middle, middle, "x = '😀'\r\n")
    big.replace(len(big.text) - 100, len(big.text), "")
    big.replace(10, 2000, "é")
    big.send(big.change_range(0, 5, ""), big.change_range(len(big.text), len(big.text), "\rend"))
    await assert_synced(big)
    binary = LspDoc(client, "file:///project/blob.py", bytes(range(256)).decode("latin-1") * 64).open()
    binary.replace(3, 300, "\x00\x01\r\n")
    binary.replace(len(binary.text), len(binary.text), "\ud7ff\ue000\uffff")
    await assert_synced(binary)
    assert (await document_state(client, binary.uri))["engine"] is None  # NUL: binary, no cache
    binary.replace_all("x = 1\n")  # no longer binary: cached again
    await assert_synced(binary)
    await assert_synced(bystander)
    result = await inline(client, bystander.uri, bystander.position(len(bystander.text)))
    assert all(isinstance(item.insert_text, str) for item in result.items)
    for doc in (big, binary, bystander):
        doc.close()
