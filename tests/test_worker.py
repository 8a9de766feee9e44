"""ModelWorker without LSP: idle refresh and growth, superseded and cancelled requests, the baselines' update
policies, the preview of a document still growing, cross-file context, faults.

The worker gets a tiny random model directly (no load()); jobs go through `submit` like the server's.
Waiting is a polling loop on jobs submitted to the worker: every job re-arms the idle timer, so the
polls sleep longer than `idle_refresh_ms` to let background steps run in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from completion.live.document import LiveDocument, TextEdit, fresh_layout, kv_error
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from completion.session import CONTEXT_STEP_CHARS
from completion.settings import Settings
from lsp_server.worker import ModelWorker, Request

URI = "file:///work/inventory.py"
OTHER_URI = "file:///work/inventory_copy.py"
SOURCE = '''import os


class Inventory:
    """Items on the shelf."""

    def __init__(self, items):
        self.items = list(items)
        self.count = len(self.items)

    def add(self, item, quantity=1):
        for _ in range(quantity):
            self.items.append(item)
        self.count += quantity
        return self.count

    def names(self):
        return sorted({item.name for item in self.items})
'''
# Another open file that shares identifiers with SOURCE: its snippets are cross-file context for it
# (once its workspace folder is walked: only files the walk would list are shared).
OTHER_TEXT = "\n".join(
    f"def restock_{i}(inventory, item, quantity):\n"
    f"    # add {i} more of the item to the inventory count\n"
    f"    inventory.items.append(item)\n"
    f"    inventory.count += quantity * {i}\n"
    f"    return sorted(inventory.names())\n"
    for i in range(12)
)
POLL_SECONDS = 0.2  # > idle_refresh_ms below
WAIT_SECONDS = 60.0  # an upper bound for a loaded machine, not a timing threshold


@pytest.fixture
def make_worker(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> Iterator[Callable[..., ModelWorker]]:
    workers: list[ModelWorker] = []

    def make(**settings: Any) -> ModelWorker:
        defaults: dict[str, Any] = {
            "idle_refresh_ms": 50,
            "cross_file_chars": 0,
            "max_tokens": 6,
            "time_budget_ms": 600_000,
        }
        worker = ModelWorker(Settings(**{**defaults, **settings}))
        worker.session.engine = tiny_engine("llama")
        worker.session.vocab = vocab
        worker.session.model_name = "tiny"
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.shutdown()
        # let a background step in flight end before the next test uses the shared tiny engine
        worker._pool.shutdown(wait=True)


def on_worker(worker: ModelWorker, fn: Callable[..., Any], *args: Any) -> Any:
    return worker.submit(fn, *args).result(timeout=WAIT_SECONDS)


def wait_until(worker: ModelWorker, condition: Callable[[], bool]) -> bool:
    """Poll `condition` on the worker thread until it holds (True) or WAIT_SECONDS pass (False)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if on_worker(worker, condition):
            return True
        time.sleep(POLL_SECONDS)
    return False


def assert_valid(worker: ModelWorker, doc: LiveDocument, *, exact: bool) -> None:
    """The cache invariant; `exact`: once the idle refresh has grown and refreshed it all, KV = a full re-encode."""
    if exact:
        assert wait_until(worker, lambda: doc.missing == 0 and doc.stale == 0)

    def check() -> None:
        context = doc.engine.tokenizer(doc.context, add_special_tokens=False).input_ids if doc.context else []
        assert doc._head == [doc.engine.start, *context]
        assert doc.tokens == fresh_layout(doc)
        assert len(doc.kv) <= len(doc.tokens)
        if exact:
            assert kv_error(doc) <= 1e-4

    on_worker(worker, check)


def grown(worker: ModelWorker, uri: str = URI) -> LiveDocument:
    """The open document once the idle time has encoded all of it."""
    doc = on_worker(worker, worker.session.store.get, uri)
    assert wait_until(worker, lambda: doc.missing == 0 and doc.stale == 0)
    return doc


