"""What the screens show of each meter, kept apart from the widgets that draw it.

Samples arrive one per meter per poll; :class:`MeterModel` folds them into the latest value
of every entry, its min/max since start, when it was last read and a short history for the
sparkline. The widgets only read it on their refresh timer, so a burst of samples costs no
redraw.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from emtui.core.bus.reader import Sample
from emtui.core.maps.codec import Value
from emtui.core.session import MeterInfo

#: Points of history kept per numeric entry (10 minutes at a 1 s interval).
HISTORY = 600
#: A logged value older than this many poll cycles is shown dimmed (design §11).
STALE_CYCLES = 3
#: A tab's other registers are read one block per cycle, round-robin (a dozen blocks on the
#: EM6400NG): dimmed only when older than this many seconds, or they would always be.
STALE_EXTRAS = 60.0
#: Average phase current (A) above which a pump counts as running.
RUNNING_CURRENT = 0.5


@dataclass(slots=True)
class EntryState:
    """The latest of one map entry on one meter."""

    value: Value | None = None
    status: str = ""
    read_at: float | None = None  # wall time of the last read that gave a value
    tried_at: float | None = None  # wall time of the last read attempt
    low: float | None = None
    high: float | None = None
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))


@dataclass(slots=True)
class MeterModel:
    """Everything the screens know about one meter, folded from its samples."""

    info: MeterInfo
    entries: dict[str, EntryState] = field(default_factory=dict)
    last_status: str = ""
    last_sample: float | None = None  # wall time of the last logged-set sample
    last_good: float | None = None  # wall time of the last sample with any value
    link_error: str | None = None
    samples: int = 0

    def apply(self, sample: Sample) -> None:
        """Fold one sample in (the logged set or a block of the tab's other registers)."""
        logged = {e.name for e in self.info.logged}
        is_logged_read = bool(logged) and logged <= sample.values.keys()
        for name, value in sample.values.items():
            state = self.entries.get(name)
            if state is None:
                state = self.entries[name] = EntryState()
            status = sample.entry_status.get(name, "ok")
            state.tried_at = sample.time
            state.status = status
            if status != "ok":
                continue
            state.value = value
            state.read_at = sample.time
            number = value.value
            if isinstance(number, int | float) and not isinstance(number, bool):
                x = float(number)
                if math.isfinite(x):
                    state.low = x if state.low is None else min(state.low, x)
                    state.high = x if state.high is None else max(state.high, x)
                    state.history.append((sample.time, x))
        if is_logged_read:
            self.samples += 1
            self.last_status = sample.status
            self.last_sample = sample.time
            self.link_error = sample.link_error
            if any(s == "ok" for s in sample.entry_status.values()):
                self.last_good = sample.time

    def value(self, name: str) -> Value | None:
        """The latest value of entry ``name`` (None: never read)."""
        state = self.entries.get(name)
        return state.value if state else None

    def number(self, name: str) -> float | None:
        """The latest value of ``name`` as a float (None: not read or N/A)."""
        value = self.value(name)
        if value is None or not isinstance(value.value, int | float):
            return None
        return float(value.value)

    def fresh(self, name: str) -> bool:
        """True when the last attempt to read ``name`` gave a value."""
        state = self.entries.get(name)
        return bool(state and state.status == "ok")

    def stale(self, name: str, now: float, interval: float, *, logged: bool = True) -> bool:
        """True when ``name`` is old: a logged value read more than STALE_CYCLES cycles ago
        (a cycle counts at least 1 s: at interval 0 cycles run back to back), any other
        more than STALE_EXTRAS seconds ago."""
        state = self.entries.get(name)
        if state is None or state.read_at is None:
            return False
        limit = STALE_CYCLES * max(interval, 1.0) if logged else STALE_EXTRAS
        return now - state.read_at > limit

    def running(self) -> bool | None:
        """Is the pump running (its average current above RUNNING_CURRENT)? None: unknown."""
        current = self.number("current_avg")
        if current is None or not self.fresh("current_avg"):
            return None
        return current > RUNNING_CURRENT


def age_text(seconds: float | None) -> str:
    """A short age: ``<2s``, ``12s``, ``4m``, ``3h``; ``—`` when never."""
    if seconds is None:
        return "—"
    if seconds < 2:
        return "<2s"
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h"
