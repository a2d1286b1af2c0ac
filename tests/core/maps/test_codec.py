"""Tests for emtui.core.maps.codec against hand-computed register images.

Every register image below was worked out by hand from the vendor's rules and checked with
``struct`` (e.g. ``struct.pack(">f", 50.01).hex() == "42480a3d"``); the hex is written out
literally so that a change in the codec cannot silently change the expectation too.
"""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emtui.core.maps.codec import (
    INCOMPLETE,
    RAW_FORMATS,
    WORD_ORDERS,
    DateTimeFlags,
    Value,
    datetime_flags,
    decode,
    decode_entry,
    encode,
    encode_entry,
    format_raw,
    int_to_registers,
    meter_clock,
    order_to_word_byte,
    registers_to_int,
    word_byte_to_order,
)
from emtui.core.maps.registers import TYPE_COUNTS, RegisterEntry, RegisterMap

NA = {
    "float32": 0xFFC00000,
    "pf4q": 0xFFC00000,
    "uint16": 0xFFFF,
    "uint32": 0xFFFFFFFF,
    "int16": 0x8000,
    "int32": 0x80000000,
    "int64": 0x8000000000000000,
    "datetime": 0xFFFFFFFFFFFFFFFF,
    "bitmap": 0x8000,
}

ORDERS = [(w, b) for w in ("big", "little") for b in ("big", "little")]


def entry(
    type_: str, count: int | None = None, word: str = "big", byte: str = "big"
) -> RegisterEntry:
    """A RegisterEntry of ``type_`` with the type's register count unless one is given."""
    n = count if count is not None else TYPE_COUNTS[type_]
    assert n is not None
    return RegisterEntry(
        name=f"x_{type_}",
        label=type_,
        register=100,
        type=type_,
        count=n,
        word_order=word,  # type: ignore[arg-type]
        byte_order=byte,  # type: ignore[arg-type]
    )


