"""The language client's own record of what it sent and got: with `livekv.trace.server: verbose`,
vscode-languageclient writes every message, params and results as JSON, to the *livekv* output
channel, which the extension host keeps in a file under the user data's logs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER = re.compile(
    r"^\[Trace - [^\]]+\] (?P<what>Sending request|Received response|Sending notification|Received notification"
    r"|Received request|Sending response) '(?P<method>[^']+?)(?: - \((?P<id>\d+)\))?'.*$",
    re.MULTILINE,
)


@dataclass
class Message:
    what: str  # "Sending request", "Received response", ...
    method: str
    id: int | None
    body: Any  # the params or result; None for a failed request
    failed: bool
    ms: int | None  # a response's time since its request, as the client measured it


def channel_files(user_data: Path) -> list[Path]:
    """The livekv output channel of each extension host, oldest first."""
    return sorted(user_data.glob("logs/*/exthost*/output_logging_*/*-livekv.log"))


def messages(user_data: Path) -> list[Message]:
    """Every traced message of the newest extension host, in order."""
    files = channel_files(user_data)
    assert files, f"no livekv output channel under {user_data / 'logs'}"
    text = files[-1].read_text(errors="replace")
    heads = list(HEADER.finditer(text))
    out = []
    for head, after in zip(heads, [*heads[1:], None], strict=True):
        rest = text[head.end() : after.start() if after else len(text)]
        body = re.search(r"^(?:Params|Result): (\{.*?^\}|\[.*?^\]|\S.*?)$", rest, re.MULTILINE | re.DOTALL)
        out.append(
            Message(
                what=head["what"],
                method=head["method"],
                id=int(head["id"]) if head["id"] else None,
                body=json.loads(body[1]) if body else None,
                failed="Request failed" in head[0],
                ms=int(took[1]) if (took := re.search(r" in (\d+)ms\.", head[0])) else None,
            )
        )
    return out


@dataclass
class Answer:
    """An inline request the server answered (not cancelled): the document's version when it was sent."""

    version: int
    position: dict[str, int]
    trigger_kind: int
    items: list[dict[str, Any]]
    ms: int  # request to answer, as the client measured it


def answers(user_data: Path) -> list[Answer]:
    """The answered inline requests of the newest extension host, in order."""
    version, asked, out = -1, {}, []
    for m in messages(user_data):
        if m.what == "Sending notification" and m.method in ("textDocument/didOpen", "textDocument/didChange"):
            version = m.body["textDocument"]["version"]
        elif m.method == "textDocument/inlineCompletion" and m.what == "Sending request":
            asked[m.id] = (version, m.body)
        elif m.method == "textDocument/inlineCompletion" and m.what == "Received response" and not m.failed:
            sent_at, params = asked[m.id]
            items = (m.body or {}).get("items", []) if isinstance(m.body, dict) else m.body or []
            context = params["context"]
            out.append(Answer(sent_at, params["position"], context["triggerKind"], items, m.ms or 0))
    return out


def last_version(user_data: Path) -> int:
    """The document version the client sent last."""
    sent = [
        m for m in messages(user_data) if m.what == "Sending notification" and m.method.startswith("textDocument/did")
    ]
    return max(m.body["textDocument"].get("version", -1) for m in sent)


def document(user_data: Path) -> str:
    """The document's text as the client last described it to the server: its didOpen, then every didChange."""
    text = ""
    for m in messages(user_data):
        if m.what != "Sending notification":
            continue
        if m.method == "textDocument/didOpen":
            text = m.body["textDocument"]["text"]
        elif m.method == "textDocument/didChange":
            for change in m.body["contentChanges"]:
                text = apply(text, change)
    return text


def apply(text: str, change: dict[str, Any]) -> str:
    """One content change (a range and its new text, or the whole text); positions count UTF-16 units,
    which are characters for the ASCII the tests type."""
    if "range" not in change:
        return str(change["text"])
    lines = text.split("\n")
    start, end = change["range"]["start"], change["range"]["end"]

    def offset(p: dict[str, int]) -> int:
        return sum(len(line) + 1 for line in lines[: p["line"]]) + p["character"]

    return text[: offset(start)] + change["text"] + text[offset(end) :]
