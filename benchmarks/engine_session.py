"""The benchmarks' way into the server's engine: one `EngineSession`, the server's settings, its idle time.

A benchmark that measures a server feature asks `EngineSession.complete` on a document opened in the
session, with `Settings()` (the server's defaults) except what it varies or a flag changes; its JSON
records those differences as camelCase settings (`non_default`), the names editors send.

- `start`: the session with its model loaded (or an already loaded model, for baselines that need it);
- `index`: a folder walked as a workspace folder, into the indexes the settings ask for (as the server);
- `settle`: a document brought to the state the server leaves it in after a pause: the prompt at the
  caret encoded, then idle-time steps until there is nothing left (the rest of the document, its
  refresh, the cross-file context);
- `MonitorTap`: what the session's monitors did in each request (their `MonitorStats`, the processors),
  read without changing them; with `picks`, also the token greedy decoding chose at each step (`Picks`,
  a processor last in the chain that leaves the logits as they are).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch

from benchmarks.common import setting
from completion.decoding.decode import Processor
from completion.model.engine import Engine
from completion.model.formats import WEIGHT_CHOICES
from completion.model.loading import LoadedModel
from completion.session import EngineSession
from completion.settings import Settings
from monitors.base import MonitorStats, Site
from monitors.chain import MonitorConfig, Monitors

MAX_IDLE_STEPS = 100_000  # a guard: a document of 4k tokens settles in a few hundred steps


def with_settings(base: Settings, values: dict[str, Any] | Iterable[tuple[str, Any]]) -> Settings:
    """`base` with camelCase `values` (a flag's or `--set KEY=JSON`'s); a bad one is an error, not a default."""
    settings, problems = Settings.from_json(dict(values), base=base)
    if problems:
        raise SystemExit("; ".join(problems))
    return settings


def add_setting_flags(ap: argparse.ArgumentParser) -> None:
    """The server settings a session benchmark's flags change: `--context-tokens`, `--model`, `--threads`,
    `--weights`, and any other by `--set KEY=JSON`."""
    ap.add_argument("--context-tokens", type=int, default=None, help="contextTokens (default: the server's)")
    ap.add_argument(
        "--model", "--model-path", dest="model_path", default=None, help="local HF folder or .gguf (default: embedded)"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--weights", choices=WEIGHT_CHOICES, default=None)
    ap.add_argument("--set", dest="settings", action="append", type=setting, default=[], metavar="KEY=JSON")


def flag_settings(args: argparse.Namespace) -> Settings:
    """The server's default settings with what `add_setting_flags`' flags changed."""
    flags = {
        "contextTokens": args.context_tokens,
        "modelPath": args.model_path,
        "threads": args.threads,
        "weights": args.weights,
    }
    return with_settings(Settings(), [*((k, v) for k, v in flags.items() if v is not None), *args.settings])


def start(settings: Settings, loaded: LoadedModel | None = None) -> EngineSession:
    """The session with its model: loaded from the settings (as the server), or `loaded` (already in memory)."""
    session = EngineSession(settings)
    if loaded is None:
        session.load()
        if session.load_error:
            raise SystemExit(f"model not loaded: {session.load_error}")
    else:
        engine = Engine.from_loaded(loaded, settings.weights, settings.device)
        session.use_engine(engine, name=f"{loaded.name} {settings.weights}")
    assert session.monitors is not None
    session.monitors.analyzer.warm_up().result()  # jedi's builtins stubs: not the first request's wait
    return session


def walked(settings: Settings) -> tuple[bool, bool]:
    """Which indexes the server fills from a workspace folder: (cross-file snippets, drafting's tokens)
    (lsp_server/server.py `walked`, which `completion` may not import and benchmarks need not start)."""
    return settings.index_workspace and settings.cross_file_chars > 0, settings.index_workspace and settings.drafting


def index(session: EngineSession, root: str) -> dict[str, Any]:
    """`root` as a workspace folder: jedi's project, and walked into the indexes the settings ask for."""
    session.workspace.roots.append(root)
    snippets, tokens = walked(session.settings)
    if not (snippets or tokens):
        return {"root": root, "files": 0, "tokens": 0}
    report = session.workspace.index_root(root, snippets=snippets, tokens=tokens)
    session.warm_ngrams()  # the server counts n-grams on its indexing thread after a walk
    return {"root": root, "files": report.files, "tokens": report.tokens, "seconds": round(report.seconds, 2)}


ONE_PASS_SETTLE = (
    "the server's idle steps, but stale entries re-encoded in one pass, not 32 tokens a step (the same exact "
    "cache in about a third of the time on 2 cores)"
)


def refresh_in_one_pass(session: EngineSession) -> str:
    """For a benchmark of what a settled document answers: `settle` re-encodes stale entries in one pass.
    Returns what the JSON records of it (the request path is the server's)."""
    session.refresh_chunk = None
    return ONE_PASS_SETTLE


def settle(session: EngineSession, uri: str, offset: int) -> int:
    """After a pause at `offset`: the prompt encoded (`warm`), then every idle-time step the server would run.
    Returns the prompt's tokens."""
    session.warm(uri, offset)
    for _ in range(MAX_IDLE_STEPS):
        if not session.background_step():
            break
    session.warm_ngrams()  # the open document's n-grams, counted on the server's indexing thread
    return session.warm(uri, offset)


class Picks:
    """A processor that changes nothing: the token greedy decoding picks at each step (the argmax of the logits
    it is given, last in the chain, as `Sampling.pick` takes it). Greedy single drafts only: the tokens decoded
    are `ids` (less an end-of-sequence pick), and the passes after the prompt's one fewer than the picks."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        self.ids.append(int(torch.argmax(logits)))
        return logits

    def tokens(self, eos: Iterable[int]) -> list[int]:
        """The tokens the decode appended: every pick but a last end-of-sequence one."""
        return self.ids[:-1] if self.ids and self.ids[-1] in set(eos) else list(self.ids)


@dataclasses.dataclass
class Tapped:
    stats: MonitorStats
    processors: list[Processor]
    picks: Picks | None = None


class MonitorTap:
    """Wraps the session's `Monitors.for_site`: each request's stats and processors, as the session made them
    (and, with `picks`, a `Picks` after them)."""

    def __init__(self, monitors: Monitors, *, picks: bool = False) -> None:
        self.inner: Callable[..., list[Processor]] = monitors.for_site
        self.picks = picks
        self.calls: list[Tapped] = []
        monitors.for_site = self  # type: ignore[method-assign]

    def __call__(self, site: Site, config: MonitorConfig, stats: MonitorStats | None = None) -> list[Processor]:
        stats = stats if stats is not None else MonitorStats()
        processors = self.inner(site, config, stats)
        picks = Picks() if self.picks else None
        self.calls.append(Tapped(stats, processors, picks))
        return processors if picks is None else [*processors, picks]

    def last(self) -> Tapped:
        """The last request's (a request without monitors built from the settings still calls `for_site`)."""
        return self.calls[-1] if self.calls else Tapped(MonitorStats(), [])

    def clear(self) -> None:
        self.calls.clear()
