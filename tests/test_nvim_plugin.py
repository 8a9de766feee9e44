"""Editor end-to-end: the Neovim plugin in editors/nvim, in a real headless Neovim 0.11, against `livekv serve`.

tests/nvim/plugin_e2e.lua types into a Python buffer through `nvim_input` (so insert mode, the
plugin's autocommands, debounce and mappings run as for a user), records the ghost-text
extmarks, every inlineCompletion request the plugin sent with the server's answer, the buffer
at each step and `:checkhealth livekv`; this module runs it once and checks the report against
the server's own answers. Neovim and its helpers come from tests/test_neovim.py.

The plugin's Neovim 0.12 path (the built-in `vim.lsp.inline_completion`) cannot run here: only
0.11 installs. tests/nvim/builtin_stub.lua drives it against a stand-in with the built-in's
public API and an in-process fake server (no model), so those tests are not `integration`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from test_neovim import REPO, TIMEOUT_S, NeovimRun, neovim_env, nvim_binary, run_neovim

integration = pytest.mark.integration  # the server loads the embedded model

PLUGIN = REPO / "editors" / "nvim"
SCRIPT = Path(__file__).resolve().parent / "nvim" / "plugin_e2e.lua"
BUILTIN_SCRIPT = Path(__file__).resolve().parent / "nvim" / "builtin_stub.lua"
DEBOUNCE_MS = 60
# The server's settings. A generous time budget: on a loaded 2-core machine a multi-line suggestion can take
# longer than the default 3 s, and a suggestion cut off before its first token comes back empty (nothing shown).
SETTINGS = {"threads": 1, "drafts": 2, "timeBudgetMs": 30_000}
AFTER = "    def count(self):"  # the typed line goes below this one
TYPED = "        for "  # cursor at its end; the two drafts here both start with `i`, so both survive typing it
SECOND_AFTER = "    def first(self):"
SECOND_TYPED = "        return self.it"
THIRD_AFTER = "    def names(self):"
THIRD_TYPED = "        names = []\n        for "  # with `multiline` on: a loop with its body

SOURCE = f'''"""A tiny shopping cart."""


class Cart:
    def __init__(self, owner):
        self.owner = owner
        self.items = []

    def add(self, item, price):
        self.items.append((item, price))

    def total(self):
        return sum(price for _, price in self.items)

{AFTER}

{SECOND_AFTER}

{THIRD_AFTER}
'''


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory) -> NeovimRun:
    nvim = nvim_binary()
    tmp = tmp_path_factory.mktemp("nvim-plugin")
    project = tmp / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "cart"\n', encoding="utf-8")
    source = project / "cart" / "cart.py"  # below the root: the root is found by pyproject.toml
    source.parent.mkdir()
    source.write_text(SOURCE, encoding="utf-8")
    server_log, report_path, config_path = tmp / "server.log", tmp / "report.json", tmp / "config.json"
    config = {
        "file": str(source),
        "out": str(report_path),
        "cmd": [sys.executable, "-m", "lsp_server.cli", "--log-level", "INFO", "serve", "--log-file", str(server_log)],
        "settings": SETTINGS,
        "debounce_ms": DEBOUNCE_MS,
        "after_line": AFTER,
        "typed": TYPED,
        "second_after": SECOND_AFTER,
        "second_typed": SECOND_TYPED,
        "third_after": THIRD_AFTER,
        "third_typed": THIRD_TYPED,
        "dismiss_keys": "<C-]>",
        "load_timeout_ms": (TIMEOUT_S - 60) * 1000,
        "wait_ms": 60_000,
        "total_timeout_ms": (TIMEOUT_S - 10) * 1000,
    }
    config_path.write_text(json.dumps(config), encoding="utf-8")
    env = {**neovim_env(tmp), "LIVEKV_E2E_CONFIG": str(config_path)}
    command = [str(nvim), "--clean", "-n", "--headless", "--cmd", f"set rtp^={PLUGIN}", "-S", str(SCRIPT)]
    return run_neovim(command, project, env, tmp, report_path, server_log)


def answered(run: NeovimRun, upto: int) -> dict[str, Any]:
    """The last of the first `upto` requests the server answered (not cancelled): what is shown."""
    done = [r for r in run.report["requests"][:upto] if r["done"] and not r.get("cancelled")]
    assert done, run.explain("no inlineCompletion request was answered")
    return done[-1]


def ghost_of(run: NeovimRun, item: dict[str, Any], line: str, cursor: int) -> str:
    """What the plugin should show for `item` with `line` typed up to `cursor` (ASCII, so bytes = UTF-8 columns)."""
    start = item["range"]["start"]["character"] if "range" in item else cursor
    typed = line[start:cursor]
    text = item["insertText"]
    assert text.startswith(typed), run.explain(f"insertText {text!r} does not start with the typed {typed!r}")
    return text[len(typed) :]


def shown(run: NeovimRun, name: str) -> dict[str, Any]:
    shot = run.report.get(name)
    assert shot is not None, run.explain(f"no snapshot {name!r}; errors: {run.report['errors']}")
    return shot


@integration
def test_plugin_starts_the_server_with_the_settings(plugin_run: NeovimRun) -> None:
    report = plugin_run.report
    assert not report["errors"], plugin_run.explain("the Neovim script failed")
    assert report["nvim"].startswith("0.11.") and not report["builtin"], plugin_run.explain("expected Neovim 0.11")
    assert report["attached"], plugin_run.explain("the buffer was not attached to livekv")
    assert report["init_options"] == SETTINGS
    root = Path(report["file"]).parent.parent
    assert report["root_dir"] == str(root), plugin_run.explain("the root is not the pyproject.toml directory")
    assert report["status_loaded"]["state"] == "ready" and not report["status_loaded"]["builtin"]
    assert report["commands"], plugin_run.explain("plugin/livekv.lua did not define :LivekvToggle")
    assert report["server_exited"] and report["status_stopped"]["state"] == "off", plugin_run.explain(
        "the server did not exit cleanly after shutdown"
    )


@integration
def test_ghost_text_is_the_first_item_of_the_last_answer(plugin_run: NeovimRun) -> None:
    shot = shown(plugin_run, "shown")
    row, col = shot["cursor"]
    line = shot["lines"][row]
    assert shot["mode"] == "i" and line == TYPED and col == len(TYPED), plugin_run.explain("typing went wrong")
    request = answered(plugin_run, shot["requests"])
    params = request["params"]
    assert params["position"] == {"line": row, "character": col} and params["context"] == {"triggerKind": 2}
    items = request["result"]["items"]
    assert items, plugin_run.explain("the last answer has no items")
    ghost = shot["ghost"]
    assert ghost["count"] == 1 and ghost["pos"] == "inline", plugin_run.explain("not one inline extmark")
    assert (ghost["row"], ghost["col"]) == (row, col), plugin_run.explain("ghost text not at the cursor")
    assert ghost["text"] == ghost_of(plugin_run, items[0], line, col), plugin_run.explain("ghost text != first item")
    status = plugin_run.report["status_shown"]
    assert isinstance(status["latency_ms"], int) and status["model"], plugin_run.explain("no livekv/status")
    assert shot["statusline"] == f"livekv {status['latency_ms']}ms"


@integration
def test_typing_through_shrinks_the_ghost_text_without_a_request(plugin_run: NeovimRun) -> None:
    before, after = shown(plugin_run, "shown"), shown(plugin_run, "through")
    first = plugin_run.report["typed_through"]
    assert after["lines"][after["cursor"][0]] == TYPED + first, plugin_run.explain("the character was not typed")
    assert after["ghost"] is not None, plugin_run.explain("typing through the suggestion hid it")
    assert after["ghost"]["text"] == before["ghost"]["text"][len(first) :], plugin_run.explain("ghost did not shrink")
    assert after["ghost"]["col"] == len(TYPED) + len(first)
    assert after["requests"] == before["requests"], plugin_run.explain("typing through sent a new request")


@integration
def test_cycling_shows_the_other_draft(plugin_run: NeovimRun) -> None:
    through, nxt, prev = shown(plugin_run, "through"), shown(plugin_run, "next"), shown(plugin_run, "prev")
    row, col = through["cursor"]
    line = through["lines"][row]
    items = answered(plugin_run, through["requests"])["result"]["items"]
    # The drafts that still fit what was typed, duplicates once, in the server's order.
    fitting: list[str] = []
    for item in items:
        typed = line[item["range"]["start"]["character"] : col]
        rest = item["insertText"][len(typed) :]
        if item["insertText"].startswith(typed) and rest and rest not in fitting:
            fitting.append(rest)
    assert fitting and fitting[0] == through["ghost"]["text"], plugin_run.explain("the first item is not shown")
    expected = fitting[1] if len(fitting) > 1 else fitting[0]
    assert nxt["ghost"] is not None and nxt["ghost"]["text"] == expected, plugin_run.explain(
        f"<M-]> did not show the next draft ({len(fitting)} fitting)"
    )
    assert prev["ghost"]["text"] == fitting[0], plugin_run.explain("<M-[> did not go back to the first draft")
    assert nxt["requests"] == prev["requests"] == through["requests"], plugin_run.explain("cycling sent a request")
    assert nxt["lines"] == prev["lines"] == through["lines"]


@integration
def test_tab_accepts_the_suggestion_at_its_range(plugin_run: NeovimRun) -> None:
    before, after = shown(plugin_run, "before_accept"), shown(plugin_run, "accepted")
    row, col = before["cursor"]
    line = before["lines"][row]
    ghost = before["ghost"]["text"]
    inserted = (line[:col] + ghost + line[col:]).split("\n")
    expected = before["lines"][:row] + inserted + before["lines"][row + 1 :]
    assert after["lines"] == expected, plugin_run.explain("accepting did not insert the suggestion")
    assert after["cursor"] == [row + len(inserted) - 1, len(inserted[-1]) - len(line[col:])]
    assert after["mode"] == "i"


@integration
def test_a_newer_request_cancels_the_one_in_flight(plugin_run: NeovimRun) -> None:
    before, shot = shown(plugin_run, "before_second"), shown(plugin_run, "second_shown")
    row, col = shot["cursor"]
    assert shot["lines"][row] == SECOND_TYPED and shot["lines"][row - 1] == SECOND_AFTER
    sent = plugin_run.report["requests"][before["requests"] : shot["requests"]]
    assert len(sent) >= 2, plugin_run.explain("<M-]><M-]> did not send two requests")
    assert all(r.get("cancelled") for r in sent[:-1]), plugin_run.explain("an older request was not cancelled")
    last = sent[-1]
    assert not last.get("cancelled") and last["done"] and last["params"]["position"] == {"line": row, "character": col}
    items = last["result"]["items"]
    assert items, plugin_run.explain("the last request got no items")
    assert shot["ghost"]["text"] == ghost_of(plugin_run, items[0], SECOND_TYPED, col)


@integration
def test_ctrl_right_accepts_one_word(plugin_run: NeovimRun) -> None:
    shot, after = shown(plugin_run, "second_shown"), shown(plugin_run, "word")
    row, col = shot["cursor"]
    assert shot["lines"][row][col:] == "", plugin_run.explain("the cursor is not at the end of the line")
    ghost = shot["ghost"]["text"]
    word = re.match(r"\s*[A-Za-z0-9_]+|\s*[^A-Za-z0-9_\s]+", ghost.split("\n")[0])
    assert word, f"no word at the start of {ghost!r}"
    line = SECOND_TYPED + word.group()
    assert after["lines"] == [*shot["lines"][:row], line, *shot["lines"][row + 1 :]], plugin_run.explain("not a word")
    assert after["cursor"] == [row, len(line)]
    rest = ghost[word.end() :]
    assert (after["ghost"] or {}).get("text") == (rest or None), plugin_run.explain("the rest is not shown")
    assert after["requests"] == shot["requests"], plugin_run.explain("accepting a word sent a request")


@integration
def test_dismiss_hides_the_ghost_text_and_keeps_the_buffer(plugin_run: NeovimRun) -> None:
    shot, dismissed = shown(plugin_run, "word"), shown(plugin_run, "dismissed")
    assert shot["ghost"] is not None, plugin_run.explain("nothing shown to dismiss")
    assert dismissed["ghost"] is None, plugin_run.explain("<C-]> left the ghost text")
    assert dismissed["lines"] == shot["lines"] and dismissed["cursor"] == shot["cursor"]
    assert dismissed["requests"] == shot["requests"], plugin_run.explain("dismissing sent a request")


@integration
def test_a_multi_line_suggestion_shows_as_virtual_lines_and_is_accepted_whole(plugin_run: NeovimRun) -> None:
    shot, after = shown(plugin_run, "multi_shown"), shown(plugin_run, "multi_accepted")
    row, col = shot["cursor"]
    typed = THIRD_TYPED.split("\n")
    assert shot["lines"][row - 1 : row + 1] == typed and col == len(typed[-1]), plugin_run.explain("typing went wrong")
    items = answered(plugin_run, shot["requests"])["result"]["items"]
    ghost = ghost_of(plugin_run, items[0], typed[-1], col)
    assert "\n" in ghost, plugin_run.explain(f"the server's first item is one line: {ghost!r}")
    # The recorded text is the inline chunk, then "\n" and each virtual line.
    assert shot["ghost"]["text"] == ghost and shot["ghost"]["pos"] == "inline", plugin_run.explain("not as the item")
    inserted = (typed[-1] + ghost).split("\n")
    assert after["lines"] == [*shot["lines"][:row], *inserted, *shot["lines"][row + 1 :]], plugin_run.explain(
        "<Tab> did not insert every line"
    )
    assert after["cursor"] == [row + len(inserted) - 1, len(inserted[-1])]


@integration
def test_checkhealth_reports_the_client_model_and_latency(plugin_run: NeovimRun) -> None:
    health = "\n".join(plugin_run.report.get("health") or [])
    assert "livekv: Neovim" in health and "livekv: server" in health, plugin_run.explain(f"no report:\n{health}")
    oks = [line for line in health.splitlines() if "OK" in line]
    assert not [line for line in health.splitlines() if "ERROR" in line], health
    model = plugin_run.report["status_shown"]["model"]
    for expected in ("Neovim 0.11.", "own extmarks", "running (initialized)", f"model: {model}", "last suggestion: "):
        assert any(expected in line for line in oks), f"no OK line with {expected!r}:\n{health}"


# -- the Neovim 0.12 path, against a stand-in for vim.lsp.inline_completion ---------------------------------

BUILTIN_TYPED = "        return self.it"  # the item's range: `self.it`, from column 15 to the cursor
BUILTIN_FIRST = "        return self.items[0] if self.items else None"  # the typed line after accepting all of it
BUILTIN_ITEM = {"insert_text": "self.items[0] if self.items else None\n    def last(self):", "start_col": 15}
BUILTIN_SOURCE = "class Cart:\n    def first(self):\n"


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory: pytest.TempPathFactory) -> NeovimRun:
    nvim = nvim_binary()
    tmp = tmp_path_factory.mktemp("nvim-builtin")
    source = tmp / "cart.py"
    source.write_text(BUILTIN_SOURCE, encoding="utf-8")
    report_path, config_path = tmp / "report.json", tmp / "config.json"
    config = {"file": str(source), "out": str(report_path), "typed": BUILTIN_TYPED, "item": BUILTIN_ITEM}
    config["wait_ms"] = 10_000
    config_path.write_text(json.dumps(config), encoding="utf-8")
    env = {**neovim_env(tmp), "LIVEKV_E2E_CONFIG": str(config_path)}
    command = [str(nvim), "--clean", "-n", "--headless", "--cmd", f"set rtp^={PLUGIN}", "-S", str(BUILTIN_SCRIPT)]
    return run_neovim(command, tmp, env, tmp, report_path, tmp / "no-server.log", timeout_s=60)


def builtin_step(run: NeovimRun, name: str) -> dict[str, Any]:
    steps = {step["name"]: step for step in run.report["steps"]}
    assert name in steps, run.explain(f"no step {name!r}; errors: {run.report['errors']}")
    return steps[name]


def calls_between(run: NeovimRun, before: str, after: str) -> list[dict[str, Any]]:
    """The stand-in's calls made from step `before` to step `after`."""
    return run.report["calls"][builtin_step(run, before)["calls"] : builtin_step(run, after)["calls"]]


