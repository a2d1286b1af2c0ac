"""The report as one self-contained HTML file: the document laid out by a Jinja2 template.

Everything is inside the file: the CSS (system fonts only, a print stylesheet for A4), the
charts as inline SVG (pygal, no script), the phasor diagram as text. It opens from a USB
stick on a laptop with no network, and prints to PDF one meter per page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup

from emtui.core.check.phasor import PHASES, VOLTAGE_ANGLES
from emtui.core.report.charts import PHASE_COLOURS, line_chart, phasor_chart

__all__ = ["render_html"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("emtui.core.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _value(value: Any) -> str:
    """A value as the report shows it: numbers at most 3 decimals, None as N/A."""
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "N/A"
    if isinstance(value, list | tuple | dict) and not value:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return str(value)


_ENV.filters["value"] = _value


def _charts(meter: Mapping[str, Any]) -> dict[str, str]:
    """The trace charts and the phasor chart of one meter, as inline SVG (markup-safe: made
    by pygal, which escapes every text it is given)."""
    trace = meter["trace"]
    t = trace["t_s"]
    return {
        "kw": line_chart("Active power, total", t, {"kW": trace["kw_total"]}, "kW", ["#1e8449"]),
        "volts": line_chart(
            "Voltage L-N",
            t,
            {f"V {x.upper()}-N": trace["voltage_ln"][x] for x in PHASES},
            "V",
            PHASE_COLOURS,
        ),
        "amps": line_chart(
            "Current",
            t,
            {f"I {x.upper()}": trace["current"][x] for x in PHASES},
            "A",
            PHASE_COLOURS,
        ),
        "phasors": phasor_chart(meter["phasors"]["phases"], VOLTAGE_ANGLES),
    }


def render_html(document: Mapping[str, Any]) -> str:
    """The HTML of the report ``document`` (see :func:`build_document`)."""
    template = _ENV.get_template("report.html.j2")
    charts = {m["id"]: {k: Markup(v) for k, v in _charts(m).items()} for m in document["meters"]}
    return template.render(doc=document, charts=charts, phases=PHASES)
