"""The commissioning checks (``emtui check``): each a pure function of captured samples.

Why this module exists: a meter that answers is not yet a meter that measures right. A
reversed CT, a CT on the wrong phase, a wrong CT ratio or a missing voltage all give
plausible numbers that spoil months of logged data, so the checks judge the *relations*
between the values, not their presence.

Wiring (``ct_polarity``, ``phasing``) is judged from each phase's V–I angle
φ = atan2(kVAR, kW) against the angle of a lagging load, never from the sign of kW alone. For a
balanced load at φ with ABC rotation a reversed CT puts its phase at φ + 180°, two exchanged
CTs put the first of the pair at φ + 120° and the second at φ − 120°. The checks find the one
load angle φ (inside the plausible range of a load) that explains all phases with the fewest
offsets, and name each phase's offset.

The angle registers 43508–43512 are only a cross-check: the vendor states neither unit nor
sign. emtui assumes degrees, positive when the current lags the voltage (the sign of kVAR for a
load), and reports per phase whether the register agrees with atan2(kVAR, kW), has the
opposite sign, or disagrees; it never changes a verdict.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any

from emtui.core.check.model import (
    BusCapture,
    CheckReport,
    CheckResult,
    MeterCapture,
    MeterReport,
    Scalar,
    Snapshot,
    Verdict,
)

__all__ = [
    "CHECK_NAMES",
    "EXPECT_KEYS",
    "run_checks",
]

CHECK_NAMES = (
    "link",
    "identity",
    "setup",
    "ct_polarity",
    "phasing",
    "voltage_presence",
    "unbalance",
    "frequency",
    "clock",
    "energy",
    "bus_load",
)
"""Every check, in report order (bus_load and duplicate serials are bus-level)."""

# -- thresholds ---------------------------------------------------------------------------------

LINK_WARN_ERROR_RATE = 0.01
"""A link with more than 1 % of requests unanswered (timeout, CRC, wrong id) warns."""
LINK_FAIL_ERROR_RATE = 0.10
"""... and with more than 10 % fails."""
CONCENTRATED_MIN_ERRORS = 3
"""CRC/wrong-id errors on one id count as concentrated from this many ..."""
CONCENTRATED_SHARE = 0.8
"""... when that id has at least this share of the bus's CRC/wrong-id errors."""

LOAD_MIN_CT_FRACTION = 0.05
"""Wiring is judged only while each phase carries ≥ 5 % of the CT primary ..."""
LOAD_MIN_RUN_S = 10.0
"""... and the load has been on ≥ 10 s (a direct-on-line start's low PF is not judged)."""
LOAD_ANGLE_MIN_DEG = -30.0
"""The most leading angle a load may plausibly have (a compensated load, PF 0.87 leading)."""
LOAD_ANGLE_MAX_DEG = math.degrees(math.acos(0.55))
"""The most lagging angle a load may plausibly have: PF 0.55 (Leviton PhaseChek flags an
element below 0.55 as wrongly phased)."""
LOW_PF = 0.55
"""A phase judged normal with a PF below this warns (phasing)."""
PHASE_OFFSETS_DEG = (0.0, 180.0, 120.0, -120.0, 60.0, -60.0)
"""The offsets a CT fault can add to a phase's angle: none, reversed, on the next or the
previous phase, or both (on another phase and reversed)."""
OFFSET_PENALTY_DEG = {0.0: 0.0, 180.0: 5.0, 120.0: 6.0, -120.0: 6.0, 60.0: 7.0, -60.0: 7.0}
"""Cost (degrees) of explaining a phase by a fault rather than by the load angle: ties go to
normal, then to one reversal (a common mistake) before a moved CT (all three CTs moved
round by one phase looks exactly like all three reversed on a load 60° away)."""
TYPICAL_LOAD_DEG = 30.0
"""Between equally good explanations, the one whose load angle is nearest to a motor's."""

VOLTAGE_MISSING_FRACTION = 0.5
"""A phase voltage below half of nominal counts as missing (fail)."""
VOLTAGE_TOLERANCE = 0.10
"""A phase voltage more than 10 % off nominal warns."""

VOLTAGE_UNBALANCE_WARN = 2.0
"""Voltage unbalance (%) above which unbalance warns ..."""
VOLTAGE_UNBALANCE_FAIL = 3.0
"""... and fails."""
CURRENT_UNBALANCE_WARN = 10.0
"""Current unbalance (%) above which a motor's unbalance warns ..."""
CURRENT_UNBALANCE_FAIL = 20.0
"""... and fails."""

