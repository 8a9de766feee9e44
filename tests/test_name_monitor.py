"""The name monitor on a fixture project, with a tiny random model: the mask alone decides what is
decoded, so every identifier after `obj.` must be one jedi lists, and without the monitor it is not."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch

from completion.decoding.decode import decode
from completion.decoding.suggest import popup
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from monitors import triggers
from monitors.analysis import Analyzer, Names, Query
from monitors.base import MonitorStats, Site
from monitors.names import NameMonitor
from monitors.vocab import NameMasks

PROJECT = Path(__file__).parent / "fixtures" / "project"
ACCOUNT = {"owner", "zorblax_total", "zorblax_deposit", "quibble_report"}
_IDENT = re.compile(r"\w*")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    a = Analyzer()
    a.warm_up().result()
    yield a
    a.shutdown()


@pytest.fixture(scope="module")
def engine(tiny_engine: Callable[[str], Engine]) -> Engine:
    return tiny_engine("llama")


def identifier_end(text: str) -> int | None:
    end = _IDENT.match(text).end()  # type: ignore[union-attr]
    return end if end < len(text) else None


def jedi_names(analyzer: Analyzer, text: str) -> Names:
    line, column = text.count("\n") + 1, len(text) - (text.rfind("\n") + 1)
    query = Query(text, line, column, str(PROJECT / "main.py"), str(PROJECT))
    return analyzer.ask(query).result()


def complete(
    engine: Engine,
    vocab: Vocabulary,
    text: str,
    monitor: Callable[[Site], NameMonitor] | None,
) -> str:
    """The identifier decoded at the end of `text` (greedy, up to 12 tokens)."""
    live = LiveDocument(engine, text)
    site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
    processors = [] if monitor is None else [monitor(site)]
    out = decode(live, vocab, max_tokens=12, processors=processors, stop=identifier_end)
    return out.text[: _IDENT.match(out.text).end()]  # type: ignore[union-attr]


def name_monitor(vocab: Vocabulary, masks: NameMasks, analyzer: Analyzer, stats: MonitorStats, **kw):
    return lambda site: NameMonitor(
        vocab, masks, analyzer, site, [triggers.member, triggers.imports], stats=stats, timeout=5.0, **kw
    )


ACCT = "from shapes import Account\n\nacct = Account('bob')\n"


@pytest.mark.parametrize(
    "text",
    [
        ACCT + "acct.",
        ACCT + "total = acct.zorblax_total + acct.",  # a second trigger on the same line
        "from shapes import make_circle\n\nc = make_circle()\nprint(c.",  # resolved across modules
        "import geometry.circle\n\nc = geometry.circle.Circle(1.0)\nc.",
    ],
)
def test_only_names_jedi_lists_are_decoded(engine, vocab, masks, analyzer, text: str) -> None:
    legal = jedi_names(analyzer, text)
    assert legal.names is not None and legal.why == "resolved"
    assert ACCOUNT <= legal.names or {"radius", "wobble_area"} <= legal.names
    stats = MonitorStats()
    with_monitor = complete(engine, vocab, text, name_monitor(vocab, masks, analyzer, stats))
    without = complete(engine, vocab, text, None)
    assert with_monitor in legal.names
    assert without not in legal.names  # the random model alone writes something else: the mask decided
    assert stats.triggers == 1 and stats.resolved == 1 and stats.timeouts == 0


def test_mid_identifier_the_rest_of_a_member_is_decoded(engine, vocab, masks, analyzer) -> None:
    stats = MonitorStats()
    got = complete(engine, vocab, ACCT + "acct.zorblax_d", name_monitor(vocab, masks, analyzer, stats))
    assert got == "zorblax_deposit"[len("zorblax_") :] or "zorblax_d" + got in ACCOUNT


def test_import_names_come_from_the_module(engine, vocab, masks, analyzer) -> None:
    stats = MonitorStats()
    text = "from geometry.circle import "
    got = complete(engine, vocab, text, name_monitor(vocab, masks, analyzer, stats))
    legal = jedi_names(analyzer, text).names
    assert legal is not None and "Circle" in legal and got in legal
    assert complete(engine, vocab, "import geom", name_monitor(vocab, masks, analyzer, MonitorStats())) == "etry"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("def f(a):\n    return a.", "unresolved"),  # an untyped parameter
        ("from shapes import Anything\n\nx = Anything()\nx.", "dynamic"),  # __getattr__: any name exists
        ("x = None\nx.", "opaque"),  # only object's dunders: the value is set elsewhere
    ],
)
def test_an_unresolvable_receiver_leaves_decoding_unconstrained(engine, vocab, masks, analyzer, text, why) -> None:
    assert jedi_names(analyzer, text).why == why
    stats = MonitorStats()
    assert complete(engine, vocab, text, name_monitor(vocab, masks, analyzer, stats)) == complete(
        engine, vocab, text, None
    )
    assert stats.triggers == 1 and stats.resolved == 0 and stats.constrained == 0


class SlowAnalyzer(Analyzer):
    def _complete(self, q: Query) -> Names:
        time.sleep(0.5)
        return super()._complete(q)


def test_a_late_answer_lets_decoding_go_on_then_serves_the_next_suggestion(engine, vocab, masks) -> None:
    slow = SlowAnalyzer()
    try:
        text = ACCT + "acct."
        stats = MonitorStats()
        late = lambda site: NameMonitor(vocab, masks, slow, site, [triggers.member], stats=stats, timeout=0.05)  # noqa: E731
        assert complete(engine, vocab, text, late) == complete(engine, vocab, text, None)
        assert stats.timeouts == 1 and stats.analyzer_seconds < 0.4
        time.sleep(0.6)  # the answer lands in the cache
        assert complete(engine, vocab, text, late) in ACCOUNT | {"__init__", "__class__"} or stats.resolved == 1
    finally:
        slow.shutdown()


def test_the_bias_favours_names_the_document_uses(engine, vocab, masks, analyzer) -> None:
    text = "def f(a):\n    a.quux_handler = 1\n    return a."
    stats = MonitorStats()
    assert complete(engine, vocab, text, name_monitor(vocab, masks, analyzer, stats, bias=50.0)) == "quux_handler"


def test_popup_branches_are_all_members(engine, vocab, masks, analyzer) -> None:
    text = ACCT + "acct."
    live = LiveDocument(engine, text)
    site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
    monitor = NameMonitor(vocab, masks, analyzer, site, [triggers.member], timeout=5.0)
    items = popup(live, vocab, width=4, processors=[monitor])
    legal = jedi_names(analyzer, text).names
    assert items and legal is not None
    # a branch may run out of tokens inside a long name: each label is a member or the start of one
    assert all(any(name.startswith(item.label) for name in legal) for item in items)


def test_the_monitor_is_pure_in_generated(engine, vocab, masks, analyzer) -> None:
    text = ACCT + "acct."
    live = LiveDocument(engine, text)
    site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
    monitor = NameMonitor(vocab, masks, analyzer, site, [triggers.member], timeout=5.0)
    logits = torch.randn(vocab.size, generator=torch.Generator().manual_seed(0))
    dot = vocab.equal_to(b".")
    first = monitor(dot, logits)
    other = monitor(dot + vocab.equal_to(b"z"), logits)
    assert torch.equal(monitor(dot, logits), first) and not torch.equal(first, other)
    assert torch.equal(logits, torch.randn(vocab.size, generator=torch.Generator().manual_seed(0)))  # untouched


def test_jedi_never_imports_project_code(analyzer) -> None:
    marker = PROJECT / "boom.imported"
    names = jedi_names(analyzer, "import boom\n\nboom.")
    assert names.names is not None and "detonate_later" in names.names
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "forbidden"),
    [
        ("from shapes import transfer\n\ntransfer(5, bogus", True),  # no such parameter
        ("from shapes import transfer\n\ntransfer(5, memo", False),
        ("from shapes import transfer\n\ntransfer(amount", False),
        ("from shapes import anything\n\nanything(bogus", False),  # **options: any name is fine
        ("def f(a):\n    return a(bogus", False),  # jedi does not know the call
    ],
)
def test_keyword_arguments_name_a_parameter(vocab, masks, analyzer, text: str, forbidden: bool) -> None:
    site = Site(text, len(text), "", str(PROJECT / "main.py"), str(PROJECT))
    stats = MonitorStats()
    monitor = NameMonitor(vocab, masks, analyzer, site, [triggers.keyword], stats=stats, timeout=5.0)
    equals, paren = vocab.equal_to(b"=")[0], vocab.equal_to(b")")[0]
    logits = torch.zeros(vocab.size)
    logits[equals], logits[paren] = 5.0, 4.0  # the model wants `=`; `)` comes next
    out = monitor([], logits)
    assert bool(out[equals] == float("-inf")) is forbidden
    assert out[paren] == 4.0  # only `name=` tokens are ever judged
    assert stats.triggers == 1
    logits[equals] = 0.0  # the model does not write `=`: jedi is not asked
    assert monitor([], logits) is logits and stats.triggers == 1


def test_a_prefetch_asks_the_requests_own_question(engine, vocab, masks) -> None:
    slow = SlowAnalyzer()
    try:
        text = ACCT + "acct."
        live = LiveDocument(engine, text)
        site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
        assert NameMonitor(vocab, masks, slow, site, [triggers.member]).prefetch()
        time.sleep(0.6)  # jedi answers while the editor's debounce runs
        stats = MonitorStats()
        late = lambda site: NameMonitor(vocab, masks, slow, site, [triggers.member], stats=stats, timeout=0.05)  # noqa: E731
        assert complete(engine, vocab, text, late) in ACCOUNT | {"__init__", "__class__"} or stats.resolved == 1
        assert stats.triggers == 1 and stats.ready == 1 and stats.timeouts == 0 and stats.resolved == 1
    finally:
        slow.shutdown()


def test_typing_the_rest_of_a_name_asks_nothing_new_and_a_stale_prefetch_is_cancelled(vocab, masks) -> None:
    slow = SlowAnalyzer()
    try:

        def prefetched(text: str) -> Future[Names]:
            site = Site(text, len(text), "", str(PROJECT / "main.py"), str(PROJECT))
            monitor = NameMonitor(vocab, masks, slow, site, [triggers.member, triggers.imports])
            futures: list[Future[Names]] = []
            slow.prefetch = lambda q: futures.append(Analyzer.prefetch(slow, q)) or futures[-1]  # type: ignore[method-assign]
            assert monitor.prefetch()
            return futures[0]

        running = slow.ask(Query("import os\nos.", 2, 3, None, None))  # jedi is busy with this one
        at_dot = prefetched(ACCT + "acct.")
        assert prefetched(ACCT + "acct.zorb") is at_dot  # the same question: the code up to the dot
        import_site = prefetched("import o")
        assert at_dot.cancelled() and not import_site.cancelled()  # never started: nobody asks it now
        running.result(timeout=30)
        assert import_site.result(timeout=30).names is not None
        text = "x = 1\n"
        assert not NameMonitor(vocab, masks, slow, Site(text, len(text), ""), [triggers.member]).prefetch()
    finally:
        slow.shutdown()


class FailingOnceAnalyzer(Analyzer):
    calls = 0

    def _answer(self, q: Query) -> Names:
        self.calls += 1
        return Names(None, "error", 0.0) if self.calls == 1 else super()._answer(q)


def test_a_failed_answer_is_asked_again_and_a_good_one_is_not() -> None:
    analyzer = FailingOnceAnalyzer()
    try:
        query = Query("import os\nos.", 2, 3, None, None)
        assert analyzer.ask(query).result(timeout=60).why == "error"
        assert analyzer.ask(query).result(timeout=60).why == "resolved"
        assert analyzer.ask(query).result(timeout=60).why == "resolved" and analyzer.calls == 2
    finally:
        analyzer.shutdown()
