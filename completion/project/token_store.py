"""The project's token ids for drafting: workspace files from disk, open documents from the editor.

Files are keyed by their path, so an open document's text replaces the file's saved text
while it is open. An open document is indexed only if the walk of a workspace folder this index
has walked would list it (`workspace.shared_path`): a secret, ignored or outside file the user
opens never reaches another document's drafts. Everything here runs on an indexing thread with its own copy of the
tokenizer (a Rust tokenizer shared between threads can refuse a call that is already in
flight); the store swaps shards in whole, so the model thread reads it without locks.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from completion.drafting.datastore import ProjectStore
from completion.project.files import listed, read_text, shared_path, workspace_files

log = logging.getLogger(__name__)
MAX_FILE_BYTES = 500_000  # larger files are generated or data, not code worth drafting from
MAX_TOKENS = 8_000_000  # about 100 MB of index; files past it are not indexed
BATCH_FILES = 64  # files tokenized per call (the fast tokenizer batches in Rust)


@dataclass(frozen=True)
class IndexReport:
    files: int
    tokens: int
    seconds: float
    nbytes: int


class ProjectIndex:
    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = copy.deepcopy(tokenizer)
        self.store = ProjectStore()
        self._open: dict[str, str] = {}  # open documents' newest text (indexed or not): the editor's, not the disk's
        self._roots: list[str] = []  # the folders index_folder was given: only their files are indexed

    def _tokens(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True).input_ids
        return ids

    def add_root(self, root: str) -> None:
        """From now on the folder's files may be indexed; its open documents that arrived before are indexed now."""
        if (top := os.path.abspath(root)) not in self._roots:
            self._roots.append(top)
            for key, text in self._open.items():
                if key not in self.store:
                    self._share(key, text)

    def index_folder(
        self, root: str, should_stop: Callable[[], bool] | None = None, max_files: int | None = None
    ) -> IndexReport:
        """Read and tokenize the folder's Python files (see `files.python_files` for which)."""
        t0 = time.perf_counter()
        self.add_root(root)
        count = 0
        batch: dict[str, str] = {}
        for path, text in workspace_files(root, max_bytes=MAX_FILE_BYTES, should_stop=should_stop):
            count += self.add_disk_file(batch, str(path), text)
            if (max_files is not None and count + len(batch) >= max_files) or self.full(root):
                break
        count += self.flush(batch)
        return IndexReport(count, self.store.tokens, time.perf_counter() - t0, self.store.nbytes)

    def add_disk_file(self, batch: dict[str, str], path: str, text: str) -> int:
        """Queue a file read from disk in `batch`, tokenized BATCH_FILES at a time; returns the files indexed.
        The editor's text of an open document wins over the disk's."""
        if path not in self.store and path not in self._open:
            batch[path] = text
        return self.flush(batch) if len(batch) >= BATCH_FILES else 0

    def flush(self, batch: dict[str, str]) -> int:
        """Tokenize and index what `batch` holds; returns how many files."""
        added = self._add(batch)
        batch.clear()
        return added

    def full(self, root: str) -> bool:
        if self.store.tokens < MAX_TOKENS:
            return False
        log.warning("project index full at %d tokens; the rest of %s is not indexed", MAX_TOKENS, root)
        return True

    def _add(self, texts: dict[str, str]) -> int:
        if texts:
            self.store.update_many(dict(zip(texts, self._tokens(list(texts.values())), strict=True)))
        return len(texts)

    def update_document(self, key: str, text: str) -> None:
        """An open document's current text (`key`: its path, or its URI when it has none): indexed in place of
        the saved file if it may be shared, else out of the index (with the saved file) while it is open."""
        self._open[key] = text
        self._share(key, text)

    def _share(self, key: str, text: str) -> None:
        if shared_path(key, text, self._roots, max_bytes=MAX_FILE_BYTES) is not None:
            self.store.update(key, self._tokens([text])[0])
        elif key in self.store:
            self.store.remove(key)

    def files_changed(self, paths: Iterable[str], roots: Sequence[str]) -> int:
        """Re-read files the editor reports created, changed or deleted on disk; returns how many changed.

        Open documents are left alone (the editor's text is newer). The walk's rules decide again,
        for these paths only, whether each may be indexed (a new .gitignore line, a file grown past the limit).
        """
        changed = 0
        for path in set(paths) - self._open.keys():
            text = read_text(Path(path), MAX_FILE_BYTES) if listed(path, roots) else None
            if text is not None:
                changed += self._add({path: text})
            elif path in self.store:
                self.store.remove(path)
                changed += 1
        return changed

    def document_closed(self, key: str, roots: Sequence[str]) -> None:
        """Back to the saved file, or out of the index if there is none that may be indexed."""
        self._open.pop(key, None)
        self.files_changed([key], roots)
