"""The commissioning checks on hand-made samples: one test per threshold and per wiring
fault of the issue's table, and a healthy meter that passes everything it can."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

import pytest

from emtui.core.check import checks as c
from emtui.core.check.model import BusCapture, MeterCapture, MeterReport, Snapshot

T0 = 1_795_600_000.0
PHI = math.degrees(math.acos(0.85))  # a motor at PF 0.85 lagging: 31.8°


def clock_fields(epoch: float) -> dict[str, int]:
    moment = _dt.datetime.fromtimestamp(epoch)
    return {
        "meter_clock_year": moment.year,
        "meter_clock_month": moment.month,
        "meter_clock_day": moment.day,
        "meter_clock_hour": moment.hour,
        "meter_clock_minute": moment.minute,
        "meter_clock_second": moment.second,
        "meter_clock_millisecond": moment.microsecond // 1000,
    }


def snap(
    t: float,
    *,
    angles: Sequence[float] = (PHI, PHI, PHI),
    current: Sequence[float] = (60.0, 60.0, 60.0),
    volts: Sequence[float] = (230.0, 231.0, 229.0),
    frequency: float = 50.0,
    clock_offset: float = 0.0,
    energy_wh: float | None = None,
    v_unbalance: float = 0.5,
    i_unbalance: float = 2.0,
) -> Snapshot:
    """What a meter reports at ``t`` for a load whose phases sit at ``angles`` (degrees)."""
    values: dict[str, Any] = {"frequency": frequency}
    total_kw = 0.0
    for x, phi, amps, v in zip("abc", angles, current, volts, strict=True):
        kva = v * amps / 1000.0
        kw, kvar = kva * math.cos(math.radians(phi)), kva * math.sin(math.radians(phi))
        total_kw += kw
        values.update(
            {
                f"current_{x}": amps,
                f"voltage_{x}n": v,
                f"active_power_{x}": kw,
                f"reactive_power_{x}": kvar,
                f"apparent_power_{x}": kva,
                f"power_factor_{x}": kw / kva if kva > 0.01 else None,
                f"phase_angle_{x}": phi if kva > 0.01 else None,
            }
        )
    values["voltage_unbalance_ll_worst"] = v_unbalance
    values["voltage_unbalance_ln_worst"] = v_unbalance * 2
    values["current_unbalance_worst"] = i_unbalance if max(current) > 0 else None
    if energy_wh is None:
        energy_wh = 1_000_000.0 + max(total_kw, 0.0) * (t - T0) / 3.6
    values["active_energy_delivered_wh"] = int(energy_wh)
    values.update(clock_fields(t + clock_offset))
    return Snapshot(time=t, values=values, duration=0.05)


STATIC = {
    "meter_model": "EM6400NG",
    "serial_number": 2311000001,
    "meter_name": "Pump 1",
    "firmware_major": 1,
    "firmware_minor": 5,
    "firmware_quality": 3,
    "ct_primary": 100,
    "ct_secondary": 5,
    "power_system_config": 11,
    "phase_rotation": 0,
    "nominal_voltage": 230.0,
    "nominal_frequency": 50,
}

LINK_OK = {"requests": 100, "ok": 100, "timeouts": 0, "crc_errors": 0, "wrong_id": 0}


def meter(
    samples: Sequence[Snapshot] | None = None,
    *,
    id: int = 1,
    link: dict[str, Any] | None = None,
    expect: dict[str, float | int] | None = None,
    **kw: Any,
) -> MeterCapture:
    if samples is None:
        samples = [snap(T0 + n, **kw) for n in range(12)]
    return MeterCapture(
        id=id,
        static=dict(STATIC),
        samples=list(samples),
        link=dict(link or LINK_OK),
        expect=dict(expect or {}),
    )


def report(*meters: MeterCapture, interval: float = 1.0, cycles: Sequence[float] = (0.5,)) -> Any:
    return c.run_checks(BusCapture(list(meters), interval, list(cycles), 10.0))


def verdicts(m: MeterReport) -> dict[str, str]:
    return {x.name: x.verdict for x in m.checks}


# -- healthy ------------------------------------------------------------------------------------


def test_healthy_meter_passes() -> None:
    """A healthy, loaded meter passes every check; setup without expectations is not_checked."""
    r = report(meter())
    got = verdicts(r.meters[0])
    assert set(got) == set(c.CHECK_NAMES) - {"bus_load"}
    assert got.pop("setup") == "not_checked"
    assert set(got.values()) == {"pass"}, got
    assert [x.name for x in r.bus] == ["bus_load", "identity"]
    assert r.meters[0].get("ct_polarity").evidence["angle_registers"]["a"]["vs_atan2"] == "agrees"


def test_no_load_wiring_not_checked() -> None:
    """With the pump off (currents 0) the wiring checks say not_checked: no load; voltage
    presence still passes (it needs no load)."""
    r = report(meter(current=(0.0, 0.0, 0.0)))
    m = r.meters[0]
    for name in ("ct_polarity", "phasing"):
        assert m.get(name).verdict == "not_checked"
        assert m.get(name).why.startswith("no load")
    assert m.get("voltage_presence").verdict == "pass"


def test_load_below_five_percent_of_ct_is_no_load() -> None:
    """Each phase must carry ≥ 5 % of the CT primary: 4.9 A on a 100 A CT is no load, 5 A is."""
    assert report(meter(current=(4.9, 4.9, 4.9))).meters[0].get("phasing").why.startswith("no load")
    assert report(meter(current=(5.0, 5.0, 5.0))).meters[0].get("phasing").verdict == "pass"


def test_load_must_run_ten_seconds() -> None:
    """A load seen for under 10 s of the window is not judged; from 10 s it is."""
    short = [snap(T0 + n, current=(0, 0, 0) if n < 3 else (60, 60, 60)) for n in range(12)]
    m = report(meter(short)).meters[0]
    assert m.get("phasing").verdict == "not_checked"
    assert m.get("phasing").why.startswith("the pump started 8 s ago: judged once it has run 10 s")
    # a window shorter than 10 s can never be judged: the reason says to give --seconds
    brief = [snap(T0 + n) for n in range(6)]
    why = report(meter(brief)).meters[0].get("phasing").why
    assert "less than 10 s" in why
    assert "the window is 5 s and needs 10: wait, or give --seconds 10" in why
    enough = [snap(T0 + n, current=(0, 0, 0) if n < 2 else (60, 60, 60)) for n in range(13)]
    assert report(meter(enough)).meters[0].get("phasing").verdict == "pass"


def test_direct_on_line_start_is_not_judged() -> None:
    """The first 10 s of a run (a DOL start at PF 0.3, 6x current) do not count: the
    phasing check judges the steady samples after it, and passes."""
    start = math.degrees(math.acos(0.3))
    samples = [
        snap(T0 + n, angles=(start,) * 3, current=(360,) * 3) if n < 6 else snap(T0 + n)
        for n in range(14)
    ]
    m = report(meter(samples)).meters[0]
    assert m.get("phasing").verdict == "pass"
    assert m.get("ct_polarity").verdict == "pass"


# -- the table ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 2])
def test_ct_reversed_one_phase(k: int) -> None:
    """ct-reversed:X: X at φ+180° → ct_polarity fail naming X; phasing and energy pass."""
    angles = [PHI, PHI, PHI]
    angles[k] += 180
    m = report(meter(angles=angles)).meters[0]
    assert m.get("ct_polarity").verdict == "fail"
    assert m.get("ct_polarity").evidence["reversed"] == ["ABC"[k]]
    assert m.get("phasing").verdict == "pass"
    assert m.get("energy").verdict == "pass"


def test_ct_reversed_all() -> None:
    """ct-reversed:all: every phase at φ+180°, delivered energy stops → ct_polarity fail
    (all), energy not_checked (follows ct_polarity), phasing passes."""
    samples = [snap(T0 + n, angles=(PHI + 180,) * 3, energy_wh=1_000_000) for n in range(12)]
    m = report(meter(samples)).meters[0]
    assert m.get("ct_polarity").verdict == "fail"
    assert m.get("ct_polarity").evidence["reversed"] == "all"
    assert m.get("energy").verdict == "not_checked"
    assert m.get("energy").evidence["follows"] == "ct_polarity"
    assert m.get("phasing").verdict == "pass"


@pytest.mark.parametrize(("pair", "first", "second"), [("A-B", 0, 1), ("B-C", 1, 2), ("C-A", 2, 0)])
def test_ct_swap(pair: str, first: int, second: int) -> None:
    """ct-swap: first of the pair at φ+120°, second at φ−120° → phasing fail naming the
    pair; ct_polarity and energy not_checked (follow phasing)."""
    angles = [PHI, PHI, PHI]
    angles[first] += 120
    angles[second] -= 120
    m = report(meter(angles=angles)).meters[0]
    assert m.get("phasing").verdict == "fail"
    assert f"CTs of {pair} exchanged" in m.get("phasing").why
    assert m.get("ct_polarity").verdict == "not_checked"
    assert m.get("ct_polarity").evidence["follows"] == "phasing"
    # the swapped phases' powers cancel, so the stuck energy counter follows phasing
    assert m.get("energy").verdict == "not_checked"
    assert m.get("energy").evidence["follows"] == "phasing"


@pytest.mark.parametrize("k", [0, 1, 2])
def test_vt_missing(k: int) -> None:
    """vt-missing:X: V_X ≈ 0 (so its powers ≈ 0, current normal) → voltage_presence fail
    naming X; unbalance and the CT checks not_checked, not failed."""
    volts = [230.0, 231.0, 229.0]
    volts[k] = 0.4
    m = report(meter(volts=volts, v_unbalance=40.0)).meters[0]
    got = verdicts(m)
    assert got["voltage_presence"] == "fail"
    assert m.get("voltage_presence").evidence["missing"] == ["ABC"[k]]
    assert got["unbalance"] == "not_checked"
    assert got["ct_polarity"] == got["phasing"] == "not_checked"
    assert m.get("phasing").evidence["not_checked_phases"] == ["ABC"[k]]
    assert "fail" not in {v for n, v in got.items() if n != "voltage_presence"}


def test_ct_ratio_against_expect() -> None:
    """ct-ratio: the meter's CT primary 200 against [meters.expect] ct_primary = 100 →
    setup fail; the same value expected → pass; no expectation → not_checked."""
    m = meter(expect={"ct_primary": 100})
    m.static["ct_primary"] = 200
    setup = report(m).meters[0].get("setup")
    assert setup.verdict == "fail" and "ct_primary is 200" in setup.why
    m.expect = {"ct_primary": 200, "power_system_config": 11}
    assert report(m).meters[0].get("setup").verdict == "pass"


def test_low_pf_warns_phasing() -> None:
    """A phase at the load angle but with PF below 0.55 warns (Leviton PhaseChek's rule)."""
    low = math.degrees(math.acos(0.5))
    m = report(meter(angles=(low, low, low))).meters[0]
    assert m.get("phasing").verdict == "warn"
    ok = math.degrees(math.acos(0.56))
    assert report(meter(angles=(ok, ok, ok))).meters[0].get("phasing").verdict == "pass"


# -- thresholds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "verdict"), [(1, "pass"), (2, "warn"), (10, "warn"), (11, "fail")]
)
def test_link_error_rate(errors: int, verdict: str) -> None:
    """Link: timeouts over 1 % of requests warn, over 10 % fail."""
    link = {**LINK_OK, "ok": 100 - errors, "timeouts": errors}
    assert report(meter(link=link)).meters[0].get("link").verdict == verdict


