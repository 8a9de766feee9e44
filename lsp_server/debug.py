"""`livekv/documentState`: what the server holds for a document, for tests and debugging.

With `"check": true` it also checks the live cache's invariant on the worker thread (DESIGN.md):
the cached tokens equal the layout of a fresh tokenization of the text, and after a full refresh
the KV equals a full re-encode of those tokens. `livekv bench soak` calls it every few hundred
events; it costs one forward pass over the document's window.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from completion.live.document import fresh_layout, kv_error

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer
    from lsp_server.worker import ModelWorker


async def document_state(ls: LiveKVServer, params: object) -> dict[str, object]:
    """`livekv/documentState`: the three copies of a document's text (client mirror, pygls workspace,
    engine) plus cache, project index and last-suggestion facts, for tests and debugging; with
    `check: true` also the cache invariant's check (`check_cache`)."""
    uri = params["uri"] if isinstance(params, dict) else params.uri  # type: ignore[attr-defined]
    check = params.get("check") is True if isinstance(params, dict) else getattr(params, "check", None) is True
    mirror = ls.mirrors.get(uri)
    engine_text = await asyncio.wrap_future(ls.worker.submit(ls.worker.text_of, uri))
    cache = await asyncio.wrap_future(ls.worker.submit(ls.worker.cache_state, uri))
    state: dict[str, object] = {
        "mirror": mirror.text if mirror else None,
        "workspace": ls.workspace.get_text_document(uri).source if mirror else None,
        "engine": engine_text,
        "cachedDocuments": len(ls.worker.store),
        "cacheBytes": ls.worker.store.nbytes,
        **(cache or {"cachedTokens": 0}),
        "projectFiles": sorted(project.store.keys()) if (project := ls.worker.project) else [],
        "lastSuggestion": [{"tokens": d.tokens, "passes": d.passes} for d in last.drafts]
        if (last := ls.worker.last_answer)
        else [],
    }
    if check:
        state |= await asyncio.wrap_future(ls.worker.submit(check_cache, ls.worker, uri))
    return state


def check_cache(worker: ModelWorker, uri: str) -> dict[str, object]:
    """On the worker thread: whether the document's cached tokens are fresh, then (after re-encoding
    its stale positions, as the idle refresh would) the largest difference from a full re-encode.
    A document without KV (evicted, uncached, unknown) has nothing to check: both are None."""
    if uri not in worker.store or uri in worker.unencoded or not len(worker.store.get(uri).kv):
        evicted = uri in worker.store and uri not in worker.unencoded
        return {"evicted": evicted, "tokensFresh": None, "kvMaxError": None, "staleBefore": 0}
    t0 = time.perf_counter()
    doc = worker.store.get(uri)
    doc.prepare()  # the baselines hold their last prompt until a request prepares the next
    fresh = doc.tokens == fresh_layout(doc)
    stale = doc.stale
    doc.refresh()
    return {
        "evicted": False,
        "tokensFresh": fresh,
        "kvMaxError": kv_error(doc),
        "staleBefore": stale,
        "checkMs": round(1000 * (time.perf_counter() - t0), 1),
    }
