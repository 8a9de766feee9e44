"""Drafted decoding is greedy decoding: same tokens, same text, same stop, fewer passes.

The drafts here are adversarial on purpose (right guesses, wrong ones, end-of-sequence
inside, longer than the budget, guesses the processors forbid), because the loop must be
exact whatever the drafter proposes. Tiny random model: fast, and its logits have no ties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from completion.decoding.decode import Completion, Sampling, decode
from completion.decoding.stops import stop_at_newline
from completion.drafting.datastore import ProjectStore
from completion.drafting.drafter import DraftConfig, Drafter
from completion.live.document import LiveDocument
from completion.model.engine import Engine
from completion.model.vocab import Vocabulary
from monitors import triggers
from monitors.analysis import Analyzer
from monitors.base import MonitorStats, Site
from monitors.names import NameMonitor
from monitors.vocab import NameMasks

PROJECT = Path(__file__).parent / "fixtures" / "project"
SNIPPETS = [
    "def area(self):\n    return self.width * self.height\n\n",
    "for item in items:\n    total += item.price\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "import os\nimport sys\n\nprint(os.path.join(sys.prefix, 'lib'))\n",
    "values = [1, 2, 3]\nvalues.append(4)\nvalues.app",
]


class ScriptedDrafter(Drafter):
    """Proposes whatever `script(generated, limit)` returns, ignoring the limit it is given."""

    def __init__(self, script: Callable[[list[int], int], list[int]]) -> None:
        super().__init__()
        self.script = script
        self.proposed: list[list[int]] = []

    def propose(self, generated: Sequence[int], limit: int) -> list[int]:
        draft = self.script(list(generated), limit)
        self.proposed.append(draft)
        return draft


def ban_argmax_every_third(generated: list[int], logits: torch.Tensor) -> torch.Tensor:
    """A processor whose mask depends on the prefix: at every third step the model's favourite is banned."""
    if len(generated) % 3 != 1:
        return logits
    out = logits.clone()
    out[int(torch.argmax(logits))] = float("-inf")
    return out


def same(a: Completion, b: Completion) -> None:
    assert (a.tokens, a.text, a.stop) == (b.tokens, b.text, b.stop)


@pytest.fixture(scope="module")
def engine(tiny_engine: Callable[[str], Engine]) -> Engine:
    return tiny_engine("llama")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    snippet=st.sampled_from(SNIPPETS),
    cut=st.floats(0.3, 1.0),
    max_tokens=st.integers(1, 24),
    single_line=st.booleans(),
    with_processor=st.booleans(),
)
def test_any_drafts_give_greedy_output(
    engine, vocab: Vocabulary, data, snippet, cut, max_tokens, single_line, with_processor
) -> None:
    text = snippet[: max(1, int(len(snippet) * cut))]
    live = LiveDocument(engine, text, fim=False)
    eos = engine.tokenizer.eos_token_id
    kwargs = dict(
        max_tokens=max_tokens,
        stop=stop_at_newline if single_line else (lambda s: None),
        processors=[ban_argmax_every_third] if with_processor else [],
    )
    reference = decode(live, vocab, **kwargs)

    def script(generated: list[int], limit: int) -> list[int]:
        right = data.draw(st.integers(0, 8))
        wrong = data.draw(st.lists(st.sampled_from([eos, 13, 198, 1000, 30000]), max_size=3))
        return reference.tokens[len(generated) :][:right] + wrong

    drafter = ScriptedDrafter(script)
    keys = live.kv.dense()[0].clone()
    drafted = decode(live, vocab, drafter=drafter, **kwargs)
    same(drafted, reference)
    assert drafted.passes <= reference.passes
    assert len(live.kv) == len(live.tokens) and torch.equal(live.kv.dense()[0], keys)


def test_right_drafts_save_passes(engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, SNIPPETS[2], fim=False)
    reference = decode(live, vocab, max_tokens=20, stop=lambda s: None)
    drafter = ScriptedDrafter(lambda generated, limit: reference.tokens[len(generated) :][:limit])
    drafted = decode(live, vocab, max_tokens=20, stop=lambda s: None, drafter=drafter)
    same(drafted, reference)
    assert drafted.passes < reference.passes / 2
    assert drafter.stats.accepted_tokens >= 10


def test_sampling_never_drafts(engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, SNIPPETS[0], fim=False)
    drafter = ScriptedDrafter(lambda generated, limit: [1, 2, 3])
    decode(live, vocab, max_tokens=5, sampling=Sampling(temperature=0.8), drafter=drafter)
    assert drafter.proposed == []


def test_mid_identifier_healing_with_drafts(engine, vocab: Vocabulary) -> None:
    text = SNIPPETS[4]  # the cursor is inside `values.app`: the prompt backs up and heals
    live = LiveDocument(engine, text, fim=False)
    assert live.heal
    reference = decode(live, vocab, max_tokens=12)
    drafted = decode(live, vocab, max_tokens=12, drafter=Drafter(ProjectStore()))
    same(drafted, reference)


def test_the_prompt_lookup_takes_the_most_recent_longest_match() -> None:
    drafter = Drafter(config=DraftConfig(successors=False, start_length=4))
    #                  0  1  2  3  4  5  6  7  8  9 10 11 12 13
    drafter.begin([1, 2, 3, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8, 2])
    assert drafter.propose([3], 6) == [4, 5, 6]  # "2 3" twice (3 tokens with the 1 before): a short match, 3 tokens
    # "2 3 4 5 6 7" once: a long match drafts the current draft length (4), the text decoded so far included
    assert drafter.propose([3, 4, 5, 6, 7], 6) == [8, 2, 3, 4]
    assert drafter.propose([42], 6) == []  # nothing matches
    assert drafter.stats.local == 2 and drafter.stats.proposed_tokens == 7


