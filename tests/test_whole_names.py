"""Whole-name scoring: the tree pass gives the log-probabilities sequential decoding gives, and the
name monitor writes the legal name the model rates best as a whole (checked against scoring each
name by plain sequential passes), never an illegal one."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from completion.decoding.decode import decode, tree_scorer
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from monitors import triggers, whole_names
from monitors.analysis import Analyzer, Query
from monitors.base import MonitorStats, Site
from monitors.names import NameMonitor
from monitors.vocab import NameMasks
from monitors.whole_names import candidates

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


def sequential(live: LiveDocument, generated: list[int], path: list[int]) -> torch.Tensor:
    """The reference: log-probabilities after each token of `path`, fed one pass at a time after `generated`."""
    with live.decoding() as (kv, _):
        for tok in generated:
            kv.encode([tok])
        rows = torch.stack([kv.encode([tok], logits="last") for tok in path])  # type: ignore[misc]
    return torch.log_softmax(rows.float(), dim=-1)


@torch.inference_mode()
def test_the_tree_pass_matches_sequential_passes_and_leaves_the_cache(engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, "def total(items):\n    return sum(item.")
    generated = vocab.encode(b"pri")
    assert generated
    paths = [vocab.encode(b"price_total"), vocab.encode(b"price"), vocab.encode(b"quantity_sold")]
    assert all(paths)
    with live.decoding() as (kv, _):
        prompt_len = len(kv)
        kv.encode([*generated, *vocab.encode(b"ahead")])  # drafted tokens ahead: the tree must not see them
        before = len(kv)
        keys = kv.keys[:, :, :before].clone()
        got = tree_scorer(kv, prompt_len)(generated, paths)  # type: ignore[arg-type]
        assert len(kv) == before and torch.equal(kv.keys[:, :, :before], keys)
    for path, rows in zip(paths, got, strict=True):
        torch.testing.assert_close(rows, sequential(live, generated, path), atol=2e-4, rtol=1e-4)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_candidates_start_with_the_best_first_tokens_and_fit_the_node_budget(vocab, masks, seed: int) -> None:
    names = ("append", "appendleft", "apply", "count", "clear", "copy", "extend", "index", "insert", "pop")
    spelled = {n: n.encode() for n in names}
    legal = masks.mask(names)
    assert legal is not None
    scores = torch.randn(vocab.size, generator=torch.Generator().manual_seed(seed))
    logprobs = torch.log_softmax(scores.masked_fill(~torch.from_numpy(legal), float("-inf")), dim=-1)
    found = candidates(vocab, spelled, logprobs, limit=6)
    assert found
    tops = [vocab.pieces[t] for t in torch.topk(logprobs, whole_names.FIRST_TOKENS).indices.tolist()]
    for c in found:
        assert vocab.decode(c.tokens) == spelled[c.name]
        assert any(spelled[c.name].startswith(p) or p.startswith(spelled[c.name]) for p in tops)
    firsts = [float(logprobs[c.tokens[0]]) for c in found]
    assert firsts == sorted(firsts, reverse=True)
    assert len({tuple(c.tokens[: d + 1]) for c in found for d in range(len(c.tokens))}) <= 6


def whole_name_score(live: LiveDocument, vocab: Vocabulary, masks: NameMasks, first: torch.Tensor, name: str) -> float:
    """What the monitor should maximise: the healed text then the name, and the name ending there."""
    tokens = vocab.encode((live.heal + name).encode())
    assert tokens
    rows = sequential(live, [], tokens)
    total = float(first[tokens[0]]) + sum(float(rows[i, t]) for i, t in enumerate(tokens[1:]))
    return total + float(torch.logsumexp(rows[-1][masks.name_ends], dim=0))


def monitored(vocab, masks, analyzer, live: LiveDocument, text: str, stats: MonitorStats, whole: bool) -> str:
    site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
    monitor = NameMonitor(vocab, masks, analyzer, site, [triggers.member], timeout=5.0, whole_names=whole, stats=stats)
    out = decode(live, vocab, max_tokens=12, processors=[monitor])
    return out.text[: _IDENT.match(out.text).end()]  # type: ignore[union-attr]


def test_the_monitor_writes_the_legal_name_best_as_a_whole(engine, vocab, masks, analyzer, monkeypatch) -> None:
    monkeypatch.setattr(whole_names, "FIRST_TOKENS", 64)  # every legal name is scored: the argmax is exact
    monkeypatch.setattr(whole_names, "MAX_NODES", 64)
    live = LiveDocument(engine, ACCT)
    assert live.heal == "."  # healing backs up over the dot: the names are scored with it
    first = torch.log_softmax(live.prompt_logits().float(), dim=-1)
    legal = analyzer_names(analyzer)
    stats = MonitorStats()
    got = monitored(vocab, masks, analyzer, live, ACCT, stats, whole=True)
    spelled_ok = [n for n in legal if vocab.encode((live.heal + n).encode())]
    best = max(spelled_ok, key=lambda n: whole_name_score(live, vocab, masks, first, n))
    assert got == best and got in legal
    assert stats.scored == 1 and stats.scoring_seconds > 0


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
