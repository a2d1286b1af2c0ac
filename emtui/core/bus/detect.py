"""Find devices whatever their serial settings (design §12, ``emtui detect``).

A meter fresh from the factory answers at 9600 8E1, id 1; one taken from another site may be
at any baud, parity and stop bits the meter offers (EM6400NG: 4800, 9600, 19200 or 38400 baud
with even, odd or no parity: 12 settings; other meters also 2400, 57600, 115200 and 8N2). A
technician who does not know should not have to try them one by one.

The order is chosen so that the likely answer comes first: the factory default (9600 8E1) at
id 1, then the settings the connection names, then the rest (the EM6400NG's 12 before the
others). With nothing known, a quick pass probes a few likely ids (the expected ones, else id
1 and the first few of the range) at every setting; then full scans of the range follow, each
id probed at most once per setting. Detection stops as soon as every expected device has
answered. Each step is a :class:`~emtui.core.bus.scanner.Scanner` pass at one setting (the
port retuned in place, :meth:`BusArbiter.retune`), so its probes follow the scan's timeout
rule and its floor (Σ request wire time + timeout) is known: :attr:`DetectReport.floor`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.ids import format_ids
from emtui.core.bus.link import ConnectionSettings, LinkError, PortSettingsRejected
from emtui.core.bus.scanner import (
    GENEROUS_MARGIN,
    PROBE_REPLY_CHARS,
    PROBE_REQUEST_CHARS,
    FoundDevice,
    Scanner,
)
from emtui.core.maps.registers import RegisterMap

#: The EM6400NG's bauds, most common first (9600: factory default; 19200: the reference site).
EM6400NG_BAUDS = (9600, 19200, 38400, 4800)
#: Other meters' bauds.
OTHER_BAUDS = (2400, 57600, 115200)
#: Parity and stop bits: the EM6400NG's (even, none, odd with one stop bit), then 8N2.
EM6400NG_FORMATS = (("E", 1), ("N", 1), ("O", 1))
OTHER_FORMATS = (("N", 2),)
#: How many ids of the range (besides id 1) the quick pass probes when none is expected.
LIKELY_IDS = 4
#: The late tail of a step in which a device answered (a slower one at the end of its ids).
STEP_TAIL = 0.2
#: Estimates before anything is measured: seconds to retune the port, overhead per probe.
RETUNE_GUESS = 0.06
PROBE_OVERHEAD_GUESS = 0.001


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Baud, parity and stop bits (8 data bits)."""

    baud: int
    parity: str = "E"
    stopbits: int = 1

    def describe(self) -> str:
        """E.g. ``9600 8E1``."""
        return f"{self.baud} 8{self.parity}{self.stopbits}"

    @property
    def char_time(self) -> float:
        """Seconds one character takes."""
        return (1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits) / self.baud

    def on(self, base: ConnectionSettings) -> ConnectionSettings:
        """``base`` (port, timeout, …) at these settings."""
        return dataclasses.replace(
            base, baud=self.baud, parity=self.parity, stopbits=self.stopbits, bytesize=8
        )

    @classmethod
    def of(cls, settings: ConnectionSettings) -> SerialSettings:
        """The line settings of a connection."""
        return cls(settings.baud, settings.parity.upper(), settings.stopbits)


FACTORY = SerialSettings(9600, "E", 1)
"""The EM6400NG's factory setting (at id 1)."""


def all_settings() -> list[SerialSettings]:
    """Every setting tried, in the default order: the EM6400NG's 12, then the others."""
    out = [SerialSettings(b, p, s) for b in EM6400NG_BAUDS for p, s in EM6400NG_FORMATS]
    out += [SerialSettings(b, p, s) for b in EM6400NG_BAUDS for p, s in OTHER_FORMATS]
    out += [
        SerialSettings(b, p, s) for b in OTHER_BAUDS for p, s in (*EM6400NG_FORMATS, *OTHER_FORMATS)
    ]
    return out


