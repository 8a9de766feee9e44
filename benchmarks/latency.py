"""`livekv bench latency`: keystroke-to-suggestion latency of the real server in seven editing flows,
under the default update policy (pie) and its baselines.

Why: a live cache pays off only if a suggestion after an ordinary edit costs a few new tokens,
wherever the edit was. Typing at the caret is the easy case (every policy that keeps a prefix
handles it); typing a few lines or a few thousand tokens above the caret, jumping between
functions or documents, and undoing a paste are where a cache that holds only "the last
prompt" re-encodes thousands of tokens. So the benchmark drives `livekv serve` over stdio
(through `lsp_server.editor.Editor`, as VS Code would) in these flows, on ~4k-token
standard-library files (every machine has them):

  (a) typing at the caret: a code line at ~85% of the file is emptied and typed back key by key
      (50-150 ms between keys, seeded); at each pause (before a space or punctuation) an inline
      completion is asked for and awaited, then the user reads it (0.4 s) and types on;
  (b) a line typed key by key ABOVE the caret, about 5, 50, 500 and 2000 tokens up (after one
      request at the caret, so the server knows it), then back at the caret (0.6 s to move
      there): one key typed, an inline request at it. That request is measured, per distance;
  (c) the same with the line typed ~100 tokens BELOW the caret;
  (d) jumping between two functions: a request at A (85%), at B (30%, ~2k tokens up), at A
      again, no edits; the requests after each jump are measured, from the request's send;
  (e) switching between two open documents: a request in document 1, in document 2, in 1 again;
      measured as (d);
  (f) a 20-line paste ~500 tokens above the caret (one didChange) and an inline request at the
      caret sent right after it; then its undo (one didChange deleting the lines) and a request
      at the caret again; both measured from the didChange (the paste / undo keystroke).

No requests are made while a line is typed away from the caret. Each flow opens its own
document(s) (closed at its end), so flows do not share cache state, and waits after opening and
after its setup request until the server's background work is done (its cache numbers in
`livekv/documentState` stop changing; a server may fill a cache at idle time): opening a file is
not what is measured. The repeats of a flow continue in the same document (lines typed in (b)
and (c) stay).

Measured per request (`Answer` of the editor): *to first token* = from the keystroke (or the
request's send) to the first token, i.e. the wait measured here less the server's time after its
first token (reported in `livekv/status`); *to suggestion* = to the whole single-line suggestion
received. After each measured request `livekv/documentState` is read and its `encoded` field
(cumulative tokens the server ran through the model for the document, by cause: edits, requests,
background refresh) recorded, where the server reports it; a sample's `encoded` is the change
since the previous reading, summed over the flow's documents: what that step cost the server.

The flows run against servers that differ only by `updatePolicy`: "pie" (the default: rotate
shifted keys, encode new tokens) runs every flow; the baselines run the flows whose targets compare
against them (`--baseline-flows`): "prefix-reuse" (llama.cpp: keep the common prefix with the last
prompt, encode the rest) runs flow (b), for its 2,000-token speed-up target; "full" (encode every
prompt whole) is no target's comparison and runs only when `--policies` names it. All other settings
are the defaults except `indexWorkspace: false` (no project folder to read) and any given with
`--set`; the JSON's run record lists the pie server's settings that differ from the defaults, each
server's its own, and the messages each server sent (a server that does not know `updatePolicy`
says so and runs pie: the table marks such rows).
`idleRefreshMs` is left at its default: background refresh runs while the user pauses (0.4 s
reading, 0.6 s moving the caret), and its tokens count under `refresh`.

The plan, sized to about 11 minutes on 2 cores: pie 3 repeats of every flow (~9 min, from the
2026-12-02 run's 524 s for (a)-(g) plus (h)), prefix-reuse 1 repeat of flow (b) (a re-encode of up to
2k tokens per request, ~1.5 min with its start). A caret move or document switch (d, e) is judged
on tokens encoded beyond the prompt's last token, which every request runs for its logits.
`--quick` is the same path at smoke size (~1.5 min): flows (a), (b), (g), (h), 1 repeat, 2 requests in
(a), distance 500, files cut to 1,200 tokens (all flows at that size: ~3.5 min). `table` renders the
written JSON: one row per flow and step, pie's figures, each baseline's first token and encoded tokens,
the README's targets judged on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import io
import json
import random
import re
import statistics
import sys
import sysconfig
import tempfile
import textwrap
import time
import tokenize
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import cycle
from pathlib import Path
from typing import Any

from benchmarks.common import pct, setting, write_json
from completion.model.formats import WEIGHT_CHOICES
from completion.settings import Settings
from lsp_server.editor import Answer, Editor

POLICIES = ("pie", "prefix-reuse", "full")
FLOWS = ("a", "b", "c", "d", "e", "f", "g", "h")
FLOW_NAMES = {
    "a": "typing at the caret",
    "b": "a line typed above the caret, then one key at the caret",
    "c": "a line typed below the caret, then one key at the caret",
    "d": "jumping between two functions (no edits)",
    "e": "switching between two open documents",
    "f": "a 20-line paste above the caret, then its undo",
    "g": "a file opened and a request at once at a caret in its second half",
    "h": "member accesses typed at the caret (`obj.`), a request after each dot",
}
FILES = ("csv.py", "poplib.py")  # 3.9k and 3.8k tokens with the embedded tokenizer (Python 3.11)
DISTANCES = (5, 50, 500, 2000)  # tokens between the line typed above and the caret, flow (b)
MAX_DOC_TOKENS = 4000  # a longer file is cut at a line end: the prompt window is 4096 tokens
CARET_AT = 0.85  # where in the file the user is writing
FAR_AT = 0.30  # flow (d)'s other function
BELOW_TOKENS = 100  # flow (c): the line typed below the caret, this many tokens down
PASTE_LINES = 20  # flow (f)
PASTE_TOKENS = 500  # flow (f): the paste goes this many tokens above the caret
PASTE_FROM = 0.15  # flow (f): the pasted lines are copied from here
PAUSE_BEFORE = set(" .(,:)[=")  # flow (a) asks when the next key is one of these
KEY_SECONDS = (0.05, 0.15)  # between keys
READ_SECONDS = 0.4  # the user reads the suggestion
MOVE_SECONDS = 0.6  # the user moves the caret elsewhere (longer than idleRefreshMs: refresh runs)
DEFAULT_LINE = "value = self.lookup(name, default=None)"  # typed when the neighbouring line is no plain statement
CAUSES = ("edits", "requests", "refresh")
SETUP = "setup"  # a request that gives the server a caret; recorded, not measured
SETTLE_POLL_SECONDS = 1.0  # between two readings of the cache while waiting for background work to end
SETTLE_TIMEOUT_SECONDS = 180.0
FIRST_TOKEN_TARGET_MS = 150.0  # flow (b), every distance, pie
SUGGESTION_SLACK_MS = 100.0  # flow (b)'s whole suggestion at most this much over flow (a)'s, pie
SPEEDUP_TARGET = 30.0  # flow (b) at 2000 tokens: pie's first token this much faster than prefix-reuse's
OPEN_TARGET_MS = 2000.0  # flow (g): the first suggestion after opening, pie
PREFETCH_TARGET = 0.80  # flow (h): share of member triggers jedi had answered before the request asked
RECEIVERS = 3  # flow (h): the file's most used receivers (`name.` before a member), one line each per repeat
TYPING_TARGET_MS = 350.0  # flow (a): the whole suggestion p50 at the default settings, pie
BASELINE_FLOWS = ("b",)  # the flows whose targets compare pie with a baseline (prefix-reuse at 2,000 tokens)
DEFAULTS = {
    "flows": list(FLOWS),
    "repeats": 3,
    "requests": 6,
    "distances": list(DISTANCES),
    "max_doc_tokens": MAX_DOC_TOKENS,
}
# the flows with a target judged on time or jedi (the cache-work flows c-f are exercised by the tests)
QUICK = {"flows": ["a", "b", "g", "h"], "repeats": 1, "requests": 2, "distances": [500], "max_doc_tokens": 1200}


# -- documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A file as the flows open it: two code lines cut short where the user is writing."""

    name: str
    text: str
    caret: int  # the caret (A): the end of a code line at CARET_AT cut after its first words
    pending: str  # the rest of that line: the keys typed at the caret, one per step
    line_start: int  # where that line's code starts (flow (a) types all of it back from here)
    far: int  # another caret (B) at FAR_AT, a code line cut the same way
    tokens: int  # the text's tokens

    @property
    def line(self) -> str:
        """The caret line's whole code (flow (a) types it)."""
        return self.text[self.line_start : self.caret] + self.pending