def test_builtin_is_enabled_per_buffer_and_every_key_is_mapped(builtin_run: NeovimRun) -> None:
    report = builtin_run.report
    assert not report["errors"], builtin_run.explain("the Neovim script failed")
    assert report["status"]["builtin"] and report["status"]["state"] == "ready"
    # bufnr alone: the built-in asserts that bufnr and client_id are not both given
    enable = {"enable": True, "bufnr": report["bufnr"], "client_id": None}
    assert report["calls"][0] == {"name": "enable", "args": enable}
    maps = report["maps"]
    for lhs, desc in {
        "<Tab>": "accept the suggestion",
        "<C-Right>": "accept a word",
        "<M-l>": "accept a line",
        "<C-]>": "dismiss",
        "<M-]>": "next draft",
        "<M-[>": "previous draft",
    }.items():
        assert maps.get(lhs) == f"livekv: {desc}", builtin_run.explain(f"{lhs} is not mapped on the 0.12 path")


def test_builtin_accept_word_and_line_insert_that_part_of_the_item(builtin_run: NeovimRun) -> None:
    typed, word, line = (builtin_step(builtin_run, n) for n in ("typed", "word", "line"))
    row = typed["cursor"][0]
    assert typed["lines"][row] == BUILTIN_TYPED and typed["mode"] == "i"
    assert [c["args"]["on_accept"] for c in calls_between(builtin_run, "typed", "line")] == [True, True]
    assert word["lines"][row] == "        return self.items", builtin_run.explain("<C-Right> did not take one word")
    assert word["cursor"] == [row, len("        return self.items")] and len(word["lines"]) == len(typed["lines"])
    assert line["lines"][row] == BUILTIN_FIRST, builtin_run.explain("<M-l> did not take the rest of the line")
    assert line["cursor"] == [row, len(BUILTIN_FIRST)] and len(line["lines"]) == len(typed["lines"])