def f32(value: float) -> float:
    """``value`` rounded to float32, as Python float."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


# ---------------------------------------------------------------------------------------------
# every type, big-endian


def test_uint16_and_int16() -> None:
    """uint16 0x00E6 is 230; int16 0xFFFB is -5 and 0x7FFF is 32767; values are ints."""
    assert decode(entry("uint16"), [0x00E6]) == Value(230, raw=(0x00E6,))
    assert decode(entry("int16"), [0xFFFB]).value == -5
    assert decode(entry("int16"), [0x7FFF]).value == 32767
    assert isinstance(decode(entry("uint16"), [0xFFFF]).value, int)


def test_uint64() -> None:
    """uint64 0x0123 0x4567 0x89AB 0xCDEF, high word first, is 0x0123456789ABCDEF."""
    regs = [0x0123, 0x4567, 0x89AB, 0xCDEF]
    assert decode(entry("uint64"), regs).value == 81985529216486895


def test_frequency_float32() -> None:
    """Frequency 50.01 Hz as float32 big-endian is 0x4248 0x0A3D; decodes to the float32 value."""
    value = decode(entry("float32"), [0x4248, 0x0A3D])
    assert value.value == 50.0099983215332  # struct.unpack(">f", bytes.fromhex("42480a3d"))
    assert value.value == f32(50.01)
    assert value.lead_lag is None
    assert value.raw == (0x4248, 0x0A3D)


def test_float32_negative() -> None:
    """float32 0xC388 0x9333 is -273.15 rounded to float32 (-273.1499938964844)."""
    assert decode(entry("float32"), [0xC388, 0x9333]).value == -273.1499938964844


def test_int64_energy_stays_int() -> None:
    """INT64 energy 123456789012 Wh (0x0000 0x001C 0xBE99 0x1A14) decodes to that exact int."""
    value = decode(entry("int64"), [0x0000, 0x001C, 0xBE99, 0x1A14]).value
    assert value == 123456789012
    assert type(value) is int


def test_int64_negative() -> None:
    """int64 0xFFFF 0xFFFF 0xFFFF 0xFFFE is -2."""
    assert decode(entry("int64"), [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]).value == -2


def test_bitmap_first_register_most_significant() -> None:
    """A two-register bitmap 0x0001 0x8002 is 0x00018002; one register 0x0006 is 6."""
    assert decode(entry("bitmap", 2), [0x0001, 0x8002]).value == 0x00018002
    assert decode(entry("bitmap", 1), [0x0006]).value == 6


def test_bitmap_ignores_word_order() -> None:
    """A bitmap's first register is always most significant, whatever the map's word order."""
    assert decode(entry("bitmap", 2, word="little"), [0x0001, 0x8002]).value == 0x00018002


# ---------------------------------------------------------------------------------------------
# word and byte orders

FLOAT_5001 = {
    ("big", "big"): [0x4248, 0x0A3D],
    ("little", "big"): [0x0A3D, 0x4248],
    ("big", "little"): [0x4842, 0x3D0A],
    ("little", "little"): [0x3D0A, 0x4842],
}
INT32_M123456 = {  # -123456 = 0xFFFE1DC0
    ("big", "big"): [0xFFFE, 0x1DC0],
    ("little", "big"): [0x1DC0, 0xFFFE],
    ("big", "little"): [0xFEFF, 0xC01D],
    ("little", "little"): [0xC01D, 0xFEFF],
}
UINT32_3E9 = {  # 3000000000 = 0xB2D05E00
    ("big", "big"): [0xB2D0, 0x5E00],
    ("little", "big"): [0x5E00, 0xB2D0],
    ("big", "little"): [0xD0B2, 0x005E],
    ("little", "little"): [0x005E, 0xD0B2],
}
INT64_ENERGY = {  # 123456789012 = 0x0000001CBE991A14
    ("big", "big"): [0x0000, 0x001C, 0xBE99, 0x1A14],
    ("little", "big"): [0x1A14, 0xBE99, 0x001C, 0x0000],
    ("big", "little"): [0x0000, 0x1C00, 0x99BE, 0x141A],
    ("little", "little"): [0x141A, 0x99BE, 0x1C00, 0x0000],
}


@pytest.mark.parametrize("order", ORDERS)
def test_float32_orders(order: tuple[str, str]) -> None:
    """50.01 decodes from its image in each of the four word/byte orders, and encodes back."""
    e = entry("float32", word=order[0], byte=order[1])
    assert decode(e, FLOAT_5001[order]).value == 50.0099983215332
    assert encode(e, 50.01) == FLOAT_5001[order]


@pytest.mark.parametrize("order", ORDERS)
def test_int32_orders(order: tuple[str, str]) -> None:
    """-123456 decodes from its image in each of the four orders, and encodes back."""
    e = entry("int32", word=order[0], byte=order[1])
    assert decode(e, INT32_M123456[order]).value == -123456
    assert encode(e, -123456) == INT32_M123456[order]


@pytest.mark.parametrize("order", ORDERS)
def test_uint32_orders(order: tuple[str, str]) -> None:
    """3000000000 decodes from its image in each of the four orders, and encodes back."""
    e = entry("uint32", word=order[0], byte=order[1])
    assert decode(e, UINT32_3E9[order]).value == 3000000000
    assert encode(e, 3000000000) == UINT32_3E9[order]


@pytest.mark.parametrize("order", ORDERS)
def test_int64_orders(order: tuple[str, str]) -> None:
    """123456789012 Wh decodes in each order (little word = whole word sequence reversed)."""
    e = entry("int64", word=order[0], byte=order[1])
    assert decode(e, INT64_ENERGY[order]).value == 123456789012
    assert encode(e, 123456789012) == INT64_ENERGY[order]


def test_legacy_low_word_first_float() -> None:
    """A legacy EM6400 map (word_order little) reads 50.01 from 0x0A3D 0x4248."""
    assert decode(entry("float32", word="little"), [0x0A3D, 0x4248]).value == f32(50.01)


# ---------------------------------------------------------------------------------------------
# N/A sentinels


@pytest.mark.parametrize(
    ("type_", "regs"),
    [
        ("uint16", [0xFFFF]),
        ("int16", [0x8000]),
        ("uint32", [0xFFFF, 0xFFFF]),
        ("int32", [0x8000, 0x0000]),
        ("int64", [0x8000, 0x0000, 0x0000, 0x0000]),
        ("float32", [0xFFC0, 0x0000]),
        ("pf4q", [0xFFC0, 0x0000]),
        ("datetime", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        ("bitmap", [0x8000]),
    ],
)
def test_na_sentinels(type_: str, regs: list[int]) -> None:
    """Each type's vendor N/A image decodes to None (no lead/lag), keeping the raw registers."""
    count = len(regs) if type_ == "bitmap" else None
    value = decode(entry(type_, count), regs, NA[type_])
    assert value == Value(None, None, tuple(regs))