FREQUENCY_WARN_FRACTION = 0.01
"""Frequency more than ±1 % off nominal warns."""
FREQUENCY_FAIL_LOW = -0.06
"""Frequency below −6 % of nominal fails ..."""
FREQUENCY_FAIL_HIGH = 0.04
"""... and above +4 %."""

CLOCK_WARN_S = 10.0
"""A meter clock more than 10 s off the Pi's warns ..."""
CLOCK_FAIL_S = 300.0
"""... and more than 5 min off fails."""

BUS_LOAD_WARN = 0.90
"""A poll cycle from 90 % of the interval warns ..."""
BUS_LOAD_FAIL = 1.00
"""... and past 100 % fails (rows come back to back, late)."""

EXPECT_KEYS: dict[str, str] = {
    "ct_primary": "ct_primary",
    "ct_secondary": "ct_secondary",
    "vt_primary": "vt_primary",
    "vt_secondary": "vt_secondary",
    "vt_connection_type": "vt_connection_type",
    "power_system_config": "power_system_config",
    "phase_rotation": "phase_rotation",
    "nominal_frequency": "nominal_frequency",
    "nominal_voltage": "nominal_voltage",
}
"""``[meters.expect]`` key → the map entry it is compared with."""

SETUP_SHOWN = (
    "power_system_config",
    "number_of_phases",
    "number_of_wires",
    "ct_primary",
    "ct_secondary",
    "vt_primary",
    "vt_secondary",
    "vt_connection_type",
    "phase_rotation",
    "nominal_frequency",
    "nominal_voltage",
)
"""Setup values every report shows (2014–2036)."""

PHASES = ("a", "b", "c")
_NO_LOAD = "no load — start the pump"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _wrap(deg: float) -> float:
    """An angle in (-180, 180]."""
    wrapped = (deg + 180.0) % 360.0 - 180.0
    return 180.0 if wrapped == -180.0 else wrapped


def _result(name: str, verdict: Verdict, why: str, /, **evidence: Any) -> CheckResult:
    return CheckResult(name, verdict, why, dict(evidence))


def _follows(name: str, other: str, detail: str = "") -> CheckResult:
    why = f"{other} failed" + (f" ({detail})" if detail else "")
    return _result(name, "not_checked", why, follows=other)


def _values(samples: Sequence[Snapshot], name: str) -> list[float]:
    return [v for s in samples if (v := s.number(name)) is not None]


# -- link ---------------------------------------------------------------------------------------


def check_link(meter: MeterCapture, bus_errors: int) -> CheckResult:
    """Answers, RTT p50/p99, error rate by kind; concentrated CRC/wrong-id errors flagged.

    Args:
        bus_errors: CRC plus wrong-id errors of every id on the bus over the window.
    """
    link = meter.link
    requests = int(link.get("requests", 0))
    ok = int(link.get("ok", 0))
    timeouts = int(link.get("timeouts", 0))
    crc = int(link.get("crc_errors", 0))
    wrong = int(link.get("wrong_id", 0))
    exceptions = link.get("exceptions", {})
    errors = timeouts + crc + wrong
    rate = errors / requests if requests else 1.0
    evidence = {
        "requests": requests,
        "answers": ok + sum(int(n) for n in dict(exceptions).values()),
        "ok": ok,
        "timeouts": timeouts,
        "crc_errors": crc,
        "wrong_id": wrong,
        "exceptions": dict(exceptions),
        "error_rate": round(rate, 4),
        "rtt_p50_ms": link.get("rtt_p50_ms"),
        "rtt_p99_ms": link.get("rtt_p99_ms"),
    }
    if requests == 0 or ok == 0:
        return _result("link", "fail", "no answer from the meter in the window", **evidence)
    verdict: Verdict = "pass"
    why = f"{ok}/{requests} answered, {rate:.1%} errors"
    if rate > LINK_FAIL_ERROR_RATE:
        verdict = "fail"
        why += f" (more than {LINK_FAIL_ERROR_RATE:.0%})"
    elif rate > LINK_WARN_ERROR_RATE:
        verdict = "warn"
        why += f" (more than {LINK_WARN_ERROR_RATE:.0%})"
    framed = crc + wrong
    if (
        framed >= CONCENTRATED_MIN_ERRORS
        and bus_errors
        and framed / bus_errors >= (CONCENTRATED_SHARE)
    ):
        evidence["concentrated"] = True
        why += (
            f"; {framed} of the bus's {bus_errors} CRC/wrong-id errors are on this id: a "
            f"possible duplicate address, or a wiring/termination problem at this meter"
        )
        if verdict == "pass":
            verdict = "warn"
    return _result("link", verdict, why, **evidence)


