"""Whole names, not first tokens: which of the names jedi lists the model means.

Greedy decoding under a name mask commits to the best legal first token, which is often the start
of another legal name than the one the model would write whole (it wants `paths`, the member is
`_paths`; `get` starts twenty members). So at a resolved point the legal names that begin with one
of the best legal first tokens are spelled in the tokenizer's own tokens and scored by the model in
one tree pass over their trie: the log-probability of the whole name, plus that of the name ending
there (the next token does not go on with identifier bytes). The name monitor then lets only the
best one be written at that point, so the mask's guarantee stays: only a legal name comes out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from completion.decoding.decode import PathScorer
from completion.model.vocab import Vocabulary

FIRST_TOKENS = 8  # legal first tokens, best first, that the scored names may start with
MAX_CANDIDATES = 48  # names spelled in tokens per point (shortest first under each first token)
MAX_NODES = 16  # trie nodes fed in the one pass (up to 16 rows stay in the CPU kernels' registers)


@dataclass(frozen=True)
class Candidate:
    name: str
    tokens: list[int]  # the tokenizer's ids for what decoding writes from here on to the name's end


def candidates(
    vocab: Vocabulary, spelled: dict[str, bytes], logprobs: torch.Tensor, limit: int | None = None
) -> list[Candidate]:
    """The names worth scoring, best first token first, as many as fit in `limit` trie nodes.

    `spelled`: each legal name -> the bytes decoding writes from here to its end; `logprobs`: the
    distribution of the next token with everything but the legal tokens at -inf; `limit`: the trie
    nodes (default MAX_NODES)."""
    limit = MAX_NODES if limit is None else limit
    finite = int(torch.isfinite(logprobs).sum())
    top = torch.topk(logprobs, min(FIRST_TOKENS, finite)).indices.tolist() if finite else []
    pieces = [vocab.pieces[t] for t in top]
    picked: list[str] = []
    for piece in pieces:  # names the best first tokens begin (or end, with the byte after the name)
        fits = [n for n, b in spelled.items() if b.startswith(piece) or piece.startswith(b)]
        picked += sorted((n for n in fits if n not in picked), key=len)
        if len(picked) >= MAX_CANDIDATES:
            break
    found = [Candidate(n, ids) for n in picked[:MAX_CANDIDATES] if (ids := vocab.encode(spelled[n]))]
    found.sort(key=lambda c: -float(logprobs[c.tokens[0]]))  # stable: shorter names first on ties
    out: list[Candidate] = []
    nodes: set[tuple[int, ...]] = set()
    for c in found:
        new = {tuple(c.tokens[: d + 1]) for d in range(len(c.tokens))} - nodes
        if len(nodes) + len(new) <= limit:
            out.append(c)
            nodes |= new
    return out


def name_scores(
    scorer: PathScorer, generated: list[int], logprobs: torch.Tensor, found: Iterable[Candidate], ends: torch.Tensor
) -> dict[str, float]:
    """log P(name's tokens) + log P(the name ends after them), for each candidate, in one pass.

    `ends`: bool over the vocabulary, the tokens that do not continue an identifier."""
    found = list(found)
    rows = scorer(generated, [c.tokens for c in found])
    out: dict[str, float] = {}
    for c, after in zip(found, rows, strict=True):
        total = float(logprobs[c.tokens[0]])
        total += sum(float(after[i, t]) for i, t in enumerate(c.tokens[1:]))
        total += float(torch.logsumexp(after[-1][ends.to(after.device)], dim=0))
        out[c.name] = total
    return out
