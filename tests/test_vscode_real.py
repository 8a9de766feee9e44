"""Editor end-to-end: the VS Code extension in a real VS Code. code-server (the VS Code 1.139 workbench and
extension host) runs on 127.0.0.1 with the `.vsix` of `npm run package` installed; headless Chromium shows
it and Playwright types into it. The extension starts the real `livekv serve`.

What the screen shows is checked against what the language client traced (`livekv.trace.server:
verbose`, read from the output channel's file): the ghost text is the server's answer to the request of the
document's last version. The tests run in order on one workbench (each starts on a fresh line). Installing
code-server, node 24 and Chromium is set-up's job (tests/vscode_real/install.sh, from `make test`); without
them, or without Playwright or npm, this module skips, saying which is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from vscode_real import codeserver, trace
from vscode_real.codeserver import CodeServer, descendants, is_loopback, listening
from vscode_real.workbench import Workbench, until

pytestmark = pytest.mark.integration  # the server loads the embedded model

EXTENSION = codeserver.REPO / "editors" / "vscode"
# Where the README's picture comes from: LIVEKV_VSCODE_SCREENSHOT=editors/vscode/ghost-text.png rewrites it.
SCREENSHOT_ENV = "LIVEKV_VSCODE_SCREENSHOT"
READY_TIMEOUT_S = 240  # the first load of the model in a fresh cache converts the GGUF (~40 s on 2 cores)
GHOST_TIMEOUT_S = 120
MODEL = "SmolLM2-135M-Instruct"
SOURCE = '''"""A small shopping cart."""


class Item:
    def __init__(self, name, price, quantity=1):
        self.name = name
        self.price = price
        self.quantity = quantity

    def cost(self):
        return self.price * self.quantity


class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def total(self):
        return sum(item.cost() for item in self.items)


def main():
    cart = Cart()
'''
INDENT = "    "  # the new lines are typed in main()'s body


@dataclass
class Session:
    server: CodeServer
    bench: Workbench
    data: Path  # code-server's user data: settings, logs, the traced output channel
    file: Path
    shot: Path
    close: Callable[[], None]  # the browser, Playwright, then code-server's process group
    earlier: frozenset[int] = frozenset()  # pytest's children before the fixture (jedi's subprocess): not ours
    typed_lines: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    listens: set[str] = field(default_factory=set)  # every TCP listener seen in our processes
    browser_pids: dict[int, str] = field(default_factory=dict)  # Playwright's driver and Chromium

    def sample(self) -> None:
        """Remember the processes we started and what they listen on."""
        mine = descendants(os.getpid())
        now = codeserver.processes()
        ours = mine - set(self.server.members()) - self.earlier
        self.browser_pids.update({pid: now[pid][1] for pid in ours if pid in now})
        self.listens.update(listening(mine))

    def explain(self) -> str:
        """For a failure: the screen (saved beside the logs), the last answers, the server log's end."""
        shot = self.data.parent / "failure.png"
        self.bench.page.screenshot(path=str(shot))
        log = (self.data.parent / "server.log").read_text(errors="replace").splitlines()[-20:]
        return (
            f"\nghost on screen: {self.bench.ghost()!r}\nstatus: {self.bench.status()!r}\nscreen: {shot}"
            f"\nlast answers: {trace.answers(self.data)[-3:]}\nserver log:\n" + "\n".join(line[:300] for line in log)
        )


def livekv_servers(session: Session) -> set[int]:
    """The livekv server processes of the group (the extension's child, `livekv ... serve`)."""
    found = set()
    for pid in session.server.members():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and any(a.endswith(b"livekv") for a in argv):
            found.add(pid)
    return found