# -- identity -----------------------------------------------------------------------------------


def check_identity(meter: MeterCapture, same_serial: Sequence[int]) -> CheckResult:
    """Model, serial, firmware and name; fails when another id reports the same serial."""
    static = meter.static
    major, minor = static.get("firmware_major"), static.get("firmware_minor")
    firmware: Scalar = static.get("firmware_version")
    if isinstance(major, int) and isinstance(minor, int):
        quality = static.get("firmware_quality")
        firmware = f"{major}.{minor}" + (f".{quality}" if isinstance(quality, int) else "")
    evidence: dict[str, Any] = {
        "model": static.get("meter_model"),
        "serial": static.get("serial_number"),
        "firmware": firmware,
        "name": static.get("meter_name"),
        "manufacturer": static.get("manufacturer"),
    }
    if same_serial:
        evidence["same_serial_as"] = list(same_serial)
        others = ", ".join(str(i) for i in same_serial)
        return _result(
            "identity",
            "fail",
            f"serial {evidence['serial']} is also reported by id {others}: one meter answering "
            f"at two addresses, or a gateway mirroring it",
            **evidence,
        )
    missing = [k for k in ("model", "serial") if evidence[k] in (None, "")]
    if missing:
        return _result(
            "identity", "warn", f"{' and '.join(missing)} not read from the meter", **evidence
        )
    return _result(
        "identity", "pass", f"{evidence['model']} serial {evidence['serial']}", **evidence
    )


# -- setup ----------------------------------------------------------------------------------------


def check_setup(meter: MeterCapture) -> CheckResult:
    """The power-system, CT, VT and rotation setup, against ``[meters.expect]`` if given."""
    static = meter.static
    shown = {name: static.get(name) for name in SETUP_SHOWN}
    summary = _setup_summary(shown)
    if not meter.expect:
        return _result(
            "setup",
            "not_checked",
            f"{summary}; no expected values for this meter (add a [meters.expect] table, e.g. "
            "ct_primary = 200)",
            values=shown,
        )
    mismatches: dict[str, dict[str, Any]] = {}
    for key, expected in sorted(meter.expect.items()):
        entry = EXPECT_KEYS.get(key, key)
        actual = static.get(entry)
        if isinstance(actual, int | float) and not isinstance(actual, bool):
            same = math.isclose(float(actual), float(expected), rel_tol=1e-3, abs_tol=1e-6)
        else:
            same = False
        if not same:
            mismatches[key] = {"expected": expected, "meter": actual}
    evidence = {"values": shown, "expected": dict(meter.expect)}
    if mismatches:
        text = "; ".join(
            f"{key} is {m['meter']} on the meter, expected {m['expected']}"
            for key, m in mismatches.items()
        )
        return _result("setup", "fail", text, mismatches=mismatches, **evidence)
    keys = ", ".join(sorted(meter.expect))
    return _result("setup", "pass", f"{summary}: as expected ({keys})", **evidence)


def _setup_summary(shown: dict[str, Scalar]) -> str:
    ct = f"CT {shown.get('ct_primary')}/{shown.get('ct_secondary')} A"
    vt = (
        "VT direct"
        if shown.get("vt_connection_type") == 0
        else f"VT {shown.get('vt_primary')}/{shown.get('vt_secondary')} V "
        f"(connection {shown.get('vt_connection_type')})"
    )
    return (
        f"system {shown.get('power_system_config')}, {ct}, {vt}, "
        f"rotation {shown.get('phase_rotation')}"
    )


# -- wiring -------------------------------------------------------------------------------------


def _voltage_state(meter: MeterCapture) -> tuple[dict[str, bool], float | None]:
    """Per phase: is its voltage present (median ≥ half nominal)? And the nominal used."""
    nominal = _nominal_voltage(meter)
    present: dict[str, bool] = {}
    for x in PHASES:
        volts = _values(meter.samples, f"voltage_{x}n")
        if not volts or nominal is None:
            continue
        present[x] = statistics.median(volts) >= VOLTAGE_MISSING_FRACTION * nominal
    return present, nominal


def _nominal_voltage(meter: MeterCapture) -> float | None:
    nominal = meter.static.get("nominal_voltage")
    if isinstance(nominal, int | float) and not isinstance(nominal, bool) and nominal > 0:
        return float(nominal)
    volts = [v for x in PHASES for v in _values(meter.samples, f"voltage_{x}n")]
    return max(volts) if volts else None


