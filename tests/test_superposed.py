"""Superposed decoding, beam search and the project n-grams (tiny random model: fast, no logit ties).

Exactness where there is one (k = 1 is greedy decoding, for superposition and beam search alike;
one embedding row fed as a vector is the token), the superposition's weights, n-gram counts and
the interpolation on a toy corpus, and the hygiene every draft method owes: distinct well-formed
drafts, processors on every draft, the cache left as found, cancellation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from completion.decoding.beam import Search, decode_beam
from completion.decoding.branches import Branch, DraftArgs
from completion.decoding.decode import TokenHealing, decode
from completion.decoding.stops import LineLimit, stop_at_newline
from completion.decoding.suggest import DRAFT_METHODS, CompletionOptions, inline
from completion.decoding.superposed import (
    SuperposedConfig,
    decode_superposed,
    rescore,
    superpose,
    superposition_weights,
)
from completion.drafting.datastore import ProjectStore
from completion.drafting.ngrams import MODEL_WEIGHT, WEIGHTS, NgramModel
from completion.live.document import LiveDocument
from completion.live.kvcache import KVCache
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary

DOCS = [
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.it",
    "def area(self):\n    return self.width * self.he",
    "import os\nimport sys\n\nprint(os.path.join(sys.prefix, 'lib'))\n",
    "for item in items:\n    total += item.price\n",
]


def never(text: str) -> int | None:
    return None


@pytest.fixture(scope="module")
def engine(tiny_engine: Callable[[str], Engine]) -> Engine:
    return tiny_engine("llama")


def snapshot(live: LiveDocument) -> tuple[list[int], int, torch.Tensor, torch.Tensor]:
    n = len(live.kv)
    return list(live.tokens), n, live.kv.dense()[0].clone(), live.kv.dense()[1].clone()


def assert_as_found(live: LiveDocument, before: tuple[list[int], int, torch.Tensor, torch.Tensor]) -> None:
    tokens, n, keys, values = before
    assert live.tokens == tokens and len(live.kv) == n
    assert torch.equal(live.kv.dense()[0], keys) and torch.equal(live.kv.dense()[1], values)


# -- the runner's embeddings input ---------------------------------------------------------------


def test_an_embedding_row_fed_as_a_vector_is_the_token(engine: Engine) -> None:
    ids = engine.tokenizer(DOCS[0]).input_ids
    by_token, by_vector = KVCache(engine.runner), KVCache(engine.runner)
    by_token.encode(ids[:-1])
    by_vector.encode(ids[:-1])
    want = by_token.encode(ids[-1:], logits="last")
    x = superpose([ids[-1]], torch.tensor([-3.25]), engine.runner.embed_rows)  # one draft: weight exactly 1.0
    assert torch.equal(x, engine.runner.embed_rows(torch.tensor([ids[-1]]))[0])
    got = by_vector.encode_embeddings(x[None])
    assert torch.equal(got, want)
    assert torch.equal(by_vector.keys[:, :, : len(ids)], by_token.keys[:, :, : len(ids)])
    with pytest.raises(ValueError, match="exactly one"):
        engine.runner.forward(by_token.keys, by_token.values, None, torch.tensor([0]), 0)


def test_superposition_weights_sum_to_one_and_duplicates_add() -> None:
    scores = torch.tensor([-0.1, -2.0, -0.7, -5.0])
    tokens, weights = superposition_weights([7, 3, 7, 9], scores)
    expected = torch.softmax(scores, 0)
    assert tokens.tolist() == [3, 7, 9]
    assert torch.allclose(weights, torch.stack([expected[1], expected[0] + expected[2], expected[3]]))
    assert abs(float(weights.sum()) - 1.0) < 1e-6
    embed = torch.randn(12, 5)
    dense = torch.zeros(12).index_add(0, torch.tensor([7, 3, 7, 9]), expected) @ embed  # the paper's |V| @ E
    assert torch.allclose(superpose([7, 3, 7, 9], scores, lambda ids: embed[ids]), dense, atol=1e-6)


# -- superposed decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("stop", [stop_at_newline, never])
def test_one_superposed_draft_is_greedy_decoding(engine: Engine, vocab: Vocabulary, doc: str, stop) -> None:
    live = LiveDocument(engine, doc, fim=False)
    greedy = decode(live, vocab, max_tokens=12, stop=stop)
    (draft,) = decode_superposed(live, vocab, DraftArgs(width=1, max_tokens=12, stop=stop))
    assert (draft.tokens, draft.text) == (greedy.tokens, greedy.text)
    (beam,) = decode_beam(live, vocab, DraftArgs(width=1, max_tokens=12, stop=stop))
    assert (beam.tokens, beam.text) == (greedy.tokens, greedy.text)


def test_first_tokens_are_the_best_first_tokens(engine: Engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, DOCS[1], fim=False)
    assert live.heal == "he"  # the first token must re-create the partial word
    drafts = decode_superposed(live, vocab, DraftArgs(width=4, max_tokens=1, stop=never))
    healed = TokenHealing(vocab, live.heal)([], live.prompt_logits())
    assert [d.tokens[0] for d in drafts] == torch.topk(healed, 4).indices.tolist()


def well_formed(live: LiveDocument, vocab: Vocabulary, drafts: list[Branch], width: int) -> None:
    eos = set(live.engine.tokenizer.all_special_ids)
    assert 1 <= len(drafts) <= width
    assert len({d.text.rstrip() for d in drafts}) == len(drafts)  # distinct as shown
    assert [d.logprob for d in drafts] == sorted((d.logprob for d in drafts), reverse=True)
    for d in drafts:
        assert d.tokens and not eos & set(d.tokens)
        written = vocab.decode(d.tokens).decode("utf-8", errors="replace")
        assert written.startswith(live.heal) and written[len(live.heal) :].startswith(d.text)


@pytest.mark.parametrize("method", ["superposed", "beam"])
@pytest.mark.parametrize("width", [2, 3, 5])
def test_drafts_are_distinct_well_formed_and_leave_the_cache_as_found(
    engine: Engine, vocab: Vocabulary, method: str, width: int
) -> None:
    for doc in DOCS:
        live = LiveDocument(engine, doc, fim=False)
        live.prompt_logits()
        before = snapshot(live)
        run = decode_superposed if method == "superposed" else decode_beam
        drafts = run(live, vocab, DraftArgs(width=width, max_tokens=10, stop=stop_at_newline))
        well_formed(live, vocab, drafts, width)
        assert all("\n" not in d.text for d in drafts)
        assert_as_found(live, before)
        again = run(live, vocab, DraftArgs(width=width, max_tokens=10, stop=stop_at_newline))
        assert again == drafts  # nothing of the first call was left behind


@pytest.mark.parametrize("method", ["superposed", "beam"])
def test_processors_apply_to_every_draft(engine: Engine, vocab: Vocabulary, method: str) -> None:
    live = LiveDocument(engine, DOCS[0], fim=False)
    free = (decode_superposed if method == "superposed" else decode_beam)(
        live, vocab, DraftArgs(width=3, max_tokens=8, stop=never)
    )
    banned = sorted({t for d in free for t in d.tokens[1:]})  # every token but the first ones
    mask = torch.zeros(vocab.size, dtype=torch.bool)
    mask[banned] = True

    def ban(generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(mask[: logits.numel()], float("-inf")) if generated else logits

    run = decode_superposed if method == "superposed" else decode_beam
    drafts = run(live, vocab, DraftArgs(width=3, max_tokens=8, stop=never, processors=[ban]))
    assert drafts and all(not set(d.tokens[1:]) & set(banned) for d in drafts)


@pytest.mark.parametrize("method", ["superposed", "beam"])
def test_cancellation_stops_every_draft(
    engine: Engine, vocab: Vocabulary, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveDocument(engine, DOCS[0], fim=False)
    live.prompt_logits()
    before = snapshot(live)
    polls = 0
    passes = 0
    name = "encode_embeddings" if method == "superposed" else "encode_tree"
    forward = getattr(KVCache, name)

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal passes
        passes += 1
        return forward(*args, **kwargs)

    def stop_after_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2

    monkeypatch.setattr(KVCache, name, counting)  # the decode's cache is a view of the document's
    run = decode_superposed if method == "superposed" else decode_beam
    assert run(live, vocab, DraftArgs(width=3, max_tokens=20, stop=never, should_stop=stop_after_two)) == []
    assert passes == 2  # no pass after the poll that said stop
    assert_as_found(live, before)


# -- n-grams -------------------------------------------------------------------------------------


@pytest.fixture
def toy() -> NgramModel:
    store = ProjectStore()
    store.update_many({"a.py": [1, 2, 3, 1, 2, 4, 1, 2, 3], "b.py": [5, 1, 2, 3]})
    return NgramModel(store)


def test_ngram_counts_on_a_toy_corpus(toy: NgramModel) -> None:
    counts = toy.counts([[9, 1, 2], [7]], np.array([[3, 4, 5], [1, 2, 3]]))
    ctx, grams = counts[1]  # context (2,) and (7,)
    assert ctx.tolist() == [4, 0]  # "2" is followed by something 4 times; 7 never occurs
    assert grams.tolist() == [[3, 1, 0], [0, 0, 0]]
    ctx, grams = counts[2]  # (1, 2) and, too short, nothing
    assert ctx.tolist() == [4, 0] and grams.tolist() == [[3, 1, 0], [0, 0, 0]]
    ctx, grams = counts[3]  # (9, 1, 2): unseen
    assert ctx.tolist() == [0, 0] and grams.tolist() == [[0, 0, 0], [0, 0, 0]]
    # nothing runs across a file boundary: "3 | 5" is not a bigram
    assert toy.counts([[3]], np.array([[5, 1]]))[1][1].tolist() == [[0, 1]]


def test_interpolation_backs_off_to_the_model(toy: NgramModel) -> None:
    model = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    p = toy.interpolate([[9, 1, 2], [8, 7]], np.array([[3, 4, 5], [3, 4, 5]]), model)
    seen = WEIGHTS[2] + WEIGHTS[3]  # bigram and trigram contexts seen, the 4-gram's not
    want = (MODEL_WEIGHT * model[0] + (WEIGHTS[2] + WEIGHTS[3]) * np.array([3, 1, 0]) / 4) / (MODEL_WEIGHT + seen)
    assert np.allclose(p[0], want)
    assert p[0, 2] > 0  # never written after "1 2", still allowed: no hard filter
    assert np.allclose(p[1], model[1])  # no context seen at all: the model's own distribution


def test_rescoring_moves_drafts_towards_the_project(toy: NgramModel) -> None:
    logprobs = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0, 2.0, 1.9, 0.0]]), dim=-1)  # the model prefers 3
    ids, plain = rescore(logprobs, [[1, 2]], 2, SuperposedConfig(alpha=0.0), toy)
    assert ids.tolist() == [[3, 4]] and plain[0, 0] > plain[0, 1]
    project = NgramModel(ProjectStore())
    project.store.update("c.py", [1, 2, 4] * 5)  # this project always writes 4 after "1 2"
    ids, mixed = rescore(logprobs, [[1, 2]], 2, SuperposedConfig(alpha=0.54), project)
    assert ids.tolist() == [[3, 4]] and mixed[0, 1] > mixed[0, 0]


def test_superposed_with_ngrams_gives_well_formed_drafts(engine: Engine, vocab: Vocabulary) -> None:
    store = ProjectStore()
    store.update_many({f"f{i}.py": engine.tokenizer(d, add_special_tokens=False).input_ids for i, d in enumerate(DOCS)})
    live = LiveDocument(engine, DOCS[0], fim=False)
    before = snapshot(live)
    drafts = decode_superposed(
        live,
        vocab,
        DraftArgs(width=3, max_tokens=10, stop=stop_at_newline),
        ngrams=NgramModel(store),
        config=SuperposedConfig(0.4),
    )
    well_formed(live, vocab, drafts, 3)
    assert_as_found(live, before)


# -- through suggest.inline ----------------------------------------------------------------------


@pytest.mark.parametrize("method", DRAFT_METHODS)
def test_every_method_gives_distinct_cleaned_drafts(engine: Engine, vocab: Vocabulary, method: str) -> None:
    live = LiveDocument(engine, DOCS[0], fim=False)
    options = CompletionOptions(max_tokens=10, drafts=3, draft_method=method)
    drafts = inline(live, vocab, options)
    assert 1 <= len(drafts) <= 3 and len({d.text for d in drafts}) == len(drafts)
    assert all(d.text and "\n" not in d.text for d in drafts)
    assert inline(live, vocab, options, should_stop=lambda: True) == []


def test_greedy_runs_are_the_branches_one_after_the_other(engine: Engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, DOCS[2], fim=False)
    runs = inline(live, vocab, CompletionOptions(max_tokens=10, drafts=3, draft_method="greedy-runs"))
    branches = inline(live, vocab, CompletionOptions(max_tokens=10, drafts=3, draft_method="branches"))
    assert [d.text for d in runs] == [d.text for d in branches]


def test_a_bad_method_is_refused() -> None:
    with pytest.raises(ValueError, match="draft_method"):
        CompletionOptions(draft_method="nucleus")


# -- the search's bookkeeping --------------------------------------------------------------------


def test_search_keeps_the_best_and_counts_a_text_once(vocab: Vocabulary) -> None:
    ids = {piece: vocab.equal_to(piece.encode())[0] for piece in ("a", "b", "ab", "\n")}
    search = Search(vocab, "", stop_at_newline, eos={0}, width=2)
    # "ab" twice (one token, then two): the second, worse one is dropped
    search.step([(-1.0, 0, ids["a"]), (-0.5, 0, ids["ab"]), (-3.0, 0, ids["b"])])
    assert search.alive == [[ids["ab"]], [ids["a"]]] and search.scores == [-0.5, -1.0]
    search.step([(-1.5, 1, ids["b"]), (-0.6, 0, ids["\n"]), (-2.0, 1, ids["\n"])])
    assert [b.text for b in search.finished] == ["ab", "a"]  # newline: finished, cut before it
    assert search.alive == [[ids["a"], ids["b"]]]  # may still grow past "ab"
    assert not search.done()  # and it scores above the worse finished draft
    assert [b.text for b in search.results()] == ["ab", "a"]  # as it stands it repeats "ab": shown once
    search.step([(-2.5, 0, ids["\n"])])
    assert search.alive == [] and search.done()


def test_line_limit_cuts_after_whole_lines() -> None:
    rule = LineLimit(2)
    assert rule("x = 1\ny = 2") is None  # the second line may still grow
    assert rule("x = 1\ny = 2\nz") == len("x = 1\ny = 2")
