"""The project's Python environment, found and read without running it: what jedi adds to its path.

jedi resolves names with the server's own interpreter (`sys.executable`, as a subprocess of its
own), so third-party packages installed only in the project's virtual environment, and `src/`
layouts, are invisible to it. Here they are found by reading files: the environment is the
`environmentPath` setting (a venv folder or its python), else `VIRTUAL_ENV` as the editor gave it
to the server, else a `.venv`, `venv` or `env` folder of the workspace holding a `pyvenv.cfg`. Its
`site-packages` folders, the plain path lines of its `.pth` files (editable installs) and the
workspace's `src/` become jedi's `added_sys_path`.

Nothing of the environment runs: its interpreter is never started (its `site.py` would run the
`.pth` files' `import` lines and `sitecustomize`: project code), `.pth` import lines are skipped,
and jedi, asked with `load_unsafe_extensions=False`, loads compiled modules only from the server's
own path, never from these folders (it parses the `.py` files it finds there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VENV_NAMES = (".venv", "venv", "env")
MAX_PTH_BYTES = 64_000  # a .pth file is a few lines; anything larger is not read


@dataclass(frozen=True)
class ProjectPaths:
    environment: str | None  # the virtual environment's folder, when one was found
    found_by: str  # "environmentPath", "VIRTUAL_ENV", "workspace", or "none"
    paths: tuple[str, ...]  # for jedi's added_sys_path: site-packages, .pth path lines, src/


def environment_folder(path: str) -> Path | None:
    """The venv folder for a setting that names it or its interpreter (`.venv/bin/python`)."""
    p = Path(path).expanduser()
    for candidate in (p, p.parent.parent if p.parent.name in ("bin", "Scripts") else None):
        if candidate is not None and (candidate / "pyvenv.cfg").is_file():
            return candidate
    return None


def site_packages(venv: Path) -> list[Path]:
    """The venv's site-packages folders (POSIX `lib/pythonX.Y/`, Windows `Lib/`), found by listing."""
    found = [*sorted(venv.glob("lib/python3*/site-packages")), venv / "Lib" / "site-packages"]
    return [p for p in found if p.is_dir()]


def pth_paths(folder: Path) -> list[Path]:
    """The folders named by the plain path lines of `folder`'s .pth files; `import` lines are code
    (`site.py` runs them) and are skipped, never run."""
    out: list[Path] = []
    for pth in sorted(folder.glob("*.pth")):
        try:
            if pth.stat().st_size > MAX_PTH_BYTES:
                continue
            lines = pth.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            target = (folder / line).resolve()
            if target.is_dir():
                out.append(target)
    return out


def source_roots(root: Path) -> list[Path]:
    """`src/` when the project keeps its packages there."""
    src = root / "src"
    return [src] if src.is_dir() and (any(src.glob("*.py")) or any(src.glob("*/*.py"))) else []


def project_paths(root: str | None, environment_path: str | None = None) -> ProjectPaths:
    """What jedi should add to its path for the workspace `root` (see the module docstring)."""
    venv, found_by = None, "none"
    if environment_path:
        venv, found_by = environment_folder(environment_path), "environmentPath"
    elif os.environ.get("VIRTUAL_ENV"):
        venv, found_by = environment_folder(os.environ["VIRTUAL_ENV"]), "VIRTUAL_ENV"
    elif root is not None:
        venv = next((v for n in VENV_NAMES if (v := environment_folder(str(Path(root) / n)))), None)
        found_by = "workspace" if venv else "none"
    paths: list[Path] = []
    if venv is not None:
        for folder in site_packages(venv):
            paths += [folder, *pth_paths(folder)]
    if root is not None:
        paths += source_roots(Path(root))
    unique = tuple(dict.fromkeys(str(p) for p in paths))
    return ProjectPaths(str(venv) if venv else None, found_by if venv else "none", unique)
