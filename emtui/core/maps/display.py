"""How a screen shows a value: the display precision of design §11.

Screens round for reading at a glance (230.4 V, 12.31 A, 0.853); CSV and JSON keep the decoded
double, and the raw view shows the exact registers. Kept in the core (no Textual, no Rich) so
every screen — the app, ``emtui read``, a report — rounds the same way.
"""

from __future__ import annotations

import math

from emtui.core.maps.codec import Value
from emtui.core.maps.registers import RegisterEntry

#: Decimals per unit (design §11); a map entry's ``digits`` overrides them.
UNIT_DIGITS: dict[str, int] = {
    "V": 1,
    "A": 2,
    "kW": 2,
    "kVAR": 2,
    "kVA": 2,
    "kWh": 1,
    "kVARh": 1,
    "kVAh": 1,
    "Hz": 2,
    "%": 1,
    "°": 1,
    "deg": 1,
    "degrees": 1,
}
#: Power factors (type pf4q, no unit) show three decimals.
PF_DIGITS = 3
#: Shown for a value the meter reports as not available.
NA_TEXT = "N/A"
#: Shown for a value that was not read (timeout, exception: the status says why).
NOT_READ_TEXT = "—"


def digits_for(entry: RegisterEntry) -> int | None:
    """Decimals a screen shows for ``entry``; None: as the value is (integers, text)."""
    if entry.digits is not None:
        return entry.digits
    if entry.type == "pf4q":
        return PF_DIGITS
    if entry.type in ("float32",):
        return UNIT_DIGITS.get(entry.unit, 2)
    return None


def format_number(number: float, digits: int | None) -> str:
    """``number`` at ``digits`` decimals (``-0.00`` shows as ``0.00``)."""
    if digits is None:
        return str(number)
    if not math.isfinite(number):
        return NA_TEXT
    text = f"{number:.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def display_value(value: Value | None, entry: RegisterEntry, *, read: bool = True) -> str:
    """``value`` as a screen shows it.

    Args:
        value: the decoded value; None when it was never read.
        entry: its map entry (unit, type, digits).
        read: False when the last read of it failed (timeout, exception): shows ``—``.
    """
    if value is None or not read:
        return NOT_READ_TEXT
    if value.value is None:
        return NA_TEXT
    if isinstance(value.value, bool) or not isinstance(value.value, int | float):
        return str(value.value)
    if isinstance(value.value, int) and entry.digits is None:
        return str(value.value)
    return format_number(float(value.value), digits_for(entry))


def lead_lag_text(value: Value | None) -> str:
    """``lag``/``lead`` beside a power factor, empty otherwise."""
    if value is None or value.value is None or not value.lead_lag:
        return ""
    return {"lagging": "lag", "leading": "lead"}.get(value.lead_lag, value.lead_lag)
