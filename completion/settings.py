"""Engine settings: one typed tree with a default for everything.

Editors send camelCase keys (`initializationOptions`, `workspace/didChangeConfiguration`);
the same names are used by the VS Code extension, the Neovim plugin and the README. A bad
value is reported and replaced by its default, never a crash.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from completion.decoding.suggest import DEFAULT_DRAFT_METHOD, DRAFT_METHODS
from completion.model.formats import WEIGHT_CHOICES

UPDATE_POLICIES = ("pie", "prefix-reuse", "full")  # what servers offer (live/document.py has one more, for tests)
# Settings read once, when the model loads: a change takes effect after a restart. The server says so,
# and the VS Code extension and the Neovim plugin mark the same four in their descriptions.
RESTART_SETTINGS = ("model_path", "threads", "weights", "device")


@dataclass(frozen=True)
class Settings:
    model_path: str | None = None  # local HF folder or .gguf; None: the embedded model
    threads: int = 2
    max_tokens: int = 48  # per suggestion
    context_tokens: int = 4096  # prompt window per document
    memory_budget_mb: int = 1024  # KV memory shared by all open documents
    max_file_bytes: int = 2_000_000  # larger (or binary) documents are not cached
    time_budget_ms: int = 3000  # wall-clock limit of one suggestion
    update_policy: str = "pie"  # pie; the baselines: prefix-reuse (llama.cpp: the last prompt's common prefix), full
    weights: str = "auto"  # weight format of the runner (formats.WEIGHT_CHOICES); auto: a GGUF's own blocks, else fp32
    device: str = "cpu"  # "cuda" (or "cuda:N") runs the model on a GPU when there is one
    multiline: bool | str = False  # true: to the end of the block; false: the line; auto: by where the cursor is
    syntax_tree: bool = True  # keep a tree-sitter tree per open document (stops, multiline auto, the syntax monitor)
    drafts: int = 1  # inline suggestions per request (more than 1: decoded by draft_method)
    draft_method: str = DEFAULT_DRAFT_METHOD  # branches, superposed, beam or greedy-runs (decoding/suggest.py)
    ngram_weight: float = 0.0  # superposed drafts: weight of the project's n-grams in their score (0: model only)
    popup_items: int = 6  # textDocument/completion items per request (0: no popup items)
    cross_file_chars: int = 1200  # budget of snippets from other files in front of the prompt (0: none)
    index_workspace: bool = True  # read the workspace's .py files (cross-file snippets, drafting)
    drafting: bool = True  # verify drafts looked up in the document and project: faster, same output
    debounce_ms: int = 40  # longest wait before starting a suggestion (shorter while typing fast)
    idle_refresh_ms: int = 400  # idle time before stale cache positions are re-encoded
    monitor_members: bool = True  # after `obj.` only members jedi finds (when it can resolve obj)
    monitor_imports: bool = True  # after `import` / `from` only modules and their names
    monitor_keywords: bool = True  # in a call, `name=` only for the called function's parameters
    monitor_syntax: bool = True  # each decoded line keeps the file a valid prefix of Python
    monitor_whole_names: bool = False  # after `obj.` / `import`: the legal name the model rates best as a whole
    jedi_timeout_ms: int = 300  # longest wait for jedi at a trigger; later answers serve the next request
    environment_path: str | None = None  # the project's virtual env (folder or its python) for jedi; read, never run

    @classmethod
    def from_json(cls, data: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
        """Settings from a camelCase JSON object over `base`; returns them and one message per problem."""
        base = base or cls()
        if data is None:
            return base, []
        if not isinstance(data, dict):
            return base, [f"settings must be an object, got {type(data).__name__}"]
        data = data.get("livekv", data)  # VS Code sends the section, others the bare object
        if data is None:
            return base, []
        if not isinstance(data, dict):
            return base, [f"settings section 'livekv' must be an object, got {type(data).__name__}"]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in data.items():
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
            if name not in fields:
                problems.append(f"unknown setting {key!r} ignored")
                continue
            error = _check(name, value)
            if error:
                problems.append(f"setting {key!r}: {error}; using {getattr(base, name)!r}")
            else:
                values[name] = value
        return dataclasses.replace(base, **values), problems


_RANGES = {
    "threads": (1, 256),
    "max_tokens": (1, 1024),
    "context_tokens": (256, 131072),
    "memory_budget_mb": (16, 1 << 20),
    "max_file_bytes": (1024, 1 << 30),
    "time_budget_ms": (50, 600_000),
    "drafts": (1, 8),
    "popup_items": (0, 32),
    "cross_file_chars": (0, 20_000),
    "debounce_ms": (0, 2000),
    "idle_refresh_ms": (50, 600_000),
    "jedi_timeout_ms": (0, 60_000),
}


def _check(name: str, value: Any) -> str | None:
    expected = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    if name in ("model_path", "environment_path"):
        return None if value is None or isinstance(value, str) else "must be a path string or null"
    if name == "weights":
        return None if value in WEIGHT_CHOICES else f"must be one of {', '.join(WEIGHT_CHOICES)}"
    if name == "draft_method":
        return None if value in DRAFT_METHODS else f"must be one of {', '.join(DRAFT_METHODS)}"
    if name == "multiline":
        return None if isinstance(value, bool) or value == "auto" else 'must be true, false or "auto"'
    if name == "update_policy":
        return None if value in UPDATE_POLICIES else f"must be one of {', '.join(UPDATE_POLICIES)}"
    if name == "device":
        return None if isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d+)?", value) else "must be cpu or cuda[:N]"
    if expected == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        return None if ok else "must be a number between 0 and 1"
    if expected == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    lo, hi = _RANGES[name]
    return None if lo <= value <= hi else f"must be between {lo} and {hi}"
