"""One bus, one arbiter (design §3).

RS-485 is half duplex: one request on the wire at a time. Everything that talks to a bus — the
logger, the live tables, the raw view, a scan, a write — submits its requests here. A single
bus thread takes them in priority order (writes, then the logger's polls, then scans, then
interactive reads), computes each request's timeout from the wire time of its reply plus a
margin learned from the device's measured turnaround, retries polls once, backs off a device
that keeps failing so it never stalls the others, and keeps per-device statistics.

Callers get a :class:`concurrent.futures.Future`; a Textual app can await it with
``asyncio.wrap_future`` and the headless logger simply blocks on it.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
)

from emtui.core.link import ConnectionSettings, Link, LinkError, Outcome, Reply, open_link
from emtui.core.stats import DeviceStats

#: Margin (s) added to the wire time until a device's turnaround has been measured. Generous:
#: the vendor documents no turnaround and field code uses up to 1 s timeouts.
INITIAL_MARGIN = 0.25
#: The learned margin never drops below this (OS scheduling, USB adapter latency).
MIN_MARGIN = 0.025
MAX_MARGIN = 1.0
#: How long (at least) to wait for a late reply from a meter that answered before and then
#: timed out; RTU has no transaction id, so a late reply must not meet the next request.
LATE_WINDOW = 0.25
#: Backoff after repeated failures: first delay, growth factor, cap (seconds).
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0


class Priority(enum.IntEnum):
    """Who is asking; lower values go first."""

    WRITE = 0
    POLL = 1
    SCAN = 2
    INTERACTIVE = 3


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    """One transaction as the traffic monitor shows it."""

    time: float
    device_id: int
    sent: bytes
    received: bytes
    outcome: Outcome
    rtt: float
    exception_code: int | None = None


@dataclass(order=True, slots=True)
class _Job:
    priority: int
    seq: int
    device_id: int = field(compare=False)
    request: ModbusPDU = field(compare=False)
    reply_chars: int = field(compare=False)
    retries: int = field(compare=False)
    timeout: float | None = field(compare=False)
    respect_backoff: bool = field(compare=False)
    future: Future[Reply] = field(compare=False)


@dataclass(slots=True)
class _Backoff:
    failures: int = 0
    until: float = 0.0


def reply_chars_for(request: ModbusPDU) -> int:
    """Length in bytes of the normal RTU reply to ``request``."""
    fc = request.function_code
    if fc in (3, 4, 23):
        return 5 + 2 * int(request.count)
    if fc in (1, 2):
        return 5 + (int(request.count) + 7) // 8
    return 8


class BusArbiter:
    """Serialises every request on one connection and keeps its statistics.

    Args:
        settings: the connection.
        link: an already created link (tests); by default one is made from ``settings``.
        clock: monotonic clock (injectable for tests of the backoff).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        link: Link | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.link = link or open_link(settings)
        self.clock = clock
        self.stats: dict[int, DeviceStats] = {}
        self.traffic: deque[TrafficRecord] = deque(maxlen=2000)
        self._listeners: list[Callable[[TrafficRecord], None]] = []
        self._backoff: dict[int, _Backoff] = {}
        self._answered_last: dict[int, bool] = {}  # did the device's last transaction answer
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pause_count = 0
        self._poll_gate = threading.Event()
        self._poll_gate.set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, require_link: bool = True) -> BusArbiter:
        """Open the link and start the bus thread.

        Args:
            require_link: raise the LinkError (with advice) when the link cannot be opened;
                False starts anyway (the unattended logger: every request then tries to
                reopen it and fails fast with that error until the bus is back).
        """
        if self._thread is None:
            try:
                self.link.open()
            except LinkError:
                if require_link:
                    raise
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="emtui-bus", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the request on the wire, fail the queued ones, close the link."""
        with self._cond:
            self._stopping = True
            pending, self._queue = self._queue, []
            self._cond.notify_all()
        for job in pending:
            job.future.cancel()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.link.close()

    def __enter__(self) -> BusArbiter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- polling pause (a scan) ---------------------------------------------------------------

    @contextlib.contextmanager
    def polling_paused(self) -> Iterator[None]:
        """While held, pollers waiting in :meth:`wait_for_polling` do not start a cycle."""
        with self._cond:
            self._pause_count += 1
            self._poll_gate.clear()
        try:
            yield
        finally:
            with self._cond:
                self._pause_count -= 1
                if self._pause_count == 0:
                    self._poll_gate.set()

    @property
    def polling_allowed(self) -> bool:
        """False while a scan (or anything else) pauses polling."""
        return self._poll_gate.is_set()

    def wait_for_polling(self, timeout: float | None = None) -> bool:
        """Block until polling is allowed; True if it is."""
        return self._poll_gate.wait(timeout)

    # -- requests -----------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        """Call ``listener`` on the bus thread after every transaction (keep it quick)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        """Stop calling ``listener``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def submit(
        self,
        device_id: int,
        request: ModbusPDU,
        *,
        priority: Priority = Priority.INTERACTIVE,
        retries: int | None = None,
        timeout: float | None = None,
        respect_backoff: bool = False,
    ) -> Future[Reply]:
        """Queue ``request`` for ``device_id``; the future resolves to its :class:`Reply`.

        Args:
            retries: retries on no usable reply; default the connection's setting.
            timeout: a fixed timeout; default learned (wire time + measured margin).
            respect_backoff: answer at once with ``Outcome.SKIPPED`` while the device is
                backed off (pollers); explicit reads and scans always go to the wire.
        """
        request.dev_id = device_id
        future: Future[Reply] = Future()
        job = _Job(
            priority=int(priority),
            seq=next(self._seq),
            device_id=device_id,
            request=request,
            reply_chars=reply_chars_for(request),
            retries=self.settings.retries if retries is None else retries,
            timeout=timeout,
            respect_backoff=respect_backoff,
            future=future,
        )
        with self._cond:
            if self._stopping or self._thread is None:
                raise LinkError("the bus is not running")
            heapq.heappush(self._queue, job)
            self._cond.notify()
        return future

    def read_registers(
        self,
        device_id: int,
        address: int,
        count: int,
        *,
        function: int = 3,
        priority: Priority = Priority.INTERACTIVE,
        retries: int | None = None,
        timeout: float | None = None,
        respect_backoff: bool = False,
    ) -> Reply:
        """Read ``count`` registers from wire ``address`` and wait for the reply."""
        cls = ReadHoldingRegistersRequest if function == 3 else ReadInputRegistersRequest
        request = cls(address=address, count=count, dev_id=device_id)
        return self.submit(
            device_id,
            request,
            priority=priority,
            retries=retries,
            timeout=timeout,
            respect_backoff=respect_backoff,
        ).result()

    # -- timing ---------------------------------------------------------------------------------

    def wire_time(self, request_chars: int, reply_chars: int) -> float:
        """Seconds both frames take on the line."""
        return (request_chars + reply_chars) * self.settings.char_time

    def margin(self, device_id: int) -> float:
        """Learned allowance for the device's turnaround (falls back to the whole bus)."""
        stats = self.stats.get(device_id)
        samples = list(stats.turnarounds)[-50:] if stats else []
        if len(samples) < 3:
            # list(): other threads may add a device's stats while the bus thread reads them
            samples = [t for s in list(self.stats.values()) for t in list(s.turnarounds)[-50:]]
        if len(samples) < 3:
            return INITIAL_MARGIN
        return min(MAX_MARGIN, max(MIN_MARGIN, 2.0 * max(samples)))

    def timeout_for(self, device_id: int, request_chars: int, reply_chars: int) -> float:
        """The timeout of one request: a fixed setting, else wire time + learned margin."""
        if self.settings.timeout is not None:
            return self.settings.timeout
        return self.wire_time(request_chars, reply_chars) + self.margin(device_id)

    def backed_off(self, device_id: int) -> bool:
        """True while the device is being skipped after repeated failures."""
        state = self._backoff.get(device_id)
        return bool(state and state.until > self.clock())

    def device_stats(self, device_id: int) -> DeviceStats:
        """The statistics of ``device_id`` (created on first use)."""
        stats = self.stats.get(device_id)
        if stats is None:
            stats = self.stats[device_id] = DeviceStats()
        return stats

    # -- the bus thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = heapq.heappop(self._queue)
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(self._execute(job))
            except BaseException as exc:  # deliver every failure to the caller
                job.future.set_exception(exc)

    def _execute(self, job: _Job) -> Reply:
        stats = self.device_stats(job.device_id)
        if job.respect_backoff and self.backed_off(job.device_id):
            reply = Reply(Outcome.SKIPPED, attempts=0)
            stats.record(reply, 0.0, self.clock())
            return reply
        reply = Reply(Outcome.TIMEOUT)
        request_chars = 4 + len(job.request.encode())
        answered_before = self._answered_last.get(job.device_id, False)
        for attempt in range(1, job.retries + 2):
            timeout = job.timeout or self.timeout_for(job.device_id, request_chars, job.reply_chars)
            reply = self.link.transact(job.request, timeout)
            reply.attempts = attempt
            received = len(reply.received) or job.reply_chars
            wire = self.wire_time(request_chars, received)
            stats.record(reply, wire, self.clock())
            self._publish(job.device_id, reply)
            if reply.answered:
                break
            if reply.outcome is Outcome.TIMEOUT and not reply.received and answered_before:
                # Only on the first miss after a reply: a meter that is gone costs it once.
                request_wire = self.wire_time(request_chars, 0)
                self._catch_late_reply(stats, reply, request_wire, timeout)
            answered_before = False
        self._answered_last[job.device_id] = reply.answered
        self._update_backoff(job.device_id, reply)
        return reply

    def _catch_late_reply(
        self, stats: DeviceStats, reply: Reply, request_wire: float, timeout: float
    ) -> None:
        """A meter that answered before went quiet: maybe it is only slower than the margin.

        Wait a while (LATE_WINDOW, or two timeouts) for its reply, so the retry (or the next
        meter's request) does not collide with it on the line, and learn its response time.
        """
        waited = self.link.drain_late(min(MAX_MARGIN, max(LATE_WINDOW, 2 * timeout)))
        if waited is not None:
            stats.late += 1
            # its first byte came `waited` after the timeout: the meter turned round after
            # everything before that except our own request on the wire
            stats.turnarounds.append(max(0.0, reply.rtt + waited - request_wire))

    def _update_backoff(self, device_id: int, reply: Reply) -> None:
        state = self._backoff.setdefault(device_id, _Backoff())
        if reply.answered:
            state.failures, state.until = 0, 0.0
            return
        state.failures += 1
        if state.failures >= 2:
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (state.failures - 2))
            state.until = self.clock() + delay

    def _publish(self, device_id: int, reply: Reply) -> None:
        record = TrafficRecord(
            time=time.time(),
            device_id=device_id,
            sent=reply.sent,
            received=reply.received,
            outcome=reply.outcome,
            rtt=reply.rtt,
            exception_code=reply.exception_code,
        )
        self.traffic.append(record)
        for listener in list(self._listeners):
            listener(record)
