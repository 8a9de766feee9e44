"""Settings changed after start-up take effect at once, through the real server (tiny model): the
workspace walk starts when `indexWorkspace` is turned on, a new `contextTokens` re-opens the documents
under the new window, and a model setting is answered with the restart message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import SERVER, cache_state, document_state, eventually, initialize, inline, pos
from lsprotocol import types
from pytest_lsp import LanguageClient

SOURCE = "def total(items):\n    return sum(item.price for item in items)\n" * 40


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtime-ws")
    (root / "shop.py").write_text(SOURCE, encoding="utf-8")
    (root / "util.py").write_text("def helper(x):\n    return x + 1\n", encoding="utf-8")
    return root


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, workspace: Path, tiny_model_dir: str):
    options = {"modelPath": tiny_model_dir, "maxTokens": 4, "indexWorkspace": False, "idleRefreshMs": 50}
    await initialize(lsp_client, "visual-studio-code", options, root_uri=workspace.as_uri())
    yield
    await lsp_client.shutdown_session()


def configure(client: LanguageClient, **settings: object) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"livekv": settings}))


@pytest.mark.asyncio(loop_scope="module")
async def test_turning_the_workspace_index_on_walks_it_now(client: LanguageClient, workspace: Path) -> None:
    uri = (workspace / "shop.py").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, SOURCE)))
    assert (await document_state(client, uri))["projectFiles"] == []  # not walked: the setting is off
    configure(client, indexWorkspace=True)

    async def walked() -> bool:
        files = (await document_state(client, uri))["projectFiles"]
        return str(workspace / "util.py") in files

    await eventually(walked, what="the walk started by the setting")


@pytest.mark.asyncio(loop_scope="module")
async def test_a_new_window_applies_to_open_documents(client: LanguageClient, workspace: Path) -> None:
    uri = (workspace / "shop.py").as_uri()
    await inline(client, uri, pos(10, 4))
    assert (await cache_state(client, uri))["layoutTokens"] > 256  # the whole file under the default window
    configure(client, indexWorkspace=True, contextTokens=256)
    await inline(client, uri, pos(10, 4))  # the request re-opens it under the new window

    async def windowed() -> bool:
        state = await cache_state(client, uri)
        return 0 < state["layoutTokens"] <= 256

    await eventually(windowed, what="the document under the new window", interval=0.2)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_model_setting_says_it_needs_a_restart(client: LanguageClient) -> None:
    since = len(client.messages)
    configure(client, indexWorkspace=True, contextTokens=256, threads=2)
    await eventually(lambda: client.messages[since:], what="the restart message")
    assert "threads take effect after a restart" in client.messages[since].message
