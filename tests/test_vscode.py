"""The VS Code extension (editors/vscode): its build and unit tests, its settings against the server's, and
the requests it sends replayed against the real server.

The extension's TypeScript unit tests (the inline completion context, the settings mapping, the status bar text, and
the wiring with vscode-languageclient's own inline completion feature on a fake client) run under
node's test runner through `npm test`; that test is skipped when node or npm is missing. The others need
no node: they read the extension's package.json, so a default that drifts from completion/settings.py, or
an initialization object the server would not accept, fails here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import lsp_helpers
import pytest
import pytest_lsp
from lsp_helpers import SERVER, Doc, eventually
from lsprotocol import converters, types
from pytest_lsp import LanguageClient, client_capabilities

from completion import settings as server_settings
from completion.model.formats import WEIGHT_CHOICES
from completion.settings import Settings

EXTENSION = Path(__file__).resolve().parents[1] / "editors" / "vscode"
# The extension's own keys (src/settings.ts EXTENSION_KEYS): how to start the server, never sent to it.
EXTENSION_KEYS = {"serverCommand", "serverArgs", "trace.server"}
# compile and the unit tests take seconds (`make setup` ran npm ci, which fetches ~280 packages once)
NPM_TIMEOUT_S = {"run": 180, "test": 180}


@cache
def contributed() -> dict[str, dict[str, Any]]:
    """package.json's `livekv.*` settings, by key without the prefix."""
    manifest = json.loads((EXTENSION / "package.json").read_text())
    properties = manifest["contributes"]["configuration"]["properties"]
    return {key.removeprefix("livekv."): spec for key, spec in properties.items()}


def extension_options() -> dict[str, Any]:
    """The initializationOptions the extension sends with no user settings: every server key, its default."""
    return {key: spec["default"] for key, spec in contributed().items() if key not in EXTENSION_KEYS}


def camel(name: str) -> str:
    return re.sub(r"_(\w)", lambda m: m[1].upper(), name)


# -- the extension's build and unit tests ------------------------------------------------------------------


def npm(*args: str) -> str:
    """Run npm in the extension folder; the output is shown when it fails."""
    done = subprocess.run(
        ["npm", *args],
        cwd=EXTENSION,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S[args[0]],
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"npm {' '.join(args)} failed ({done.returncode}):\n{output}"
    return output


def test_the_extension_compiles_and_its_unit_tests_pass() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on PATH: the VS Code extension is not built (install Node 20+)")
    if not (EXTENSION / "node_modules").is_dir():  # installing is set-up's job: tests download nothing
        pytest.skip(f"{EXTENSION / 'node_modules'} is missing: `make setup` runs npm ci when npm is on PATH")
    npm("run", "compile")
    assert (EXTENSION / "out" / "src" / "extension.js").is_file()
    output = npm("test")
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    assert passed and int(passed[1]) > 0, output
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output


# -- package.json against completion/settings.py -----------------------------------------------------------


def test_every_server_setting_is_contributed_with_the_servers_default() -> None:
    fields = {camel(f.name): f.default for f in dataclasses.fields(Settings)}
    assert extension_options() == fields


def test_the_contributed_bounds_and_choices_are_the_servers() -> None:
    specs = contributed()
    for name, (lo, hi) in server_settings._RANGES.items():
        spec = specs[camel(name)]
        assert (spec["minimum"], spec["maximum"]) == (lo, hi), name
    assert specs["weights"]["enum"] == list(WEIGHT_CHOICES)


def test_the_servers_settings_accept_the_extensions_options_without_a_problem() -> None:
    settings, problems = Settings.from_json({"livekv": extension_options()})
    assert problems == []
    assert settings == Settings()


# -- the extension's requests against the real server --------------------------------------------------------

SOURCE = """class Cart:
    def __init__(self):
        self.items = []

    def total(self):
        return sum(item.price for item in self.items)


def checkout(cart):
"""
# What the extension sends besides its defaults: the settings a user of this 2-core machine would pick.
USER = {"threads": 1, "maxTokens": 16}


def warnings(client: LanguageClient) -> list[str]:
    """The server's reports of bad settings and its pop-up messages (none is expected)."""
    logged = [m.message for m in client.log_messages if m.type <= types.MessageType.Warning]
    return logged + [m.message for m in client.messages]


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient):
    # As vscode-languageclient 9 starts the server for a single file (no folder open): VS Code's captured
    # capabilities, its clientInfo, and the extension's initializationOptions.
    @lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams) -> None:  # as VS Code does: accept and remember
        lsp_helpers.registrations.setdefault(id(lsp_client), []).extend(params.registrations)

    result = await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            client_info=types.ClientInfo(name="Visual Studio Code", version="1.82.0"),
            initialization_options={**extension_options(), **USER},
            root_uri=None,
            workspace_folders=None,
        )
    )
    lsp_helpers._results[id(lsp_client)] = result  # where Doc finds the negotiated position encoding
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def doc(client: LanguageClient, request: pytest.FixtureRequest):
    opened = Doc(client, f"file:///project/{request.node.originalname}.py", SOURCE).open()
    yield opened
    opened.close()