def parse_only(text: str) -> list[SerialSettings]:
    """``--only``: comma-separated ``BAUD``, ``FORMAT`` or ``BAUD:FORMAT`` (e.g.
    ``9600:8E1,19200``, ``8N1``) → the settings they allow, in the default order.

    Raises:
        ValueError: naming the item that is not one.
    """
    wanted: list[SerialSettings] = []
    candidates = all_settings()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        baud_text, _, fmt = item.upper().partition(":")
        if not fmt and not baud_text.isdigit():
            baud_text, fmt = "", baud_text
        if baud_text and not baud_text.isdigit():
            raise ValueError(f"--only: {item!r} is not BAUD, FORMAT or BAUD:FORMAT")
        if fmt and (len(fmt) != 3 or fmt[0] != "8" or fmt[1] not in "ENO" or fmt[2] not in "12"):
            raise ValueError(f"--only: {item!r}: FORMAT is 8E1, 8N1, 8O1 or 8N2")
        baud = int(baud_text) if baud_text else None
        matches = [
            c
            for c in candidates
            if (baud is None or c.baud == baud)
            and (not fmt or (c.parity, c.stopbits) == (fmt[1], int(fmt[2])))
        ]
        if not matches:
            if baud is None:
                raise ValueError(f"--only: {item!r} is not a setting detection tries")
            parity, stop = (fmt[1], int(fmt[2])) if fmt else ("E", 1)
            matches = (
                [SerialSettings(baud, parity, stop)]
                if fmt
                else [SerialSettings(baud, p, s) for p, s in (*EM6400NG_FORMATS, *OTHER_FORMATS)]
            )
        wanted += [m for m in matches if m not in wanted]
    if not wanted:
        raise ValueError("--only: give at least one setting, e.g. 9600:8E1")
    return wanted


def ordered(
    connection: SerialSettings | None, only: Sequence[SerialSettings] | None = None
) -> list[SerialSettings]:
    """The order settings are tried in: factory default, the connection's, then the rest
    (``only``: just those, in that order)."""
    pool = list(only) if only is not None else all_settings()
    first = [FACTORY] + ([connection] if connection is not None else [])
    head = [s for s in first if s in pool or (only is None and s == connection)]
    return list(dict.fromkeys(head + pool))


@dataclass(frozen=True, slots=True)
class Step:
    """One pass: ``ids`` probed at ``settings`` (``phase``: factory, quick or full)."""

    settings: SerialSettings
    ids: tuple[int, ...]
    phase: str

    def estimate(self, retune: float, overhead: float) -> float:
        """Seconds it should take if nobody answers."""
        wire = (PROBE_REQUEST_CHARS + PROBE_REPLY_CHARS) * self.settings.char_time
        return retune + len(self.ids) * (wire + GENEROUS_MARGIN + overhead)


@dataclass(slots=True)
class Detected:
    """A device that answered at some settings."""

    settings: SerialSettings
    device: FoundDevice
    found_after: float

    def as_dict(self) -> dict[str, object]:
        """The JSON form (design §12 keys: id, baud, parity, stopbits, reply, model)."""
        return {
            "id": self.device.id,
            "baud": self.settings.baud,
            "parity": self.settings.parity,
            "stopbits": self.settings.stopbits,
            "reply": self.device.reply,
            "model": self.device.identity.get("model"),
            "serial": self.device.identity.get("serial"),
            "rtt_ms": round(self.device.rtt_ms, 1),
            "found_after_s": round(self.found_after, 3),
        }


