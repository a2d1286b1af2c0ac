"""Read a set of map entries from one meter: plan, read, split on refusal, decode.

The logger, the live tables and ``emtui read`` all read meters through :class:`MeterReader`,
so a value decodes the same everywhere and a block the meter refused is split once and then
remembered for every later cycle.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.link import LinkError, Outcome, Reply
from emtui.core.bus.planner import ReadBlock, ReadPlanner
from emtui.core.maps.codec import Value, decode_entry
from emtui.core.maps.registers import RegisterEntry, RegisterMap

#: Meter turnaround the planner assumes until the meter's own has been measured (the vendor
#: documents none; the simulator's default).
ASSUMED_TURNAROUND = 0.020
#: Exception code a meter gives for registers it does not have.
ILLEGAL_ADDRESS = 2


@dataclass(frozen=True, slots=True)
class Sample:
    """One read of one meter.

    Attributes:
        device_id: the meter's slave id.
        time: wall-clock time (epoch seconds) when the read started.
        status: ``ok``, ``partial``, ``timeout``, ``exception:NN`` or ``error`` (design §8).
        values: entry name → decoded value (value None when missing or not read).
        entry_status: entry name → ``ok`` or why it has no value.
        duration: seconds the read took.
        requests: transactions it took (retries included).
        link_error: why the connection itself failed (adapter unplugged, gateway down), if it
            did; the sample's status is then ``error``.
    """

    device_id: int
    time: float
    status: str
    values: dict[str, Value]
    entry_status: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0
    requests: int = 0
    link_error: str | None = None


def _status_of(outcome: Outcome, reply: Reply | None) -> str:
    if outcome is Outcome.OK:
        return "ok"
    if outcome is Outcome.EXCEPTION and reply is not None:
        return f"exception:{reply.exception_code or 0:02d}"
    if outcome in (Outcome.TIMEOUT, Outcome.SKIPPED):
        return "timeout"
    return "error"


def combine_status(statuses: Sequence[str]) -> str:
    """The row status from the statuses of a read's entries."""
    if not statuses:
        return "ok"
    ok = sum(1 for s in statuses if s == "ok")
    if ok == len(statuses):
        return "ok"
    if ok:
        return "partial"
    distinct = set(statuses)
    return statuses[0] if len(distinct) == 1 else "error"


class MeterReader:
    """Reads ``entries`` of ``rmap`` from meter ``device_id`` through ``arbiter``.

    Args:
        priority: the arbiter priority of the reads (the logger polls with POLL).
        respect_backoff: skip the wire while the meter is backed off (pollers).
        clock: wall clock for the sample time (injectable).
    """

    def __init__(
        self,
        arbiter: BusArbiter,
        device_id: int,
        rmap: RegisterMap,
        entries: Sequence[RegisterEntry] | None = None,
        *,
        priority: Priority = Priority.POLL,
        respect_backoff: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.arbiter = arbiter
        self.device_id = device_id
        self.map = rmap
        # A register that acts when read (the command semaphore) is never polled.
        chosen = tuple(entries) if entries is not None else rmap.logged
        self.entries = tuple(e for e in chosen if not e.acts_on_read)
        self.priority = priority
        self.respect_backoff = respect_backoff
        self.clock = clock
        turnaround_chars = ASSUMED_TURNAROUND / arbiter.settings.char_time
        self.planner = ReadPlanner(
            rmap.block_size, turnaround_chars, rmap.max_gap, avoid=rmap.acting_registers
        )
        self._plan: list[ReadBlock] | None = None

    @property
    def plan(self) -> list[ReadBlock]:
        """The current read plan (recomputed after a refused block or when the meter's
        measured turnaround moves the break-even between a longer read and a second one)."""
        self._follow_turnaround()
        if self._plan is None:
            self._plan = self.planner.plan(self.entries)
        return self._plan

    def _follow_turnaround(self) -> None:
        samples = list(self.arbiter.device_stats(self.device_id).turnarounds)[-20:]
        if len(samples) < 5:
            return
        measured = statistics.median(samples) / self.arbiter.settings.char_time
        assumed = self.planner.turnaround_chars
        if abs(measured - assumed) > 0.25 * assumed + 2:
            self.planner.turnaround_chars = measured
            self._plan = None

    def failed(self, link_error: str) -> Sample:
        """A sample for a read not attempted because the connection is down."""
        return Sample(
            device_id=self.device_id,
            time=self.clock(),
            status="error",
            values={e.name: Value(None) for e in self.entries},
            entry_status={e.name: "error" for e in self.entries},
            link_error=link_error,
        )

    def read(self) -> Sample:
        """Read every planned block once (with the arbiter's retries) and decode.

        Never raises for a failing bus: a lost connection gives a sample with status
        ``error`` and ``link_error`` set (the arbiter reopens the link on the next request).
        """
        started = self.clock()
        t0 = time.monotonic()
        values: dict[str, Value] = {}
        entry_status: dict[str, str] = {}
        requests = 0
        pending = list(self.plan)
        replanned = False
        link_error: str | None = None
        while pending:
            block = pending.pop(0)
            try:
                reply = self.arbiter.read_registers(
                    self.device_id,
                    block.address,
                    block.count,
                    function=self.map.function,
                    priority=self.priority,
                    respect_backoff=self.respect_backoff,
                )
            except (LinkError, CancelledError) as exc:  # the bus is gone (or shutting down):
                link_error = str(exc) or "the bus was stopped"  # no point in the other blocks
                for entry in [e for b in (block, *pending) for e in b.entries]:
                    values[entry.name] = Value(None)
                    entry_status[entry.name] = "error"
                break
            requests += reply.attempts
            if reply.ok and reply.registers is not None and len(reply.registers) == block.count:
                for entry in block.entries:
                    values[entry.name] = decode_entry(
                        self.map, entry, block.slice(entry, reply.registers)
                    )
                    entry_status[entry.name] = "ok"
                continue
            if reply.outcome is Outcome.EXCEPTION and reply.exception_code == ILLEGAL_ADDRESS:
                replacement = self.planner.refused(block)
                replanned = True
                if replacement:
                    pending[:0] = replacement
                    continue
            status = _status_of(reply.outcome, reply)
            if reply.ok:  # a reply of the wrong length
                status = "error"
            for entry in block.entries:
                values[entry.name] = Value(None)
                entry_status[entry.name] = status
        if replanned:
            self._plan = None
        unreadable = self.planner.unreadable
        for entry in self.entries:
            if entry.name not in entry_status:  # refused even when read alone
                values[entry.name] = Value(None)
                entry_status[entry.name] = f"exception:{ILLEGAL_ADDRESS:02d}"
        status = combine_status(list(entry_status.values()))
        readable = [s for name, s in entry_status.items() if name not in unreadable]
        if status == "error" and readable:
            # A silent meter with an entry it never has: its row says "timeout", not "error"
            # (which means the bus itself failed).
            status = combine_status(readable)
        return Sample(
            device_id=self.device_id,
            time=started,
            status=status,
            values=values,
            entry_status=entry_status,
            duration=time.monotonic() - t0,
            requests=requests,
            link_error=link_error,
        )
