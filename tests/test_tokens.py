"""Incremental tokenization: after every edit the tokens equal a fresh tokenization.

Run on two tokenizer families: the embedded model's byte-level BPE (GPT-2 style regex,
one character can become several tokens) and a small Metaspace BPE with byte fallback
trained here in-process, so the module is not tied to one pre-tokenizer.
"""

from __future__ import annotations

import inspect
import json.decoder
import string
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from completion.live.tokens import Splice, TokenizedText, fresh_tokenize

SOURCES = [inspect.getsource(m) for m in (textwrap, string, json.decoder, inspect)]
LARGE = inspect.getsource(inspect)[:16384]


@pytest.fixture(scope="session")
def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """SentencePiece-style BPE: spaces become '▁' and start words, unseen characters fall back
    to byte tokens (so an emoji is several tokens here too)."""
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=byte_tokens, show_progress=False)
    tok.train_from_iterator(SOURCES[:2], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="session", params=["smollm2", "metaspace-bpe"])
def tok(request: pytest.FixtureRequest) -> PreTrainedTokenizerBase:
    # The embedded tokenizer comes from conftest's session model, so the suite loads it once.
    name = "tokenizer" if request.param == "smollm2" else "metaspace_tokenizer"
    return request.getfixturevalue(name)


def assert_fresh(doc: TokenizedText, tokenizer: PreTrainedTokenizerBase) -> None:
    ids, offsets = fresh_tokenize(tokenizer, doc.text)
    assert doc.ids == ids
    assert doc.offsets == offsets


def edit_and_check(doc: TokenizedText, tokenizer: PreTrainedTokenizerBase, start: int, end: int, new: str) -> Splice:
    old_ids = list(doc.ids)
    expected_text = doc.text[:start] + new + doc.text[end:]
    splice = doc.apply_edit(start, end, new)
    assert doc.text == expected_text
    assert_fresh(doc, tokenizer)
    assert old_ids[: splice.start] + list(splice.tokens) + old_ids[splice.end :] == doc.ids
    assert splice.delta == len(doc.ids) - len(old_ids)
    return splice


# ---- property test -------------------------------------------------------------------

FRAGMENTS = [
    "def f(x):",
    "return x",
    "self.",
    "(",
    ")",
    "):",
    "[]",
    "{}",
    ", ",
    " = ",
    "==",
    "'",
    '"',
    '"""',
    "# note",
    "import os",
    "1234",
    "0x1F",
    "======",
    "->",
    "<|im_end|>",
    "<|endoftext|>",
]
WHITESPACE = [" ", "  ", "    ", "\t", "\n", "\r\n", "\r", "\n    ", "\r\n\t", "\n\n", " \n", "\xa0", "\u3000"]
UNICODE = ["é", "à", "ñ", "ü", "É", "e\u0301", "\u0301", "中文", "字", "한국어", "😀", "🎉", "👍🏽", "👩\u200d💻", "𝔘"]

inserts = st.one_of(
    st.just(""),
    st.sampled_from(FRAGMENTS),
    st.sampled_from(WHITESPACE),
    st.sampled_from(UNICODE),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    st.lists(st.sampled_from(FRAGMENTS + WHITESPACE + UNICODE), min_size=2, max_size=5).map("".join),
    st.text(st.sampled_from(" \t\n\r()=.:_xéü中😀"), max_size=8),
    # Long pre-tokens (whitespace runs, punctuation runs, identifiers, CJK, emoji) span several
    # tokens, so an edit inside one changes tokens well before the edit point.
    st.tuples(st.sampled_from([" ", "\n", "\t", "=", "_", "ab", "中", "😀", "é"]), st.integers(8, 60)).map(
        lambda run: run[0] * run[1]
    ),
)


@st.composite
def source_slices(draw: st.DrawFn) -> str:
    source = draw(st.sampled_from(SOURCES))
    start = draw(st.integers(0, len(source)))
    return source[start : start + draw(st.integers(0, 2500))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=source_slices(), data=st.data())
def test_random_edits_match_fresh_tokenization(tok: PreTrainedTokenizerBase, text: str, data: st.DataObject) -> None:
    doc = TokenizedText(tok, text)
    assert_fresh(doc, tok)
    last = len(text) // 2
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        # Half the edits land near the previous one, to edit inside what was just inserted.
        near = st.integers(max(0, last - 10), min(len(doc.text), last + 10))
        start = data.draw(st.one_of(st.integers(0, len(doc.text)), near), label="start")
        length = data.draw(st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 80)), label="length")
        end = min(len(doc.text), start + length)
        new = data.draw(inserts, label="insert")
        edit_and_check(doc, tok, start, end, new)
        last = start + len(new)


# ---- classic traps, spelled out ------------------------------------------------------

TRAPS = [
    # (text, start, end, new): whitespace runs merge with the newline and the indentation
    ("if x:\n    y = 1\n", 6, 6, " "),
    ("if x:\n    y = 1\n", 10, 10, "\n"),
    ("a = 1\n    \n    b = 2", 4, 5, ""),
    ("a\n\n\n    b", 2, 3, "  "),
    # CRLF: join and split a \r\n pair
    ("a = 1\r\nb = 2", 6, 6, "x"),
    ("a = 1\rb = 2", 6, 6, "\n"),
    ("a = 1\r\n    b", 5, 6, ""),
    # one pre-token spanning many tokens, edited at its far end
    ("x = " + "=" * 60 + " y", 64, 64, "-"),
    ("value = " + "very_long_identifier_" * 8 + " + 1", 176, 176, "x"),
    ("s = '" + "中文字符" * 20 + "'", 85, 85, "字"),
    # several tokens for one character, edited in the middle of an emoji run
    ("x = '😀😀😀' + 'é'", 7, 7, "🎉"),
    ("x = '😀😀😀'", 6, 7, ""),
    # a special token completed or broken by the edit
    ("text = '<|im_end|'", 17, 17, ">"),
    ("text = '<|im_end|>'", 17, 18, ""),
]


