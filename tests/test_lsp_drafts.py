"""End-to-end: several inline drafts per request (`drafts: 3`) by superposed decoding, over stdio.

Every item must stand on its own in the editor: distinct, each replacing the partial word before
the cursor with text that starts with it, and the document's cache the same size after the request
as before it (the drafts' positions are cropped off).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_lsp
from lsp_helpers import EDITORS, SERVER, Doc, cache_state, document_state, eventually, initialize, inline, pos
from lsprotocol import types
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
    options = {"maxTokens": 16, "crossFileChars": 0, "drafts": 3, "draftMethod": "superposed"}
    await initialize(lsp_client, request.param, options)
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def doc(client: LanguageClient, request: pytest.FixtureRequest) -> Iterator[Doc]:
    opened = Doc(client, f"file:///project/{request.node.originalname}.py", SOURCE).open()
    yield opened
    opened.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_three_superposed_drafts_each_replace_the_partial_word(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    tot")

    async def grown() -> bool:  # the idle time has encoded the whole document: nothing more will grow
        state = await cache_state(client, doc.uri)
        return state["missingTokens"] == 0 and state["staleTokens"] == 0

    await eventually(grown, what="the cache to grow whole", interval=1.0)  # > idleRefreshMs
    cached = (await document_state(client, doc.uri))["cachedTokens"]
    result = await inline(client, doc.uri, doc.position(caret))
    assert len(result.items) == 3
    texts = [item.insert_text for item in result.items]
    assert len(set(texts)) == 3
    last = doc.text.count("\n")
    for item in result.items:
        assert isinstance(item.insert_text, str)
        assert item.insert_text.startswith("tot") and len(item.insert_text) > len("tot")
        assert "\n" not in item.insert_text
        assert item.range == types.Range(pos(last, 4), pos(last, 7))
    assert (await document_state(client, doc.uri))["cachedTokens"] == cached
    # the same request again gives the same drafts: nothing of the first was left in the cache
    again = await inline(client, doc.uri, doc.position(caret))
    assert [item.insert_text for item in again.items] == texts
