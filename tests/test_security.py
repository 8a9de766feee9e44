"""Security, end to end: what the server reads, runs, opens and logs.

One workspace holds every file the folder walk must refuse, each with a marker string of its own: a gitignored
module, secrets by name (`.env`, `.env.local`, `key.pem`, `id_rsa`, `id_rsa.py`, `x.key`, `cert.p12`), a module
holding a private key, a binary and an oversized module, a symlinked file and folder leading outside; and modules
that write a file when imported or started (`evilmod`, a package, `sitecustomize`/`usercustomize`/`conftest`, a
`.pth` line, a compiled extension when a C compiler is here), checked to work by importing them for real first.

The stdio session starts the server as an editor does: a launcher like the `livekv` console script (the script's
folder first on sys.path, not the working folder), working folder the workspace, HF_HUB_OFFLINE unset, in a network
namespace of its own when `unshare -n` is allowed here, INFO logs to a file and stderr to another (WARNING logs are
a subset of those); the launcher adds an audit hook that records every socket and subprocess the server creates.
Markers must reach neither the project index (`projectFiles`), nor another document's cross-file context (read
from the worker in-process: the protocol does not show prompts), nor the logs; the jedi monitor must resolve
`evilmod.` without running anything. The TCP session checks the listening address, and that DEBUG logs do hold text.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from lsp_helpers import Doc, document_state, eventually, initialize, inline, partial_change, pos
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

from completion.settings import Settings
from lsp_server.worker import ModelWorker
from monitors.analysis import Analyzer, Query

ROOT = Path(__file__).resolve().parents[1]
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
# Workspace files that must never be read (relative path -> marker); each also defines ledger_balance, a name the
# open document uses, so that its snippets would be picked for that document's context if it were indexed.
SECRETS = {
    name: f"leak_{re.sub(r'[^a-z0-9]', '_', name.lower())}_q7"
    for name in (
        "ignored.py",
        ".env",
        ".env.local",
        "key.pem",
        "id_rsa",
        "id_rsa.py",
        "x.key",
        "cert.p12",
        "deploy.py",
        "blob.py",
        "huge.py",
        "linked.py",
        "linkdir/mod.py",
    )
}
OUTSIDE_MARKER = "leak_outside_module_q7"  # a file outside the workspace opened as a document
UNTITLED_MARKER = "leak_untitled_buffer_q7"
NORMAL_MARKER = "fine_normal_module_q7"
DOCUMENT_MARKERS = ("typed_text_marker_q7", "edited_text_marker_q7", "bad_edit_marker_q7")
EVIL = ("evilmod", "evilpkg", "sitecustomize", "usercustomize", "conftest", "evil_pth", "evilext")
QUERY = "def settle(entries):\n    total = ledger_balance(entries)\n    return total\n"
C_EXTENSION = """#include <Python.h>
#include <stdio.h>
static void ran(void) { FILE *f = fopen(SENTINEL, "w"); if (f) { fputs("ran", f); fclose(f); } }
__attribute__((constructor)) static void on_load(void) { ran(); }
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "evilext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_evilext(void) { ran(); return PyModule_Create(&def); }
"""
# Records the server's sockets and subprocesses; runs the server the way the `livekv` console script does.
LAUNCHER = """import os, sys
_audit = open(os.environ["LIVEKV_AUDIT"], "a", buffering=1)
def _hook(event, args):
    if event.startswith("socket.") or event == "subprocess.Popen":
        shown = args[1:] if event == "socket.__new__" else args[:2]
        _audit.write(f"{event} {shown!r}\\n")
    if event == "subprocess.Popen":  # jedi's, after the model has loaded: Hugging Face is imported by then
        hub = sys.modules.get("huggingface_hub.constants")
        _audit.write(f"HF_HUB_OFFLINE {getattr(hub, 'HF_HUB_OFFLINE', None)}\\n")
