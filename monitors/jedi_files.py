"""What jedi may read of a project: its own files, never one through a link out of it, never a secret.

jedi follows imports into files it reads itself, wherever a symlink in the project leads
(`ws/evil.py -> /elsewhere/mod.py`: `import evil; evil.` lists the names of /elsewhere/mod.py),
and reads a module holding a private key like any other. Every module it reads from disk goes
through `InferenceState.parse_and_get_code` (opened there, or found and read by its environment
subprocess); `install()` wraps that one method so that a file inside the project folder reads
as an empty module when its real path is outside the folder, its name looks like a secret
(`id_rsa.py`), or its text holds a private key or a NUL byte (`workspace.looks_private`).
An emptied file is parsed afresh and kept in memory only: parso neither pickles it to jedi's
disk cache nor matches it with a parse of the real file that another jedi cached there.

Files outside the project folder (the interpreter's standard library and site-packages) are
read as jedi reads them. Gitignored files inside it are read too: a project's virtual
environment is usually one, and jedi needs it; only names from them reach a suggestion.
"""

from __future__ import annotations

import os
from typing import Any

from jedi.file_io import FileIO
from jedi.inference import InferenceState

from completion.project.files import looks_private

_original = InferenceState.parse_and_get_code


def install() -> None:
    """Guard jedi's reads (idempotent)."""
    InferenceState.parse_and_get_code = _parse_and_get_code


def withheld(path: str, data: bytes, project: str) -> bool:
    """Whether jedi must see the file at `path`, holding `data`, as empty, in the project folder `project`."""
    real_project = os.path.realpath(project)
    absolute = os.path.abspath(path)
    if not any(_inside(absolute, top) for top in (os.path.abspath(project), real_project)):
        return False
    return not _inside(os.path.realpath(path), real_project) or looks_private(os.path.basename(path), data)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _parse_and_get_code(
    self: InferenceState,
    code: Any = None,
    path: Any = None,
    use_latest_grammar: bool = False,
    file_io: Any = None,
    **kwargs: Any,
) -> Any:
    """jedi's own method (same signature), with a file from disk judged by `withheld` first."""
    kwargs["use_latest_grammar"] = use_latest_grammar
    if code is not None:  # the document being edited: the user's own text
        return _original(self, code=code, path=path, file_io=file_io, **kwargs)
    if file_io is None:
        file_io = FileIO(path)
    data = file_io.read()
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if file_io.path is not None and withheld(str(file_io.path), raw, str(self.project.path)):
        # diff_cache without cache: the parse is kept in memory (jedi looks its lines up there) and not pickled
        kwargs.update(cache=False, diff_cache=True)
        data = ""
    return _original(self, code=data, path=path, file_io=file_io, **kwargs)
