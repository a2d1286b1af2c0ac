"""What ``emtui check`` judges: samples captured over one window, and the verdicts.

Kept free of the bus so each check is a pure function of captured values: the unit tests
hand-make the samples a miswired meter would give, and the capture (``capture.py``) fills the
same structures from the bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "VERDICTS",
    "BusCapture",
    "CheckReport",
    "CheckResult",
    "MeterCapture",
    "MeterReport",
    "Scalar",
    "Snapshot",
    "Verdict",
]

Verdict = Literal["pass", "warn", "fail", "not_checked"]
VERDICTS: tuple[Verdict, ...] = ("pass", "warn", "fail", "not_checked")
"""The verdicts, as they appear in the JSON."""

Scalar = float | int | str | None
"""A decoded value: a number in the map's unit, a string, or None (N/A or not read)."""

_RANK = {"pass": 0, "not_checked": 1, "warn": 2, "fail": 3}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of one meter during the window.

    Attributes:
        time: the Pi's wall clock (epoch seconds) when the read started.
        values: map entry name → decoded value (None: N/A or not read).
        duration: seconds the read took (the meter clock is compared at its middle).
    """

    time: float
    values: Mapping[str, Scalar]
    duration: float = 0.0

    def number(self, name: str) -> float | None:
        """The value of ``name`` as a float, None when missing or not a number."""
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


@dataclass(slots=True)
class MeterCapture:
    """Everything captured from one meter.

    Attributes:
        id: the slave id.
        static: identity and setup values, read once (entry name → value).
        samples: the window's reads of the live values, in time order.
        link: the link statistics over the window (``DeviceStats.as_dict()`` keys).
        expect: expected setup values from the config's ``[meters.expect]`` (may be empty).
        label: the meter's label from the config.
    """

    id: int
    static: dict[str, Scalar] = field(default_factory=dict)
    samples: list[Snapshot] = field(default_factory=list)
    link: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, float | int] = field(default_factory=dict)
    label: str = ""


@dataclass(slots=True)
class BusCapture:
    """One window over the whole bus.

    Attributes:
        meters: one capture per meter, in id order.
        interval: the configured poll interval in seconds (0: back to back).
        cycle_times: seconds each cycle of the logged set took (every meter once).
        seconds: the window's length.
    """

    meters: list[MeterCapture]
    interval: float
    cycle_times: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict, why, and the values it was judged on."""

    name: str
    verdict: Verdict
    why: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: name, verdict, why, evidence."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "why": self.why,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class MeterReport:
    """The checks of one meter."""

    id: int
    checks: tuple[CheckResult, ...]
    label: str = ""

    def get(self, name: str) -> CheckResult:
        """The check called ``name`` (KeyError when absent)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: id, label, checks."""
        return {"id": self.id, "label": self.label, "checks": [c.as_dict() for c in self.checks]}


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Every meter's checks and the bus-level ones."""

    meters: tuple[MeterReport, ...]
    bus: tuple[CheckResult, ...]
    seconds: float = 0.0

    def worst(self) -> Verdict:
        """The worst verdict anywhere (fail > warn > not_checked > pass)."""
        every = [c.verdict for m in self.meters for c in m.checks] + [c.verdict for c in self.bus]
        return max(every, key=lambda v: _RANK[v], default="pass")

    def failed(self) -> list[tuple[int | None, str]]:
        """(meter id or None for the bus, check name) of every failed check."""
        out: list[tuple[int | None, str]] = [
            (m.id, c.name) for m in self.meters for c in m.checks if c.verdict == "fail"
        ]
        out += [(None, c.name) for c in self.bus if c.verdict == "fail"]
        return out

    def as_dict(self) -> dict[str, Any]:
        """The ``emtui check --json`` document (design §12)."""
        return {
            "meters": [m.as_dict() for m in self.meters],
            "bus": {"checks": [c.as_dict() for c in self.bus]},
            "seconds": self.seconds,
        }


def worse(a: Verdict, b: Verdict) -> Verdict:
    """The worse of two verdicts."""
    return a if _RANK[a] >= _RANK[b] else b
