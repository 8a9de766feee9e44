"""`livekv/documentState`: what the server holds for a document, for tests and debugging.

With `"check": true` it also checks the live cache's invariant on the worker thread (DESIGN.md):
the cached tokens equal the layout of a fresh tokenization of the text, and after re-encoding its
stale entries the KV equals a full re-encode of the tokens it holds (nothing is grown). `livekv bench
soak` calls it every few hundred events; it costs one forward pass over the cached tokens. With
`"sample": N` it checks N cache entries drawn with `"seed"` instead, without refreshing: their first
layer's KV against a fresh encode of their tokens at their positions (`check_positions`; one pass
over N tokens).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer


async def document_state(ls: LiveKVServer, params: object) -> dict[str, object]:
    """`livekv/documentState`: the three copies of a document's text (client mirror, pygls workspace,
    engine) plus cache, project index and last-suggestion facts, for tests and debugging; with
    `check: true` also the cache invariant's check (`check_cache`)."""
    uri = params["uri"] if isinstance(params, dict) else params.uri  # type: ignore[attr-defined]
    check = params.get("check") is True if isinstance(params, dict) else getattr(params, "check", None) is True
    sample = params.get("sample") if isinstance(params, dict) else getattr(params, "sample", None)
    seed = params.get("seed") if isinstance(params, dict) else getattr(params, "seed", None)
    mirror = ls.mirrors.get(uri)
    engine_text = await asyncio.wrap_future(ls.worker.submit(ls.worker.session.text_of, uri))
    cache = await asyncio.wrap_future(ls.worker.submit(ls.worker.session.cache_state, uri))
    state: dict[str, object] = {
        "mirror": mirror.text if mirror else None,
        "workspace": ls.workspace.get_text_document(uri).source if mirror else None,
        "engine": engine_text,
        "cachedDocuments": len(ls.worker.session.store),
        "cacheBytes": ls.worker.session.store.nbytes,
        **(cache or {"cachedTokens": 0}),
        "projectFiles": sorted(project.store.keys()) if (project := ls.worker.session.workspace.tokens) else [],
        "lastSuggestion": [{"tokens": d.tokens, "passes": d.passes} for d in last.drafts]
        if (last := ls.worker.session.last_answer)
        else [],
    }
    if check:
        state |= await asyncio.wrap_future(ls.worker.submit(ls.worker.session.check_cache, uri))
    if isinstance(sample, int) and sample > 0:
        session = ls.worker.session
        state |= await asyncio.wrap_future(
            ls.worker.submit(session.check_positions, uri, sample, seed if isinstance(seed, int) else 0)
        )
    return state
