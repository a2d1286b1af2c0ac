"""Find the meters on a bus (design §5), fast and honestly.

Any reply, even a Modbus exception, means a device is at that id — except the two exceptions
a Modbus TCP gateway gives for an id with nothing behind it. The first pass never
retries; until the first reply the timeout is generous enough for a slow meter at this baud,
after it the timeout is the p99 of the response times actually seen plus a small margin, so
247 ids cost about Σ(request wire time + that timeout): seconds, not minutes. A second pass
with the generous timeout retries the expected ids that were missed.
The link flushes stale bytes before every request, so a late reply is never credited to the
next id. A found meter is identified by reading the map's identity registers.

The rule for meters slower than those timeouts: a reply that comes after its probe timed out
is recognised by its id (the link knows which ids it is still waiting for) and still counts —
the meter is found (``late: true``), and the arbiter learns its response time, so the
identity read that follows waits long enough. The second pass listens up to
:data:`LATE_WAIT` s for such a reply.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.link import Outcome
from emtui.core.bus.reader import MeterReader
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.maps.registers import RegisterMap

#: Allowance for a slow meter before anyone has answered (design §5).
GENEROUS_MARGIN = 0.050
#: The floor of the learned timeout above the probe's wire time.
LEARNED_MARGIN = 0.010
#: Margin over the p99 of the measured probe response times (the silent-id timeout): at
#: least this many seconds, or this fraction of the p99 when that is more.
P99_MARGIN = 0.003
P99_MARGIN_FRACTION = 0.10
#: The first-pass rule for slow meters: one that answers up to this many times slower than
#: the p99 of the others is still found by the first pass — its reply comes after its probe
#: timed out, while the next ids are probed (or in the late tail), and is recognised by its
#: id. A slower one is found by the second pass when it is expected; otherwise the report
#: says one may have been missed (:attr:`ScanReport.slow_hint`).
SLOW_FACTOR = 3.0
#: Exception codes a Modbus TCP gateway gives for an id nobody answers behind it (0A: gateway
#: path unavailable, 0B: target device failed to respond): the gateway answered, no meter did.
GATEWAY_NO_TARGET = (0x0A, 0x0B)
#: How long the second pass listens for a late reply to its probe.
LATE_WAIT = 1.0
#: How long the end of the first pass listens for late replies to its last probes (a meter
#: up to about this slow among the last ids is still found).
LATE_TAIL = 0.5
#: Characters of a one-register read: request 8, reply 7.
PROBE_REQUEST_CHARS = 8
PROBE_REPLY_CHARS = 7


@dataclass(slots=True)
class FoundDevice:
    """A device that answered the scan.

    Attributes:
        id: slave id.
        reply: ``ok`` or ``exception`` (an exception reply still proves a device is there).
        exception_code: the code of an exception reply.
        rtt_ms: response time of the probe in milliseconds.
        found_after: seconds from the start of the scan until it answered.
        identity: role → value read from the map's identity registers (model, name, serial…).
        second_pass: found only by the second pass.
    """

    id: int
    reply: str
    rtt_ms: float
    found_after: float
    exception_code: int | None = None
    identity: dict[str, object] = field(default_factory=dict)
    second_pass: bool = False
    late: bool = False

    def as_dict(self) -> dict[str, object]:
        """The JSON form (design §7 keys: id, reply, model, rtt_ms)."""
        out: dict[str, object] = {
            "id": self.id,
            "reply": self.reply,
            "model": self.identity.get("model"),
            "rtt_ms": round(self.rtt_ms, 1),
        }
        for role, value in self.identity.items():
            out.setdefault(role, value)
        if self.exception_code is not None:
            out["exception_code"] = self.exception_code
        out["found_after_s"] = round(self.found_after, 3)
        out["second_pass"] = self.second_pass
        out["late"] = self.late
        return out


@dataclass(slots=True)
class ScanReport:
    """What a scan found and how long it took."""

    devices: list[FoundDevice]
    ids: list[int]
    expected: list[int]
    duration: float
    cancelled: bool = False
    stopped_early: bool = False
    #: Set when ids were taken for empty after a short learned timeout: a device slower than
    #: the first-pass rule covers may have been missed, and how to look for it.
    slow_hint: str | None = None

    @property
    def missing(self) -> list[int]:
        """Expected ids that did not answer."""
        found = {d.id for d in self.devices}
        return [i for i in self.expected if i not in found]


class Scanner:
    """Scans ids on one bus through its arbiter.

    Args:
        arbiter: the bus.
        rmap: the map whose identity registers identify a found meter, and whose first
            identity (or first) register is the probe.
        identify: read the identity registers of each device found.
        on_progress: called with (ids done, ids total, current id) before each probe.
        on_found: called with each device as soon as it has answered (and been identified).
        late_tail: how long the end of the first pass listens for late replies (default
            :data:`LATE_TAIL`; 0: not at all).
    """

    def __init__(
        self,
        arbiter: BusArbiter,
        rmap: RegisterMap,
        *,
        identify: bool = True,
        on_progress: Callable[[int, int, int], None] | None = None,
        on_found: Callable[[FoundDevice], None] | None = None,
        late_tail: float = LATE_TAIL,
    ) -> None:
        self.arbiter = arbiter
        self.late_tail = late_tail
        self.map = rmap
        self.identify = identify
        self.on_progress = on_progress
        self.on_found = on_found
        self.cancel_event = threading.Event()
        probe_name = rmap.identify.get("model") or rmap.entries[0].name
        self.probe_address = rmap.get(probe_name).address
        self._rtts: list[float] = []
        self._late: list[TrafficRecord] = []
        self._late_lock = threading.Lock()
        # for the ETA: what is left, and what a silent id has cost so far
        self._left = 0
        self._tail_left = False
        self._second_left = 0
        self._silent_costs: list[float] = []
        self.floor = 0.0
        """The line's floor for the probes made so far: Σ (request wire time + reply wait) —
        the timeout, which counts from the request's first byte — over silent ids, plus what
        found devices (probe and identification) and the late tail took."""

    def _on_traffic(self, record: TrafficRecord) -> None:
        if record.outcome is Outcome.LATE:  # on the bus thread: only note it
            with self._late_lock:
                self._late.append(record)

    def _take_late(self, ids: set[int], found: dict[int, FoundDevice], start: float) -> None:
        """Count the late replies seen since the last probe as found devices."""
        with self._late_lock:
            late, self._late = self._late, []
        for record in late:
            if record.device_id in found or record.device_id not in ids:
                continue
            code = record.exception_code
            if code in GATEWAY_NO_TARGET:
                continue
            found[record.device_id] = self._found(
                record.device_id, start, record.rtt, code, late=True
            )

    def cancel(self) -> None:
        """Stop the scan after the probe on the wire; the report has what was found."""
        self.cancel_event.set()

    def _wire(self) -> float:
        return (PROBE_REQUEST_CHARS + PROBE_REPLY_CHARS) * self.arbiter.settings.char_time

    def p99(self) -> float | None:
        """The p99 of the probe response times measured so far (None before any reply)."""
        if not self._rtts:
            return None
        ordered = sorted(self._rtts)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def probe_timeout(self, generous: bool) -> float:
        """The timeout rule of design §5 (counted from the start of the request).

        Until the first reply (or ``generous``): the probe's wire time + 50 ms. After it: the
        p99 of the response times measured plus a small margin (as Wiren Board's scanner
        does), at least the wire time + 10 ms; slower meters are covered by late replies
        (:data:`SLOW_FACTOR`) and the second pass.
        """
        settings = self.arbiter.settings
        if settings.timeout is not None:
            return settings.timeout
        wire = self._wire()
        p99 = self.p99()
        if generous or p99 is None:
            return wire + GENEROUS_MARGIN
        return max(wire + LEARNED_MARGIN, p99 + max(P99_MARGIN, P99_MARGIN_FRACTION * p99))

    def _silent_cost(self) -> float:
        """Seconds a silent id costs: measured (recent mean), else the timeout + silence."""
        recent = self._silent_costs[-32:]
        if recent:
            return sum(recent) / len(recent)
        return self.probe_timeout(False) + 3.5 * self.arbiter.settings.char_time

    def eta(self) -> float:
        """Seconds the scan still needs, from the same estimate as its timeouts: the ids left
        at the cost a silent id has had (a found one's identification is added as it comes),
        the late tail and the second pass over the expected ids still missing."""
        settings = self.arbiter.settings
        remaining = self._left * self._silent_cost()
        if self._tail_left:
            remaining += self.late_tail
        if self._second_left:
            generous = settings.timeout if settings.timeout is not None else None
            per = (generous or self.probe_timeout(True)) + LATE_WAIT
            remaining += self._second_left * per
        return remaining

    def scan(
        self, ids: Sequence[int], expected: Sequence[int] = (), stop_early: bool = True
    ) -> ScanReport:
        """Probe ``ids`` in order; see the module docstring.

        Args:
            expected: ids the technician expects; missed ones get a second, generous pass.
            stop_early: stop as soon as every expected id has answered.
        """
        start = time.monotonic()
        found: dict[int, FoundDevice] = {}
        expected_set = set(expected)
        stopped_early = False
        wanted = set(ids)
        self._left = len(ids)
        self._tail_left = True
        self._second_left = len(expected_set)
        learned_silent = 0  # ids taken for empty after the short learned timeout
        self.arbiter.add_listener(self._on_traffic)
        try:
            with self.arbiter.polling_paused():
                for index, device_id in enumerate(ids):
                    if self.cancel_event.is_set():
                        break
                    self._second_left = len(expected_set - found.keys())
                    if self.on_progress:
                        self.on_progress(index, len(ids), device_id)
                    learned = self.p99() is not None and self.arbiter.settings.timeout is None
                    timeout = self.probe_timeout(False)
                    began = time.monotonic()
                    device = self._probe(device_id, start, generous=False)
                    self._left -= 1
                    if device:
                        found[device_id] = device
                        self.floor += time.monotonic() - began
                    else:
                        self._silent_costs.append(time.monotonic() - began)
                        # the timeout counts from the request's first byte: it covers the
                        # request's wire time too
                        self.floor += timeout
                        learned_silent += learned
                    self._take_late(wanted, found, start)
                    if stop_early and expected_set and expected_set <= found.keys():
                        stopped_early = index + 1 < len(ids)
                        break
                all_found = bool(expected_set) and expected_set <= found.keys()
                if not self.cancel_event.is_set() and not all_found:
                    if self.on_progress:
                        self.on_progress(len(ids), len(ids), 0)
                    if self.late_tail > 0:
                        began = time.monotonic()
                        self.arbiter.listen_for_late(self.late_tail)
                        self.floor += time.monotonic() - began
                    self._take_late(wanted, found, start)
                self._tail_left = False
                self._left = 0
                for device_id in sorted(expected_set - found.keys()):
                    self._second_left = max(0, self._second_left - 1)
                    if self.cancel_event.is_set():
                        break
                    self._take_late(wanted, found, start)
                    if device_id in found:
                        continue
                    device = self._probe(device_id, start, generous=True)
                    self._take_late(wanted, found, start)
                    device = device or found.get(device_id)
                    if device:
                        device.second_pass = True
                        found[device_id] = device
        finally:
            self._left = self._second_left = 0
            self._tail_left = False
            self.arbiter.remove_listener(self._on_traffic)
            if self.on_progress and not self.cancel_event.is_set():
                self.on_progress(len(ids), len(ids), 0)
        report = ScanReport(
            devices=sorted(found.values(), key=lambda d: d.id),
            ids=list(ids),
            expected=sorted(expected_set),
            duration=time.monotonic() - start,
            cancelled=self.cancel_event.is_set(),
            stopped_early=stopped_early,
        )
        unexpected_silent = learned_silent - len(expected_set - found.keys())
        if unexpected_silent > 0 and not stopped_early:
            report.slow_hint = self._slow_hint()
        return report

    def _slow_hint(self) -> str:
        p99 = self.p99() or 0.0
        timeout = self.probe_timeout(False)
        return (
            f"ids silent for {timeout * 1000:.0f} ms were taken for empty (meters found answer "
            f"in {p99 * 1000:.0f} ms); a device much slower than about "
            f"{SLOW_FACTOR * p99 * 1000:.0f} ms may have been missed: --expect IDS retries "
            f"those ids with a generous timeout (listening {LATE_WAIT:g} s for late replies), "
            "--timeout S gives every probe S seconds"
        )

    def _probe(self, device_id: int, start: float, generous: bool) -> FoundDevice | None:
        reply = self.arbiter.read_registers(
            device_id,
            self.probe_address,
            1,
            function=self.map.function,
            priority=Priority.SCAN,
            retries=0,
            timeout=self.probe_timeout(generous),
            late_wait=LATE_WAIT if generous else None,
        )
        if not reply.answered or reply.exception_code in GATEWAY_NO_TARGET:
            return None
        if not generous:
            self._rtts.append(reply.rtt)
        return self._found(device_id, start, reply.rtt, reply.exception_code)

    def _found(
        self,
        device_id: int,
        start: float,
        rtt: float,
        exception_code: int | None,
        late: bool = False,
    ) -> FoundDevice:
        device = FoundDevice(
            id=device_id,
            reply="ok" if exception_code is None else "exception",
            exception_code=exception_code,
            rtt_ms=rtt * 1000.0,
            found_after=time.monotonic() - start,
            late=late,
        )
        if self.identify and exception_code is None:
            device.identity = self.read_identity(device_id)
        if self.on_found:
            self.on_found(device)
        return device

    def read_identity(self, device_id: int) -> dict[str, object]:
        """Role → decoded value of the map's identity registers (missing values left out)."""
        roles = {role: self.map.get(name) for role, name in self.map.identify.items()}
        if not roles:
            return {}
        reader = MeterReader(
            self.arbiter,
            device_id,
            self.map,
            list(roles.values()),
            priority=Priority.SCAN,
            respect_backoff=False,
        )
        sample = reader.read()
        identity: dict[str, object] = {}
        for role, entry in roles.items():
            value = sample.values[entry.name].value
            if value is not None and value != "":
                identity[role] = value
        return identity
