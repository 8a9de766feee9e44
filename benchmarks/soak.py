"""`livekv bench soak`: a long seeded editing session through the real server, checked throughout.

The benchmark starts `livekv serve` (through `lsp_server.editor.Editor`, as `bench latency` does)
with the server's default settings (`Settings()`: 4096-token windows, 2 threads, 48 tokens per
suggestion) except `memoryBudgetMb` and what a flag or `--set` changes (the JSON's
`run.settings_differing`), opens six standard-library files of different sizes from a temporary
workspace and replays a seeded random stream of user events until `--events` edits and completion
requests were sent: keystrokes (typing lines taken from the file), backspaces, line pastes and cuts,
undo-like reverts, cursor jumps, switches between documents, closing and reopening them, idle
pauses, and inline completion requests (awaited, cancelled with `$/cancelRequest`, or superseded by
the next keystroke). An awaited request is sent right after a keystroke, as an editor's automatic
trigger does, and its latency runs from that keystroke's change notification to the answer. The KV
budget (`memoryBudgetMb`, 256 here) is set below what the documents' caches need together (about
600 MB at 4k windows), so the least recently used caches are evicted and re-encoded when used again.

Checked, with `livekv/documentState`:
- after every edit: the server's three copies of the text (mirror, workspace, engine) equal the
  client's, and the caches' bytes are within the budget (the round trip is the edit latency);
- every `--sample-kv-every` events, the active document (`"sample": N`): at `--sample-entries`
  cache entries drawn at random, as the cache holds them (stale entries too, nothing refreshed), the
  first layer's KV equals a fresh encode of their tokens at their new positions (the first layer
  sees no context, so this checks that every entry holds its token, rotated by every edit's delta);
- every `--check-every` events and at the end, for every open document (`"check": true`): the
  cached tokens equal the layout of a fresh tokenization, and after re-encoding the stale entries
  the KV equals a full re-encode of the tokens cached (largest absolute difference reported, at
  most `--kv-tolerance`); and the server's log has no ERROR line (a fault it survived, dropping a
  cache, is still a failure).

Measured: the server's resident memory (VmRSS, every `--sample-every` events) after the model
load, at its peak and at the end, and its slope over the second half (MB per 1,000 events: no
growth trend means near zero). It is held to a ceiling: RSS after load + the KV budget + the
warm-up overhead measured once all documents are open (first forward passes, jedi's stubs, the
indexes; the RSS then less its KV) + `--slack-mb` for the allocator and prefill scratch. Also
latency percentiles of answered completions and of edits, and how often a document came back
evicted. JSON out with `--json` (`benchmarks.common.write_json`), `table()` of it printed; the exit
status is 1 if an invariant was ever broken. `--quick`: the same run at 300 events.

The default (3,000 events) took 7 minutes on this 2-core machine (2026-12-05): fewer events than the
10,000 of the 512-token, one-thread runs before, since at 4k windows every full check and every
return to an evicted document re-encodes up to 4k tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from benchmarks.common import non_default, pct, write_json
from benchmarks.engine_session import add_setting_flags, flag_settings, with_settings
from completion.settings import Settings
from lsp_server.editor import Editor
from lsp_server.positions import Lines, position_at

FILES = ("keyword.py", "bisect.py", "fnmatch.py", "copy.py", "shlex.py", "tokenize.py")  # 0.3k-7k tokens
# Shares of the user's actions (cursor jumps, switches and pauses are not counted as events).
ACTIONS = {
    "type": 0.655,
    "delete": 0.15,
    "paste": 0.02,
    "cut": 0.02,
    "undo": 0.04,
    "jump": 0.012,
    "complete": 0.08,
    "switch": 0.006,
    "close": 0.002,
    "reopen": 0.003,
    "idle": 0.012,
}
COMPLETIONS = {"awaited": 0.5, "superseded": 0.25, "cancelled": 0.25}
QUICK = {"events": 300, "check_every": 300, "sample_every": 50, "sample_kv_every": 5}
IDLE_SECONDS = 0.6  # longer than idleRefreshMs (400): the background refresh and context steps run
MIN_OPEN = 2
UNDO_DEPTH = 100


@dataclass
class Buffer:
    """The client's side of one document: where the caret is and what to type next."""

    pool: list[str]  # the file's code lines: what gets typed and pasted
    cursor: int = 0
    typing: str = ""  # the rest of the line being typed
    undo: deque[tuple[int, int, str]] = field(default_factory=lambda: deque(maxlen=UNDO_DEPTH))  # (start, end, old)