# -- idle refresh -----------------------------------------------------------------------------


def test_idle_refresh_re_encodes_stale_positions(make_worker: Callable[..., ModelWorker]) -> None:
    worker = make_worker()
    on_worker(worker, worker.session.open, URI, SOURCE)
    doc = grown(worker)  # opening encodes nothing: the idle time grows the cache
    assert doc.counts.refresh == len(doc.tokens) and doc.counts.requests == 0
    new_text = "import sys\n" + SOURCE

    def change() -> tuple[int, int]:  # a whole-document edit, as a full-sync client sends; the caret ends at the bottom
        worker.session.change(URI, [TextEdit(0, len(SOURCE), new_text)], new_text)
        return doc.stale, worker.background_steps

    stale, steps_before = on_worker(worker, change)
    assert stale > 100  # PIE rotated everything below the new line
    assert wait_until(worker, lambda: doc.stale == 0)
    assert worker.background_steps > steps_before
    assert on_worker(worker, worker.session.text_of, URI) == new_text
    assert_valid(worker, doc, exact=True)


# -- requests ---------------------------------------------------------------------------------


def test_complete_answers_the_current_version_only(make_worker: Callable[..., ModelWorker]) -> None:
    worker = make_worker()
    worker.latest[URI] = 3
    on_worker(worker, worker.session.open, URI, SOURCE)
    offset = SOURCE.index("self.count = len")
    answer = on_worker(worker, worker.complete, Request(URI, 3, offset))
    assert answer is not None and answer is worker.session.last_answer
    assert on_worker(worker, lambda: worker.session.store.get(URI).cursor) == offset

    assert on_worker(worker, worker.complete, Request(URI, 2, offset)) is None  # an older version
    cancelled = Request(URI, 3, offset)
    cancelled.cancelled.set()
    assert on_worker(worker, worker.complete, cancelled) is None
    assert on_worker(worker, worker.complete, Request("file:///work/unknown.py", 3, 0)) is None
    assert on_worker(worker, worker.popup, Request(URI, 2, offset)) is None
    inside = SOURCE.index("self.items = list") + len("self.it")
    items = on_worker(worker, worker.popup, Request(URI, 3, inside))
    assert items and all(i.label.startswith("it") and i.start == inside - 2 for i in items)
    assert worker.session.last_answer is answer


def test_a_change_queued_behind_a_request_supersedes_it(make_worker: Callable[..., ModelWorker]) -> None:
    """What the event loop does: the request is queued, then a didChange bumps the version."""
    worker = make_worker()
    worker.latest[URI] = 1
    on_worker(worker, worker.session.open, URI, SOURCE)
    gate = threading.Event()
    blocked = worker.submit(gate.wait, WAIT_SECONDS)  # holds the worker so the request waits in the queue
    request = worker.submit(worker.complete, Request(URI, 1, len(SOURCE)))
    worker.latest[URI] = 2
    gate.set()
    assert blocked.result(timeout=WAIT_SECONDS)
    assert request.result(timeout=WAIT_SECONDS) is None
    assert worker.session.last_answer is None


