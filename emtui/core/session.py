"""One engine per connection: the arbiter, the live readers, the scanner and the logging worker.

The app, ``emtui --log`` and the commands each hold one :class:`BusSession`; the app is handed
it (tests hand it a scripted one with the same surface, :class:`Engine`), as a data source is
handed to a view. Everything on the bus goes through the session's one arbiter (design §3):

- **live polling** (the app with logging off): the meters' logged sets round-robin at the
  interval, one :class:`~emtui.core.bus.reader.Sample` per meter per poll;
- **logging** (``toggle_logging``): the same :class:`~emtui.core.log.worker.LoggingWorker` as
  ``emtui --log``; its samples replace live polling, so nothing is read twice;
- **extras**: the other registers a meter tab shows. At most one such request goes on the wire
  between two poll cycles, and only when the rest of the interval has room for it, so a
  logged row is never late by more than one request; :meth:`refresh_extras` reads them on
  demand;
- **scans**, which pause polling while they run.

Listeners are called on the session's threads; a UI must hand the samples over to its own
loop (Textual: ``post_message``) and never block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from emtui.core import clock as _clock
from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.link import ConnectionSettings, LinkError, PortBusy, Reply
from emtui.core.bus.planner import transaction_chars
from emtui.core.bus.reader import MeterReader, Sample
from emtui.core.bus.scanner import FoundDevice, Scanner, ScanReport
from emtui.core.bus.stats import DeviceStats
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.bus.writes import (
    AuditLog,
    WriteRefused,
    WriteRequest,
    WriteResult,
    check_allowed,
    send_write,
)
from emtui.core.clock import ClockReading
from emtui.core.config import Config, MeterConfig
from emtui.core.log.livefile import LivePublisher
from emtui.core.log.runstate import PidLock
from emtui.core.log.worker import LoggingWorker
from emtui.core.maps.registers import RegisterEntry, RegisterMap, load_map
from emtui.core.setup import SetupFailed, SetupPlan, SetupReport, commission

#: Groups a meter tab reads once (they do not change while the meter runs) and on demand.
STATIC_GROUPS = ("identity", "setup")
#: Room (s) an extra request needs beyond its own estimated cost before the next cycle starts.
EXTRA_SLACK = 0.02
#: Name of the lock file that keeps two loggers out of one data dir.
DATA_LOCK_FILE = ".emtui-logging.lock"

SampleListener = Callable[[Sample], object]
Confirm = Callable[[Sequence[str]], bool]
"""Shown a frame's lines, says whether to send it (the app asks the technician)."""
T = TypeVar("T")
#: Purposes of the command-interface writes in the audit log.
SETUP_PURPOSE = "command 5000 (setup)"
CLOCK_PURPOSE = "command 1003 (set date/time)"


class DataDirBusy(Exception):
    """Another logger writes into this data dir."""


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """What a screen needs to know about one configured meter.

    Attributes:
        id: slave id.
        label: the config's label, or ``meter <id>``.
        map: its register map.
        logged: the entries polled every cycle (the logged set).
        extras: the other entries its tab shows (read between cycles).
    """

    id: int
    label: str
    map: RegisterMap
    logged: tuple[RegisterEntry, ...]
    extras: tuple[RegisterEntry, ...]


@dataclass(slots=True)
class LoggingState:
    """What the logging panel shows (a snapshot; the worker keeps the live counters)."""

    running: bool = False
    started: float | None = None
    data_dir: str = ""
    state_dir: str = ""
    rows: int = 0
    rows_lost: int = 0
    files: dict[int, str] = field(default_factory=dict)
    queued: int = 0
    next_upload: float | None = None
    last_upload: str | None = None
    upload_target: str | None = None
    error: str | None = None
    held_by: int | None = None
    """PID of a headless logger that holds the bus (the app then only shows its figures)."""


