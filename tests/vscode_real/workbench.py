"""The VS Code workbench in the browser, as a user sees and drives it: the explorer, the editor's ghost
text, the status bar, the command palette and the Settings editor. Selectors are VS Code 1.139's."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from playwright.sync_api import Page

T = TypeVar("T")
EDITOR = ".editor-instance .monaco-editor"
SETTINGS = ".settings-editor"


def until(what: str, probe: Callable[[], T | None], timeout_s: float, explain: Callable[[], str] = str) -> T:
    """Poll `probe` every 0.2 s until it returns something; fail naming `what` (and `explain()`) after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s {explain()}")
        time.sleep(0.2)


class Workbench:
    def __init__(self, page: Page) -> None:
        self.page = page

    def open(self, name: str) -> None:
        """Open a file from the explorer (Quick Open drops an Enter pressed while its search still runs)."""
        self.page.get_by_role("treeitem", name=name).first.click()
        self.page.wait_for_selector(f"{EDITOR} .view-lines", timeout=30_000)
        self.page.locator(f"{EDITOR} .view-lines").first.click()

    def ghost(self) -> str:
        """The ghost text on screen: one span per syntax token, U+00A0 for spaces ("" when none)."""
        return "".join(self.page.locator(f"{EDITOR} .ghost-text-decoration").all_inner_texts()).replace("\u00a0", " ")

    def lines(self) -> list[str]:
        """The editor's visible lines."""
        return [t.replace("\u00a0", " ") for t in self.page.locator(f"{EDITOR} .view-line").all_inner_texts()]

    def status(self) -> str:
        """livekv's status bar item."""
        items = [s.strip() for s in self.page.locator(".statusbar-item").all_inner_texts()]
        return next((s for s in items if re.match(r"livekv( |$)", s)), "")

    def type(self, text: str) -> None:
        self.page.keyboard.type(text, delay=40)

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)

    def command(self, title: str) -> None:
        """Run a command from the palette, as a user would (F1, its title, Enter)."""
        self.press("F1")
        box = self.page.locator(".quick-input-widget input")
        box.wait_for(state="visible", timeout=10_000)
        box.fill(f">{title}")
        self.page.locator(".quick-input-list .monaco-list-row", has_text=title).first.wait_for(timeout=10_000)
        self.press("Enter")

    def set_setting(self, key: str, value: str) -> None:
        """Type a value into a number or text setting of the Settings editor, as a user would (its User
        tab: the user's settings.json). Closing the editor before the value is written drops it."""
        self.press("Control+Comma")
        search = self.page.locator(f"{SETTINGS} .settings-header .suggest-input-container")
        search.wait_for(state="visible", timeout=20_000)
        search.click()
        self.press("Control+A")
        self.type(key)
        field = self.page.locator(f'{SETTINGS} input[aria-label="{key}"]')  # shown once the search filtered
        field.wait_for(state="visible", timeout=20_000)
        field.click()
        self.press("Control+A")
        self.type(value)  # written to settings.json after a moment: the caller waits for it, then closes

    def close_settings(self) -> None:
        self.press("Escape")

    def back_to(self, name: str) -> None:
        """Back to the file's editor tab, caret where it was."""
        self.page.locator(".tabs-container .tab", has_text=name).first.click()
        self.page.wait_for_selector(f"{EDITOR} .view-lines", timeout=10_000)
