"""Which workspace files the engine may read: .gitignore, symlinks, size, binary and secret filters, skipped
folders, stopping, unreadable entries (completion/project/files.py), the same rules for open documents
(`shared_path`), and the context index walking with it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from completion.project.files import looks_private, python_files, read_text, shared_path
from completion.project.snippets import SnippetIndex

CODE = "def helper(value):\n    return value\n"


def make(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def listed(root: Path, max_bytes: int = 10_000, should_stop: Callable[[], bool] | None = None) -> list[str]:
    paths = list(python_files(root, max_bytes=max_bytes, should_stop=should_stop))
    assert all(p.is_absolute() for p in paths)
    return [p.relative_to(root).as_posix() for p in paths]


def symlink(link: Path, target: Path) -> None:
    try:
        link.symlink_to(target, target_is_directory=target.is_dir())
    except OSError:  # Windows without the symlink privilege
        pytest.skip("cannot create symlinks here")


def test_only_py_files_sorted_with_a_folders_files_before_its_subfolders(tmp_path: Path) -> None:
    make(tmp_path, {n: CODE for n in ("b.py", "a.py", "z/y.py", "z/a/x.py", "c/d.py", "stub.pyi", "README.md")})
    assert listed(tmp_path) == ["a.py", "b.py", "c/d.py", "z/y.py", "z/a/x.py"]
    assert listed(tmp_path / "missing") == []


def test_nested_gitignore_patterns_are_relative_to_their_folder(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".gitignore": "# comment\n/top_only.py\n*_pb2.py\n",
            "sub/.gitignore": "local.py\n/anchored.py\n",
            **{n: CODE for n in ("top_only.py", "local.py", "anchored.py", "api_pb2.py")},
            **{f"sub/{n}": CODE for n in ("top_only.py", "local.py", "anchored.py", "api_pb2.py", "kept.py")},
            **{f"sub/deeper/{n}": CODE for n in ("local.py", "anchored.py")},
        },
    )
    assert listed(tmp_path) == [
        "anchored.py",  # sub's patterns say nothing about the root
        "local.py",
        "sub/kept.py",
        "sub/top_only.py",  # "/top_only.py" is anchored to the root's folder
        "sub/deeper/anchored.py",  # "/anchored.py" is anchored to sub/
    ]


def test_negation_and_precedence(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".gitignore": "gen_*.py\n!gen_keep.py\nout/*\n!out/keep.py\n",
            ".git/info/exclude": "scratch.py\nnotes.py\n",
            "pkg/.gitignore": "!gen_sub.py\n",  # a deeper file overrides the root's
            **{n: CODE for n in ("gen_a.py", "gen_keep.py", "scratch.py", "notes.py", "out/keep.py", "out/other.py")},
            **{f"pkg/{n}": CODE for n in ("gen_sub.py", "gen_b.py")},
        },
    )
    assert listed(tmp_path) == ["gen_keep.py", "out/keep.py", "pkg/gen_sub.py"]
    (tmp_path / ".gitignore").write_text("!notes.py\n")  # .gitignore outranks .git/info/exclude
    assert "notes.py" in listed(tmp_path) and "scratch.py" not in listed(tmp_path)


def test_an_ignored_folder_is_not_entered(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".gitignore": "generated/\nlogs\n",
            "generated/.gitignore": "!*.py\n",  # never read: git does not re-include inside an excluded folder
            "generated/model.py": CODE,
            "logs/run.py": CODE,
            "src/logs/deep.py": CODE,  # unanchored: any folder of that name
            "src/app.py": CODE,
        },
    )
    polls = 0

    def never() -> bool:
        nonlocal polls
        polls += 1
        return False

    assert listed(tmp_path, should_stop=never) == ["src/app.py"]
    assert polls == 2  # .gitignore and src/app.py: nothing under the ignored folders was looked at


def test_unparsable_gitignore_lines_are_dropped_not_fatal(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "!\n[z-a].py\nskip.py\n", "skip.py": CODE, "keep.py": CODE})
    assert listed(tmp_path) == ["keep.py"]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = make(tmp_path / "outside", {"secret.py": CODE, "pkg/mod.py": CODE})
    root = make(tmp_path / "root", {"real.py": CODE})
    symlink(root / "linked_dir", outside)
    symlink(root / "linked_pkg", outside / "pkg")
    symlink(root / "escape.py", outside / "secret.py")
    symlink(root / "alias.py", root / "real.py")  # inside the root: its target is listed on its own
    assert listed(root) == ["real.py"]
    assert read_text(root / "escape.py", 10_000) is None and read_text(root / "real.py", 10_000) == CODE


def test_size_limit_is_inclusive(tmp_path: Path) -> None:
    make(tmp_path, {"fits.py": "x" * 100, "over.py": "x" * 101, "empty.py": ""})
    assert listed(tmp_path, max_bytes=100) == ["empty.py", "fits.py"]
    with pytest.raises(ValueError, match="max_bytes"):
        python_files(tmp_path, max_bytes=-1)


def test_binary_files_are_skipped(tmp_path: Path) -> None:
    late_nul = b"x = 1\n" * 2000 + b"\0"  # the NUL is past the first 8 KiB the walk sniffs
    make(tmp_path, {"blob.py": CODE.encode() + b"\0\x01", "late.py": late_nul, "text.py": CODE})
    assert listed(tmp_path, max_bytes=100_000) == ["late.py", "text.py"]
    assert read_text(tmp_path / "late.py", 100_000) is None  # the reader checks the whole file


@pytest.mark.parametrize(
    "header", ["-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----", "-----BEGIN OPENSSH PRIVATE KEY-----"]
)
def test_private_keys_are_skipped(tmp_path: Path, header: str) -> None:
    make(
        tmp_path,
        {
            "deploy.py": f'KEY = """\n{header}\nMIIEow...\n"""\n',
            "certs.py": 'CERT = """\n-----BEGIN CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\n"""\n',
        },
    )
    assert listed(tmp_path) == ["certs.py"]
    assert read_text(tmp_path / "deploy.py", 10_000) is None


def test_secret_and_hidden_names_are_skipped(tmp_path: Path) -> None:
    make(tmp_path, {n: CODE for n in ("id_rsa.py", "ID_RSA_backup.py", ".env.py", ".hidden.py", "envelope.py")})
    assert listed(tmp_path) == ["envelope.py"]


def test_environment_build_and_hidden_folders_are_skipped(tmp_path: Path) -> None:
    skipped = (".git", ".venv", "venv", "node_modules", "pkg/__pycache__", "lib/site-packages", "build", "dist", ".tox")
    make(tmp_path, {"pkg/mod.py": CODE, **{f"{d}/decoy.py": CODE for d in skipped}})
    assert listed(tmp_path) == ["pkg/mod.py"]


def test_should_stop_is_polled_before_each_file(tmp_path: Path) -> None:
    make(tmp_path, {n: CODE for n in ("a.py", "b.md", "c.py", "sub/d.py")})
    assert listed(tmp_path, should_stop=lambda: True) == []
    polls = 0

    def after_three() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    assert listed(tmp_path, should_stop=after_three) == ["a.py", "c.py"]
    assert polls == 4


def test_unreadable_folders_and_files_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission bits do not stop root (tests may run as root), so the errors are injected."""
    make(tmp_path, {"ok.py": CODE, "locked.py": CODE, "private/mod.py": CODE, ".gitignore": "x.py\n"})
    real_scandir, real_open = os.scandir, os.open

    def scandir(path: os.PathLike[str]) -> object:
        if Path(path).name == "private":
            raise PermissionError(path)
        return real_scandir(path)

    def os_open(path: os.PathLike[str], flags: int) -> int:
        if Path(path).name in {"locked.py", ".gitignore"}:
            raise PermissionError(path)
        return real_open(path, flags)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", os_open)
    assert listed(tmp_path) == ["ok.py"]
    assert read_text(tmp_path / "locked.py", 10_000) is None