def build_vsix(out: Path) -> Path:
    """The extension's .vsix, built as `make vsix` does (npm run package), into `out`."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH: the .vsix cannot be built (install Node 20+)")
    if not (EXTENSION / "node_modules").is_dir():
        pytest.skip(f"{EXTENSION / 'node_modules'} is missing: `make setup` runs npm ci when npm is on PATH")
    vsix = out / "livekv.vsix"
    done = subprocess.run(
        ["npm", "run", "package", "--", "--out", str(vsix)], cwd=EXTENSION, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"npm run package failed:\n{done.stdout}{done.stderr}"
    return vsix


@pytest.fixture(scope="module")
def vscode(tmp_path_factory: pytest.TempPathFactory) -> Generator[Session]:
    if reason := codeserver.missing():
        pytest.skip(reason)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the test extra pins it: pip install -e '.[test]')"
    )
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (tests/vscode_real/install.sh installs Debian's)")
    root = tmp_path_factory.mktemp("vscode-real")
    workspace = root / "workspace"
    workspace.mkdir()
    file = workspace / "shop.py"
    file.write_text(SOURCE)
    settings = {
        "livekv.serverCommand": str(Path(sys.executable).parent / "livekv"),
        "livekv.serverArgs": ["--log-level", "INFO", "serve", "--log-file", str(root / "server.log")],
        "livekv.trace.server": "verbose",
        "livekv.maxTokens": 16,
    }
    server = CodeServer(root, workspace, settings)
    server.install_extension(build_vsix(root))
    shot = Path(os.environ.get(SCREENSHOT_ENV) or root / "ghost-text.png").resolve()
    earlier = frozenset(descendants(os.getpid()))  # earlier tests' children (jedi's subprocess) are not ours
    playwright = sync_api.sync_playwright().start()

    def close() -> None:
        playwright.stop()  # closes the browser, ends the driver
        server.stop()

    try:
        server.start()
        home = root / "browser-home"  # Chromium writes ~/.config/chromium and ~/.cache
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],  # as root it needs --no-sandbox
            env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home)},
        )
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.goto(server.url)
        page.wait_for_selector(".monaco-workbench .explorer-folders-view", timeout=60_000)
        yield Session(server, Workbench(page), root / "data", file, shot, close, earlier=earlier)
    finally:
        close()


def shown(answer: trace.Answer, index: int, line: str) -> str:
    """What VS Code shows of the answer's item `index` on `line`: its insertText less the typed part it replaces."""
    item = answer.items[index]
    text, rng = item["insertText"], item.get("range")
    assert isinstance(text, str), item
    if rng is None:
        return text
    assert rng["start"]["line"] == rng["end"]["line"] == answer.position["line"], item
    replaced = line[rng["start"]["character"] : rng["end"]["character"]]
    assert text.startswith(replaced), (item, line)
    return text[len(replaced) :]


def ghost_of_server(session: Session, line: str, index: int = 0, timeout_s: float = GHOST_TIMEOUT_S) -> str:
    """Wait for ghost text equal to item `index` of the server's answer for the document's last version."""

    def probe() -> str | None:
        session.sample()
        version = trace.last_version(session.data)
        answers = [a for a in trace.answers(session.data) if a.version == version and len(a.items) > index]
        if not answers:
            return None
        want = shown(answers[-1], index, line)
        return want if want and session.bench.ghost() == want else None

    return until("ghost text equal to the server's answer", probe, timeout_s, session.explain)


def fresh_line(session: Session, typed: str) -> str:
    """A new line in main() at the end of the file, `typed` typed into it; returns the line as it stands."""
    session.bench.press("Control+End")
    if session.typed_lines:  # the file ends with a newline: its first typed line goes on the last, empty one
        session.bench.press("Enter")  # at column 0: editor.autoIndent is off
    session.bench.type(INDENT + typed)
    session.typed_lines += 1
    return INDENT + typed


def last_line(session: Session) -> str:
    """The document's last line (the one being typed) as the client sent it to the server."""
    return trace.document(session.data).split("\n")[-1]


def inline_requests(session: Session) -> int:
    return sum(
        m.what == "Sending request" and m.method == "textDocument/inlineCompletion"
        for m in trace.messages(session.data)
    )


def test_typing_shows_the_servers_first_item_as_ghost_text(vscode: Session, capsys: pytest.CaptureFixture[str]) -> None:
    opened = time.monotonic()
    vscode.bench.open("shop.py")
    ready = until(
        "the status bar saying the model is loaded",
        lambda: ((s := vscode.bench.status()).startswith(f"livekv {MODEL}") and "indexing" not in s) or None,
        READY_TIMEOUT_S,
        lambda: f"(status {vscode.bench.status()!r})\n{vscode.server.log()}",
    )
    assert ready
    vscode.timings["ready"] = time.monotonic() - opened
    line = fresh_line(vscode, "for item in ca")
    typed = time.monotonic()
    ghost = ghost_of_server(vscode, line)
    done = time.monotonic()
    vscode.timings |= {"typed_to_ghost": done - typed, "open_to_ghost": done - opened}
    vscode.bench.page.screenshot(path=str(vscode.shot))
    with capsys.disabled():
        print(
            f"\nVS Code: opened → model ready {vscode.timings['ready']:.1f} s, typed → ghost text "
            f"{vscode.timings['typed_to_ghost']:.1f} s, open → first ghost text {vscode.timings['open_to_ghost']:.1f} s"
            f" ({ghost!r}); screenshot {vscode.shot}"
        )
    until(
        "the status bar showing the wait for the last answer", lambda: status_shows_the_wait(vscode), 10, vscode.explain
    )


def status_shows_the_wait(session: Session) -> bool | None:
    """The status bar: the model and the time the client waited for its last answer with items (the trace's
    figure, give or take the client's own work around it), at least the server's own figure."""
    shown = re.fullmatch(rf"livekv {MODEL} (\d+) ms", session.bench.status())
    answered = [a for a in trace.answers(session.data) if a.items]
    server = [m.body["latencyMs"] for m in trace.messages(session.data) if m.method == "livekv/status"]
    if not (shown and answered and server):
        return None
    waited = int(shown[1])
    return (answered[-1].ms <= waited <= answered[-1].ms + 500 and waited >= server[-1]) or None


