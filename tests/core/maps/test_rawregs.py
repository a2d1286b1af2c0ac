"""Raw registers in every type and order, and the off-by-one hint (design §13), against
images worked out by hand."""

from __future__ import annotations

import struct

import pytest

from emtui.core.maps.codec import WORD_ORDERS
from emtui.core.maps.rawregs import (
    ORDER_LABELS,
    decode_wide,
    decodings,
    exception_text,
    find_shift_hint,
    na_name,
    plausible,
    register_rows,
    shift_hint,
)
from emtui.core.maps.registers import RegisterMap, load_map

#: 2**-149: the smallest float32 step (subnormals are multiples of it).
F32_TINY = 2.0**-149


@pytest.fixture(scope="module")
def ng() -> RegisterMap:
    return load_map("em6400ng")


@pytest.mark.parametrize(
    ("type_name", "order", "expected"),
    [
        # the classic: 0x4248 0x0000 is 50.0 high word first
        ("float32", "ABCD", 50.0),
        ("float32", "CDAB", 0x4248 * F32_TINY),  # 0x00004248: a subnormal
        ("float32", "BADC", 198656.0),  # 0x48420000 = 1.515625 * 2**17
        ("float32", "DCBA", 0x4842 * F32_TINY),  # 0x00004842
        ("uint32", "ABCD", 0x42480000),
        ("uint32", "CDAB", 0x00004248),
        ("uint32", "BADC", 0x48420000),
        ("uint32", "DCBA", 0x00004842),
        ("int32", "ABCD", 1112014848),
    ],
)
def test_classic_50_hz_image_in_every_order(type_name: str, order: str, expected: float) -> None:
    """0x4248 0x0000 decodes as worked out by hand in each 32-bit type and order."""
    assert decode_wide([0x4248, 0x0000], type_name, order) == expected


def test_signed_32_bit_in_every_order() -> None:
    """0xFFFF 0xFFFE: -2 ABCD; CDAB 0xFFFEFFFF = -65537; BADC 0xFFFFFEFF = -257;
    DCBA 0xFEFFFFFF = -16777217."""
    got = {o: decode_wide([0xFFFF, 0xFFFE], "int32", o) for o in WORD_ORDERS}
    assert got == {"ABCD": -2, "CDAB": -65537, "BADC": -257, "DCBA": -16777217}


def test_64_bit_orders_are_the_eight_byte_names() -> None:
    """0102 0304 0506 0708 in ABCD/CDAB/BADC/DCBA = ABCDEFGH/GHEFCDAB/BADCFEHG/HGFEDCBA."""
    regs = [0x0102, 0x0304, 0x0506, 0x0708]
    got = {o: decode_wide(regs, "uint64", o) for o in WORD_ORDERS}
    assert got == {
        "ABCD": 0x0102030405060708,
        "CDAB": 0x0708050603040102,
        "BADC": 0x0201040306050807,
        "DCBA": 0x0807060504030201,
    }
    assert [ORDER_LABELS[o].eight for o in WORD_ORDERS] == [
        "ABCDEFGH",
        "GHEFCDAB",
        "BADCFEHG",
        "HGFEDCBA",
    ]
    assert decode_wide([0xFFFF] * 3 + [0xFFFE], "int64", "ABCD") == -2
    assert decode_wide([0xFFFE] + [0xFFFF] * 3, "int64", "CDAB") == -2


def test_float64_in_both_extreme_orders() -> None:
    """50.0 as float64 is 0x4049000000000000: ABCD 4049 0 0 0; CDAB 0 0 0 4049; BADC 4940 0 0
    0; DCBA 0 0 0 4940."""
    assert decode_wide([0x4049, 0, 0, 0], "float64", "ABCD") == 50.0
    assert decode_wide([0, 0, 0, 0x4940], "float64", "DCBA") == 50.0
    assert decode_wide([0, 0, 0, 0x4049], "float64", "CDAB") == 50.0  # GHEFCDAB
    assert decode_wide([0x4940, 0, 0, 0], "float64", "BADC") == 50.0


def test_nan_is_none_and_sentinels_are_named() -> None:
    """The FLOAT32 N/A 0xFFC00000 decodes to None and is named; so are INT32U and INT64 N/A."""
    assert decode_wide([0xFFC0, 0x0000], "float32", "ABCD") is None
    assert na_name([0xFFC0, 0x0000], "float32") == "N/A (FLOAT32 0xFFC00000)"
    assert na_name([0x0000, 0xFFC0], "float32", "CDAB") == "N/A (FLOAT32 0xFFC00000)"
    assert na_name([0xFFFF, 0xFFFF], "uint32") == "N/A (INT32U 0xFFFFFFFF)"
    assert na_name([0x8000, 0, 0, 0], "int64") == "N/A (INT64 0x8000000000000000)"
    assert na_name([0x4248, 0x0000], "float32") is None


def test_wrong_width_and_unknown_type_are_errors() -> None:
    """A programming error (wrong count, unknown type or order) is a ValueError."""
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_wide([1], "float32", "ABCD")
    with pytest.raises(ValueError, match="unknown type"):
        decode_wide([1, 2], "float16", "ABCD")
    with pytest.raises(ValueError, match="unknown order"):
        decode_wide([1, 2], "float32", "ACBD")


