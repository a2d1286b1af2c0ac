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
import pwd
import re
from pathlib import Path
from typing import Any, NamedTuple

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


class DirProblem(NamedTuple):
    """Why a directory cannot be used; ``text`` follows the path in a message.

    Attributes:
        text: e.g. ``is a file, not a directory`` or ``is not writable by user pi``.
        anyone: no user could use it (a file in the way), not only this one.
    """

    text: str
    anyone: bool


def user_name() -> str:
    """The name of the user this process runs as (its uid when it has no name)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _exists(path: Path) -> bool:
    """True if ``path`` exists; PermissionError when a parent cannot be searched."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def dir_problem(path: Path, *, write: bool) -> DirProblem | None:
    """Why ``path`` cannot serve as a directory this user reads (and, with ``write``, writes).

    None when it can. A directory that does not exist yet is fine when it could be created:
    its nearest existing parent is a directory (this user may write, with ``write``). The
    permission bits are asked of the kernel (access(2)), so root passes them as it should; a
    file in the way or a read-only file system fails for every user.
    """
    path = Path(os.path.abspath(path))
    user = user_name()
    mode = os.R_OK | os.X_OK | (os.W_OK if write else 0)
    need = "writable" if write else "readable"
    try:
        if _exists(path):
            if not path.is_dir():
                return DirProblem("is a file, not a directory", anyone=True)
            if write and _read_only(path):
                return DirProblem("is on a read-only file system", anyone=True)
            if not os.access(path, mode):
                return DirProblem(f"is not {need} by user {user}", anyone=False)
            return None
        parent = path.parent
        while parent != parent.parent and not _exists(parent):
            parent = parent.parent
    except PermissionError:
        return DirProblem(
            f"cannot be reached: a parent directory is not searchable by user {user}",
            anyone=False,
        )
    if not parent.is_dir():
        how = "cannot be created" if write else "cannot exist"
        return DirProblem(f"{how}: {parent} is a file, not a directory", anyone=True)
    if not write:
        return None  # nothing there yet to read
    if _read_only(parent):
        return DirProblem(f"cannot be created: {parent} is on a read-only file system", True)
    if not os.access(parent, os.W_OK | os.X_OK):
        return DirProblem(f"cannot be created: {parent} is not writable by user {user}", False)
    return None


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
