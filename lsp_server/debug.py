"""`livekv/documentState`: what the server holds for a document, for tests and debugging."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsp_server.server import LiveKVServer


async def document_state(ls: LiveKVServer, params: object) -> dict[str, object]:
    """`livekv/documentState`: the three copies of a document's text (client mirror, pygls workspace,
    engine) plus cache, project index and last-suggestion facts, for tests and debugging."""
    uri = params["uri"] if isinstance(params, dict) else params.uri  # type: ignore[attr-defined]
    mirror = ls.mirrors.get(uri)
    engine_text = await asyncio.wrap_future(ls.worker.submit(ls.worker.text_of, uri))
    cached_tokens = await asyncio.wrap_future(ls.worker.submit(ls.worker.cached_tokens, uri))
    return {
        "mirror": mirror.text if mirror else None,
        "workspace": ls.workspace.get_text_document(uri).source if mirror else None,
        "engine": engine_text,
        "cachedDocuments": len(ls.worker.store),
        "cacheBytes": ls.worker.store.nbytes,
        "cachedTokens": cached_tokens,
        "projectFiles": sorted(project.store.keys()) if (project := ls.worker.project) else [],
        "lastSuggestion": [{"tokens": d.tokens, "passes": d.passes} for d in last.drafts]
        if (last := ls.worker.last_answer)
        else [],
    }