def test_na_only_with_sentinel() -> None:
    """Without a sentinel the N/A images are ordinary numbers (0xFFFF = 65535, 0x8000 = -32768)."""
    assert decode(entry("uint16"), [0xFFFF]).value == 65535
    assert decode(entry("int16"), [0x8000]).value == -32768
    assert decode(entry("int64"), [0x8000, 0, 0, 0]).value == -(2**63)


def test_na_compared_in_entry_order() -> None:
    """The sentinel is the value as sent in the entry's order: INT32 CDAB N/A is 0x0000 0x8000."""
    e = entry("int32", word="little")
    assert decode(e, [0x0000, 0x8000], NA["int32"]).value is None
    assert decode(e, [0x8000, 0x0000], NA["int32"]).value == 0x8000
    e64 = entry("int64", word="little")
    assert decode(e64, [0, 0, 0, 0x8000], NA["int64"]).value is None


def test_multi_register_bitmap_na() -> None:
    """A 0x8000 bitmap sentinel on a 4-register bitmap matches 0x8000 0 0 0, not other bits."""
    e = entry("bitmap", 4)
    assert decode(e, [0x8000, 0, 0, 0], 0x8000).value is None
    assert decode(e, [0x8000, 0, 0, 1], 0x8000).value == 0x8000_0000_0000_0001
    assert decode(e, [0x0000, 0, 0, 0x8000], 0x8000).value == 0x8000


def test_na_via_map() -> None:
    """decode_entry/encode_entry take the sentinel from the map's na table."""
    e = entry("float32")
    rmap = RegisterMap(name="m", entries=(e,), na={"float32": 0xFFC00000})
    assert decode_entry(rmap, e, [0xFFC0, 0x0000]).value is None
    assert decode_entry(rmap, e, [0x4248, 0x0A3D]).value == f32(50.01)
    assert encode_entry(rmap, e, None) == [0xFFC0, 0x0000]


@pytest.mark.parametrize(
    "regs", [[0x7FC0, 0x0000], [0x7F80, 0x0001], [0xFFFF, 0xFFFF], [0xFF80, 0x1234]]
)
def test_nan_is_none(regs: list[int]) -> None:
    """Any NaN decodes to None for float32 and pf4q, even with no sentinel."""
    assert decode(entry("float32"), regs).value is None
    assert decode(entry("pf4q"), regs) == Value(None, None, tuple(regs))


def test_infinity_is_missing() -> None:
    """float32 0x7F80 0x0000 (+inf) and 0xFF80 0x0000 (-inf) are no reading: missing, like NaN
    (JSON has no infinity, and a meter never measures one); the raw registers are kept."""
    assert decode(entry("float32"), [0x7F80, 0x0000]).value is None
    assert decode(entry("float32"), [0xFF80, 0x0000]) == Value(None, raw=(0xFF80, 0x0000))
    assert decode(entry("pf4q"), [0x7F80, 0x0000]).value is None


def test_encode_none() -> None:
    """encode(None) gives the sentinel registers in the entry's order, and fails without one."""
    assert encode(entry("int32", word="little"), None, NA["int32"]) == [0x0000, 0x8000]
    assert encode(entry("datetime"), None, NA["datetime"]) == [0xFFFF] * 4
    with pytest.raises(ValueError, match="no N/A"):
        encode(entry("uint16"), None)


# ---------------------------------------------------------------------------------------------
# four-quadrant power factor


@pytest.mark.parametrize(
    ("regs", "value", "lead_lag"),
    [
        ([0x3F59, 0x999A], 0.8500000238418579, "lagging"),  # +0.85 (motor)
        ([0x3F99, 0x999A], 2 - 1.2000000476837158, "leading"),  # 1.2 -> 0.8
        ([0xBFA6, 0x6666], -2 - -1.2999999523162842, "leading"),  # -1.3 -> -0.7
        ([0x3F80, 0x0000], 1.0, "unity"),  # 1.0
        ([0xBF80, 0x0000], -1.0, "unity"),  # -1.0
        ([0xBF66, 0x6666], -0.8999999761581421, "lagging"),  # -0.9
    ],
)
def test_pf4q(regs: list[int], value: float, lead_lag: str) -> None:
    """pf4q follows the vendor rule: >1 -> 2-raw leading, <-1 -> -2-raw leading, |1| unity."""
    decoded = decode(entry("pf4q"), regs, NA["pf4q"])
    assert decoded.value == value
    assert decoded.lead_lag == lead_lag


