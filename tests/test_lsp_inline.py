"""End-to-end: textDocument/inlineCompletion (ghost text) over stdio with VS Code's and Neovim's capabilities.

The embedded model has no fill-in-the-middle tokens, so the prompt is the text before the cursor only.
Items replace the partial word before the cursor; a newer change or a `$/cancelRequest` ends a pending
request without a suggestion for the old text, and `livekv/status` reports each suggestion's latency.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import pytest_lsp
from lsp_helpers import EDITORS, SERVER, Doc, initialize, inline, inline_params, pos, server_capabilities
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.integration  # the server it starts loads the embedded model

SOURCE = """class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def total(self):
        return sum(item.price for item in self.items)


def checkout(cart):
"""


@pytest_lsp.fixture(scope="module", config=SERVER, params=EDITORS)
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest):
    # no cross-file context: the suggestions compared below must depend on their own document only
    await initialize(lsp_client, request.param, {"maxTokens": 16, "crossFileChars": 0})
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def doc(client: LanguageClient, request: pytest.FixtureRequest) -> Iterator[Doc]:
    """A fresh copy of SOURCE for each test, closed afterwards."""
    opened = Doc(client, f"file:///project/{request.node.originalname}.py", SOURCE).open()
    yield opened
    opened.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_advertises_inline_completion(client: LanguageClient) -> None:
    assert server_capabilities(client).inline_completion_provider is not None


@pytest.mark.asyncio(loop_scope="module")
async def test_the_item_replaces_the_partial_word_before_the_cursor(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    tot")
    result = await inline(client, doc.uri, doc.position(caret))
    assert len(result.items) == 1
    item = result.items[0]
    # editors filter items against the typed word, so the item starts with it and its range covers it
    assert isinstance(item.insert_text, str)
    assert item.insert_text.startswith("tot") and len(item.insert_text) > len("tot")
    assert "\n" not in item.insert_text  # one line: multiline is off by default
    last = doc.text.count("\n")
    assert item.range == types.Range(pos(last, 4), pos(last, 7))


@pytest.mark.asyncio(loop_scope="module")
async def test_the_range_is_in_the_negotiated_encoding(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), '    note = "😀é"; tot')
    result = await inline(client, doc.uri, doc.position(caret))
    assert len(result.items) == 1
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.startswith("tot")
    # 😀 is 2 UTF-16 units or 4 UTF-8 bytes and é 1 or 2: the start column depends on the encoding
    assert item.range == types.Range(doc.position(caret - 3), doc.position(caret))


@pytest.mark.asyncio(loop_scope="module")
async def test_only_the_text_before_the_cursor_is_the_prompt(client: LanguageClient) -> None:
    # The same prefix with and without code after the cursor: without FIM tokens the prompt is the
    # prefix alone, so greedy decoding gives the same suggestion.
    prefix = SOURCE + "    return cart.tot"
    alone = Doc(client, "file:///project/prefix_alone.py", prefix).open()
    followed = Doc(client, "file:///project/prefix_followed.py", prefix + "\n\nprint(checkout(Cart()))\n").open()
    first = await inline(client, alone.uri, alone.position(len(prefix)))
    second = await inline(client, followed.uri, followed.position(len(prefix)))
    alone.close()
    followed.close()
    assert len(first.items) == 1
    assert first.items == second.items


@pytest.mark.asyncio(loop_scope="module")
async def test_a_newer_change_makes_the_pending_request_empty(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    tot")
    pending = asyncio.ensure_future(
        client.text_document_inline_completion_async(inline_params(doc.uri, doc.position(caret)))
    )
    await asyncio.sleep(0)  # the request is written before the change below
    doc.type(caret, "a")
    result = await pending
    assert isinstance(result, types.InlineCompletionList) and len(result.items) == 0
    # the request for the new version is answered as usual
    assert len((await inline(client, doc.uri, doc.position(caret + 1))).items) == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_request_ends_the_request_and_the_next_one_works(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    tot")
    # pygls's client never sends $/cancelRequest by itself (cancelling the future only drops the
    # reply), so the request gets a known id and the notification is sent by hand, as editors do.
    msg_id = str(uuid.uuid4())
    pending = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(doc.uri, doc.position(caret)), msg_id=msg_id
        )
    )
    await asyncio.sleep(0)  # the request is written before the cancellation
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcException) as cancelled:
        await pending
    assert cancelled.value.code == types.LSPErrorCodes.RequestCancelled
    # nothing is left running or wedged: the same request again gets its suggestion
    result = await inline(client, doc.uri, doc.position(caret))
    assert len(result.items) == 1 and result.items[0].insert_text.startswith("tot")


@pytest.mark.asyncio(loop_scope="module")
async def test_status_notification_reports_the_latency(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    tot")
    status = client.protocol.wait_for_notification_async("livekv/status")  # registered before the request
    result = await inline(client, doc.uri, doc.position(caret))
    assert len(result.items) == 1
    assert status.done()  # the notification is sent just before the reply
    params = status.result()
    assert isinstance(params.latencyMs, int) and params.latencyMs >= 0
    assert isinstance(params.firstTokenMs, int) and 0 <= params.firstTokenMs
    assert params.model == "SmolLM2-135M-Instruct (embedded) gguf"
    assert isinstance(params.jediAsked, int) and 0 <= params.jediReady <= params.jediAsked


@pytest.mark.asyncio(loop_scope="module")
async def test_unknown_documents_and_positions_get_empty_results(client: LanguageClient, doc: Doc) -> None:
    assert (await inline(client, "file:///project/never_opened.py", pos(0, 0))).items == ()
    assert (await inline(client, doc.uri, pos(9999, 0))).items == ()  # a line past the end
    doc.close()
    assert (await inline(client, doc.uri, pos(0, 0))).items == ()  # closed
    doc.open()


def test_a_selected_popup_item_is_followed_only_over_the_partial_word() -> None:
    from completion.session import SELECTED_MAX_CHARS, Selected, selected_rest

    def info(text: str, start: int = 40) -> Selected:
        return Selected(start, 42, text)

    assert selected_rest(info("items"), 40, 42, "it") == "ems"
    assert selected_rest(None, 40, 42, "it") == ""
    assert selected_rest(info("items", 41), 40, 42, "it") == ""  # replaces other text
    assert selected_rest(info("total"), 40, 42, "it") == ""  # does not extend what is typed
    assert selected_rest(info("it\nems"), 40, 42, "it") == ""  # spans lines
    assert selected_rest(info("it" + "x" * (SELECTED_MAX_CHARS + 1)), 40, 42, "it") == ""