def test_link_no_answer_fails_and_the_rest_follow() -> None:
    """A meter that never answered: link fails and the value checks say not_checked."""
    silent = [Snapshot(T0 + n, {"current_a": None, "frequency": None}) for n in range(12)]
    m = meter(silent, link={**LINK_OK, "ok": 0, "timeouts": 100})
    got = report(m).meters[0]
    assert got.get("link").verdict == "fail"
    assert got.get("frequency").verdict == "not_checked"
    assert got.get("frequency").evidence["follows"] == "link"


def test_link_errors_concentrated_on_one_id() -> None:
    """CRC/wrong-id errors concentrated on one id are flagged as a possible duplicate address
    or wiring/termination problem (at least warn), even under the 1 % rate."""
    one = meter(id=1, link={**LINK_OK, "requests": 1000, "ok": 996, "crc_errors": 4})
    two = meter(id=2)
    two.static["serial_number"] = 2
    r = report(one, two)
    link = r.meters[0].get("link")
    assert link.verdict == "warn" and "duplicate address" in link.why
    assert r.meters[1].get("link").verdict == "pass"


@pytest.mark.parametrize(
    ("pct", "verdict"), [(2.0, "pass"), (2.1, "warn"), (3.0, "warn"), (3.1, "fail")]
)
def test_voltage_unbalance(pct: float, verdict: str) -> None:
    """Voltage unbalance: warn above 2 %, fail above 3 %."""
    assert report(meter(v_unbalance=pct)).meters[0].get("unbalance").verdict == verdict


