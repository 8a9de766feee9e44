"""End-to-end: the server's lifecycle and what it does with bad input, over stdio with VS Code's capabilities.

`$/progress` for loading the model and indexing the workspace, settings changed at run time (and bad
ones), documents that get no cache (too large, binary), freeing a closed document's cache, background
work when idle, and a clean shutdown/exit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
import pytest_lsp
from lsp_helpers import SERVER, Doc, document_state, eventually, initialize, inline, inline_params
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient, client_capabilities

pytestmark = pytest.mark.integration  # the server it starts loads the embedded model

MODEL = "SmolLM2-135M-Instruct (embedded) gguf"
MAX_FILE_BYTES = 2048

WORKSPACE = {
    "cart.py": """class Cart:
    def __init__(self):
        self.items = []

    def add(self, product, quantity=1):
        self.items.append((product, quantity))

    def total(self):
        return sum(product.price * quantity for product, quantity in self.items)
""",
    "pricing.py": """def apply_discount(price, rate):
    return round(price * (1 - rate), 2)
""",
    "app/main.py": """from cart import Cart
from pricing import apply_discount


def checkout(cart, rate):
    return apply_discount(cart.total(), rate)
""",
    "app/notes.txt": "not Python: not indexed\n",
}
# shares identifiers with the workspace files, so they are its cross-file snippets
CHECKOUT = """def checkout(cart, rate):
    total = cart.total()
    return apply_discount(total, rate)
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    for name, text in WORKSPACE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, workspace: Path):
    # VS Code advertises window.workDoneProgress, so the server reports progress
    await initialize(
        lsp_client,
        "visual-studio-code",
        {"maxTokens": 16, "maxFileBytes": MAX_FILE_BYTES, "idleRefreshMs": 50},
        root_uri=workspace.as_uri(),
    )
    yield
    await lsp_client.shutdown_session()


class OpenDoc(Protocol):
    def __call__(self, name: str, text: str, *, opened: bool = True) -> Doc: ...


@pytest.fixture
def docs(client: LanguageClient, workspace: Path) -> Iterator[OpenDoc]:
    """Opens documents (named relative to the workspace, not written to disk); closes them after the test,
    so each test starts with no document cached."""
    made: list[Doc] = []

    def make(name: str, text: str, *, opened: bool = True) -> Doc:
        doc = Doc(client, (workspace / name).as_uri(), text)
        made.append(doc.open() if opened else doc)
        return doc

    yield make
    for doc in made:
        doc.close()


def configure(client: LanguageClient, settings: object) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))


def progress_titled(client: LanguageClient, title: str) -> list[object]:
    """The reports of the progress token whose begin report has this title ([] if none began yet)."""
    for reports in client.progress_reports.values():
        if reports and isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].title == title:
            return reports
    return []


def errors_shown(client: LanguageClient, since: int) -> list[str]:
    return [m.message for m in client.messages[since:] if m.type == types.MessageType.Error]


@pytest.mark.asyncio(loop_scope="module")
async def test_model_loading_reports_progress(client: LanguageClient) -> None:
    await eventually(lambda: len(progress_titled(client, "livekv: loading model")) == 2, what="loading progress")
    _, end = progress_titled(client, "livekv: loading model")
    assert isinstance(end, types.WorkDoneProgressEnd) and end.message == MODEL
    # the log message is sent after the progress ends: a separate message, which may still be on its way
    await eventually(lambda: any(m.message == f"livekv: {MODEL} ready" for m in client.log_messages), what="ready")


@pytest.mark.asyncio(loop_scope="module")
async def test_workspace_indexing_reports_progress(client: LanguageClient) -> None:
    await eventually(lambda: len(progress_titled(client, "livekv: indexing workspace")) == 2, what="indexing")
    _, end = progress_titled(client, "livekv: indexing workspace")
    assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "3 files"  # the .py files only


@pytest.mark.asyncio(loop_scope="module")
async def test_a_second_initialized_loads_and_indexes_nothing_again(client: LanguageClient) -> None:
    await eventually(lambda: len(progress_titled(client, "livekv: indexing workspace")) == 2, what="indexing")
    tokens = set(client.progress_reports)
    client.protocol.notify(types.INITIALIZED, types.InitializedParams())
    for _ in range(3):  # round trips: a second load would have asked for its progress token by now
        await document_state(client, "file:///nothing.py")
        await asyncio.sleep(0.2)
    assert set(client.progress_reports) == tokens


