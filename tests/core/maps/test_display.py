"""Display precision (design §11): screens round for reading; CSV and JSON keep the value."""

from __future__ import annotations

import dataclasses

import pytest

from emtui.core.maps.codec import Value
from emtui.core.maps.display import NA_TEXT, NOT_READ_TEXT, display_value, lead_lag_text
from emtui.core.maps.registers import load_map

MAP = load_map("em6400ng")


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("voltage_an", 230.4499, "230.4"),
        ("current_a", 12.3456, "12.35"),
        ("active_power_total", 74.126, "74.13"),
        ("reactive_power_total", -3.004, "-3.00"),
        ("apparent_power_total", 80.0, "80.00"),
        ("active_energy_delivered", 112209.74, "112209.7"),
        ("power_factor_total", 0.85349, "0.853"),
        ("frequency", 50.0099983215332, "50.01"),
        ("active_power_a", -0.001, "0.00"),  # no "-0.00"
    ],
)
def test_units_have_their_decimals(name: str, value: float, shown: str) -> None:
    """V 0.1 · A 0.01 · kW/kVAR/kVA 0.01 · kWh 0.1 · PF 0.001 · Hz 0.01."""
    assert display_value(Value(value), MAP.get(name)) == shown


def test_integers_na_not_read_and_digits() -> None:
    """Integers as they are; N/A for the meter's not-available; — for not read; a map entry's
    digits win over its unit's."""
    wh = next(e for e in MAP.entries if e.type == "int64")
    assert display_value(Value(123456789), wh) == "123456789"
    assert display_value(Value(None), MAP.get("frequency")) == NA_TEXT
    assert display_value(None, MAP.get("frequency")) == NOT_READ_TEXT
    assert display_value(Value(50.0), MAP.get("frequency"), read=False) == NOT_READ_TEXT
    three = dataclasses.replace(MAP.get("frequency"), digits=3)
    assert display_value(Value(50.0099983215332), three) == "50.010"
    assert lead_lag_text(Value(0.85, "lagging")) == "lag"
    assert lead_lag_text(Value(0.85, "leading")) == "lead"
    assert lead_lag_text(Value(None)) == ""