@dataclass(slots=True)
class DetectReport:
    """What detection found, what it tried and how long it took."""

    found: list[Detected]
    expected: list[int]
    tried: list[Step]
    duration: float
    floor: float
    rejected: list[SerialSettings] = field(default_factory=list)
    cancelled: bool = False

    @property
    def missing(self) -> list[int]:
        """Expected ids found at no setting."""
        ids = {d.device.id for d in self.found}
        return [i for i in self.expected if i not in ids]

    def settings_by_id(self) -> dict[int, list[SerialSettings]]:
        """id → the settings it answered at (one meter may answer at more than one: over a
        pty only the baud counts, and a UART at 8N2 may take 8N1 frames)."""
        out: dict[int, list[SerialSettings]] = {}
        for d in self.found:
            out.setdefault(d.device.id, []).append(d.settings)
        return out

    @property
    def mixed(self) -> bool:
        """True when no one setting reaches every device found (one bus, one setting)."""
        sets = [set(v) for v in self.settings_by_id().values()]
        return bool(sets) and not set.intersection(*sets)

    def mixed_warning(self) -> str | None:
        """The warning about a bus with meters at mixed settings, or None."""
        if not self.mixed:
            return None
        groups: dict[SerialSettings, list[int]] = {}
        for d in self.found:
            groups.setdefault(d.settings, []).append(d.device.id)
        parts = "; ".join(
            f"{s.describe()}: ids {format_ids(sorted(set(ids)))}" for s, ids in groups.items()
        )
        return (
            f"meters at mixed serial settings ({parts}): every meter on one bus must use the "
            "same baud, parity and stop bits — set them alike (emtui setup --new-baud/"
            "--new-parity) before logging"
        )

    def tried_dicts(self) -> list[dict[str, object]]:
        """``tried`` in the JSON: each step's settings and ids."""
        return [
            {
                "baud": s.settings.baud,
                "parity": s.settings.parity,
                "stopbits": s.settings.stopbits,
                "ids": format_ids(list(s.ids)),
                "phase": s.phase,
            }
            for s in self.tried
        ]


def plan(
    order: Sequence[SerialSettings], ids: Sequence[int], expected: Sequence[int]
) -> list[Step]:
    """The steps of a detection: the factory setting at id 1, a quick pass over the likely
    ids at every setting, then full scans of the rest of ``ids`` (each id once per setting)."""
    id_set = list(dict.fromkeys(ids))
    if expected:
        likely = list(dict.fromkeys(expected))
    else:
        likely = ([1] if 1 in id_set else []) + [i for i in id_set if i != 1][:LIKELY_IDS]
    steps: list[Step] = []
    done: dict[SerialSettings, set[int]] = {}

    def add(settings: SerialSettings, wanted: Sequence[int], phase: str) -> None:
        seen = done.setdefault(settings, set())
        todo = tuple(i for i in wanted if i not in seen)
        if todo:
            seen.update(todo)
            steps.append(Step(settings, todo, phase))

    if FACTORY in order and 1 in likely:
        add(FACTORY, [1], "factory")
    for settings in order:
        add(settings, likely, "quick")
    for settings in order:
        add(settings, id_set, "full")
    return steps