def test_decodings_every_offset_and_64_bit_only_where_four_remain() -> None:
    """Four registers give three starting registers; only the first has 64-bit types; each
    type has all four orders."""
    values = [0x4248, 0x0000, 0x4366, 0x0000]
    out = decodings(values, 3110)
    assert [d["register"] for d in out] == [3110, 3111, 3112]
    assert "float64" in out[0] and "float64" not in out[1]
    assert set(out[0]) == {"register", "float32", "int32", "uint32", "float64", "int64", "uint64"}
    assert out[0]["float32"]["ABCD"] == 50.0
    assert out[2]["float32"]["ABCD"] == 230.0
    assert set(out[1]["float32"]) == set(WORD_ORDERS)


def test_register_rows_name_what_the_map_knows(ng: RegisterMap) -> None:
    """Rows carry register, address (register - 1), raw, hex, signed; names where mapped."""
    rows = register_rows([0x4248, 0x8000, 0x0001], 3110, ng)
    assert rows[0] == {
        "register": 3110,
        "address": 3109,
        "raw": 0x4248,
        "hex": "4248",
        "uint16": 0x4248,
        "int16": 0x4248,
        "name": "frequency",
    }
    assert rows[1]["name"] == "frequency+1" and rows[1]["int16"] == -32768


def test_exception_text_names_the_meaning() -> None:
    """Exception 02 says the block touches a register the meter does not have."""
    assert exception_text(2) == (
        "exception 02 illegal data address: this block touches a register the meter does not have"
    )


# -- plausibility and the off-by-one hint -----------------------------------------------------


def test_plausible_uses_the_vendor_range_else_a_sane_magnitude(ng: RegisterMap) -> None:
    """Frequency's vendor range is 42-70 Hz; an unranged float is plausible when finite,
    normal, not N/A and of a sane size."""
    frequency = ng.get("frequency")
    assert plausible(frequency, 50.0)
    assert not plausible(frequency, 230.0)
    assert not plausible(frequency, 1e-38)
    voltage = ng.get("voltage_an")
    assert voltage.range is None
    assert plausible(voltage, 230.1)
    assert plausible(voltage, 0.0)
    assert not plausible(voltage, 0x4248 * F32_TINY)  # subnormal
    assert not plausible(voltage, 1e30)
    assert not plausible(voltage, None)
    assert not plausible(voltage, 1.0, raw=0xFFC00000)


def _frequency_block(first: int, count: int, hz: float = 50.02) -> list[int]:
    """Registers ``first`` .. ``first+count-1`` of a meter whose frequency is ``hz`` and
    whose neighbouring registers are N/A (0xFFFF), as the simulator serves them."""
    high, low = struct.unpack(">HH", struct.pack(">f", hz))
    image = {3110: high, 3111: low}
    return [image.get(first + i, 0xFFFF) for i in range(count)]


def test_hint_one_register_early(ng: RegisterMap) -> None:
    """Reading frequency at 3109 (one early) gives nothing plausible; 3110 gives 50.02 Hz."""
    hint = shift_hint(ng, _frequency_block(3109, 4), 3109, 3109)
    assert hint is not None
    assert (hint.entry.name, hint.register, hint.shift, hint.source) == (
        "frequency",
        3110,
        1,
        "block",
    )
    assert hint.value == pytest.approx(50.02, abs=1e-5)
    assert "register 3110 (+1)" in hint.text() and "Hz" in hint.text()


def test_hint_one_register_late(ng: RegisterMap) -> None:
    """Reading frequency at 3111 gives 1e-38-ish; with 3110 known, the hint is -1."""
    hint = shift_hint(ng, _frequency_block(3110, 4), 3110, 3111)
    assert hint is not None and (hint.register, hint.shift) == (3110, -1)


def test_no_hint_at_the_right_register(ng: RegisterMap) -> None:
    """At 3110 itself the value is plausible: no hint."""
    assert shift_hint(ng, _frequency_block(3110, 2), 3110, 3110) is None


def test_hint_reads_the_shifted_block_when_the_block_lacks_it(ng: RegisterMap) -> None:
    """A 2-register block at 3111 cannot answer -1: the hint reads the block at 3110."""
    reads: list[tuple[int, int]] = []

    def read(start: int, n: int) -> tuple[list[int] | None, int | None]:
        reads.append((start, n))
        return _frequency_block(start, n), None

    hint = find_shift_hint(ng, _frequency_block(3111, 2), 3111, 3111, read)
    assert hint is not None and (hint.register, hint.source) == (3110, "shifted block")
    assert reads == [(3110, 2)]


def test_hint_reads_the_entry_alone_when_the_shifted_block_is_refused(ng: RegisterMap) -> None:
    """A meter that answers the shifted block with exception 02 (it runs past the meter's
    registers) gets the frequency entry read at its own address instead."""
    reads: list[tuple[int, int]] = []

    def read(start: int, n: int) -> tuple[list[int] | None, int | None]:
        reads.append((start, n))
        if n > 2:
            return None, 2
        return _frequency_block(start, n), None

    hint = find_shift_hint(ng, _frequency_block(3111, 4), 3111, 3111, read)
    assert hint is not None and (hint.register, hint.source) == (3110, "entry")
    assert reads == [(3110, 4), (3110, 2)]


def test_hint_never_reads_a_register_that_acts(ng: RegisterMap) -> None:
    """No hint read touches register 5680 (reading it takes the command semaphore)."""
    reads: list[tuple[int, int]] = []

    def read(start: int, n: int) -> tuple[list[int] | None, int | None]:
        reads.append((start, n))
        return [0xFFFF] * n, None

    find_shift_hint(ng, [0xFFFF, 0xFFFF], 5681, 5681, read)
    assert all(not start <= 5680 < start + n for start, n in reads)
