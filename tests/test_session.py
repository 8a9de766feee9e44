"""The engine session without a server: finished answers at an offset, settings applied at run time,
a selected popup item followed. Tiny random model: these are the session's rules, not the model's output."""

from __future__ import annotations

from collections.abc import Callable

from completion.live.document import TextEdit
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from completion.session import REFRESH_CHUNK, EngineSession, Selected
from completion.settings import Settings
from monitors.analysis import Query
from tests.test_worker import SOURCE, URI


def session_with(tiny_engine: Callable[[str], Engine], vocab: Vocabulary, **settings: object) -> EngineSession:
    session = EngineSession(Settings(**{"cross_file_chars": 0, "max_tokens": 4, **settings}))  # type: ignore[arg-type]
    session.engine, session.vocab, session.model_name = tiny_engine("llama"), vocab, "tiny"
    return session


def test_items_replace_the_partial_word_and_carry_its_text(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary
) -> None:
    session = session_with(tiny_engine, vocab)
    session.open(URI, SOURCE)
    offset = SOURCE.index("quantity\n") + len("quan")
    answer = session.complete(URI, offset)
    assert answer is not None and answer.items and answer is session.last_answer
    for item, draft in zip(answer.items, answer.drafts, strict=True):
        assert item.start == SOURCE.index("quantity\n") and item.text == "quan" + draft.text


def test_a_selected_item_is_where_every_suggestion_starts(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary
) -> None:
    session = session_with(tiny_engine, vocab, max_tokens=8)
    session.open(URI, SOURCE)
    start = SOURCE.index("quantity\n")
    offset = start + len("quan")
    answer = session.complete(URI, offset, selected=Selected(start, offset, "quantity_total"))
    assert answer is not None and answer.items
    assert all(item.text.startswith("quantity_total") for item in answer.items)


def test_a_stop_request_answers_nothing(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> None:
    session = session_with(tiny_engine, vocab)
    session.open(URI, SOURCE)
    assert session.complete(URI, 10, should_stop=lambda: True) is None
    assert session.complete("file:///work/unknown.py", 0) is None


def test_settings_apply_at_run_time(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> None:
    session = session_with(tiny_engine, vocab)
    session.open(URI, SOURCE)
    session.open("file:///work/b.py", SOURCE)
    session.warm(URI, len(SOURCE))
    session.warm("file:///work/b.py", len(SOURCE))
    assert all(len(session.store.get(u).kv) for u in (URI, "file:///work/b.py"))
    session.apply_settings(Settings(cross_file_chars=0, max_tokens=4, memory_budget_mb=16))
    assert session.store.budget_bytes == 16 << 20  # the store evicts against it from now on (test_live's store tests)
    session.apply_settings(Settings(cross_file_chars=0, max_tokens=4, memory_budget_mb=16, context_tokens=256))
    assert URI in session.unencoded and URI not in session.store  # re-opened under the new window
    session.change(URI, [TextEdit(0, 0, "# top\n")], "# top\n" + SOURCE)  # edits while dropped are kept
    assert session.complete(URI, 10) is not None
    assert session.store.get(URI).window == 256 and session.store.get(URI).text == "# top\n" + SOURCE


def test_a_change_that_makes_a_trigger_asks_jedi_before_the_request(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary
) -> None:
    session = EngineSession(Settings(cross_file_chars=0, max_tokens=4))
    session.use_engine(tiny_engine("llama"), "tiny")
    try:
        assert session.monitors is not None
        asked: list[Query] = []
        prefetch = session.monitors.analyzer.prefetch
        session.monitors.analyzer.prefetch = lambda q: asked.append(q) or prefetch(q)  # type: ignore[method-assign]
        text = SOURCE + "\nos"
        session.open(URI, text)
        session.complete(URI, len(text))  # the caret is at the end: typing there carries it along
        session.change(URI, [TextEdit(len(text), len(text), "x")], text + "x")
        assert asked == []  # `osx` is no trigger
        session.change(URI, [TextEdit(len(text), len(text) + 1, ".")], text + ".")
        (query,) = asked
        tree = session.store.get(URI)._tree
        assert tree is not None and tree.pending  # asked without reparsing: the tree waits for the request
        assert query.code.endswith("\nos.") and (query.line, query.column) == (text.count("\n") + 1, 3)
        assert prefetch(query).result(timeout=60).names is not None  # jedi knows `os`: the request finds it
        session.apply_settings(Settings(cross_file_chars=0, max_tokens=4, monitor_members=False))
        session.change(URI, [TextEdit(len(text) + 1, len(text) + 1, "p")], text + ".p")
        assert len(asked) == 1  # the member monitor is off: nothing to ask for
    finally:
        session.shutdown()


def test_an_idle_step_refreshes_refresh_chunk_tokens_or_with_none_all_of_them(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary
) -> None:
    session = session_with(tiny_engine, vocab)
    session.open(URI, SOURCE)
    session.warm(URI, len(SOURCE))
    session.change(URI, [TextEdit(0, 0, "# top\n")], "# top\n" + SOURCE)  # every entry after it is stale
    doc = session.store.get(URI)
    stale = len(doc.tokens) - doc.exact_len
    assert stale > REFRESH_CHUNK
    while doc.exact_len + stale == len(doc.tokens):  # the syntax tree's catch-up may come first
        assert session.background_step()
    assert len(doc.tokens) - doc.exact_len == stale - REFRESH_CHUNK
    session.refresh_chunk = None  # a benchmark's settle: the rest in one step
    assert session.background_step() and doc.exact_len == len(doc.tokens)
    assert not session.background_step()
