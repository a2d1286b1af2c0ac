"""The report's pygal charts: the phasor chart draws true angles on a square plot, and no
chart carries a script or a comment."""

from __future__ import annotations

import math
import re

import pytest

from emtui.core.check.phasor import VOLTAGE_ANGLES
from emtui.core.report.charts import line_chart, phasor_chart


def segments(svg: str) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of each series line, in the order the series were added."""
    found = re.findall(r'<path d="M([\d.]+) ([\d.]+) L([\d.]+) ([\d.]+)" class="line', svg)
    return [tuple(float(v) for v in f) for f in found]  # type: ignore[misc]


def test_phasor_chart_angles_are_true() -> None:
    """On the square plot V A points up (90°), V B at −30°, V C at −150°; phase A's current
    lagging 30° is drawn at 60°, phase B's reversed one (210° lag) at −30° − 210° = 120°,
    each within 0.5°; voltages full length, currents at 70 % of it."""
    phases = {
        "a": {"angle_deg": 30.0, "voltage_v": 230.0, "current_a": 50.0},
        "b": {"angle_deg": 210.0, "voltage_v": 230.0, "current_a": 50.0},
        "c": {"angle_deg": 30.0, "voltage_v": 230.0, "current_a": 50.0},
    }
    lines = segments(phasor_chart(phases, VOLTAGE_ANGLES))
    assert len(lines) == 6

    def polar(seg: tuple[float, float, float, float]) -> tuple[float, float]:
        x0, y0, x1, y1 = seg
        return math.hypot(x1 - x0, y1 - y0), math.degrees(math.atan2(y0 - y1, x1 - x0))

    (va, a_va), (vb, a_vb), (_, a_vc), (ia, a_ia), (ib, a_ib), _ = (polar(s) for s in lines)
    assert a_va == pytest.approx(90.0, abs=0.5) and a_vb == pytest.approx(-30.0, abs=0.5)
    assert a_vc == pytest.approx(-150.0, abs=0.5)
    assert va == pytest.approx(vb, rel=0.01) and ia == pytest.approx(0.7 * va, rel=0.01)
    assert ib == pytest.approx(ia, rel=0.01)
    assert a_ia == pytest.approx(60.0, abs=0.5)
    assert a_ib == pytest.approx(120.0, abs=0.5)


def test_charts_have_no_script_or_comment() -> None:
    """pygal's inline config script and its comments (naming pygal.org) are removed."""
    svg = line_chart("kW", [0.0, 1.0], {"kW": [1.0, None]}, "kW")
    assert svg.startswith("<svg") and "<script" not in svg and "<!--" not in svg
    assert "pygal.org" not in svg and "github.com" not in svg
