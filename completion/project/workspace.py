"""The project as the engine sees it: its folders, the open documents, and the two indexes they feed.

One walk per folder feeds both the snippet index (cross-file context) and the token store
(drafting); open documents reach both through the same gate (`files.shared_path`: only what the
walk would list); a file changed on disk is re-checked alone. Walks and document updates run on
the caller's indexing thread (`wake` schedules a drain there), never the model's; without `wake`
(the CLI, benchmarks) documents are indexed at once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from transformers import PreTrainedTokenizerBase

from completion.project.files import workspace_files
from completion.project.snippets import SnippetIndex
from completion.project.token_store import MAX_FILE_BYTES, IndexReport, ProjectIndex


def fs_path(uri: str) -> str | None:
    """The file a `file://` URI names (None for other schemes: untitled buffers and the like)."""
    return unquote(urlparse(uri).path) if uri.startswith("file://") else None


class Workspace:
    def __init__(self) -> None:
        self.roots: list[str] = []  # workspace folders: jedi's projects, and what may be shared
        self.snippets = SnippetIndex()
        self.tokens: ProjectIndex | None = None  # token ids for drafting, once the tokenizer is known
        self.wake: Callable[[], None] | None = None  # schedules `index_documents` on the indexing thread
        self._lock = threading.Lock()
        self._queued: dict[str, str | None] = {}  # open documents' newest text (None: closed), not yet indexed
        self._snippet_texts: dict[str, str] = {}  # the text last given to the snippet index per open document

    def use_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokens = ProjectIndex(tokenizer)

    def root_of(self, path: str | None) -> str | None:
        """The workspace folder holding `path` (the innermost), else the file's own folder."""
        if path is None:
            return None
        inside = [r for r in self.roots if path.startswith(r.rstrip("/") + "/")]
        return max(inside, key=len) if inside else str(Path(path).parent)

    def index_root(
        self, root: str, *, snippets: bool, tokens: bool, should_stop: Callable[[], bool] | None = None
    ) -> IndexReport:
        """Walk the folder once, giving each file to the indexes asked for; what was indexed, in files."""
        t0 = time.perf_counter()
        top = Path(os.path.abspath(root))
        store = self.tokens if tokens else None
        if snippets:
            self.snippets.add_root(root)
        if store is not None:
            store.add_root(root)
        files = 0
        batch: dict[str, str] = {}
        for path, text in workspace_files(top, max_bytes=MAX_FILE_BYTES, should_stop=should_stop):
            if snippets and self.snippets.add_disk_file(top, path, text) and store is None:
                files += 1
            if store is not None:
                files += store.add_disk_file(batch, str(path), text)
                if store.full(root):
                    break
            elif self.snippets.full:  # the walk is lazy: it stops where the only index asked for is full
                break
        if store is not None:
            files += store.flush(batch)
        held = (store.store.tokens, store.store.nbytes) if store is not None else (0, 0)
        return IndexReport(files, held[0], time.perf_counter() - t0, held[1])

    def files_changed(self, paths: list[str]) -> int:
        """Files created, changed or deleted on disk: the token store re-reads these paths only."""
        return 0 if self.tokens is None else self.tokens.files_changed(paths, self.roots)

    def queue_document(self, uri: str, text: str | None) -> None:
        """Record an open document's text (None: closed); the indexing thread takes the newest."""
        with self._lock:
            first = not self._queued
            self._queued[uri] = text
            if text is None:
                self._snippet_texts.pop(uri, None)
        if self.wake is None:
            self.index_documents()
        elif first:
            self.wake()

    def index_documents(self) -> None:
        """Give the queued open documents to the token store (their path when they have one)."""
        with self._lock:
            todo, self._queued = self._queued, {}
        if self.tokens is None:
            return
        for uri, text in todo.items():
            key = fs_path(uri) or uri
            if text is None:
                self.tokens.document_closed(key, self.roots)
            else:
                self.tokens.update_document(key, text)

    def snippets_of(self, uri: str, text: str) -> None:
        """An open document's text for the snippet index (it serves the other documents), once per text."""
        if self._snippet_texts.get(uri) is not text:
            self.snippets.update(uri, text)
            self._snippet_texts[uri] = text
