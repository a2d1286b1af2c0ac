"""The traffic monitor's records, text format, bounded buffer and rotating trace file.

Every transaction the arbiter runs becomes one :class:`TrafficRecord`, handed to listeners on
the bus thread. The listeners here must never slow the bus: :class:`TrafficMonitor` only
appends to a bounded buffer (dropping the oldest line and counting the drop), and
:class:`TraceWriter` writes a few short lines to a file that it rotates at a stated size.

Text format (the monitor's "save" and ``--trace``), one line per frame::

    00:31:02.123  STALE id   1       len   5  01 03 02 00 00   flushed before the request
    00:31:02.125  TX    id   1 fc 03 len   8  01 03 0C 25 00 04 54 ED
    00:31:02.151  RX    id   1 fc 03 len  13  01 03 08 ...   ok 26.1 ms

Time is local wall time with milliseconds (TX: when the request went out; RX: when the reply
ended). The RX result is ``ok``, ``exception 02 illegal data address``, ``CRC error``,
``wrong id N``, ``timeout`` or ``late reply``; the problem outcomes are the ones a screen marks.
"""

from __future__ import annotations

import collections
import datetime as _dt
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from emtui.core.bus.link import Outcome

__all__ = [
    "PROBLEM_OUTCOMES",
    "TRACE_MAX_BYTES",
    "TraceWriter",
    "TrafficMonitor",
    "TrafficRecord",
    "add_process_listener",
    "format_record",
    "process_listeners",
    "remove_process_listener",
]

#: A trace file is rotated (to FILE.1, replacing an older FILE.1) when it reaches this size.
TRACE_MAX_BYTES = 10 * 1024 * 1024

#: Outcomes a screen highlights.
PROBLEM_OUTCOMES = frozenset({Outcome.CRC, Outcome.WRONG_ID, Outcome.EXCEPTION, Outcome.TIMEOUT})

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    """One transaction as the traffic monitor shows it.

    Attributes:
        time: wall time (``time.time()``) when the transaction ended.
        device_id: the id the request went to (a late reply: the id it came from).
        sent: the request frame as sent (empty for a late reply).
        received: every byte received for it.
        outcome: how it ended.
        rtt: seconds from the start of sending to the end of the reply (or of waiting).
        exception_code: the Modbus exception code of an exception reply.
        function: the request's function code (0 when unknown).
        stale: bytes flushed from the line before the request went out.
        other_id: the id a wrong-id reply came from.
    """

    time: float
    device_id: int
    sent: bytes
    received: bytes
    outcome: Outcome
    rtt: float
    exception_code: int | None = None
    function: int = 0
    stale: bytes = b""
    other_id: int | None = None


TrafficListener = Callable[[TrafficRecord], None]

_PROCESS_LISTENERS: list[TrafficListener] = []
_PROCESS_LOCK = threading.Lock()


def add_process_listener(listener: TrafficListener) -> None:
    """Give ``listener`` the traffic of every arbiter created from now on in this process
    (``--trace`` and ``-v`` use it, so every command and the app are traced alike)."""
    with _PROCESS_LOCK:
        _PROCESS_LISTENERS.append(listener)


def remove_process_listener(listener: TrafficListener) -> None:
    """Stop giving ``listener`` to new arbiters."""
    with _PROCESS_LOCK:
        if listener in _PROCESS_LISTENERS:
            _PROCESS_LISTENERS.remove(listener)


def process_listeners() -> list[TrafficListener]:
    """The listeners a new arbiter starts with."""
    with _PROCESS_LOCK:
        return list(_PROCESS_LISTENERS)


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


def _clock(moment: float, tz: _dt.tzinfo | None = None) -> str:
    return _dt.datetime.fromtimestamp(moment, tz).strftime("%H:%M:%S.%f")[:-3]


def result_text(record: TrafficRecord) -> str:
    """The RX line's result: ``ok``, ``exception 02 illegal data address``, ``CRC error``..."""
    outcome = record.outcome
    if outcome is Outcome.OK:
        return "ok"
    if outcome is Outcome.EXCEPTION:
        code = record.exception_code or 0
        return f"exception {code:02d} {_EXCEPTION_NAMES.get(code, 'unknown')}"
    if outcome is Outcome.CRC:
        return "CRC error"
    if outcome is Outcome.WRONG_ID:
        other = record.other_id
        if other is None and record.received:
            other = record.received[0]
        return f"wrong id {other}" if other is not None else "wrong id"
    if outcome is Outcome.TIMEOUT:
        return f"timeout ({len(record.received)} bytes)" if record.received else "timeout"
    if outcome is Outcome.LATE:
        return "late reply"
    return outcome.value


def _function(record: TrafficRecord, frame: bytes) -> int | None:
    if record.function:
        return record.function
    if len(frame) >= 2:
        return frame[1] & 0x7F
    return None


def _line(
    moment: float,
    direction: str,
    device_id: int,
    fc: int | None,
    data: bytes,
    tz: _dt.tzinfo | None = None,
) -> str:
    function = f"fc {fc:02d}" if fc is not None else "     "
    return (
        f"{_clock(moment, tz)}  {direction:<5} id {device_id:>3} {function} len {len(data):>3}  "
        + (_hex(data))
    )