class Engine(Protocol):
    """What the app drives: a :class:`BusSession`, or a scripted stand-in in tests."""

    meters: list[MeterInfo]
    settings: ConnectionSettings
    interval: float
    description: str
    read_only: bool
    """True for a view of a bus another process holds (nothing is sent on it)."""

    def add_listener(self, listener: SampleListener) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def stats(self, device_id: int) -> DeviceStats: ...
    def bus_load(self) -> float | None: ...
    def cycle_time(self) -> float | None: ...
    def set_focus(self, device_id: int | None) -> None: ...
    def refresh_extras(self, device_id: int, names: Sequence[str] | None = None) -> None: ...
    def extras_starved(self) -> bool: ...
    def scan(
        self,
        ids: Sequence[int],
        expected: Sequence[int],
        on_progress: Callable[[int, int, int], object],
        on_found: Callable[[FoundDevice], object],
    ) -> ScanReport: ...
    def cancel_scan(self) -> None: ...
    def scan_eta(self) -> float | None: ...
    def reconnect(self, settings: ConnectionSettings) -> None: ...
    def set_meters(self, meters: Sequence[MeterConfig]) -> None: ...
    def start_logging(self) -> LoggingState: ...
    def stop_logging(self) -> LoggingState: ...
    def logging_state(self) -> LoggingState: ...
    def upload_now(self) -> str: ...
    def read_raw(self, device_id: int, address: int, count: int, function: int = 3) -> Reply: ...
    def add_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None: ...
    def remove_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None: ...

    allow_writes: bool
    """Set by ``--allow-writes``: without it every write is refused (and audited)."""

    def write(self, request: WriteRequest) -> WriteResult: ...
    def setup_meter(
        self,
        plan: SetupPlan,
        confirm: Confirm,
        say: Callable[[str], None],
        settle: float = 5.0,
    ) -> SetupReport: ...
    def read_clock(self, device_id: int) -> ClockReading: ...
    def set_clock(self, device_id: int, confirm: Confirm) -> str | None: ...


def meter_info(meter: MeterConfig, config: Config) -> MeterInfo:
    """The :class:`MeterInfo` of ``meter`` (its map loaded, its logged set as configured)."""
    rmap = load_map(meter.map)
    logged = config.entries_for(meter, rmap)
    names = {e.name for e in logged}
    extras = tuple(
        e for e in rmap.entries if e.name not in names and "R" in e.access and not e.acts_on_read
    )
    return MeterInfo(meter.id, meter.label or f"meter {meter.id}", rmap, logged, extras)


class CycleAverage:
    """The poll cycle time a technician reads in the header: smoothed, and honest from the
    first seconds.

    The first :attr:`warmup` cycles after the bus opens (or the meters change) are not
    counted: they carry the first contact with each meter (the link has not learnt its
    turnaround yet, a first request may time out) and, in the app, its start-up. From then on
    a running mean until :attr:`span` cycles are counted, then an exponential average over
    about :attr:`span` cycles, so one slow cycle neither sets the figure alone nor weighs on
    it for long.
    """

    def __init__(self, warmup: int = 1, span: int = 10) -> None:
        self.warmup = warmup
        self.span = span
        self.seen = 0
        """Cycles added since the last :meth:`reset` (the skipped ones included)."""
        self.value: float | None = None
        """The smoothed cycle time in seconds (None until a cycle past the warm-up)."""

    def reset(self) -> None:
        """Start again (a new connection, new meters)."""
        self.seen = 0
        self.value = None

    def add(self, took: float) -> None:
        """Count one cycle that took ``took`` seconds."""
        self.seen += 1
        counted = self.seen - self.warmup
        if counted <= 0:
            return
        if self.value is None:
            self.value = took
        else:
            self.value += (took - self.value) / min(counted, self.span)