class CancelledAfter(threading.Event):
    """A cancel flag that turns set after `checks` polls: a $/cancelRequest arriving mid-decode."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0 or super().is_set()


def test_cancel_during_decoding_stops_between_tokens(make_worker: Callable[..., ModelWorker]) -> None:
    worker = make_worker(max_tokens=20, multiline=True)
    worker.latest[URI] = 1
    on_worker(worker, worker.session.open, URI, SOURCE)
    doc = on_worker(worker, worker.session.store.get, URI)
    tokens = list(doc.tokens)
    req = Request(URI, 1, len(SOURCE), cancelled=CancelledAfter(3))
    assert on_worker(worker, worker.complete, req) is None
    # polled once before decoding, after each of three tokens (the third poll cancels), once after decoding
    assert req.cancelled.checks == -2
    # the document's tokens are unchanged, its KV holds the prompt (the rest grows at idle time)
    assert on_worker(worker, lambda: (list(doc.tokens), len(doc.kv))) == (tokens, doc.layout.decode_at)
    assert worker.session.last_answer is None


# -- update policies and previews -----------------------------------------------------------


@pytest.mark.parametrize("policy", ["pie", "prefix-reuse", "full"])
def test_each_policy_encodes_what_its_name_says_for_an_edit_far_above_the_caret(
    make_worker: Callable[..., ModelWorker], policy: str
) -> None:
    """Ask near the end, type a line near the top, ask at the old caret again: PIE encodes the new
    line's tokens (and at most the prompt's last token), prefix-reuse everything from the edit to
    the caret, full the whole prompt."""
    worker = make_worker(update_policy=policy, idle_refresh_ms=600_000)  # no idle work: counts are the requests'
    text = SOURCE * 3
    on_worker(worker, worker.session.open, URI, text)
    doc = on_worker(worker, worker.session.store.get, URI)
    on_worker(worker, doc.refresh)  # PIE's cache grown whole, as the idle time would; the baselines wait
    caret = len(text) - 20
    worker.latest[URI] = 1
    assert on_worker(worker, worker.complete, Request(URI, 1, caret)) is not None
    prompt = len(doc.prompt)
    before = doc.counts.edits + doc.counts.requests
    at = text.index("    def __init__")
    line = "    limit = 10\n"
    on_worker(worker, worker.session.change, URI, [TextEdit(at, at, line)], text[:at] + line + text[at:])
    worker.latest[URI] = 2
    assert on_worker(worker, worker.complete, Request(URI, 2, caret + len(line))) is not None
    encoded = doc.counts.edits + doc.counts.requests - before
    if policy == "pie":
        assert encoded <= 8 and doc.stale > 0
    elif policy == "prefix-reuse":
        assert prompt - 20 <= encoded <= prompt + 8
    else:
        assert encoded == len(doc.prompt)
    on_worker(worker, doc.refresh)
    assert_valid(worker, doc, exact=policy == "pie")


@pytest.mark.parametrize("added", ["\x00", "# padding\n" * 200])
def test_a_request_after_the_text_became_uncacheable_answers_nothing(
    make_worker: Callable[..., ModelWorker], added: str
) -> None:
    worker = make_worker(update_policy="full", max_file_bytes=1024)
    on_worker(worker, worker.session.open, URI, SOURCE)
    edited = SOURCE + added
    on_worker(worker, worker.session.change, URI, [TextEdit(len(SOURCE), len(SOURCE), added)], edited)
    assert on_worker(worker, worker.session.cacheable, edited) is not None
    worker.latest[URI] = 2
    assert on_worker(worker, worker.complete, Request(URI, 2, len(edited))) is None


def test_a_document_still_growing_answers_from_a_preview_at_the_caret(
    make_worker: Callable[..., ModelWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far from what is encoded, the first answer decodes on the last tokens before the caret; edits reach
    the preview too; once the document has grown past the caret, requests use it and the preview goes."""
    import completion.session as worker_module

    monkeypatch.setattr(worker_module, "FIRST_ANSWER_TOKENS", 16)
    monkeypatch.setattr(worker_module, "PREVIEW_TOKENS", 64)
    worker = make_worker(idle_refresh_ms=600_000)
    text = SOURCE * 3
    on_worker(worker, worker.session.open, URI, text)
    doc = on_worker(worker, worker.session.store.get, URI)
    worker.latest[URI] = 1
    caret = len(text) - 20
    assert on_worker(worker, worker.complete, Request(URI, 1, caret)) is not None
    preview = worker.session.previews[URI]
    assert len(doc.kv) == 0 and 48 <= len(preview.kv) <= 64 and preview.counts.requests == len(preview.kv)
    on_worker(worker, worker.session.change, URI, [TextEdit(caret, caret, "x")], text[:caret] + "x" + text[caret:])
    assert preview.text == doc.text
    on_worker(worker, doc.refresh)  # as the idle time would
    worker.latest[URI] = 2
    assert on_worker(worker, worker.complete, Request(URI, 2, caret + 1)) is not None
    assert URI not in worker.session.previews
    assert_valid(worker, doc, exact=True)


