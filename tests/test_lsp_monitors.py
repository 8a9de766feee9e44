"""End-to-end: with the monitors on, an inline suggestion after `obj.` names a real member.

The workspace is the fixture project; `Account`'s members are names no model would guess, so the
embedded model alone suggests something else, and the jedi monitor (on by default) must steer it
onto one of them. `monitorMembers: false` turns it off again through didChangeConfiguration.
"""

from __future__ import annotations

import re
from pathlib import Path

import jedi
import pytest
import pytest_lsp
from lsp_helpers import SERVER, Doc, initialize, inline
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.integration  # the server it starts loads the embedded model

PROJECT = Path(__file__).parent / "fixtures" / "project"
SOURCE = "from shapes import Account\n\n\ndef pay(owner):\n    acct = Account(owner)\n    acct."


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient):
    await initialize(
        lsp_client,
        "visual-studio-code",
        # generous limits: the first jedi call loads its stubs (seconds on a busy machine)
        {"maxTokens": 8, "crossFileChars": 0, "jediTimeoutMs": 20_000, "timeBudgetMs": 60_000},
        root_uri=PROJECT.as_uri(),
    )
    yield
    await lsp_client.shutdown_session()


def members() -> set[str]:
    script = jedi.Script(SOURCE, path=PROJECT / "main.py", project=jedi.Project(PROJECT))
    return {c.name for c in script.complete(SOURCE.count("\n") + 1, len("    acct."))}


async def suggested_identifier(client: LanguageClient, name: str) -> str:
    doc = Doc(client, (PROJECT / f"{name}.py").as_uri(), SOURCE).open()
    try:
        result = await inline(client, doc.uri, doc.position(len(SOURCE)))
    finally:
        doc.close()
    assert len(result.items) == 1
    text = result.items[0].insert_text
    assert isinstance(text, str)
    return re.match(r"\w*", text).group()  # type: ignore[union-attr]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_suggestion_after_a_dot_names_a_real_member(client: LanguageClient) -> None:
    legal = members()
    assert {"zorblax_deposit", "quibble_report", "owner"} <= legal
    monitored = await suggested_identifier(client, "monitored")
    assert monitored in legal
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"livekv": {"monitorMembers": False}})
    )
    unmonitored = await suggested_identifier(client, "unmonitored")
    assert unmonitored not in legal  # the model's own guess: the monitor made the difference