class DataDirLock(PidLock):
    """An exclusive lock on a data dir, so the app and a service never write one file."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            data_dir / DATA_LOCK_FILE,
            lambda holder: DataDirBusy(
                f"{data_dir}: another emtui logger (PID {holder}) writes here"
            ),
        )


class BusSession:
    """The engine of one connection (see the module docstring).

    Args:
        config: the effective configuration (bus, meters, logging, upload, state dir).
        settings: the connection; default ``config.bus.settings()``.
        arbiter: an arbiter to use (tests); by default one is made from ``settings``.
        description: how screens name the connection (default ``settings.describe()``).
        report: receives the logging worker's lines (never printed by the session).
    """

    def __init__(
        self,
        config: Config,
        settings: ConnectionSettings | None = None,
        *,
        arbiter: BusArbiter | None = None,
        description: str | None = None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.config = config
        self.read_only = False
        self.settings = settings or config.bus.settings()
        self.description = description or self.settings.describe()
        self.interval = config.logging.interval
        self.report = report
        self._arbiter = arbiter
        self._own_arbiter = arbiter is None
        self._traffic_listeners: list[Callable[[TrafficRecord], None]] = []
        self.meters: list[MeterInfo] = [meter_info(m, config) for m in config.meters]
        self._listeners: list[SampleListener] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._focus: int | None = None
        self._extra_readers: dict[int, list[MeterReader]] = {}
        self._extra_next: dict[int, int] = {}
        self._refresh_requests: dict[int, frozenset[str] | None] = {}
        """Meters whose other registers are to be read once: those named (None: all)."""
        self._due: deque[MeterReader] = deque()
        self._lock = threading.Lock()
        self._scan_cancel = threading.Event()
        self._cycles = CycleAverage()
        self._extras_starved = False
        self._scanner: Scanner | None = None
        self._logging_stop: threading.Event | None = None
        self._logging_thread: threading.Thread | None = None
        self._worker: LoggingWorker | None = None
        self._logging_error: str | None = None
        self._logging_started: float | None = None
        self._cycle_done = threading.Event()
        self._worker_cycle_started = 0.0
        self._worker_samples = 0
        self.allow_writes = False
        """Set by ``--allow-writes``: without it :meth:`write` refuses everything."""
        self._parked = threading.Event()  # the live thread waits for polling to resume

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def arbiter(self) -> BusArbiter:
        """The connection's arbiter (made on first use)."""
        if self._arbiter is None:
            self._arbiter = BusArbiter(self.settings)
            for listener in self._traffic_listeners:  # the traffic screen survives a reconnect
                self._arbiter.add_listener(listener)
        return self._arbiter

    def read_raw(self, device_id: int, address: int, count: int, function: int = 3) -> Reply:
        """One raw read (the raw view) through the arbiter at interactive priority: the
        logger's polls go first. Raises LinkError when the bus is down."""
        return self.arbiter.read_registers(
            device_id, address, count, function=function, priority=Priority.INTERACTIVE
        )

    def add_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        """Give ``listener`` every transaction on the bus (called on the bus thread)."""
        self._traffic_listeners.append(listener)
        self.arbiter.add_listener(listener)

    def remove_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        """Stop giving ``listener`` the traffic."""
        if listener in self._traffic_listeners:
            self._traffic_listeners.remove(listener)
        if self._arbiter is not None:
            self._arbiter.remove_listener(listener)

    def start(self) -> None:
        """Open the bus and start live polling.

        The arbiter locks the connection for every emtui process on the machine (a serial
        device by opening it exclusively), so a headless logger and the app never share a bus.

        Raises:
            PortBusy: a logger (or another program) holds the port.
            LinkError: the port cannot be opened.
        """
        self.arbiter.start()
        self._stop.clear()
        self._cycles.reset()  # a new connection: first contact again
        self._thread = threading.Thread(target=self._run, name="emtui-live", daemon=True)
        self._thread.start()

    def open_bus(self, require_link: bool = True) -> None:
        """Open the bus without live polling (``emtui --log`` and the commands).

        Args:
            require_link: False opens anyway when the port is missing (the unattended logger
                then writes ``error`` rows until it is back); the connection lock is still
                taken, so another program holding the bus is always an error.
        """
        self.arbiter.start(require_link=require_link)

    def run_logging(
        self,
        stop: threading.Event,
        cycles: int | None = None,
        live: LivePublisher | None = None,
    ) -> LoggingWorker:
        """Run the logging worker in this thread until ``stop`` is set or ``cycles`` ran
        (``emtui --log``); returns it for its summary and counters."""
        lock = DataDirLock(self.config.logging.data_dir).acquire()
        try:
            worker = LoggingWorker(self.config, self.arbiter, report=self.report, live=live)
            self._worker = worker
            worker.run(stop, cycles=cycles)
        finally:
            lock.release()
        return worker

    def stop(self) -> None:
        """Stop logging and polling, close the bus, drop the locks."""
        self.stop_logging()
        self.cancel_scan()
        self._stop.set()
        self._wake.set()
        self._cycle_done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_arbiter and self._arbiter is not None:
            self._arbiter.stop()

    def write(self, request: WriteRequest) -> WriteResult:
        """Send one write (the raw view) through the arbiter, audited in the state dir's
        audit log; the caller has shown :func:`~emtui.core.bus.writes.format_frame` and had
        it confirmed.

        Raises:
            WriteRefused: the session was not started with ``--allow-writes``, or id 0 (the
                refusal is audited; nothing goes on the wire).
            OSError: the audit log cannot be written (nothing is sent).
        """
        audit = AuditLog(self.config.state_dir)
        try:
            check_allowed(self.allow_writes, request.device_id)
        except WriteRefused as exc:
            with contextlib.suppress(OSError):
                audit.record(self.settings.port, request, f"refused: {exc}")
            raise
        return send_write(self.arbiter, request, audit)

    def _refuse(self, device_id: int, purpose: str, *ids: int) -> AuditLog:
        """The audit log, after refusing (audited) a command-interface write that is not
        allowed; ``ids`` are further ids the command names (a new id)."""
        audit = AuditLog(self.config.state_dir)
        try:
            check_allowed(self.allow_writes, device_id)
            for other in ids:
                check_allowed(True, other)
        except WriteRefused as exc:
            with contextlib.suppress(OSError):
                audit.record_refusal(self.settings.port, device_id, purpose, str(exc))
            raise
        audit.check_writable()
        return audit

    def run_exclusive(self, fn: Callable[[BusArbiter], T]) -> T:
        """Run ``fn`` with the bus to itself (a meter's setup; blocking, off the UI thread).

        Polling and the tab's extra reads pause, as for a scan, and ``fn`` starts once the
        live thread has finished the request it had on the wire; ``fn`` may retune the
        arbiter to other line settings: the session's are put back afterwards.

        Raises:
            LinkError: logging is on (its rows must not stop), or the bus is down.
        """
        if self.logging:
            raise LinkError("stop logging (l) first: a setup takes the bus for several seconds")
        arbiter = self.arbiter
        home = arbiter.settings
        with arbiter.polling_paused():
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._parked.clear()
                self._wake.set()
                if not self._parked.wait(max(3.0, 2 * self.interval + 1.0)):
                    # never start a setup beside the live thread's reads
                    raise LinkError("the bus is busy with a long read: try again in a moment")
            try:
                return fn(arbiter)
            finally:
                if arbiter.settings != home:
                    with contextlib.suppress(LinkError):
                        arbiter.retune(home, priority=Priority.WRITE)
                with self._lock:  # learned at other settings: read again
                    self._extra_readers.clear()
                    self._due.clear()

    def setup_meter(
        self,
        plan: SetupPlan,
        confirm: Confirm,
        say: Callable[[str], None],
        settle: float = 5.0,
    ) -> SetupReport:
        """Re-address a meter as ``emtui setup`` does (:func:`~emtui.core.setup.commission`),
        on this session's bus: polling paused (:meth:`run_exclusive`), the port retuned in
        place to each line setting the procedure needs. ``confirm`` is shown the command
        block; ``say`` is given each step. Blocking: run it off the UI thread.

        Raises:
            WriteRefused: no ``--allow-writes``, or id 0 (audited; nothing sent).
            SetupFailed: refused before sending, or the meter not found afterwards.
            LinkError: logging is on, or the bus is down.
            OSError: the audit log cannot be written (nothing sent).
        """
        ids = (plan.new_id,) if plan.new_id is not None else ()
        audit = self._refuse(plan.device_id, SETUP_PURPOSE, *ids)
        if self.settings.kind == "tcp":
            raise SetupFailed(
                "a setup needs the RS-485 line itself (a serial port or socket://): over "
                "tcp:// the gateway, not the meter, decides the line settings",
                2,
            )
        info = next((m for m in self.meters if m.id == plan.device_id), None)
        rmap = info.map if info is not None else load_map("em6400ng")

        def run(arbiter: BusArbiter) -> SetupReport:
            present = arbiter.settings  # the line as it is open now

            def open_at(settings: ConnectionSettings) -> BusArbiter:
                if arbiter.settings != settings:
                    arbiter.retune(settings, priority=Priority.WRITE)
                return arbiter

            return commission(
                present,
                plan,
                rmap,
                audit,
                open_arbiter=open_at,
                close_arbiter=lambda arbiter: None,
                confirm=confirm,
                say=say,
                settle=settle,
            )

        return self.run_exclusive(run)

    def read_clock(self, device_id: int) -> ClockReading:
        """Read ``device_id``'s clock against this machine's (interactive priority)."""
        return _clock.read_clock(self.arbiter, device_id)

    def set_clock(self, device_id: int, confirm: Confirm) -> str | None:
        """Set ``device_id``'s clock from this machine's (command 1003, as ``emtui clock
        --set``); None when done, else why not. The caller has checked the NTP state.

        Raises:
            WriteRefused: no ``--allow-writes``, or id 0 (audited; nothing sent).
            OSError: the audit log cannot be written (nothing sent).
            LinkError: the bus is down.
        """
        audit = self._refuse(device_id, CLOCK_PURPOSE)
        return _clock.set_clock(self.arbiter, audit, device_id, confirm)

    def add_listener(self, listener: SampleListener) -> None:
        """Call ``listener`` with every sample (from the session's threads)."""
        self._listeners.append(listener)

    def _publish(self, sample: Sample) -> None:
        for listener in list(self._listeners):
            listener(sample)

    # -- figures --------------------------------------------------------------------------------

    def stats(self, device_id: int) -> DeviceStats:
        """The link statistics of ``device_id``."""
        return self.arbiter.device_stats(device_id)

    def cycle_time(self) -> float | None:
        """Seconds a poll of every meter's logged set takes (plus its extra request), smoothed
        over about 10 cycles; None until measured (see :class:`CycleAverage`)."""
        return self._cycles.value

    def bus_load(self) -> float | None:
        """The cycle time as a fraction of the interval (None until measured)."""
        cycle = self._cycles.value
        if cycle is None:
            return None
        if self.interval <= 0:
            return 1.0
        return cycle / self.interval

    def extras_starved(self) -> bool:
        """True when the interval had no room for the tab's other registers last cycle."""
        return self._extras_starved

    # -- extras (the tab's other registers) -----------------------------------------------------

    def set_focus(self, device_id: int | None) -> None:
        """The meter whose tab is on screen: its other registers are read between cycles."""
        with self._lock:
            self._focus = device_id
            if device_id is not None and device_id not in self._extra_readers:
                self._refresh_requests[device_id] = None  # a first read of everything, once
        self._wake.set()

    def refresh_extras(self, device_id: int, names: Sequence[str] | None = None) -> None:
        """Read every other register of ``device_id`` once (``names``: only the blocks that
        hold those entries): at once between cycles, or one request per gap while logging (so
        no row is late by more than one request)."""
        with self._lock:
            if device_id in self._refresh_requests:
                before = self._refresh_requests[device_id]
                wanted = None if before is None or names is None else before | set(names)
            else:
                wanted = None if names is None else frozenset(names)
            self._refresh_requests[device_id] = wanted
        self._wake.set()

    def _extras_for(self, device_id: int) -> list[MeterReader]:
        """One reader per planned block of the meter's other registers (each one request)."""
        with self._lock:
            readers = self._extra_readers.get(device_id)
            if readers is not None:
                return readers
            info = next((m for m in self.meters if m.id == device_id), None)
        readers = []
        if info is not None and info.extras:
            planner_reader = MeterReader(self.arbiter, device_id, info.map, info.extras)
            for block in planner_reader.plan:
                readers.append(
                    MeterReader(
                        self.arbiter,
                        device_id,
                        info.map,
                        block.entries,
                        priority=Priority.INTERACTIVE,
                        respect_backoff=True,
                    )
                )
        with self._lock:
            if any(m is info for m in self.meters):  # not replaced by set_meters meanwhile
                self._extra_readers[device_id] = readers
        return readers

    def _estimate(self, reader: MeterReader) -> float:
        """Wire time plus the meter's turnaround for one request of ``reader``."""
        block = reader.plan[0] if reader.plan else None
        if block is None:
            return 0.0
        stats = self.arbiter.device_stats(reader.device_id)
        turn = max(list(stats.turnarounds)[-20:], default=0.02)
        return transaction_chars(block.count) * self.settings.char_time + turn

    def _read_extras(self, deadline: float | None, logging: bool) -> float:
        """The tab's other registers due after a cycle.

        With logging off, asked-for refreshes are read at once (their time is returned: it
        was asked for, so it is not bus load). Then, or while logging, at most one request
        goes on the wire, and only if the rest of the interval has room for it: a refresh
        still due, else the next block of the tab on screen, round-robin.
        """
        with self._lock:
            asked, self._refresh_requests = self._refresh_requests, {}
        for device_id, names in sorted(asked.items()):
            readers = self._extras_for(device_id)
            if names is not None:
                readers = [r for r in readers if any(e.name in names for e in r.entries)]
            self._due.extend(readers)
        spent = 0.0
        if not logging:
            # a setup (run_exclusive) or a scan pausing polling stops the drain between blocks
            while self._due and not self._stop.is_set() and self.arbiter.polling_allowed:
                t0 = time.monotonic()
                self._publish(self._due.popleft().read())
                spent += time.monotonic() - t0
        if not self.arbiter.polling_allowed:
            return spent
        reader = self._due[0] if self._due else self._next_round_robin()
        if reader is None:
            self._extras_starved = False
            return spent
        room = math.inf if deadline is None else deadline - time.monotonic()
        if room < self._estimate(reader) + EXTRA_SLACK:
            self._extras_starved = True
            return spent
        self._extras_starved = False
        if self._due and self._due[0] is reader:
            self._due.popleft()
        else:
            focus = reader.device_id
            self._extra_next[focus] = self._extra_next.get(focus, 0) + 1
        self._publish(reader.read())
        return spent

    def _next_round_robin(self) -> MeterReader | None:
        focus = self._focus
        if focus is None:
            return None
        readers = [r for r in self._extras_for(focus) if not _static(r)]
        if not readers:
            return None
        return readers[self._extra_next.get(focus, 0) % len(readers)]

    # -- live polling ---------------------------------------------------------------------------

    def _live_readers(self) -> list[MeterReader]:
        return [
            MeterReader(self.arbiter, m.id, m.map, m.logged, priority=Priority.POLL)
            for m in self.meters
        ]

    def _run(self) -> None:
        """The live thread: poll the logged sets (logging off), then the tab's extras."""
        readers = self._live_readers()
        readers_for = list(self.meters)
        while not self._stop.is_set():
            if readers_for != self.meters:  # set_meters() after a scan
                readers, readers_for = self._live_readers(), list(self.meters)
                self._cycles.reset()  # first contact with the new meters again
            if not self.arbiter.wait_for_polling(0.2):  # a scan (or a setup) has the bus
                self._parked.set()
                continue
            # Wakes from here on are seen by the rest after this cycle (a setup pausing the
            # bus, a refresh asked for while the meters are read).
            self._wake.clear()
            logging = self.logging
            started = time.monotonic()
            if logging:
                # The worker polls the logged set; wait for it to finish a cycle (stop and
                # stop_logging set the event too, so neither waits a whole interval).
                self._cycle_done.clear()
                if not self._cycle_done.wait(max(1.0, 3 * self.interval)):
                    continue
                if self._stop.is_set() or not self.logging:
                    continue
                started = self._worker_cycle_started
            else:
                for reader in readers:
                    if self._stop.is_set() or not self.arbiter.polling_allowed or self.logging:
                        break  # logging started: the worker reads the logged set from now on
                    self._publish(reader.read())
            deadline = None if self.interval <= 0 else self._next_slot(started)
            asked = 0.0
            try:
                if self.arbiter.polling_allowed:
                    asked = self._read_extras(deadline, logging)
            except LinkError:
                pass
            except Exception as exc:  # a bug must not silently end live polling
                self.report(f"live polling: {exc!r}")
            took = time.monotonic() - started - asked
            # Smoothed over ~10 cycles: the figure a technician reads, not one cycle's jitter.
            self._cycles.add(took)
            if logging:
                continue  # the worker paces the cycles
            if self.interval > 0:
                self._rest_until(deadline or 0.0)

    def _rest_until(self, deadline: float) -> None:
        """Wait for the next cycle's slot, serving refreshes asked for meanwhile; a stop, a
        pause of polling (a setup, a scan) or logging starting ends the wait at once, so
        run_exclusive never waits out a long interval. The wake event is cleared only at a
        cycle's start and after a wake here, and every setter changes its state before it
        sets the event, so no wake is lost: the state is checked again after each."""
        while not self._stop.is_set():
            if self.logging or not self.arbiter.polling_allowed:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._wake.wait(remaining):
                return
            self._wake.clear()
            if self._stop.is_set() or self.logging or not self.arbiter.polling_allowed:
                return
            # a refresh asked for (or a new tab): serve it now
            with contextlib.suppress(LinkError):
                self._read_extras(deadline, logging=False)

    def _next_slot(self, started: float) -> float:
        """Monotonic time of the next cycle start (cycles aligned to the interval)."""
        wall = time.time()
        elapsed = time.monotonic() - started
        next_wall = (math.floor((wall - elapsed) / self.interval) + 1) * self.interval
        if next_wall <= wall:
            next_wall = (math.floor(wall / self.interval) + 1) * self.interval
        return time.monotonic() + (next_wall - wall)

    # -- scans ----------------------------------------------------------------------------------

    def scan(
        self,
        ids: Sequence[int],
        expected: Sequence[int],
        on_progress: Callable[[int, int, int], object],
        on_found: Callable[[FoundDevice], object],
    ) -> ScanReport:
        """Scan ``ids`` (blocking; run it off the UI thread). Polling pauses meanwhile."""
        rmap = self.meters[0].map if self.meters else load_map("em6400ng")

        def progress(done: int, total: int, current: int) -> None:
            on_progress(done, total, current)

        def found(device: FoundDevice) -> None:
            on_found(device)

        scanner = Scanner(self.arbiter, rmap, on_progress=progress, on_found=found)
        self._scanner = scanner
        if self._scan_cancel.is_set():  # cancelled while the bus was being reopened
            scanner.cancel()
        try:
            return scanner.scan(list(ids), list(expected), stop_early=False)
        finally:
            self._scanner = None
            self._scan_cancel.clear()

    def scan_eta(self) -> float | None:
        """Seconds the running scan still needs (the scanner's estimate); None when none runs."""
        scanner = self._scanner
        return scanner.eta() if scanner is not None else None

    def cancel_scan(self) -> None:
        """Stop a running (or about to start) scan after the probe on the wire."""
        self._scan_cancel.set()
        scanner = self._scanner
        if scanner is not None:
            scanner.cancel()

    def reconnect(self, settings: ConnectionSettings) -> None:
        """Reopen the bus with other serial settings (a rescan at another baud).

        Raises:
            LinkError: the new settings cannot be opened (the old ones are then reopened).
        """
        if self.logging:
            raise LinkError("stop logging before changing the serial settings")
        old = self.settings
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._arbiter is not None:
            self._arbiter.stop()
        self._arbiter = None
        self._own_arbiter = True  # the new one is this session's, whoever made the old
        with self._lock:
            self._extra_readers.clear()
            self._due.clear()
        self.settings = settings
        self.description = settings.describe()
        try:
            self.start()
        except LinkError:
            self.settings = old
            self.description = old.describe()
            self._arbiter = None
            self.start()
            raise

    def set_meters(self, meters: Sequence[MeterConfig]) -> None:
        """Poll these meters from now on (the result of a scan)."""
        if self.logging:
            raise RuntimeError("stop logging before changing the meters")
        config = dataclasses.replace(self.config, meters=tuple(meters))
        infos = [meter_info(m, config) for m in config.meters]
        with self._lock:
            self.config = config
            self.meters = infos
            self._extra_readers.clear()
            self._due.clear()

    # -- logging --------------------------------------------------------------------------------

    @property
    def logging(self) -> bool:
        """True while the logging worker runs."""
        return self._logging_thread is not None and self._logging_thread.is_alive()

    def start_logging(self) -> LoggingState:
        """Start the logging worker of ``emtui --log`` on this bus (until stop or the app ends).

        Raises:
            DataDirBusy: another logger writes into the data dir.
            ValueError: no meters configured.
        """
        if self.logging:
            return self.logging_state()
        if not self.config.meters:
            raise ValueError("no meters to log: scan first or configure [[meters]]")
        lock = DataDirLock(self.config.logging.data_dir).acquire()
        try:
            worker = LoggingWorker(
                self.config,
                self.arbiter,
                report=self.report,
                on_sample=self._worker_sample,
            )
        except BaseException:
            lock.release()
            raise
        self._worker = worker
        self._logging_error = None
        self._logging_started = time.time()
        self._worker_cycle_started = time.monotonic()
        self._worker_samples = 0
        stop = threading.Event()
        self._logging_stop = stop

        def run() -> None:
            try:
                worker.run(stop)
            except Exception as exc:  # shown in the logging panel, never a crash
                self._logging_error = f"logging stopped: {exc}"
            finally:
                lock.release()

        self._logging_thread = threading.Thread(target=run, name="emtui-logging", daemon=True)
        self._logging_thread.start()
        self._wake.set()  # the live thread stops polling the logged set at once
        return self.logging_state()

    def _worker_sample(self, sample: Sample) -> None:
        if self._worker_samples == 0:
            self._worker_cycle_started = time.monotonic() - sample.duration
        self._worker_samples += 1
        self._publish(sample)
        if self._worker_samples >= len(self.config.meters):
            self._worker_samples = 0
            self._cycle_done.set()

    def stop_logging(self) -> LoggingState:
        """Stop the logging worker after its current row (files closed, status written)."""
        thread, stop = self._logging_thread, self._logging_stop
        if thread is not None and stop is not None:
            stop.set()
            thread.join(timeout=15)
        self._logging_thread = None
        self._logging_stop = None
        self._cycle_done.set()  # the live thread takes over polling now, not a cycle later
        return self.logging_state()

    def logging_state(self) -> LoggingState:
        """A snapshot for the logging panel."""
        config = self.config
        state = LoggingState(
            running=self.logging,
            started=self._logging_started if self.logging else None,
            data_dir=str(config.logging.data_dir),
            state_dir=str(config.state_dir),
            upload_target=config.upload.target,
            error=self._logging_error,
        )
        worker = self._worker
        if worker is not None:
            state.rows = sum(m.rows for m in worker.meters)
            state.rows_lost = sum(m.writer.rows_lost for m in worker.meters)
            state.files = {
                m.config.id: str(m.writer.current_path)
                for m in worker.meters
                if m.writer.current_path
            }
            queue_state = worker.queue.state
            state.queued = queue_state.queued
            state.last_upload = queue_state.last_result
            if config.upload.target:
                state.next_upload = worker.schedule.next_after(time.time())
        return state

    def upload_now(self) -> str:
        """Send every queued file now, then apply retention, as ``emtui upload --now`` does
        (blocking: run it off the UI thread); a summary line."""
        from emtui.core.upload.queue import UploadQueue
        from emtui.core.upload.run import run_uploads
        from emtui.core.upload.targets import uploader_factory

        upload = self.config.upload
        if not upload.target:
            return "no upload target configured ([upload] target in the config)"
        queue = UploadQueue(self.config.state_dir)
        result = run_uploads(queue, uploader_factory(upload), force=True)
        if result.busy:
            return "another upload run is in progress; try again later"
        queue.purge(upload.retention_days)
        return str(result.summary())


def _static(reader: MeterReader) -> bool:
    """True for a reader of registers that do not change while the meter runs."""
    return all(e.group in STATIC_GROUPS for e in reader.entries)


__all__ = [
    "BusSession",
    "Confirm",
    "DataDirBusy",
    "DataDirLock",
    "Engine",
    "LoggingState",
    "MeterInfo",
    "PortBusy",
    "meter_info",
]