async def gains_cross_file_context(client: LanguageClient, doc: Doc, *, timeout: float) -> None:
    """Open `doc` without cross-file context, then allow it: once idle, the worker grows the document's
    prompt with workspace snippets, so the cache holds more tokens (the document text stays the same)."""
    configure(client, {"livekv": {"crossFileChars": 0}})
    doc.open()
    opened = (await document_state(client, doc.uri))["cachedTokens"]
    configure(client, {"livekv": {"crossFileChars": 1200}})

    async def grown() -> bool:
        state = await document_state(client, doc.uri)  # also keeps `doc` the most recently used
        return state["cachedTokens"] > opened and state["engine"] == doc.text

    await eventually(grown, timeout=timeout, what="cross-file context in the cache")


@pytest.mark.asyncio(loop_scope="module")
async def test_idle_time_adds_cross_file_context_from_the_workspace(client: LanguageClient, docs: OpenDoc) -> None:
    await eventually(lambda: len(progress_titled(client, "livekv: indexing workspace")) == 2, what="indexing")
    await gains_cross_file_context(client, docs("checkout.py", CHECKOUT, opened=False), timeout=120)


@pytest.mark.asyncio(loop_scope="module")
async def test_configuration_changes_apply_and_bad_values_are_ignored(client: LanguageClient, docs: OpenDoc) -> None:
    configure(client, {"livekv": {"crossFileChars": 0}})  # the prompt stays the document alone
    doc = docs("cart_doc.py", 'class Cart:\n    """A shopping cart that')
    at = doc.position(len(doc.text))
    longer = (await inline(client, doc.uri, at)).items[0].insert_text
    configure(client, {"livekv": {"maxTokens": 4}})  # VS Code sends the section under its name
    shorter = (await inline(client, doc.uri, at)).items[0].insert_text
    assert isinstance(longer, str) and isinstance(shorter, str)
    # greedy decoding: four tokens are the start of sixteen
    assert len("that") < len(shorter) < len(longer) and longer.startswith(shorter)
    before = len(client.messages)
    configure(client, {"livekv": {"maxTokens": "x", "noSuchSetting": 1}})  # reported, not applied
    configure(client, {"maxTokens": 0})  # Neovim sends the bare object; out of range
    assert (await inline(client, doc.uri, at)).items[0].insert_text == shorter  # maxTokens is still 4
    assert errors_shown(client, before) == []
    configure(client, {"livekv": {"maxTokens": 16}})
    assert (await inline(client, doc.uri, at)).items[0].insert_text == longer


@pytest.mark.asyncio(loop_scope="module")
async def test_a_settings_section_that_is_not_an_object_is_reported_not_raised(client: LanguageClient) -> None:
    before = len(client.messages)
    configure(client, {"livekv": "fast"})
    configure(client, {"livekv": None})
    await document_state(client, "file:///none.py")  # any error message is sent before this reply
    assert errors_shown(client, before) == []


