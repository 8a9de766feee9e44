"""The drafting datastore against brute force: match lengths, project hits across shards and updates."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from completion.drafting.datastore import KEY_TOKENS, MAX_MATCH, ProjectStore, majority_path, match_lengths

# a small alphabet makes repeats (and so matches) common
TOKENS = st.lists(st.integers(0, 4), min_size=0, max_size=60)


def brute_lengths(stream: list[int], tail: list[int]) -> list[int]:
    out = []
    for i in range(len(stream)):
        n = 0
        while n < len(tail) and n <= i and stream[i - n] == tail[-1 - n]:
            n += 1
        out.append(n)
    return out


@given(stream=TOKENS, tail=st.lists(st.integers(0, 4), min_size=1, max_size=MAX_MATCH))
def test_match_lengths_equal_brute_force(stream: list[int], tail: list[int]) -> None:
    assert match_lengths(np.array(stream, dtype=np.int32), np.array(tail, dtype=np.int32)).tolist() == brute_lengths(
        stream, tail
    )


def brute_hits(files: dict[str, list[int]], context: list[int], length: int) -> set[tuple[int, tuple[int, ...]]]:
    """(match, continuation) of the longest matches (at least KEY_TOKENS) that some token follows."""
    tail = context[-MAX_MATCH:]
    found = set()
    for tokens in files.values():
        for i, match in enumerate(brute_lengths(tokens, tail)):
            follow = tuple(tokens[i + 1 : i + 1 + length])
            if match >= KEY_TOKENS and follow:
                found.add((match, follow))
    best = max((m for m, _ in found), default=0)
    return {(m, f) for m, f in found if m == best}


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a.py", "b.py", "c.py", "d.py"]), st.one_of(st.none(), TOKENS)), max_size=8
    ),
    context=st.lists(st.integers(0, 4), min_size=0, max_size=20),
    length=st.integers(1, 6),
)
def test_project_hits_equal_brute_force_through_updates(steps, context: list[int], length: int) -> None:
    store = ProjectStore(shard_tokens=40)  # small shards: files spread over several
    files: dict[str, list[int]] = {}
    for key, tokens in steps:
        if tokens is None:
            store.remove(key)
            files.pop(key, None)
        else:
            store.update(key, tokens)
            files[key] = tokens
    assert len(store) == len(files) and store.tokens == sum(map(len, files.values()))
    hits = store.hits(context, length)
    assert {(h.match, h.continuation) for h in hits} == brute_hits(files, context, length)


def test_no_match_runs_across_files() -> None:
    store = ProjectStore()
    store.update_many({"a.py": [1, 2, 3], "b.py": [4, 5, 6]})
    assert store.hits([1, 2, 3, 4], 3) == [] and store.hits([2, 3, 4, 5], 2) == []


def test_majority_path_follows_the_agreeing_share() -> None:
    runs = [(1, 2, 3), (1, 2, 4), (1, 2, 3), (9,)]
    assert majority_path(runs, 0.6) == [1, 2, 3]  # 3 of 4 agree on 1, 2; then 2 of 3 on 3
    assert majority_path(runs, 0.7) == [1, 2]
    assert majority_path(runs, 0.8) == []
    assert majority_path([], 0.5) == []
