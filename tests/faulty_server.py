"""The real livekv server with faults injected, for tests/test_crash_safety.py.

    python tests/faulty_server.py KIND=SWITCH [KIND=SWITCH ...] [--hang SECONDS] [--log-file PATH]

Each KIND patches one function so that it fails while the file SWITCH exists (the test creates
and deletes it to start and stop the fault); a number N in the file lets N more calls through
first (each one counts it down). Then `livekv serve` runs over stdio as usual. Nothing here is
imported by the server itself: production code carries no test hooks.

Kinds:
  forward-oom     the model's forward pass raises torch.OutOfMemoryError (with N in the switch
                  file: in the middle of decoding)
  jedi-error      jedi.Script raises (an internal jedi failure)
  jedi-hang       jedi.Script sleeps --hang seconds first (longer than jediTimeoutMs); from then
                  on the server's STUCK_SECONDS is 1 s, so the test need not wait the real 10 s
  inline-bug      a ValueError inside the textDocument/inlineCompletion handler (on the event loop)
  sync-bug        a KeyError inside the textDocument/didChange handler (on the event loop), after
                  pygls has applied the change to its copy of the document
  change-bug      a KeyError in the middle of the worker's update of a document's cache for an
                  edit: its text and KV are patched, its token list is not
  complete-bug    a KeyError inside the worker's inline completion, after decoding
  refresh-bug     a RuntimeError in the worker's background re-encoding of stale positions
  index-bug       a RuntimeError in the walk of a workspace folder (both indexes)
  config-bug      a KeyError inside workspace/didChangeConfiguration, a handler livekv does not
                  wrap itself (pygls reports it through the server's report_server_error)
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import jedi
import torch

from completion import settings
from completion.decoding import suggest
from completion.live import document as live
from completion.model import runner
from completion.project import workspace
from lsp_server import cli, inline, sync
from monitors import analysis


def failing(original: Callable[..., Any], switch: Path, fail: Callable[[], object]) -> Callable[..., Any]:
    """`original`, except that while `switch` exists it calls `fail()` first (which raises, or returns
    after a delay, and then the original runs), once the calls the file lets through are used up."""

    @functools.wraps(original)  # pygls reads a handler's signature to pass it the server
    def patched(*args: Any, **kwargs: Any) -> Any:
        if active(switch):
            fail()
        return original(*args, **kwargs)

    return patched


def active(switch: Path) -> bool:
    """Whether the fault is on: the switch exists and lets no more calls through."""
    try:
        let_through = int(switch.read_text() or 0)
    except FileNotFoundError:
        return False
    if let_through > 0:
        switch.write_text(str(let_through - 1))
    return let_through == 0


def raiser(error: BaseException) -> Callable[[], object]:
    def fail() -> object:
        raise error

    return fail


def install(kind: str, switch: Path, hang: float) -> None:
    if kind == "forward-oom":
        oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        runner.Runner.forward = failing(runner.Runner.forward, switch, raiser(oom))  # type: ignore[method-assign]
    elif kind == "jedi-error":
        jedi.Script = failing(jedi.Script, switch, raiser(AttributeError("'NoneType' object has no attribute 'tree'")))
    elif kind == "jedi-hang":

        def stuck() -> None:
            analysis.STUCK_SECONDS = 1.0  # from the first hang on, not for jedi's slow first call
            time.sleep(hang)

        jedi.Script = failing(jedi.Script, switch, stuck)
    elif kind == "inline-bug":
        inline.selected_offsets = failing(inline.selected_offsets, switch, raiser(ValueError("injected handler bug")))
    elif kind == "sync-bug":
        sync.did_change = failing(sync.did_change, switch, raiser(KeyError("injected didChange bug")))
    elif kind == "change-bug":
        real_apply_edits, real_splice = live.LiveDocument.apply_edits, live.LiveDocument._splice_layout
        editing = [False]  # inside an edit from a didChange while the fault is on

        def apply_edits(doc: live.LiveDocument, edits: Any, cursor: int | None = None) -> Any:
            editing[0] = bool(edits) and active(switch)
            try:
                return real_apply_edits(doc, edits, cursor)
            finally:
                editing[0] = False

        def splice(doc: live.LiveDocument, s: Any, uids: Any) -> int:
            encoded = real_splice(doc, s, uids)  # the text, tokens and KV are patched ...
            if editing[0]:
                raise KeyError("injected bug in the cache update")  # ... the layout and window are not
            return encoded

        live.LiveDocument.apply_edits = apply_edits  # type: ignore[method-assign]
        live.LiveDocument._splice_layout = splice  # type: ignore[method-assign]
    elif kind == "complete-bug":
        suggest.postprocess = failing(suggest.postprocess, switch, raiser(KeyError("injected bug after decoding")))
    elif kind == "refresh-bug":
        error = RuntimeError("injected bug in refresh")
        live.LiveDocument.refresh = failing(live.LiveDocument.refresh, switch, raiser(error))  # type: ignore[method-assign]
    elif kind == "index-bug":
        walk = workspace.Workspace.index_root
        error = RuntimeError("injected bug in the project walk")
        workspace.Workspace.index_root = failing(walk, switch, raiser(error))  # type: ignore[method-assign]
    elif kind == "config-bug":
        parse = settings.Settings.from_json
        settings.Settings.from_json = failing(parse, switch, raiser(KeyError("injected settings bug")))  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown fault kind {kind!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("faults", nargs="+", metavar="KIND=SWITCH")
    ap.add_argument("--hang", type=float, default=2.0, help="jedi-hang: seconds each jedi call sleeps")
    ap.add_argument("--log-file", help="the server's log (INFO and above), as `livekv serve --log-file`")
    args = ap.parse_args()
    for fault in args.faults:
        kind, _, switch = fault.partition("=")
        install(kind, Path(switch), args.hang)
    return cli.main(["serve", *(["--log-file", args.log_file] if args.log_file else [])])


if __name__ == "__main__":
    sys.exit(main())