def test_pf4q_motor() -> None:
    """A motor at 0.85 lagging reads +0.85 and decodes to about 0.85, "lagging"."""
    decoded = decode(entry("pf4q"), [0x3F59, 0x999A])
    assert decoded.value == pytest.approx(0.85)
    assert decoded.lead_lag == "lagging"


@pytest.mark.parametrize(
    ("pf", "leading", "regs", "lead_lag"),
    [
        (0.85, False, [0x3F59, 0x999A], "lagging"),
        (0.8, True, [0x3F99, 0x999A], "leading"),  # raw 1.2
        (-0.7, True, [0xBFA6, 0x6666], "leading"),  # raw -1.3
        (1.0, True, [0x3F80, 0x0000], "unity"),
        (0.0, True, [0x4000, 0x0000], "leading"),  # raw 2.0
    ],
)
def test_pf4q_encode(pf: float, leading: bool, regs: list[int], lead_lag: str) -> None:
    """encode puts a leading PF in the leading quadrants and decode gives it back."""
    e = entry("pf4q")
    assert encode(e, pf, leading=leading) == regs
    decoded = decode(e, regs)
    assert decoded.value == pytest.approx(pf, abs=1e-6)
    assert decoded.lead_lag == lead_lag


def test_pf4q_encode_out_of_range() -> None:
    """A plain PF outside -1..1 cannot be encoded."""
    with pytest.raises(ValueError, match="outside"):
        encode(entry("pf4q"), 1.2)


# ---------------------------------------------------------------------------------------------
# strings


def test_string_nul_padded() -> None:
    """ "EM6400NG" in 5 registers is 0x454D 0x3634 0x3030 0x4E47 0x0000; the NULs go."""
    regs = [0x454D, 0x3634, 0x3030, 0x4E47, 0x0000]
    assert decode(entry("string", 5), regs).value == "EM6400NG"
    assert encode(entry("string", 5), "EM6400NG") == regs


def test_string_exact_fill() -> None:
    """ "EM6400NG" filling exactly 4 registers has no NUL and decodes whole."""
    regs = [0x454D, 0x3634, 0x3030, 0x4E47]
    assert decode(entry("string", 4), regs).value == "EM6400NG"
    assert encode(entry("string", 4), "EM6400NG") == regs


def test_string_odd_length_and_first_nul() -> None:
    """ "ABC" is 0x4142 0x4300; decoding stops at the first NUL and strips trailing spaces."""
    assert encode(entry("string", 2), "ABC") == [0x4142, 0x4300]
    assert decode(entry("string", 2), [0x4142, 0x4300]).value == "ABC"
    assert decode(entry("string", 3), [0x4100, 0x4242, 0x4242]).value == "A"
    assert decode(entry("string", 3), [0x4142, 0x2020, 0x2000]).value == "AB"
    assert decode(entry("string", 2), [0x0000, 0x0000]).value == ""


def test_string_byte_swapped() -> None:
    """With byte_order little the low byte of each register is the first character."""
    e = entry("string", 2, byte="little")
    assert decode(e, [0x4D45, 0x0036]).value == "EM6"
    assert encode(e, "EM6") == [0x4D45, 0x0036]


def test_string_utf8_and_bad_bytes() -> None:
    """UTF-8 "µ" (0xC2 0xB5) decodes; a lone 0xFF becomes U+FFFD instead of raising."""
    assert decode(entry("string", 1), [0xC2B5]).value == "µ"
    assert decode(entry("string", 1), [0xFF41]).value == "\ufffdA"


def test_string_too_long() -> None:
    """A string longer than 2 × count bytes cannot be encoded."""
    with pytest.raises(ValueError, match="bytes"):
        encode(entry("string", 2), "ABCDE")


# ---------------------------------------------------------------------------------------------
# date-time (IEC 870-5-4)

# 2026-11-25 14:00:00.000: W1 = 26; W2 = month 11 << 8 | day 25; W3 = hour 14 << 8 | min 0; W4 = ms
CLOCK_SET = [0x001A, 0x0B19, 0x0E00, 0x0000]


def test_datetime_hand_built() -> None:
    """0x001A 0x0B19 0x0E00 0x0000 is 2026-11-25T14:00:00.000, and encodes to that image."""
    assert decode(entry("datetime"), CLOCK_SET, NA["datetime"]).value == "2026-11-25T14:00:00.000"
    assert encode(entry("datetime"), "2026-11-25T14:00:00.000") == CLOCK_SET
    assert encode(entry("datetime"), dt.datetime(2026, 11, 25, 14, 0)) == CLOCK_SET