@dataclass
class Tally:
    """Everything the replay counts and times."""

    kinds: Counter[str] = field(default_factory=Counter)
    kind_s: Counter[str] = field(default_factory=Counter)  # wall seconds spent per kind of action
    completions: Counter[str] = field(default_factory=Counter)
    completion_s: list[float] = field(default_factory=list)
    edit_s: list[float] = field(default_factory=list)
    trigger_edits: int = 0  # keystrokes right before an awaited request (checked after its answer)
    evicted_return_s: list[float] = field(default_factory=list)  # first edit after coming back to an evicted doc
    violations: list[str] = field(default_factory=list)
    checks: int = 0  # documents checked with "check": true
    checked_evicted: int = 0  # of those, without KV at the time (nothing to compare)
    kv_errors: list[float] = field(default_factory=list)
    sampled_checks: int = 0  # documentState "sample" checks that found KV to compare
    sampled_entries: int = 0
    sample_errors: list[float] = field(default_factory=list)
    sample_ms: list[float] = field(default_factory=list)
    stale_refreshed: int = 0
    check_ms: list[float] = field(default_factory=list)
    peak_cache_bytes: int = 0
    cache_bytes: int = 0  # as last reported
    evicted_returns: int = 0
    server_errors: int = 0  # ERROR lines in the server's log
    rss: list[tuple[int, float, float]] = field(default_factory=list)  # (event, VmRSS MB, cacheBytes MB)
    tree_edit_ms: list[float] = field(default_factory=list)  # the server's syntax-tree upkeep per edit
    tree_parse_ms: list[float] = field(default_factory=list)  # its last reparse (at a request or idle time)


def state_problems(state: dict[str, Any], text: str, budget_bytes: int, kv_tolerance: float) -> list[str]:
    """What is wrong with one `livekv/documentState` answer for a document whose client text is `text`."""
    problems = [
        f"{copy} text differs from the client's"
        for copy in ("mirror", "workspace", "engine")
        if state.get(copy) != text
    ]
    if state["cacheBytes"] > budget_bytes:
        problems.append(f"cacheBytes {state['cacheBytes']} over the budget {budget_bytes}")
    if state.get("tokensFresh") is False:
        problems.append("cached tokens differ from a fresh tokenization's layout")
    if state.get("treeFresh") is False:
        problems.append("the syntax tree differs from a fresh parse of the text")
    if (error := state.get("kvMaxError")) is not None and error > kv_tolerance:
        problems.append(f"KV differs from a full re-encode by {error:.3g} > {kv_tolerance:g}")
    if (error := state.get("sampleMaxError")) is not None and error > kv_tolerance:
        problems.append(f"sampled first-layer KV differs from a fresh encode by {error:.3g} > {kv_tolerance:g}")
    return problems


def server_errors(log: Path) -> list[str]:
    """The ERROR lines of the server's log (a fault the server survived is still a failure here)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if " ERROR " in line]


def vm_mb(pid: int, key: str = "VmRSS") -> float:
    """A memory figure of a process from /proc/<pid>/status, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"{key} not in /proc/{pid}/status")


