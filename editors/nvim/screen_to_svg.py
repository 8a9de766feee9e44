"""Render a terminal screen captured with `tmux capture-pane -e -p` (text + SGR colour codes) as SVG.

For the README's picture of ghost text: plain `capture-pane -p` loses the grey of the suggestion.
Handles what tmux emits for Neovim: reset, bold, italic, reverse, the 8/16 colours, 256-colour
and 24-bit foreground/background. Usage: `python screen_to_svg.py SCREEN.ansi OUT.svg`.
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass, replace

CELL_W, CELL_H, FONT = 8.4, 17, 14
FG, BG = "#d0d0d0", "#1c1c1c"
BASE16 = [
    "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
]  # fmt: skip
SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def color256(n: int) -> str:
    if n < 16:
        return BASE16[n]
    if n < 232:
        r, g, b = ((n - 16) // 36, (n - 16) // 6 % 6, (n - 16) % 6)
        return "#" + "".join(f"{0 if c == 0 else 55 + 40 * c:02x}" for c in (r, g, b))
    return "#" + f"{8 + 10 * (n - 232):02x}" * 3


@dataclass(frozen=True)
class Style:
    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    italic: bool = False
    reverse: bool = False


def apply(style: Style, params: str) -> Style:
    """The style after one SGR sequence."""
    codes = [int(p) if p else 0 for p in params.replace(":", ";").split(";")]
    i = 0
    while i < len(codes):
        c = codes[i]
        if c in (38, 48) and i + 1 < len(codes):
            if codes[i + 1] == 5 and i + 2 < len(codes):
                value, i = color256(codes[i + 2]), i + 2
            elif codes[i + 1] == 2 and i + 4 < len(codes):
                value, i = "#" + "".join(f"{v:02x}" for v in codes[i + 2 : i + 5]), i + 4
            else:
                value = None
            style = replace(style, fg=value) if c == 38 else replace(style, bg=value)
        elif c == 0:
            style = Style()
        elif c in (1, 3, 7, 22, 23, 27):
            flag = {1: "bold", 22: "bold", 3: "italic", 23: "italic", 7: "reverse", 27: "reverse"}[c]
            style = replace(style, **{flag: c < 20})
        elif 30 <= c <= 37 or 90 <= c <= 97:
            style = replace(style, fg=BASE16[c - 30 if c < 90 else c - 82])
        elif 40 <= c <= 47 or 100 <= c <= 107:
            style = replace(style, bg=BASE16[c - 40 if c < 100 else c - 92])
        elif c == 39:
            style = replace(style, fg=None)
        elif c == 49:
            style = replace(style, bg=None)
        i += 1
    return style


def runs(line: str, style: Style) -> tuple[list[tuple[str, Style]], Style]:
    """A line's text split where its style changes; the style carried to the next line."""
    out: list[tuple[str, Style]] = []
    pos = 0
    for match in SGR.finditer(line):
        if match.start() > pos:
            out.append((line[pos : match.start()], style))
        style = apply(style, match[1])
        pos = match.end()
    if pos < len(line):
        out.append((line[pos:], style))
    return out, style


def render(screen: str) -> str:
    lines = screen.rstrip("\n").split("\n")
    width = max(len(SGR.sub("", line)) for line in lines)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * CELL_W:.0f}" height="{len(lines) * CELL_H}" '
        f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}">',
        f'<rect width="100%" height="100%" fill="{BG}"/>',
    ]
    style = Style()
    for row, line in enumerate(lines):
        col = 0
        line_runs, style = runs(line, style)
        for text, s in line_runs:
            fg, bg = (s.bg or BG, s.fg or FG) if s.reverse else (s.fg or FG, s.bg)
            x, y = col * CELL_W, row * CELL_H
            if bg:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{len(text) * CELL_W:.1f}" height="{CELL_H}" fill="{bg}"/>'
                )
            if text.strip():
                attrs = ' font-weight="bold"' if s.bold else ""
                attrs += ' font-style="italic"' if s.italic else ""
                parts.append(
                    f'<text x="{x:.1f}" y="{y + CELL_H - 4}" fill="{fg}"{attrs} xml:space="preserve">'
                    f"{html.escape(text)}</text>"
                )
            col += len(text)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    with open(src, encoding="utf-8") as f:
        screen = f.read()
    with open(dst, "w", encoding="utf-8") as f:
        f.write(render(screen))