def test_read_text(tmp_path: Path) -> None:
    make(tmp_path, {"bom.py": "\ufeff" + CODE, "latin1.py": "# café\n".encode("latin-1"), "big.py": "x" * 101})
    assert read_text(tmp_path / "bom.py", 100) == CODE
    assert read_text(tmp_path / "latin1.py", 100) is None
    assert read_text(tmp_path / "big.py", 100) is None and read_text(tmp_path / "big.py", 101) == "x" * 101
    assert read_text(tmp_path / "missing.py", 100) is None and read_text(tmp_path, 100) is None


def test_context_index_walks_with_these_rules(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "ignored.py\n", "ignored.py": CODE, "used.py": CODE, "sub/deep.py": CODE})
    index = SnippetIndex(max_file_bytes=10_000)
    assert index.index_folder(str(tmp_path)) == 2
    assert {s.path for s in index.snippets("helper value", limit=10)} == {"used.py", "sub/deep.py"}


KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def test_open_documents_are_shared_by_the_walks_rules(tmp_path: Path) -> None:
    outside = make(tmp_path / "outside", {"secret.py": CODE, "pkg/mod.py": CODE})
    root = make(
        tmp_path / "root",
        {
            ".gitignore": "ignored.py\ngen/\n",
            "sub/.gitignore": "local.py\n",
            ".git/info/exclude": "excluded.py\n",
            **{n: CODE for n in ("ok.py", "ignored.py", "excluded.py", "gen/x.py", "sub/local.py", "sub/kept.py")},
            **{n: CODE for n in (".hidden/h.py", ".venv/v.py", "build/b.py", ".h.py", "id_rsa.py", "notes.txt")},
            **{n: CODE for n in (".env", ".env.local", "key.pem", "x.key", "cert.p12", "id_rsa")},
        },
    )
    symlink(root / "escape.py", outside / "secret.py")
    symlink(root / "linked", outside / "pkg")
    other = make(tmp_path / "other", {"two.py": CODE})

    def shared(
        path: Path | str, text: str = CODE, roots: tuple[Path, ...] = (root,), max_bytes: int = 1000
    ) -> str | None:
        return shared_path(str(path), text, [str(r) for r in roots], max_bytes=max_bytes)

    assert shared(root / "ok.py") == "ok.py" and shared(root / "sub" / "kept.py") == "sub/kept.py"
    assert shared(root / "sub" / "new.py") == "sub/new.py"  # a document not saved yet
    assert shared(root / "pkg" / ".." / "ok.py") == "ok.py"
    assert shared(other / "two.py", roots=(root, other)) == "two.py"
    refused = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()] + [root / "linked" / "mod.py"]
    refused = [p for p in refused if p.name not in {"ok.py", "kept.py"}]
    assert [p.name for p in refused if shared(p) is not None] == []
    assert shared(outside / "secret.py") is None and shared(root) is None and shared(root / "ok.py", roots=()) is None
    assert shared("ok.py") is None and shared((root / "ok.py").as_uri()) is None  # a path, absolute
    assert shared(root / "ok.py", CODE + KEY) is None and shared(root / "ok.py", CODE + "\0") is None
    assert shared(root / "ok.py", "x" * 1000) == "ok.py" and shared(root / "ok.py", "x" * 1001) is None
    assert shared(root / "ok.py", "é" * 500) == "ok.py" and shared(root / "ok.py", "é" * 501) is None  # bytes


