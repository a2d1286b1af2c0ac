"""The daily CSV files of the logger (design §8): one writer per meter, crash-safe, append-only.

Why this module exists: the logger runs unattended on a Raspberry Pi for months, on an SD
card, with power cuts, a clock that is wrong until NTP syncs, and disks that fill up. The CSV
files are the product: the upload queue ships them and people open them in spreadsheets, so
every file must parse with :mod:`csv` at any moment and hold whole rows only. Keeping that
contract (columns, full-precision numbers, file naming, repair after a crash, what happens on
a full disk or a clock step) in one small module without Textual or Rich means the headless
logger, the tests and the upload verifier all share one definition of "a good file".

The contract (design §8), exactly:

* ``<data_dir>/meter_<id>/meter_<id>_<YYYY-MM-DD>.csv``, named by the LOCAL date of the
  sample time; the header is written once, when the file is created.
* Columns ``timestamp`` (ISO-8601 with milliseconds and UTC offset), ``epoch`` (seconds with
  three decimals), ``status`` (``ok``, ``partial``, ``timeout``, ``exception:NN``, ``error``),
  then one column per logged entry named by the entry's ``name``; a ``pf4q`` entry is followed
  by ``<name>_lead_lag`` (``lagging``, ``leading``, ``unity`` or empty).
* Numbers at full precision: floats as Python's shortest round-trip ``repr``, ints as ints,
  strings as they are (csv quoting); a missing value is an empty cell. Nothing is rounded.

Departure from design §8, documented here: clock trouble is recorded in ONE extra trailing
column named ``clock``, empty when the clock looks fine, otherwise ``;``-separated flags
(``unsynced``, ``stepped_back``, ``stepped``) computed by :class:`ClockWatch`. It is the last
column so "timestamp, epoch, status, then the values" still holds for every reader that
indexes from the left. The logger computes the flags and passes them to
:meth:`MeterCsvWriter.write`.

Crash safety and SD-card wear:

* A row is encoded in full and written with ONE ``os.write`` to a descriptor opened
  ``O_WRONLY | O_APPEND | O_CREAT``, so the page cache holds every row the moment ``write``
  returns (a killed process loses nothing) and a power cut leaves at most one torn last line.
  ``os.fsync`` runs at most every ``fsync_interval`` seconds, on a day change and on close;
  the directory is fsynced when a file is created.
* A row is one physical line: carriage returns and newlines inside string values are written
  as spaces, so the last ``\\n`` of a file is always a row boundary.
* When an existing file is opened and does not end with ``\\n``, the torn tail is copied to
  ``<file>.torn-<n>`` (first free ``n``; earlier fragments are never overwritten) and the file
  is truncated to its last complete line.
* A file whose header differs from the columns about to be written (the map or the logged set
  changed) is left alone; the writer uses the first of ``meter_<id>_<date>_2.csv``, ``_3``, …
  whose header matches or which does not exist. A day the upload queue has already taken
  (``is_day_closed``) is never reopened: rows for it (the clock jumped back) go to the first
  suffix file that does not exist yet.
* A full disk (``ENOSPC``, ``EDQUOT``) or any other ``OSError`` never raises out of
  :meth:`MeterCsvWriter.write`: the row is counted in ``rows_lost``, ``last_error`` says so
  loudly, and the next row tries again (writing resumes by itself when space returns). A short
  write is truncated back, so only whole rows remain.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import io
import itertools
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from emtui.core.durable import fsync_dir, write_new_file

if TYPE_CHECKING:  # the reader pulls in the Modbus stack; the writer needs only the shapes
    from emtui.core.bus.reader import Sample
    from emtui.core.maps.registers import RegisterEntry

__all__ = [
    "CLOCK_COLUMN",
    "FIXED_COLUMNS",
    "MIN_PLAUSIBLE_YEAR",
    "ClockWatch",
    "MeterCsvWriter",
    "clock_synchronised",
    "csv_columns",
    "cut_torn_tail",
    "day_file_path",
]

log = logging.getLogger(__name__)

#: The columns every file starts with.
FIXED_COLUMNS: tuple[str, ...] = ("timestamp", "epoch", "status")
#: The trailing clock-flags column (the documented departure from design §8).
CLOCK_COLUMN = "clock"
#: A wall clock before this year is certainly not synchronised (a Pi without RTC boots at an
#: old date until NTP or fake-hwclock sets it).
MIN_PLAUSIBLE_YEAR = 2024

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_CHUNK = 65536


def csv_columns(entries: Sequence[RegisterEntry]) -> list[str]:
    """The header of a file logging ``entries``, in order.

    Raises:
        ValueError: two columns would have the same name (an entry named like a fixed
            column, or twice in ``entries``).
    """
    columns = list(FIXED_COLUMNS)
    for entry in entries:
        columns.append(entry.name)
        if entry.type == "pf4q":
            columns.append(f"{entry.name}_lead_lag")
    columns.append(CLOCK_COLUMN)
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise ValueError(f"CSV column {name!r} would appear twice")
        seen.add(name)
    return columns


def day_file_path(data_dir: Path, device_id: int, day: date, n: int = 1) -> Path:
    """Where meter ``device_id``'s file number ``n`` (1 = no suffix) for ``day`` lives."""
    suffix = "" if n == 1 else f"_{n}"
    return data_dir / f"meter_{device_id}" / f"meter_{device_id}_{day.isoformat()}{suffix}.csv"


