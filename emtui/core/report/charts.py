"""The report's charts: pygal SVG, inline, with no script and no link to the web.

pygal loads its tooltip script from the web unless told ``js=[]``; even then it puts an inline
script (its config) and comments naming its home page into every chart. The report must open
offline and carry no script at all, so both are taken out of the chart's tree before it is
serialised: what stays is plain SVG whose only URLs are its XML namespaces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pygal
from pygal.etree import etree
from pygal.style import Style

__all__ = ["SVG_NAMESPACES", "line_chart", "phasor_chart", "svg_of"]

SVG_NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")
"""The only URLs a chart holds: its namespaces (never fetched by a browser)."""

PHASE_COLOURS = ("#c0392b", "#2c3e50", "#2471a3")
"""Phase A, B, C (red, black, blue: close to the usual L1/L2/L3 wire colours on print)."""

_FONTS = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif'

STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#111111",
    foreground_subtle="#bbbbbb",
    opacity="1",
    opacity_hover="1",
    transition="none",
    guide_stroke_color="#d5d8dc",
    major_guide_stroke_color="#aab0b6",
    stroke_opacity="1",
    stroke_width="2",
    colors=PHASE_COLOURS,
    font_family=_FONTS,
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=13,
    value_font_size=11,
)
"""Light, print-friendly colours; a system font stack (no web font)."""


def svg_of(chart: Any) -> str:
    """``chart`` as inline SVG: pygal's tree without its comments and scripts."""
    root = chart.render_tree()
    for parent in list(root.iter()):
        for child in list(parent):
            tag = child.tag
            # comments and processing instructions have a non-string tag
            if not isinstance(tag, str) or tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    text: str = etree.tostring(root, encoding="unicode")
    return text


def _config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "js": [],
        "disable_xml_declaration": True,
        "style": STYLE,
        "width": 760,
        "height": 230,
        "show_dots": False,
        "stroke_style": {"width": 2},
        "legend_at_bottom": True,
        "legend_box_size": 10,
        "legend_at_bottom_columns": 3,
        "margin": 8,
        "x_title": "seconds",
        "truncate_legend": -1,
        "print_values": False,
    }
    base.update(extra)
    return base


def line_chart(
    title: str,
    t: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    unit: str,
    colours: Sequence[str] | None = None,
) -> str:
    """An XY line chart of ``series`` (name → values at the times ``t``) as inline SVG."""
    style = STYLE
    if colours is not None:
        style = Style(**{**STYLE.to_dict(), "colors": tuple(colours)})
    chart = pygal.XY(**_config(title=title, y_title=unit, style=style))
    for name, values in series.items():
        chart.add(name, [(x, y) for x, y in zip(t, values, strict=False)])
    return svg_of(chart)


def phasor_chart(
    phases: Mapping[str, Mapping[str, float | None]], screen: Mapping[str, float]
) -> str:
    """The phasors as segments from the origin on a square XY chart (pygal draws them).

    Args:
        phases: per phase ``angle_deg`` (current lag), ``voltage_v``, ``current_a``.
        screen: per phase the drawing angle of its voltage (A up, B and C 120° apart).

    Voltages are drawn to full length, currents to 70 % of it (each scaled to the largest of
    its kind), as in the ASCII diagram.
    """

    v_max = max((p.get("voltage_v") or 0.0 for p in phases.values()), default=0.0) or 1.0
    i_max = max((p.get("current_a") or 0.0 for p in phases.values()), default=0.0) or 1.0
    chart = pygal.XY(
        **_config(
            width=420,
            height=483,  # the plot area square (404 × 404): angles true
            title="Phasors (V solid, I dashed)",
            x_title=None,
            show_x_labels=False,
            show_y_labels=False,
            range=(-1.05, 1.05),
            xrange=(-1.05, 1.05),
            show_x_guides=True,
            show_y_guides=True,
            x_labels=[-1, 0, 1],
            y_labels=[-1, 0, 1],
            style=Style(**{**STYLE.to_dict(), "colors": PHASE_COLOURS * 2}),
        )
    )
    for x, base in screen.items():
        p = phases.get(x, {})
        v = (p.get("voltage_v") or 0.0) / v_max
        rad = math.radians(base)
        chart.add(
            f"V{x.upper()}",
            [(0.0, 0.0), (v * math.cos(rad), v * math.sin(rad))],
            stroke_style={"width": 3},
        )
    for x, base in screen.items():
        p = phases.get(x, {})
        phi, i = p.get("angle_deg"), p.get("current_a")
        if phi is None or not i:
            chart.add(f"I{x.lower()}", [])
            continue
        rad = math.radians(base - phi)
        r = 0.7 * max(i / i_max, 0.1)
        chart.add(
            f"I{x.lower()}",
            [(0.0, 0.0), (r * math.cos(rad), r * math.sin(rad))],
            stroke_style={"width": 3, "dasharray": "7,4"},
        )
    return svg_of(chart)