def loaded_samples(meter: MeterCapture) -> tuple[list[Snapshot], str | None]:
    """The samples wiring may be judged on, or why there are none.

    A sample counts when every phase carries ≥ 5 % of the CT primary and the load has been
    on (in every sample since) for ≥ 10 s; the window's first sample starts the count.
    """
    ct = meter.static.get("ct_primary")
    ct_primary = float(ct) if isinstance(ct, int | float) and ct and ct > 0 else None
    if ct_primary is None:
        return [], "the CT primary was not read, so the load cannot be judged"
    floor = LOAD_MIN_CT_FRACTION * ct_primary
    judged: list[Snapshot] = []
    since: float | None = None
    some_phase_only = False
    for sample in meter.samples:
        currents = [sample.number(f"current_{x}") for x in PHASES]
        loaded = [c is not None and c >= floor for c in currents]
        if all(loaded):
            since = sample.time if since is None else since
            if sample.time - since >= LOAD_MIN_RUN_S - 1e-6:
                judged.append(sample)
        else:
            since = None
            some_phase_only = some_phase_only or any(loaded)
    if judged:
        return judged, None
    if some_phase_only:
        return [], (
            f"not every phase carries {LOAD_MIN_CT_FRACTION:.0%} of the CT primary "
            f"({floor:g} A) — a CT open or shorted, or a single-phase load"
        )
    if since is not None:
        span = meter.samples[-1].time - meter.samples[0].time
        if span < LOAD_MIN_RUN_S - 1e-6:  # the window itself is too short
            return [], (
                f"the load ran less than {LOAD_MIN_RUN_S:g} s of the window — let the pump run "
                f"(the window is {span:.0f} s and needs {LOAD_MIN_RUN_S:g}: wait, or give "
                f"--seconds {LOAD_MIN_RUN_S:g} or more)"
            )
        ran = meter.samples[-1].time - since
        return [], (
            f"the pump started {ran:.0f} s ago: judged once it has run {LOAD_MIN_RUN_S:g} s "
            "(a start's low power factor is not judged)"
        )
    return [], _NO_LOAD


def _circular_mean(degrees: Sequence[float]) -> float:
    x = sum(math.cos(math.radians(d)) for d in degrees)
    y = sum(math.sin(math.radians(d)) for d in degrees)
    return math.degrees(math.atan2(y, x))


def phase_angles(samples: Sequence[Snapshot]) -> dict[str, float]:
    """Per phase, the mean V–I angle φ = atan2(kVAR, kW) in degrees over ``samples``."""
    out: dict[str, float] = {}
    for x in PHASES:
        angles = []
        for s in samples:
            kw, kvar = s.number(f"active_power_{x}"), s.number(f"reactive_power_{x}")
            if kw is None or kvar is None or math.hypot(kw, kvar) <= 0:
                continue
            angles.append(math.degrees(math.atan2(kvar, kw)))
        if angles:
            out[x] = _circular_mean(angles)
    return out


def classify_phases(angles: dict[str, float]) -> tuple[float | None, dict[str, float]]:
    """The load angle and each phase's offset (one of :data:`PHASE_OFFSETS_DEG`).

    The load angle is searched over the plausible range of a load; each phase takes the
    offset nearest to explain it, a fault costing :data:`OFFSET_PENALTY_DEG` more than
    "normal", and the load angle with the least total cost wins (nearest
    :data:`TYPICAL_LOAD_DEG` among equals).
    """
    if not angles:
        return None, {}
    best: tuple[float, float, dict[str, float]] | None = None
    step = 0.5
    n = int((LOAD_ANGLE_MAX_DEG - LOAD_ANGLE_MIN_DEG) / step) + 1
    for k in range(n):
        load = LOAD_ANGLE_MIN_DEG + k * step
        cost = 0.0
        chosen: dict[str, float] = {}
        for x, phi in angles.items():
            options = [
                (abs(_wrap(phi - offset - load)) + OFFSET_PENALTY_DEG[offset], offset)
                for offset in PHASE_OFFSETS_DEG
            ]
            c, offset = min(options)
            cost += c
            chosen[x] = offset
        cost += 0.001 * abs(load - TYPICAL_LOAD_DEG)
        if best is None or cost < best[0] - 1e-9:
            best = (cost, load, chosen)
    assert best is not None
    return best[1], best[2]


def _angle_register_note(samples: Sequence[Snapshot], angles: dict[str, float]) -> dict[str, Any]:
    """Per phase: the angle register's mean and whether it agrees with atan2(kVAR, kW)."""
    out: dict[str, Any] = {}
    for x, phi in angles.items():
        regs = _values(samples, f"phase_angle_{x}")
        if not regs:
            continue
        reg = _circular_mean(regs)
        if abs(_wrap(reg - phi)) <= 5.0:
            agrees = "agrees"
        elif abs(_wrap(reg + phi)) <= 5.0:
            agrees = "opposite sign"
        else:
            agrees = "disagrees"
        out[x] = {"register_deg": round(reg, 1), "vs_atan2": agrees}
    return out


