"""Open documents sharing one KV memory budget; the least recently used caches are evicted.

An evicted document keeps its text and tokens; only its KV is dropped, and the next
update re-encodes it. The document being used is never evicted, even if it alone
exceeds the budget (a completion needs its cache).
"""

from __future__ import annotations

from collections import OrderedDict

from completion.live.document import LiveDocument


class DocumentStore:
    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._docs: OrderedDict[str, LiveDocument] = OrderedDict()

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def uris(self) -> list[str]:
        return list(self._docs)

    def documents(self) -> list[LiveDocument]:
        """Every cached document, least recently used first (the order is left as it is)."""
        return list(self._docs.values())

    @property
    def nbytes(self) -> int:
        return sum(d.kv.nbytes for d in self._docs.values())

    def add(self, uri: str, doc: LiveDocument) -> None:
        self._docs[uri] = doc
        self.use(uri)

    def get(self, uri: str) -> LiveDocument:
        """The document for `uri` (KeyError naming it if unknown), marked most recently used."""
        if uri not in self._docs:
            raise KeyError(f"unknown document {uri}")
        return self.use(uri)

    def use(self, uri: str) -> LiveDocument:
        self._docs.move_to_end(uri)
        self.enforce_budget()
        return self._docs[uri]

    def most_recent(self) -> tuple[str, LiveDocument] | None:
        """The most recently used document (without marking it), or None if there is none."""
        if not self._docs:
            return None
        uri = next(reversed(self._docs))
        return uri, self._docs[uri]

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def enforce_budget(self) -> None:
        """Evict least recently used caches until the total fits (never the most recent one)."""
        for uri in list(self._docs)[:-1]:
            if self.nbytes <= self.budget_bytes:
                return
            self._docs[uri].evict()
