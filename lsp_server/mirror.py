"""The server's copy of one open document, and how fast its user is typing."""

from __future__ import annotations

from dataclasses import dataclass, field

from lsp_server.positions import Lines

# Weight of the newest keystroke interval in the running average.
EWMA = 0.3
# Intervals longer than this are pauses, not typing speed.
PAUSE = 1.0


@dataclass
class Mirror:
    version: int
    text: str
    last_change: float = 0.0  # time.monotonic() of the last change
    interval: float = PAUSE  # running average of the time between changes while typing
    _lines: tuple[str, Lines] | None = field(default=None, repr=False, compare=False)

    @property
    def lines(self) -> Lines:
        """The text's lines, computed once per text: a request converts several positions against them."""
        if self._lines is None or self._lines[0] is not self.text:
            self._lines = (self.text, Lines.of(self.text))
        return self._lines[1]

    def typed(self, now: float) -> None:
        gap = now - self.last_change
        if gap < PAUSE:
            self.interval = (1 - EWMA) * self.interval + EWMA * gap
        self.last_change = now

    def debounce(self, now: float, longest: float) -> float:
        """How long a suggestion should wait before starting: about half the user's typing interval
        (a next keystroke would cancel it anyway), never more than `longest`, nothing after a pause."""
        since = now - self.last_change
        return max(0.0, min(longest, self.interval / 2) - since)