@pytest.mark.parametrize(("text", "start", "end", "new"), TRAPS)
def test_classic_traps(tok: PreTrainedTokenizerBase, text: str, start: int, end: int, new: str) -> None:
    edit_and_check(TokenizedText(tok, text), tok, start, end, new)


# ---- unit tests ----------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (3, 2), (0, 10_000), (10_000, 10_000)])
def test_bad_range_raises_and_changes_nothing(tok: PreTrainedTokenizerBase, start: int, end: int) -> None:
    doc = TokenizedText(tok, "def f(x):\n    return x\n")
    before = (doc.text, list(doc.ids), list(doc.offsets))
    with pytest.raises(ValueError, match=rf"\[{start}, {end}\)"):
        doc.apply_edit(start, end, "y")
    assert (doc.text, doc.ids, doc.offsets) == before


@pytest.mark.parametrize(("start", "end", "new"), [(4, 4, ""), (4, 5, "f"), (0, 0, ""), (23, 23, "")])
def test_no_op_edit_gives_empty_splice(tok: PreTrainedTokenizerBase, start: int, end: int, new: str) -> None:
    doc = TokenizedText(tok, "def f(x):\n    return x\n")
    ids = list(doc.ids)
    splice = doc.apply_edit(start, end, new)
    assert splice.start == splice.end and splice.tokens == () and splice.delta == 0
    assert doc.ids == ids


def test_edits_at_both_ends(tok: PreTrainedTokenizerBase) -> None:
    doc = TokenizedText(tok, "x = compute(a, b)\n")
    edit_and_check(doc, tok, 0, 0, "    ")
    edit_and_check(doc, tok, len(doc.text), len(doc.text), "print(x) 😀")
    edit_and_check(doc, tok, len(doc.text) - 1, len(doc.text), "")
    edit_and_check(doc, tok, 0, 5, "")


def test_empty_document(tok: PreTrainedTokenizerBase) -> None:
    doc = TokenizedText(tok, "")
    assert doc.ids == [] and doc.offsets == [] and doc.token_index_at(0) == 0
    splice = edit_and_check(doc, tok, 0, 0, "import os\n")
    assert (splice.start, splice.end) == (0, 0) and splice.tokens
    splice = edit_and_check(doc, tok, 0, len(doc.text), "")
    assert doc.ids == [] and splice.tokens == ()


def test_splice_delta() -> None:
    assert Splice(3, 5, (7, 8, 9)).delta == 1
    assert Splice(3, 5, ()).delta == -2


def test_token_index_at_counts_tokens_starting_before(tok: PreTrainedTokenizerBase) -> None:
    doc = TokenizedText(tok, "s = 'é😀b'\n")
    for char in range(len(doc.text) + 2):
        assert doc.token_index_at(char) == sum(o < char for o in doc.offsets)


def test_emoji_is_several_tokens_sharing_one_offset(tokenizer: PreTrainedTokenizerBase) -> None:
    # Byte-level BPE: the emoji's four bytes become several tokens, all reported at the
    # emoji's character offset; offsets are non-decreasing, not strictly increasing.
    doc = TokenizedText(tokenizer, "a😀b")
    emoji_tokens = [i for i, o in enumerate(doc.offsets) if o == 1]
    assert len(emoji_tokens) > 1
    assert doc.token_index_at(2) == emoji_tokens[-1] + 1


class _Recording:
    """Forwards to a tokenizer and records the length of every text it is asked to encode."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.lengths: list[int] = []

    def __call__(self, text: str, **kwargs: Any) -> Any:
        self.lengths.append(len(text))
        return self.tokenizer(text, **kwargs)


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("edit", [lambda p: (p, p, "x"), lambda p: (p, p + 1, ""), lambda p: (p, p + 1, "\n")])
def test_one_char_edit_in_large_file_has_small_window(
    tok: PreTrainedTokenizerBase, where: float, edit: Callable[[int], tuple[int, int, str]]
) -> None:
    doc = TokenizedText(tok, LARGE)
    assert len(doc.ids) > 3000
    recorder = _Recording(tok)
    doc.tokenizer = recorder  # type: ignore[assignment]
    splice = edit_and_check(doc, tok, *edit(int(len(LARGE) * where)))
    # A word typed into is re-split: one or two tokens in a real vocabulary, but up to one
    # per syllable in the 1500-token test vocabulary.
    most = 4 if len(tok) > 10_000 else 8
    assert splice.end - splice.start <= most and len(splice.tokens) <= most
    assert sum(recorder.lengths) < 1000, recorder.lengths


def test_special_token_text_in_a_document_is_plain_text(tok: PreTrainedTokenizerBase) -> None:
    """A file that spells out "<|endoftext|>" (tokenizer code, docs) must not end the model's text there."""
    doc = TokenizedText(tok, 'EOS = "<|endoftext|>"\n')
    specials = set(tok.all_special_ids)
    assert not specials & set(doc.ids)
    edit_and_check(doc, tok, 8, 8, "<|im_start|>")
    assert not specials & set(doc.ids)