def test_the_real_drafter_gives_greedy_output(engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, SNIPPETS[3] * 3, fim=False)
    reference = decode(live, vocab, max_tokens=40, stop=lambda s: None)
    drafter = Drafter()
    drafted = decode(live, vocab, max_tokens=40, stop=lambda s: None, drafter=drafter)
    same(drafted, reference)
    assert drafter.stats.proposals > 0


def test_project_drafts_come_from_files_not_open(engine, vocab: Vocabulary) -> None:
    live = LiveDocument(engine, "x = 1\n", fim=False)
    reference = decode(live, vocab, max_tokens=16, stop=lambda s: None)
    # a file (not the document) that contains the prompt's end followed by greedy's continuation
    store = ProjectStore()
    store.update("other.py", [5, 6, *live.tokens[-4:], *reference.tokens, 7])
    drafter = Drafter(store)
    drafted = decode(live, vocab, max_tokens=16, stop=lambda s: None, drafter=drafter)
    same(drafted, reference)
    assert drafter.stats.project >= 1 and drafted.passes < reference.passes


def test_drafts_the_monitor_forbids_are_rejected(engine, vocab: Vocabulary, masks: NameMasks) -> None:
    """The draft is what the model writes unconstrained after `acct.`; the member monitor forbids it."""
    text = "from shapes import Account\n\nacct = Account('bob')\nacct."
    analyzer = Analyzer()
    try:
        analyzer.warm_up().result()

        live = LiveDocument(engine, text, fim=False)

        def monitored() -> list[NameMonitor]:
            site = Site(text, len(text), live.heal, str(PROJECT / "main.py"), str(PROJECT))
            return [NameMonitor(vocab, masks, analyzer, site, [triggers.member], stats=MonitorStats(), timeout=5.0)]

        unconstrained = decode(live, vocab, max_tokens=6)
        reference = decode(live, vocab, max_tokens=6, processors=monitored())
        assert reference.tokens != unconstrained.tokens  # the monitor changes the output
        drafter = ScriptedDrafter(lambda generated, limit: unconstrained.tokens[len(generated) :])
        drafted = decode(live, vocab, max_tokens=6, processors=monitored(), drafter=drafter)
        same(drafted, reference)
    finally:
        analyzer.shutdown()


def test_successor_chains_replay_the_model_s_predictions() -> None:
    drafter = Drafter(config=DraftConfig(start_length=4))
    drafter.begin([101, 102, 103])  # no repeats: the prompt lookup has nothing
    assert drafter.propose([7], 5) == []
    drafter.observe([7, 8, 9], [8, 9, 7])  # after 7 the model predicted 8, after 8 9, after 9 7
    assert drafter.propose([7], 5) == [8, 9, 7, 8] and drafter.stats.successors == 1  # length adapts from 4
    assert Drafter(config=DraftConfig(successors=False)).propose([7], 5) == []


def test_draft_length_adapts_to_acceptance() -> None:
    drafter = Drafter()
    start = drafter.length
    drafter.feedback(start, start)
    assert drafter.length == start + 2
    for _ in range(10):
        drafter.feedback(drafter.length, 0)
    assert drafter.length == drafter.config.min_length
    for _ in range(10):
        drafter.feedback(drafter.length, drafter.length)
    assert drafter.length == drafter.config.max_length


@settings(max_examples=60, deadline=None)
@given(
    stream=st.lists(st.integers(0, 5), min_size=2, max_size=60),
    limit=st.integers(1, 12),
    grid=st.integers(0, 8),
)
def test_the_benchmark_s_prompt_lookup_is_transformers_own(stream: list[int], limit: int, grid: int) -> None:
    """The `pld-tuned` baseline proposes what transformers' PromptLookupCandidateGenerator does, at every
    (tokens, max_n) its sweep tries."""
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    from benchmarks.drafting import PLD_GRID, PromptLookup

    tokens, max_n = PLD_GRID[grid % len(PLD_GRID)]
    theirs = PromptLookupCandidateGenerator(
        num_output_tokens=min(tokens, limit), max_matching_ngram_size=max_n, max_length=10_000
    )
    ids = torch.tensor([stream])
    expected = theirs.get_candidates(ids)[0][0, len(stream) :].tolist()
    ours = PromptLookup(tokens, max_n)
    ours.begin(stream[:1])
    assert ours.propose(stream[1:], limit) == expected


def test_drafting_pauses_where_drafts_keep_missing() -> None:
    """After `pause_after` missed drafts only a long prompt match is drafted, for 1, 2, 4, ... passes."""
    config = DraftConfig(pause_after=2, max_pause=4, start_length=3, min_length=3)
    drafter = Drafter(config=config)
    drafter.begin([1, 2, 3, 4, 5, 9, 9, 1, 2, 3])
    drafter.observe([9], [8])  # a successor chain: something to draft when the prompt has nothing
    assert drafter.propose([9], 3) == [8]
    drafter.feedback(1, 0)
    assert drafter.propose([9], 3) == [8]
    drafter.feedback(1, 0)  # second miss in a row: pause for 1 pass
    assert drafter.propose([9], 3) == []
    assert drafter.propose([9], 3) == [8]
    drafter.feedback(1, 0)  # third: pause for 2 passes, in which a long prompt match is still drafted
    assert drafter.propose([4], 3) == [5, 9, 9]  # ...1 2 3 4 matches the prompt's start: 4 tokens
    assert drafter.propose([9], 3) == []
    assert drafter.propose([9], 3) == [8]
    drafter.feedback(1, 1)  # a hit ends the pausing
    assert drafter.propose([9], 3) == [8]