def _cell(value: object) -> str:
    """The CSV text of a decoded value: full precision, never rounded; None is empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return float.__repr__(value)  # shortest text that reads back as the same float
    if isinstance(value, int):
        return int.__repr__(value)
    return _one_line(str(value))


def _one_line(text: str) -> str:
    """``text`` with CR/LF as spaces: a row must be one physical line for torn-tail repair."""
    if "\n" in text or "\r" in text:
        return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return text


def _local_time(millis: int, tz: tzinfo | None) -> datetime:
    """The aware local time of epoch ``millis`` in ``tz`` (None: the system's local zone)."""
    seconds, ms = divmod(millis, 1000)
    utc = datetime.fromtimestamp(seconds, UTC).replace(microsecond=ms * 1000)
    return utc.astimezone(tz)


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """Exactly ``size`` bytes at ``offset`` (fewer only at end of file)."""
    parts: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _end_of_last_line(fd: int, size: int) -> int:
    """The length of the file up to and including its last ``\\n`` (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        at = _pread_all(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _save_torn(path: Path, torn: bytes) -> Path:
    """Keep a torn fragment in the first free ``<path>.torn-<n>``, durably."""
    n = 1
    while True:
        aside = path.with_name(f"{path.name}.torn-{n}")
        try:
            write_new_file(aside, torn)
        except FileExistsError:
            n += 1
            continue
        break
    fsync_dir(path.parent, strict=False)
    return aside


def cut_torn_tail(path: Path, fd: int | None = None) -> tuple[int, Path | None]:
    """Cut a torn last line (a crash mid-row) off ``path`` and keep it in ``<path>.torn-<n>``.

    ``fd`` is a writable descriptor of ``path`` (one is opened when None). Returns the size of
    the whole rows left and the file the fragment went to (None when nothing was torn).
    """
    own = fd is None
    if fd is None:
        fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, None
        rfd = os.open(path, os.O_RDONLY)
        try:
            if os.pread(rfd, 1, size - 1) == b"\n":
                return size, None
            keep = _end_of_last_line(rfd, size)
            torn = _pread_all(rfd, size - keep, keep)
        finally:
            os.close(rfd)
        aside = _save_torn(path, torn)
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        if own:
            os.close(fd)
    log.warning("%s ended in a torn line; %d byte(s) moved to %s", path, len(torn), aside.name)
    return keep, aside


class MeterCsvWriter:
    """Appends one meter's samples to its daily CSV files (module docstring: the contract).

    Args:
        data_dir: the logger's data directory; files go to ``data_dir/meter_<id>/``.
        device_id: the meter's slave id.
        map_name: the register map the entries come from (for messages).
        entries: the logged entries, in column order.
        fsync_interval: seconds between fsyncs of the open file (0: after every row).
        tz: the zone whose local date names the files and whose offset the timestamps show;
            None is the system's local zone.
        is_day_closed: True when the upload queue already holds a day; such a day is never
            reopened.
        on_day_closed: called with the file and day the writer leaves when a row for a later
            day arrives (after that file is fsynced and closed). An exception from it is
            logged and kept in ``last_error``; it never costs a row.
        monotonic: the clock that paces fsyncs (injectable).

    Raises:
        ValueError: two columns would have the same name.
    """

    def __init__(
        self,
        data_dir: Path,
        device_id: int,
        map_name: str,
        entries: Sequence[RegisterEntry],
        *,
        fsync_interval: float = 5.0,
        tz: tzinfo | None = None,
        is_day_closed: Callable[[date], bool] | None = None,
        on_day_closed: Callable[[Path, date], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.device_id = device_id
        self.map_name = map_name
        self.entries: tuple[RegisterEntry, ...] = tuple(entries)
        self.columns: tuple[str, ...] = tuple(csv_columns(self.entries))
        self.directory = self.data_dir / f"meter_{device_id}"
        self.fsync_interval = fsync_interval
        self.tz = tz
        self.is_day_closed = is_day_closed
        self.on_day_closed = on_day_closed
        self._monotonic = monotonic
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self.header: bytes = self._encode(list(self.columns))
        self._fd: int | None = None
        self._path: Path | None = None
        self._day: date | None = None
        self._size = 0  # bytes of whole rows in the open file: where a short write goes back to
        self._dirty = False  # rows written since the last fsync
        self._last_sync = monotonic()
        self._left_days: set[date] = set()  # days handed to on_day_closed by this writer
        self._rows_written = 0
        self._rows_lost = 0
        self._torn_repaired = 0
        self._failing = False
        self._last_error: str | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def rows_written(self) -> int:
        """Rows written since the writer was made."""
        return self._rows_written

    @property
    def rows_lost(self) -> int:
        """Rows that could not be written (full disk, I/O error)."""
        return self._rows_lost

    @property
    def torn_repaired(self) -> int:
        """Torn last lines this writer found, moved aside and cut off."""
        return self._torn_repaired

    @property
    def last_error(self) -> str | None:
        """The latest error, e.g. ``disk full writing …: 12 row(s) lost so far``.

        It stays after writing resumes (see :attr:`failing`), so a short outage is not hidden.
        """
        return self._last_error

    @property
    def failing(self) -> bool:
        """True while the latest row could not be written."""
        return self._failing

    @property
    def current_path(self) -> Path | None:
        """The file rows currently go to (None before the first row)."""
        return self._path

    # -- writing -------------------------------------------------------------------------------

    def write(self, sample: Sample, flags: str = "") -> bool:
        """Append one row for ``sample`` with clock ``flags``; never raises an OSError.

        Returns:
            True when the row is in the file (in the page cache; fsynced on the interval);
            False when it could not be written: it is counted in ``rows_lost`` and
            ``last_error`` says why, and the next call tries again.
        """
        millis = round(sample.time * 1000)
        stamp = _local_time(millis, self.tz)
        line = self._encode(self._cells(sample, stamp, millis, flags))
        day = stamp.date()
        try:
            if day != self._day:
                self._change_day(day)
            fd = self._fd if self._fd is not None else self._open()
            self._append(fd, line)
        except OSError as exc:
            self._lose(exc)
            return False
        self._rows_written += 1
        self._dirty = True
        if self._failing:
            self._failing = False
            log.warning(
                "meter %d: writing %s again; %d row(s) lost in all",
                self.device_id,
                self._path,
                self._rows_lost,
            )
        if self._monotonic() - self._last_sync >= self.fsync_interval:
            self._sync()
        return True

    def close(self) -> None:
        """Fsync and close the open file (the writer reopens it if written to again)."""
        self._close_fd(sync=True)

    def __enter__(self) -> MeterCsvWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- rows ----------------------------------------------------------------------------------

    def _encode(self, cells: list[str]) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(cells)
        return self._buffer.getvalue().encode("utf-8", "replace")

    def _cells(self, sample: Sample, stamp: datetime, millis: int, flags: str) -> list[str]:
        cells = [
            stamp.isoformat(timespec="milliseconds"),
            f"{millis / 1000:.3f}",
            _one_line(sample.status),
        ]
        values = sample.values
        for entry in self.entries:
            value = values.get(entry.name)
            cells.append(_cell(value.value if value is not None else None))
            if entry.type == "pf4q":
                lead_lag = value.lead_lag if value is not None else None
                cells.append(_one_line(lead_lag or ""))
        cells.append(_one_line(flags))
        return cells

    # -- files ---------------------------------------------------------------------------------

    def _change_day(self, day: date) -> None:
        """Leave the current day's file for ``day``'s; tell the queue when moving forward."""
        left_day, left_path = self._day, self._path
        self._close_fd(sync=True)
        self._day, self._path = day, None
        if left_day is None or left_path is None or day < left_day:
            return
        if self.on_day_closed is not None:
            self._left_days.add(left_day)
            try:
                self.on_day_closed(left_path, left_day)
            except Exception as exc:  # the queue's trouble must not cost rows
                self._last_error = f"on_day_closed({left_path}) failed: {exc!r}"
                log.exception("meter %d: on_day_closed(%s) failed", self.device_id, left_path)

    def _open(self) -> int:
        """Open (creating or repairing as needed) the file for the current day."""
        assert self._day is not None
        if self._path is not None:  # reopening after an error: same file, never a new suffix
            fd = self._adopt(self._path)
            if fd is not None:
                self._fd = fd
                return fd
            self._path = None
        day = self._day
        closed = self._is_closed(day)
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.data_dir, strict=False)
        for n in itertools.count(1):
            path = day_file_path(self.data_dir, self.device_id, day, n)
            if closed and path.exists():
                continue
            fd = self._adopt(path)
            if fd is not None:
                self._path, self._fd = path, fd
                if n > 1:
                    log.info("meter %d: rows for %s go to %s", self.device_id, day, path.name)
                return fd
        raise AssertionError("unreachable")  # pragma: no cover - count() never ends

    def _is_closed(self, day: date) -> bool:
        """Whether ``day`` is queued already (or handed over by this writer): never reopen it.

        When the queue cannot answer, the day counts as closed: an extra suffix file is
        harmless, appending to a file the queue may have sent is not.
        """
        if day in self._left_days:
            return True
        if self.is_day_closed is None:
            return False
        try:
            return self.is_day_closed(day)
        except Exception as exc:
            self._last_error = f"is_day_closed({day}) failed: {exc!r}"
            log.exception("meter %d: is_day_closed(%s) failed", self.device_id, day)
            return True

    def _adopt(self, path: Path) -> int | None:
        """An append descriptor on ``path`` if rows with our columns may go there, else None.

        Creates the file (with header) when missing, repairs a torn tail, and refuses a file
        whose header is not ours.
        """
        self._path = path  # a header that cannot be written is retried on this same file
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = self._repair(path, fd)
            if size == 0:
                self._size = 0
                self._append(fd, self.header)
                os.fsync(fd)
                fsync_dir(path.parent, strict=False)
            elif not self._has_our_header(path):
                os.close(fd)
                return None
            else:
                self._size = size
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _has_our_header(self, path: Path) -> bool:
        with path.open("rb") as f:
            return f.read(len(self.header)) == self.header

    def _repair(self, path: Path, fd: int) -> int:
        """Cut a torn last line off ``path`` (see :func:`cut_torn_tail`); the whole-row size."""
        keep, aside = cut_torn_tail(path, fd)
        if aside is not None:
            self._torn_repaired += 1
        return keep

    def _append(self, fd: int, data: bytes) -> None:
        """Write ``data`` with one ``os.write``; a short write is cut back and raised."""
        written = os.write(fd, data)
        if written != len(data):
            with contextlib.suppress(OSError):  # if it fails, the reopen repairs the tail
                os.ftruncate(fd, self._size)
            raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes, disk full?)")
        self._size += written

    def _sync(self) -> None:
        """Fsync the open file; a failure is reported and the file reopened on the next row."""
        if self._fd is None:
            return
        try:
            if self._dirty:
                os.fsync(self._fd)
        except OSError as exc:
            self._last_error = f"fsync failed on {self._path}: {exc.strerror or exc}"
            # INFO, not ERROR: the owner reports last_error (the logger's report line), and
            # at ERROR the same failure reached stderr twice
            log.info("meter %d: %s", self.device_id, self._last_error)
            self._close_fd(sync=False)
            return
        self._dirty = False
        self._last_sync = self._monotonic()

    def _close_fd(self, *, sync: bool) -> None:
        if self._fd is None:
            return
        if sync:
            self._sync()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirty = False

    def _lose(self, exc: OSError) -> None:
        """Count a row that could not be written and say so loudly (once per outage in logs)."""
        self._rows_lost += 1
        where = self._path or self.directory
        if exc.errno in _DISK_FULL:
            message = f"disk full writing {where}"
        else:
            message = f"cannot write {where}: {exc.strerror or exc}"
        self._last_error = f"{message}: {self._rows_lost} row(s) lost so far"
        if not self._failing:  # INFO: the owner reports last_error (see _sync)
            log.info("meter %d: %s", self.device_id, self._last_error)
        self._failing = True
        self._close_fd(sync=False)  # the next row reopens (and repairs) the same file


# ---------------------------------------------------------------------------------------------
# the clock


class _Timex(ctypes.Structure):
    """The leading fields of Linux ``struct timex``; the tail is room for the rest."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_char * 512),
    ]


