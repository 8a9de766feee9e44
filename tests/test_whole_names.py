"""Whole-name search: the tree in the cache gives the log-probabilities sequential decoding gives, the
best-first search finds the most probable whole name (against brute force), and the name monitor
writes the legal name the model rates best as a whole (against the same search on sequential passes)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from completion.decoding.decode import TreeSearch, decode
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from monitors import names as names_module
from monitors import triggers, whole_names
from monitors.analysis import Analyzer, Query
from monitors.base import MonitorStats, Site
from monitors.names import NameMonitor
from monitors.vocab import ident_run
from monitors.whole_names import best_name, searched_names

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
def test_the_tree_search_matches_sequential_passes_and_leaves_the_cache(engine, tokenizer, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, "def total(items):\n    return sum(item.")
    generated, a, b, c = tokenizer(["pri", "price_total", "price", "quantity_sold"], add_special_tokens=False)[
        "input_ids"
    ]
    paths = [tuple(x) for x in (a, b, c)]
    with live.decoding() as (kv, _):
        prompt_len = len(kv)
        ahead = tokenizer.encode("ahead", add_special_tokens=False)
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


def every_spelling(vocab: Vocabulary, name: bytes) -> list[tuple[tuple[int, ...], bool]]:
    """Every token path that writes `name`: (tokens, whether the last token also writes a byte after it)."""
    out: list[tuple[tuple[int, ...], bool]] = []
    for lo, hi in [vocab.span(name)]:
        for i in vocab.sorted_ids[lo:hi].tolist():
            piece = vocab.pieces[i]
            if len(piece) > len(name) and ident_run(piece) == len(name):
                out.append(((i,), True))
    for cut in range(1, len(name) + 1):
        for t in vocab.equal_to(name[:cut]):
            if cut == len(name):
                out.append(((t,), False))
            else:
                out += [((t, *rest), ended) for rest, ended in every_spelling(vocab, name[cut:])]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_search_finds_the_most_probable_whole_name(vocab, masks, monkeypatch, seed: int) -> None:
    """With every branch kept and passes enough, the search's answer is brute force's: the best spelling
    of any legal name, its tokens and its end."""
    monkeypatch.setattr(whole_names, "BRANCHES", 10**6)
    legal = frozenset({"shine", "shin", "dim", "sum"})
    fake = FakeSearch(vocab.size)
    g = torch.Generator().manual_seed(seed)
    mask = masks.mask(legal)
    assert mask is not None
    first = torch.log_softmax(torch.randn(vocab.size, generator=g).masked_fill(~torch.from_numpy(mask), -math.inf), -1)

    def total(tokens: tuple[int, ...], ended: bool) -> float:
        t = float(first[tokens[0]]) + sum(float(fake.row(tokens[:d])[tokens[d]]) for d in range(1, len(tokens)))
        return t if ended else t + float(torch.logsumexp(fake.row(tokens)[masks.name_ends], dim=0))

    truth = {n: max(total(*sp) for sp in every_spelling(vocab, n.encode())) for n in legal}
    best = max(truth, key=truth.__getitem__)
    got, logprob, _ = best_name(fake, first, legal, masks, width=1000, passes=1000)  # type: ignore[arg-type]
    assert got == best and logprob == pytest.approx(truth[best], abs=1e-4)


def test_the_search_stops_at_its_pass_budget(vocab, masks) -> None:
    legal = frozenset({"zorblax_quibble_total", "zorblax_quibble_report"})
    mask = masks.mask(legal)
    assert mask is not None
    first = torch.zeros(vocab.size).masked_fill(~torch.from_numpy(mask), -math.inf)
    fake = FakeSearch(vocab.size)
    assert best_name(fake, first, legal, masks, passes=1) == (None, -math.inf, 1)  # type: ignore[arg-type]


def test_a_lead_alone_says_nothing_about_the_name(vocab, masks) -> None:
    legal = frozenset({"append", "count"})
    logprobs = torch.full((vocab.size,), -math.inf)
    logprobs[vocab.equal_to(b".")] = -0.1
    assert best_name(FakeSearch(vocab.size), logprobs, legal, masks, need=b".", skip=1) == (None, -math.inf, 0)  # type: ignore[arg-type]


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
    monkeypatch.setattr(names_module, "searched_names", lambda names, typed: names)  # dunders too: the random
    live = LiveDocument(engine, ACCT)  # model's `._` starts only dunders and `.o` / `.z` are not tokens
    assert live.heal == "."  # healing backs up over the dot
    legal = analyzer_names(analyzer)
    stats = MonitorStats()
    got = monitored(vocab, masks, analyzer, live, ACCT, stats, whole=True)
    assert got in legal and stats.scored == 1 and stats.scoring_seconds > 0 and stats.scoring_passes >= 1

    def kept(logits: torch.Tensor, lead: bytes) -> torch.Tensor:
        mask = masks.mask(legal, b"", lead)
        return torch.log_softmax(logits.float().masked_fill(~torch.from_numpy(mask), -math.inf), dim=-1)

    root = kept(live.prompt_logits(), b".")
    if len(vocab.pieces[int(torch.argmax(root))]) <= 1:  # the dot alone: the name's own tokens decide
        dot = [int(torch.argmax(root))]
        after = kept(sequential(live, [], dot)[0], b"")
        expected = best_name(SequentialSearch(live, dot), after, legal, masks)  # type: ignore[arg-type]
    else:
        expected = best_name(SequentialSearch(live, []), root, legal, masks, need=b".", skip=1)  # type: ignore[arg-type]
    assert expected[0] == got


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


def test_dunders_are_searched_only_once_written() -> None:
    names = frozenset({"__class__", "__dict__", "_parso_error", "value"})
    assert searched_names(names, b"") == {"_parso_error", "value"}
    assert searched_names(names, b"_") == {"_parso_error", "value"}
    assert searched_names(names, b"__") == names