def _pair_text(names: Sequence[str]) -> str:
    return "-".join(n.upper() for n in names)


def check_wiring(meter: MeterCapture) -> tuple[CheckResult, CheckResult]:
    """(ct_polarity, phasing) from the loaded samples' per-phase angles."""
    present, _ = _voltage_state(meter)
    missing = [x for x in PHASES if present.get(x) is False]
    samples, no_load = loaded_samples(meter)
    if no_load is not None:
        return (
            _result("ct_polarity", "not_checked", no_load),
            _result("phasing", "not_checked", no_load),
        )
    angles = {x: a for x, a in phase_angles(samples).items() if x not in missing}
    if not angles:
        why = "no phase has both voltage and current"
        if missing:
            return (
                _follows("ct_polarity", "voltage_presence", why),
                _follows("phasing", "voltage_presence", why),
            )
        return (
            _result("ct_polarity", "not_checked", why),
            _result("phasing", "not_checked", why),
        )
    load, offsets = classify_phases(angles)
    pfs = {}
    for x in angles:
        values = _values(samples, f"power_factor_{x}")
        pfs[x] = round(statistics.median(values), 3) if values else None
    evidence: dict[str, Any] = {
        "angle_deg": {x: round(a, 1) for x, a in angles.items()},
        "offset_deg": {x: offsets[x] for x in angles},
        "load_angle_deg": None if load is None else round(load, 1),
        "pf": pfs,
        "samples": len(samples),
        "angle_registers": _angle_register_note(samples, angles),
        "assumption": "angle registers 43508-43512 in degrees, positive = current lagging",
    }
    unjudged = ""
    if missing:
        evidence["not_checked_phases"] = [x.upper() for x in missing]
        unjudged = f"phase {', '.join(x.upper() for x in missing)} not judged (voltage missing)"

    # phasing: a phase explained by ±120° / ±60° carries another phase's current
    moved = {x: o for x, o in offsets.items() if abs(o) in (60.0, 120.0)}
    if moved:
        plus = [x for x, o in moved.items() if o in (120.0, -60.0)]
        minus = [x for x, o in moved.items() if o in (-120.0, 60.0)]
        if len(plus) == 1 and len(minus) == 1:
            text = f"CTs of {_pair_text([plus[0], minus[0]])} exchanged"
        else:
            text = f"phase {', '.join(x.upper() for x in moved)} carries another phase's current"
        detail = ", ".join(
            f"{x.upper()} at {angles[x]:.0f}° (load {load:.0f}°{o:+.0f}°)" for x, o in moved.items()
        )
        evidence["swapped"] = _pair_text(sorted(moved))
        phasing = _result("phasing", "fail", f"{text}: {detail}", **evidence)
        polarity = _follows("ct_polarity", "phasing", text)
        return polarity, phasing
    low = [x for x, pf in pfs.items() if pf is not None and abs(pf) < LOW_PF]
    if low:
        phasing = _result(
            "phasing",
            "warn",
            f"phase {', '.join(x.upper() for x in low)} PF below {LOW_PF} — check its CT is on "
            f"the same phase as its voltage",
            **evidence,
        )
    elif missing:
        phasing = _result("phasing", "not_checked", unjudged + "; the others pass", **evidence)
    else:
        phasing = _result(
            "phasing", "pass", f"every phase at the load angle ({load:.0f}°)", **evidence
        )

    flipped = [x for x, o in offsets.items() if o == 180.0]
    if flipped:
        which = "all three" if len(flipped) == 3 else ", ".join(x.upper() for x in flipped)
        evidence = {
            **evidence,
            "reversed": "all" if len(flipped) == 3 else [x.upper() for x in flipped],
        }
        polarity = _result(
            "ct_polarity",
            "fail",
            f"CT of {which} reversed: {', '.join(f'{x.upper()} at {angles[x]:.0f}°' for x in flipped)}"  # noqa: E501
            f" (load {load:.0f}°+180°; kW and kVAR negative)",
            **evidence,
        )
    elif missing:
        polarity = _result("ct_polarity", "not_checked", unjudged + "; the others pass", **evidence)
    else:
        polarity = _result("ct_polarity", "pass", "every CT the right way round", **evidence)
    return polarity, phasing


