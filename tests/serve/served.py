"""Run ``emtui serve`` as a subprocess for the serve tests, and clean up after it.

The server puts each app in a session of its own (so Ctrl+C reaches only the server); the
helper therefore finds the apps as the server's children in /proc and kills any left over
by their PIDs, besides the server's own process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers import EMTUI


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition: object, timeout: float, step: float = 0.1) -> bool:
    """Poll the callable ``condition`` until it is true or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(condition())  # type: ignore[operator]


@dataclass
class Served:
    """A running ``emtui serve``: its process, URL and the first line it printed."""

    process: subprocess.Popen[str]
    port: int
    banner: str
    apps: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The page's URL."""
        return f"http://127.0.0.1:{self.port}/"

    def app_pids(self) -> list[int]:
        """The apps the server runs now (remembered for the clean-up)."""
        pids = children(self.process.pid)
        self.apps.update(pids)
        return pids

    def stop(self, timeout: float = 15.0) -> tuple[int, str, str]:
        """Ctrl+C (SIGINT) the server; its exit code, stdout and stderr."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGINT)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, self.banner + out, err


@contextlib.contextmanager
def served(*flags: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``emtui serve FLAGS --listen 127.0.0.1:<free port>``, killed (with its apps) after."""
    port = free_port()
    process = subprocess.Popen(
        [*EMTUI, "serve", *flags, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    banner = process.stdout.readline()  # printed once the socket listens
    server = Served(process, port, banner)
    try:
        assert "open http://127.0.0.1:" in banner, process.communicate(timeout=10)
        yield server
    finally:
        server.app_pids()
        for pid in server.apps:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
