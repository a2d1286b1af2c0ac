"""Find the meters on a bus (design §5), fast and honestly.

Any reply, even a Modbus exception, means a device is at that id — except the two exceptions
a Modbus TCP gateway gives for an id with nothing behind it. The first pass never
retries; until the first reply the timeout is generous enough for a slow meter at this baud,
after it the timeout follows the response times actually seen, so 247 ids take seconds, not
minutes. A second pass with the generous timeout retries the expected ids that were missed.
The link flushes stale bytes before every request, so a late reply is never credited to the
next id. A found meter is identified by reading the map's identity registers.

The rule for meters slower than those timeouts: a reply that comes after its probe timed out
is recognised by its id (the link knows which ids it is still waiting for) and still counts —
the meter is found (``late: true``), and the arbiter learns its response time, so the
identity read that follows waits long enough. The second pass listens up to
:data:`LATE_WAIT` s for such a reply.
"""

from __future__ import annotations

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
#: Allowance once replies have been seen.
LEARNED_MARGIN = 0.010
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
    """

    def __init__(
        self,
        arbiter: BusArbiter,
        rmap: RegisterMap,
        *,
        identify: bool = True,
        on_progress: Callable[[int, int, int], None] | None = None,
        on_found: Callable[[FoundDevice], None] | None = None,
    ) -> None:
        self.arbiter = arbiter
        self.map = rmap
        self.identify = identify
        self.on_progress = on_progress
        self.on_found = on_found
        self.cancel_event = threading.Event()
        probe_name = rmap.identify.get("model") or rmap.entries[0].name
        self.probe_address = rmap.get(probe_name).address
        self._largest_rtt = 0.0
        self._late: list[TrafficRecord] = []
        self._late_lock = threading.Lock()

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

    def probe_timeout(self, generous: bool) -> float:
        """The timeout rule of design §5 (counted from the start of the request)."""
        settings = self.arbiter.settings
        if settings.timeout is not None:
            return settings.timeout
        wire = self._wire()
        if generous or self._largest_rtt == 0.0:
            return wire + GENEROUS_MARGIN
        return max(wire + LEARNED_MARGIN, 1.5 * self._largest_rtt)

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
        self.arbiter.add_listener(self._on_traffic)
        try:
            with self.arbiter.polling_paused():
                for index, device_id in enumerate(ids):
                    if self.cancel_event.is_set():
                        break
                    if self.on_progress:
                        self.on_progress(index, len(ids), device_id)
                    device = self._probe(device_id, start, generous=False)
                    if device:
                        found[device_id] = device
                    self._take_late(wanted, found, start)
                    if stop_early and expected_set and expected_set <= found.keys():
                        stopped_early = index + 1 < len(ids)
                        break
                all_found = bool(expected_set) and expected_set <= found.keys()
                if not self.cancel_event.is_set() and not all_found:
                    self.arbiter.listen_for_late(LATE_TAIL)
                    self._take_late(wanted, found, start)
                for device_id in sorted(expected_set - found.keys()):
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
            self.arbiter.remove_listener(self._on_traffic)
            if self.on_progress and not self.cancel_event.is_set():
                self.on_progress(len(ids), len(ids), 0)
        return ScanReport(
            devices=sorted(found.values(), key=lambda d: d.id),
            ids=list(ids),
            expected=sorted(expected_set),
            duration=time.monotonic() - start,
            cancelled=self.cancel_event.is_set(),
            stopped_early=stopped_early,
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
        self._largest_rtt = max(self._largest_rtt, reply.rtt)
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