class Detector:
    """Runs a detection on one port through its arbiter (started at any of the settings).

    Args:
        arbiter: the bus (polling is paused by each step's scan).
        rmap: the map whose identity registers identify a device found.
        steps: from :func:`plan`.
        expected: stop once every one of these ids answered (at any setting).
        on_progress: (probes done, probes planned, settings, current id) before each probe.
        on_found: each device as it answers.
    """

    def __init__(
        self,
        arbiter: BusArbiter,
        rmap: RegisterMap,
        steps: Sequence[Step],
        expected: Sequence[int] = (),
        *,
        on_progress: Callable[[int, int, SerialSettings, int], None] | None = None,
        on_found: Callable[[Detected], None] | None = None,
    ) -> None:
        self.arbiter = arbiter
        self.map = rmap
        self.steps = list(steps)
        self.expected = list(expected)
        self.on_progress = on_progress
        self.on_found = on_found
        self.total = sum(len(s.ids) for s in self.steps)
        self._index = 0
        self._done_before = 0
        self._scanner: Scanner | None = None
        self._retunes: list[float] = []
        self._overheads: list[float] = []
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop after the probe on the wire."""
        self._cancel.set()
        scanner = self._scanner
        if scanner is not None:
            scanner.cancel()

    def _retune_cost(self) -> float:
        return sum(self._retunes) / len(self._retunes) if self._retunes else RETUNE_GUESS

    def _overhead(self) -> float:
        recent = self._overheads[-8:]
        return max(0.0, sum(recent) / len(recent)) if recent else PROBE_OVERHEAD_GUESS

    def eta(self) -> float:
        """Seconds still needed by the same estimate as the probes' timeouts: the running
        step's own estimate (:meth:`Scanner.eta`) plus each step left as if nobody answers
        (its ids × (probe wire time + the generous timeout margin + the overhead measured)
        + the time a retune has taken)."""
        scanner = self._scanner
        running = scanner.eta() if scanner is not None else 0.0
        retune, overhead = self._retune_cost(), self._overhead()
        rest = sum(s.estimate(retune, overhead) for s in self.steps[self._index + 1 :])
        if scanner is None and self._index < len(self.steps):
            rest += self.steps[self._index].estimate(retune, overhead)
        return running + rest

    def _step(
        self,
        step: Step,
        start: float,
        found: list[Detected],
        found_ids: set[int],
        expected: set[int],
    ) -> Scanner:
        """Scan ``step.ids`` at the settings the port is at; returns the scanner used."""
        settings = step.settings

        def progress(done: int, total: int, current: int) -> None:
            if self.on_progress and current:
                self.on_progress(self._done_before + done, self.total, settings, current)

        def on_found(device: FoundDevice) -> None:
            scanner.late_tail = STEP_TAIL  # a slower one may follow among its last ids
            detected = Detected(settings, device, time.monotonic() - start)
            found.append(detected)
            found_ids.add(device.id)
            if self.on_found:
                self.on_found(detected)
            if expected and expected <= found_ids:
                scanner.cancel()

        scanner = Scanner(
            self.arbiter, self.map, on_progress=progress, on_found=on_found, late_tail=0.0
        )
        self._scanner = scanner
        if self._cancel.is_set():
            scanner.cancel()
        try:
            scanner.scan(list(step.ids), stop_early=False)
        finally:
            self._scanner = None
        return scanner

    def run(self) -> DetectReport:
        """Run the steps until every expected id answered (or all ran)."""
        start = time.monotonic()
        found: list[Detected] = []
        found_ids: set[int] = set()
        tried: list[Step] = []
        rejected: list[SerialSettings] = []
        floor = 0.0
        expected = set(self.expected)
        base = self.arbiter.settings
        for index, step in enumerate(self.steps):
            self._index = index
            if self._cancel.is_set() or (expected and expected <= found_ids):
                break
            if step.settings in rejected:
                self._done_before += len(step.ids)
                continue
            began = time.monotonic()
            if SerialSettings.of(self.arbiter.settings) != step.settings:
                try:
                    self.arbiter.retune(step.settings.on(base))
                except PortSettingsRejected:
                    rejected.append(step.settings)
                    self._done_before += len(step.ids)
                    continue
                self._retunes.append(time.monotonic() - began)
            began = time.monotonic()
            scanner = self._step(step, start, found, found_ids, expected)
            tried.append(step)
            floor += scanner.floor
            elapsed = time.monotonic() - began
            if len(step.ids):
                self._overheads.append((elapsed - scanner.floor) / len(step.ids))
            self._done_before += len(step.ids)
        self._index = len(self.steps)
        return DetectReport(
            found=found,
            expected=sorted(expected),
            tried=tried,
            duration=time.monotonic() - start,
            floor=floor,
            rejected=rejected,
            cancelled=self._cancel.is_set(),
        )


def start_arbiter(base: ConnectionSettings, order: Sequence[SerialSettings]) -> BusArbiter:
    """A started arbiter on ``base.port`` at the first of ``order`` the port accepts (a pty
    refuses parity E and O); raises the LinkError of the last attempt when none is accepted
    (and at once for any other error: missing port, busy, …)."""
    error: LinkError | None = None
    for settings in order:
        arbiter = BusArbiter(settings.on(base))
        try:
            return arbiter.start()
        except PortSettingsRejected as exc:
            error = exc
    if error is None:
        raise ValueError("no settings to try")
    raise error
