"""Inline drafts and popup items at the cursor: partial words, stop modes, cache hygiene (tiny model;
two embedded-model checks)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch

from completion.decoding.decode import GREEDY, Processor, Sampling, decode
from completion.decoding.stops import indent_of
from completion.decoding.suggest import CompletionOptions, inline, partial_word_start, popup
from completion.live.document import LiveDocument, TextEdit
from completion.model.engine import Engine
from completion.model.loading import LoadedModel
from completion.model.vocab import Vocabulary

STACK = "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.it"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def never(text: str) -> int | None:
    return None


def snapshot(live: LiveDocument) -> tuple[str, int, list[int], int, torch.Tensor]:
    return live.text, live.cursor, list(live.tokens), len(live.kv), live.kv.dense()[0].clone()


def assert_unchanged(live: LiveDocument, before: tuple[str, int, list[int], int, torch.Tensor]) -> None:
    text, cursor, tokens, kv_len, keys = before
    assert (live.text, live.cursor, live.tokens, len(live.kv)) == (text, cursor, tokens, kv_len)
    assert torch.equal(live.kv.dense()[0], keys)


def scripted(live: LiveDocument, text: str) -> Processor:
    """A processor that makes the model write the healed text, then `text`, then end (an EOS token)."""
    tokenizer = live.engine.tokenizer
    ids = tokenizer(live.heal + text, add_special_tokens=False).input_ids
    end = live.engine.start
    assert end in tokenizer.all_special_ids

    def force(generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(logits, float("-inf"))
        forced[ids[len(generated)] if len(generated) < len(ids) else end] = 0.0
        return forced

    return force


# -- partial_word_start ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = foo_bar", "foo_bar"),
        ("x = _private", "_private"),
        ("self.it", "it"),  # the word after the dot
        ("self.", ""),
        ("x = foo2", "foo2"),
        ("x = 123", ""),  # a number is not a word to complete
        ("f(a, b", "b"),
        ("x = foo ", ""),
        ("value", "value"),  # at the start of the text
        ("def f():\n    ret", "ret"),  # at the start of a line's text
        ("def f():\nret", "ret"),  # at column 0 after a newline
        ("abc\n", ""),  # the cursor at a line start: nothing from the line above
        ("", ""),
    ],
)
def test_partial_word_start(text: str, expected: str) -> None:
    start = partial_word_start(text, len(text))
    assert text[start:] == expected


def test_partial_word_start_in_the_middle_of_a_text() -> None:
    text = "total = sub_total + tax\n"
    cursor = text.index("_total") + 2  # after "sub_t"
    assert partial_word_start(text, cursor) == text.index("sub_total")
    assert partial_word_start(text, text.index(" + ")) == text.index("sub_total")


def test_partial_word_start_with_non_ascii_text_before_the_word() -> None:
    text = "s = 'é' + nom"
    assert text[partial_word_start(text, len(text)) :] == "nom"
    text = "x = é"  # é alone is a Python identifier
    assert partial_word_start(text, len(text)) == text.index("é")


@pytest.mark.parametrize(("text", "expected"), [("x = héllo", "héllo"), ("x = größe", "größe"), ("名前", "名前")])
def test_partial_word_start_of_a_unicode_identifier(text: str, expected: str) -> None:
    assert text[partial_word_start(text, len(text)) :] == expected


# -- CompletionOptions ---------------------------------------------------------------------


def test_completion_options_defaults_and_validation() -> None:
    options = CompletionOptions()
    assert (options.max_tokens, options.multiline, options.drafts, options.sampling) == (48, False, 1, GREEDY)
    CompletionOptions(max_tokens=1, drafts=1, time_budget=None, sampling=Sampling(0.5, 0.9, 3))
    for bad in ({"max_tokens": 0}, {"max_tokens": -5}, {"drafts": 0}):
        with pytest.raises(ValueError, match="max_tokens and drafts"):
            CompletionOptions(**bad)  # type: ignore[arg-type]


# -- inline (tiny model) -------------------------------------------------------------------


@pytest.mark.parametrize("drafts", [1, 3])
def test_inline_single_line_drafts_are_non_empty_distinct_single_lines(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary, drafts: int
) -> None:
    live = LiveDocument(tiny_engine("llama"), STACK, fim=False)
    before = snapshot(live)
    out = inline(live, vocab, CompletionOptions(max_tokens=8, drafts=drafts, time_budget=None))
    assert 1 <= len(out) <= drafts
    assert len({d.text for d in out}) == len(out)
    for d in out:
        assert d.text.strip() and "\n" not in d.text
    assert_unchanged(live, before)


def test_inline_cuts_a_scripted_completion_per_mode(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> None:
    live = LiveDocument(tiny_engine("llama"), "def f(x):\n    y = ", fim=False)
    before = snapshot(live)
    script = scripted(live, "compute(x)\n    return y\nprint(f(1))\n")
    one = inline(live, vocab, CompletionOptions(time_budget=None), processors=[script])
    assert [(d.text, d.stop) for d in one] == [("compute(x)", "rule")]
    block = inline(live, vocab, CompletionOptions(multiline=True, time_budget=None), processors=[script])
    assert [(d.text, d.stop) for d in block] == [("compute(x)\n    return y", "rule")]  # cut at the dedent
    assert_unchanged(live, before)


@pytest.mark.parametrize("multiline", [False, True])
def test_inline_never_returns_an_empty_draft(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary, multiline: bool
) -> None:
    live = LiveDocument(tiny_engine("llama"), "def f(x):\n    y = ", fim=False)
    options = CompletionOptions(multiline=multiline, time_budget=None)
    assert inline(live, vocab, options, processors=[scripted(live, "   \n")]) == []
    assert inline(live, vocab, options, processors=[scripted(live, "")]) == []


def test_inline_cancelled_returns_nothing_and_keeps_the_cache(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary
) -> None:
    live = LiveDocument(tiny_engine("llama"), STACK, fim=False)
    before = snapshot(live)
    for drafts in (1, 3):
        options = CompletionOptions(max_tokens=8, drafts=drafts, time_budget=None)
        assert inline(live, vocab, options, should_stop=lambda: True) == []
    assert_unchanged(live, before)


# -- popup (tiny model) --------------------------------------------------------------------


# A random model right after "self." only picks tokens like ".)" (healing "."): no items to check there.
@pytest.mark.parametrize("text", [STACK, STACK + "ems.app"])
def test_popup_items_extend_the_partial_word(
    tiny_engine: Callable[[str], Engine], vocab: Vocabulary, text: str
) -> None:
    live = LiveDocument(tiny_engine("llama"), text, fim=False)
    before = snapshot(live)
    start = partial_word_start(text, len(text))
    partial = text[start:]
    items = popup(live, vocab, width=6, max_tokens=4)
    assert 1 <= len(items) <= 6
    labels = [i.label for i in items]
    assert len(set(labels)) == len(labels)
    assert all(label.startswith(partial) and IDENTIFIER.fullmatch(label) for label in labels), labels
    assert all(i.start == start for i in items)
    scores = [i.score for i in items]
    assert scores == sorted(scores, reverse=True)
    assert_unchanged(live, before)


def test_popup_cancelled_returns_nothing(tiny_engine: Callable[[str], Engine], vocab: Vocabulary) -> None:
    live = LiveDocument(tiny_engine("llama"), STACK, fim=False)
    assert popup(live, vocab, width=4, max_tokens=4, should_stop=lambda: True) == []


# -- the embedded model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol(embedded: LoadedModel) -> tuple[Engine, Vocabulary]:
    engine = Engine.from_loaded(embedded)
    return engine, Vocabulary(engine.tokenizer, engine.runner.vocab_size)


@pytest.mark.integration
def test_embedded_popup_offers_the_attribute_defined_above(smol: tuple[Engine, Vocabulary]) -> None:
    engine, vocab = smol
    live = LiveDocument(engine, STACK)
    items = popup(live, vocab, width=4)
    assert items and items[0].label == "items", items
    assert items[0].start == STACK.rindex("it")
    live.apply_edits([TextEdit(len(STACK) - 2, len(STACK), "")])  # backspace twice: right after "self."
    items = popup(live, vocab, width=4)
    assert "items" in [i.label for i in items], items
    assert all(i.start == live.cursor for i in items)


@pytest.mark.integration
def test_embedded_multiline_inline_stays_inside_the_block(smol: tuple[Engine, Vocabulary]) -> None:
    engine, vocab = smol
    text = STACK.replace("self.it", "self.items.append(x)\n\n    def is_empty(self):")
    live = LiveDocument(engine, text)
    # Without a stop rule the model writes the body and goes on to the next method.
    raw = decode(live, vocab, max_tokens=24, stop=never).text
    assert any(line.strip() and indent_of(line) <= 4 for line in raw.split("\n")[1:]), raw
    drafts = inline(live, vocab, CompletionOptions(max_tokens=24, multiline=True, time_budget=None))
    assert len(drafts) == 1 and drafts[0].stop == "rule", drafts
    body = drafts[0].text
    assert "\n" in body and raw.startswith(body)
    assert all(indent_of(line) > 4 for line in body.split("\n")[1:] if line.strip()), body
