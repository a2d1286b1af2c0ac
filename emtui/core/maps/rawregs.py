"""Raw registers in every type and word order, and the off-by-one hint (design §13).

A technician with an unknown meter reads a block and tries types and orders until the numbers
make sense; the classic mistake is being one register off (base 0 against base 1), which turns
50 Hz into 1e-38. :func:`decodings` decodes from every starting register in every type and
order at once, so a shift is visible; :func:`shift_hint` says when the neighbouring register
gives a plausible value of the map's type where the chosen one does not.

Order labels (emtui's codec word orders, with the names Modbus Poll and pymodbus users know):
ABCD big-endian, CDAB word-swapped (Modbus Poll "Little-endian byte swap", pymodbus
``word_order="little"``), BADC byte-swapped (Modbus Poll "Big-endian byte swap"), DCBA
little-endian. For 8 bytes the same names mean ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emtui.core.maps.codec import WORD_ORDERS, order_to_word_byte, registers_to_int
from emtui.core.maps.registers import RegisterEntry, RegisterMap

__all__ = [
    "EXCEPTION_MEANINGS",
    "ORDER_LABELS",
    "WIDE_TYPES",
    "ShiftHint",
    "decode_wide",
    "decodings",
    "exception_text",
    "find_shift_hint",
    "hint_entry",
    "na_name",
    "names_by_register",
    "plausible",
    "register_rows",
    "shift_hint",
]


@dataclass(frozen=True, slots=True)
class OrderLabel:
    """The names one byte order goes by.

    Attributes:
        short: the plain name (big-endian, word-swapped, byte-swapped, little-endian).
        modbus_poll: Modbus Poll's name for it.
        eight: the same order spelled for 8 bytes.
    """

    short: str
    modbus_poll: str
    eight: str


#: Each order's other names, as Modbus Poll and pymodbus users know them.
ORDER_LABELS: dict[str, OrderLabel] = {
    "ABCD": OrderLabel("big-endian", "Big-endian", "ABCDEFGH"),
    "CDAB": OrderLabel("word-swapped", "Little-endian byte swap", "GHEFCDAB"),
    "BADC": OrderLabel("byte-swapped", "Big-endian byte swap", "BADCFEHG"),
    "DCBA": OrderLabel("little-endian", "Little-endian", "HGFEDCBA"),
}

#: The 32-bit and 64-bit types decoded from every offset, with their widths in registers.
WIDE_TYPES: dict[str, int] = {
    "float32": 2,
    "int32": 2,
    "uint32": 2,
    "float64": 4,
    "int64": 4,
    "uint64": 4,
}

#: A plausible meter value is at most this large when the map gives no range (an energy in
#: Wh of a big site over decades stays below it; a misread float is usually far beyond).
SANE_MAGNITUDE = 1e12
#: The smallest normal float32: below it (and not zero) a float32 is the debris of a shift.
FLOAT32_MIN_NORMAL = 2.0**-126

#: N/A sentinels of the vendor's data types (design §6), by the raw view's type name.
_NA_SENTINELS: dict[str, dict[int, str]] = {
    "uint16": {0xFFFF: "N/A (INT16U 0xFFFF)"},
    "int16": {0x8000: "N/A (INT16 0x8000)"},
    "float32": {0xFFC00000: "N/A (FLOAT32 0xFFC00000)"},
    "uint32": {0xFFFFFFFF: "N/A (INT32U 0xFFFFFFFF)"},
    "int64": {0x8000000000000000: "N/A (INT64 0x8000000000000000)"},
}

#: Modbus exception codes and what they mean for a raw read.
EXCEPTION_MEANINGS: dict[int, str] = {
    1: "illegal function: the meter does not support this function code",
    2: "illegal data address: this block touches a register the meter does not have",
    3: "illegal data value: the count or value is not accepted",
    4: "server device failure: the meter could not do it",
    5: "acknowledge: accepted, still working",
    6: "server device busy: try again later",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_text(code: int) -> str:
    """``02 illegal data address: ...`` for a Modbus exception code."""
    meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
    return f"exception {code:02d} {meaning}"


def _unsigned(registers: Sequence[int], order: str) -> int:
    word_order, byte_order = order_to_word_byte(order)
    return registers_to_int(list(registers), word_order, byte_order)


def decode_wide(registers: Sequence[int], type_name: str, order: str) -> float | int | None:
    """``registers`` (2 or 4) as ``type_name`` (a :data:`WIDE_TYPES` key) in ``order``.

    Floats that are NaN or infinite give None (JSON has no NaN).

    Raises:
        ValueError: unknown type or order, wrong register count, a register out of range.
    """
    width = WIDE_TYPES.get(type_name)
    if width is None:
        raise ValueError(f"unknown type {type_name!r}: use one of {', '.join(WIDE_TYPES)}")
    if len(registers) != width:
        raise ValueError(f"{type_name} needs {width} registers, got {len(registers)}")
    unsigned = _unsigned(registers, order)
    bits = 16 * width
    if type_name.startswith("uint"):
        return unsigned
    if type_name.startswith("int"):
        return unsigned - (1 << bits) if unsigned >> (bits - 1) else unsigned
    fmt = ">f" if bits == 32 else ">d"
    value = float(struct.unpack(fmt, unsigned.to_bytes(bits // 8, "big"))[0])
    return value if math.isfinite(value) else None


def na_name(registers: Sequence[int], type_name: str, order: str = "ABCD") -> str | None:
    """The vendor's N/A name when ``registers`` in ``order`` are that type's sentinel."""
    table = _NA_SENTINELS.get(type_name)
    if not table:
        return None
    return table.get(_unsigned(registers, order))


def names_by_register(rmap: RegisterMap | None) -> dict[int, str]:
    """Register number → map name (``name+1`` for the later registers of a wide entry)."""
    names: dict[int, str] = {}
    if rmap is None:
        return names
    for entry in rmap.entries:
        for k in range(entry.count):
            names.setdefault(entry.register + k, entry.name if k == 0 else f"{entry.name}+{k}")
    return names


def register_rows(
    values: Sequence[int], first_register: int, rmap: RegisterMap | None = None
) -> list[dict[str, Any]]:
    """One row per register: register (1-based), address, raw, hex, uint16, int16, name.

    ``name`` is present only where the map knows the register.
    """
    names = names_by_register(rmap)
    rows = []
    for i, raw in enumerate(values):
        register = first_register + i
        row: dict[str, Any] = {
            "register": register,
            "address": register - 1,
            "raw": raw,
            "hex": f"{raw:04X}",
            "uint16": raw,
            "int16": raw - 0x10000 if raw & 0x8000 else raw,
        }
        if register in names:
            row["name"] = names[register]
        rows.append(row)
    return rows


def decodings(values: Sequence[int], first_register: int) -> list[dict[str, Any]]:
    """For every starting register, each 32/64-bit type in all four orders (design §13).

    One entry per starting register that has at least two registers left; 64-bit types only
    where four remain. Each type maps order name → value (None for a float NaN/infinity).
    """
    out = []
    for offset in range(len(values) - 1):
        entry: dict[str, Any] = {"register": first_register + offset}
        for type_name, width in WIDE_TYPES.items():
            chunk = values[offset : offset + width]
            if len(chunk) < width:
                continue
            entry[type_name] = {
                order: decode_wide(chunk, type_name, order) for order in WORD_ORDERS
            }
        out.append(entry)
    return out


# -- the off-by-one hint ----------------------------------------------------------------------


def plausible(entry: RegisterEntry, value: float | int | None, raw: int | None = None) -> bool:
    """Could ``value`` be a reading of ``entry``?

    Within the entry's ``range`` where the map has one; else finite, not subnormal, not the
    type's N/A sentinel (``raw``: the unsigned integer the registers form) and of a sane
    magnitude (:data:`SANE_MAGNITUDE`).
    """
    if value is None or isinstance(value, bool):
        return False
    x = float(value)
    if not math.isfinite(x):
        return False
    if raw is not None and raw in _NA_SENTINELS.get(entry.type, {}):
        return False
    if entry.range is not None:
        low, high = entry.range
        return low <= x <= high
    if entry.type in ("float32", "pf4q") and x != 0.0 and abs(x) < FLOAT32_MIN_NORMAL:
        return False
    return abs(x) <= SANE_MAGNITUDE


@dataclass(frozen=True, slots=True)
class ShiftHint:
    """Reading ``shift`` registers away gives a plausible value of ``entry``.

    Attributes:
        entry: the map entry the technician most likely meant.
        chosen_register: the register the technician chose.
        shift: the register offset that gives a plausible value (-1 or +1, or the way to
            the entry's own register).
        value: that plausible value.
        chosen_value: what the chosen register gives as the entry's type (None: nothing).
        source: where the plausible value came from: ``block`` (the block already read),
            ``shifted block`` (the block read again one register over) or ``entry`` (the
            entry read alone at its own address, after the meter refused the shifted block
            with exception 02).
    """

    entry: RegisterEntry
    chosen_register: int
    shift: int
    value: float | int
    chosen_value: float | int | None
    source: str = "block"

    @property
    def register(self) -> int:
        """The register that gives the plausible value."""
        return self.chosen_register + self.shift

    def as_dict(self) -> dict[str, Any]:
        """The hint for ``--json``."""
        return {
            "name": self.entry.name,
            "type": self.entry.type,
            "chosen_register": self.chosen_register,
            "chosen_value": self.chosen_value,
            "register": self.register,
            "shift": self.shift,
            "value": self.value,
            "unit": self.entry.unit,
            "source": self.source,
            "text": self.text(),
        }

    def text(self) -> str:
        """One line for the decoder panel and the CLI."""
        chosen = "nothing plausible" if self.chosen_value is None else f"{self.chosen_value:.6g}"
        unit = f" {self.entry.unit}" if self.entry.unit else ""
        sign = "+" if self.shift > 0 else ""
        return (
            f"one register off? register {self.chosen_register} gives {chosen} as "
            f"{self.entry.type}, register {self.register} ({sign}{self.shift}) gives "
            f"{self.value:.6g}{unit}: the map's {self.entry.label} is register "
            f"{self.entry.register}"
        )


def _order_of(entry: RegisterEntry) -> str:
    pairs = {
        ("big", "big"): "ABCD",
        ("little", "big"): "CDAB",
        ("big", "little"): "BADC",
        ("little", "little"): "DCBA",
    }
    return pairs[(entry.word_order, entry.byte_order)]


def _decode_for(entry: RegisterEntry, chunk: Sequence[int]) -> tuple[float | int | None, int]:
    """``chunk`` as the entry's type and order: (value, the unsigned integer it forms)."""
    kind = "float32" if entry.type == "pf4q" else entry.type
    order = _order_of(entry)
    raw = _unsigned(chunk, order)
    if kind in WIDE_TYPES:
        return decode_wide(chunk, kind, order), raw
    if kind == "int16":
        return (raw - 0x10000 if raw & 0x8000 else raw), raw
    return raw, raw  # uint16


#: Types the hint understands (a string or a bitmap is never "one off" in a useful way).
_HINT_TYPES = frozenset(
    {"float32", "pf4q", "int32", "uint32", "int64", "uint64", "int16", "uint16"}
)


def hint_entry(rmap: RegisterMap, chosen_register: int) -> RegisterEntry | None:
    """The map entry a technician at ``chosen_register`` most likely meant: the one that
    starts there, else one that starts a register before or after; None if neither."""
    for register in (chosen_register, chosen_register - 1, chosen_register + 1):
        for entry in rmap.entries:
            if entry.register == register and entry.type in _HINT_TYPES:
                return entry
    return None


def _value_at(
    entry: RegisterEntry, known: Mapping[int, int], register: int
) -> tuple[float | int | None, int | None]:
    chunk = [known.get(register + k) for k in range(entry.count)]
    if any(v is None for v in chunk):
        return None, None
    return _decode_for(entry, [v for v in chunk if v is not None])


def _shifts(entry: RegisterEntry, chosen_register: int) -> list[int]:
    first = [entry.register - chosen_register] if entry.register != chosen_register else []
    return first + [s for s in (-1, 1) if s not in first]


def shift_hint(
    rmap: RegisterMap,
    values: Sequence[int],
    first_register: int,
    chosen_register: int,
    more: Mapping[int, int] | None = None,
    source: str = "block",
) -> ShiftHint | None:
    """The off-by-one hint for the value chosen at ``chosen_register`` in a block read.

    The map entry meant (:func:`hint_entry`) decides the type and order. When the chosen
    register does not give a plausible value of it but a register one earlier or later does
    (towards the entry's own register first), return the hint; None when the chosen one is
    plausible or no shift helps. ``more``: other registers known by number (register →
    value), e.g. from a shifted read; a value found only there is credited to ``source``.
    """
    entry = hint_entry(rmap, chosen_register)
    if entry is None:
        return None
    block = {first_register + i: v for i, v in enumerate(values)}
    known = {**(more or {}), **block}
    chosen_value, chosen_raw = _value_at(entry, known, chosen_register)
    if plausible(entry, chosen_value, chosen_raw):
        return None
    for shift in _shifts(entry, chosen_register):
        value, raw = _value_at(entry, known, chosen_register + shift)
        if value is not None and plausible(entry, value, raw):
            in_block = _value_at(entry, block, chosen_register + shift)[0] is not None
            return ShiftHint(
                entry, chosen_register, shift, value, chosen_value, "block" if in_block else source
            )
    return None


#: ``read(register, count)`` for the hint: (registers, None) or (None, exception code or None).
BlockReader = Callable[[int, int], tuple[list[int] | None, int | None]]


def find_shift_hint(
    rmap: RegisterMap,
    values: Sequence[int],
    first_register: int,
    chosen_register: int,
    read: BlockReader | None = None,
) -> ShiftHint | None:
    """:func:`shift_hint`, reading more when the block lacks the shifted registers.

    For each shift the block cannot answer, ``read`` fetches the block again one register
    over; when the meter refuses that with exception 02, the meant entry alone at its own
    address. Nothing that touches a register that acts when read is ever read.
    """
    hint = shift_hint(rmap, values, first_register, chosen_register)
    entry = hint_entry(rmap, chosen_register)
    if hint is not None or read is None or entry is None:
        return hint
    block = {first_register + i: v for i, v in enumerate(values)}
    chosen_value, chosen_raw = _value_at(entry, block, chosen_register)
    if chosen_value is not None and plausible(entry, chosen_value, chosen_raw):
        return None
    acting = rmap.acting_registers
    count = max(len(values), entry.count)
    for shift in _shifts(entry, chosen_register):
        target = chosen_register + shift
        if _value_at(entry, block, target)[0] is not None:
            continue  # the block already answered this shift
        more: dict[int, int] = {}
        source = "shifted block"
        start = first_register + shift
        if start >= 1 and not any(start <= r < start + count for r in acting):
            got, code = read(start, count)
            if got is not None:
                more.update({start + i: v for i, v in enumerate(got)})
            elif code == 2 and target == entry.register:
                source = "entry"
                got, _ = read(entry.register, entry.count)
                if got is not None:
                    more.update({entry.register + i: v for i, v in enumerate(got)})
        hint = shift_hint(rmap, values, first_register, chosen_register, more, source)
        if hint is not None and hint.shift == shift:
            return hint
    return None
