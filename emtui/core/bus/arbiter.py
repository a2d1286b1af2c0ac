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
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
)

from emtui.core.bus.link import ConnectionSettings, Link, LinkError, Outcome, Reply, open_link
from emtui.core.bus.stats import DeviceStats
from emtui.core.bus.traffic import TrafficRecord, process_listeners
from emtui.core.log.runstate import ConnectionLock

#: Margin (s) added to the wire time until a device's turnaround has been measured. Generous:
#: the vendor documents no turnaround and field code uses up to 1 s timeouts.
INITIAL_MARGIN = 0.25
#: The learned margin never drops below this (OS scheduling, USB adapter latency).
MIN_MARGIN = 0.025
MAX_MARGIN = 1.0
#: How long (at least) to wait for a late reply from a meter that answered before and then
#: timed out; RTU has no transaction id, so a late reply must not meet the next request.
LATE_WINDOW = 0.25
#: The longest wait for a late reply (a meter learned to answer in ~1.5 s is waited out).
LATE_CAP = 3.0
#: Until any device on the bus has answered, a silent device gets this long to answer late
#: before its retry (a slow meter is then learned on first contact, e.g. ``emtui read``).
FIRST_CONTACT_WAIT = 1.0
#: Slice of time the idle bus thread listens for a late reply before looking at its queue.
IDLE_LISTEN = 0.02
#: Backoff after repeated failures: first delay, growth factor, cap (seconds).
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
#: Backoff of a polled device that has never answered, from its first silent miss (an id in
#: the config with no meter behind it): first delay and cap. Its first poll is then the only
#: one that costs the others time for a while; a meter switched on later is found within
#: minutes. A late reply or any answer ends it at once.
ABSENT_FIRST = 30.0
ABSENT_CAP = 300.0
#: Share of the bus time polls of never-heard ids may take while others answer, and the most
#: that may be spent at once: a config of 1-247 on a bus of 4 meters probes the absent ids a
#: few per cycle, round the list, instead of stalling a cycle for every one of them.
ABSENT_SHARE = 0.1
ABSENT_BURST = 1.0


class Priority(enum.IntEnum):
    """Who is asking; lower values go first."""

    WRITE = 0
    POLL = 1
    SCAN = 2
    INTERACTIVE = 3


@dataclass(order=True, slots=True)
class _Job:
    priority: int
    seq: int
    device_id: int = field(compare=False)
    request: ModbusPDU | None = field(compare=False)  # None: only listen for late replies
    reply_chars: int = field(compare=False)
    retries: int = field(compare=False)
    timeout: float | None = field(compare=False)
    respect_backoff: bool = field(compare=False)
    future: Future[Reply] = field(compare=False)
    late_wait: float | None = field(compare=False, default=None)
    action: Callable[[], None] | None = field(compare=False, default=None)  # run on the bus


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


def reply_values(reply: Reply, function: int, count: int) -> list[int] | None:
    """The registers (FC 3/4) or bits as 0/1 (FC 1/2) of an OK reply; None otherwise."""
    if not reply.ok:
        return None
    if function in (1, 2):
        bits = getattr(reply.pdu, "bits", None)
        return [int(bool(b)) for b in bits[:count]] if bits is not None else None
    return list(reply.registers) if reply.registers is not None else None