def check_voltage_presence(meter: MeterCapture) -> CheckResult:
    """Each phase voltage present (≥ 50 % of nominal; warn beyond ±10 %). Needs no load."""
    nominal = _nominal_voltage(meter)
    volts = {x: _values(meter.samples, f"voltage_{x}n") for x in PHASES}
    if nominal is None or not any(volts.values()):
        return _result("voltage_presence", "not_checked", "no phase voltage was read")
    medians = {x: statistics.median(v) for x, v in volts.items() if v}
    evidence: dict[str, Any] = {
        "voltage_v": {x.upper(): round(v, 1) for x, v in medians.items()},
        "nominal_v": round(nominal, 1),
    }
    missing = [x for x, v in medians.items() if v < VOLTAGE_MISSING_FRACTION * nominal]
    if missing:
        evidence["missing"] = [x.upper() for x in missing]
        return _result(
            "voltage_presence",
            "fail",
            f"no voltage on phase {', '.join(x.upper() for x in missing)} "
            f"({', '.join(f'{medians[x]:.1f} V' for x in missing)}; nominal {nominal:.0f} V): "
            f"check its VT fuse and wiring",
            **evidence,
        )
    off = [x for x, v in medians.items() if abs(v - nominal) > VOLTAGE_TOLERANCE * nominal]
    if off:
        return _result(
            "voltage_presence",
            "warn",
            f"phase {', '.join(x.upper() for x in off)} more than {VOLTAGE_TOLERANCE:.0%} off "
            f"nominal {nominal:.0f} V",
            **evidence,
        )
    return _result("voltage_presence", "pass", "every phase voltage present", **evidence)


def check_unbalance(
    meter: MeterCapture, voltage: CheckResult, samples_loaded: Sequence[Snapshot]
) -> CheckResult:
    """Voltage unbalance (L-L worst, NEMA MG-1; warn > 2 %, fail > 3 %) and, under load,
    current unbalance (warn > 10 %, fail > 20 %)."""
    if voltage.verdict == "fail":
        return _follows("unbalance", "voltage_presence")
    v_ll = _values(meter.samples, "voltage_unbalance_ll_worst")
    v_ln = _values(meter.samples, "voltage_unbalance_ln_worst")
    evidence: dict[str, Any] = {
        "voltage_ll_worst_pct": _r(max(v_ll), 2) if v_ll else None,
        "voltage_ln_worst_pct": _r(max(v_ln), 2) if v_ln else None,
    }
    verdict: Verdict = "pass"
    parts: list[str] = []
    judged_v = v_ll or v_ln
    if judged_v:
        worst = max(judged_v)
        if worst > VOLTAGE_UNBALANCE_FAIL:
            verdict = "fail"
        elif worst > VOLTAGE_UNBALANCE_WARN:
            verdict = "warn"
        parts.append(f"voltage {worst:.1f} %")
    else:
        parts.append("voltage unbalance not read")
    currents = _values(samples_loaded, "current_unbalance_worst")
    if currents:
        worst_i = max(currents)
        evidence["current_worst_pct"] = round(worst_i, 2)
        if worst_i > CURRENT_UNBALANCE_FAIL:
            verdict = "fail"
        elif worst_i > CURRENT_UNBALANCE_WARN and verdict != "fail":
            verdict = "warn"
        parts.append(f"current {worst_i:.1f} %")
    else:
        evidence["current_worst_pct"] = None
        parts.append("current not judged (no load)")
    if not judged_v and not currents:
        return _result("unbalance", "not_checked", "; ".join(parts), **evidence)
    limits = (
        f"limits: voltage {VOLTAGE_UNBALANCE_WARN:g}/{VOLTAGE_UNBALANCE_FAIL:g} %, "
        f"current {CURRENT_UNBALANCE_WARN:g}/{CURRENT_UNBALANCE_FAIL:g} %"
    )
    return _result("unbalance", verdict, "; ".join(parts) + f" ({limits})", **evidence)


def check_frequency(meter: MeterCapture) -> CheckResult:
    """Frequency against nominal: warn outside ±1 %, fail outside −6 %/+4 %."""
    values = _values(meter.samples, "frequency")
    nominal_raw = meter.static.get("nominal_frequency")
    nominal = (
        float(nominal_raw)
        if isinstance(nominal_raw, int | float) and nominal_raw and nominal_raw > 0
        else 50.0
    )
    if not values:
        return _result("frequency", "not_checked", "frequency not read", nominal_hz=nominal)
    low, high = min(values), max(values)
    evidence = {"min_hz": round(low, 3), "max_hz": round(high, 3), "nominal_hz": nominal}
    eps = 1e-9  # 50.5 Hz is exactly 1 % of 50 Hz, whatever the float division says
    worst_low, worst_high = low / nominal - 1.0, high / nominal - 1.0
    if worst_low < FREQUENCY_FAIL_LOW - eps or worst_high > FREQUENCY_FAIL_HIGH + eps:
        return _result(
            "frequency",
            "fail",
            f"{low:.2f}-{high:.2f} Hz, outside -6 %/+4 % of {nominal:g} Hz",
            **evidence,
        )
    if max(abs(worst_low), abs(worst_high)) > FREQUENCY_WARN_FRACTION + eps:
        return _result(
            "frequency",
            "warn",
            f"{low:.2f}-{high:.2f} Hz, more than ±1 % off {nominal:g} Hz",
            **evidence,
        )
    return _result("frequency", "pass", f"{low:.2f}-{high:.2f} Hz", **evidence)