def test_datetime_flags_and_reserved_bits_ignored() -> None:
    """Weekday (W2 b5-7), invalid (W3 b7), DST (W3 b15) and W1 reserved bits don't move the time."""
    regs = [0xFF1A, 0x0B79, 0x8E80, 0x0000]  # weekday 3, invalid, DST, W1 b7-15 set
    assert decode(entry("datetime"), regs).value == "2026-11-25T14:00:00.000"
    assert datetime_flags(entry("datetime"), regs) == DateTimeFlags(True, True, 3)
    assert datetime_flags(entry("datetime"), CLOCK_SET) == DateTimeFlags(False, False, 0)


def test_datetime_seconds_from_milliseconds() -> None:
    """2024-02-29 23:59:59.999 is 0x0018 0x021D 0x173B 0xEA5F (ms 59999 = 59 s 999 ms)."""
    regs = [0x0018, 0x021D, 0x173B, 0xEA5F]
    assert decode(entry("datetime"), regs).value == "2024-02-29T23:59:59.999"
    assert encode(entry("datetime"), "2024-02-29T23:59:59.999") == regs


@pytest.mark.parametrize(
    "regs",
    [
        [0x001A, 0x0019, 0x0E00, 0x0000],  # month 0
        [0x001A, 0x0D19, 0x0E00, 0x0000],  # month 13
        [0x001A, 0x0B00, 0x0E00, 0x0000],  # day 0
        [0x0019, 0x021D, 0x0E00, 0x0000],  # 2025-02-29
        [0x001A, 0x0B1F, 0x0E00, 0x0000],  # 31 November
        [0x001A, 0x0B19, 0x1800, 0x0000],  # hour 24
        [0x001A, 0x0B19, 0x0E3C, 0x0000],  # minute 60
        [0x001A, 0x0B19, 0x0E00, 0xEA60],  # 60000 ms
    ],
)
def test_datetime_impossible_is_none(regs: list[int]) -> None:
    """Impossible dates and times decode to None instead of raising."""
    assert decode(entry("datetime"), regs).value is None


def test_datetime_byte_swapped() -> None:
    """With byte_order little each of the four words is byte-swapped; word order is ignored."""
    swapped = [0x1A00, 0x190B, 0x000E, 0x0000]
    e = entry("datetime", byte="little", word="little")
    assert decode(e, swapped).value == "2026-11-25T14:00:00.000"
    assert encode(e, "2026-11-25T14:00:00.000") == swapped


def test_datetime_encode_errors() -> None:
    """Unparseable text, a time zone or a year outside 2000-2127 cannot be encoded."""
    e = entry("datetime")
    for bad in ("yesterday", "1999-12-31T23:59:59.000", "2026-11-25T14:00:00+01:00"):
        with pytest.raises(ValueError):
            encode(e, bad)


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2127, 12, 31, 23, 59, 59)
    ),
    st.sampled_from(("big", "little")),
)
def test_datetime_round_trip(moment: dt.datetime, byte: str) -> None:
    """Any date-time 2000-2127 survives encode -> decode to the millisecond."""
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    e = entry("datetime", byte=byte)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    assert decode(e, encode(e, moment)).value == expected
    assert decode(e, encode(e, expected)).value == expected


# ---------------------------------------------------------------------------------------------
# meter clock (seven uint16 registers)

CLOCK = {
    "meter_clock_year": 2026,
    "meter_clock_month": 11,
    "meter_clock_day": 25,
    "meter_clock_hour": 14,
    "meter_clock_minute": 5,
    "meter_clock_second": 9,
    "meter_clock_millisecond": 42,
}


def test_meter_clock() -> None:
    """Seven clock ints (or Values) combine to 2026-11-25T14:05:09.042."""
    assert meter_clock(CLOCK) == "2026-11-25T14:05:09.042"
    values: dict[str, Value | int | None] = {k: Value(v) for k, v in CLOCK.items()}
    assert meter_clock(values) == "2026-11-25T14:05:09.042"


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("meter_clock_month", 13),
        ("meter_clock_day", 31),
        ("meter_clock_second", 60),
        ("meter_clock_millisecond", 1000),
        ("meter_clock_hour", None),
        ("meter_clock_year", Value(None)),
    ],
)
def test_meter_clock_invalid(field: str, bad: Value | int | None) -> None:
    """A missing, N/A or out-of-range clock field gives None."""
    assert meter_clock({**CLOCK, field: bad}) is None
    assert meter_clock({k: v for k, v in CLOCK.items() if k != field}) is None


