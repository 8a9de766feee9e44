"""The name masks against a brute-force reference over the real vocabulary (49k byte-level tokens)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from completion.model.vocab import Vocabulary
from monitors.base import add_where, keep_only
from monitors.vocab import NameMasks, is_ident_byte


def consistent(tail: bytes, names: set[bytes]) -> bool:
    """`tail` is a prefix of a name, or a name followed by a non-identifier byte."""
    run = 0
    while run < len(tail) and is_ident_byte(tail[run]):
        run += 1
    if run == len(tail):
        return any(n.startswith(tail) for n in names)
    return tail[:run] in names


def reference(vocab: Vocabulary, names: list[str], partial: bytes, lead: bytes, region: bool) -> np.ndarray:
    legal = {n.encode() for n in names if n}
    out = np.zeros(vocab.size, dtype=bool)
    for i, piece in enumerate(vocab.pieces):
        if not piece:
            out[i] = region  # special tokens: free in a region, never part of a name
        elif lead.startswith(piece):
            out[i] = True  # the lead (or part of it): the name comes with a later token
        elif piece.startswith(lead):
            after = piece[len(lead) :]
            begins_name = is_ident_byte(after[0]) if after else False
            out[i] = consistent(partial + after, legal) if (begins_name or not region) else True
        else:
            out[i] = region
    return out


MEMBERS = ["append", "add_header", "get", "get_all", "get_charset", "items", "__class__", "_private", "x"]


@pytest.mark.parametrize(
    ("partial", "lead", "region"),
    [
        (b"", b"", False),
        (b"get", b"", False),  # a whole name and the prefix of longer ones
        (b"get_", b"", False),
        (b"ap", b"", False),
        (b"", b".", False),  # after a healed `.`
        (b"", b".", True),  # a `.name` token proposed where no dot was written yet
        (b"", b" ", True),  # after `import`, the space still to come
    ],
)
def test_mask_matches_brute_force(
    vocab: Vocabulary, masks: NameMasks, partial: bytes, lead: bytes, region: bool
) -> None:
    mask = masks.mask(MEMBERS, partial, lead, region)
    expected = reference(vocab, MEMBERS, partial, lead, region)
    assert mask is not None
    assert np.array_equal(mask, expected), [vocab.pieces[i] for i in np.flatnonzero(mask ^ expected)[:10]]


_names = st.lists(st.from_regex(r"[a-z_][a-z_0-9]{0,8}", fullmatch=True), min_size=1, max_size=12)


@settings(max_examples=12, deadline=None)
@given(names=_names, cut=st.integers(0, 4), lead=st.sampled_from([b"", b"."]))
def test_random_names_match_brute_force(vocab: Vocabulary, masks: NameMasks, names: list[str], cut: int, lead: bytes):
    partial = names[0].encode()[:cut]
    mask = masks.mask(names, partial, lead)
    expected = reference(vocab, names, partial, lead, region=False)
    if mask is None:  # nothing continues a name: the caller decodes unconstrained
        assert not expected.any() or all(lead.startswith(vocab.pieces[i]) for i in np.flatnonzero(expected))
    else:
        assert np.array_equal(mask, expected)


def test_no_legal_continuation_gives_none(masks: NameMasks) -> None:
    assert masks.mask(MEMBERS, b"zzz") is None


def test_non_ascii_names(vocab: Vocabulary, masks: NameMasks) -> None:
    names = ["größe", "grün"]
    mask = masks.mask(names, b"gr")
    assert mask is not None and np.array_equal(mask, reference(vocab, names, b"gr", b"", False))


def test_keep_only_and_its_one_fallback() -> None:
    logits = torch.tensor([0.5, -1.0, float("-inf"), 2.0])
    kept = keep_only(logits, np.array([True, False, True, False]))
    assert kept is not None and kept.tolist() == [0.5, float("-inf"), float("-inf"), float("-inf")]
    assert logits[1] == -1.0  # a new tensor: the input is never edited
    assert keep_only(logits, np.array([False, False, True, False])) is None  # nothing finite would be left
    assert add_where(logits, np.array([False, True, False, True]), 1.5).tolist() == [0.5, 0.5, float("-inf"), 3.5]
