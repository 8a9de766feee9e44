"""End-to-end: the server drafts from the document and the project, and the suggestions do not change.

The workspace is a temporary folder: a file that is indexed but never opened, an ignored folder,
and an open document whose code repeats itself (so prompt lookup has something to find).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import SERVER, Doc, document_state, eventually, initialize, inline, registrations
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.integration  # the server it starts loads the embedded model

SOURCE = "".join(f"def offset_{i}(value):\n    return value + {i}\n\n\n" for i in range(4)) + "def offset_4("
LIBRARY = "class Ledger:\n    def total(self):\n        return sum(self.entries)\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    (root / "library.py").write_text(LIBRARY)
    (root / ".gitignore").write_text("generated/\n")
    (root / "generated").mkdir()
    (root / "generated" / "big.py").write_text("x = 1\n")
    return root


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, workspace: Path):
    await initialize(
        lsp_client,
        "visual-studio-code",
        {"maxTokens": 24, "multiline": True, "crossFileChars": 0, "timeBudgetMs": 60_000},
        root_uri=workspace.as_uri(),
    )
    yield
    await lsp_client.shutdown_session()


async def project_files(client: LanguageClient, uri: str) -> set[str]:
    return {Path(p).name for p in (await document_state(client, uri))["projectFiles"]}


@pytest.mark.asyncio(loop_scope="module")
async def test_the_workspace_is_indexed_and_gitignore_honoured(client: LanguageClient, workspace: Path) -> None:
    doc = Doc(client, (workspace / "main.py").as_uri(), SOURCE).open()

    async def indexed() -> bool:
        return {"library.py", "main.py"} <= await project_files(client, doc.uri)

    await eventually(indexed, what="the project index to hold library.py and the open main.py")
    assert "big.py" not in await project_files(client, doc.uri)
    methods = [r.method for r in registrations[id(client)]]
    assert types.WORKSPACE_DID_CHANGE_WATCHED_FILES in methods


@pytest.mark.asyncio(loop_scope="module")
async def test_drafting_saves_passes_and_changes_nothing(client: LanguageClient, workspace: Path) -> None:
    doc = Doc(client, (workspace / "main.py").as_uri(), SOURCE)
    end = doc.position(len(SOURCE))
    drafted = await inline(client, doc.uri, end)
    (tokens, passes), *_ = (await document_state(client, doc.uri))["lastSuggestion"]
    assert drafted.items and "return value + 4" in drafted.items[0].insert_text
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"drafting": False}))
    plain = await inline(client, doc.uri, end)
    (tokens_plain, passes_plain), *_ = (await document_state(client, doc.uri))["lastSuggestion"]
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"drafting": True}))
    assert [i.insert_text for i in plain.items] == [i.insert_text for i in drafted.items]
    assert tokens_plain == tokens and passes_plain >= tokens - 1  # one pass per token (the last is not fed)
    assert passes < passes_plain  # drafts from the document's own repeats were accepted


@pytest.mark.asyncio(loop_scope="module")
async def test_files_changed_on_disk_are_reindexed(client: LanguageClient, workspace: Path) -> None:
    uri = (workspace / "main.py").as_uri()
    added = workspace / "added.py"
    added.write_text("def added():\n    return 1\n")
    change = types.FileEvent(uri=added.as_uri(), type=types.FileChangeType.Created)
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[change]))

    async def has_added() -> bool:
        return "added.py" in await project_files(client, uri)

    await eventually(has_added, what="added.py in the project index")
    added.unlink()
    change = types.FileEvent(uri=added.as_uri(), type=types.FileChangeType.Deleted)
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[change]))

    async def gone() -> bool:
        return "added.py" not in await project_files(client, uri)

    await eventually(gone, what="added.py out of the project index")
