"""An ASCII phasor diagram of a meter's voltages and currents (the Commission screen and the
commissioning report), and the per-phase angles and magnitudes it is drawn from.

Why this module exists: a technician sees a reversed or swapped CT at a glance when the
current phasors are drawn against their voltages — a current pointing away from its voltage
is reversed, one sitting next to another phase's voltage is on the wrong phase. Plain ASCII so
it survives any terminal and SSH client (and a printed report); pure functions so it is
tested without a screen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from emtui.core.check.model import Snapshot

__all__ = ["PHASES", "VOLTAGE_ANGLES", "Phasors", "legend", "phasor_diagram", "phasors"]

PHASES = ("a", "b", "c")

VOLTAGE_ANGLES = {"a": 90.0, "b": -30.0, "c": 210.0}
"""Screen angle (degrees, counter-clockwise from the right) of each phase voltage: A up, then
B and C 120° apart clockwise (ABC rotation)."""


@dataclass(frozen=True, slots=True)
class Phasors:
    """Per phase (``a``, ``b``, ``c``): the V–I angle and the magnitudes of V and I.

    Attributes:
        angles: degrees by which the current lags its voltage, atan2(kVAR, kW); None when
            the phase carries no power (or it was not read).
        volts: phase-to-neutral voltage, V (None: not read).
        amps: phase current, A (None: not read).
    """

    angles: dict[str, float | None] = field(default_factory=dict)
    volts: dict[str, float | None] = field(default_factory=dict)
    amps: dict[str, float | None] = field(default_factory=dict)

    def diagram(self, *, width: int = 41, height: int = 17) -> list[str]:
        """:func:`phasor_diagram` of these phasors."""
        return phasor_diagram(self.angles, self.volts, self.amps, width=width, height=height)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _number(s: Snapshot, name: str) -> float | None:
    value = s.number(name)
    return value if value is not None and math.isfinite(value) else None


def phasors(samples: Sequence[Snapshot]) -> Phasors:
    """The phasors of ``samples``: the circular mean of each phase's angle atan2(kVAR, kW),
    and the mean V and I (one sample: that sample's values). Values not read or not finite
    are left out."""
    angles: dict[str, float | None] = {}
    volts: dict[str, float | None] = {}
    amps: dict[str, float | None] = {}
    for x in PHASES:
        sin = cos = 0.0
        seen = 0
        for s in samples:
            kw, kvar = _number(s, f"active_power_{x}"), _number(s, f"reactive_power_{x}")
            if kw is None or kvar is None or not (kw or kvar):
                continue
            rad = math.atan2(kvar, kw)
            sin, cos, seen = sin + math.sin(rad), cos + math.cos(rad), seen + 1
        angles[x] = math.degrees(math.atan2(sin, cos)) if seen else None
        volts[x] = _mean([v for s in samples if (v := _number(s, f"voltage_{x}n")) is not None])
        amps[x] = _mean([i for s in samples if (i := _number(s, f"current_{x}")) is not None])
    return Phasors(angles, volts, amps)


_ASPECT = 2.0  # a terminal cell is about twice as tall as wide


def _line_char(angle: float) -> str:
    a = angle % 180.0
    if a < 22.5 or a >= 157.5:
        return "-"
    if a < 67.5:
        return "/"
    if a < 112.5:
        return "|"
    return "\\"


def phasor_diagram(
    angles: Mapping[str, float | None],
    volts: Mapping[str, float | None],
    amps: Mapping[str, float | None],
    *,
    width: int = 41,
    height: int = 17,
) -> list[str]:
    """The diagram as ``height`` lines of ``width`` characters.

    Args:
        angles: per phase (``a``, ``b``, ``c``) the angle φ by which the current lags its
            voltage, degrees (atan2(kVAR, kW)); None draws no current.
        volts: per phase voltage (scaled to the largest; a missing VT draws a short one).
        amps: per phase current (scaled to the largest, drawn at 70 % of the voltages).

    Voltages are drawn with line characters and their letter in capitals at the tip
    (``A``), currents with ``.`` and a lower-case letter (``a``); ``+`` is the origin.
    """
    grid = [[" "] * width for _ in range(height)]
    # A points up a full radius, B and C down only half of one: sit the origin low.
    cx, cy = width // 2, round(height * 0.6)
    radius_x = min(cx - 1, (cy - 1) * _ASPECT, (height - 1 - cy) * _ASPECT * 2)
    v_max = max((v for v in volts.values() if v), default=0.0) or 1.0
    i_max = max((i for i in amps.values() if i), default=0.0) or 1.0

    def draw(angle: float, length: float, char: str | None, tip: str) -> None:
        rad = math.radians(angle)
        steps = max(int(radius_x * length * 2), 1)
        end = (cx, cy)
        for k in range(1, steps + 1):
            r = radius_x * length * k / steps
            x = round(cx + r * math.cos(rad))
            y = round(cy - r * math.sin(rad) / _ASPECT)
            if 0 <= x < width and 0 <= y < height:
                end = (x, y)
                if grid[y][x] == " ":
                    grid[y][x] = char or _line_char(angle)
        x, y = end
        grid[y][x] = tip

    for phase, v_angle in VOLTAGE_ANGLES.items():
        v = volts.get(phase) or 0.0
        draw(v_angle, max(v / v_max, 0.08), None, phase.upper())
    for phase, v_angle in VOLTAGE_ANGLES.items():
        phi, i = angles.get(phase), amps.get(phase)
        if phi is None or not i:
            continue
        draw(v_angle - phi, 0.7 * max(i / i_max, 0.1), ".", phase)
    grid[cy][cx] = "+"
    return ["".join(row) for row in grid]


def legend(angles: Mapping[str, float | None], names: Sequence[str] = ("a", "b", "c")) -> str:
    """One line: each phase's V–I angle (lagging positive)."""
    parts = []
    for x in names:
        phi = angles.get(x)
        parts.append(f"{x.upper()} {phi:+.0f}°" if phi is not None else f"{x.upper()} —")
    return "V–I angle: " + "  ".join(parts) + "   (VOLTAGE capitals, current lower case)"
