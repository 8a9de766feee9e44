"""End-to-end: the live cache holds the whole document, so an edit far above the caret and a return to it
cost the edit's tokens, not a re-read of the text between (the first round's cache ended at the caret and
re-encoded everything from the edit down on the way back). Counted in tokens the server ran through the
model (`livekv/documentState`), never timed; the embedded model, over stdio, as VS Code and Neovim."""

from __future__ import annotations

import pytest
import pytest_lsp
from lsp_helpers import EDITORS, SERVER, Doc, cache_state, eventually, initialize, inline
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.integration  # the server it starts loads the embedded model

FUNCTION = '''def handle_{i}(request, session):
    """Answer request {i} from the session's cache when it can."""
    key = (request.path, request.user)
    if key in session.cache:
        return session.cache[key]
    response = session.fetch(request.path, timeout={i})
    session.cache[key] = response
    return response


'''
SOURCE = "import os\nimport sys\n\n\n" + "".join(FUNCTION.format(i=i) for i in range(14))  # ~1,300 tokens


@pytest_lsp.fixture(scope="module", config=SERVER, params=EDITORS)
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest):
    await initialize(lsp_client, request.param, {"maxTokens": 8, "crossFileChars": 0, "idleRefreshMs": 50})
    yield
    await lsp_client.shutdown_session()


async def grown(doc: Doc) -> dict:
    """Wait for the idle time to encode the whole document exactly; its cache state then."""

    async def done() -> bool:
        state = await cache_state(doc.client, doc.uri)
        return state["missingTokens"] == 0 and state["staleTokens"] == 0

    await eventually(done, what="the document's cache to grow whole and exact", timeout=300, interval=0.5)
    return await cache_state(doc.client, doc.uri)


def spent(before: dict, after: dict) -> int:
    """Tokens encoded for edits and requests between two states (the idle-time refresh is not counted)."""
    return sum(after["encoded"][k] - before["encoded"][k] for k in ("edits", "requests"))


@pytest.mark.asyncio(loop_scope="module")
async def test_an_edit_far_above_the_caret_and_the_return_cost_the_edit_alone(client: LanguageClient) -> None:
    doc = Doc(client, "file:///project/handlers.py", SOURCE).open()
    start = await grown(doc)
    assert start["encoded"]["requests"] == 0 and start["encoded"]["refresh"] >= start["layoutTokens"]
    caret = SOURCE.rindex("    response = session.fetch") + len("    response = ")  # in the last function
    await inline(client, doc.uri, doc.position(caret))
    asked = await cache_state(client, doc.uri)
    assert not asked["preview"] and spent(start, asked) <= 1  # the prompt's last token, at most

    top = doc.offset("import sys\n")  # about 1,200 tokens above the caret
    line = "import logging\n"
    doc.type(top, line)  # key by key, as an editor sends them
    typed = await cache_state(client, doc.uri)
    caret += len(line)
    doc.type(caret, "s")  # back at the old caret: one key
    await inline(client, doc.uri, doc.position(caret + 1))
    back = await cache_state(client, doc.uri)
    assert asked["decodeAt"] > 1000  # the caret really is far below the edit
    assert spent(asked, typed) <= 3 * len(line)  # each key re-splits a token or two of the new line
    assert spent(typed, back) <= 4  # the key's token(s) and at most the prompt's last token
    assert back["staleTokens"] > 0  # what PIE shifted is stale until the idle refresh reaches it
    doc.close()
