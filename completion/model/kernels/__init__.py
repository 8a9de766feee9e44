"""livekv's CPU kernels (`cpu_ops.cpp`), compiled on this machine as a torch extension and cached.

Compiled with `-march=native` by the machine's own C++ compiler (`make setup` does it once;
otherwise the first model load does, in about a minute). The build is cached under
`$XDG_CACHE_HOME/livekv/kernels/`, keyed by the source, torch's version and this CPU, so a
later start imports the compiled module directly. Where no compiler is found or the build
fails, `cpu_ops()` returns None with the reason logged, and the runner uses its torch path.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import shutil
from pathlib import Path
from types import ModuleType

import torch

from completion.model.paths import cache_root

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_ops.cpp")
# -fopenmp: ATen's parallel_for is inlined here and runs on one thread without it; the module then
# shares the libgomp torch has loaded (same soname), so one thread pool serves both.
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fopenmp")

_loaded: dict[str, ModuleType | None] = {}


class KernelsUnavailable(RuntimeError):
    """The CPU kernels could not be built here; the message says why."""


def _cpu_identity() -> str:
    """The CPU's feature flags: a module built with -march=native runs only where they match."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def build_name() -> str:
    key = "|".join([SOURCE.read_text(), torch.__version__, platform.machine(), _cpu_identity(), *FLAGS])
    return "livekv_cpu_ops_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def build_dir() -> Path:
    return cache_root() / "kernels" / build_name()


def _import(path: Path, name: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None  # a file path with an extension loader always gives a spec
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def build() -> ModuleType:
    """Compile the kernels (or import the cached build); KernelsUnavailable says why it cannot."""
    name, where = build_name(), build_dir()
    built = where / f"{name}.so"
    if built.is_file():
        return _import(built, name)
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise KernelsUnavailable("no C++ compiler found (install g++ or clang++, or set CXX)")
    from torch.utils import cpp_extension  # imports setuptools; only a build needs it

    where.mkdir(parents=True, exist_ok=True)
    log.info("building livekv's CPU kernels in %s (once per machine, about a minute)", where)
    try:
        module = cpp_extension.load(
            name=name,
            sources=[str(SOURCE)],
            build_directory=str(where),
            extra_cflags=list(FLAGS),
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError) as err:  # compiler errors, a missing ninja, a read-only cache
        raise KernelsUnavailable(f"building the CPU kernels failed: {err}") from err
    assert isinstance(module, ModuleType)  # load() without is_python_module=False gives the module
    return module


def cpu_ops() -> ModuleType | None:
    """The compiled kernels, built on first use; None (reason logged once) where they cannot be."""
    if "ops" not in _loaded:
        try:
            _loaded["ops"] = build()
        except KernelsUnavailable as err:
            log.warning("%s; the block formats are unavailable and fp32 runs on torch ops", err)
            _loaded["ops"] = None
    return _loaded["ops"]