def slope_per_1k(points: list[tuple[int, float, float]]) -> float:
    """MB per 1,000 events of the RSS samples' least-squares line over their second half."""
    half = points[len(points) // 2 :]
    if len(half) < 2:
        return 0.0
    return 1000 * statistics.linear_regression([p[0] for p in half], [p[1] for p in half]).slope


class Replay:
    def __init__(self, editor: Editor, paths: list[Path], log: Path, args: argparse.Namespace) -> None:
        self.editor, self.log, self.args = editor, log, args
        self.rng = random.Random(args.seed)
        self.budget = args.memory_budget_mb << 20
        self.tally = Tally()
        self.buffers: dict[str, Buffer] = {}
        self.closed: dict[str, Buffer] = {}  # closed documents, reopened later with their last text
        self.texts: dict[str, str] = {}  # every document's latest text, closed ones too
        for path in paths:
            uri = f"file://{path}"
            self.texts[uri] = path.read_text()
            pool = [line for line in self.texts[uri].splitlines() if line.strip() and len(line) <= 100]
            self.buffers[uri] = Buffer(pool or ["pass"])
        self.active = next(iter(self.buffers))
        self.events = 0  # edits and completion requests sent
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        server = self.editor.client._server  # the server subprocess, started by Editor.start
        assert server is not None
        return server.pid

    async def run(self) -> None:
        for uri, buf in self.buffers.items():
            await self.editor.open(uri, self.texts[uri])
            await self.state(uri)
            buf.cursor = self.line_end(uri, self.rng.randrange(len(self.texts[uri]) + 1))
        self.sample()  # after the warm-up: every document opened once
        names, weights = list(ACTIONS), list(ACTIONS.values())
        next_check = self.args.check_every
        next_sample = self.args.sample_every
        next_kv_sample = self.args.sample_kv_every
        while self.events < self.args.events:
            kind = self.rng.choices(names, weights)[0]
            t0 = time.perf_counter()
            await getattr(self, "do_" + kind)()
            self.tally.kinds[kind] += 1
            self.tally.kind_s[kind] += time.perf_counter() - t0
            if self.events >= next_sample:
                self.sample()
                next_sample += self.args.sample_every
            if self.events >= next_kv_sample:
                await self.sample_kv()
                next_kv_sample += self.args.sample_kv_every
            if self.events >= next_check or self.events >= self.args.events:  # and at the end
                await self.check_all()
                next_check += self.args.check_every
        self.sample()

    # -- helpers ------------------------------------------------------------------------

    def line_end(self, uri: str, offset: int) -> int:
        text = self.texts[uri]
        end = text.find("\n", offset)
        return len(text) if end < 0 else end

    def violation(self, where: str, problems: list[str]) -> None:
        for p in problems:
            self.tally.violations.append(f"event {self.events} {where}: {p}")
            print(f"VIOLATION event {self.events} {where}: {p}", file=sys.stderr)

    def sample(self) -> None:
        self.tally.rss.append((self.events, vm_mb(self.pid), self.tally.cache_bytes / 2**20))

    async def state(self, uri: str, *, check: bool = False, sample: int = 0) -> dict[str, Any]:
        """documentState for `uri`, checked against the client's text and the budget."""
        params: dict[str, Any] = {"uri": uri, "check": True} if check else {"uri": uri}
        if sample:
            params |= {"sample": sample, "seed": self.events}
        state = await self.editor.client.protocol.send_request_async("livekv/documentState", params)
        state = {k: getattr(state, k) for k in state._fields} if hasattr(state, "_fields") else dict(state)
        self.tally.cache_bytes = state["cacheBytes"]
        self.tally.peak_cache_bytes = max(self.tally.peak_cache_bytes, state["cacheBytes"])
        self.violation(
            uri.rsplit("/", 1)[-1], state_problems(state, self.texts[uri], self.budget, self.args.kv_tolerance)
        )
        return state

    async def edit(self, start: int, end: int, new: str, *, undoable: bool = True) -> None:
        """Send one change to the active document, wait for the server to hold it, move the caret."""
        t0 = self.send_edit(start, end, new, undoable=undoable)
        state = await self.state(self.active)
        self.tally.edit_s.append(time.perf_counter() - t0)
        if state.get("syntaxTree"):
            self.tally.tree_edit_ms.append(state["treeEditMs"])
            self.tally.tree_parse_ms.append(state["treeParseMs"])

    def send_edit(self, start: int, end: int, new: str, *, undoable: bool = True) -> float:
        """Send one change notification to the active document and move the caret; the time it was sent."""
        uri, buf = self.active, self.buffers[self.active]
        old = self.texts[uri][start:end]
        if undoable:
            last = buf.undo[-1] if buf.undo else None
            if last and not old and not last[2] and last[1] == start and new != "\n":  # typing coalesces
                buf.undo[-1] = (last[0], start + len(new), "")
            else:
                buf.undo.append((start, start + len(new), old))
        t0 = time.perf_counter()
        self.editor.edit(uri, start, end, new)
        self.texts[uri] = self.editor.texts[uri]
        buf.cursor = start + len(new)
        self.events += 1
        return t0

    async def sample_kv(self) -> None:
        """The cheap KV check of the active document at `--sample-entries` entries (nothing refreshed)."""
        t0 = time.perf_counter()
        state = await self.state(self.active, sample=self.args.sample_entries)
        if state.get("sampledEntries"):
            self.tally.sampled_checks += 1
            self.tally.sampled_entries += state["sampledEntries"]
            self.tally.sample_errors.append(state["sampleMaxError"])
            self.tally.sample_ms.append(state["sampleMs"])
        self.tally.kind_s["sampled check"] += time.perf_counter() - t0

    async def check_all(self) -> None:
        """The full check of every open document, the active one last (it stays most recently used)."""
        t0 = time.perf_counter()
        for uri in sorted(self.buffers, key=lambda u: u == self.active):
            state = await self.state(uri, check=True)
            self.tally.checks += 1
            if state["tokensFresh"] is None:
                self.tally.checked_evicted += 1
                continue
            self.tally.kv_errors.append(state["kvMaxError"])
            self.tally.stale_refreshed += state["staleBefore"]
            self.tally.check_ms.append(state["checkMs"])
        self.tally.kind_s["check"] += time.perf_counter() - t0
        errors = server_errors(self.log)
        self.violation("server log", errors[self.tally.server_errors :])
        self.tally.server_errors = len(errors)
        rss, cache = vm_mb(self.pid), self.tally.cache_bytes / 2**20
        print(
            f"event {self.events}: RSS {rss:.0f} MB, KV {cache:.0f} MB, {len(self.tally.violations)} violations, "
            f"{self.tally.evicted_returns} evicted returns, {time.perf_counter() - self.started:.0f} s",
            file=sys.stderr,
        )

    # -- the user's actions ---------------------------------------------------------------

    async def do_type(self) -> None:
        buf = self.buffers[self.active]
        if not buf.typing:
            buf.typing = "\n" + self.rng.choice(buf.pool)
        ch, buf.typing = buf.typing[0], buf.typing[1:]
        await self.edit(buf.cursor, buf.cursor, ch)

    async def do_delete(self) -> None:
        buf = self.buffers[self.active]
        if buf.cursor > 0:
            buf.typing = ""
            await self.edit(buf.cursor - 1, buf.cursor, "")

    async def do_paste(self) -> None:
        buf = self.buffers[self.active]
        at = self.texts[self.active].rfind("\n", 0, buf.cursor) + 1
        buf.typing = ""
        await self.edit(at, at, self.rng.choice(buf.pool) + "\n")

    async def do_cut(self) -> None:
        buf, text = self.buffers[self.active], self.texts[self.active]
        start = text.rfind("\n", 0, buf.cursor) + 1
        end = text.find("\n", buf.cursor)
        if end >= 0 and text.count("\n") > 20:
            buf.typing = ""
            await self.edit(start, end + 1, "")

    async def do_undo(self) -> None:
        buf = self.buffers[self.active]
        if buf.undo:
            start, end, old = buf.undo.pop()
            buf.typing = ""
            await self.edit(start, end, old, undoable=False)

    async def do_jump(self) -> None:
        buf = self.buffers[self.active]
        buf.cursor, buf.typing = self.line_end(self.active, self.rng.randrange(len(self.texts[self.active]) + 1)), ""

    async def do_complete(self) -> None:
        uri, buf = self.active, self.buffers[self.active]
        how = self.rng.choices(list(COMPLETIONS), list(COMPLETIONS.values()))[0]
        self.events += 1
        if how == "awaited":  # the editor's automatic trigger: a keystroke, then the request at once
            if not buf.typing:
                buf.typing = "\n" + self.rng.choice(buf.pool)
            ch, buf.typing = buf.typing[0], buf.typing[1:]
            keystroke = self.send_edit(buf.cursor, buf.cursor, ch)
            answer = await self.editor.inline(uri, buf.cursor, since=keystroke)
            self.tally.completion_s.append(answer.seconds)  # from the keystroke's change notification
            self.tally.completions["answered" if answer.text else "empty"] += 1
            await self.state(uri)  # the keystroke's text and budget checked, as after any edit
            self.tally.trigger_edits += 1
        elif how == "superseded":  # the next keystroke arrives before the answer
            pending = asyncio.ensure_future(self.editor.inline(uri, buf.cursor))
            await asyncio.sleep(0)  # the request is written before the change
            await self.do_type()
            answer = await pending
            self.tally.completions["superseded, answered anyway" if answer.text else "superseded"] += 1
        else:
            self.tally.completions[await self.cancelled(uri, buf.cursor)] += 1

    async def cancelled(self, uri: str, offset: int) -> str:
        """An inline request cancelled with `$/cancelRequest` soon after it was sent, as editors do."""
        msg_id = f"soak-{self.events}"
        line, character = position_at(Lines.of(self.texts[uri]), offset)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri),
            position=types.Position(line, character),
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
        )
        protocol = self.editor.client.protocol
        pending = protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        await asyncio.sleep(self.rng.uniform(0, 0.05))
        protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        try:
            await pending
        except JsonRpcException as err:
            if err.code != types.LSPErrorCodes.RequestCancelled:
                raise
            return "cancelled"
        return "cancelled, answered first"

    async def do_switch(self) -> None:
        others = [u for u in self.buffers if u != self.active]
        if others:
            await self.come_back(self.rng.choice(others))

    async def come_back(self, uri: str) -> None:
        """Make `uri` the active document; if its cache was evicted, time the edit that re-encodes it."""
        self.active = uri
        if (await self.state(uri))["cachedTokens"] == 0:
            self.tally.evicted_returns += 1
            await self.do_type()
            self.tally.evicted_return_s.append(self.tally.edit_s[-1])

    async def do_close(self) -> None:
        if len(self.buffers) <= MIN_OPEN:
            return
        uri = self.active
        self.editor.client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
        self.closed[uri] = self.buffers.pop(uri)
        await self.come_back(self.rng.choice(list(self.buffers)))

    async def do_reopen(self) -> None:
        if not self.closed:
            return
        uri = self.rng.choice(sorted(self.closed))
        self.buffers[uri] = self.closed.pop(uri)
        self.buffers[uri].undo.clear()  # an editor's undo history ends with the buffer
        await self.editor.open(uri, self.texts[uri])
        self.active = uri

    async def do_idle(self) -> None:
        await asyncio.sleep(IDLE_SECONDS)


