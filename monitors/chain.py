"""The monitors one suggestion decodes under, built from a typed configuration.

`Monitors` holds what every suggestion of one model shares: the vocabulary's name tables and
the jedi worker. `for_site` returns the processors for one suggestion, in order: names first
(they rule tokens out), then syntax (it checks what the names left on top).
"""

from __future__ import annotations

from dataclasses import dataclass

from completion.decoding.decode import Processor
from completion.model.vocab import Vocabulary
from monitors import triggers
from monitors.analysis import Analyzer
from monitors.base import MonitorStats, Site
from monitors.names import NameMonitor
from monitors.syntax import SyntaxMonitor
from monitors.vocab import NameMasks


@dataclass(frozen=True)
class MonitorConfig:
    members: bool = True  # after `obj.`: only members jedi lists
    imports: bool = True  # after `import` / `from`: only modules and their names
    keywords: bool = True  # in a call, `name=` only for the called function's parameters
    syntax: bool = True  # line ends keep the text a valid prefix of Python
    whole_names: bool = False  # rank the legal names by the model's probability of the whole name
    jedi_timeout: float = 0.3  # seconds a suggestion waits for jedi at a trigger
    bias: float = 0.0  # logit bonus for the document's own member names when jedi cannot resolve

    def __post_init__(self) -> None:
        if self.jedi_timeout < 0 or self.bias < 0:
            raise ValueError(f"jedi_timeout and bias must be >= 0, got {self.jedi_timeout} and {self.bias}")


class Monitors:
    def __init__(self, vocab: Vocabulary, environment_path: str | None = None) -> None:
        self.vocab = vocab
        self.masks = NameMasks(vocab)
        self.analyzer = Analyzer(environment_path)

    def for_site(self, site: Site, config: MonitorConfig, stats: MonitorStats | None = None) -> list[Processor]:
        stats = stats if stats is not None else MonitorStats()
        names = self._name_monitor(site, config, stats)
        chain: list[Processor] = [names] if names is not None else []
        if config.syntax:
            chain.append(SyntaxMonitor(self.vocab, site, stats))
        return chain

    def prefetch(self, site: Site, config: MonitorConfig) -> bool:
        """Ask jedi now what the site's trigger will need (after a change: before the request comes)."""
        names = self._name_monitor(site, config, MonitorStats())
        return names is not None and names.prefetch()

    def _name_monitor(self, site: Site, config: MonitorConfig, stats: MonitorStats) -> NameMonitor | None:
        found = [
            f
            for f, on in (
                (triggers.member, config.members),
                (triggers.imports, config.imports),
                (triggers.keyword, config.keywords),
            )
            if on
        ]
        if not found or (site.tree is not None and site.tree.in_string_or_comment(len(site.before))):
            return None  # prose in a docstring or a comment: its names are not code (the tree knows, across lines)
        return NameMonitor(
            self.vocab,
            self.masks,
            self.analyzer,
            site,
            found,
            timeout=config.jedi_timeout,
            bias=config.bias,
            whole_names=config.whole_names,
            stats=stats,
        )

    def shutdown(self) -> None:
        self.analyzer.shutdown()