@pytest.mark.parametrize(
    ("pct", "verdict"), [(10.0, "pass"), (10.5, "warn"), (20.0, "warn"), (20.5, "fail")]
)
def test_current_unbalance(pct: float, verdict: str) -> None:
    """Current unbalance of a motor: warn above 10 %, fail above 20 % (judged under load)."""
    assert report(meter(i_unbalance=pct)).meters[0].get("unbalance").verdict == verdict


def test_current_unbalance_needs_load() -> None:
    """Without load the current unbalance is not judged (voltage still is)."""
    u = report(meter(current=(0, 0, 0), i_unbalance=50.0)).meters[0].get("unbalance")
    assert u.verdict == "pass" and "no load" in u.why


@pytest.mark.parametrize(
    ("hz", "verdict"),
    [
        (50.5, "pass"),
        (49.5, "pass"),
        (50.6, "warn"),
        (49.4, "warn"),
        (52.0, "warn"),
        (52.1, "fail"),
        (47.0, "warn"),
        (46.9, "fail"),
    ],
)
def test_frequency(hz: float, verdict: str) -> None:
    """Frequency: warn outside ±1 % of nominal, fail outside −6 %/+4 %."""
    assert report(meter(frequency=hz)).meters[0].get("frequency").verdict == verdict


@pytest.mark.parametrize(
    ("offset", "verdict"),
    [
        (9.0, "pass"),
        (-9.0, "pass"),
        (10.0, "pass"),
        (-9.95, "pass"),
        (10.1, "warn"),
        (-10.1, "warn"),
        (11.0, "warn"),
        (-35.0, "warn"),
        (299.0, "warn"),
        (300.0, "warn"),
        (300.1, "fail"),
        (-300.1, "fail"),
        (301.0, "fail"),
        (-400.0, "fail"),
    ],
)
def test_clock(offset: float, verdict: str) -> None:
    """Meter clock against the Pi: warn beyond 10 s, fail beyond 5 min; drift reported."""
    got = report(meter(clock_offset=offset)).meters[0].get("clock")
    assert got.verdict == verdict
    assert got.evidence["offset_s"] == pytest.approx(offset + 0.0, abs=0.1)
    assert got.evidence["drift_s_per_day"] == pytest.approx(0, abs=20)


