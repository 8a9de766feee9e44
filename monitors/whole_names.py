"""Whole names, not first tokens: which of the names jedi lists the model means.

Greedy decoding under a name mask commits to the best legal first token, which is often the start
of another legal name than the one the model would write whole (it wants `paths`, the member is
`_paths`; `._` starts forty members). So at a resolved point the legal names are searched best first
on the model, in its own tokens: each pass feeds the most probable unfed paths (a tree in the cache,
decode.TreeSearch); a fed path's best legal next tokens become new paths, and where the path spells a
whole legal name, the name scores its path plus the name ending there (the next token does not go on
with identifier bytes). A path's log-probability only falls as it grows, so once no unfed path beats
the best whole name found, no deeper one can. The name monitor then lets only that name be written at
the point: the mask's guarantee stays, only a legal name comes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from completion.decoding.decode import TreeSearch
from monitors.vocab import NameMasks, ident_run

# Paths fed per pass, next tokens kept per fed path, and passes at most. A pass of 2 rows costs about one
# decode step on the 2-core CPU, 4 rows 1.7, 8 rows 2.8, 16 rows 6 (CPU time, embedded model, 1k-token
# cache): rows are not free on a CPU, so the search goes narrow and deep.
WIDTH = 4
BRANCHES = 4
PASSES = 4
ROOT_TOKENS = 64  # the root's row is masked for every legal name: the best BRANCHES of the searched are among these
_DUNDER = re.compile(r"__\w+__")


def searched_names(names: frozenset[str], typed: bytes) -> frozenset[str]:
    """The names the search ranks: dunders only once `__` is written. jedi lists `object`'s two dozen on
    every instance; short and common, they win whole-name scores against the members code means
    (`bench monitors`: `__class__` for `_parso_error`; 5 of the 9 points whole names lost to the first token)."""
    return names if typed.startswith(b"__") else frozenset(n for n in names if not _DUNDER.fullmatch(n))


@dataclass
class _Search:
    """The state of one search: paths not fed yet (their spelled bytes and log-probability), whole names."""

    masks: NameMasks
    legal: frozenset[str]
    ends: torch.Tensor  # bool over the vocabulary: the tokens that do not go on with identifier bytes
    unfed: dict[tuple[int, ...], tuple[bytes, float]] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_bytes = {n.encode(): n for n in self.legal}

    def begins_some(self, spelled: bytes) -> bool:
        return any(b.startswith(spelled) for b in self.by_bytes)

    def whole(self, name: bytes, logprob: float) -> None:
        if name in self.by_bytes:
            n = self.by_bytes[name]
            self.done[n] = max(self.done.get(n, float("-inf")), logprob)

    def grow(
        self, path: tuple[int, ...], spelled: bytes, base: float, row: torch.Tensor, need: bytes = b"", skip: int = 0
    ) -> None:
        """The best next tokens after a path (`row`: its next token's log-probabilities) become new paths,
        or whole names. The root's row is the step's own, legal tokens only finite; its tokens must write
        `need` (the certain text: a healed `.`, the healed part of the name), of which the first `skip`
        bytes come before the name."""
        if path:
            allowed = self.masks.mask(self.legal, spelled)
            if allowed is None:
                return
            row = row.masked_fill(~torch.from_numpy(allowed).to(row.device), float("-inf"))
        finite = int(torch.isfinite(row).sum())
        top = torch.topk(row, min(BRANCHES if path else ROOT_TOKENS, finite))
        grown = 0
        for t, lp in zip(top.indices.tolist(), top.values.tolist(), strict=True):
            piece = self.masks.vocab.pieces[t]
            if not piece.startswith(need) or len(piece) <= skip:
                continue  # the lead alone (the `.` still to come) says nothing about the name
            piece = piece[skip:]
            run = ident_run(piece)
            name = spelled + piece[:run]
            if not path and not self.begins_some(name):
                continue  # the root's row is masked for every legal name, not only the searched ones
            if run < len(piece):  # the token ends the name too (`shine(`); a bare end is the end term's
                if run:
                    self.whole(name, base + lp)
            else:
                self.unfed[(*path, t)] = (name, base + lp)
            grown += 1
            if grown == BRANCHES:
                break

    def feed(self, search: TreeSearch, width: int) -> bool:
        """One pass over the most probable unfed paths that can still beat the best whole name."""
        bar = max(self.done.values(), default=float("-inf"))
        batch = sorted((p for p, (_, lp) in self.unfed.items() if lp > bar), key=lambda p: (-self.unfed[p][1], p))
        if not batch:
            return False
        batch = batch[:width]
        for path, row in zip(batch, search.feed(batch), strict=True):
            spelled, base = self.unfed.pop(path)
            self.whole(spelled, base + float(torch.logsumexp(row[self.ends.to(row.device)], dim=0)))
            self.grow(path, spelled, base, row)
        return True


def best_name(
    search: TreeSearch,
    logprobs: torch.Tensor,
    legal: frozenset[str],
    masks: NameMasks,
    *,
    spelled: bytes = b"",
    need: bytes = b"",
    skip: int = 0,
    width: int | None = None,
    passes: int | None = None,
) -> tuple[str | None, float, int]:
    """The most probable whole legal name from here (None if none was completed in `passes`), its
    log-probability and the passes it took.

    `logprobs`: the next token's distribution, legal tokens only finite; `spelled`: the name's bytes
    decoded already; `need`, `skip`: the certain text the next token writes, and how much of it comes
    before the name (a healed `.`)."""
    width, passes = width or WIDTH, passes or PASSES
    state = _Search(masks, legal, masks.name_ends)
    state.grow((), spelled, 0.0, logprobs, need, skip)
    used = 0
    while state.unfed and used < passes and state.feed(search, width):
        used += 1
    if not state.done:
        return None, float("-inf"), used
    best = max(state.done, key=lambda n: (state.done[n], n))
    return best, state.done[best], used