_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_SYNC_CACHE_SECONDS = 60.0
_sync_cache: tuple[float, bool | None] | None = None  # (monotonic time of the check, answer)


def _adjtimex_synchronised() -> bool | None:
    """The kernel's NTP state through a read-only ``adjtimex`` (modes 0: no root needed)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    timex = _Timex()
    state = int(adjtimex(ctypes.byref(timex)))
    if state < 0:
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def _timedatectl_synchronised() -> bool | None:
    """systemd's view (``timedatectl show -p NTPSynchronized``), when adjtimex is missing."""
    try:
        result = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=2.0,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    answer = result.stdout.strip()
    if result.returncode != 0 or answer not in ("yes", "no"):
        return None
    return answer == "yes"


def clock_synchronised() -> bool | None:
    """Whether the kernel clock is NTP-synchronised; None when it cannot be told.

    Asks the kernel with a read-only ``adjtimex`` (the ``STA_UNSYNC`` status bit; no root,
    no process), falling back to ``timedatectl``. The answer is cached for 60 seconds, so
    calling it for every row is cheap.
    """
    global _sync_cache
    now = time.monotonic()
    if _sync_cache is not None and now - _sync_cache[0] < _SYNC_CACHE_SECONDS:
        return _sync_cache[1]
    answer = _adjtimex_synchronised()
    if answer is None:
        answer = _timedatectl_synchronised()
    _sync_cache = (now, answer)
    return answer


