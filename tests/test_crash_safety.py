"""End-to-end crash safety: the real server over stdio, with faults injected by tests/faulty_server.py.

One server carries every fault, each behind its own switch file. For each kind of fault: it is logged
with its traceback (and never with the document's text), told to the user by exactly one
window/showMessage however often it repeats, the requests during it are answered (empty where the
fault is in the way), and afterwards suggestions are what a clean document gets and every copy of the
text is the client's. A failed model load (a path that does not exist, a corrupt model folder) is
told once, naming the path, and every request is still answered.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import SERVER, Doc, assert_in_sync, document_state, eventually, initialize, inline
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

KINDS = (
    "forward-oom",
    "jedi-error",
    "jedi-hang",
    "inline-bug",
    "sync-bug",
    "change-bug",
    "complete-bug",
    "refresh-bug",
    "index-bug",
    "config-bug",
)
FOLDER = Path(tempfile.mkdtemp(prefix="livekv-faults-"))  # switch files and the server's log
LOG = FOLDER / "server.log"
FAULTY = ClientServerConfig(
    server_command=[
        sys.executable,
        str(Path(__file__).parent / "faulty_server.py"),
        *(f"{kind}={FOLDER / kind}" for kind in KINDS),
        "--hang",
        "3",
        "--log-file",
        str(LOG),
    ]
)
SECRET = "zq_private_value = 7193"  # in every document: never in the log
SOURCE = f"{SECRET}\n\n\ndef total(prices):\n    result = 0\n    for price in prices:\n        result = "
MEMBER = f"{SECRET}\nimport os\n\n\ndef home():\n    return os.path."  # a member trigger: jedi is asked
OPTIONS = {
    "maxTokens": 8,
    "crossFileChars": 0,
    "idleRefreshMs": 600_000,
    "jediTimeoutMs": 200,
    "debounceMs": 0,
}


@pytest.fixture(scope="module", autouse=True)
def remove_folder() -> Iterator[None]:
    yield
    shutil.rmtree(FOLDER, ignore_errors=True)


@pytest_lsp.fixture(scope="module", config=FAULTY)
async def client(lsp_client: LanguageClient, tiny_model_dir: str):
    workspace = FOLDER / "workspace"
    workspace.mkdir()
    (workspace / "util.py").write_text("def helper(x):\n    return x + 1\n", encoding="utf-8")
    async with fault("index-bug"):  # the walk of the workspace for the project index fails
        await initialize(
            lsp_client, "visual-studio-code", {**OPTIONS, "modelPath": tiny_model_dir}, root_uri=workspace.as_uri()
        )
        await eventually(lambda: len(indexing(lsp_client)) == 2, what="the end of the indexing progress")
    # then no drafting: one forward pass per token, so a pass that fails is in the middle of decoding
    configure(lsp_client, {"drafting": False})
    warm = opened(lsp_client, "warm_up.py", MEMBER)  # jedi's first answer takes seconds: wait for it here
    with jedi_waited_for(lsp_client):
        await suggestion(warm)
    warm.close()
    yield
    await lsp_client.shutdown_session()


@contextmanager
def jedi_waited_for(client: LanguageClient) -> Iterator[None]:
    """Suggestions inside the block wait for jedi's answers (so a jedi fault surely happens in them)."""
    configure(client, {"jediTimeoutMs": 60_000})
    try:
        yield
    finally:
        configure(client, {"jediTimeoutMs": OPTIONS["jediTimeoutMs"]})


def indexing(client: LanguageClient) -> list[object]:
    """The reports of the workspace indexing progress."""
    for reports in client.progress_reports.values():
        if reports and isinstance(reports[0], types.WorkDoneProgressBegin) and "indexing" in reports[0].title:
            return reports
    return []


def configure(client: LanguageClient, settings: dict[str, object]) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"livekv": settings}))


@asynccontextmanager
async def fault(kind: str, let_through: int = 0) -> AsyncIterator[None]:
    """The fault is on inside the block (after `let_through` calls of the patched function)."""
    switch = FOLDER / kind
    switch.write_text(str(let_through))
    try:
        yield
    finally:
        switch.unlink()


def opened(client: LanguageClient, name: str, text: str) -> Doc:
    return Doc(client, f"file:///project/{name}", text).open()


async def suggestion(doc: Doc) -> tuple[str, ...]:
    """The inline suggestions at the end of the document, as texts."""
    result = await inline(doc.client, doc.uri, doc.position(len(doc.text)))
    return tuple(str(item.insert_text) for item in result.items)


async def popup(doc: Doc) -> list[str]:
    result = await doc.client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(doc.uri), doc.position(len(doc.text)))
    )
    assert isinstance(result, types.CompletionList)
    return [item.label for item in result.items]