# -- the session, the summary, the table ----------------------------------------------------


def run_settings(args: argparse.Namespace) -> Settings:
    """The server's defaults with what the flags and `--set` change (`memoryBudgetMb` always)."""
    extra = {"memoryBudgetMb": args.memory_budget_mb} | (
        {} if args.max_tokens is None else {"maxTokens": args.max_tokens}
    )
    return with_settings(flag_settings(args), {k: v for k, v in extra.items() if v is not None})


async def session(args: argparse.Namespace, files: list[Path]) -> dict[str, Any]:
    """Start the server on a workspace holding copies of `files`, replay, stop; the raw figures."""
    editor = Editor()
    with tempfile.TemporaryDirectory() as tmp:
        root, log = Path(tmp) / "workspace", Path(tmp) / "server.log"
        root.mkdir()
        paths = [Path(shutil.copyfile(f, root / f.name)) for f in files]
        options = non_default(run_settings(args))
        await editor.start(options, str(root), log_file=str(log))
        replay = Replay(editor, paths, log, args)
        await editor.state(f"file://{root}/not-open.py")  # answered after the model has loaded
        after_load = vm_mb(replay.pid)
        t0 = time.perf_counter()
        await replay.run()
        wall = time.perf_counter() - t0
        peak = vm_mb(replay.pid, "VmHWM")
        await editor.stop()
    return {"options": options, "replay": replay, "rss_after_load": after_load, "vm_hwm": peak, "wall": wall}


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None when there are no values)."""
    return {f"p{q}_ms": round(1000 * pct(values, q), 1) if values else None for q in (50, 95, 99)}


def summarize(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    replay: Replay = run["replay"]
    t = replay.tally
    rss = [mb for _, mb, _ in t.rss]
    # One-time costs of the first forward passes, jedi's stubs and the indexes: the RSS once every
    # document is open, less its KV; the allowance adds `--slack-mb` (allocator, scratch) to it.
    warmup = t.rss[0][1] - run["rss_after_load"] - t.rss[0][2]
    allowance = warmup + args.slack_mb
    ceiling = run["rss_after_load"] + args.memory_budget_mb + allowance
    return {
        "events": replay.events,
        "wall_s": round(run["wall"], 1),
        "actions": dict(t.kinds),
        "action_seconds": {k: round(v, 1) for k, v in t.kind_s.items()},
        "completions": dict(t.completions),
        "invariants": {
            "violations": len(t.violations),
            "server_errors": t.server_errors,
            "first_violations": t.violations[:20],
            "edits_checked": len(t.edit_s) + t.trigger_edits,  # texts equal and cache within budget after each
            "documents_checked": t.checks,
            "checked_without_kv": t.checked_evicted,
            # KV comparisons: the full checks that found KV plus the sampled ones (both against fresh encodes)
            "kv_comparisons": len(t.kv_errors) + t.sampled_checks,
            "kv_max_error": max(t.kv_errors, default=None),
            "sampled_kv": {
                "every_events": args.sample_kv_every,
                "entries_per_check": args.sample_entries,
                "checks": t.sampled_checks,
                "entries": t.sampled_entries,
                "max_error": max(t.sample_errors, default=None),
                "check_ms_p50": round(statistics.median(t.sample_ms), 1) if t.sample_ms else None,
            },
            "kv_tolerance": args.kv_tolerance,
            "stale_positions_refreshed": t.stale_refreshed,
            "check_ms_p50": round(statistics.median(t.check_ms), 1) if t.check_ms else None,
        },
        "cache": {
            "budget_mb": args.memory_budget_mb,
            "peak_cache_mb": round(t.peak_cache_bytes / 2**20, 1),
            "evicted_returns": t.evicted_returns,
            "evicted_return_edit": percentiles(t.evicted_return_s),
        },
        "memory": {
            "rss_after_load_mb": round(run["rss_after_load"], 1),
            "rss_peak_sampled_mb": round(max(rss), 1),
            "vm_hwm_mb": round(run["vm_hwm"], 1),
            "rss_final_mb": round(rss[-1], 1),
            "growth_mb": round(rss[-1] - rss[0], 1),  # final less the first sample (all documents open)
            "slope_mb_per_1k_events": round(slope_per_1k(t.rss), 2),
            "warmup_overhead_mb": round(warmup, 1),
            "ceiling_mb": round(ceiling, 1),
            "ceiling": f"RSS after load + memoryBudgetMb ({args.memory_budget_mb}) + allowance ({allowance:.0f}: "
            f"warm-up overhead {warmup:.0f} + slack {args.slack_mb})",
            "held": max(rss) <= ceiling,
            "samples": [[e, round(mb, 1), round(cache, 1)] for e, mb, cache in t.rss],
        },
        "latency": {
            # awaited requests, from the change notification of the keystroke that triggered them to the answer
            "completion_from_keystroke": percentiles(t.completion_s),
            "edit_round_trip": percentiles(t.edit_s),
        },
        # the server's own syntax-tree upkeep: per edit (`treeEditMs`: the tree's positions moved), and the
        # last reparse seen after each edit (`treeParseMs`: done when the tree is next read, at a request or
        # at idle time, so one parse covers a burst of keys; sampled per edit, repeats included)
        "syntax_tree": {
            "edits": len(t.tree_edit_ms),
            **{f"p{q}_ms": round(pct(t.tree_edit_ms, q), 3) if t.tree_edit_ms else None for q in (50, 95, 99)},
            "max_ms": max(t.tree_edit_ms, default=None),
            "parse": {f"p{q}_ms": round(pct(t.tree_parse_ms, q), 3) if t.tree_parse_ms else None for q in (50, 95, 99)},
            "target": "p50 <= 0.5 ms, p99 <= 5 ms",
        },
    }


def table(result: dict[str, Any]) -> str:
    """The soak's figures as a markdown table, from the JSON it wrote; targets: no invariant broken, KV
    within tolerance of a fresh encode (full and sampled checks), RSS under its ceiling, the syntax tree's
    upkeep per edit (p50 <= 0.5 ms, p99 <= 5 ms)."""
    summary = result["summary"]
    inv, mem, cache, lat = summary["invariants"], summary["memory"], summary["cache"], summary["latency"]
    sampled, tree, tol = inv["sampled_kv"], summary["syntax_tree"], inv["kv_tolerance"]

    def ms(p: dict[str, float | None]) -> str:
        return " / ".join("-" if p[k] is None else f"{p[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms"))

    def met(ok: bool | None) -> str:
        return "-" if ok is None else "met" if ok else "missed"

    def within(error: float | None) -> bool | None:
        return None if error is None else error <= tol

    def err(error: float | None) -> str:
        return "-" if error is None else f"{error:.2g}"

    tree_ok = None if not tree["edits"] else tree["p50_ms"] <= 0.5 and tree["p99_ms"] <= 5
    tree_value = "- (syntaxTree off)" if not tree["edits"] else f"{tree['p50_ms']:.2f} / {tree['p99_ms']:.2f}"
    done = ", ".join(f"{k} {v}" for k, v in sorted(summary["completions"].items()))
    rows = [
        ("events (edits + completion requests)", f"{summary['events']} in {summary['wall_s']:.0f} s", "-", None),
        (
            "invariant violations (server errors)",
            f"{inv['violations']} ({inv['server_errors']}): {inv['edits_checked']} edits, "
            f"{inv['documents_checked']} full document checks ({inv['checked_without_kv']} evicted)",
            "0",
            inv["violations"] == 0,
        ),
        (
            "KV vs full re-encode after refresh, max abs",
            f"{err(inv['kv_max_error'])} ({inv['kv_comparisons'] - sampled['checks']} comparisons)",
            f"<= {tol:g}",
            within(inv["kv_max_error"]),
        ),
        (
            "first-layer KV vs fresh encode at sampled entries, max abs",
            f"{err(sampled['max_error'])} ({sampled['checks']} comparisons, {sampled['entries']} entries)",
            f"<= {tol:g}",
            within(sampled["max_error"]),
        ),
        ("completions", done, "-", None),
        ("completion from keystroke p50 / p95 / p99 (ms)", ms(lat["completion_from_keystroke"]), "-", None),
        ("edit round trip p50 / p95 / p99 (ms)", ms(lat["edit_round_trip"]), "-", None),
        ("syntax tree upkeep per edit p50 / p99 (ms)", tree_value, "<= 0.5 / <= 5", tree_ok),
        (
            "KV cache peak / budget (MB); returns to an evicted document",
            f"{cache['peak_cache_mb']:.0f} / {cache['budget_mb']}; {cache['evicted_returns']}",
            "-",
            None,
        ),
        (
            "RSS after load / peak / final (MB)",
            f"{mem['rss_after_load_mb']:.0f} / {mem['rss_peak_sampled_mb']:.0f} / {mem['rss_final_mb']:.0f}",
            f"peak <= {mem['ceiling_mb']:.0f}",
            mem["held"],
        ),
        (
            "RSS growth after warm-up (MB); slope, second half (MB / 1k events)",
            f"{mem['growth_mb']:+.0f}; {mem['slope_mb_per_1k_events']:+.2f}",
            "-",
            None,
        ),
    ]
    lines = ["| soak | value | target | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {target} | {met(ok)} |" for name, value, target, ok in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="livekv bench soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="*", default=None, help="Python files to edit (default: 6 stdlib files)")
    ap.add_argument("--events", type=int, default=3_000, help="edits and completion requests to send")
    ap.add_argument("--quick", action="store_true", help="a smoke-sized run: 300 events, checks more often")
    ap.add_argument("--seed", type=int, default=0)
    add_setting_flags(ap)
    ap.add_argument("--max-tokens", type=int, default=None, help="maxTokens per suggestion (default: the server's)")
    ap.add_argument("--memory-budget-mb", type=int, default=256, help="memoryBudgetMb, below what all caches need")
    ap.add_argument("--check-every", type=int, default=1000, help="events between full checks of every document")
    ap.add_argument("--sample-every", type=int, default=100, help="events between RSS samples")
    ap.add_argument("--sample-kv-every", type=int, default=10, help="events between sampled KV checks")
    ap.add_argument("--sample-entries", type=int, default=32, help="cache entries per sampled KV check")
    ap.add_argument("--kv-tolerance", type=float, default=1e-3, help="largest KV difference from a re-encode")
    ap.add_argument("--slack-mb", type=int, default=128, help="RSS allowed above load + warm-up + budget")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [Path(f) for f in args.files] if args.files else [stdlib / f for f in FILES]
    settings = run_settings(args)
    run = asyncio.run(session(args, files))
    summary = summarize(run, args)
    payload = {"seed": args.seed, "files": {f.name: len(f.read_text()) for f in files}, "summary": summary}
    result = json.loads(json.dumps({"benchmark": "soak", **payload}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, "soak", model=settings.model_path, settings=settings, **payload)
        result = json.loads(args.json.read_text())
    print(table(result))
    return 1 if summary["invariants"]["violations"] else 0