class ClockWatch:
    """Flags clock trouble for the row being written: the ``clock`` column's text.

    Call :meth:`check` once per row. Flags, ``;``-separated, empty when the clock looks fine:

    * ``stepped_back``: the wall clock went backwards by more than ``back_tolerance`` seconds
      since the previous check, or the wall-minus-monotonic offset fell by more than
      ``step_tolerance`` seconds (a step back hidden by the time between rows).
      It stays on every row until the wall clock passes the latest time seen before the
      step (the high-water mark): those rows repeat timestamps already written.
    * ``stepped``: the offset grew by more than ``step_tolerance`` seconds (a forward step,
      e.g. NTP setting the clock after boot).
    * ``unsynced``: ``synced()`` says False, or the wall clock is before
      :data:`MIN_PLAUSIBLE_YEAR` (a Pi without RTC boots at an old date).

    Args:
        wall: the wall clock (epoch seconds).
        monotonic: a clock that never steps.
        synced: whether the clock is synchronised (None: unknown, not flagged).
    """

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        synced: Callable[[], bool | None] = clock_synchronised,
        *,
        back_tolerance: float = 1.0,
        step_tolerance: float = 2.0,
        min_year: int = MIN_PLAUSIBLE_YEAR,
    ) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self.synced = synced
        self.back_tolerance = back_tolerance
        self.step_tolerance = step_tolerance
        self.min_year = min_year
        self._previous: tuple[float, float] | None = None
        self._high_water: float | None = None  # the latest wall time seen
        self._behind = False  # stepped back and not yet past the high-water mark

    def check(self) -> str:
        """The flags for the row written now ("" when the clock looks fine)."""
        wall, mono = self.wall(), self.monotonic()
        flags: list[str] = []
        stepped_back = False
        if self._previous is not None:
            last_wall, last_mono = self._previous
            offset_change = (wall - mono) - (last_wall - last_mono)
            if wall < last_wall - self.back_tolerance or offset_change < -self.step_tolerance:
                stepped_back = self._behind = True
            elif offset_change > self.step_tolerance:
                flags.append("stepped")
        # After a step back every row up to the high-water mark repeats a timestamp already
        # written (possibly in the next day's file, when the step crossed midnight), so the
        # flag stays until the clock passes it, not only on the row where the step was seen.
        if self._behind and not stepped_back:
            assert self._high_water is not None
            self._behind = wall <= self._high_water
        if self._behind or stepped_back:
            flags.insert(0, "stepped_back")
        self._high_water = wall if self._high_water is None else max(self._high_water, wall)
        self._previous = (wall, mono)
        if self._implausible(wall) or self.synced() is False:
            flags.append("unsynced")
        return ";".join(flags)

    def _implausible(self, wall: float) -> bool:
        try:
            return datetime.fromtimestamp(wall, UTC).year < self.min_year
        except (OverflowError, OSError, ValueError):
            return True
