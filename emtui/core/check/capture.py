"""Capture one window of values from every meter of a bus for the commissioning checks.

One shared window for all meters: every cycle reads each meter's logged set (as the logger
would: its time is the bus load the checks judge) and then the extra registers the checks need
(angles, unbalance, the meter clock, energies); identity and setup are read once, first. Every
read goes through the session's one arbiter (design §3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from emtui.core.bus.arbiter import Priority
from emtui.core.bus.reader import MeterReader, Sample
from emtui.core.check.model import BusCapture, MeterCapture, Scalar, Snapshot
from emtui.core.config import MeterConfig
from emtui.core.maps.registers import RegisterEntry, RegisterMap
from emtui.core.session import BusSession, MeterInfo

__all__ = ["CHECK_EXTRAS", "STATIC_NAMES", "capture_window"]

STATIC_NAMES = (
    "meter_name",
    "meter_model",
    "manufacturer",
    "serial_number",
    "firmware_version",
    "firmware_major",
    "firmware_minor",
    "firmware_quality",
    "number_of_phases",
    "number_of_wires",
    "power_system_config",
    "nominal_frequency",
    "nominal_voltage",
    "phase_rotation",
    "vt_primary",
    "vt_secondary",
    "ct_primary",
    "ct_secondary",
    "vt_connection_type",
)
"""Identity and setup entries, read once at the start of the window."""

CHECK_EXTRAS = (
    *(f"current_{x}" for x in "abc"),
    *(f"voltage_{x}n" for x in "abc"),
    *(f"active_power_{x}" for x in "abc"),
    *(f"reactive_power_{x}" for x in "abc"),
    *(f"apparent_power_{x}" for x in "abc"),
    *(f"power_factor_{x}" for x in "abc"),
    *(f"phase_angle_{x}" for x in "abc"),
    "frequency",
    "current_unbalance_worst",
    "voltage_unbalance_ll_worst",
    "voltage_unbalance_ln_worst",
    "active_energy_delivered",
    "active_energy_received",
    "active_energy_delivered_wh",
    *(
        f"meter_clock_{f}"
        for f in ("year", "month", "day", "hour", "minute", "second", "millisecond")
    ),
)
"""Live entries the checks need each cycle (those not in the logged set are read besides)."""


def _entries(rmap: RegisterMap, names: tuple[str, ...]) -> list[RegisterEntry]:
    known = {e.name: e for e in rmap.entries}
    return [known[n] for n in names if n in known]


def _plain(sample: Sample) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for name, value in sample.values.items():
        v = value.value
        out[name] = v if isinstance(v, int | float | str) or v is None else str(v)
    return out


def expectations(meters: Sequence[MeterConfig]) -> dict[int, dict[str, float | int]]:
    """Per meter id, its ``[meters.expect]`` values (meters without any left out)."""
    return {m.id: dict(m.expect) for m in meters if m.expect}


def capture_window(
    session: BusSession,
    seconds: float,
    *,
    expect: Mapping[int, Mapping[str, float | int]] | None = None,
    ids: list[int] | None = None,
    on_cycle: Callable[[int, float], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BusCapture:
    """Read every meter of ``session`` over ``seconds`` and return the capture.

    The window runs until a cycle starts at least ``seconds`` after the first one, so every
    meter has reads spanning the whole window (the wiring checks need ≥ 10 s of load). Cycles
    are paced at the session's interval when they are shorter than it.

    Args:
        session: an open session (``open_bus()`` called).
        expect: per meter id, the expected setup values (``[meters.expect]``).
        ids: only these meters (default: every meter of the session).
        on_cycle: called after each cycle with (cycle number, seconds elapsed).
    """
    infos: list[MeterInfo] = [m for m in session.meters if ids is None or m.id in ids]
    arbiter = session.arbiter
    captures: dict[int, MeterCapture] = {}
    logged_readers: dict[int, MeterReader] = {}
    extra_readers: dict[int, MeterReader | None] = {}
    for info in infos:
        label = "" if info.label == f"meter {info.id}" else info.label
        captures[info.id] = MeterCapture(
            id=info.id, expect=dict((expect or {}).get(info.id, {})), label=label
        )
        logged_readers[info.id] = MeterReader(arbiter, info.id, info.map, info.logged)
        logged_names = {e.name for e in info.logged}
        extra = [e for e in _entries(info.map, CHECK_EXTRAS) if e.name not in logged_names]
        extra_readers[info.id] = (
            MeterReader(arbiter, info.id, info.map, extra, priority=Priority.INTERACTIVE)
            if extra
            else None
        )
    # identity and setup, once
    for info in infos:
        static = _entries(info.map, STATIC_NAMES)
        if static:
            reader = MeterReader(arbiter, info.id, info.map, static, priority=Priority.INTERACTIVE)
            captures[info.id].static = _plain(reader.read())
    stats_before = {i: arbiter.device_stats(i).as_dict() for i in captures}

    interval = session.interval
    cycle_times: list[float] = []
    first: float | None = None
    cycle = 0
    while True:
        started = clock()
        if first is None:
            first = started
        logged_time = 0.0
        logged: dict[int, Sample] = {}
        for info in infos:
            sample = logged_readers[info.id].read()
            logged_time += sample.duration
            logged[info.id] = sample
        cycle_times.append(logged_time)
        for info in infos:
            values = _plain(logged[info.id])
            when, duration = logged[info.id].time, logged[info.id].duration
            extra_reader = extra_readers[info.id]
            if extra_reader is not None:
                extra_sample = extra_reader.read()
                values.update(_plain(extra_sample))
                # The meter clock is in the extras: compare it with that read's time.
                when, duration = extra_sample.time, extra_sample.duration
            captures[info.id].samples.append(Snapshot(when, values, duration))
        cycle += 1
        if on_cycle is not None:
            on_cycle(cycle, clock() - first)
        if started - first >= seconds:
            break
        if interval > 0:
            rest = started + interval - clock()
            if rest > 0:
                time.sleep(rest)
    for device_id, capture in captures.items():
        capture.link = _window_stats(
            stats_before[device_id], arbiter.device_stats(device_id).as_dict()
        )
    return BusCapture(
        meters=[captures[i.id] for i in infos],
        interval=interval,
        cycle_times=cycle_times,
        seconds=seconds,
    )


def _window_stats(before: Mapping[str, object], after: Mapping[str, object]) -> dict[str, object]:
    """The counters of the window (after − before); response times as measured."""
    out: dict[str, object] = dict(after)
    for key in ("requests", "ok", "timeouts", "crc_errors", "wrong_id", "skipped", "late"):
        a, b = after.get(key, 0), before.get(key, 0)
        if isinstance(a, int) and isinstance(b, int):
            out[key] = a - b
    exc_a, exc_b = after.get("exceptions", {}), before.get("exceptions", {})
    if isinstance(exc_a, dict) and isinstance(exc_b, dict):
        out["exceptions"] = {
            k: n - int(exc_b.get(k, 0)) for k, n in exc_a.items() if n - int(exc_b.get(k, 0))
        }
    return out