sys.addaudithook(_hook)
from lsp_server.cli import main
sys.exit(main())
"""


def body(marker: str) -> str:
    return f"def ledger_balance(entries):\n    return sum(entries)  # {marker}\n\n{marker} = ledger_balance([1])\n"


def writes(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('ran')\n"


@dataclass
class Tree:
    base: Path
    ws: Path
    outside: Path
    sentinels: Path
    has_extension: bool

    def ran(self) -> list[str]:
        return sorted(p.name for p in self.sentinels.iterdir())


def can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def build_extension(ws: Path, sentinel: Path) -> bool:
    """evilext, a C extension that writes `sentinel` when loaded; False where it cannot be built."""
    if shutil.which("gcc") is None:
        return False
    source = ws.parent / "evilext.c"
    source.write_text(C_EXTENSION)
    target = ws / f"evilext{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    cmd = ["gcc", "-shared", "-fPIC", f"-I{include}", f'-DSENTINEL="{sentinel}"', "-o", str(target), str(source)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("security")
    ws, outside, sentinels = base / "ws", base / "outside", base / "sentinels"
    for folder in (ws / "evilpkg", outside / "pkg", sentinels):
        folder.mkdir(parents=True)
    (ws / ".gitignore").write_text("ignored.py\n")
    (ws / "normal.py").write_text(body(NORMAL_MARKER))
    for name, marker in SECRETS.items():
        path = ws / name
        if name == "linked.py":
            (outside / "secret_mod.py").write_text(body(marker))
            path.symlink_to(outside / "secret_mod.py")
        elif name == "linkdir/mod.py":
            (outside / "pkg" / "mod.py").write_text(body(marker))
            (ws / "linkdir").symlink_to(outside / "pkg", target_is_directory=True)
        elif name == "deploy.py":
            path.write_text(body(marker) + f'KEY = """\n{KEY}"""\n')
        elif name == "blob.py":
            path.write_bytes(body(marker).encode() + b"\0\1")
        elif name == "huge.py":
            path.write_text(body(marker) + "# padding to be over the 500 KB limit\n" * 15_000)
        else:
            path.write_text(body(marker))
    (outside / "elsewhere.py").write_text(body(OUTSIDE_MARKER))
    for name in ("evilmod", "sitecustomize", "usercustomize", "conftest"):
        (ws / f"{name}.py").write_text(writes(sentinels / name) + f"{name.upper()}_NAME = 1\n")
    (ws / "evilpkg" / "__init__.py").write_text(writes(sentinels / "evilpkg") + "EVILPKG_NAME = 1\n")
    (ws / "evil.pth").write_text("import os; " + writes(sentinels / "evil_pth"))
    has_extension = build_extension(ws, sentinels / "evilext")
    # The traps work: importing the modules for real (and starting Python with the workspace as a site folder)
    # writes their sentinels.
    imports = "import site, sys; site.addsitedir(sys.argv[1]); import evilmod, evilpkg"
    imports += ", evilext" if has_extension else ""
    env = {**os.environ, "PYTHONPATH": str(ws)}
    subprocess.run([sys.executable, "-c", imports, str(ws)], cwd=ws, env=env, check=True, capture_output=True)
    expected = {"evilmod", "evilpkg", "sitecustomize", "evil_pth"} | ({"evilext"} if has_extension else set())
    assert set(p.name for p in sentinels.iterdir()) == expected
    for p in sentinels.iterdir():
        p.unlink()
    return Tree(base, ws, outside, sentinels, has_extension)


@dataclass
class Session:
    client: LanguageClient
    pid: int
    log: Path
    stderr: Path
    audit: Path


async def start(tree: Tree, name: str, options: dict[str, object], *, level: str) -> Session:
    """The server over stdio, started as an editor starts it (see the module docstring)."""
    logs = tree.base / name
    logs.mkdir()
    launcher = logs / "launch.py"
    launcher.write_text(LAUNCHER)
    session = Session(make_test_lsp_client(), 0, logs / "server.log", logs / "stderr.txt", logs / "audit.txt")
    cmd = [sys.executable, str(launcher), "--log-level", level, "serve", "--log-file", str(session.log)]
    if can_unshare():
        cmd = ["unshare", "-n", *cmd]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["LIVEKV_AUDIT"] = str(session.audit)
    await session.client.start_io("sh", "-c", 'exec "$@" 2>"$0"', str(session.stderr), *cmd, cwd=tree.ws, env=env)
    session.pid = session.client._server.pid  # sh, unshare and the launcher exec one another: one process
    await initialize(session.client, "visual-studio-code", {"threads": 1, **options}, root_uri=tree.ws.as_uri())
    return session


async def stop(session: Session) -> None:
    await session.client.shutdown_session()
    await session.client.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tree: Tree, tiny_model_dir: str):
    options = {"modelPath": tiny_model_dir, "idleRefreshMs": 50, "crossFileChars": 2000, "maxTokens": 4}
    session = await start(tree, "stdio", options, level="INFO")
    yield session
    await stop(session)


async def project_files(session: Session, uri: str) -> set[str]:
    return {Path(p).as_posix() for p in (await document_state(session.client, uri))["projectFiles"]}


def secret_documents(tree: Tree) -> dict[str, str]:
    """The refused files as documents the user opens (URI -> text), and two that are no workspace file."""
    docs = {}
    for name in SECRETS:
        data = (tree.ws / name).read_bytes()
        docs[(tree.ws / name).as_uri()] = data.decode("utf-8")
    docs[(tree.outside / "elsewhere.py").as_uri()] = body(OUTSIDE_MARKER)
    docs["untitled:Untitled-1"] = body(UNTITLED_MARKER)
    return docs


def leaked(text: str) -> list[str]:
    markers = [*SECRETS.values(), OUTSIDE_MARKER, UNTITLED_MARKER, *DOCUMENT_MARKERS]
    return [m for m in markers if m in text]


# -- what is read ----------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_secrets_never_reach_the_project_index(session: Session, tree: Tree) -> None:
    probe = (tree.ws / "normal.py").as_uri()
    allowed = {
        str(tree.ws / n) for n in ("normal.py", "evilmod.py", "sitecustomize.py", "usercustomize.py", "conftest.py")
    } | {str(tree.ws / "evilpkg" / "__init__.py")}

    async def walked() -> bool:
        return str(tree.ws / "normal.py") in await project_files(session, probe)

    await eventually(walked, what="the workspace in the project index")
    assert await project_files(session, probe) == allowed
    for uri, text in secret_documents(tree).items():
        Doc(session.client, uri, text).open()
    # opened last and not on disk: once it is indexed, the indexer has been through every document opened before
    app = Doc(session.client, (tree.ws / "app.py").as_uri(), QUERY).open()

    async def app_indexed() -> bool:
        return str(tree.ws / "app.py") in await project_files(session, app.uri)

    await eventually(app_indexed, what="app.py in the project index")
    assert await project_files(session, app.uri) == allowed | {str(tree.ws / "app.py")}


def test_secret_documents_reach_no_other_documents_prompt(tree: Tree, tiny_model_dir: str) -> None:
    """The worker in-process: the cross-file context of a workspace document, and the project store's tokens,
    after the user has worked in every refused file (each one's own context computed, as the idle steps do)."""
    settings = Settings(model_path=tiny_model_dir, threads=1, cross_file_chars=2000, idle_refresh_ms=600_000)
    worker = ModelWorker(settings)
    worker.session.workspace.roots = [str(tree.ws)]
    try:
        worker.submit(worker.session.load, None).result(timeout=120)
        assert worker.session.engine is not None and worker.session.workspace.tokens is not None, (
            worker.session.load_error
        )
        worker.index_root(str(tree.ws)).result(timeout=120)
        for uri, text in secret_documents(tree).items():
            worker.submit(worker.session.open, uri, text).result(timeout=60)
            if uri in worker.session.store:
                worker.submit(worker.session.context_for, uri, worker.session.store.get(uri)).result(timeout=60)
        main = (tree.ws / "app.py").as_uri()
        worker.submit(worker.session.open, main, QUERY).result(timeout=60)
        context = worker.submit(worker.session.context_for, main, worker.session.store.get(main)).result(timeout=60)
        assert NORMAL_MARKER in context and leaked(context) == []
        worker._indexer.submit(lambda: None).result(timeout=60)  # the indexer has taken every document
        stored = [
            worker.session.engine.tokenizer.decode(t)
            for s in worker.session.workspace.tokens.store.shards
            for t in s.files.values()
        ]
        assert any(NORMAL_MARKER in text for text in stored)
        assert [m for text in stored for m in leaked(text)] == []
    finally:
        worker.shutdown()


def test_jedi_reads_no_file_through_a_link_out_nor_a_secret(tree: Tree) -> None:
    """The monitor's jedi (monitors/analysis.py with the monitors/jedi_files.py guard): a module linked from
    outside the workspace, or holding a key, reads as empty; a plain workspace module resolves."""
    analyzer = Analyzer()
    try:

        def members(module: str) -> frozenset[str]:
            code = f"import {module}\n{module}."
            query = Query(code, 2, len(module) + 1, str(tree.ws / "probe.py"), str(tree.ws))
            names = analyzer.ask(query).result(timeout=60).names
            return names or frozenset()

        assert {"ledger_balance", NORMAL_MARKER} <= members("normal")
        for module in ("linked", "linkdir.mod", "deploy", "id_rsa"):
            assert not members(module) & {"ledger_balance", *SECRETS.values()}, module
    finally:
        analyzer.shutdown()


# -- what is run ------------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_no_project_code_runs(session: Session, tree: Tree) -> None:
    if not tree.has_extension:  # the compiled-extension trap is part of the check: skipped, not left out
        pytest.skip("needs gcc and Python's headers to build the compiled-extension trap (evilext)")
    doc = Doc(session.client, (tree.ws / "imports.py").as_uri(), "import evilmod\nevilmod.").open()
    modules = ["evilmod", "evilpkg", "conftest", "sitecustomize", "linked"] + (["evilext"] * tree.has_extension)
    for module in modules:
        for text in (f"import {module}\n{module}.", f"from {module} import "):
            doc.replace_all(text)
            end = doc.position(len(text))
            await inline(session.client, doc.uri, end)
            await session.client.text_document_completion_async(
                types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=doc.uri), position=end)
            )
    assert tree.ran() == []
    # jedi did resolve the workspace's modules (by reading them): the monitor reported resolved answers
    resolved = re.findall(r"jedi calls \(\d+ ready, (\d+) resolved", session.log.read_text())
    assert resolved and max(map(int, resolved)) > 0


