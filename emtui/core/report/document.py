"""The commissioning report as data: one JSON-ready document built from a checked window.

Why this module exists: the report a technician leaves on site must say the same thing in the
HTML a customer reads and in the JSON a tool reads. Both are made from this one document, so
the HTML template only lays out what is here; it computes nothing.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emtui import __version__
from emtui.core.bus.link import ConnectionSettings
from emtui.core.check.capture import STATIC_NAMES
from emtui.core.check.checks import SETUP_SHOWN, loaded_samples
from emtui.core.check.model import (
    BusCapture,
    CheckReport,
    CheckResult,
    MeterCapture,
    MeterReport,
    Snapshot,
    Verdict,
    worse,
)
from emtui.core.check.phasor import PHASES, phasors

__all__ = ["FORMAT", "FORMAT_VERSION", "ReportContext", "build_document", "summary_line"]

FORMAT = "emtui-commissioning-report"
"""The document's ``format`` key."""
FORMAT_VERSION = 1
"""The document's ``version`` key: raised when a key changes meaning (keys are only added)."""

TRACE_POINTS = 120
"""At most this many points per trace series (a long window is thinned evenly)."""

IDENTITY_KEYS = ("model", "serial", "firmware", "name", "manufacturer")


@dataclass(frozen=True, slots=True)
class ReportContext:
    """Where and when the report was made (what the capture itself does not know).

    Attributes:
        site: the installation's name (the config's ``upload.site``).
        port: the bus's port (``/dev/ttyUSB0``, ``socket://…``).
        settings: the connection in short form (``ConnectionSettings.describe()``).
        hostname: the Pi's host name.
        version: the emtui version that made the report.
        when: the moment the report was made (local, with zone); default: now.
    """

    site: str
    port: str
    settings: str
    hostname: str = field(default_factory=socket.gethostname)
    version: str = __version__
    when: _dt.datetime = field(default_factory=lambda: _dt.datetime.now().astimezone())

    @classmethod
    def for_connection(cls, site: str, settings: ConnectionSettings) -> ReportContext:
        """The context of a report on ``settings``, made now on this machine."""
        return cls(site=site, port=settings.port, settings=settings.describe())


def _iso(epoch: float | None, zone: _dt.tzinfo | None) -> str | None:
    if epoch is None:
        return None
    return _dt.datetime.fromtimestamp(epoch, zone).isoformat(timespec="seconds")


