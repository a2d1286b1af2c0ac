"""Serial ports on this machine: what exists, and who holds one.

A technician who typed the wrong port needs the list of ports that do exist, with the USB
vendor/product ids that tell an RS-485 adapter from a modem and the stable
``/dev/serial/by-id/…`` names that survive a reboot.
"""

from __future__ import annotations

import os
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

    def describe(self) -> str:
        """One line for a listing."""
        ids = f" [{self.vid:04x}:{self.pid:04x}]" if self.vid is not None and self.pid else ""
        line = f"{self.device}{ids} {self.description}".rstrip()
        for name in self.by_id:
            line += f"\n      {name}"
        return line


def _by_id_names() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    if BY_ID.is_dir():
        for link in sorted(BY_ID.iterdir()):
            target = os.path.realpath(link)
            names.setdefault(target, []).append(str(link))
    return names


def list_serial_ports() -> list[PortInfo]:
    """The serial ports pyserial can see, with their by-id names."""
    by_id = _by_id_names()
    ports = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        real = os.path.realpath(p.device)
        ports.append(
            PortInfo(
                device=p.device,
                vid=p.vid,
                pid=p.pid,
                description=p.description if p.description != "n/a" else "",
                by_id=tuple(by_id.get(real, [])),
            )
        )
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