async def clean(client: LanguageClient, doc: Doc) -> tuple[str, ...]:
    """What a fresh document with the same text is suggested (the reference after a fault)."""
    fresh = opened(client, "fresh-" + doc.uri.rsplit("/", 1)[1], doc.text)
    try:
        return await suggestion(fresh)
    finally:
        fresh.close()


def shown(client: LanguageClient, since: int) -> list[str]:
    return [m.message for m in client.messages[since:]]


def log_text() -> str:
    return LOG.read_text(encoding="utf-8") if LOG.exists() else ""


async def told_once(client: LanguageClient, since: int, needle: str) -> None:
    """Exactly one message since `since`, and it says `needle`; the log has its traceback."""
    await eventually(lambda: shown(client, since), what="the fault's message")
    await document_state(client, "file:///none.py")  # a round trip: any later message would be here by now
    messages = shown(client, since)
    assert len(messages) == 1 and needle in messages[0], messages
    assert "Traceback" in log_text() and SECRET not in log_text()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_the_workspace_indexing(client: LanguageClient) -> None:
    """The fixture's server started with it: the progress ended all the same, and it was told once."""
    end = indexing(client)[-1]
    assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "0 files"
    await told_once(client, 0, "internal error in the project indexer (RuntimeError: injected bug in the project walk")
    doc = opened(client, "after_index.py", SOURCE)
    assert await suggestion(doc)  # the model worker serves
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_model_running_out_of_memory(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "oom.py", SOURCE)
    before = await suggestion(doc)
    state = await document_state(client, doc.uri)
    tokens = state["cachedTokens"]
    assert before and state["lastSuggestion"][0][0] > 3  # a real suggestion, decoded in more than three passes
    async with fault("forward-oom", let_through=2):  # two decoding passes, then out of memory
        assert await suggestion(doc) == ()
    # the draft's tokens were taken off the cache: it holds the document's tokens, and suggests the same
    assert (await document_state(client, doc.uri))["cachedTokens"] == tokens
    assert await suggestion(doc) == before
    async with fault("forward-oom"):  # every pass fails: edits, requests, a newly opened document
        for key in "pri":
            doc.type(len(doc.text), key)
            assert await suggestion(doc) == ()
            assert await popup(doc) == []
        other = opened(client, "oom-other.py", SOURCE)
        assert await suggestion(other) == ()
        await assert_in_sync(doc)
        await assert_in_sync(other)
    assert await suggestion(doc) == await clean(client, doc)
    assert await suggestion(other) == before
    await assert_in_sync(doc)
    await told_once(client, since, "ran out of memory")
    assert "OutOfMemoryError" in log_text() and "failed again" in log_text()
    doc.close()
    other.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_jedi_failing(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "jedi_error.py", MEMBER)
    async with fault("jedi-error"):
        with jedi_waited_for(client):
            for _ in range(3):
                doc.replace_all(doc.text)  # a new version: jedi is asked again
                await suggestion(doc)  # answered, without jedi's names
    await told_once(client, since, "internal error in jedi (AttributeError")
    assert "jedi failed at" in log_text()
    doc.replace_all(doc.text)
    with jedi_waited_for(client):  # jedi's answers constrain both the same way
        assert await suggestion(doc) == await clean(client, doc)
    await assert_in_sync(doc)
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_jedi_stuck(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "jedi_hang.py", MEMBER)
    async with fault("jedi-hang"):  # each call sleeps 3 s; jediTimeoutMs is 200

        async def asked_again() -> bool:
            doc.replace_all(doc.text)
            await suggestion(doc)  # answered after the 200 ms wait
            return bool(shown(client, since))

        await eventually(asked_again, what="the stuck jedi call reported")
        for _ in range(3):
            await asked_again()
    await told_once(client, since, "jedi has been busy on one question")
    await assert_in_sync(doc)
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_the_inline_handler(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "inline_bug.py", SOURCE)
    before = await suggestion(doc)
    async with fault("inline-bug"):
        for _ in range(3):
            assert await suggestion(doc) == ()  # empty, not a JSON-RPC error the editor would show again
        assert await popup(doc)  # the other feature still serves
    await told_once(client, since, "internal error in textDocument/inlineCompletion (ValueError: injected")
    assert "selected_offsets" in log_text()  # the traceback names the function
    assert await suggestion(doc) == before
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_did_change(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "sync_bug.py", SOURCE)
    other = opened(client, "sync_other.py", SOURCE)
    sent = doc.text
    async with fault("sync-bug"):
        doc.type(len(doc.text), "pri")
        state = await document_state(client, doc.uri)
        # the changes are lost, but the server's three copies agree: nothing drifts apart
        assert state["mirror"] == state["workspace"] == state["engine"] == sent
        assert await suggestion(other)  # other documents keep serving
    await told_once(client, since, "internal error in textDocument/didChange (KeyError")
    doc.replace_all(doc.text)  # the editor's next full text (or reopening) brings the changes back
    await assert_in_sync(doc)
    assert await suggestion(doc) == await clean(client, doc)
    doc.close()
    other.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_the_cache_update(client: LanguageClient) -> None:
    """The fault hits half-way: the document's text, tokens and KV are patched, its layout is not."""
    since = len(client.messages)
    doc = opened(client, "change_bug.py", SOURCE)
    async with fault("change-bug"):
        doc.replace(0, 0, "# a\n")  # an edit above: PIE splices the cache there
        await assert_in_sync(doc)  # the cache was dropped; the text kept
        assert await suggestion(doc) == await clean(client, doc)  # rebuilt whole for the request
        doc.replace(0, 0, "# b\n")  # fails again on the rebuilt cache
        await assert_in_sync(doc)
    await told_once(client, since, "internal error in the model worker (change) (KeyError")
    doc.replace(0, 0, "# c\n")
    await assert_in_sync(doc)
    assert await suggestion(doc) == await clean(client, doc)
    assert (await document_state(client, doc.uri))["cachedTokens"] > 0  # the request rebuilt the cache
    doc.replace(0, 0, "# d\n")  # and edits patch it again
    await assert_in_sync(doc)
    assert await suggestion(doc)
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_the_completion_worker(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "complete_bug.py", SOURCE)
    before = await suggestion(doc)
    async with fault("complete-bug"):
        for _ in range(3):
            assert await suggestion(doc) == ()
        assert await popup(doc)  # popup items do not go through the broken function
    await told_once(client, since, "internal error in the model worker (complete) (KeyError")
    assert await suggestion(doc) == before
    await assert_in_sync(doc)
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_the_background_refresh(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "refresh_bug.py", SOURCE)
    configure(client, {"idleRefreshMs": 50})
    async with fault("refresh-bug"):
        doc.replace(0, 0, "# total\n")  # PIE leaves the positions below stale: the idle refresh starts
        await eventually(lambda: shown(client, since), what="the refresh fault")
        await assert_in_sync(doc)
        doc.replace(0, 0, "#\n")
        assert await suggestion(doc) == await clean(client, doc)  # the dropped cache is rebuilt whole
        doc.replace(0, 0, "#\n")  # stale positions again: the chain runs again after the fault
        await eventually(lambda: "background step) failed again" in log_text(), what="a second background step")
    configure(client, {"idleRefreshMs": 600_000})
    await told_once(client, since, "internal error in the model worker (background step) (RuntimeError")
    await assert_in_sync(doc)
    assert await suggestion(doc) == await clean(client, doc)
    doc.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_in_a_handler_pygls_reports(client: LanguageClient) -> None:
    since = len(client.messages)
    doc = opened(client, "config_bug.py", SOURCE)
    before = await suggestion(doc)
    async with fault("config-bug"):
        for tokens in (4, 5, 6):
            configure(client, {"maxTokens": tokens})  # fails: the settings stay as they were
        await told_once(client, since, "(in a notification handler) (JsonRpcInternalError: KeyError: 'injected")
        assert await suggestion(doc) == before  # pygls' own report would have shut its thread pool down
    configure(client, {"maxTokens": OPTIONS["maxTokens"]})
    await assert_in_sync(doc)
    doc.close()


def corrupt_copy(model: str, folder: Path) -> Path:
    """The tiny model with its weights file cut in half (a download that stopped)."""
    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


@pytest.mark.parametrize("broken", ["missing", "corrupt"])
@pytest.mark.asyncio
async def test_a_model_that_does_not_load(broken: str, tiny_model_dir: str, tmp_path: Path) -> None:
    path = tmp_path / "no-model" if broken == "missing" else corrupt_copy(tiny_model_dir, tmp_path / "model")
    client = await SERVER.start()
    try:
        await initialize(client, "neovim", {**OPTIONS, "modelPath": str(path)})
        await eventually(lambda: client.messages, what="the load error")
        doc = opened(client, "unloaded.py", SOURCE)
        assert await suggestion(doc) == ()
        assert await popup(doc) == []
        doc.type(len(doc.text), "pri")
        state = await document_state(client, doc.uri)
        assert state["mirror"] == state["workspace"] == doc.text and state["engine"] is None
        [message] = client.messages
        assert message.type == types.MessageType.Error
        assert "model not loaded" in message.message and str(path) in message.message, message.message
    finally:
        await client.shutdown_session()
        await client.stop()
