"""Interleavings: edits that arrive while completions, background refreshes, context steps and indexing run.

Hypothesis writes a schedule of editor events for three documents; the test thread plays the event loop
(it submits each event to a real `ModelWorker` at once and records the newest version, as the server's
handlers do) while the worker thread, its background steps and the indexing thread run as they will.
Some stretches are played with the worker held at a gate, so that events pile up in its queue in a known
order; others with pauses that let background work start between them. A plain dict of texts is the
sequential model. After each schedule:
- every document's engine text is the model's (and its preview's, while it has one), its tokens are a
  fresh tokenization of its layout, and after a full refresh its KV equals a full re-encode and a greedy
  answer at its caret is token-identical to a freshly encoded document's;
- every suggestion that came back was decoded on the text of its own version (recorded on the worker
  thread when decoding began), and a request superseded while it waited in the queue got no answer;
- once the folder has been walked, the project index holds each open document's final tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from completion.decoding.decode import decode
from completion.drafting.drafter import Drafter
from completion.drafting.ngrams import NgramModel
from completion.live.document import LiveDocument, TextEdit, fresh_layout, kv_error
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from completion.project.token_store import ProjectIndex
from completion.project.workspace import fs_path
from completion.settings import Settings
from lsp_server.worker import ModelWorker, Request

NAMES = [f"module_{i}.py" for i in range(3)]
# Three files that share identifiers, so each one's snippets are the others' cross-file context: the
# context steps at the front of a prompt are what leaves cached positions stale (rotated, not re-encoded).
START = [
    "from shelf import Shelf\n\n\ndef restock(shelf, items):\n    for item in items:\n"
    "        shelf.add(item)\n    return shelf.count()\n",
    "class Shelf:\n    def __init__(self, items):\n        self.items = list(items)\n\n"
    "    def add(self, item):\n        self.items.append(item)\n\n    def count(self):\n"
    "        return len(self.items)\n",
    "",
]
ALPHABET = "abxy_ .:()=\n\t\r#é😀"
WAIT_SECONDS = 60.0  # bounds a failing run's wait, not a timing threshold

edits = st.tuples(
    st.just("edit"),
    st.integers(0, 2),
    st.floats(0, 1),
    st.integers(0, 6),
    st.one_of(st.text(ALPHABET, max_size=8), st.sampled_from(["shelf.add(item)\n", "    return shelf.items\n"])),
)
# Edits relative to the caret of the document's last request: above it, below it, or at it (the server
# moves the caret only for requests, so coming back after an edit elsewhere must cost no re-encode).
near_caret = st.tuples(
    st.just("edit-near"),
    st.integers(0, 2),
    st.sampled_from(["above", "below", "at"]),
    st.floats(0, 1),
    st.integers(0, 3),
    st.one_of(st.text(ALPHABET, max_size=8), st.sampled_from(["shelf.add(item)\n", "x = 1\n" * 4])),
)
requests = st.tuples(st.sampled_from(["complete", "popup"]), st.integers(0, 2), st.floats(0, 1))
others = st.one_of(
    st.tuples(st.just("cancel")),
    st.tuples(st.just("reopen"), st.integers(0, 2)),
    st.tuples(st.just("pause"), st.sampled_from([0.0, 0.02, 0.08, 0.2])),  # > idleRefreshMs: background work runs
    st.tuples(st.just("settle")),  # the user waits for the last suggestion
    st.tuples(st.just("gate")),  # hold the worker until the next "release" (or the end)
    st.tuples(st.just("release")),
    st.tuples(st.just("index")),  # walk the workspace folder into the project index (its own thread)
)
schedules = st.lists(st.one_of(edits, near_caret, requests, others), min_size=5, max_size=30)


@dataclass
class Sent:
    """A request the test sent: what came back, and whether it was superseded before it could run."""

    req: Request
    kind: str
    future: Future[Any]
    superseded_in_queue: bool = False


@dataclass
class Editor:
    """The event loop's side: the model texts, every version's text, and the requests sent."""

    worker: ModelWorker
    uris: list[str]
    texts: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    history: dict[tuple[str, int], str] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    gate: threading.Event | None = None
    queued_behind_gate: list[Sent] = field(default_factory=list)
    walks: list[threading.Thread] = field(default_factory=list)
    walked: bool = False
    carets: dict[str, int] = field(default_factory=dict)  # the offset of each document's last request

    def open_all(self) -> None:
        for uri, text in zip(self.uris, START, strict=True):
            self.texts[uri], self.versions[uri] = text, 1
            self.history[uri, 1] = text
            self.worker.latest[uri] = 1
            self.worker.submit(self.worker.session.open, uri, text)

    def play(self, event: tuple[Any, ...]) -> None:
        kind, *args = event
        if kind == "edit":
            self.edit(self.uris[args[0]], *args[1:])
        elif kind == "edit-near":
            uri = self.uris[args[0]]
            where, fraction, delete, insert = args[1:]
            n, caret = len(self.texts[uri]), min(self.carets.get(uri, 0), len(self.texts[uri]))
            start = {"above": caret * fraction, "below": caret + (n - caret) * fraction, "at": caret}[where]
            self.edit(uri, start / n if n else 0.0, delete, insert)
        elif kind in ("complete", "popup"):
            uri = self.uris[args[0]]
            req = Request(uri, self.versions[uri], round(args[1] * len(self.texts[uri])))
            self.carets[uri] = req.offset
            fn = self.worker.complete if kind == "complete" else self.worker.popup
            sent = Sent(req, kind, self.worker.submit(fn, req))
            self.sent.append(sent)
            if self.gate is not None:
                self.queued_behind_gate.append(sent)
        elif kind == "cancel" and self.sent:
            self.sent[-1].req.cancelled.set()
        elif kind == "reopen":
            self.reopen(self.uris[args[0]])
        elif kind == "settle" and self.sent and self.gate is None:
            self.sent[-1].future.result(timeout=WAIT_SECONDS)
        elif kind == "pause":
            time.sleep(args[0])
        elif kind == "gate" and self.gate is None:
            self.hold()
        elif kind == "release":
            self.release()
        elif kind == "index":
            self.walk()

    def walk(self) -> None:
        """Index the workspace folder as the server does after start-up: snippets on a thread of their
        own, then the project index on the indexing thread."""
        root = self.worker.session.workspace.roots[0]
        walk = threading.Thread(target=lambda: self.worker.index_root(root))
        walk.start()
        self.walks.append(walk)
        self.walked = True

    def edit(self, uri: str, where: float, delete: int, insert: str) -> None:
        text = self.texts[uri]
        start = round(where * len(text))
        end = min(len(text), start + delete)
        self.bump(uri, text[:start] + insert + text[end:])
        self.worker.submit(self.worker.session.change, uri, [TextEdit(start, end, insert)], self.texts[uri])
        self.worker.latest[uri] = self.versions[uri]  # after the submit, as sync.did_change does

    def reopen(self, uri: str) -> None:
        self.worker.latest.pop(uri, None)
        self.worker.submit(self.worker.session.close, uri)
        self.bump(uri, self.texts[uri])
        self.worker.latest[uri] = self.versions[uri]
        self.worker.submit(self.worker.session.open, uri, self.texts[uri])

    def bump(self, uri: str, text: str) -> None:
        self.texts[uri] = text
        self.versions[uri] += 1
        self.history[uri, self.versions[uri]] = text
        for sent in self.queued_behind_gate:
            sent.superseded_in_queue |= sent.req.uri == uri

    def hold(self) -> None:
        """Block the worker thread until `release`; returns once the worker is inside the gate."""
        gate, entered = threading.Event(), threading.Event()

        def wait() -> None:
            entered.set()
            gate.wait(WAIT_SECONDS)

        self.gate = gate
        self.worker.submit(wait)
        assert entered.wait(WAIT_SECONDS)

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.gate, self.queued_behind_gate = None, []


def on_worker(worker: ModelWorker, fn: Callable[[], Any]) -> Any:
    return worker.submit(fn).result(timeout=WAIT_SECONDS)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace folder: the documents' saved files (their first text), so the walk indexes them too."""
    folder = tmp_path_factory.mktemp("workspace")
    for name, text in zip(NAMES, START, strict=True):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(walk_first=st.booleans(), schedule=schedules)