# -- cross-file context ------------------------------------------------------------------------


def open_other(worker: ModelWorker, folder: Path, text: str) -> None:
    """OTHER_TEXT (or `text`) as an open document of a walked workspace folder."""
    worker.session.workspace.snippets.index_folder(str(folder))
    worker.session.workspace.snippets.update((folder / "shelf.py").as_uri(), text)


def test_cross_file_context_grows_to_the_index_render_and_stays_valid(
    make_worker: Callable[..., ModelWorker], tmp_path: Path
) -> None:
    worker = make_worker(cross_file_chars=1200)
    on_worker(worker, worker.session.open, URI, SOURCE)
    doc = on_worker(worker, worker.session.store.get, URI)
    open_other(worker, tmp_path, OTHER_TEXT)
    target = on_worker(worker, worker.session.context_for, URI, doc)
    assert len(target) > 2 * CONTEXT_STEP_CHARS and target.startswith("# Path: shelf.py\n")
    assert wait_until(worker, lambda: doc.context == worker.session.context_for(URI, doc) and doc.stale == 0)
    assert doc.context == target
    assert_valid(worker, doc, exact=True)


def test_cross_file_context_steps_are_valid_prompts(make_worker: Callable[..., ModelWorker], tmp_path: Path) -> None:
    worker = make_worker(cross_file_chars=1200, idle_refresh_ms=600_000)  # no background: steps by hand
    on_worker(worker, worker.session.open, URI, SOURCE)
    doc = on_worker(worker, worker.session.store.get, URI)
    on_worker(worker, doc.refresh)
    open_other(worker, tmp_path, OTHER_TEXT)

    def step_all() -> list[tuple[str, bool]]:
        seen = []
        while worker.session._step_context(URI, doc):
            seen.append((doc.context, doc.tokens == fresh_layout(doc) and len(doc.kv) == len(doc.tokens)))
        return seen

    seen = on_worker(worker, step_all)
    target = on_worker(worker, worker.session.context_for, URI, doc)
    assert len(seen) >= 2 and seen[-1][0] == target
    contexts = [c for c, _ in seen]
    assert all(a != b and b.startswith(a) for a, b in zip(["", *contexts], contexts, strict=False))
    assert all(c.endswith("\n") for c in contexts)  # cut at line ends
    assert all(valid for _, valid in seen)

    # The other file changes so that the target no longer extends the context: it is dropped, then regrown.
    open_other(worker, tmp_path, OTHER_TEXT.replace("restock_", "replenish_"))
    seen = on_worker(worker, step_all)
    assert seen[0][0] == "" and seen[-1][0] == on_worker(worker, worker.session.context_for, URI, doc) != target
    assert all(valid for _, valid in seen)
    on_worker(worker, doc.refresh)
    assert_valid(worker, doc, exact=True)


def test_shutdown_refuses_new_work_and_background_steps(make_worker: Callable[..., ModelWorker]) -> None:
    worker = make_worker()
    on_worker(worker, worker.session.open, URI, SOURCE)
    worker.shutdown()
    with pytest.raises(RuntimeError):
        worker.submit(worker.session.text_of, URI)
    timer = worker._timer
    worker._arm_background()  # what a job finishing after shutdown does: no new timer
    assert worker._timer is timer and (timer is None or timer.finished.is_set())  # cancelled by shutdown
    worker._start_background()  # what a timer firing after shutdown does: nothing, and no error
    assert not worker._background


class ShutdownOnRelease:
    """The worker's lock, with `shutdown()` landing on the event loop right after the lock is released."""

    def __init__(self, worker: ModelWorker) -> None:
        self.worker, self.lock, self.fired = worker, threading.Lock(), False

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        if not self.fired:
            self.fired = True
            self.worker.shutdown()


