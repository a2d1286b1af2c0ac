"""A running logger's latest sample per meter, for any local user to read (design §11).

While ``emtui --log`` (the service) holds a bus, the app cannot poll it; instead it shows
what the logger read. The logger rewrites one small JSON file per connection after every
poll cycle, in a runtime folder that lives in memory (``/run/emtui`` for the service, else
``$XDG_RUNTIME_DIR/emtui``, else ``/dev/shm/emtui-<uid>``), never on the SD card, readable by
everyone (values, not secrets). The app looks in every such folder, whatever state dir either
side was started with, and believes a file only when its owner runs the PID it names.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from emtui.core.bus.reader import Sample
from emtui.core.bus.stats import DeviceStats
from emtui.core.durable import write_all
from emtui.core.maps.codec import Value

#: The service's runtime folder (systemd ``RuntimeDirectory=emtui``).
SYSTEM_RUNTIME_DIR = Path("/run/emtui")
#: Shared memory: in RAM on every Linux, the last resort when /run and XDG are not writable.
SHM = Path("/dev/shm")


def _slug(port: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", port).strip("_") or "port"


def runtime_dirs(env: dict[str, str] | None = None) -> list[Path]:
    """Every folder a logger may publish in, in the order a publisher prefers them."""
    env = dict(os.environ) if env is None else env
    dirs = [SYSTEM_RUNTIME_DIR]
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        dirs.append(Path(xdg) / "emtui")
    dirs.append(SHM / f"emtui-{os.getuid()}")
    return dirs


def reader_dirs() -> list[Path]:
    """Every folder a reader looks in: :func:`runtime_dirs` and other users' folders."""
    dirs = runtime_dirs()
    for root, pattern in ((Path("/run/user"), "*/emtui"), (SHM, "emtui-*")):
        try:
            found = sorted(root.glob(pattern))
        except OSError:
            found = []
        dirs.extend(p for p in found if p not in dirs)
    return dirs


def live_file_name(port: str) -> str:
    """The file name for connection ``port`` (a serial device by its real path, so
    ``/dev/serial/by-id/…`` and ``/dev/ttyUSB0`` name the same file)."""
    return f"live-{_slug(_canonical(port))}.json"


def _canonical(port: str) -> str:
    if "://" in port:
        return port
    return os.path.realpath(port)


def _json_number(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class LivePublisher:
    """Writes the live file of one connection (the logger calls :meth:`publish` per cycle).

    Args:
        port: the connection (names the file).
        description: how screens name the connection.
        interval: the logger's poll interval.
        directory: where to write; default the first usable of :func:`runtime_dirs`.
    """

    def __init__(
        self,
        port: str,
        description: str,
        interval: float,
        directory: Path | None = None,
    ) -> None:
        self.port = port
        self.description = description
        self.interval = interval
        self.path: Path | None = None
        candidates = [directory] if directory is not None else runtime_dirs()
        for folder in candidates:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                if os.access(folder, os.W_OK):
                    # readable by every local user: the app may run as another account
                    if folder.stat().st_uid == os.getuid():
                        folder.chmod(0o755)
                    self.path = folder / live_file_name(port)
                    break
            except OSError:
                continue
        self.error: str | None = None

    def publish(
        self,
        samples: Iterable[tuple[int, str, str, Sample | None]],
        stats: dict[int, DeviceStats],
        status_file: Path | None,
    ) -> None:
        """Replace the file with these samples: (id, label, map name, latest sample)."""
        if self.path is None:
            return
        meters = []
        for device_id, label, map_name, sample in samples:
            entry: dict[str, Any] = {"id": device_id, "label": label, "map": map_name}
            if sample is not None:
                entry.update(
                    time=sample.time,
                    status=sample.status,
                    duration=sample.duration,
                    link_error=sample.link_error,
                    values={
                        name: [_json_number(v.value), v.lead_lag]
                        for name, v in sample.values.items()
                    },
                    entry_status={k: s for k, s in sample.entry_status.items() if s != "ok"},
                )
            device_stats = stats.get(device_id)
            if device_stats is not None:
                entry["stats"] = device_stats.as_dict()
            meters.append(entry)
        document = {
            "pid": os.getpid(),
            "port": self.port,
            "description": self.description,
            "interval": self.interval,
            "updated": time.time(),
            "status_file": str(status_file) if status_file else None,
            "meters": meters,
        }
        data = json.dumps(document, allow_nan=False).encode()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            # readable by everyone before it appears under its name (whatever the umask);
            # in memory: no fsync, no SD wear
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.fchmod(fd, 0o644)
                write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self.error = None
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc}"

    def remove(self) -> None:
        """Delete the file (the logger stopped)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def find_live(port: str, dirs: Sequence[Path] | None = None) -> dict[str, Any] | None:
    """The newest live document of a running logger on ``port``, or None."""
    from emtui.core.log.runstate import pid_alive

    best: dict[str, Any] | None = None
    wanted = _canonical(port)
    for folder in dirs if dirs is not None else reader_dirs():
        path = folder / live_file_name(port)
        try:
            document = json.loads(path.read_text())
            owner = path.stat().st_uid
        except (OSError, ValueError):
            continue
        if not isinstance(document, dict) or _canonical(str(document.get("port"))) != wanted:
            continue
        pid = document.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            continue
        try:  # only the account running that logger may speak for it
            if Path(f"/proc/{pid}").stat().st_uid != owner:
                continue
        except OSError:
            continue
        document["path"] = str(path)
        if best is None or document.get("updated", 0) > best.get("updated", 0):
            best = document
    return best


def sample_from_live(meter: dict[str, Any]) -> Sample | None:
    """The :class:`Sample` a live document's meter entry describes (None: not read yet)."""
    if "time" not in meter:
        return None
    values = {name: Value(pair[0], pair[1]) for name, pair in dict(meter.get("values", {})).items()}
    statuses = {name: "ok" for name in values}
    statuses.update(dict(meter.get("entry_status", {})))
    return Sample(
        device_id=int(meter["id"]),
        time=float(meter["time"]),
        status=str(meter.get("status", "")),
        values=values,
        entry_status=statuses,
        duration=float(meter.get("duration", 0.0)),
        link_error=meter.get("link_error"),
    )


def stats_from_live(meter: dict[str, Any]) -> DeviceStats:
    """The link statistics of a live document's meter entry (counters and RTT quantiles)."""
    stats = DeviceStats()
    raw = meter.get("stats") or {}
    for key in ("requests", "ok", "timeouts", "crc_errors", "wrong_id", "skipped", "late"):
        setattr(stats, key, int(raw.get(key, 0)))
    for code, n in dict(raw.get("exceptions", {})).items():
        stats.exceptions[int(code)] = int(n)
    for key in ("rtt_p50_ms", "rtt_p99_ms"):
        if raw.get(key) is not None:
            stats.rtts.append(float(raw[key]) / 1000.0)
    return stats
