"""The project index: which files it holds and when, as the server drives it."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerBase

from completion.project.token_store import ProjectIndex

LEDGER = "class Ledger:\n    def total(self):\n        return sum(self.entries)\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "ledger.py").write_text(LEDGER)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("def helper():\n    return 42\n")
    (tmp_path / ".gitignore").write_text("build_out/\n")
    (tmp_path / "build_out").mkdir()
    (tmp_path / "build_out" / "gen.py").write_text("X = 1\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    return tmp_path


def names(index: ProjectIndex) -> set[str]:
    return {Path(k).name for k in index.store.keys()}


def test_index_folder_reads_the_python_files_git_would_keep(tokenizer: PreTrainedTokenizerBase, workspace) -> None:
    index = ProjectIndex(tokenizer)
    report = index.index_folder(str(workspace))
    assert names(index) == {"ledger.py", "util.py"} and report.files == 2
    assert (
        report.tokens
        == index.store.tokens
        == sum(
            len(tokenizer(p.read_text(), add_special_tokens=False).input_ids)
            for p in (workspace / "ledger.py", workspace / "pkg" / "util.py")
        )
    )
    # the file's tokens are there to draft from: its own text continues itself
    tokens = tokenizer(LEDGER, add_special_tokens=False).input_ids
    assert any(h.continuation[0] == tokens[6] for h in index.store.hits(tokens[:6], 4))


def test_an_open_document_overrides_the_saved_file_until_closed(tokenizer, workspace) -> None:
    index = ProjectIndex(tokenizer)
    index.index_folder(str(workspace))
    path = str(workspace / "ledger.py")
    index.update_document(path, "EDITED = True\n")
    edited = tokenizer("EDITED = True\n", add_special_tokens=False).input_ids
    util = tokenizer("def helper():\n    return 42\n", add_special_tokens=False).input_ids
    assert index.store.tokens == len(edited) + len(util)
    index.files_changed([path], [str(workspace)])  # a save event: the editor's text still wins
    before = index.store.tokens
    assert before == len(edited) + len(util)
    index.document_closed(path, [str(workspace)])  # back to the text on disk
    assert index.store.tokens != before and "ledger.py" in names(index)
    untitled = "untitled:Untitled-1"
    index.update_document(untitled, "x = 1\n")
    index.document_closed(untitled, [str(workspace)])
    assert untitled not in index.store


def test_files_changed_on_disk(tokenizer, workspace) -> None:
    index = ProjectIndex(tokenizer)
    index.index_folder(str(workspace))
    new, ignored = workspace / "pkg" / "new.py", workspace / "build_out" / "more.py"
    new.write_text("def new():\n    pass\n")
    ignored.write_text("Y = 2\n")
    assert index.files_changed([str(new), str(ignored)], [str(workspace)]) == 1
    assert names(index) == {"ledger.py", "util.py", "new.py"}
    new.unlink()
    (workspace / ".gitignore").write_text("build_out/\nledger.py\n")  # newly ignored: dropped on its next event
    assert index.files_changed([str(new), str(workspace / "ledger.py")], [str(workspace)]) == 2
    assert names(index) == {"util.py"}


def test_max_files_bounds_the_index(tokenizer, workspace) -> None:
    index = ProjectIndex(tokenizer)
    assert index.index_folder(str(workspace), max_files=1).files == 1 and len(index.store) == 1


KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"


def test_open_documents_the_walk_would_not_list_are_not_indexed(tokenizer, workspace, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    index = ProjectIndex(tokenizer)
    index.index_folder(str(workspace))
    for path in (
        workspace / ".env",
        workspace / "id_rsa.py",
        workspace / "build_out" / "open.py",  # gitignored folder
        workspace / ".venv" / "lib.py",
        outside / "elsewhere.py",
    ):
        index.update_document(str(path), "SECRET_MARKER = 1\n")
        assert str(path) not in index.store, path
    index.update_document("untitled:Untitled-1", "SECRET_MARKER = 1\n")  # no file: no workspace folder holds it
    assert "untitled:Untitled-1" not in index.store
    ledger = str(workspace / "ledger.py")
    index.update_document(ledger, LEDGER + KEY)  # a key pasted in: out, and the saved copy with it
    assert ledger not in index.store and names(index) == {"util.py"}
    index.index_folder(str(workspace))  # a walk does not bring the saved copy back while the document is open
    assert ledger not in index.store
    index.update_document(ledger, LEDGER)
    assert ledger in index.store
    index.document_closed(str(workspace / "id_rsa.py"), [str(workspace)])
    assert names(index) == {"ledger.py", "util.py"}


def test_open_documents_wait_for_their_folder(tokenizer, workspace) -> None:
    """A document opened before its workspace folder is walked is indexed by that walk, not refused for good."""
    index = ProjectIndex(tokenizer)
    path = str(workspace / "pkg" / "new.py")
    index.update_document(path, "def fresh():\n    pass\n")
    index.update_document(str(workspace / ".env"), "TOKEN = 1\n")
    assert len(index.store) == 0
    index.index_folder(str(workspace))
    assert names(index) == {"ledger.py", "util.py", "new.py"}
