"""Serial ports on this machine: what exists, and who holds one.

A technician who typed the wrong port needs the list of ports that do exist, with the USB
vendor/product ids that tell an RS-485 adapter from a modem and the stable
``/dev/serial/by-id/…`` names that survive a reboot.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serial.tools import list_ports

BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True, slots=True)
class PortInfo:
    """One serial port: its device path, USB ids, description and stable by-id names."""

    device: str
    vid: int | None
    pid: int | None
    description: str
    by_id: tuple[str, ...]
    manufacturer: str = ""
    product: str = ""
    busy_by: Holder | None = None

    def describe(self) -> str:
        """One line for a listing."""
        ids = f" [{self.vid:04x}:{self.pid:04x}]" if self.vid is not None and self.pid else ""
        line = f"{self.device}{ids} {self.description}".rstrip()
        if self.busy_by is not None:
            line += f"  (in use by PID {self.busy_by.pid}: {self.busy_by.command})"
        for name in self.by_id:
            line += f"\n      {name}"
        return line

    def as_dict(self) -> dict[str, object]:
        """The JSON form of design §12 (``vid``/``pid`` as 4-digit hex text, or null)."""
        return {
            "device": self.device,
            "vid": f"{self.vid:04x}" if self.vid is not None else None,
            "pid": f"{self.pid:04x}" if self.pid is not None else None,
            "description": self.description,
            "manufacturer": self.manufacturer or None,
            "product": self.product or None,
            "by_id": list(self.by_id),
            "busy_by": (
                {"pid": self.busy_by.pid, "command": self.busy_by.command}
                if self.busy_by is not None
                else None
            ),
        }


@dataclass(frozen=True, slots=True)
class Holder:
    """A process that has a port open: its PID and command line."""

    pid: int
    command: str


def _by_id_names() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    if BY_ID.is_dir():
        for link in sorted(BY_ID.iterdir()):
            target = os.path.realpath(link)
            names.setdefault(target, []).append(str(link))
    return names


def list_serial_ports(extra: Sequence[str] = (), *, busy: bool = False) -> list[PortInfo]:
    """The serial ports pyserial can see, with their by-id names.

    Args:
        extra: more device paths to describe (a pty, a port pyserial does not list); each
            is listed once, even when pyserial lists it too.
        busy: also find the process holding each port (reads /proc; slower).
    """
    by_id = _by_id_names()
    ports = []
    seen: set[str] = set()
    found = sorted(list_ports.comports(), key=lambda p: p.device)
    for p in found:
        real = os.path.realpath(p.device)
        seen.add(real)
        ports.append(
            PortInfo(
                device=p.device,
                vid=p.vid,
                pid=p.pid,
                description=p.description if p.description != "n/a" else "",
                by_id=tuple(by_id.get(real, [])),
                manufacturer=p.manufacturer or "",
                product=p.product or "",
            )
        )
    for path in extra:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        ports.append(
            PortInfo(
                device=path, vid=None, pid=None, description="", by_id=tuple(by_id.get(real, []))
            )
        )
    if busy:
        holders = holders_of([p.device for p in ports])
        ports = [
            dataclasses.replace(p, busy_by=holders.get(os.path.realpath(p.device))) for p in ports
        ]
    return ports


def describe_missing_port(path: str) -> str:
    """The message for a port that does not exist: the ports that do."""
    ports = list_serial_ports()
    if not ports:
        return (
            f"{path}: no such port, and no serial ports were found. "
            "Is the USB RS-485 adapter plugged in? (check `dmesg | tail`)"
        )
    listing = "\n".join("  " + p.describe() for p in ports)
    return f"{path}: no such port. Serial ports on this machine:\n{listing}"


def _command_line(pid: str) -> str:
    """The process's command line (arguments joined by spaces), else its name."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _comm(pid)
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    return " ".join(words) if words else _comm(pid)


def holders_of(paths: Sequence[str]) -> dict[str, Holder]:
    """Real path → the process holding it, for those of ``paths`` that some process has open.

    The holder of an exclusive lock (pyserial's ``exclusive=True``) wins; otherwise the first
    process (lowest PID, not this one) found with the device among its /proc/PID/fd links.
    Processes of other users are invisible without root: their ports look free.
    """
    targets = {os.path.realpath(p): p for p in paths}
    out: dict[str, Holder] = {}
    for real, path in targets.items():
        locker = _lock_holder(path)
        if locker is not None:
            out[real] = Holder(int(locker), _command_line(locker))
    me = os.getpid()
    wanted = set(targets) - out.keys()
    if not wanted:
        return out
    pids = sorted(int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit())
    for pid in pids:
        if pid == me:
            continue
        try:
            links = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in links:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted and target not in out:
                out[target] = Holder(pid, _command_line(str(pid)))
        if wanted <= out.keys():
            break
    return out


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _lock_holder(path: str) -> str | None:
    """The PID holding a flock on ``path`` according to /proc/locks (pyserial's exclusive)."""
    try:
        st = os.stat(path)
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in locks.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 6784 00:19:4 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK":
            major, minor, inode = fields[5].split(":")
            if f"{int(major, 16):02x}:{int(minor, 16):02x}:{inode}" == wanted:
                return fields[4]
    return None


def who_holds(path: str) -> str | None:
    """``PID 1234 (emtui)`` for the process holding ``path``, or None if none is found.

    The process holding the exclusive lock wins; otherwise any process with it open.
    """
    pid = _lock_holder(path)
    if pid is not None:
        return f"PID {pid} ({_comm(pid)})"
    try:
        target = os.path.realpath(path)
    except OSError:
        return None
    me = os.getpid()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == me:
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.path.realpath(fd) == target:
                    return f"PID {pid_dir.name} ({_comm(pid_dir.name)})"
        except OSError:
            continue
    return None