def test_shutdown_between_the_idle_check_and_the_submit_is_harmless(
    make_worker: Callable[..., ModelWorker],
) -> None:
    worker = make_worker(idle_refresh_ms=600_000)  # no idle timer fires: the call below is the only start
    faults = record_faults(worker)
    on_worker(worker, worker.session.open, URI, SOURCE)
    worker._lock = lock = ShutdownOnRelease(worker)  # type: ignore[assignment]
    worker._start_background()  # runs on the idle timer's thread in the server: it must not raise
    worker._pool.shutdown(wait=True)  # the step it queued has run, or the shutdown cancelled it
    assert lock.fired and worker._closed and faults == [] and worker.background_steps <= 1


# -- faults -----------------------------------------------------------------------------------


def record_faults(worker: ModelWorker) -> list[Exception]:
    faults: list[Exception] = []
    worker.on_fault = lambda where, err: faults.append(err)
    return faults


def out_of_memory(*args: Any, **kwargs: Any) -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def drafts_of(answer: Any) -> list[str]:
    assert answer is not None
    return [d.text for d in answer.drafts]


def test_a_pass_that_fails_before_decoding_leaves_the_cache_whole(
    make_worker: Callable[..., ModelWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt's logits are not known (as after some edits) and the pass that computes them fails."""
    worker = make_worker()
    faults = record_faults(worker)
    worker.latest[URI] = 1
    on_worker(worker, worker.session.open, URI, SOURCE)
    doc = on_worker(worker, worker.session.store.get, URI)
    reference = drafts_of(on_worker(worker, worker.complete, Request(URI, 1, len(SOURCE))))
    on_worker(worker, doc._logits.clear)
    monkeypatch.setattr(doc.engine.runner, "forward", out_of_memory)
    assert on_worker(worker, worker.complete, Request(URI, 1, len(SOURCE))) is None  # answered, empty
    monkeypatch.undo()
    # the error itself is reported, not an assertion of the cleanup it would have upset
    assert [type(err) for err in faults] == [torch.OutOfMemoryError]
    assert on_worker(worker, lambda: URI in worker.session.store)  # decoding failed, the cache did not: it is kept
    assert_valid(worker, doc, exact=True)
    assert drafts_of(on_worker(worker, worker.complete, Request(URI, 1, len(SOURCE)))) == reference


def test_an_update_that_fails_drops_the_cache_until_the_next_request(
    make_worker: Callable[..., ModelWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker()
    faults = record_faults(worker)
    on_worker(worker, worker.session.open, URI, SOURCE)
    runner = grown(worker).engine.runner
    at = len("import os")
    edited = SOURCE[:at] + ", sys" + SOURCE[at:]
    monkeypatch.setattr(runner, "forward", out_of_memory)
    on_worker(worker, worker.session.change, URI, [TextEdit(at, at, ", sys")], edited)
    monkeypatch.undo()
    assert [type(err) for err in faults] == [torch.OutOfMemoryError]
    assert not on_worker(worker, lambda: URI in worker.session.store)  # half-patched: dropped
    assert on_worker(worker, worker.session.text_of, URI) == edited
    typed = edited + "\n"
    on_worker(worker, worker.session.change, URI, [TextEdit(len(edited), len(edited), "\n")], typed)
    assert on_worker(worker, worker.session.text_of, URI) == typed  # edits go to the text until a request
    worker.latest[URI] = worker.latest[OTHER_URI] = 2
    answer = drafts_of(on_worker(worker, worker.complete, Request(URI, 2, len(typed))))
    on_worker(worker, worker.session.open, OTHER_URI, typed)
    assert answer == drafts_of(on_worker(worker, worker.complete, Request(OTHER_URI, 2, len(typed))))
    assert_valid(worker, on_worker(worker, worker.session.store.get, URI), exact=True)
    assert len(faults) == 1
