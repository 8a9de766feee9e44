"""The workspace files a completion engine may read: the one folder walk of the code base.

Whatever is read here can end up in a prompt, so the walk keeps to the project's own source:
- only `*.py`; not `.pyi`, whose stubs repeat the signatures of the module next to them;
- no hidden files or folders, no environments or build output (`_SKIP_DIRS`);
- no path ignored by the root's or a nested `.gitignore` or by `.git/info/exclude`, with git's precedence (a
  folder's patterns are relative to it; a deeper file overrides a shallower one; an ignored folder is not entered,
  so nothing inside it can be re-included). The git index is not read: a tracked file that matches is skipped too;
- no symlinks at all, to files or folders, wherever they point: the one rule that no `..` or retargeted link can
  get around, and a link to a file inside the workspace loses nothing, since its target is listed on its own;
- no file over `max_bytes`, named like a secret, or with a NUL byte or a private-key header in its first 8 KiB.
A folder or file that cannot be read is skipped; nothing here raises for what is on disk.

`shared_path` applies the same rules to an open document (the editor's text, which may not be saved), so that
a document the walk would not list never reaches another document's prompt or drafts; `looks_private` lends the
name and content rules to readers that walk on their own (jedi).
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

_SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", "site-packages", "build", "dist"})
# Checked by name whatever the suffix rule says, so that widening it cannot let these in.
_SECRET_NAMES = (".env*", "*.pem", "*.key", "id_rsa*", "*.p12")
_SNIFF_BYTES = 8192
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")  # RSA, EC, OPENSSH, ENCRYPTED, PGP ...
# O_NOFOLLOW: a file swapped for a symlink after the walk saw it is still not followed out of the workspace.
# O_NONBLOCK: nor does a file swapped for a FIFO hang the reader. O_BINARY: no newline translation on Windows.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)

# The ignore files in force in a folder, shallowest first: (their folder relative to the root, "" or "a/b/", spec).
_Rules = tuple[tuple[str, GitIgnoreSpec], ...]


def python_files(root: str | Path, *, max_bytes: int, should_stop: Callable[[], bool] | None = None) -> Iterator[Path]:
    """The readable .py files under `root` as absolute paths: by name, a folder's files before its subfolders, depth
    first. Lazy, so a caller that has enough stops the walk; `should_stop` is polled before each file looked at."""
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    top = Path(os.path.abspath(root))
    return _walk(top, _with_ignore_file((), "", top / ".git" / "info" / "exclude"), max_bytes, should_stop)


def workspace_files(
    root: str | Path, *, max_bytes: int, should_stop: Callable[[], bool] | None = None
) -> Iterator[tuple[Path, str]]:
    """The walk's files with their text (those `read_text` refuses left out): what every index reads."""
    for path in python_files(root, max_bytes=max_bytes, should_stop=should_stop):
        if (text := read_text(path, max_bytes)) is not None:
            yield path, text


def listed(path: str, roots: Iterable[str]) -> bool:
    """Whether the walk of one of `roots` would list `path`, its content aside: a file changed on disk is
    judged alone, without walking the folders again."""
    target = Path(os.path.abspath(path))
    return any(_listed(Path(os.path.abspath(root)), target) is not None for root in roots)


def read_text(path: Path, max_bytes: int) -> str | None:
    """The file's text by the rules of `python_files`, applied to the whole file rather than its first 8 KiB; None if
    it is not a regular file (a symlink is refused), is over `max_bytes`, binary, holds a private key, is not UTF-8,
    or cannot be read."""
    data = _read(path, max_bytes + 1)
    if data is None or len(data) > max_bytes or not _allowed(data):
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def shared_path(path: str, text: str, roots: Iterable[str], *, max_bytes: int) -> str | None:
    """Where an open document may be shared with other documents' prompts and drafts: its path relative to the
    first of `roots` whose walk would list it ("a/b.py"), else None. `path` is judged as `python_files` judges a
    file (a .py file inside the root under no skipped, hidden or ignored folder, not ignored, not named like a
    secret, reached through no symlink; a file not saved yet by its name alone) and `text`, the editor's, as
    `read_text` judges the file's content (size, NUL byte, private key)."""
    data = text.encode("utf-8", "surrogatepass")
    if not os.path.isabs(path) or len(data) > max_bytes or not _allowed(data):
        return None
    for root in roots:
        rel = _listed(Path(os.path.abspath(root)), Path(os.path.abspath(path)))
        if rel is not None:
            return rel
    return None