# ---------------------------------------------------------------------------------------------
# errors are programming errors only


def test_wrong_length_raises() -> None:
    """A register count that doesn't match the entry is a ValueError naming the entry."""
    with pytest.raises(ValueError, match="x_float32"):
        decode(entry("float32"), [0x4248])
    with pytest.raises(ValueError, match="needs 3"):
        decode(entry("string", 3), [0x4142])


@pytest.mark.parametrize("bad", [-1, 65536, 1 << 20])
def test_out_of_range_register_raises(bad: int) -> None:
    """A register outside 0..65535 is a ValueError, in decode and format_raw."""
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        decode(entry("uint16"), [bad])
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        format_raw([bad], "hex")


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("uint16", 65536),
        ("uint16", -1),
        ("int16", 32768),
        ("int32", -(2**31) - 1),
        ("uint64", 2**64),
        ("int64", 2**63),
        ("uint16", 1.5),
        ("uint16", "12"),
        ("float32", 1e39),
        ("float32", "x"),
        ("string", 5),
        ("bitmap", 65536),
    ],
)
def test_encode_rejects(type_: str, value: object) -> None:
    """encode rejects values outside the type's range or of the wrong kind."""
    count = 1 if type_ in ("string", "bitmap") else None
    with pytest.raises(ValueError):
        encode(entry(type_, count), value)  # type: ignore[arg-type]


def test_encode_integral_float() -> None:
    """An integral float is accepted for an integer type (50.0 -> 0x0032)."""
    assert encode(entry("uint16"), 50.0) == [0x0032]


def test_register_int_helpers() -> None:
    """registers_to_int / int_to_registers are inverses under every order."""
    assert registers_to_int([0x4248, 0x0A3D]) == 0x42480A3D
    assert registers_to_int([0x4248, 0x0A3D], "little", "little") == 0x3D0A4842
    assert int_to_registers(0x42480A3D, 2, "little", "big") == [0x0A3D, 0x4248]
    with pytest.raises(ValueError):
        int_to_registers(1 << 32, 2)


# ---------------------------------------------------------------------------------------------
# raw view

IMAGE = [0x4248, 0x0A3D]


def test_order_names() -> None:
    """Raw-view order names map to (word, byte) orders and back."""
    assert order_to_word_byte("ABCD") == ("big", "big")
    assert order_to_word_byte("CDAB") == ("little", "big")
    assert order_to_word_byte("BADC") == ("big", "little")
    assert order_to_word_byte("DCBA") == ("little", "little")
    for name in WORD_ORDERS:
        assert word_byte_to_order(*order_to_word_byte(name)) == name
    with pytest.raises(ValueError):
        order_to_word_byte("ACBD")


@pytest.mark.parametrize(
    ("fmt", "order", "expected"),
    [
        ("hex", "ABCD", ["0x4248", "0x0A3D"]),
        ("hex", "CDAB", ["0x4248", "0x0A3D"]),
        ("hex", "BADC", ["0x4842", "0x3D0A"]),
        ("hex", "DCBA", ["0x4842", "0x3D0A"]),
        ("uint16", "ABCD", ["16968", "2621"]),
        ("uint16", "BADC", ["18498", "15626"]),
        ("int16", "ABCD", ["16968", "2621"]),
        ("binary", "ABCD", ["0100001001001000", "0000101000111101"]),
        ("binary", "BADC", ["0100100001000010", "0011110100001010"]),
        ("ascii", "ABCD", ["BH", ".="]),
        ("ascii", "DCBA", ["HB", "=."]),
        ("uint32", "ABCD", ["1112017469"]),  # 0x42480A3D
        ("uint32", "CDAB", ["171786824"]),  # 0x0A3D4248
        ("uint32", "BADC", ["1212300554"]),  # 0x48423D0A
        ("uint32", "DCBA", ["1024084034"]),  # 0x3D0A4842
        ("int32", "ABCD", ["1112017469"]),
        ("float32", "ABCD", ["50.01"]),
        ("float32", "CDAB", ["9.112485e-33"]),  # 0x0A3D4248
        ("float32", "BADC", ["198900.16"]),  # 0x48423D0A = 198900.15625
        ("float32", "DCBA", ["0.033760317"]),  # 0x3D0A4842
    ],
)
def test_format_raw_known_image(fmt: str, order: str, expected: list[str]) -> None:
    """format_raw renders 0x4248 0x0A3D in each format and order as worked out by hand."""
    assert format_raw(IMAGE, fmt, order) == expected


