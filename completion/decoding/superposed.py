"""Superposed Decoding (Shen et al., NeurIPS 2024): k drafts for the cost of one forward pass per step.

Each step feeds ONE input vector at the next position of the document's cache: the
superposition x = sum_i g_i E[t_i] of the k drafts' last-token embeddings, weighted by the
drafts' probabilities (g = softmax of their scores; drafts ending in the same token add their
weights). The one output distribution is shared by all drafts: per draft, the processors
(token healing, monitors) run on it with that draft's tokens, the top `tokens_per_draft * k`
tokens are kept and renormalised (temperature `tau`), and each candidate is rescored with the
project's n-gram models (`ngrams.py`, orders 2-4 with backoff to the model's own distribution):

    log p_f(v | draft) = (1 - alpha) log p_tau(v) + alpha log p_ngram(v | draft's last tokens)

The k*n candidate extensions go through `beam.Search`, which keeps the k best (finished drafts,
at the stop rule or end of sequence, aside). On a 2-core CPU a one-vector pass costs what a
greedy step costs, while k real sequences side by side cost 1.9-2.4x per step.

What was chosen here, against the paper's recipe (research notes, drafting.md section 3):
- x by gathering the k embedding rows, not a dense |V|-vector times E (8-20 ms per step here);
  with one draft the input is exactly that token's embedding, so k = 1 is greedy decoding.
- tau = 0.06 and n = 3k tokens per draft (the paper's k=3 setting).
- n-grams counted over the project store (workspace files and open documents), orders 2-4
  with the paper's weights, and backoff so that an unseen context never hard-filters the
  model's best token; hence no delta = 200 penalty path is needed (every token the model
  allows keeps some mass).
- alpha = 0 by default: the drafts are then the best expansions of the best prefixes under the
  superposed inputs, and the n-gram lookups are skipped. The benchmark (`livekv bench drafts
  --alphas ...`) tunes alpha in {0, 0.2, 0.4, 0.54}; see the README for what it measured.
- Finished drafts are ranked by their summed score (not per token): the draft that keeps to
  the argmax keeps a score near zero, so draft 1 tracks greedy.
The superposed positions are cropped off the cache afterwards: the document's cache is left
exactly as found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from completion.decoding.beam import Search, processed_logprobs
from completion.decoding.branches import Branch, DraftArgs
from completion.drafting.ngrams import ORDERS, NgramModel
from completion.live.document import LiveDocument
from completion.model.vocab import Vocabulary

CONTEXT = max(ORDERS) - 1  # tokens of context the n-grams read


@dataclass(frozen=True)
class SuperposedConfig:
    alpha: float = 0.0  # weight of the n-gram models in the interpolated score
    tau: float = 0.06  # temperature of the model's distribution (sharpens the draft weights)
    tokens_per_draft: int = 3  # candidates per draft and step: n = tokens_per_draft * k

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.tokens_per_draft < 1:
            raise ValueError(f"tokens_per_draft must be >= 1, got {self.tokens_per_draft}")


def superposition_weights(tokens: Sequence[int], scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct last tokens and their weights (softmax of the drafts' scores, summed per token)."""
    weights = torch.softmax(scores, dim=0)
    unique, inverse = torch.unique(torch.tensor(list(tokens)), return_inverse=True)
    return unique, torch.zeros(len(unique), dtype=weights.dtype).index_add(0, inverse, weights)


def superpose(
    tokens: Sequence[int], scores: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """x = sum_i g_i E[t_i]: (hidden,), by gathering the rows (never a |V|-long product)."""
    unique, weights = superposition_weights(tokens, scores)
    rows = embed(unique)  # (distinct tokens, hidden)
    return (weights.to(rows)[:, None] * rows).sum(0)


def rescore(
    logprobs: torch.Tensor,
    contexts: Sequence[Sequence[int]],
    n: int,
    config: SuperposedConfig,
    ngrams: NgramModel | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each draft's top-n tokens and their interpolated log scores: (k, n) each.

    `logprobs` (k, vocab) are the processed, tempered log-probabilities; the top n are
    renormalised, then mixed with the n-gram probabilities (skipped when alpha is 0)."""
    top = torch.topk(logprobs, min(n, logprobs.shape[-1]), dim=-1)
    logp = top.values - torch.logsumexp(top.values, dim=-1, keepdim=True)
    if config.alpha == 0 or ngrams is None:
        return top.indices, logp
    probs = torch.exp(logp).double().numpy()
    p_ng = ngrams.interpolate(contexts, top.indices.numpy(), probs)
    with np.errstate(divide="ignore"):
        log_ng = torch.from_numpy(np.log(p_ng)).to(logp.dtype)
    # a token the processors forbid (-inf) stays forbidden; (1 - alpha) * -inf is -inf for alpha < 1
    return top.indices, (1 - config.alpha) * logp + config.alpha * log_ng


@torch.inference_mode()
def decode_superposed(
    live: LiveDocument,
    vocab: Vocabulary,
    args: DraftArgs,
    *,
    ngrams: NgramModel | None = None,
    config: SuperposedConfig = SuperposedConfig(),
) -> list[Branch]:
    """Up to `width` drafts, best first by their interpolated score; [] if cancelled."""
    s = args.setup(live, vocab)
    search = Search(vocab, live.heal, args.stop, s.eos, args.width)
    embed = live.engine.runner.embed_rows
    n = config.tokens_per_draft * args.width
    prompt = live.prompt
    with live.decoding() as (kv, logits):
        for step in range(args.max_tokens):
            logprobs = processed_logprobs(s.chain, search.alive, logits, config.tau)
            contexts = [(prompt[-CONTEXT:] + d)[-CONTEXT:] for d in search.alive]
            ids, scores = rescore(logprobs, contexts, n, config, ngrams)
            total = torch.tensor(search.scores, dtype=scores.dtype)[:, None] + scores  # (k, n)
            candidates = [
                (float(sc), i, int(t))
                for i, (row, toks) in enumerate(zip(total, ids, strict=True))
                for sc, t in zip(row, toks, strict=True)
            ]
            search.step(candidates)
            if search.done() or step == args.max_tokens - 1:
                break
            if s.deadline.cancelled():
                return []
            if s.deadline.expired():
                break
            x = superpose([d[-1] for d in search.alive], torch.tensor(search.scores), embed)
            logits = kv.encode_embeddings(x[None])
    return [] if s.deadline.cancelled() else search.results()
