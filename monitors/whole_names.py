"""Whole names, not first tokens: which of the names jedi lists the model means.

Greedy decoding under a name mask commits to the best legal first token, which is often the start
of another legal name than the one the model would write whole (it wants `paths`, the member is
`_paths`; `._` starts forty members). So at a resolved point the legal names are spelled as token
paths (one of the best legal first tokens, then the tokenizer's own ids for the rest) and searched
best first on the model: each pass feeds the most probable unfed paths of the trie (a tree in the
cache), scoring their children and, where a name ends, the name ending there (the next token does
not go on with identifier bytes). A path's log-probability only falls as it grows, so once no unfed
path beats the best whole name found, that name is the most probable one. The name monitor then lets
only it be written at that point: the mask's guarantee stays, only a legal name comes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from completion.decoding.decode import TreeSearch
from completion.model.vocab import Vocabulary
from monitors.vocab import is_ident_byte

FIRST_TOKENS = 8  # legal first tokens, best first, that the spellings may start with
MAX_NAMES = 256  # names spelled under each first token (the document's own first, then the shorter)
# Paths fed per pass, and passes at most (the search stops sooner once no unfed path can beat the best
# name). A pass of 2 rows costs about one decode step on the 2-core CPU, 4 rows 1.7, 8 rows 2.8, 16 rows 6
# (CPU time, embedded model, 1k-token cache): rows are not free on a CPU, so the search goes narrow and deep.
WIDTH = 4
PASSES = 4


@dataclass(frozen=True)
class Spelling:
    name: str
    tokens: tuple[int, ...]  # one of the best first tokens, then the tokenizer's ids for the rest
    ended: bool = False  # the first token also writes a byte after the name: it is whole already


def spellings(
    vocab: Vocabulary,
    spelled: dict[str, bytes],
    logprobs: torch.Tensor,
    *,
    lead: int = 0,
    prefer: frozenset[str] = frozenset(),
) -> list[Spelling]:
    """Token paths for the legal names under the best legal first tokens.

    `spelled`: each legal name -> the bytes decoding writes from here to its end; `logprobs`: the next
    token's distribution, everything but the legal tokens at -inf. A token of no more than `lead`
    bytes (the `.` still to come before the name) says nothing about the name and is skipped."""
    finite = int(torch.isfinite(logprobs).sum())
    top = torch.topk(logprobs, min(FIRST_TOKENS, finite)).indices.tolist() if finite else []
    heads: list[tuple[int, str]] = []
    for t in top:
        piece = vocab.pieces[t]
        if len(piece) > lead:
            fits = sorted(
                (n for n, b in spelled.items() if _begins(piece, b)), key=lambda n: (n not in prefer, len(n), n)
            )
            heads += [(t, n) for n in fits[:MAX_NAMES]]
    rests = [spelled[n][len(vocab.pieces[t]) :] for t, n in heads]
    tails = vocab.encode([r for r in rests if r])
    out: list[Spelling] = []
    for (t, n), rest in zip(heads, rests, strict=True):
        tail = tails.pop(0) if rest else []
        if tail is not None:
            out.append(Spelling(n, (t, *tail), ended=len(vocab.pieces[t]) > len(spelled[n])))
    return out


def _begins(piece: bytes, name: bytes) -> bool:
    """Whether a token writes the start of `name`, or all of it and then a byte that ends it."""
    if name.startswith(piece):
        return True
    return piece.startswith(name) and not is_ident_byte(piece[len(name)])


def best_name(
    search: TreeSearch,
    logprobs: torch.Tensor,
    found: Sequence[Spelling],
    ends: torch.Tensor,
    *,
    width: int | None = None,
    passes: int | None = None,
) -> tuple[str | None, float, int]:
    """The most probable whole name among the spellings (None if none was completed in `passes`), its
    log-probability and the passes it took. `logprobs`: the first token's distribution; `ends`: bool
    over the vocabulary, the tokens that do not go on with identifier bytes."""
    width, passes = width or WIDTH, passes or PASSES
    children: dict[tuple[int, ...], set[int]] = {}
    names_at: dict[tuple[int, ...], list[str]] = {}
    done: dict[str, float] = {}
    score: dict[tuple[int, ...], float] = {}
    for s in found:
        if s.ended:
            done[s.name] = max(done.get(s.name, float("-inf")), float(logprobs[s.tokens[0]]))
            continue
        for d in range(1, len(s.tokens)):
            children.setdefault(s.tokens[:d], set()).add(s.tokens[d])
        names_at.setdefault(s.tokens, []).append(s.name)
        score[s.tokens[:1]] = float(logprobs[s.tokens[0]])
    unfed = set(score)
    used = 0
    while unfed and used < passes:
        bar = max(done.values(), default=float("-inf"))
        batch = sorted((p for p in unfed if score[p] > bar), key=lambda p: (-score[p], p))[:width]
        if not batch:
            break  # no unfed path can beat the best whole name
        rows = search.feed(batch)
        used += 1
        for path, row in zip(batch, rows, strict=True):
            unfed.discard(path)
            for name in names_at.get(path, ()):
                whole = score[path] + float(torch.logsumexp(row[ends.to(row.device)], dim=0))
                done[name] = max(done.get(name, float("-inf")), whole)
            for tok in children.get(path, ()):
                child = (*path, tok)
                score[child] = score[path] + float(row[tok])
                unfed.add(child)
    if not done:
        return None, float("-inf"), used
    best = max(done, key=lambda n: (done[n], n))
    return best, done[best], used
