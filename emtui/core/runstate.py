"""What a running logger shares with other processes: its port lock and its status file.

Two loggers on one RS-485 port would interleave requests and corrupt each other's replies;
the lock makes the second one stop with "in use by PID …". The status file lets
``emtui status`` and the TUI show a running logger's rows, errors, queue and uploads without
talking to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

from emtui.core.durable import atomic_write_bytes
from emtui.core.link import PortBusy

STATUS_FILE = "status.json"


def _slug(port: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", port).strip("_") or "port"


class PortLock:
    """An exclusive lock on a bus, held for the life of a logger (or any exclusive user).

    The lock is a file in the state directory named after the port, locked with flock (the
    kernel releases it when the process dies, even by kill -9) and holding the owner's PID.
    """

    def __init__(self, state_dir: Path, port: str) -> None:
        self.path = state_dir / f"lock-{_slug(port)}"
        self.port = port
        self._fd: int | None = None

    def acquire(self) -> PortLock:
        """Take the lock or raise PortBusy naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PortBusy(
                f"{self.port}: in use by PID {holder} (an emtui logger); "
                "stop it first (systemctl stop emtui, if it runs as the service)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; its content is stale once unlocked)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PortLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_json_atomic(path: Path, document: Any) -> None:
    """Replace ``path`` with ``document`` so a reader never sees half a file.

    Not fsynced: the status is rewritten every few seconds and losing the last one to a power
    cut costs nothing, while an fsync each time would wear the SD card.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode(), sync=False)


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status a logger wrote, with ``running`` set from its PID; None if none."""
    path = state_dir / STATUS_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    pid = document.get("pid")
    document["running"] = isinstance(pid, int) and pid_alive(pid) and not document.get("stopped")
    return document