def looks_private(name: str, data: bytes) -> bool:
    """Whether a file of that name and content must never reach a prompt: named like a secret, binary, or holding
    a private key."""
    return _secret_name(name) or not _allowed(data)


def _listed(top: Path, path: Path) -> str | None:
    """`path` relative to `top` if the walk of `top` would list it (its content aside), else None."""
    try:
        *folders, name = path.relative_to(top).parts
    except ValueError:  # outside top, or top itself
        return None
    rules = _with_ignore_file((), "", top / ".git" / "info" / "exclude")
    folder, rel = top, ""
    for part in folders:
        rules = _with_ignore_file(rules, rel, folder / ".gitignore")
        folder = folder / part
        if not _folder_wanted(part, rel, rules) or os.path.islink(folder):
            return None
        rel += part + "/"
    rules = _with_ignore_file(rules, rel, folder / ".gitignore")
    if not _name_wanted(name, rel, rules):
        return None
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:  # a new document, not saved yet
        return rel + name
    except OSError:
        return None
    return rel + name if stat.S_ISREG(mode) else None


def _walk(top: Path, rules: _Rules, max_bytes: int, should_stop: Callable[[], bool] | None) -> Iterator[Path]:
    stack = [(top, "", rules)]  # (folder, its path relative to top: "" or "a/b/", ignore rules of its parent)
    while stack:
        folder, rel, rules = stack.pop()
        rules = _with_ignore_file(rules, rel, folder / ".gitignore")
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[tuple[Path, str, _Rules]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if _folder_wanted(entry.name, rel, rules):
                    subdirs.append((folder / entry.name, f"{rel}{entry.name}/", rules))
                continue
            if should_stop is not None and should_stop():
                return
            if _wanted(entry, rel, rules, max_bytes):
                yield folder / entry.name
        stack.extend(reversed(subdirs))


def _folder_wanted(name: str, rel: str, rules: _Rules) -> bool:
    """Whether the walk enters folder `name` of the folder `rel`."""
    return not (name in _SKIP_DIRS or name.startswith(".") or _ignored(rules, f"{rel}{name}/"))


def _name_wanted(name: str, rel: str, rules: _Rules) -> bool:
    """Whether file `name` of the folder `rel` may be listed, by its name."""
    return name.endswith(".py") and not (name.startswith(".") or _secret_name(name) or _ignored(rules, rel + name))


def _wanted(entry: os.DirEntry[str], rel: str, rules: _Rules, max_bytes: int) -> bool:
    if not _name_wanted(entry.name, rel, rules):
        return False
    try:
        if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_size > max_bytes:
            return False
    except OSError:
        return False
    head = _read(Path(entry.path), _SNIFF_BYTES)
    return head is not None and _allowed(head)


def _secret_name(name: str) -> bool:
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, pattern) for pattern in _SECRET_NAMES)


def _allowed(data: bytes) -> bool:
    """Text (no NUL byte) without a private key in it."""
    return b"\0" not in data and _PRIVATE_KEY.search(data) is None


def _read(path: Path, size: int) -> bytes | None:
    """Up to `size` bytes of a regular file, not through a symlink; None if there is no such file to read."""
    try:
        with open(os.open(path, _OPEN_FLAGS), "rb") as f:
            return f.read(size) if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else None
    except OSError:
        return None


def _with_ignore_file(rules: _Rules, rel: str, path: Path) -> _Rules:
    """`rules` plus the patterns of the ignore file at `path`, if there is one. A line git cannot parse is dropped
    (git ignores it too) rather than voiding the file or stopping the walk."""
    data = _read(path, -1)
    if not data:
        return rules
    patterns: list[GitIgnoreSpecPattern] = []
    for line in data.decode("utf-8", "surrogateescape").splitlines():  # os.scandir decodes names the same way
        try:
            patterns.append(GitIgnoreSpecPattern(line))
        except (ValueError, re.error):
            continue
    return (*rules, (rel, GitIgnoreSpec(patterns)))


def _ignored(rules: _Rules, rel: str) -> bool:
    """Whether `rel` (relative to the root; a folder ends in "/") is ignored: the deepest ignore file with a pattern
    that matches decides, and within a file the last matching pattern."""
    for base, spec in reversed(rules):
        include = spec.check_file(rel[len(base) :]).include
        if include is not None:
            return include
    return False
