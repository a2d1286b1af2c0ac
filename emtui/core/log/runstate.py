"""What a running logger shares with other processes: its port locks and its status file.

Two programs on one bus would interleave requests and corrupt each other's replies; the
locks make the second one stop with "in use by PID …". A serial device is locked by the
device itself (opened exclusively); a network connection (``socket://``, ``tcp://``) has no
such thing, so :class:`ConnectionLock` locks its host and port in a machine-wide directory
that every emtui process sees. The status file lets ``emtui status`` and the TUI show a
running logger's rows, errors, queue and uploads without talking to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import pwd
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Self

from emtui.core.bus.link import ConnectionSettings, PortBusy
from emtui.core.bus.ports import _comm, _lock_holder
from emtui.core.durable import atomic_write_bytes

#: Where connection locks live, first usable wins. /run/lock is the FHS place for lock files:
#: a tmpfs that is world-writable with the sticky bit (mode 1777) on Debian and Raspberry Pi OS,
#: so root and any other user can create a lock there, and the choice is the same for every
#: user (it depends only on the directory's mode, not on who asks). /tmp would not do first:
#: the service unit runs with PrivateTmp=yes, so the logger's /tmp is not the technician's.
#: /tmp is the last resort on systems without a world-writable /run/lock.
LOCK_DIRS = (Path("/run/lock"), Path("/var/lock"), Path("/tmp"))

STATUS_FILE = "status.json"


def _slug(port: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", port).strip("_") or "port"


class PidLock:
    """An exclusive flock on ``path`` holding the owner's PID (the kernel releases it when
    the process dies, even by kill -9): the one mechanism of :class:`PortLock` and the
    data-dir lock.

    Args:
        path: the lock file (its folder is created).
        busy: the exception to raise, given the holder's PID as text.
    """

    def __init__(self, path: Path, busy: Callable[[str], Exception]) -> None:
        self.path = path
        self._busy = busy
        self._fd: int | None = None

    def acquire(self) -> Self:
        """Take the lock or raise the ``busy`` exception naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise self._busy(holder) from None
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

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class PortLock(PidLock):
    """An exclusive lock on a bus, held for the life of a logger (or any exclusive user).

    The lock is a file in the state directory named after the port (:class:`PidLock`).
    """

    def __init__(self, state_dir: Path, port: str) -> None:
        super().__init__(
            state_dir / f"lock-{_slug(port)}",
            lambda holder: PortBusy(
                f"{port}: in use by PID {holder} (an emtui logger); "
                "stop it first (systemctl stop emtui, if it runs as the service)"
            ),
        )
        self.port = port


def _command_line() -> str:
    """``emtui --log``, ``emtui scan``…: what the lock's holder is, for the busy message."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if "--log" in sys.argv[1:]:
        return f"{program} --log"
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    return f"{program} {command}".strip()


def lock_dir() -> Path:
    """The machine-wide directory for connection locks (see :data:`LOCK_DIRS`)."""
    for candidate in LOCK_DIRS:
        try:
            mode = candidate.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) and mode & 0o1777 == 0o1777:
            return candidate
    return LOCK_DIRS[-1]


def connection_key(settings: ConnectionSettings) -> str | None:
    """``HOST:PORT`` of a network connection (the same for socket:// and tcp://, and for
    ``localhost`` and 127.0.0.1); None for a serial device, which locks itself."""
    if settings.kind == "serial":
        return None
    rest = settings.port.split("://", 1)[1].split("?", 1)[0].rstrip("/")  # pyserial options
    host, _, port = rest.rpartition(":")
    host = host.strip("[]").lower()
    if host == "localhost":
        host = "127.0.0.1"
    with contextlib.suppress(ValueError):
        host = ipaddress.ip_address(host).compressed
    return f"{host}:{port}"


class ConnectionLock:
    """An exclusive lock on a network connection, for every emtui process on the machine.

    Held by the bus arbiter while it runs, so ``emtui scan`` cannot talk through the gateway a
    logger polls (both would get wrong answers), whatever their ``--state-dir``. The lock is
    a flock on ``emtui-<host>_<port>.lock`` in :func:`lock_dir` (released by the kernel when
    the process dies, even by kill -9), which holds the owner's PID and command.
    """

    def __init__(self, settings: ConnectionSettings, directory: Path | None = None) -> None:
        key = connection_key(settings)
        if key is None:
            raise ValueError(f"{settings.port} is a serial device: it locks itself")
        self.port = settings.port
        self.path = (directory or lock_dir()) / f"emtui-{_slug(key)}.lock"
        self._fd: int | None = None

    def _open(self) -> tuple[int, bool]:
        """Open the lock file (creating it readable and writable for every user); returns
        the fd and whether it is writable. Never O_CREAT on an existing file: in a sticky
        directory the kernel (fs.protected_regular) refuses that for another user's file."""
        while True:
            try:
                return os.open(self.path, os.O_RDWR), True
            except PermissionError:
                return os.open(self.path, os.O_RDONLY), False
            except FileNotFoundError:
                pass
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue  # another process made it just now
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o666)  # past the umask: the next user may be someone else
            return fd, True

    def acquire(self) -> ConnectionLock:
        """Take the lock or raise PortBusy naming the holder (exit code 3)."""
        while True:
            try:
                fd, writable = self._open()
            except OSError as exc:
                raise PortBusy(
                    f"{self.port}: cannot create the lock {self.path} ({exc.strerror or exc}); "
                    "check that directory's permissions"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                self._busy(fd)
            # The holder before us removes the file on release: if it did between our open
            # and our flock, we hold a lock on a file nobody else will find; start again.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                os.close(fd)
                continue
            if os.fstat(fd).st_ino != current.st_ino:
                os.close(fd)
                continue
            break
        if writable:
            command = _command_line()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode(), 0)
        self._fd = fd
        return self

    def _busy(self, fd: int) -> None:
        recorded = os.pread(fd, 256, 0).decode(errors="replace").split("\n")
        os.close(fd)
        pid = _lock_holder(str(self.path)) or recorded[0].strip() or "?"
        what = recorded[1].strip() if len(recorded) > 1 and recorded[0].strip() == pid else ""
        raise PortBusy(
            f"{self.port}: in use by PID {pid} ({what or _comm(pid)}); "
            "stop it (or its service) and try again"
        )

    def release(self) -> None:
        """Drop the lock and remove its file (while still holding it, so nobody who opened it
        meanwhile believes they hold the lock: they find the file gone and start again)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):  # another user's file in the sticky dir: keep it
                self.path.unlink()
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ConnectionLock:
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