def _finite(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for the document; None for a missing or non-finite number."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _thin(samples: Sequence[Snapshot], limit: int = TRACE_POINTS) -> list[Snapshot]:
    if len(samples) <= limit:
        return list(samples)
    step = (len(samples) - 1) / (limit - 1)
    return [samples[round(k * step)] for k in range(limit)]


def _total_kw(s: Snapshot) -> float | None:
    total = s.number("active_power_total")
    if total is not None:
        return total
    phases = [s.number(f"active_power_{x}") for x in PHASES]
    return sum(p for p in phases if p is not None) if any(p is not None for p in phases) else None


def trace(samples: Sequence[Snapshot], t0: float) -> dict[str, Any]:
    """The short trace of one meter: seconds from ``t0``, kW total, V L-N and I per phase."""
    points = _thin(samples)
    return {
        "t_s": [round(s.time - t0, 2) for s in points],
        "kw_total": [_finite(_total_kw(s)) for s in points],
        "voltage_ln": {x: [_finite(s.number(f"voltage_{x}n"), 2) for s in points] for x in PHASES},
        "current": {x: [_finite(s.number(f"current_{x}")) for s in points] for x in PHASES},
    }


def _phasor_section(meter: MeterCapture) -> dict[str, Any]:
    # The samples the wiring checks judged (loaded, the pump running ≥ 10 s), so the angles
    # shown are the evidence of their verdicts; without load, every sample, and it says so.
    judged, _why = loaded_samples(meter)
    samples = judged or meter.samples
    found = phasors(samples)
    over = (
        f"mean over the {len(judged)} samples the wiring checks judged"
        if judged
        else f"mean over all {len(samples)} samples (none under load: not judged)"
    )
    return {
        "phases": {
            x: {
                "angle_deg": _finite(found.angles.get(x), 1),
                "voltage_v": _finite(found.volts.get(x), 1),
                "current_a": _finite(found.amps.get(x), 2),
            }
            for x in PHASES
        },
        "diagram": found.diagram(),
        "samples": len(samples),
        "judged": bool(judged),
        "note": f"V–I angle φ = atan2(kVAR, kW), {over}, positive lagging; "
        "VOLTAGES in capitals, currents in lower case",
    }


def _worst(checks: Sequence[CheckResult]) -> Verdict:
    """The worst verdict of one meter's checks (as CheckReport.worst ranks them)."""
    return functools.reduce(worse, (c.verdict for c in checks), "pass")


def _identity(checked: MeterReport) -> dict[str, Any]:
    try:
        evidence = checked.get("identity").evidence
    except KeyError:
        evidence = {}
    return {k: evidence.get(k) for k in IDENTITY_KEYS}


def _meter_section(
    capture: MeterCapture, checked: MeterReport, t0: float, zone: _dt.tzinfo | None
) -> dict[str, Any]:
    times = [s.time for s in capture.samples]
    setup_names = [n for n in STATIC_NAMES if n in SETUP_SHOWN]
    return {
        "id": capture.id,
        "label": capture.label,
        "verdict": _worst(checked.checks),
        "identity": _identity(checked),
        "setup": {name: capture.static.get(name) for name in setup_names},
        "expect": dict(capture.expect),
        "checks": [c.as_dict() for c in checked.checks],
        "link": dict(capture.link),
        "samples": len(capture.samples),
        "first_sample": _iso(min(times), zone) if times else None,
        "last_sample": _iso(max(times), zone) if times else None,
        "trace": trace(capture.samples, t0),
        "phasors": _phasor_section(capture),
    }


def _summary(report: CheckReport) -> dict[str, Any]:
    counts = {v: 0 for v in ("pass", "warn", "fail", "not_checked")}
    failed: list[dict[str, Any]] = []
    warned: list[dict[str, Any]] = []
    unjudged: list[dict[str, Any]] = []
    for meter in report.meters:
        for c in meter.checks:
            counts[c.verdict] += 1
            item = {"id": meter.id, "label": meter.label, "check": c.name, "why": c.why}
            if c.verdict == "fail":
                failed.append(item)
            elif c.verdict == "warn":
                warned.append(item)
            elif c.verdict == "not_checked" and c.name != "setup":
                # a wiring check never judged (no load) must not read as "wiring OK"; setup
                # without [meters.expect] is only shown, and says so on its meter
                unjudged.append(item)
    bus = []
    for c in report.bus:
        counts[c.verdict] += 1
        bus.append({"check": c.name, "verdict": c.verdict, "why": c.why})
        item = {"id": None, "label": "bus", "check": c.name, "why": c.why}
        if c.verdict == "fail":
            failed.append(item)
        elif c.verdict == "warn":
            warned.append(item)
    return {
        "meters_checked": len(report.meters),
        "worst": report.worst(),
        "counts": counts,
        "failed": failed,
        "warned": warned,
        "not_checked": unjudged,
        "bus": bus,
    }


def build_document(
    capture: BusCapture, report: CheckReport, context: ReportContext
) -> dict[str, Any]:
    """The report document (the JSON file; the HTML shows the same).

    Keys: ``format``, ``version``, ``site``, ``created`` (local time with its zone),
    ``pi`` (host name, emtui version), ``connection`` (port, settings), ``window``,
    ``summary`` (meters checked, worst verdict, every failed and warned check by meter, the
    bus checks, one line of text), ``meters`` (per meter: identity, setup, checks, link
    statistics, trace, phasors) and ``checks``: exactly the ``emtui check --json`` document.
    """
    zone = context.when.tzinfo
    every = [s.time for m in capture.meters for s in m.samples]
    t0 = min(every) if every else context.when.timestamp()
    by_id = {m.id: m for m in report.meters}
    meters = [
        _meter_section(m, by_id.get(m.id, MeterReport(m.id, (), m.label)), t0, zone)
        for m in capture.meters
    ]
    cycles = capture.cycle_times
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "site": context.site,
        "created": {
            "local": context.when.isoformat(timespec="seconds"),
            "zone": context.when.tzname() or "",
            "epoch": round(context.when.timestamp(), 3),
        },
        "pi": {"hostname": context.hostname, "emtui_version": context.version},
        "connection": {"port": context.port, "settings": context.settings},
        "window": {
            "seconds": round(capture.seconds, 1),
            "start": _iso(min(every), zone) if every else None,
            "end": _iso(max(every), zone) if every else None,
            "interval_s": capture.interval,
            "cycles": len(cycles),
            "cycle_s_max": _finite(max(cycles)) if cycles else None,
        },
        "summary": _summary(report),
        "meters": meters,
        "checks": report.as_dict(),
    }
    document["summary"]["line"] = summary_line(document)
    safe: dict[str, Any] = _json_safe(document)
    return safe


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (a NaN the meter sent) as None, so the document
    is strict JSON; tuples become lists, as JSON has them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _named(items: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(
        f"{'bus' if i['id'] is None else 'id ' + str(i['id'])} {i['check']}" for i in items
    )


def summary_line(document: Mapping[str, Any]) -> str:
    """One line: site, meters checked, worst verdict, the failed and warned checks."""
    summary = document["summary"]
    n = summary["meters_checked"]
    text = f"{document['site']}: {n} meter{'s' if n != 1 else ''} checked, worst {summary['worst']}"
    if summary["failed"]:
        text += f"; failed: {_named(summary['failed'])}"
    if summary["warned"]:
        text += f"; warned: {_named(summary['warned'])}"
    if summary.get("not_checked"):
        text += f"; not checked: {_named(summary['not_checked'])}"
    return text