def test_ctrl_right_accepts_one_word_and_tab_the_rest(vscode: Session) -> None:
    line = fresh_line(vscode, "total = cart.")
    ghost = ghost_of_server(vscode, line)
    vscode.bench.press("Control+ArrowRight")
    partly = until("a didChange after Ctrl+Right", lambda: ((a := last_line(vscode)) != line and a) or None, 10)
    word = partly[len(line) :]
    assert partly.startswith(line) and word and ghost.startswith(word) and len(word) < len(ghost), (ghost, partly)
    # what is left stays on screen
    until("the rest of the suggestion as ghost text", lambda: vscode.bench.ghost() == ghost[len(word) :] or None, 10)
    vscode.bench.press("Tab")
    whole = until("a didChange after Tab", lambda: ((a := last_line(vscode)) != partly and a) or None, 10)
    assert whole == line + ghost
    until(
        "the accepted line on screen, no ghost text",
        lambda: (whole in vscode.bench.lines() and not vscode.bench.ghost()) or None,
        10,
    )


def test_a_setting_changed_in_the_settings_editor_reaches_the_server_and_alt_bracket_shows_the_second_draft(
    vscode: Session,
) -> None:
    vscode.bench.set_setting("livekv.drafts", "2")
    sent = until(
        "workspace/didChangeConfiguration with drafts 2",
        lambda: (
            [
                m.body
                for m in trace.messages(vscode.data)
                if m.method == "workspace/didChangeConfiguration" and m.body["settings"]["livekv"]["drafts"] == 2
            ]
            or None
        ),
        20,
    )
    assert sent[-1]["settings"]["livekv"]["maxTokens"] == 16  # the whole section, the user's other settings too
    vscode.bench.close_settings()
    vscode.bench.back_to("shop.py")
    line = fresh_line(vscode, "subtotal = item.")
    first = ghost_of_server(vscode, line)
    vscode.bench.press("Alt+BracketRight")
    second = ghost_of_server(vscode, line, index=1, timeout_s=30)  # the server answered with two items
    assert second != first


def test_the_toggle_turns_ghost_text_off_and_on(vscode: Session) -> None:
    vscode.bench.command("livekv: Toggle inline suggestions")
    until("the status bar saying off", lambda: vscode.bench.status() == "livekv off" or None, 10)
    asked = inline_requests(vscode)
    line = fresh_line(vscode, "name = item.")
    time.sleep(3)  # VS Code asks within tens of milliseconds of a key
    assert vscode.bench.ghost() == ""
    assert inline_requests(vscode) == asked, "an inline request was sent while suggestions were off"
    vscode.bench.command("livekv: Toggle inline suggestions")
    until("the status bar back on", lambda: vscode.bench.status().startswith(f"livekv {MODEL}") or None, 10)
    vscode.bench.type("n")  # the next key asks again
    ghost_of_server(vscode, line + "n")


def test_a_model_setting_restarts_the_server(vscode: Session) -> None:
    (before,) = livekv_servers(vscode)
    vscode.bench.set_setting("livekv.threads", "1")
    started = until(
        "a second initialize, with threads 1",
        lambda: (
            [
                m.body
                for m in trace.messages(vscode.data)
                if m.what == "Sending request"
                and m.method == "initialize"
                and m.body["initializationOptions"]["threads"] == 1
            ]
            or None
        ),
        30,
    )
    assert started
    vscode.bench.close_settings()
    after = until(
        "a new livekv server, the old one gone",
        lambda: ((s := livekv_servers(vscode)) and before not in s and s) or None,
        30,
    )
    assert len(after) == 1
    vscode.bench.back_to("shop.py")
    until(
        "the status bar ready again",
        lambda: vscode.bench.status().startswith(f"livekv {MODEL}") or None,
        READY_TIMEOUT_S,
        lambda: f"(status {vscode.bench.status()!r})",
    )
    line = fresh_line(vscode, "price = item.")
    ghost_of_server(vscode, line)


def running(pid: int) -> bool:
    """Whether the process is alive and not a zombie (its state in /proc, the field after the name)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_everything_listened_on_loopback_only_and_ends_with_the_session(vscode: Session) -> None:
    vscode.sample()
    assert vscode.listens, "no listening socket seen: code-server's should be"
    assert all(is_loopback(listen) for listen in vscode.listens), vscode.listens
    assert vscode.file.read_text() == SOURCE, "the typed text was saved to disk (auto-save should be off)"
    vscode.close()
    assert vscode.server.alive() == [], (
        f"code-server's processes outlived the end of their group: {vscode.server.alive()}"
    )

    def left() -> list[int]:
        """Our browser and driver processes still running (a zombie has ended: its parent reaps it later)."""
        now = codeserver.processes()
        return [
            pid for pid, start in vscode.browser_pids.items() if pid in now and now[pid][1] == start and running(pid)
        ]

    until("the browser's and driver's processes ended", lambda: True if not left() else None, 15, lambda: f"{left()}")