@pytest.mark.asyncio(loop_scope="module")
async def test_large_and_binary_documents_get_no_cache(client: LanguageClient, docs: OpenDoc) -> None:
    configure(client, {"livekv": {"crossFileChars": 0, "maxTokens": 16}})
    line = "VALUES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # a long generated table\n"
    large = docs("large.py", line * (10_000 // len(line)) + "total = sum(")
    binary = docs("binary.py", "data = b'\x00\x01'\nprint(da")
    normal = docs("normal.py", 'class Cart:\n    """A shopping cart that')
    for doc in (large, binary):
        state = await document_state(client, doc.uri)
        assert state["mirror"] == state["workspace"] == doc.text
        assert state["engine"] is None
        assert (await inline(client, doc.uri, doc.position(len(doc.text)))).items == ()
        assert len(doc.text.encode()) > MAX_FILE_BYTES or "\x00" in doc.text
    state = await document_state(client, normal.uri)
    assert state["engine"] == normal.text and state["cachedDocuments"] == 1
    assert len((await inline(client, normal.uri, normal.position(len(normal.text)))).items) == 1
    # edits keep the uncached documents in sync; one that shrinks below the limit gets a cache
    large.type(len(large.text), "VALUES")
    state = await document_state(client, large.uri)
    assert state["mirror"] == state["workspace"] == large.text and state["engine"] is None
    large.replace_all("total = sum(")
    assert (await document_state(client, large.uri))["engine"] == large.text


@pytest.mark.asyncio(loop_scope="module")
async def test_a_document_that_becomes_too_large_or_binary_loses_its_cache(
    client: LanguageClient, docs: OpenDoc
) -> None:
    growing = docs("growing.py", "x = 1\n")
    binary = docs("becomes_binary.py", "x = 1\n")
    for doc in (growing, binary):
        assert (await document_state(client, doc.uri))["engine"] == doc.text
    growing.replace_all("x = 1\n" * (MAX_FILE_BYTES // 6 + 10))  # a paste, or a reload from disk
    binary.type(len(binary.text), "\x00")
    for doc in (growing, binary):
        state = await document_state(client, doc.uri)
        assert state["mirror"] == state["workspace"] == doc.text
        assert state["engine"] is None
        assert (await inline(client, doc.uri, doc.position(len(doc.text)))).items == ()


@pytest.mark.asyncio(loop_scope="module")
async def test_did_close_frees_the_cache(client: LanguageClient) -> None:
    configure(client, {"livekv": {"crossFileChars": 0}})
    empty = await document_state(client, "file:///none.py")
    assert (empty["cachedDocuments"], empty["cacheBytes"]) == (0, 0)  # every earlier test closed its documents
    first = Doc(client, "file:///project/first.py", CHECKOUT).open()
    second = Doc(client, "file:///project/second.py", WORKSPACE["cart.py"]).open()
    both = await document_state(client, first.uri)
    assert both["cachedDocuments"] == 2

    async def grown() -> bool:  # opening encodes nothing; the caches grow at idle time
        return (await document_state(client, second.uri))["cachedTokens"] > 0 and (
            await document_state(client, first.uri)
        )["cachedTokens"] > 0

    await eventually(grown, what="both caches to grow", interval=1.0)  # > idleRefreshMs
    both = await document_state(client, first.uri)
    assert both["cacheBytes"] > 0
    second.close()
    one = await document_state(client, first.uri)
    assert one["cachedDocuments"] == 1 and 0 < one["cacheBytes"] < both["cacheBytes"]
    first.close()
    state = await document_state(client, first.uri)
    assert (state["cachedDocuments"], state["cacheBytes"]) == (0, 0)
    assert state["mirror"] is None and state["engine"] is None


@pytest.mark.asyncio(loop_scope="module")
async def test_background_work_resumes_after_a_request_cancelled_in_the_queue(
    client: LanguageClient, docs: OpenDoc
) -> None:
    configure(client, {"livekv": {"crossFileChars": 1200}})
    small = docs("small.py", "def checkout(cart):\n    return cart.")
    await document_state(client, small.uri)
    # a document just under maxFileBytes takes the worker a while to encode; the request queues behind it
    line = "    rows.append((index, index * 2, str(index)))  # fill\n"
    docs("blocker.py", "def table(rows):\n" + line * ((MAX_FILE_BYTES - 100) // len(line)))
    msg_id = str(uuid.uuid4())
    pending = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(small.uri, small.position(len(small.text))), msg_id
        )
    )
    await asyncio.sleep(0)  # the request is written before the cancellation
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcException) as cancelled:
        await pending
    assert cancelled.value.code == types.LSPErrorCodes.RequestCancelled
    # the worker still answers requests ...
    assert len((await inline(client, small.uri, small.position(len(small.text)))).items) == 1
    # ... and, once idle, still adds cross-file context to a newly opened document
    # (the same wait takes a few seconds in test_idle_time_adds_cross_file_context_from_the_workspace)
    await gains_cross_file_context(client, docs("checkout_again.py", CHECKOUT, opened=False), timeout=30)


@pytest.mark.asyncio
async def test_without_progress_support_and_with_bad_options_then_a_clean_exit() -> None:
    """A separate server: a client without window.workDoneProgress gets no progress; bad initializationOptions
    fall back to defaults; shutdown then exit ends the process with status 0."""
    client = await SERVER.start()
    try:
        capabilities = client_capabilities("neovim")
        assert capabilities.window is not None
        capabilities.window.work_done_progress = False
        await initialize(client, "neovim", {"maxTokens": "x", "noSuchSetting": True}, capabilities=capabilities)
        doc = Doc(client, "file:///project/exit.py", CHECKOUT).open()
        assert (await document_state(client, doc.uri))["engine"] == doc.text  # the model is loaded
        await eventually(lambda: any("ready" in m.message for m in client.log_messages), what="the ready message")
        assert client.progress_reports == {}  # no window/workDoneProgress/create, no $/progress
        assert errors_shown(client, 0) == []  # the bad options are logged, not raised
        assert await client.shutdown_async(None) is None
        client.exit(None)
        server = client._server  # pytest-lsp keeps the subprocess here; it has no public accessor
        assert server is not None
        assert await server.wait() == 0
    finally:
        await client.stop()