def test_format_raw_signed() -> None:
    """int16 and int32 show two's complement: 0xFFFB = -5, 0xFFFE 0x1DC0 = -123456."""
    assert format_raw([0xFFFB, 0x8000], "int16") == ["-5", "-32768"]
    assert format_raw([0xFFFE, 0x1DC0], "int32") == ["-123456"]
    assert format_raw([0x1DC0, 0xFFFE], "int32", "CDAB") == ["-123456"]


def test_format_raw_64_bit() -> None:
    """64-bit formats take 4 registers each, under every order."""
    assert format_raw(INT64_ENERGY[("big", "big")], "int64") == ["123456789012"]
    assert format_raw(INT64_ENERGY[("little", "big")], "uint64", "CDAB") == ["123456789012"]
    assert format_raw(INT64_ENERGY[("big", "little")], "int64", "BADC") == ["123456789012"]
    assert format_raw(INT64_ENERGY[("little", "little")], "int64", "DCBA") == ["123456789012"]
    assert format_raw([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], "int64") == ["-2"]
    assert format_raw([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], "uint64") == ["18446744073709551614"]
    # 50.01 as float64 = 0x40490147AE147AE1; -1.5 = 0xBFF8000000000000
    assert format_raw([0x4049, 0x0147, 0xAE14, 0x7AE1], "float64") == ["50.01"]
    assert format_raw([0x0000, 0x0000, 0x0000, 0xBFF8], "float64", "CDAB") == ["-1.5"]


def test_format_raw_incomplete_tail_and_nan() -> None:
    """A short trailing run renders as INCOMPLETE; NaN and infinities as nan / inf / -inf."""
    assert format_raw([0x4248, 0x0A3D, 0x4248], "float32") == ["50.01", INCOMPLETE]
    assert format_raw([0x0000, 0x0001, 0x0002], "int64") == [INCOMPLETE]
    assert format_raw([], "float32") == []
    assert format_raw([0xFFC0, 0x0000, 0x7F80, 0x0000, 0xFF80, 0x0000], "float32") == [
        "nan",
        "inf",
        "-inf",
    ]
    assert format_raw([0x7FF8, 0, 0, 0], "float64") == ["nan"]


def test_format_raw_lengths() -> None:
    """Every format gives one string per register (16-bit) or per 2/4 registers."""
    regs = list(range(0x4100, 0x4108))  # 8 registers
    for fmt in RAW_FORMATS:
        for order in WORD_ORDERS:
            width = 4 if "64" in fmt else 2 if "32" in fmt else 1
            assert len(format_raw(regs, fmt, order)) == 8 // width
    with pytest.raises(ValueError, match="format"):
        format_raw(regs, "float16")


# ---------------------------------------------------------------------------------------------
# property tests

TYPES = sorted(TYPE_COUNTS)
EXPECTED_KIND: dict[str, type] = {
    "uint16": int,
    "int16": int,
    "uint32": int,
    "int32": int,
    "uint64": int,
    "int64": int,
    "bitmap": int,
    "float32": float,
    "pf4q": float,
    "string": str,
    "datetime": str,
}


@st.composite
def entries_and_registers(draw: st.DrawFn) -> tuple[RegisterEntry, list[int], int | None]:
    """A valid entry of any type and orders, registers of the right length, and a sentinel."""
    type_ = draw(st.sampled_from(TYPES))
    fixed = TYPE_COUNTS[type_]
    count = fixed if fixed is not None else draw(st.integers(1, 24))
    e = entry(
        type_,
        count,
        word=draw(st.sampled_from(("big", "little"))),
        byte=draw(st.sampled_from(("big", "little"))),
    )
    regs = draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    na = draw(
        st.one_of(
            st.none(),
            st.just(NA.get(type_, 0)),
            st.integers(0, (1 << (16 * count)) - 1),
            st.integers(),
        )
    )
    return e, regs, na


