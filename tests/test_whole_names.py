"""Whole-name search: the tree in the cache gives the log-probabilities sequential decoding gives, the
best-first search finds the most probable whole name (against brute force), and the name monitor
writes the legal name the model rates best as a whole (against the same search on sequential passes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from completion.decoding.decode import TreeSearch, decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from monitors import triggers, whole_names
from monitors.analysis import Analyzer, Query
from monitors.base import MonitorStats, Site
from monitors.names import NameMonitor
from monitors.whole_names import Spelling, best_name, spellings

PROJECT = Path(__file__).parent / "fixtures" / "project"
ACCT = "from shapes import Account\n\nacct = Account('bob')\nacct."
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


def sequential(live: LiveDocument, generated: list[int], path: Sequence[int]) -> torch.Tensor:
    """The reference: log-probabilities after each token of `path`, fed one pass at a time after `generated`."""
    with live.decoding() as (kv, _):
        for tok in generated:
            kv.encode([tok])
        rows = torch.stack([kv.encode([tok], logits="last") for tok in path])  # type: ignore[misc]
    return torch.log_softmax(rows.float(), dim=-1)


class SequentialSearch:
    """A TreeSearch made of plain sequential passes on a fresh view of the cache, for every path."""

    def __init__(self, live: LiveDocument, generated: list[int]) -> None:
        self.live, self.generated, self.fed = live, generated, 0

    def feed(self, paths: Sequence[tuple[int, ...]]) -> torch.Tensor:
        self.fed += len(paths)
        return torch.stack([sequential(self.live, self.generated, p)[-1] for p in paths])

    def close(self) -> None:
        pass


@torch.inference_mode()
def test_the_tree_search_matches_sequential_passes_and_leaves_the_cache(engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, "def total(items):\n    return sum(item.")
    (generated, a, b, c) = vocab.encode([b"pri", b"price_total", b"price", b"quantity_sold"])
    assert generated and a and b and c
    paths = [tuple(x) for x in (a, b, c)]
    with live.decoding() as (kv, _):
        prompt_len = len(kv)
        ahead = vocab.encode([b"ahead"])[0]
        assert ahead
        kv.encode([*generated, *ahead])  # drafted tokens ahead: the tree must not see them
        before = len(kv)
        keys = kv.keys[:, :, :before].clone()
        search = TreeSearch(kv, prompt_len, generated)
        got: dict[tuple[int, ...], torch.Tensor] = {}
        for depth in range(1, max(map(len, paths)) + 1):  # a pass per layer of the trie
            layer = sorted({p[:depth] for p in paths if len(p) >= depth})
            got.update(zip(layer, search.feed(layer), strict=True))
        search.close()
        assert len(kv) == before and torch.equal(kv.keys[:, :, :before], keys)
    for path in paths:
        rows = torch.stack([got[path[: d + 1]] for d in range(len(path))])
        torch.testing.assert_close(rows, sequential(live, generated, path), atol=2e-4, rtol=1e-4)


NAMES = ("append", "appendleft", "apply", "count", "clear", "copy", "extend", "index", "insert", "pop")


@pytest.mark.parametrize("seed", range(5))
def test_spellings_start_with_the_best_first_tokens_and_spell_the_name(vocab, masks, seed: int) -> None:
    spelled = {n: n.encode() for n in NAMES}
    legal = masks.mask(NAMES)
    assert legal is not None
    scores = torch.randn(vocab.size, generator=torch.Generator().manual_seed(seed))
    logprobs = torch.log_softmax(scores.masked_fill(~torch.from_numpy(legal), float("-inf")), dim=-1)
    found = spellings(vocab, spelled, logprobs)
    assert found
    tops = torch.topk(logprobs, whole_names.FIRST_TOKENS).indices.tolist()
    for f in found:
        written = vocab.decode(list(f.tokens))
        assert written == spelled[f.name] or (f.ended and written.startswith(spelled[f.name]))
        assert f.tokens[0] in tops


def test_a_lead_alone_says_nothing_about_the_name(vocab) -> None:
    spelled = {n: b"." + n.encode() for n in ("append", "count")}
    logprobs = torch.full((vocab.size,), float("-inf"))
    logprobs[vocab.equal_to(b".")] = -0.1
    assert spellings(vocab, spelled, logprobs, lead=1) == []


class FakeSearch:
    """Log-probabilities after a path: a fixed random function of the path."""

    def __init__(self, vocab_size: int) -> None:
        self.size, self.fed = vocab_size, 0

    def row(self, path: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash(path) % (1 << 31))
        return torch.log_softmax(3 * torch.randn(self.size, generator=g), dim=-1)

    def feed(self, paths: Sequence[tuple[int, ...]]) -> torch.Tensor:
        self.fed += len(paths)
        return torch.stack([self.row(p) for p in paths])

    def close(self) -> None:
        pass


@pytest.mark.parametrize("seed", range(8))
def test_the_search_finds_the_most_probable_whole_name(seed: int) -> None:
    size = 64
    ends = torch.zeros(size, dtype=torch.bool)
    ends[:8] = True
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 5, (20,), generator=rng).tolist()
    found = [
        Spelling(f"n{i}", tuple(torch.randint(8, size, (n,), generator=rng).tolist())) for i, n in enumerate(lengths)
    ]
    found.append(Spelling("whole", (9,), ended=True))
    first = torch.log_softmax(torch.randn(size, generator=rng), dim=-1)
    fake = FakeSearch(size)

    def total(s: Spelling) -> float:
        if s.ended:
            return float(first[s.tokens[0]])
        t = float(first[s.tokens[0]]) + sum(float(fake.row(s.tokens[:d])[s.tokens[d]]) for d in range(1, len(s.tokens)))
        return t + float(torch.logsumexp(fake.row(s.tokens)[ends], dim=0))

    truth = max(found, key=total)
    got, logprob, passes = best_name(fake, first, found, ends, width=4, passes=1000)
    assert got == truth.name and logprob == pytest.approx(total(truth), abs=1e-5)
    nodes = len({s.tokens[:d] for s in found if not s.ended for d in range(1, len(s.tokens) + 1)})
    assert fake.fed <= nodes and passes <= -(-nodes // 4)  # each path fed at most once, four per pass


def test_the_search_stops_at_its_pass_budget(vocab) -> None:
    fake = FakeSearch(64)
    found = [Spelling("deep", (10, 11, 12, 13, 14, 15))]
    first = torch.zeros(64)
    assert best_name(fake, first, found, torch.ones(64, dtype=torch.bool), passes=2) == (None, float("-inf"), 2)


def monitored(vocab, masks, analyzer, live: LiveDocument, text: str, stats: MonitorStats, whole: bool) -> str:
    site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
    monitor = NameMonitor(vocab, masks, analyzer, site, [triggers.member], timeout=5.0, whole_names=whole, stats=stats)
    out = decode(live, vocab, max_tokens=12, processors=[monitor])
    return out.text[: _IDENT.match(out.text).end()]  # type: ignore[union-attr]


def test_the_monitor_writes_the_legal_name_best_as_a_whole(engine, vocab, masks, analyzer, monkeypatch) -> None:
    """The reference: the same search on plain sequential passes, at the step the name starts (after
    the healed `.`, when the model writes it alone first). The random model's flat distributions need a
    wider search than a trained model's to complete a name."""
    monkeypatch.setattr(whole_names, "WIDTH", 16)
    monkeypatch.setattr(whole_names, "PASSES", 8)
    live = LiveDocument(engine, ACCT)
    assert live.heal == "."  # healing backs up over the dot
    legal = analyzer_names(analyzer)
    stats = MonitorStats()
    got = monitored(vocab, masks, analyzer, live, ACCT, stats, whole=True)
    assert got in legal and stats.scored == 1 and stats.scoring_seconds > 0 and stats.scoring_passes >= 1

    def kept(logits: torch.Tensor, lead: bytes) -> torch.Tensor:
        mask = masks.mask(legal, b"", lead)
        return torch.log_softmax(logits.float().masked_fill(~torch.from_numpy(mask), float("-inf")), dim=-1)

    logprobs, generated, spelled = kept(live.prompt_logits(), b"."), [], {n: b"." + n.encode() for n in legal}
    if len(vocab.pieces[int(torch.argmax(logprobs))]) <= 1:  # the dot alone: the name's own tokens decide
        generated = [int(torch.argmax(logprobs))]
        logprobs = kept(sequential(live, [], generated)[0], b"")
        spelled = {n: n.encode() for n in legal}
    found = spellings(vocab, spelled, logprobs, lead=len(spelled[got]) - len(got))
    reference = SequentialSearch(live, generated)
    assert best_name(reference, logprobs, found, masks.name_ends)[0] == got  # type: ignore[arg-type]


def analyzer_names(analyzer: Analyzer) -> frozenset[str]:
    line, column = ACCT.count("\n") + 1, len(ACCT) - (ACCT.rfind("\n") + 1)
    names = analyzer.ask(Query(ACCT, line, column, str(PROJECT / "main.py"), str(PROJECT))).result().names
    assert names is not None and ACCOUNT <= names
    return names


def test_without_whole_names_or_a_scorer_the_first_token_decides(engine, vocab, masks, analyzer) -> None:
    live = LiveDocument(engine, ACCT)
    stats = MonitorStats()
    got = monitored(vocab, masks, analyzer, live, ACCT, stats, whole=False)
    assert got in analyzer_names(analyzer) and stats.scored == 0 and stats.scoring_seconds == 0