def format_record(record: TrafficRecord, tz: _dt.tzinfo | None = None) -> list[str]:
    """The text lines of one record: STALE (if any), TX (unless late), RX with the result.

    Times are in ``tz`` (None: the local time zone)."""
    lines: list[str] = []
    start = record.time - record.rtt
    if record.stale:
        lines.append(
            _line(start, "STALE", record.device_id, None, record.stale, tz)
            + "   flushed before the request"
        )
    if record.sent:
        lines.append(
            _line(start, "TX", record.device_id, _function(record, record.sent), record.sent)
        )
    result = result_text(record)
    if record.outcome is not Outcome.LATE and record.rtt:
        result += f" {record.rtt * 1000:.1f} ms"
    rx_fc = _function(record, record.received)
    rx = _line(record.time, "RX", record.device_id, rx_fc, record.received, tz)
    lines.append(f"{rx}   {result}" if record.received else f"{rx}{result}")
    return lines


class TrafficMonitor:
    """A bounded buffer of traffic records: the newest ``maxlen`` kept, older ones dropped
    and counted, and every outcome counted per device (kept even for dropped records).

    Use :meth:`listener` as the arbiter's listener; it only appends under a lock.
    """

    def __init__(self, maxlen: int = 5000) -> None:
        self.maxlen = maxlen
        self._records: collections.deque[TrafficRecord] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.dropped = 0
        self.total = 0
        self._counts: collections.Counter[tuple[int, Outcome]] = collections.Counter()
        self.tz: _dt.tzinfo | None = None
        """The time zone of the text lines (None: local; tests and screenshots fix one)."""

    def listener(self, record: TrafficRecord) -> None:
        """Take one record (called on the bus thread)."""
        with self._lock:
            if len(self._records) == self.maxlen:
                self.dropped += 1
            self._records.append(record)
            self.total += 1
            self._counts[(record.device_id, record.outcome)] += 1

    def snapshot(self) -> tuple[int, list[TrafficRecord]]:
        """(records taken since the start, the kept records oldest first), consistently: the
        last ``total - seen`` kept records are the ones new since a reader saw ``seen``."""
        with self._lock:
            return self.total, list(self._records)

    def clear(self) -> None:
        """Forget the kept records (the counts stay)."""
        with self._lock:
            self._records.clear()

    def count(self, outcome: Outcome, device_id: int | None = None) -> int:
        """Records with ``outcome`` (of ``device_id``, or of every device) since the start."""
        with self._lock:
            return sum(
                n
                for (dev, out), n in self._counts.items()
                if out is outcome and (device_id is None or dev == device_id)
            )

    def records(
        self, device_id: int | None = None, outcomes: Iterable[Outcome] | None = None
    ) -> list[TrafficRecord]:
        """The kept records, oldest first, of ``device_id`` and ``outcomes`` (None: all)."""
        wanted = frozenset(outcomes) if outcomes is not None else None
        with self._lock:
            kept = list(self._records)
        return [
            r
            for r in kept
            if (device_id is None or r.device_id == device_id)
            and (wanted is None or r.outcome in wanted)
        ]

    def lines(
        self, device_id: int | None = None, outcomes: Iterable[Outcome] | None = None
    ) -> list[str]:
        """The kept records as text lines (see the module's format)."""
        return [
            line for r in self.records(device_id, outcomes) for line in format_record(r, self.tz)
        ]

    def save(
        self,
        path: Path,
        device_id: int | None = None,
        outcomes: Iterable[Outcome] | None = None,
    ) -> int:
        """Write the kept (filtered) records to ``path`` as text for a support ticket; a
        header line says how many older records were dropped. Returns the records written."""
        records = self.records(device_id, outcomes)
        header = (
            f"# emtui traffic: {len(records)} record(s)"
            + (f", id {device_id}" if device_id is not None else "")
            + (f"; {self.dropped} older record(s) dropped" if self.dropped else "")
        )
        lines = (line for r in records for line in format_record(r, self.tz))
        text = "\n".join([header, *lines]) + "\n"
        path.write_text(text, encoding="utf-8")
        return len(records)


class TraceWriter:
    """Writes every record's text lines to ``path``, rotating it at ``max_bytes``.

    At the size the file is renamed to ``path.1`` (replacing an older one) and a new one is
    started, so a trace never holds more than about ``2 × max_bytes`` on disk.
    """

    def __init__(self, path: Path, max_bytes: int = TRACE_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()

    def listener(self, record: TrafficRecord) -> None:
        """Write one record (called on the bus thread); an OS error stops the trace, never
        the bus."""
        text = "".join(line + "\n" for line in format_record(record))
        with self._lock:
            if self._file.closed:
                return
            try:
                if self._size and self._size + len(text) > self.max_bytes:
                    self._rotate()
                self._file.write(text)
                self._file.flush()
                self._size += len(text.encode("utf-8"))
            except OSError:
                self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


class StderrTrace:
    """``-v``: every record's lines to a text stream (stderr), for CLI commands only."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def listener(self, record: TrafficRecord) -> None:
        """Print one record."""
        text = "".join(line + "\n" for line in format_record(record))
        with self._lock:
            self._stream.write(text)  # type: ignore[attr-defined]
            self._stream.flush()  # type: ignore[attr-defined]