def meter_epoch(values: Snapshot) -> float | None:
    """The meter's clock (seven registers, local time) as epoch seconds, or None."""
    fields = []
    for name in ("year", "month", "day", "hour", "minute", "second", "millisecond"):
        v = values.number(f"meter_clock_{name}")
        if v is None:
            return None
        fields.append(int(v))
    try:
        year, month, day, hour, minute, second, millis = fields
        moment = _dt.datetime(year, month, day, hour, minute, second, millis * 1000)
    except ValueError:
        return None
    return moment.timestamp()  # naive = local time, as the meter keeps it


def check_clock(meter: MeterCapture) -> CheckResult:
    """The meter clock against the Pi's (warn > 10 s, fail > 5 min) and its drift."""
    offsets: list[tuple[float, float]] = []
    for s in meter.samples:
        epoch = meter_epoch(s)
        if epoch is not None:
            pi = s.time + s.duration / 2.0
            offsets.append((pi, epoch - pi))
    if not offsets:
        return _result("clock", "not_checked", "the meter clock was not read")
    offset = statistics.median(o for _, o in offsets)
    evidence: dict[str, Any] = {"offset_s": round(offset, 3), "reads": len(offsets)}
    span = offsets[-1][0] - offsets[0][0]
    if span > 0 and len(offsets) >= 2:
        drift = (offsets[-1][1] - offsets[0][1]) / span
        evidence["drift_s_per_day"] = round(drift * 86400.0, 1)
        evidence["drift_window_s"] = round(span, 1)
    ahead = "ahead of" if offset > 0 else "behind"
    text = f"meter clock {abs(offset):.1f} s {ahead} the Pi"
    if abs(offset) > CLOCK_FAIL_S:
        return _result(
            "clock", "fail", text + " (more than 5 min): set it (emtui clock --set)", **evidence
        )
    if abs(offset) > CLOCK_WARN_S:
        return _result("clock", "warn", text + " (more than 10 s)", **evidence)
    return _result("clock", "pass", text, **evidence)


def check_energy(
    meter: MeterCapture,
    polarity: CheckResult,
    samples_loaded: Sequence[Snapshot],
    phasing: CheckResult | None = None,
) -> CheckResult:
    """Delivered energy advances while the pump runs and never steps back.

    Not judged when the wiring already explains a stuck counter: every CT reversed (the
    energy counts as received) or two CTs exchanged (the phases' powers cancel).
    """
    if polarity.verdict == "fail" and polarity.evidence.get("reversed") == "all":
        return _follows("energy", "ct_polarity", "every CT reversed: energy counts as received")
    if phasing is not None and phasing.verdict == "fail":
        return _follows("energy", "phasing", "exchanged CTs: the phases' powers cancel")
    name = (
        "active_energy_delivered_wh"
        if _values(meter.samples, "active_energy_delivered_wh")
        else "active_energy_delivered"
    )
    series = [(s.time, v) for s in meter.samples if (v := s.number(name)) is not None]
    if len(series) < 2:
        return _result("energy", "not_checked", "delivered energy not read twice")
    steps_back = [(t, a, b) for (_, a), (t, b) in itertools.pairwise(series) if b < a]
    evidence: dict[str, Any] = {
        "register": name,
        "first": series[0][1],
        "last": series[-1][1],
        "advanced": series[-1][1] - series[0][1],
    }
    received = _values(meter.samples, "active_energy_received")
    if len(received) >= 2:
        evidence["received_advanced"] = received[-1] - received[0]
    if steps_back:
        evidence["steps_back"] = len(steps_back)
        return _result(
            "energy",
            "fail",
            f"delivered energy stepped back {len(steps_back)} time(s) "
            f"({steps_back[0][1]:g} → {steps_back[0][2]:g})",
            **evidence,
        )
    if samples_loaded:
        # The pump ran for ≥ 10 s of the window: from the first loaded read to the last,
        # the counter must have moved (Wh resolution; a 15 kW pump adds ~40 Wh in 10 s).
        start = samples_loaded[0].time - LOAD_MIN_RUN_S
        during = [v for t, v in series if t >= start - 1e-6]
        if len(during) >= 2 and during[-1] <= during[0]:
            return _result(
                "energy",
                "fail",
                "delivered energy did not advance while the pump ran",
                **evidence,
            )
        return _result("energy", "pass", "delivered energy advances, never steps back", **evidence)
    return _result(
        "energy",
        "pass",
        "delivered energy never stepped back (advance not judged: no load)",
        **evidence,
    )