def test_clock_drift_measured() -> None:
    """A meter clock gaining 0.1 s per 10 s shows as ~864 s/day of drift."""
    samples = [snap(T0 + n, clock_offset=0.01 * n) for n in range(11)]
    drift = report(meter(samples)).meters[0].get("clock").evidence["drift_s_per_day"]
    assert drift == pytest.approx(864, rel=0.05)


def test_energy_steps_back_fails() -> None:
    """Delivered energy that steps back fails."""
    samples = [snap(T0 + n) for n in range(12)]
    samples[6] = snap(T0 + 6, energy_wh=900_000)
    assert report(meter(samples)).meters[0].get("energy").verdict == "fail"


def test_energy_must_advance_under_load() -> None:
    """Under load the delivered counter must move; a stuck one fails."""
    samples = [snap(T0 + n, energy_wh=1_000_000) for n in range(12)]
    e = report(meter(samples)).meters[0].get("energy")
    assert e.verdict == "fail" and "did not advance" in e.why


@pytest.mark.parametrize(
    ("cycle", "verdict"),
    [(0.89, "pass"), (0.90, "warn"), (0.98, "warn"), (1.0, "warn"), (1.01, "fail")],
)
def test_bus_load(cycle: float, verdict: str) -> None:
    """Bus load: the logged set's cycle under 90 % of the interval passes, 90-100 % warns,
    past 100 % fails."""
    got = report(meter(), interval=1.0, cycles=[cycle]).bus[0]
    assert (got.name, got.verdict) == ("bus_load", verdict)


def test_duplicate_serials() -> None:
    """Two ids with one serial: the bus identity check fails and so does each meter's."""
    r = report(meter(id=1), meter(id=2))
    bus = {x.name: x for x in r.bus}
    assert bus["identity"].verdict == "fail"
    assert bus["identity"].evidence["duplicates"] == {"2311000001": [1, 2]}
    assert r.meters[0].get("identity").verdict == "fail"
    assert r.meters[1].get("identity").evidence["same_serial_as"] == [1]


def test_json_shape() -> None:
    """The report's JSON: meters[].id/checks[].name/verdict/why/evidence and bus.checks."""
    doc = report(meter()).as_dict()
    assert set(doc) >= {"meters", "bus"}
    check = doc["meters"][0]["checks"][0]
    assert set(check) == {"name", "verdict", "why", "evidence"}
    assert doc["bus"]["checks"][0]["name"] == "bus_load"
