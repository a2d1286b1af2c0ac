"""Hand-made captures for the report tests: what a healthy meter and a miswired one report
over a 12 s window (the shapes of tests/core/check/test_checks.py)."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

from emtui.core.check.checks import run_checks
from emtui.core.check.model import BusCapture, CheckReport, MeterCapture, Snapshot
from emtui.core.report import ReportContext

T0 = 1_795_600_000.0
PHI = math.degrees(math.acos(0.85))  # a motor at PF 0.85 lagging: 31.8°
WHEN = _dt.datetime(2026, 11, 30, 14, 5, 9, tzinfo=_dt.timezone(_dt.timedelta(hours=1), "CET"))


def snap(t: float, angles: Sequence[float] = (PHI, PHI, PHI), amps: float = 60.0) -> Snapshot:
    """One read of a loaded meter whose phases sit at ``angles`` (degrees)."""
    moment = _dt.datetime.fromtimestamp(t)
    values: dict[str, Any] = {
        "frequency": 50.0,
        "voltage_unbalance_ll_worst": 0.5,
        "voltage_unbalance_ln_worst": 1.0,
        "current_unbalance_worst": 2.0,
        "meter_clock_year": moment.year,
        "meter_clock_month": moment.month,
        "meter_clock_day": moment.day,
        "meter_clock_hour": moment.hour,
        "meter_clock_minute": moment.minute,
        "meter_clock_second": moment.second,
        "meter_clock_millisecond": moment.microsecond // 1000,
    }
    total = 0.0
    for x, phi, v in zip("abc", angles, (230.0, 231.0, 229.0), strict=True):
        kva = v * amps / 1000.0
        kw, kvar = kva * math.cos(math.radians(phi)), kva * math.sin(math.radians(phi))
        total += kw
        values.update(
            {
                f"current_{x}": amps + (t - T0) * 0.1,
                f"voltage_{x}n": v,
                f"active_power_{x}": kw,
                f"reactive_power_{x}": kvar,
                f"apparent_power_{x}": kva,
                f"power_factor_{x}": kw / kva,
                f"phase_angle_{x}": phi,
            }
        )
    values["active_power_total"] = total
    values["active_energy_delivered_wh"] = int(1_000_000 + max(total, 0.0) * (t - T0) / 3.6)
    return Snapshot(time=t, values=values, duration=0.05)


def meter(
    device_id: int,
    serial: int,
    label: str = "",
    angles: Sequence[float] = (PHI, PHI, PHI),
) -> MeterCapture:
    """A meter's capture: 12 reads a second apart, CT 100/5, the phases at ``angles``."""
    return MeterCapture(
        id=device_id,
        static={
            "meter_model": "EM6400NG",
            "serial_number": serial,
            "meter_name": f"Pump {device_id}",
            "manufacturer": "Schneider Electric",
            "firmware_major": 1,
            "firmware_minor": 5,
            "firmware_quality": 3,
            "ct_primary": 100,
            "ct_secondary": 5,
            "power_system_config": 11,
            "phase_rotation": 0,
            "nominal_voltage": 230.0,
            "nominal_frequency": 50,
        },
        samples=[snap(T0 + n, angles) for n in range(12)],
        link={"requests": 48, "ok": 48, "timeouts": 0, "crc_errors": 0, "wrong_id": 0},
        expect={"ct_primary": 100},
        label=label,
    )


def site(label_2: str = "Pump 2") -> tuple[BusCapture, CheckReport]:
    """Id 1 healthy, id 2 with the CT of phase B reversed; checked."""
    capture = BusCapture(
        [
            meter(1, 2311000001, "Pump 1"),
            meter(2, 2311000002, label_2, angles=(PHI, PHI + 180.0, PHI)),
        ],
        interval=1.0,
        cycle_times=[0.4] * 12,
        seconds=11.0,
    )
    return capture, run_checks(capture)


def context(site_name: str = "pumphouse-1") -> ReportContext:
    """A fixed context: pumphouse-1, a socket:// bus, 30 Nov 2026 14:05:09 CET."""
    return ReportContext(
        site=site_name,
        port="socket://127.0.0.1:5020",
        settings="socket://127.0.0.1:5020 19200 8E1",
        hostname="pi-test",
        version="0.1.0",
        when=WHEN,
    )