def test_builtin_dismiss_inserts_nothing_and_keys_fall_through_when_nothing_is_shown(builtin_run: NeovimRun) -> None:
    line, dismissed, tab = (builtin_step(builtin_run, n) for n in ("line", "dismissed", "tab_fallthrough"))
    (dismiss,) = calls_between(builtin_run, "line", "dismissed")
    assert dismiss["args"]["on_accept"] and dismiss["args"]["shown"]  # get() with the no-op accept: hidden
    assert not dismissed["shown"] and dismissed["lines"] == line["lines"] and dismissed["cursor"] == line["cursor"]
    row, col = line["cursor"]
    assert tab["lines"][row] == line["lines"][row] + "\t", builtin_run.explain("<Tab> lost its meaning")
    assert tab["cursor"] == [row, col + 1]


def test_builtin_cycles_with_select_and_tab_accepts_through_the_builtin(builtin_run: NeovimRun) -> None:
    cycle = calls_between(builtin_run, "tab_fallthrough", "cycled")
    bufnr = builtin_run.report["bufnr"]
    assert cycle == [
        {"name": "select", "args": {"bufnr": bufnr, "count": 1}},
        {"name": "select", "args": {"bufnr": bufnr, "count": -1}},
    ]
    (accept,) = calls_between(builtin_run, "cycled", "accepted")
    assert accept["name"] == "get" and accept["args"]["shown"] and not accept["args"]["on_accept"]  # the built-in's own
    accepted, row = builtin_step(builtin_run, "accepted"), builtin_step(builtin_run, "typed")["cursor"][0]
    assert accepted["lines"][row : row + 2] == [BUILTIN_FIRST, "    def last(self):"]
    assert accepted["cursor"] == [row + 1, len("    def last(self):")]


def test_builtin_toggle_and_checkhealth(builtin_run: NeovimRun) -> None:
    bufnr = builtin_run.report["bufnr"]
    assert [c["args"]["enable"] for c in calls_between(builtin_run, "accepted", "toggled")] == [False, True]
    assert all(c["args"]["bufnr"] == bufnr for c in calls_between(builtin_run, "accepted", "toggled"))
    health = "\n".join(builtin_run.report.get("health") or [])
    assert "ERROR" not in health, health
    assert "built-in vim.lsp.inline_completion" in health and "vim.lsp.enable('livekv')" in health, health