def test_edits_interleaved_with_completions_background_work_and_indexing(
    walk_first: bool,
    schedule: list[tuple[Any, ...]],
    root: Path,
    tiny_engine: Callable[[str], Engine],
    vocab: Vocabulary,
) -> None:
    worker = ModelWorker(
        Settings(idle_refresh_ms=50, cross_file_chars=300, context_tokens=512, max_tokens=4, popup_items=3)
    )
    worker.session.engine, worker.session.vocab, worker.session.model_name = tiny_engine("llama"), vocab, "tiny"
    worker.session.workspace.roots = [str(root)]
    worker.session.workspace.tokens = ProjectIndex(worker.session.engine.tokenizer)
    worker.session.drafter, worker.session.ngrams = (
        Drafter(worker.session.workspace.tokens.store),
        NgramModel(worker.session.workspace.tokens.store),
    )
    decoded_on: dict[int, str] = {}  # id(request) -> the document's text when its decoding began
    site, current = worker.session._site, [Request("", 0, 0)]

    def recording(answer: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def run(req: Request) -> Any:
            current[0] = req  # the request the worker thread is answering now
            return answer(req)

        return run

    def recording_site(uri: str, doc: LiveDocument) -> Any:
        decoded_on[id(current[0])] = doc.text
        return site(uri, doc)

    worker.complete, worker.popup = recording(worker.complete), recording(worker.popup)  # type: ignore[method-assign]

    worker.session._site = recording_site  # type: ignore[method-assign]
    editor = Editor(worker, [(root / name).as_uri() for name in NAMES])
    try:
        editor.open_all()
        if walk_first:
            editor.walk()
        for event in schedule:
            editor.play(event)
        editor.release()
        answers = [(s, s.future.result(timeout=WAIT_SECONDS)) for s in editor.sent]
        for walk in editor.walks:
            walk.join(WAIT_SECONDS)
        time.sleep(0.15)  # let a background chain start, so the checks below run interleaved with it
        on_worker(worker, lambda: None)

        for sent, answer in answers:
            if answer is None:
                continue
            assert not sent.superseded_in_queue, f"{sent.kind} answered for a version superseded in the queue"
            assert decoded_on[id(sent.req)] == editor.history[sent.req.uri, sent.req.version]

        def check() -> bool:
            for uri in editor.uris:
                doc = worker.session.store.get(uri)
                assert doc.text == editor.texts[uri]
                if uri in worker.session.previews:
                    assert worker.session.previews[uri].text == doc.text
                assert doc.tokens == fresh_layout(doc)
                assert len(doc.kv) <= len(doc.tokens)  # evicted or still growing: what is there is in place
                doc.refresh()
                assert len(doc.kv) == len(doc.tokens) and kv_error(doc) <= 1e-4
                if doc.layout.window_start == 0:
                    fresh = LiveDocument(doc.engine, doc.text, cursor=doc.cursor, context=doc.context, window=512)
                    assert decode(doc, vocab, max_tokens=4).tokens == decode(fresh, vocab, max_tokens=4).tokens
            return True

        assert on_worker(worker, check) is True  # a worker job that raises answers None
        worker._indexer.submit(lambda: None).result(timeout=WAIT_SECONDS)  # the indexer has caught up
        held = {
            key: list(t) for shard in worker.session.workspace.tokens.store.shards for key, t in shard.files.items()
        }
        for uri in editor.uris:  # the editor's text once the folder is known; nothing of it before
            key = fs_path(uri)
            if editor.walked:
                assert held.get(key, []) == worker.session.workspace.tokens._tokens([editor.texts[uri]])[0]
            else:
                assert key not in held
    finally:
        editor.release()
        worker.shutdown()
        worker._pool.shutdown(wait=True)
        worker._indexer.shutdown(wait=True)