def statement_starts(text: str) -> list[int]:
    """Offsets of the lines where a Python statement or a comment line begins (not inside a string,
    brackets or a continuation), by the standard library's tokenizer; up to where it fails on a
    broken text."""
    lines = line_starts(text)
    out: list[int] = []
    expect = True
    skip = (tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NEWLINE:
                expect = True
            elif tok.type == tokenize.COMMENT:
                if expect and tok.line[: tok.start[1]].strip() == "":
                    out.append(lines[tok.start[0] - 1])
            elif tok.type not in skip and expect:
                out.append(lines[tok.start[0] - 1])
                expect = False
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        pass
    return out


def line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", text))]


def line_at(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start : len(text) if end < 0 else end]


def bracket_depths(code: str) -> list[int]:
    """The bracket depth before each character of `code` and after the last."""
    depths = [0]
    for ch in code:
        depths.append(depths[-1] + (ch in "([{") - (ch in ")]}"))
    return depths


def plain_statement(body: str, shortest: int = 12) -> bool:
    """A whole one-line statement of `shortest`-70 chars: no block header, comment, string, decorator,
    continuation, and its brackets close on the line."""
    depths = bracket_depths(body)
    return (
        shortest <= len(body) <= 70
        and not body.endswith((":", "\\", ","))
        and body[0] not in "#\"'@"
        and depths[-1] == 0
        and min(depths) == 0
    )


def target_line(text: str, fraction: float) -> tuple[int, str]:
    """(offset, content) of the first indented one-line statement of 25-70 chars after `fraction` of the file."""
    after = int(len(text) * fraction)
    for start in statement_starts(text):
        line = line_at(text, start)
        body = line.strip()
        if start >= after and line.startswith("    ") and plain_statement(body, shortest=25):
            return start + len(line) - len(body), body
    raise ValueError(f"no statement to type after {fraction:.0%} of the file")


def head_length(body: str) -> int:
    """Where a line is cut: at the first pause character after its first third where its brackets are
    closed (mid-statement, and the rest of the file still lexes as before)."""
    depths = bracket_depths(body)
    cuts = [i for i in range(1, len(body)) if body[i] in PAUSE_BEFORE and depths[i] == 0]
    later = [i for i in cuts if i >= max(4, len(body) // 3)]
    return later[0] if later else cuts[-1] if cuts else len(body) // 3


def token_starts(tokenizer: Any, text: str) -> list[int]:
    """Character offset where each token starts, tokenized as the server does (no special tokens)."""
    enc = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    return [start for start, _ in enc["offset_mapping"]]


def tokens_between(starts: list[int], a: int, b: int) -> int:
    """Tokens starting in [min(a, b), max(a, b))."""
    lo, hi = sorted((a, b))
    return bisect.bisect_left(starts, hi) - bisect.bisect_left(starts, lo)


def cut_to_tokens(text: str, starts: list[int], max_tokens: int) -> str:
    """`text` up to the last line end within its first `max_tokens` tokens."""
    if len(starts) <= max_tokens:
        return text
    return text[: text.rfind("\n", 0, starts[max_tokens]) + 1]


def prepare(name: str, source: str, tokenizer: Any, max_tokens: int = MAX_DOC_TOKENS) -> Prepared:
    """The document the flows open: `source` cut to `max_tokens`, the lines at CARET_AT and FAR_AT cut short."""
    text = cut_to_tokens(source, token_starts(tokenizer, source), max_tokens)
    a, a_body = target_line(text, CARET_AT)
    b, b_body = target_line(text, FAR_AT)
    if not b + len(b_body) < a:
        raise ValueError(f"{name}: the two code lines overlap")
    a_cut, b_cut = head_length(a_body), head_length(b_body)
    text = text[: a + a_cut] + text[a + len(a_body) :]  # the later line first: the earlier offsets hold
    text = text[: b + b_cut] + text[b + len(b_body) :]
    shift = len(b_body) - b_cut
    return Prepared(
        name=name,
        text=text,
        caret=a + a_cut - shift,
        pending=a_body[a_cut:],
        line_start=a - shift,
        far=b + b_cut,
        tokens=len(token_starts(tokenizer, text)),
    )


def line_start_near(text: str, starts: list[int], caret: int, tokens: int, above: bool) -> int:
    """The start of a statement's line about `tokens` tokens above the caret's line (or below it)."""
    home = text.rfind("\n", 0, caret) + 1
    end = text.find("\n", caret)
    end = len(text) if end < 0 else end
    # the caret line is mid-statement (a bracket may be open): blanked, the lines after it lex as code
    lexed = text[:home] + " " * (end - home) + text[end:]
    if above:
        candidates = [s for s in statement_starts(lexed) if s < home] + [home]
    else:
        candidates = [s for s in statement_starts(lexed) if s > caret] or [end + 1 if end < len(text) else end]
    return min(candidates, key=lambda s: (abs(tokens_between(starts, s, caret) - tokens), abs(s - caret)))


def line_to_type(text: str, at: int) -> tuple[str, str]:
    """(indentation, code) of a new line opened above the line at `at`: a copy of the next non-blank
    line when that is a plain statement, else DEFAULT_LINE, at that line's indentation."""
    for line in text[at:].split("\n"):
        if line.strip():
            body = line.strip()
            indent = line[: len(line) - len(line.lstrip())]
            return indent, body if plain_statement(body) else DEFAULT_LINE
    return "", DEFAULT_LINE


def paste_block(text: str) -> str:
    """PASTE_LINES consecutive lines of the file that begin and end at statements, from PASTE_FROM on
    (what the user copied), without their common indentation."""
    after = int(len(text) * PASTE_FROM)
    lines, starts = line_starts(text), statement_starts(text)
    ends = set(starts)
    rows = {s: k for k, s in enumerate(lines)}
    start = next(
        (
            s
            for s in starts
            if s >= after and rows[s] + PASTE_LINES < len(lines) and lines[rows[s] + PASTE_LINES] in ends
        ),
        after,
    )
    return textwrap.dedent("".join(text[start:].splitlines(keepends=True)[:PASTE_LINES]))


def indented(block: str, indent: str) -> str:
    """The block with `indent` in front of each non-blank line (as pasted at a line of that indentation)."""
    return "".join(indent + line if line.strip() else line for line in block.splitlines(keepends=True))


# -- one server and the user's actions ------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    flow: str
    step: str  # what the request followed: "typing", "2000 tokens above", "jump to B", ...
    policy: str
    repeat: int
    file: str
    measured: bool  # False: a setup request (the server's first caret), kept for the record
    since: str  # the clock starts at the "keystroke", the "request" send, or the "change" (paste, undo)
    distance_tokens: int | None  # tokens between the edit (or the other caret) and the caret
    suggestion: str
    seconds: float  # -> whole suggestion received
    to_first_token: float | None  # -> first token (the server's time after its first token taken off)
    server_seconds: float | None  # the request on the server's worker
    encoded: dict[str, int] | None  # tokens the server encoded since the previous reading, by cause
    encoded_total: dict[str, int] | None  # cumulative, the flow's documents summed
    jedi_asked: int | None = None  # points of the suggestion jedi was asked about (`livekv/status`)
    jedi_ready: int | None = None  # ... whose answer was there when asked (a prefetch, or an earlier request)


@dataclass(frozen=True)
class Plan:
    repeats: int
    requests: int = 6  # flow (a): requests per typed line
    distances: tuple[int, ...] = DISTANCES


class Caret:
    """Where the user writes, and the keys still to type there (the cut line's rest, then again)."""

    def __init__(self, offset: int, pending: str) -> None:
        self.offset = offset
        self._keys: Iterator[str] = cycle(pending or DEFAULT_LINE)

    def next_key(self) -> str:
        return next(self._keys)


class Session:
    """One server (one update policy) and the documents the current flow has open."""

    def __init__(self, editor: Editor, root: Path, policy: str, tokenizer: Any, seed: int = 0) -> None:
        self.editor = editor
        self.root = root
        self.policy = policy
        self.tokenizer = tokenizer
        self.seed = seed
        self.rng = random.Random(seed)
        self.flow = ""
        self.uris: list[str] = []
        self.names: dict[str, str] = {}
        self.last_encoded: dict[str, int] | None = None

    async def begin(self, flow: str, docs: list[Prepared]) -> list[str]:
        """Open the flow's documents (written to the workspace too), each left until the server's
        background work on it is done (a server may grow a cache at idle time); their URIs."""
        self.flow = flow
        self.rng = random.Random(f"{self.seed}:{flow}")  # the same keys and pauses under every policy
        for doc in docs:
            name = f"{flow}_{doc.name}"
            (self.root / name).write_text(doc.text)
            uri = (self.root / name).as_uri()
            self.names[uri] = doc.name
            await self.editor.open(uri, doc.text)
            self.uris.append(uri)
            await self.settle()
        return list(self.uris)

    async def setup(self, uri: str, offset: int) -> Sample:
        """A first request at the caret (the server learns it), then the background work it starts."""
        sample = await self.ask(SETUP, uri, offset, measured=False)
        await self.settle()
        return sample

    async def settle(self) -> None:
        """Wait until the cache numbers of the flow's documents (missing, stale and encoded tokens) stay
        the same over SETTLE_POLL_SECONDS; at once when the server reports none. Each reading is a
        request, which restarts the server's idle timer: they are seconds apart."""
        before = await self.cache_numbers()
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while before is not None and time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_POLL_SECONDS)
            now = await self.cache_numbers()
            if now == before:
                break
            before = now
        self.last_encoded = await self.encoded()

    async def cache_numbers(self) -> list[Any] | None:
        numbers = []
        for uri in self.uris:
            state = await self.editor.state_dict(uri)
            numbers.append([state.get(k) for k in ("missingTokens", "staleTokens", "encoded", "layoutTokens")])
        return None if all(v is None for n in numbers for v in n) else numbers

    async def end(self) -> None:
        for uri in self.uris:
            self.editor.close(uri)
        self.uris.clear()
        await self.editor.state("file:///livekv-bench/none.py")  # the closes reached the worker

    async def encoded(self) -> dict[str, int] | None:
        """The `encoded` counters of the flow's documents, summed (None if the server has none)."""
        total: dict[str, int] | None = None
        for uri in self.uris:
            counts = (await self.editor.state_dict(uri)).get("encoded")
            if isinstance(counts, dict):
                total = total or dict.fromkeys(CAUSES, 0)
                for cause, n in counts.items():
                    if isinstance(n, int | float):
                        total[cause] = total.get(cause, 0) + int(n)
        return total

    async def pause(self, seconds: float | None = None) -> None:
        await asyncio.sleep(self.rng.uniform(*KEY_SECONDS) if seconds is None else seconds)

    def key(self, uri: str, offset: int, text: str) -> float:
        """One keystroke (`text` inserted at `offset`); its time."""
        self.editor.edit(uri, offset, offset, text)
        return time.perf_counter()

    def key_at(self, uri: str, caret: Caret) -> float:
        """The next key typed at the caret, which moves past it."""
        pressed = self.key(uri, caret.offset, caret.next_key())
        caret.offset += 1
        return pressed

    async def type_line_at(self, uri: str, at: int) -> int:
        """Open a new line above the line starting at `at` (Enter at the end of the line before, which
        indents) and type a code line into it key by key; returns the characters inserted."""
        indent, code = line_to_type(self.editor.texts[uri], at)
        if at > 0:
            self.key(uri, at - 1, "\n" + indent)
            pos = at + len(indent)
        else:
            self.key(uri, 0, indent + "\n")
            pos = len(indent)
        for ch in code:
            await self.pause()
            self.key(uri, pos, ch)
            pos += 1
        return len(indent) + 1 + len(code)

    def distance(self, uri: str, a: int, b: int) -> int:
        return tokens_between(token_starts(self.tokenizer, self.editor.texts[uri]), a, b)

    async def ask(
        self,
        step: str,
        uri: str,
        offset: int,
        *,
        since: float | None = None,
        clock: str = "keystroke",
        repeat: int = 0,
        distance: int | None = None,
        measured: bool = True,
    ) -> Sample:
        """An inline request at `offset`, awaited; then the server's `encoded` counters are read."""
        answer: Answer = await self.editor.inline(uri, offset, since=since)
        total = await self.encoded()
        delta = None
        if total is not None:
            before = self.last_encoded or {}
            delta = {c: n - before.get(c, 0) for c, n in total.items()}
        self.last_encoded = total
        return Sample(
            flow=self.flow,
            step=step,
            policy=self.policy,
            repeat=repeat,
            file=self.names[uri],
            measured=measured,
            since="request" if since is None else clock,
            distance_tokens=distance,
            suggestion=answer.text,
            seconds=answer.seconds,
            to_first_token=answer.to_first_token,
            server_seconds=answer.server_seconds,
            encoded=delta,
            encoded_total=total,
            jedi_asked=answer.jedi_asked,
            jedi_ready=answer.jedi_ready,
        )


# -- the flows --------------------------------------------------------------------------------


async def flow_a(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(a) The caret line emptied and typed back key by key, a request at each pause."""
    doc = docs[0]
    start, line = doc.line_start, doc.line
    blank = replace(doc, text=doc.text[:start] + doc.text[doc.caret :], caret=start, pending="")
    (uri,) = await s.begin("a", [blank])
    samples: list[Sample] = []
    for r in range(plan.repeats):
        if r:  # the line selected and deleted, to be typed again
            s.editor.edit(uri, start, start + len(line), "")
            await s.pause(MOVE_SECONDS)
        asked = 0
        for i, ch in enumerate(line):
            pressed = s.key(uri, start + i, ch)
            nxt = line[i + 1] if i + 1 < len(line) else " "
            if nxt in PAUSE_BEFORE and ch not in PAUSE_BEFORE and asked < plan.requests:
                samples.append(await s.ask("typing", uri, start + i + 1, since=pressed, repeat=r))
                asked += 1
                await s.pause(READ_SECONDS)
            else:
                await s.pause()
    await s.end()
    return samples


async def edit_away_then_key(s: Session, docs: list[Prepared], plan: Plan, flow: str, above: bool) -> list[Sample]:
    """(b) and (c): a line typed away from the caret, back to the caret, one key, a request there."""
    doc = docs[0]
    (uri,) = await s.begin(flow, [doc])
    caret = Caret(doc.caret, doc.pending)
    samples = [await s.setup(uri, caret.offset)]
    distances = plan.distances if above else (BELOW_TOKENS,)
    for r in range(plan.repeats):
        for tokens in distances:
            await s.pause(READ_SECONDS)
            starts = token_starts(s.tokenizer, s.editor.texts[uri])
            at = line_start_near(s.editor.texts[uri], starts, caret.offset, tokens, above)
            distance = tokens_between(starts, at, caret.offset)
            await s.pause(MOVE_SECONDS)
            inserted = await s.type_line_at(uri, at)
            if above:
                caret.offset += inserted
            await s.pause(MOVE_SECONDS)
            pressed = s.key_at(uri, caret)
            step = f"{tokens} tokens {'above' if above else 'below'}"
            samples.append(await s.ask(step, uri, caret.offset, since=pressed, repeat=r, distance=distance))
    await s.end()
    return samples


async def flow_b(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(b) A line typed above the caret at each distance, then one key at the caret."""
    return await edit_away_then_key(s, docs, plan, "b", above=True)


async def flow_c(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(c) A line typed below the caret, then one key at the caret."""
    return await edit_away_then_key(s, docs, plan, "c", above=False)


async def flow_d(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(d) Requests at A, at B ~2k tokens up, at A again; no edits."""
    doc = docs[0]
    (uri,) = await s.begin("d", [doc])
    distance = s.distance(uri, doc.far, doc.caret)
    samples = [await s.setup(uri, doc.caret)]
    for r in range(plan.repeats):
        for step, offset in (("jump to B", doc.far), ("back to A", doc.caret)):
            await s.pause(READ_SECONDS + MOVE_SECONDS)
            samples.append(await s.ask(step, uri, offset, repeat=r, distance=distance))
    await s.end()
    return samples


async def flow_e(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(e) Requests in document 1, in document 2, in document 1 again."""
    one, two = docs[0], docs[1] if len(docs) > 1 else docs[0]
    if two is one:
        two = replace(one, name=f"copy_of_{one.name}")
    uri1, uri2 = await s.begin("e", [one, two])
    samples = [await s.setup(uri1, one.caret)]
    for r in range(plan.repeats):
        for step, uri, offset in (("to document 2", uri2, two.caret), ("back to document 1", uri1, one.caret)):
            await s.pause(READ_SECONDS + MOVE_SECONDS)
            samples.append(await s.ask(step, uri, offset, repeat=r))
    await s.end()
    return samples


async def flow_f(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(f) 20 lines pasted above the caret, a request at the caret; the paste undone, a request."""
    doc = docs[0]
    (uri,) = await s.begin("f", [doc])
    paste = paste_block(doc.text)
    caret = doc.caret
    samples = [await s.setup(uri, caret)]
    for r in range(plan.repeats):
        await s.pause(READ_SECONDS + MOVE_SECONDS)
        text = s.editor.texts[uri]
        at = line_start_near(text, token_starts(s.tokenizer, text), caret, PASTE_TOKENS, above=True)
        distance = s.distance(uri, at, caret)
        block = indented(paste, line_to_type(text, at)[0])
        pasted = s.key(uri, at, block)
        caret += len(block)
        samples.append(
            await s.ask("after paste", uri, caret, since=pasted, clock="change", repeat=r, distance=distance)
        )
        await s.pause(READ_SECONDS + MOVE_SECONDS)
        s.editor.edit(uri, at, at + len(block), "")
        undone = time.perf_counter()
        caret -= len(block)
        samples.append(await s.ask("after undo", uri, caret, since=undone, clock="change", repeat=r, distance=distance))
    await s.end()
    return samples


async def flow_g(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(g) A file opened and, right away, a request at the caret (85% of the file): the first suggestion,
    from the didOpen. The server cannot have encoded the file yet; what the answer saw is in `encoded`."""
    doc = docs[0]
    samples = []
    s.flow = "g"
    for r in range(plan.repeats):
        path = s.root / f"g{r}_{doc.name}"
        path.write_text(doc.text)
        uri = path.as_uri()
        s.names[uri] = doc.name
        s.uris.append(uri)
        s.last_encoded = None
        opened = time.perf_counter()
        s.editor.open_now(uri, doc.text)
        samples.append(await s.ask("first suggestion after open", uri, doc.caret, since=opened, clock="open", repeat=r))
        await s.end()
    return samples


def receivers(text: str, count: int = RECEIVERS) -> list[tuple[str, str]]:
    """The `count` names most often written before `.member` in `text` that resolve anywhere in a module
    (`self` and the modules it imports), each with its most used member."""
    imported = set(re.findall(r"^import (\w+)", text, re.MULTILINE)) | {"self"}
    members: dict[str, dict[str, int]] = {}
    for name, member in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\.([A-Za-z_]\w*)", text):
        if name in imported:
            members.setdefault(name, {})[member] = members.get(name, {}).get(member, 0) + 1
    ranked = sorted(members, key=lambda n: (-sum(members[n].values()), n))[:count]
    return [(n, max(members[n], key=lambda m: (members[n][m], m))) for n in ranked]


async def flow_h(s: Session, docs: list[Prepared], plan: Plan) -> list[Sample]:
    """(h) `obj.` typed at the caret line's start for the file's most used receivers, a request after each dot."""
    doc = docs[0]
    (uri,) = await s.begin("h", [doc])
    samples = [await s.setup(uri, doc.caret)]
    pos = doc.line_start
    indent = doc.text[doc.text.rfind("\n", 0, pos) + 1 : pos]
    for r in range(plan.repeats):
        for name, member in receivers(doc.text):
            await s.pause(READ_SECONDS + MOVE_SECONDS)
            for ch in f"{name}.":
                pressed = s.key(uri, pos, ch)
                pos += 1
                await s.pause()
            samples.append(await s.ask(f"after {name}.", uri, pos, since=pressed, repeat=r))
            await s.pause(READ_SECONDS)
            for ch in f"{member}\n{indent}":
                s.key(uri, pos, ch)
                pos += 1
                await s.pause()
    await s.end()
    return samples


FLOW_FUNCTIONS: dict[str, Callable[[Session, list[Prepared], Plan], Awaitable[list[Sample]]]] = {
    "a": flow_a,
    "b": flow_b,
    "c": flow_c,
    "d": flow_d,
    "e": flow_e,
    "f": flow_f,
    "g": flow_g,
    "h": flow_h,
}


# -- servers ---------------------------------------------------------------------------------


def server_options(policy: str, weights: str, model_path: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The settings sent: the policy, no workspace indexing, `extra` (--set), the defaults otherwise."""
    options: dict[str, Any] = {"updatePolicy": policy, "indexWorkspace": False, "weights": weights}
    if model_path is not None:
        options["modelPath"] = model_path
    return options | extra


def differs_from_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """The settings in `options` that are not the server's defaults (an unknown key counts)."""
    from completion.settings import Settings

    defaults = Settings()
    missing = object()
    out = {}
    for key, value in options.items():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        if getattr(defaults, name, missing) != value:
            out[key] = value
    return out


def rejected_policy(messages: list[str]) -> list[str]:
    """The server's messages about `updatePolicy` (it warns when it does not know or accept it)."""
    return [m for m in messages if "updatePolicy" in m]


async def run_policy(
    policy: str, docs: list[Prepared], flows: list[str], plan: Plan, tokenizer: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Start one server with `policy`, run the flows in it, stop it; its samples and what it said."""
    editor = Editor()
    options = server_options(policy, args.weights, args.model_path, dict(args.set))
    samples: list[Sample] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        t0 = time.perf_counter()
        await editor.start(options, str(root))
        session = Session(editor, root, policy, tokenizer, args.seed)
        for flow in flows:
            t1 = time.perf_counter()
            got = await FLOW_FUNCTIONS[flow](session, docs, plan)
            samples += got
            timings[flow] = round(time.perf_counter() - t1, 1)
            measured = sum(1 for x in got if x.measured)
            print(f"{policy:12s} flow ({flow}): {measured} requests in {timings[flow]:.0f} s", file=sys.stderr)
        await editor.stop()
        wall = time.perf_counter() - t0
    messages = list(editor.messages)
    return {
        "samples": samples,
        "server": {
            "settings_sent": options,
            "differs_from_defaults": differs_from_defaults(options),
            "repeats": plan.repeats,
            "server_messages": messages,
            "policy_applied": not rejected_policy(messages),
            "flow_seconds": timings,
            "wall_s": round(wall, 1),
        },
    }


def load_tokenizer(model_path: str | None) -> Any:
    """The server's tokenizer (from `completion.model.loading.load_model`; the weights are dropped)."""
    from completion.model.loading import load_model

    loaded = load_model(model_path, threads=1)
    tokenizer = loaded.tokenizer
    del loaded
    gc.collect()
    return tokenizer


# -- the summary, the targets, the table -------------------------------------------------


def ms(values: list[float], q: int) -> float | None:
    return round(1000 * pct(values, q), 1) if values else None


@dataclass
class Row:
    flow: str
    step: str
    policy: str
    since: str
    n: int
    first_token_p50_ms: float | None
    first_token_p95_ms: float | None
    suggestion_p50_ms: float | None
    suggestion_p95_ms: float | None
    distance_tokens: int | None  # median
    encoded_median: dict[str, float] | None  # per request, by cause
    empty_suggestions: int
    jedi_asked: int = 0  # points jedi was asked about, summed over the requests (`livekv/status`)
    jedi_ready: int = 0  # ... whose answer was there already (the prefetch on a change at a trigger)
    targets: list[dict[str, Any]] = field(default_factory=list)


def summarize(samples: list[Sample]) -> list[Row]:
    """One row per flow, step and policy, in the order they ran (setup requests left out)."""
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for x in samples:
        if x.measured:
            groups.setdefault((x.flow, x.step, x.policy), []).append(x)
    steps = list(dict.fromkeys((flow, step) for flow, step, _ in groups))  # in the order they first ran

    def order(key: tuple[str, str, str]) -> tuple[str, int, int]:
        flow, step, policy = key
        return flow, steps.index((flow, step)), POLICIES.index(policy) if policy in POLICIES else len(POLICIES)

    rows = []
    for (flow, step, policy), xs in sorted(groups.items(), key=lambda kv: order(kv[0])):
        firsts = [x.to_first_token for x in xs if x.to_first_token is not None]
        whole = [x.seconds for x in xs]
        distances = [x.distance_tokens for x in xs if x.distance_tokens is not None]
        deltas = [x.encoded for x in xs if x.encoded is not None]
        encoded = {c: statistics.median(d.get(c, 0) for d in deltas) for c in CAUSES} if deltas else None
        rows.append(
            Row(
                flow=flow,
                step=step,
                policy=policy,
                since=xs[0].since,
                n=len(xs),
                first_token_p50_ms=ms(firsts, 50),
                first_token_p95_ms=ms(firsts, 95),
                suggestion_p50_ms=ms(whole, 50),
                suggestion_p95_ms=ms(whole, 95),
                distance_tokens=round(statistics.median(distances)) if distances else None,
                encoded_median=encoded,
                empty_suggestions=sum(1 for x in xs if not x.suggestion),
                jedi_asked=sum(x.jedi_asked or 0 for x in xs),
                jedi_ready=sum(x.jedi_ready or 0 for x in xs),
            )
        )
    return rows


def target(name: str, value: float | None, met: bool | None, **extra: Any) -> dict[str, Any]:
    return {"target": name, "value": value, "met": met, **extra}


def judge(rows: list[Row]) -> None:
    """Attach the README's targets to the pie rows they concern: met (True), missed (False) or None
    (what it is compared with was not measured)."""
    by_key = {(r.flow, r.step, r.policy): r for r in rows}
    typing = by_key.get(("a", "typing", "pie"))
    for row in rows:
        row.targets = []
        if row.policy != "pie":
            continue
        whole = row.suggestion_p50_ms
        if row.flow == "a":
            ok = None if whole is None else whole <= TYPING_TARGET_MS
            row.targets.append(target(f"suggestion p50 <= {TYPING_TARGET_MS:.0f} ms", whole, ok))
        if row.flow == "g":
            ok = None if whole is None else whole <= OPEN_TARGET_MS
            row.targets.append(target(f"first suggestion p50 <= {OPEN_TARGET_MS:.0f} ms", whole, ok))
        if row.flow == "h":
            share = round(100 * row.jedi_ready / row.jedi_asked, 1) if row.jedi_asked else None
            ok = None if share is None else share >= 100 * PREFETCH_TARGET
            goal = f"member triggers answered from the prefetch >= {100 * PREFETCH_TARGET:.0f}%"
            row.targets.append(target(goal, share, ok, unit="%", asked=row.jedi_asked))
        if row.flow in ("d", "e"):
            # every request runs the prompt's last token for its logits: the move itself is what exceeds it
            enc = row.encoded_median
            work = None if enc is None else enc["edits"] + max(0.0, enc["requests"] - 1)
            ok = None if work is None else work == 0
            row.targets.append(target("no forward pass for a caret move or a document switch", work, ok, unit="tok"))
        if row.flow != "b":
            continue
        first = row.first_token_p50_ms
        ok = None if first is None else first <= FIRST_TOKEN_TARGET_MS
        row.targets.append(target(f"first token p50 <= {FIRST_TOKEN_TARGET_MS:.0f} ms", first, ok))
        limit = None if typing is None or typing.suggestion_p50_ms is None else typing.suggestion_p50_ms
        row.targets.append(
            target(
                f"suggestion p50 <= flow (a)'s + {SUGGESTION_SLACK_MS:.0f} ms",
                whole,
                None if limit is None or whole is None else whole <= limit + SUGGESTION_SLACK_MS,
                limit_ms=None if limit is None else round(limit + SUGGESTION_SLACK_MS, 1),
            )
        )
        if row.step.startswith("2000 "):
            other = by_key.get(("b", row.step, "prefix-reuse"))
            theirs = None if other is None else other.first_token_p50_ms
            ratio = None if not theirs or not first else round(theirs / first, 1)
            row.targets.append(
                target(
                    f"first token >= {SPEEDUP_TARGET:.0f}x faster than prefix-reuse (p50)",
                    ratio,
                    None if ratio is None else ratio >= SPEEDUP_TARGET,
                    unit="x",
                )
            )


def _verdict(t: dict[str, Any]) -> str:
    """`met (210 ms)`, `missed (18.6x)`, `n/a`: the target judged, with the figure it was judged on."""
    if t["met"] is None:
        return "n/a"
    value, unit = t["value"], t.get("unit", "ms")
    shown = (
        f"{value:.1f}x" if unit == "x" else f"{value:.0f}% of {t['asked']}" if unit == "%" else f"{value:.0f} {unit}"
    )
    limit = f", limit {t['limit_ms']:.0f} ms" if t.get("limit_ms") is not None else ""
    return f"{'met' if t['met'] else 'missed'} ({shown}{limit})"


def table(result: dict[str, Any]) -> str:
    """The written JSON as a markdown table: a row per flow and step, pie's first token / suggestion and its
    encoded tokens by cause, each baseline's first token and tokens encoded, the targets judged on pie's rows."""
    rows = [Row(**r) for r in result["summary"]]
    judge(rows)
    servers = result["servers"]
    by_key = {(r.flow, r.step, r.policy): r for r in rows}
    steps = list(dict.fromkeys((r.flow, r.step) for r in rows))
    baselines = [p for p in POLICIES if p != "pie" and any(r.policy == p for r in rows)]

    def name(policy: str) -> str:
        return policy if servers.get(policy, {}).get("policy_applied", True) else f"{policy}*"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    def encoded(r: Row, causes: tuple[str, ...]) -> str:
        return "-" if r.encoded_median is None else " / ".join(f"{r.encoded_median[c]:.0f}" for c in causes)

    header = ["flow", "step (tokens away)", f"{name('pie')}: n", f"{name('pie')}: first token / suggestion p50 (ms)"]
    header += [f"{name('pie')}: encoded edits / requests / refresh"]
    header += [f"{name(p)}: first token p50 (ms), encoded" for p in baselines] + ["target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for flow, step in steps:
        pie = by_key.get((flow, step, "pie"))
        any_row = pie or next(r for r in rows if (r.flow, r.step) == (flow, step))
        clock = {"keystroke": "", "request": " †", "change": " ‡", "open": " §"}[any_row.since]
        away = "" if any_row.distance_tokens is None else f" ({any_row.distance_tokens})"
        cells = [f"({flow})", f"{step}{away}{clock}"]
        if pie is None:
            cells += ["-", "-", "-"]
        else:
            empty = f" ({pie.empty_suggestions} empty)" if pie.empty_suggestions else ""
            cells += [f"{pie.n}{empty}", f"{num(pie.first_token_p50_ms)} / {num(pie.suggestion_p50_ms)}"]
            cells += [encoded(pie, CAUSES)]
        for policy in baselines:
            b = by_key.get((flow, step, policy))
            total = None if b is None or b.encoded_median is None else sum(b.encoded_median.values())
            cells.append("-" if b is None else f"{num(b.first_token_p50_ms)}, {num(total)}")
        targets = [] if pie is None else pie.targets
        cells += ["; ".join(t["target"] for t in targets) or "-", "; ".join(_verdict(t) for t in targets) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    ap.add_argument("--flows", nargs="+", default=None, choices=FLOWS, help="flows to run (default: all)")
    ap.add_argument(
        "--policies", nargs="+", default=["pie", "prefix-reuse"], choices=POLICIES, help="servers' updatePolicy"
    )
    ap.add_argument(
        "--baseline-flows",
        nargs="+",
        default=list(BASELINE_FLOWS),
        choices=FLOWS,
        help="the flows the baselines run (default: b, the one whose target compares with prefix-reuse)",
    )
    ap.add_argument("--repeats", type=int, default=None, help="repetitions of each flow with pie (default 3)")
    ap.add_argument(
        "--baseline-repeats", type=int, default=1, help="repetitions with prefix-reuse and full (default 1: slow)"
    )
    ap.add_argument("--requests", type=int, default=None, help="flow (a): requests per typed line (default 6)")
    ap.add_argument("--distances", nargs="+", type=int, default=None, help="flow (b): tokens above")
    ap.add_argument(
        "--files",
        nargs="+",
        default=None,
        help="the document (and a second one for flow (e)); default stdlib " + " and ".join(FILES),
    )
    ap.add_argument("--max-doc-tokens", type=int, default=None, help="longer files are cut (default 4000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--weights", default="auto", choices=WEIGHT_CHOICES, help="the servers' weight format (the default: auto)"
    )
    ap.add_argument("--model-path", default=None, help="the servers' modelPath (default: the embedded model)")
    ap.add_argument(
        "--set", type=setting, action="append", default=[], metavar="KEY=JSON", help="another server setting"
    )
    ap.add_argument("--json", type=Path, default=None, help="write samples, summary and plan here")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = [Path(f) for f in args.files] if args.files else [stdlib / f for f in FILES]
    tokenizer = load_tokenizer(args.model_path)
    docs = [prepare(p.name, p.read_text(), tokenizer, args.max_doc_tokens) for p in paths[:2]]
    samples: list[Sample] = []
    servers: dict[str, dict[str, Any]] = {}
    for policy in args.policies:
        flows = args.flows if policy == "pie" else [f for f in args.flows if f in args.baseline_flows]
        if not flows:
            continue
        plan = Plan(
            repeats=args.repeats if policy == "pie" else args.baseline_repeats,
            requests=args.requests,
            distances=tuple(args.distances),
        )
        run = asyncio.run(run_policy(policy, docs, flows, plan, tokenizer, args))
        samples += run["samples"]
        servers[policy] = run["server"] | {"flows": flows}
    rows = summarize(samples)
    judge(rows)
    payload = report(args, docs, servers, rows, samples)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    base = server_options("pie", args.weights, args.model_path, dict(args.set))
    write_json(args.json, "latency", model=args.model_path, settings=with_options(base), **payload)
    print(table(json.loads(json.dumps(payload))))  # the table of what the file holds
    return 0


def with_options(options: dict[str, Any]) -> Settings:
    """The settings a server runs with after `options` (an unknown key or a bad value is left out, as it does)."""
    settings, _ = Settings.from_json(options)
    return settings


def report(
    args: argparse.Namespace,
    docs: list[Prepared],
    servers: dict[str, dict[str, Any]],
    rows: list[Row],
    samples: list[Sample],
) -> dict[str, Any]:
    """The payload of the JSON (its run record is write_json's)."""
    return {
        "files": {
            d.name: {
                "chars": len(d.text),
                "tokens": d.tokens,
                "caret_char": d.caret,
                "far_char": d.far,
                "caret_line": d.line,
            }
            for d in docs
        },
        "plan": {
            "flows": {f: FLOW_NAMES[f] for f in args.flows},
            "flows_by_policy": {p: s["flows"] for p, s in servers.items()},
            "repeats": {p: s["repeats"] for p, s in servers.items()},
            "requests_per_typed_line_a": args.requests,
            "distances_b": args.distances,
            "below_tokens_c": BELOW_TOKENS,
            "paste_f": {"lines": PASTE_LINES, "tokens_above": PASTE_TOKENS},
            "caret_at": CARET_AT,
            "far_at_d": FAR_AT,
            "max_doc_tokens": args.max_doc_tokens,
            "seconds": {"between_keys": KEY_SECONDS, "reading": READ_SECONDS, "moving_the_caret": MOVE_SECONDS},
            "seed": args.seed,
        },
        "servers": servers,
        "notes": [
            "The servers differ only by updatePolicy; every other setting is the default except those under "
            "servers.*.differs_from_defaults. pie runs every flow; a baseline runs plan.flows_by_policy.",
            f"Baselines ran {args.baseline_repeats} repeat(s) and pie {args.repeats}: a baseline re-encodes up "
            "to a 4k-token prompt per request, so their p95 rests on few samples.",
            "idleRefreshMs is the default: background refresh runs while the user pauses (reading a suggestion, "
            "moving the caret), and its tokens count under encoded.refresh.",
            "encoded: tokens the server ran through the model for the flow's documents since the previous reading "
            "(after the previous request), by cause; null when the server does not report documentState.encoded.",
            "No requests are made while a line is typed away from the caret (flows b, c).",
            "Times: since=keystroke from the key typed at the caret; request from the request's send (d, e) †; "
            "change from the paste's or undo's didChange (f) ‡, the request sent right after it; open from the "
            "didOpen (g) §.",
        ],
        "summary": [asdict(r) for r in rows],
        "samples": [asdict(x) for x in samples],
    }