def check_bus_load(capture: BusCapture) -> CheckResult:
    """The logged set's poll cycle against the interval: pass < 90 %, warn to 100 %, fail."""
    if capture.interval <= 0:
        return _result(
            "bus_load", "not_checked", "interval 0: the logger polls back to back", interval_s=0
        )
    if not capture.cycle_times:
        return _result("bus_load", "not_checked", "no poll cycle was measured")
    cycle = statistics.median(capture.cycle_times)
    load = cycle / capture.interval
    evidence = {
        "cycle_s": round(cycle, 4),
        "interval_s": capture.interval,
        "load": round(load, 4),
        "cycles": len(capture.cycle_times),
    }
    text = (
        f"a poll cycle of the logged set takes {cycle:.3f} s: {load:.0%} of {capture.interval:g} s"
    )
    if load > BUS_LOAD_FAIL:
        return _result(
            "bus_load", "fail", text + " (rows come late; poll less or fewer values)", **evidence
        )
    if load >= BUS_LOAD_WARN:
        return _result("bus_load", "warn", text + " (little room left)", **evidence)
    return _result("bus_load", "pass", text, **evidence)


def check_serials(capture: BusCapture) -> tuple[CheckResult, dict[int, list[int]]]:
    """Bus-level: no two ids with one serial number. Also returns id → ids sharing it."""
    by_serial: dict[Scalar, list[int]] = {}
    for meter in capture.meters:
        serial = meter.static.get("serial_number")
        if serial not in (None, ""):
            by_serial.setdefault(serial, []).append(meter.id)
    dupes = {str(s): ids for s, ids in by_serial.items() if len(ids) > 1}
    shared: dict[int, list[int]] = {}
    for ids in dupes.values():
        for i in ids:
            shared[i] = [j for j in ids if j != i]
    if dupes:
        text = "; ".join(
            f"serial {s} at ids {', '.join(map(str, ids))}" for s, ids in dupes.items()
        )
        return _result("identity", "fail", text, duplicates=dupes), shared
    return (
        _result("identity", "pass", "every serial number is unique", serials=len(by_serial)),
        shared,
    )


# -- all of it ----------------------------------------------------------------------------------


def check_meter(meter: MeterCapture, bus_errors: int, same_serial: Sequence[int]) -> MeterReport:
    """Every per-meter check of ``meter``, in :data:`CHECK_NAMES` order."""
    link = check_link(meter, bus_errors)
    identity = check_identity(meter, same_serial)
    if link.verdict == "fail" and int(meter.link.get("ok", 0)) == 0:
        # Nothing answered in the window: every value check would only say "not read".
        rest = [
            _follows(name, "link")
            for name in CHECK_NAMES
            if name not in ("link", "identity", "bus_load")
        ]
        return MeterReport(meter.id, (link, identity, *rest), meter.label)
    setup = check_setup(meter)
    voltage = check_voltage_presence(meter)
    polarity, phasing = check_wiring(meter)
    loaded, _ = loaded_samples(meter)
    unbalance = check_unbalance(meter, voltage, loaded)
    frequency = check_frequency(meter)
    clock = check_clock(meter)
    energy = check_energy(meter, polarity, loaded, phasing)
    checks = (
        link,
        identity,
        setup,
        polarity,
        phasing,
        voltage,
        unbalance,
        frequency,
        clock,
        energy,
    )
    return MeterReport(meter.id, checks, meter.label)


def run_checks(capture: BusCapture) -> CheckReport:
    """Judge a captured window: every meter's checks and the bus-level ones."""
    bus_errors = sum(
        int(m.link.get("crc_errors", 0)) + int(m.link.get("wrong_id", 0)) for m in capture.meters
    )
    serials, shared = check_serials(capture)
    meters = tuple(
        check_meter(m, bus_errors, shared.get(m.id, []))
        for m in sorted(capture.meters, key=lambda m: m.id)
    )
    return CheckReport(meters, (check_bus_load(capture), serials), capture.seconds)