def loading_end(client: LanguageClient) -> types.WorkDoneProgressEnd | None:
    """The end of the `livekv: loading model` progress, which the status bar reads the model name from."""
    for reports in client.progress_reports.values():
        begin = reports[0] if reports else None
        if isinstance(begin, types.WorkDoneProgressBegin) and begin.title == "livekv: loading model":
            return next((r for r in reports if isinstance(r, types.WorkDoneProgressEnd)), None)
    return None


def plain(at: types.Position) -> dict[str, int]:
    return {"line": at.line, "character": at.character}


def request(doc: Doc, caret: int, **context: Any) -> dict[str, Any]:
    """textDocument/inlineCompletion params as the extension sends them: vscode-languageclient's own request with
    the context from the extension's middleware (src/inline.ts lspContext), as plain JSON."""
    return {
        "textDocument": {"uri": doc.uri},
        "position": plain(doc.position(caret)),
        "context": {"triggerKind": 2, **context},  # 2: Automatic, VS Code's trigger while typing
    }


async def inline(client: LanguageClient, params: dict[str, Any]) -> list[types.InlineCompletionItem]:
    # pygls sends typed params: the extension's JSON is read by LSP's own rules first (a wrong shape fails here)
    typed = converters.get_converter().structure(params, types.InlineCompletionParams)
    result = await client.text_document_inline_completion_async(typed)
    assert isinstance(result, types.InlineCompletionList)
    return list(result.items)


def assert_covers_the_partial_word(items: list[types.InlineCompletionItem], doc: Doc, caret: int, word: str) -> None:
    assert items
    for item in items:
        assert item.range == types.Range(doc.position(caret - len(word)), doc.position(caret))
        assert isinstance(item.insert_text, str)
        assert item.insert_text.startswith(word) and len(item.insert_text) > len(word)


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_vscode_initialize_is_accepted_and_reports_the_model_loading(client: LanguageClient) -> None:
    capabilities = lsp_helpers.server_capabilities(client)
    assert capabilities.inline_completion_provider is not None
    assert lsp_helpers.encoding_of(client) == "utf-16"  # vscode-languageclient offers nothing else
    await eventually(lambda: loading_end(client) is not None, timeout=240, what="the model loading progress")
    end = loading_end(client)
    assert end is not None and end.message == "SmolLM2-135M-Instruct (embedded) gguf"
    assert warnings(client) == []


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_an_automatic_request_after_typing(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    tot")  # VS Code sends one incremental didChange per key
    status = client.protocol.wait_for_notification_async("livekv/status")
    items = await inline(client, request(doc, caret))
    assert_covers_the_partial_word(items, doc, caret, "tot")
    assert "\n" not in items[0].insert_text
    # the fields the status bar shows, sent just before the answer
    assert status.done()
    params = status.result()
    assert isinstance(params.latencyMs, int) and isinstance(params.firstTokenMs, int)
    assert params.model == "SmolLM2-135M-Instruct (embedded) gguf"


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_a_request_with_a_selected_popup_item(client: LanguageClient, doc: Doc) -> None:
    caret = doc.type(len(doc.text), "    return cart.it")
    # VS Code passes the popup's selected item: the range it would replace (the typed "it") and its text
    selected = {"range": {"start": plain(doc.position(caret - 2)), "end": plain(doc.position(caret))}, "text": "items"}
    items = await inline(client, request(doc, caret, selectedCompletionInfo=selected))
    assert_covers_the_partial_word(items, doc, caret, "it")
    # VS Code shows only ghost text that extends the selected item: every suggestion starts with it
    assert all(item.insert_text.startswith("items") for item in items), [item.insert_text for item in items]
    # an item nobody would write here is followed too (the suggestion is built on it, not on the model's guess)
    selected["text"] = "itinerary_zq"
    items = await inline(client, request(doc, caret, selectedCompletionInfo=selected))
    assert items and all(item.insert_text.startswith("itinerary_zq") for item in items), items
    # an item that replaces other text than the partial word is not followed
    selected["range"]["start"] = plain(doc.position(caret - 1))
    items = await inline(client, request(doc, caret, selectedCompletionInfo=selected))
    assert not any(item.insert_text.startswith("itinerary_zq") for item in items), items


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_a_settings_change_in_the_extensions_shape_gives_several_items(client: LanguageClient, doc: Doc) -> None:
    # what the extension sends when the user sets livekv.drafts: the whole section under `livekv`
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"livekv": {**extension_options(), **USER, "drafts": 3}})
    )
    caret = doc.type(len(doc.text), "    tot")
    items = await inline(client, request(doc, caret))
    assert 1 < len(items) <= 3  # every item goes to VS Code, which cycles them
    assert len({item.insert_text for item in items}) == len(items)
    assert_covers_the_partial_word(items, doc, caret, "tot")
    assert warnings(client) == []  # no unknown key, no bad value, no "restart needed" message