class BusArbiter:
    """Serialises every request on one connection and keeps its statistics.

    Args:
        settings: the connection.
        link: an already created link (tests); by default one is made from ``settings``.
        clock: monotonic clock (injectable for tests of the backoff).
        lock: hold the machine-wide lock of a network connection while running (see
            :class:`~emtui.core.log.runstate.ConnectionLock`); default: when the arbiter makes its
            own link. A serial device is locked by opening it exclusively.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        link: Link | None = None,
        clock: Callable[[], float] = time.monotonic,
        lock: bool | None = None,
    ) -> None:
        self.settings = settings
        if lock is None:
            lock = link is None
        self._lock = ConnectionLock(settings) if lock and settings.kind != "serial" else None
        self.link = link or open_link(settings)
        self.clock = clock
        self.stats: dict[int, DeviceStats] = {}
        self.traffic: deque[TrafficRecord] = deque(maxlen=2000)
        # --trace / -v listeners of this process, so every command and the app trace alike
        self._listeners: list[Callable[[TrafficRecord], None]] = process_listeners()
        self._backoff: dict[int, _Backoff] = {}
        self._heard: set[int] = set()  # devices that answered (or answered late) at least once
        self._first_contact_done: set[int] = set()
        self._answered_last: dict[int, bool] = {}  # did the device's last request get an answer
        self._absent_budget = ABSENT_BURST  # seconds polls of never-heard ids may still take
        self._budget_time: float | None = None
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
        """Take the connection's lock, open the link and start the bus thread.

        Raises PortBusy (exit code 3, "in use by PID …") when another process holds the bus.

        Args:
            require_link: raise the LinkError (with advice) when the link cannot be opened;
                False starts anyway (the unattended logger: every request then tries to
                reopen it and fails fast with that error until the bus is back).
        """
        if self._thread is None:
            if self._lock is not None:
                self._lock.acquire()  # even for the unattended logger: another program has it
            try:
                self.link.open()
            except LinkError:
                if require_link:
                    if self._lock is not None:
                        self._lock.release()
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
        if self._lock is not None:
            self._lock.release()

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
        late_wait: float | None = None,
    ) -> Future[Reply]:
        """Queue ``request`` for ``device_id``; the future resolves to its :class:`Reply`.

        Args:
            retries: retries on no usable reply; default the connection's setting.
            timeout: a fixed timeout; default learned (wire time + measured margin).
            respect_backoff: answer at once with ``Outcome.SKIPPED`` while the device is
                backed off (pollers); explicit reads and scans always go to the wire.
            late_wait: after a silent timeout, listen this long for a late reply (a scan's
                second pass); it is reported as ``Outcome.LATE`` traffic, not as the reply.
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
            late_wait=late_wait,
        )
        self._push(job)
        return future

    def listen_for_late(self, window: float, priority: Priority = Priority.SCAN) -> None:
        """Listen up to ``window`` s for late replies still owed (e.g. at the end of a scan),
        and return as soon as none is owed; they arrive as ``Outcome.LATE`` traffic."""
        self._run_control(priority, timeout=window)

    def retune(self, settings: ConnectionSettings, priority: Priority = Priority.SCAN) -> None:
        """Change the open port's baud, parity and stop bits in place (serial-settings
        detection), on the bus thread between two requests; what was learned about devices
        (heard, backoff, late replies owed) is forgotten, being about other settings.

        Raises:
            LinkError: the port rejects the settings (a pty and parity E or O); the link is
                then closed, and the next request (after another retune) reopens it.
        """

        def apply() -> None:
            # first: even when refused, the port is no longer at the old settings (closed)
            self.settings = settings
            self.link.retune(settings)
            self._heard.clear()
            self._first_contact_done.clear()
            self._answered_last.clear()
            self._backoff.clear()

        self._run_control(priority, timeout=0.0, action=apply)

    def _push(self, job: _Job) -> None:
        """Queue ``job`` for the bus thread (LinkError when the bus is not running)."""
        with self._cond:
            if self._stopping or self._thread is None:
                raise LinkError("the bus is not running")
            heapq.heappush(self._queue, job)
            self._cond.notify()

    def _run_control(
        self, priority: Priority, *, timeout: float, action: Callable[[], None] | None = None
    ) -> None:
        """Run a job that is not a request (listen for late replies, retune) on the bus
        thread in its turn, and wait for it."""
        future: Future[Reply] = Future()
        self._push(
            _Job(
                priority=int(priority),
                seq=next(self._seq),
                device_id=0,
                request=None,
                reply_chars=0,
                retries=0,
                timeout=timeout,
                respect_backoff=False,
                future=future,
                action=action,
            )
        )
        future.result()

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
        late_wait: float | None = None,
    ) -> Reply:
        """Read ``count`` registers (FC 3/4) or bits (FC 1/2) from wire ``address`` and wait.

        A bit read's reply carries the bits in ``reply.pdu.bits`` (see :func:`reply_values`).
        """
        classes: dict[int, type[ModbusPDU]] = {
            1: ReadCoilsRequest,
            2: ReadDiscreteInputsRequest,
            3: ReadHoldingRegistersRequest,
            4: ReadInputRegistersRequest,
        }
        if function not in classes:
            raise ValueError(f"function must be 1, 2, 3 or 4, not {function}")
        request = classes[function](address=address, count=count, dev_id=device_id)
        return self.submit(
            device_id,
            request,
            priority=priority,
            retries=retries,
            timeout=timeout,
            respect_backoff=respect_backoff,
            late_wait=late_wait,
        ).result()

    # -- timing ---------------------------------------------------------------------------------

    def wire_time(self, request_chars: int, reply_chars: int) -> float:
        """Seconds both frames take on the line."""
        return (request_chars + reply_chars) * self.settings.char_time

    def margin(self, device_id: int) -> float:
        """Learned allowance for the device's turnaround: twice the largest of its recent
        turnarounds (a single one, e.g. of a late reply, already counts); for a device not
        measured yet, twice the bus's typical (median) one, so one slow meter does not make
        every absent id wait as long as it does."""
        stats = self.stats.get(device_id)
        own = list(stats.turnarounds)[-50:] if stats else []
        # list(): other threads may add a device's stats while the bus thread reads them
        bus = [t for s in list(self.stats.values()) for t in list(s.turnarounds)[-50:]]
        if own and (len(own) >= 3 or len(bus) < 3):
            base = max(own)
        elif own:
            base = max(max(own), statistics.median(bus))
        elif len(bus) >= 3:
            base = statistics.median(bus)
        else:
            return INITIAL_MARGIN
        return min(MAX_MARGIN, max(MIN_MARGIN, 2.0 * base))

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
            job: _Job | None = None
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self.link.expecting_late():
                        self._cond.wait()
                        continue
                    # A device may still answer a request that timed out: look for its
                    # reply between requests, so it is timed and learned (quick checks only:
                    # a new request wakes the wait at once).
                    self._cond.wait(IDLE_LISTEN)
                    if not self._queue and self.link.late_waiting():
                        break
                if self._stopping:
                    return
                if self._queue:
                    job = heapq.heappop(self._queue)
            if job is None:
                self.link.drain_late(IDLE_LISTEN)
                self._absorb_late()
                continue
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(self._execute(job))
            except BaseException as exc:  # deliver every failure to the caller
                job.future.set_exception(exc)

    def _execute(self, job: _Job) -> Reply:
        if job.action is not None:
            job.action()
            return Reply(Outcome.SKIPPED, attempts=0)
        if job.request is None:
            deadline = time.monotonic() + (job.timeout or 0.0)
            while self.link.expecting_late() and time.monotonic() < deadline:
                if self.link.drain_late(deadline - time.monotonic()) is None:
                    break
                self._absorb_late()
            return Reply(Outcome.SKIPPED, attempts=0)
        device_id = job.device_id
        stats = self.device_stats(device_id)
        if job.respect_backoff and self.backed_off(device_id):
            reply = Reply(Outcome.SKIPPED, attempts=0)
            stats.record(reply, 0.0, self.clock())
            return reply
        reply = Reply(Outcome.TIMEOUT)
        request_chars = 4 + len(job.request.encode())
        heard = device_id in self._heard
        probing = job.respect_backoff and not heard and bool(self._heard - {device_id})
        if probing and not self._take_budget():
            reply = Reply(Outcome.SKIPPED, attempts=0)
            stats.record(reply, 0.0, self.clock())
            return reply
        began = self.clock()
        # Before anyone on the bus has answered, a silent device may just be slow: once, it
        # gets time to answer late before its retry. Once others have answered, a device never
        # heard from is taken for absent: no wait, no retry (a late reply of its, if it comes,
        # is still recognised, and ends that).
        first_contact = not self._heard and device_id not in self._first_contact_done
        self._first_contact_done.add(device_id)
        retries = job.retries if heard or first_contact else 0
        # a meter that answered its last request, or that is known to answer late, may just
        # be slow this time: after a silent miss, wait for its late reply before going on
        may_be_slow = self._answered_last.get(device_id, False) or stats.late > 0
        if heard and self.link.owes_late(device_id):
            # it may still answer an earlier request, indistinguishable from this one's reply
            self._wait_out(device_id, self._late_window(device_id, 0.0))
        for attempt in range(1, retries + 2):
            timeout = job.timeout or self.timeout_for(device_id, request_chars, job.reply_chars)
            reply = self.link.transact(job.request, timeout)
            reply.attempts = attempt
            received = len(reply.received) or job.reply_chars
            wire = self.wire_time(request_chars, received)
            stats.record(reply, wire, self.clock())
            self._publish(device_id, reply, job.request.function_code)
            self._absorb_late()
            if reply.answered:
                self._heard.add(device_id)
                break
            if reply.outcome is Outcome.TIMEOUT and not reply.received:
                window = job.late_wait
                if device_id in self._heard and may_be_slow:
                    window = max(window or 0.0, self._late_window(device_id, timeout))
                elif first_contact and attempt <= retries:
                    window = max(window or 0.0, FIRST_CONTACT_WAIT)
                if window:
                    self._wait_out(device_id, window)
            # After one miss, only a meter known to answer late is waited for again: one that
            # is gone (or flapping) costs the wait once per request, not on every retry.
            may_be_slow = stats.late > 0
        self._answered_last[device_id] = reply.answered
        self._update_backoff(device_id, reply, heard)
        if probing:
            self._absent_budget -= self.clock() - began
        return reply

    def _take_budget(self) -> bool:
        """Refill the never-heard ids' share of the bus; True if some is left to spend."""
        now = self.clock()
        if self._budget_time is not None:
            refill = ABSENT_SHARE * (now - self._budget_time)
            self._absent_budget = min(ABSENT_BURST, self._absent_budget + refill)
        self._budget_time = now
        return self._absent_budget > 0

    def _late_window(self, device_id: int, timeout: float) -> float:
        """How long to wait for a heard device's late reply after a timeout: long enough for
        the slowest reply it was measured to give (so that reply never meets the next
        request), at least LATE_WINDOW or two timeouts, at most LATE_CAP."""
        stats = self.device_stats(device_id)
        slowest = max(list(stats.turnarounds)[-50:], default=0.0)
        return min(LATE_CAP, max(LATE_WINDOW, 2 * timeout, 1.25 * slowest + 0.05))

    def _wait_out(self, device_id: int, window: float) -> None:
        """Listen up to ``window`` s for late replies, until ``device_id`` no longer owes one
        (RTU only: a Modbus TCP reply names its request, so it never needs waiting out)."""
        deadline = time.monotonic() + window
        while self.link.owes_late(device_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.link.drain_late(remaining) is None:
                break  # quiet for the whole window
            self._absorb_late()

    def _absorb_late(self) -> None:
        """Learn from the late replies the link recognised: the device is there (its backoff
        ends) and its response time feeds the learned margin."""
        for late in self.link.take_late():
            stats = self.device_stats(late.device_id)
            stats.late += 1
            state = self._backoff.get(late.device_id)
            if state is not None and late.device_id not in self._heard:
                state.failures, state.until = 0, 0.0  # found: not absent after all
            self._heard.add(late.device_id)
            if late.rtt is not None:
                wire = self.wire_time(late.request_chars, len(late.received))
                stats.turnarounds.append(max(0.0, late.rtt - wire))
            self._publish(
                late.device_id,
                Reply(
                    Outcome.LATE,
                    rtt=late.rtt or 0.0,
                    received=late.received,
                    exception_code=late.exception_code,
                ),
            )

    def _update_backoff(self, device_id: int, reply: Reply, heard: bool) -> None:
        state = self._backoff.setdefault(device_id, _Backoff())
        if reply.answered or (device_id in self._heard and not heard):
            state.failures, state.until = 0, 0.0  # answered (perhaps late, while we waited)
            return
        state.failures += 1
        silent = reply.outcome is Outcome.TIMEOUT and not reply.received
        if not heard and silent and self._heard - {device_id}:
            # never heard from while others answer: absent from the first miss
            delay = min(ABSENT_CAP, ABSENT_FIRST * 2 ** (state.failures - 1))
            state.until = self.clock() + delay
        elif state.failures >= 2:
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (state.failures - 2))
            state.until = self.clock() + delay

    def _publish(self, device_id: int, reply: Reply, function: int = 0) -> None:
        record = TrafficRecord(
            time=time.time(),
            device_id=device_id,
            sent=reply.sent,
            received=reply.received,
            outcome=reply.outcome,
            rtt=reply.rtt,
            exception_code=reply.exception_code,
            function=function,
            stale=reply.stale,
            other_id=reply.other_id,
        )
        self.traffic.append(record)
        for listener in list(self._listeners):
            listener(record)