@settings(max_examples=300)
@given(entries_and_registers())
def test_decode_never_raises(case: tuple[RegisterEntry, list[int], int | None]) -> None:
    """Any register contents decode without raising, to None or the type's Python kind."""
    e, regs, na = case
    value = decode(e, regs, na)
    assert value.raw == tuple(regs)
    if value.value is not None:
        assert type(value.value) is EXPECTED_KIND[e.type]
    if e.type == "pf4q" and value.value is not None:
        assert value.lead_lag in ("lagging", "leading", "unity")
    else:
        assert value.lead_lag is None


INT_RANGES = {
    "uint16": (0, 2**16 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint32": (0, 2**32 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint64": (0, 2**64 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


@st.composite
def int_cases(draw: st.DrawFn) -> tuple[RegisterEntry, int]:
    """An integer entry in any order and an int in its range."""
    type_ = draw(st.sampled_from(sorted(INT_RANGES)))
    word, byte = draw(st.sampled_from(ORDERS))
    low, high = INT_RANGES[type_]
    return entry(type_, word=word, byte=byte), draw(st.integers(low, high))


@settings(max_examples=300)
@given(int_cases())
def test_int_round_trip(case: tuple[RegisterEntry, int]) -> None:
    """encode -> decode gives back any in-range int for every integer type and order."""
    e, number = case
    regs = encode(e, number)
    assert len(regs) == e.count
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(e, regs).value == number


@settings(max_examples=300)
@given(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from(ORDERS),
)
def test_float32_round_trip(number: float, order: tuple[str, str]) -> None:
    """encode -> decode gives back any finite float32 value in every order."""
    e = entry("float32", word=order[0], byte=order[1])
    assert decode(e, encode(e, number)).value == f32(number)


@settings(max_examples=300)
@given(st.floats(-1e6, 1e6), st.sampled_from(ORDERS))
def test_float32_round_trip_rounds(number: float, order: tuple[str, str]) -> None:
    """A Python float comes back rounded to float32, never anything else."""
    e = entry("float32", word=order[0], byte=order[1])
    assert decode(e, encode(e, number)).value == f32(number)


@settings(max_examples=300)
@given(st.floats(-1, 1), st.booleans(), st.sampled_from(ORDERS))
def test_pf4q_round_trip(pf: float, leading: bool, order: tuple[str, str]) -> None:
    """A plain PF encoded lagging or leading decodes to about the same PF and the same side."""
    e = entry("pf4q", word=order[0], byte=order[1])
    decoded = decode(e, encode(e, pf, leading=leading))
    assert isinstance(decoded.value, float)
    assert decoded.value == pytest.approx(pf, abs=1e-6)
    if decoded.lead_lag != "unity":
        assert decoded.lead_lag == ("leading" if leading else "lagging")


@settings(max_examples=300)
@given(st.text(max_size=20), st.integers(1, 20), st.sampled_from(("big", "little")))
def test_string_round_trip(text: str, count: int, byte: str) -> None:
    """A string that fits comes back without its trailing spaces (cut at any NUL)."""
    e = entry("string", count, byte=byte)
    if len(text.encode("utf-8")) > 2 * count:
        with pytest.raises(ValueError):
            encode(e, text)
        return
    assert decode(e, encode(e, text)).value == text.split("\x00", 1)[0].rstrip(" ")


@settings(max_examples=300)
@given(
    st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 2 ** (16 * n) - 1)))
)
def test_bitmap_round_trip(case: tuple[int, int]) -> None:
    """A bitmap int of any width survives encode -> decode."""
    count, number = case
    e = entry("bitmap", count)
    assert decode(e, encode(e, number)).value == number


def test_display_text_is_the_shortest_exact_float32_text() -> None:
    """Screens show 50.01 for the float32 0x42480A3D (exact for a float32, not rounded), large
    whole floats in full, PF the same way, integers as they are, a dash for a missing value."""
    from emtui.core.maps.codec import display_text

    freq = entry("float32")
    assert display_text(decode(freq, [0x4248, 0x0A3D]), freq) == "50.01"
    big = decode(freq, [0x4C99, 0xBC5C])  # a whole number above 2**24: every digit shown
    assert display_text(big, freq) == "80601824.0"
    pf = entry("pf4q")
    assert display_text(decode(pf, [0x3F59, 0x999A]), pf) == "0.85"
    assert display_text(decode(entry("int64"), [0, 0, 0x1C, 0xBE99]), entry("int64")) == str(
        0x1CBE99
    )
    assert display_text(decode(freq, [0xFFC0, 0x0000], na=0xFFC00000), freq) == "—"
