"""Per-device link statistics, the numbers a technician reads to judge a bus.

Silence, corrupted frames, replies from the wrong id and Modbus exceptions have different
causes (absent meter or wrong baud; noise, termination or A/B; an address clash; a wrong
register), so they are counted apart.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from emtui.core.bus.link import Outcome, Reply


def percentile(samples: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``samples`` by nearest rank, None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(slots=True)
class DeviceStats:
    """Counters and response times of one device id on one bus.

    Attributes:
        requests: transactions sent (each retry counts).
        ok: normal replies.
        timeouts: no reply at all.
        crc_errors: corrupted or truncated frames.
        wrong_id: good frames from another device id.
        exceptions: Modbus exception replies by code.
        skipped: requests not sent because the device was backed off.
        late: replies that came after their timeout (the learned margin grows from them).
        rtts: recent response times in seconds (request start to last reply byte).
        turnarounds: recent device turnaround times (rtt minus the wire time of both frames).
        last_reply: monotonic time of the last reply (normal or exception), 0 if none.
    """

    requests: int = 0
    ok: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    wrong_id: int = 0
    exceptions: Counter[int] = field(default_factory=Counter)
    skipped: int = 0
    late: int = 0
    rtts: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    turnarounds: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    last_reply: float = 0.0

    def record(self, reply: Reply, wire_time: float, now: float) -> None:
        """Count one transaction; ``wire_time`` is the request + reply wire time."""
        if reply.outcome is Outcome.SKIPPED:
            self.skipped += 1
            return
        self.requests += 1
        if reply.outcome is Outcome.OK:
            self.ok += 1
        elif reply.outcome is Outcome.EXCEPTION:
            self.exceptions[reply.exception_code or 0] += 1
        elif reply.outcome is Outcome.TIMEOUT:
            self.timeouts += 1
        elif reply.outcome is Outcome.CRC:
            self.crc_errors += 1
        elif reply.outcome is Outcome.WRONG_ID:
            self.wrong_id += 1
        if reply.answered:
            self.last_reply = now
            self.rtts.append(reply.rtt)
            self.turnarounds.append(max(0.0, reply.rtt - wire_time))

    @property
    def errors(self) -> int:
        """Requests that got no usable reply (timeouts, CRC, wrong id)."""
        return self.timeouts + self.crc_errors + self.wrong_id

    def rtt_ms(self, q: float) -> float | None:
        """Response time quantile in milliseconds."""
        value = percentile(list(self.rtts), q)
        return None if value is None else value * 1000.0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        p50 = self.rtt_ms(0.5)
        p99 = self.rtt_ms(0.99)
        return {
            "requests": self.requests,
            "ok": self.ok,
            "timeouts": self.timeouts,
            "crc_errors": self.crc_errors,
            "wrong_id": self.wrong_id,
            "exceptions": {f"{code:02d}": n for code, n in sorted(self.exceptions.items())},
            "skipped": self.skipped,
            "late": self.late,
            "rtt_p50_ms": None if p50 is None else round(p50, 2),
            "rtt_p99_ms": None if p99 is None else round(p99, 2),
        }