def test_shared_path_agrees_with_the_walk(tmp_path: Path) -> None:
    """Every .py file of a tree is shared as an open document exactly when the walk lists it."""
    root = make(
        tmp_path,
        {
            ".gitignore": "gen_*.py\n!gen_keep.py\nout/*\n!out/keep.py\n/top.py\n",
            "pkg/.gitignore": "!gen_sub.py\nlocal/\n",
            **{n: CODE for n in ("gen_a.py", "gen_keep.py", "top.py", "out/keep.py", "out/other.py", "a/top.py")},
            **{f"pkg/{n}": CODE for n in ("gen_sub.py", "gen_b.py", "local/l.py", "id_rsa_old.py", "ok.py")},
            "pkg/key.py": KEY,
            "pkg/blob.py": b"x = 1\0",
            "node_modules/n.py": CODE,
        },
    )
    listed_paths = set(python_files(root, max_bytes=1000))
    for path in root.rglob("*.py"):
        text = path.read_bytes().decode()
        assert (shared_path(str(path), text, [str(root)], max_bytes=1000) is not None) == (path in listed_paths), path
    assert {p.relative_to(root).as_posix() for p in listed_paths} == {
        "gen_keep.py",
        "out/keep.py",
        "a/top.py",
        "pkg/gen_sub.py",
        "pkg/ok.py",
    }


def test_looks_private() -> None:
    assert looks_private("id_rsa.py", b"") and looks_private("prod.KEY", b"") and looks_private(".env.test", b"")
    assert looks_private("m.py", KEY.encode()) and looks_private("m.py", b"\0")
    assert not looks_private("m.py", CODE.encode()) and not looks_private("environment.py", b"")