def test_a_module_started_server_imports_nothing_from_its_working_folder(tmp_path: Path) -> None:
    (tmp_path / "lsprotocol.py").write_text(writes(tmp_path / "ran") + "raise ImportError\n")  # the first import
    cmd = [sys.executable, "-m", "lsp_server.cli", "serve"]
    subprocess.run(cmd, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert not (tmp_path / "ran").exists()


# -- what is opened ---------------------------------------------------------------------------------


def inet_inodes(pid: int) -> set[str]:
    """Inodes of the TCP/UDP/raw sockets in the process's network namespace."""
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if path.exists():
            inodes |= {line.split()[9] for line in path.read_text().splitlines()[1:]}
    return inodes


def family(pid: int) -> list[int]:
    """The process and its descendants (the jedi environment subprocess)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
@pytest.mark.asyncio(loop_scope="module")
async def test_no_network_socket_is_ever_opened(session: Session, tree: Tree) -> None:
    """After loading the model, indexing, completions and popups (the tests above): the server and its
    subprocesses hold no TCP/UDP socket, and the audit hook saw none created, nor any connect or lookup."""
    doc = Doc(session.client, (tree.ws / "net.py").as_uri(), QUERY).open()
    await inline(session.client, doc.uri, doc.position(len(QUERY)))
    processes = family(session.pid)
    assert len(processes) >= 2  # the server and jedi's environment subprocess
    for pid in processes:
        assert socket_inodes(pid) & inet_inodes(pid) == set(), pid
    events = session.audit.read_text().splitlines()
    assert any(e.startswith("subprocess.Popen") for e in events)  # the hook works: it saw jedi's subprocess
    sockets = [e for e in events if e.startswith("socket.")]
    unix = int(socket.AF_UNIX)
    assert all(re.fullmatch(rf"socket\.__new__ \({unix}, .*", e) for e in sockets), sockets


@pytest.mark.asyncio(loop_scope="module")
async def test_the_server_itself_puts_hugging_face_offline(session: Session) -> None:
    """Started with HF_HUB_OFFLINE unset, the server runs with huggingface_hub offline all the same."""
    seen = [line for line in session.audit.read_text().splitlines() if line.startswith("HF_HUB_OFFLINE")]
    assert seen and set(seen) == {"HF_HUB_OFFLINE True"}, seen


# -- what is logged ---------------------------------------------------------------------------------


async def work_on_marked_document(client: LanguageClient, uri: str) -> None:
    """Open a document with marker text, type, edit, complete, and make an edit the server must reject."""
    typed, edited, bad = DOCUMENT_MARKERS
    doc = Doc(client, uri, f"{typed} = 1\n{QUERY}").open()
    doc.type(len(doc.text), f"{edited} = {typed}\n")
    await inline(client, doc.uri, doc.position(len(doc.text)))
    await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(doc.uri), doc.position(len(doc.text)))
    )
    client.text_document_did_change(partial_change(doc.uri, doc.version + 1, pos(99, 0), pos(99, 1), bad))
    await eventually(lambda: any("ignored" in m.message for m in client.messages), what="the rejected change")
    state = await document_state(client, doc.uri)
    assert state["engine"] == doc.text  # the bad edit changed nothing


# pygls logs every message it sends, and the client's answers to its requests, at INFO
PYGLS_MESSAGES = re.compile(r"^\S+ \S+ INFO pygls\.protocol\.json_rpc: (Sending data:|Client response for )")


def assert_no_text_in_logs(*paths: Path, but_pygls_messages: bool = False) -> None:
    for path in paths:
        lines = path.read_text(errors="replace").splitlines()
        if but_pygls_messages:
            lines = [line for line in lines if not PYGLS_MESSAGES.match(line)]
        text = "\n".join(lines)
        assert leaked(text) == [] and NORMAL_MARKER not in text, (path, leaked(text))


@pytest.mark.asyncio(loop_scope="module")
async def test_info_logs_hold_no_document_text(session: Session, tree: Tree) -> None:
    await work_on_marked_document(session.client, (tree.ws / "marked.py").as_uri())
    assert "completion for" in session.log.read_text()  # INFO lines are there
    assert_no_text_in_logs(session.log, session.stderr, but_pygls_messages=True)


@pytest.mark.asyncio(loop_scope="module")
async def test_info_logs_hold_no_protocol_message(session: Session) -> None:
    assert [line for line in session.log.read_text().splitlines() if PYGLS_MESSAGES.match(line)] == []


# -- TCP --------------------------------------------------------------------------------------------


def listeners(port: int) -> set[tuple[str, str]]:
    """(table, local address) of the sockets listening on `port`."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":
                found.add((table, address))
    return found


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (from the kernel's routing table)."""
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    found = {lines[i - 1].split()[-1] for i, line in enumerate(lines) if "/32 host LOCAL" in line}
    return sorted(a for a in found if not a.startswith("127."))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs /proc")
@pytest.mark.asyncio(loop_scope="module")
async def test_tcp_listens_on_loopback_only(tree: Tree, tiny_model_dir: str) -> None:
    """`serve --tcp` listens on 127.0.0.1 alone and serves a whole session (here with DEBUG logs)."""
    port = free_port()
    logs = tree.base / "tcp"
    logs.mkdir()
    log, err = logs / "server.log", logs / "stderr.txt"
    cmd = [sys.executable, "-m", "lsp_server.cli", "--log-level", "DEBUG", "serve", "--tcp", str(port)]
    with err.open("wb") as stderr:
        server = subprocess.Popen([*cmd, "--log-file", str(log)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        await eventually(lambda: listeners(port) or server.poll() is not None, what="the server listening")
        assert listeners(port) == {("tcp", "0100007F")}  # 127.0.0.1, and no IPv6 socket
        for address in local_addresses():
            with pytest.raises(ConnectionRefusedError), socket.create_connection((address, port), timeout=5):
                pass
        client = make_test_lsp_client()
        await client.start_tcp("127.0.0.1", port)
        result = await initialize(client, "visual-studio-code", {"modelPath": tiny_model_dir, "maxTokens": 4})
        assert result.capabilities.inline_completion_provider is not None
        await work_on_marked_document(client, (tree.ws / "tcp_marked.py").as_uri())
        await client.shutdown_session()
        await client.stop()
    finally:
        server.terminate()
        server.wait(timeout=30)
    # DEBUG logs document text (pygls logs each message it sends, here livekv/documentState's): for debugging only
    assert DOCUMENT_MARKERS[0] in log.read_text()


# -- the project's virtual environment: read for jedi, never run -----------------------------------------------

VENV_TRAPS = ("venv_python", "venv_pth", "venv_sitecustomize", "fancylib")


@dataclass
class VenvTree:
    ws: Path
    venv: Path
    sentinels: Path

    def ran(self) -> list[str]:
        return sorted(p.name for p in self.sentinels.iterdir())


@pytest.fixture(scope="module")
def venv_tree(tmp_path_factory: pytest.TempPathFactory) -> VenvTree:
    """A workspace whose `.venv` holds a package (`fancylib`, which writes a file when imported), a `.pth` with an
    `import` line and a path line (an editable install), a `sitecustomize`, and a `bin/python` that writes a file
    when started; a `src/` layout beside it. The traps are shown to work first."""
    base = tmp_path_factory.mktemp("venv")
    ws, sentinels = base / "ws", base / "sentinels"
    venv = ws / ".venv"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for folder in (site / "fancylib", venv / "bin", ws / "src" / "srcpkg", ws / "editable", sentinels):
        folder.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {sys.version.split()[0]}\n")
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho ran > {sentinels / 'venv_python'}\n")
    python.chmod(0o755)
    (venv / "bin" / "python3").symlink_to(python)
    lamp = "class Lamp:\n    def shine(self):\n        return 1\n\n    def dim_slowly(self):\n        return 0\n"
    (site / "fancylib" / "__init__.py").write_text(writes(sentinels / "fancylib") + lamp)
    (site / "editable.pth").write_text(f"import os; {writes(sentinels / 'venv_pth')}{ws / 'editable'}\n")
    (site / "sitecustomize.py").write_text(writes(sentinels / "venv_sitecustomize"))
    (ws / "editable" / "editmod.py").write_text("EDITABLE_NAME = 1\n")
    (ws / "src" / "srcpkg" / "__init__.py").write_text("SRC_LAYOUT_NAME = 1\n")
    subprocess.run([str(python)], check=True)
    traps = f"import site, sys; site.addsitedir({str(site)!r}); import sitecustomize, fancylib"
    subprocess.run([sys.executable, "-S", "-c", traps], check=True, capture_output=True, cwd=base)
    assert {p.name for p in sentinels.iterdir()} == set(VENV_TRAPS)
    for p in sentinels.iterdir():
        p.unlink()
    return VenvTree(ws, venv, sentinels)


def test_jedi_reads_the_projects_environment_without_running_it(
    venv_tree: VenvTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor gave the server VIRTUAL_ENV (an activated shell): jedi reads that environment's packages, its
    .pth path lines and the src/ layout, and starts neither that interpreter nor any of its site code."""
    monkeypatch.setenv("VIRTUAL_ENV", str(venv_tree.venv))
    analyzer = Analyzer()
    try:

        def members(code: str) -> frozenset[str]:
            line, column = code.count("\n") + 1, len(code.rsplit("\n", 1)[-1])
            query = Query(code, line, column, str(venv_tree.ws / "app.py"), str(venv_tree.ws))
            return analyzer.ask(query).result(timeout=60).names or frozenset()

        assert {"shine", "dim_slowly"} <= members("import fancylib\nfancylib.Lamp().")
        assert "SRC_LAYOUT_NAME" in members("import srcpkg\nsrcpkg.")
        assert "EDITABLE_NAME" in members("import editmod\neditmod.")
    finally:
        analyzer.shutdown()
    assert venv_tree.ran() == []


@pytest.mark.asyncio(loop_scope="module")
async def test_completions_resolve_names_from_the_workspace_venv_and_run_none_of_it(
    venv_tree: VenvTree, tree: Tree, tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the server, found as a workspace `.venv` and given as VIRTUAL_ENV in turn."""
    for name, virtual_env in (("venv-found", None), ("venv-given", str(venv_tree.venv))):
        if virtual_env is None:
            monkeypatch.delenv("VIRTUAL_ENV", raising=False)
        else:
            monkeypatch.setenv("VIRTUAL_ENV", virtual_env)
        options = {"modelPath": tiny_model_dir, "maxTokens": 4, "indexWorkspace": False, "jediTimeoutMs": 30_000}
        session = await start(
            Tree(tree.base, venv_tree.ws, tree.outside, tree.sentinels, False), name, options, level="INFO"
        )
        try:
            text = "import fancylib\nfancylib.Lamp()."
            doc = Doc(session.client, (venv_tree.ws / "app.py").as_uri(), text).open()
            for _ in range(3):  # jedi's first answer may come after the first request's wait
                answer = await inline(session.client, doc.uri, doc.position(len(text)))
        finally:
            await stop(session)
        resolved = re.findall(r"jedi calls \(\d+ ready, (\d+) resolved", session.log.read_text())
        assert resolved and max(map(int, resolved)) > 0, name
        # the random model writes what the mask leaves: a member of the venv's Lamp (or the start of one)
        written = re.match(r"\w*", str(answer.items[0].insert_text)).group()  # type: ignore[union-attr]
        member = written.startswith("__") or any(m.startswith(written) for m in ("shine", "dim_slowly", "__"))
        assert written and member, (name, written)
        assert f"environment {venv_tree.venv}" in session.log.read_text(), name
        assert venv_tree.ran() == [], name
