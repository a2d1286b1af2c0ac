"""Turn raw 16-bit registers into values and back, the one place that knows the wire formats.

Why this module exists: every consumer of meter data (the poller, the headless logger, the
CSV/JSON writers, the TUI tables, the raw register view, the simulator and the setup
commands) must agree exactly on how a run of registers becomes a number, a string, a date or
"missing". Keeping the rules of design §6 and the vendor's data-type sheet (word/byte order,
N/A sentinels, the four-quadrant power factor, IEC 870-5-4 date-times, UTF8 strings) in one
small, pure, UI-free module means they are written and tested once.

Conventions:

* A register is an ``int`` 0..65535 as it came off the wire (Modbus sends each register
  high byte first; ``byte_order="little"`` means the device swapped the two bytes).
* ``word_order="big"``: the most significant 16-bit word comes first; ``"little"``: the
  least significant word comes first (for 64-bit values the whole word sequence is reversed).
  Word order applies to the multi-register numbers (uint32, int32, uint64, int64, float32,
  pf4q). Strings, date-times and bitmaps are sequences of registers defined in transmitted
  order (first register first / most significant), so only the byte order applies to them.
* An N/A sentinel is compared with the unsigned integer formed from the entry's registers
  after word/byte order is applied, i.e. the value as the vendor documents it
  (FLOAT32 ``0xFFC00000``, INT64 ``0x8000000000000000`` ...).
* Bad data never raises: anything the meter can send decodes to a value or to ``None``.
  Programming errors (wrong number of registers, a register outside 0..65535, an unknown
  type) raise :class:`ValueError`.
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from emtui.core.maps.registers import TYPE_COUNTS, RegisterEntry, RegisterMap

__all__ = [
    "CLOCK_FIELDS",
    "FLOAT_TYPES",
    "INCOMPLETE",
    "INTEGER_TYPES",
    "RAW_FORMATS",
    "TEXT_TYPES",
    "WORD_ORDERS",
    "DateTimeFlags",
    "Value",
    "datetime_flags",
    "decode",
    "decode_entry",
    "display_text",
    "encode",
    "encode_entry",
    "format_raw",
    "int_to_registers",
    "meter_clock",
    "order_to_word_byte",
    "registers_to_int",
    "word_byte_to_order",
]

#: Integer map types with their (signed, register count); bitmap has any count.
_INT_TYPES: dict[str, tuple[bool, int]] = {
    "uint16": (False, 1),
    "int16": (True, 1),
    "uint32": (False, 2),
    "int32": (True, 2),
    "uint64": (False, 4),
    "int64": (True, 4),
}

#: Map types that decode to ``int``.
INTEGER_TYPES: tuple[str, ...] = (*_INT_TYPES, "bitmap")
#: Map types that decode to ``float``.
FLOAT_TYPES: tuple[str, ...] = ("float32", "pf4q")
#: Map types that decode to ``str``.
TEXT_TYPES: tuple[str, ...] = ("string", "datetime")

#: Types whose registers are combined under the entry's word order.
_WORD_ORDERED = frozenset({"uint32", "int32", "uint64", "int64", "float32", "pf4q"})

#: The formats the raw register view offers.
RAW_FORMATS: tuple[str, ...] = (
    "hex",
    "uint16",
    "int16",
    "binary",
    "ascii",
    "uint32",
    "int32",
    "float32",
    "uint64",
    "int64",
    "float64",
)

#: Register/byte orders of the raw view. ABCD: big word, big byte; CDAB: little word (low word
#: first), big byte; BADC: big word, bytes swapped; DCBA: little word, bytes swapped.
WORD_ORDERS: tuple[str, ...] = ("ABCD", "CDAB", "BADC", "DCBA")

_ORDERS: dict[str, tuple[str, str]] = {
    "ABCD": ("big", "big"),
    "CDAB": ("little", "big"),
    "BADC": ("big", "little"),
    "DCBA": ("little", "little"),
}

#: What :func:`format_raw` shows for a trailing run too short for a 32/64-bit format.
INCOMPLETE = "—"

#: The seven uint16 clock entries of the meter (registers 1837–1843), in order.
CLOCK_FIELDS: tuple[str, ...] = (
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "millisecond",
)


@dataclass(frozen=True, slots=True)
class Value:
    """A decoded value.

    Attributes:
        value: the value in the map's unit; ``None`` is the meter's N/A (missing).
        lead_lag: pf4q only: ``"lagging"``, ``"leading"`` or ``"unity"``; None otherwise
            and when the value is N/A.
        raw: the registers it came from, as read.
    """

    value: int | float | str | None
    lead_lag: str | None = None
    raw: tuple[int, ...] = ()


class DateTimeFlags(NamedTuple):
    """The status bits of an IEC 870-5-4 date-time that :func:`decode` does not fold in.

    Attributes:
        invalid: W3 b7, the meter's "time not valid / not synchronised" flag.
        dst: W3 b15, daylight saving time in force.
        weekday: W2 b5–7, 1–7, or 0 when the meter does not use it.
    """

    invalid: bool
    dst: bool
    weekday: int


# ---------------------------------------------------------------------------------------------
# register helpers


def _check_registers(registers: Sequence[int]) -> tuple[int, ...]:
    out = tuple(registers)
    for i, reg in enumerate(out):
        if isinstance(reg, bool) or not isinstance(reg, int) or not 0 <= reg <= 0xFFFF:
            raise ValueError(f"register #{i} is {reg!r}: registers must be integers 0..65535")
    return out


def _swap(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def _normalise(registers: Sequence[int], word_order: str, byte_order: str) -> list[int]:
    """Registers rearranged so the most significant word comes first, high byte first."""
    regs = list(registers)
    if byte_order == "little":
        regs = [_swap(r) for r in regs]
    if word_order == "little":
        regs.reverse()
    return regs


def registers_to_int(
    registers: Sequence[int], word_order: str = "big", byte_order: str = "big"
) -> int:
    """The unsigned integer the registers form under the given word and byte order.

    Raises:
        ValueError: a register is outside 0..65535.
    """
    value = 0
    for reg in _normalise(_check_registers(registers), word_order, byte_order):
        value = (value << 16) | reg
    return value


def int_to_registers(
    value: int, count: int, word_order: str = "big", byte_order: str = "big"
) -> list[int]:
    """The ``count`` registers that carry the unsigned ``value``; inverse of registers_to_int.

    Raises:
        ValueError: ``value`` is negative or does not fit in ``count`` registers.
    """
    if not 0 <= value < 1 << (16 * count):
        raise ValueError(f"{value} does not fit in {count} register(s) as an unsigned integer")
    regs = [(value >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]
    # _normalise is its own inverse (a byte swap and a reversal, which commute)
    return _normalise(regs, word_order, byte_order)


def _bytes(registers: Sequence[int], byte_order: str) -> bytes:
    """Bytes of the registers in transmitted order, high byte first unless byte_order is little."""
    out = bytearray()
    for reg in registers:
        hi, lo = reg >> 8, reg & 0xFF
        out += bytes((lo, hi)) if byte_order == "little" else bytes((hi, lo))
    return bytes(out)


def _float32(bits: int) -> float:
    return float(struct.unpack(">f", bits.to_bytes(4, "big"))[0])


def _float32_bits(value: float) -> int:
    try:
        packed = struct.pack(">f", value)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range for float32") from None
    return int.from_bytes(packed, "big")


def _float32_text(value: float) -> str:
    """Shortest decimal text that reads back as the same float32 (``50.01``, ``nan``, ``inf``)."""
    if not math.isfinite(value):
        return repr(value)
    bits = _float32_bits(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if _float32_bits(float(text)) == bits:
            return repr(float(text))
    return repr(value)  # pragma: no cover - 9 significant digits always round-trip


# ---------------------------------------------------------------------------------------------
# decoding


def _expected_count(entry: RegisterEntry) -> int:
    if entry.type not in TYPE_COUNTS:
        raise ValueError(f"entry {entry.name!r}: unknown type {entry.type!r}")
    fixed = TYPE_COUNTS[entry.type]
    if fixed is not None and entry.count != fixed:
        raise ValueError(
            f"entry {entry.name!r}: type {entry.type} spans {fixed} registers, "
            f"not count={entry.count}"
        )
    if entry.count < 1:
        raise ValueError(f"entry {entry.name!r}: count must be positive, not {entry.count}")
    return entry.count


def _pf4q(raw: float) -> tuple[float, str]:
    if raw > 1:
        return 2 - raw, "leading"
    if raw < -1:
        return -2 - raw, "leading"
    if abs(raw) == 1:
        return raw, "unity"
    return raw, "lagging"


def _datetime_text(regs: Sequence[int]) -> str | None:
    w1, w2, w3, w4 = regs
    year = 2000 + (w1 & 0x7F)
    month = (w2 >> 8) & 0x0F
    day = w2 & 0x1F
    hour = (w3 >> 8) & 0x1F
    minute = w3 & 0x3F
    if w4 > 59999:
        return None
    second, milli = divmod(w4, 1000)
    try:
        moment = _dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{milli:03d}"


def _string_text(regs: Sequence[int], byte_order: str) -> str:
    data = _bytes(regs, byte_order).split(b"\x00", 1)[0]
    return data.decode("utf-8", errors="replace").rstrip(" ")


def decode(entry: RegisterEntry, registers: Sequence[int], na: int | None = None) -> Value:
    """Decode ``registers`` (as read, in wire order) into a :class:`Value` for ``entry``.

    ``na`` is the N/A sentinel of the entry's type (see :meth:`RegisterMap.na_value`); when the
    registers form exactly that unsigned integer the value is ``None``. float32/pf4q NaNs and
    infinities are
    always ``None``. For a bitmap a sentinel narrower than the entry (``0x8000`` for a
    four-register bitmap) is compared against the first register with all others zero.

    Never raises for register contents; raises ValueError when ``registers`` has the wrong
    length, holds something other than integers 0..65535, or the entry is malformed.
    """
    count = _expected_count(entry)
    regs = _check_registers(registers)
    if len(regs) != count:
        raise ValueError(
            f"entry {entry.name!r} ({entry.type}) needs {count} register(s), got {len(regs)}"
        )
    kind = entry.type
    word_order = entry.word_order if kind in _WORD_ORDERED else "big"
    unsigned = registers_to_int(regs, word_order, entry.byte_order)
    if na is not None:
        sentinel = na
        if kind == "bitmap" and count > 1 and 0 <= na <= 0xFFFF:
            sentinel = na << (16 * (count - 1))
        if unsigned == sentinel:
            return Value(None, raw=regs)

    if kind in _INT_TYPES:
        signed, _ = _INT_TYPES[kind]
        bits = 16 * count
        value = unsigned - (1 << bits) if signed and unsigned >> (bits - 1) else unsigned
        return Value(value, raw=regs)
    if kind == "bitmap":
        return Value(unsigned, raw=regs)
    if kind in ("float32", "pf4q"):
        number = _float32(unsigned)
        if not math.isfinite(number):  # NaN is the vendor's N/A; an infinity is no reading
            return Value(None, raw=regs)
        if kind == "float32":
            return Value(number, raw=regs)
        pf, lead_lag = _pf4q(number)
        return Value(pf, lead_lag, raw=regs)
    if kind == "datetime":
        return Value(_datetime_text(_normalise(regs, "big", entry.byte_order)), raw=regs)
    if kind == "string":
        return Value(_string_text(regs, entry.byte_order), raw=regs)
    raise ValueError(f"entry {entry.name!r}: unknown type {kind!r}")  # pragma: no cover


def display_text(value: Value, entry: RegisterEntry) -> str:
    """A value as a screen shows it: exact, but as short as the meter's type allows.

    float32 values (and PFs) use the shortest decimal that converts back to the same float32
    (``50.01`` rather than ``50.0099983215332``): nothing is rounded away, unlike fixed
    decimals. From 2**24 up a float32 holds whole numbers only, and those are shown in full
    (``80601824.0``, not ``80601820.0``). CSV and JSON keep Python's repr of the decoded double
    (design §8). Missing values show as ``—``.
    """
    if value.value is None:
        return "—"
    if (
        isinstance(value.value, float)
        and entry.type in ("float32", "pf4q")
        and abs(value.value) < 2.0**24  # above, float32 holds integers: show every digit
    ):
        return _float32_text(value.value)
    return str(value.value)


def decode_entry(rmap: RegisterMap, entry: RegisterEntry, registers: Sequence[int]) -> Value:
    """Decode ``registers`` for ``entry`` using the map's N/A sentinel for the entry's type."""
    return decode(entry, registers, rmap.na_value(entry))


def datetime_flags(entry: RegisterEntry, registers: Sequence[int]) -> DateTimeFlags:
    """The invalid/DST/weekday bits of a datetime entry's four registers.

    Raises:
        ValueError: the entry is not a datetime or ``registers`` is not four valid registers.
    """
    if entry.type != "datetime":
        raise ValueError(f"entry {entry.name!r} is {entry.type}, not datetime")
    regs = _check_registers(registers)
    if len(regs) != 4:
        raise ValueError(f"a datetime needs 4 registers, got {len(regs)}")
    _, w2, w3, _ = _normalise(regs, "big", entry.byte_order)
    return DateTimeFlags(invalid=bool(w3 & 0x80), dst=bool(w3 & 0x8000), weekday=(w2 >> 5) & 7)


def meter_clock(
    values: Mapping[str, Value | int | None], prefix: str = "meter_clock_"
) -> str | None:
    """Combine the seven uint16 clock entries into one ISO-8601 ``YYYY-MM-DDTHH:MM:SS.mmm``.

    ``values`` maps entry names (``meter_clock_year`` ... ``meter_clock_millisecond``, or with
    another ``prefix``) to ints or decoded :class:`Value` objects. The year register holds the
    full year (2000–2127), milliseconds 0–999. Returns None when a field is missing, N/A or
    the fields do not form a real date and time.
    """
    parts: list[int] = []
    for field_name in CLOCK_FIELDS:
        item = values.get(prefix + field_name)
        number = item.value if isinstance(item, Value) else item
        if isinstance(number, bool) or not isinstance(number, int):
            return None
        parts.append(number)
    year, month, day, hour, minute, second, milli = parts
    if not 0 <= milli <= 999:
        return None
    try:
        moment = _dt.datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):
        return None
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{milli:03d}"


# ---------------------------------------------------------------------------------------------
# encoding


def _as_int(entry: RegisterEntry, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"entry {entry.name!r} ({entry.type}): {value!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"entry {entry.name!r} ({entry.type}) needs an integer, not {value!r}")


def _as_float(entry: RegisterEntry, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"entry {entry.name!r} ({entry.type}) needs a number, not {value!r}")
    return float(value)


def _parse_datetime(entry: RegisterEntry, value: object) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"entry {entry.name!r}: {value!r} is not an ISO-8601 date-time "
                "(YYYY-MM-DDTHH:MM:SS.mmm)"
            ) from None
    else:
        raise ValueError(f"entry {entry.name!r} (datetime) needs a date-time, not {value!r}")
    if moment.tzinfo is not None:
        raise ValueError(f"entry {entry.name!r}: the meter's clock has no time zone: {value!r}")
    if not 2000 <= moment.year <= 2127:
        raise ValueError(f"entry {entry.name!r}: year {moment.year} is outside 2000-2127")
    return moment


def encode(
    entry: RegisterEntry,
    value: int | float | str | _dt.datetime | None,
    na: int | None = None,
    *,
    leading: bool = False,
) -> list[int]:
    """Encode ``value`` into the registers (wire order) that :func:`decode` reads back.

    * ``None`` gives the N/A sentinel ``na`` (an error when ``na`` is None).
    * Integer types and bitmap take an int in the type's range (an integral float is accepted).
    * float32 takes any number that fits a float32 (it is rounded to float32).
    * pf4q takes the plain power factor -1..1; ``leading=True`` puts it in the leading
      quadrants (raw ``2 - pf`` for a positive PF, ``-2 - pf`` for a negative one) so that
      decode gives back ``(pf, "leading")``; ±1 always encodes as unity.
    * datetime takes an ISO-8601 string ``YYYY-MM-DDTHH:MM:SS.mmm`` or a naive
      ``datetime.datetime`` (years 2000–2127); the weekday field is written as 0 (not used)
      and the invalid/DST flags as 0.
    * string takes a str; its UTF-8 bytes are padded with NULs to ``entry.count`` registers.

    Raises:
        ValueError: the value does not fit the entry's type, or the entry is malformed.
    """
    count = _expected_count(entry)
    kind = entry.type
    word_order = entry.word_order if kind in _WORD_ORDERED else "big"
    if value is None:
        if na is None:
            raise ValueError(f"entry {entry.name!r}: type {kind} has no N/A value to encode")
        return int_to_registers(na, count, word_order, entry.byte_order)

    if kind in _INT_TYPES or kind == "bitmap":
        number = _as_int(entry, value)
        bits = 16 * count
        signed = _INT_TYPES[kind][0] if kind in _INT_TYPES else False
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not low <= number <= high:
            raise ValueError(f"entry {entry.name!r}: {number} is outside {kind} ({low}..{high})")
        return int_to_registers(number & ((1 << bits) - 1), count, word_order, entry.byte_order)
    if kind == "float32":
        bits32 = _float32_bits(_as_float(entry, value))
        return int_to_registers(bits32, count, word_order, entry.byte_order)
    if kind == "pf4q":
        pf = _as_float(entry, value)
        if not -1 <= pf <= 1:
            raise ValueError(f"entry {entry.name!r}: power factor {pf} is outside -1..1")
        raw = pf
        if leading and abs(pf) != 1:
            raw = -2 - pf if math.copysign(1.0, pf) < 0 else 2 - pf
        return int_to_registers(_float32_bits(raw), count, word_order, entry.byte_order)
    if kind == "datetime":
        moment = _parse_datetime(entry, value)
        millis = moment.second * 1000 + moment.microsecond // 1000
        words = [
            moment.year - 2000,
            (moment.month << 8) | moment.day,
            (moment.hour << 8) | moment.minute,
            millis,
        ]
        return _normalise(words, "big", entry.byte_order)
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"entry {entry.name!r} (string) needs a str, not {value!r}")
        data = value.encode("utf-8")
        if len(data) > 2 * count:
            raise ValueError(
                f"entry {entry.name!r}: {value!r} is {len(data)} bytes; "
                f"{count} registers hold {2 * count}"
            )
        data = data.ljust(2 * count, b"\x00")
        words = [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]
        return _normalise(words, "big", entry.byte_order)
    raise ValueError(f"entry {entry.name!r}: unknown type {kind!r}")  # pragma: no cover


def encode_entry(
    rmap: RegisterMap,
    entry: RegisterEntry,
    value: int | float | str | _dt.datetime | None,
    *,
    leading: bool = False,
) -> list[int]:
    """Encode ``value`` for ``entry`` using the map's N/A sentinel for ``None``."""
    return encode(entry, value, rmap.na_value(entry), leading=leading)


# ---------------------------------------------------------------------------------------------
# raw register view


def order_to_word_byte(order: str) -> tuple[str, str]:
    """The (word_order, byte_order) pair of a raw-view order: ``"CDAB"`` → ``("little", "big")``.

    Raises:
        ValueError: ``order`` is not one of :data:`WORD_ORDERS`.
    """
    try:
        return _ORDERS[order.upper()]
    except KeyError:
        raise ValueError(f"unknown order {order!r}: use one of {', '.join(WORD_ORDERS)}") from None


def word_byte_to_order(word_order: str, byte_order: str) -> str:
    """The raw-view order name of a (word_order, byte_order) pair: ``("little", "big")`` → CDAB.

    Raises:
        ValueError: either order is not ``"big"`` or ``"little"``.
    """
    for name, pair in _ORDERS.items():
        if pair == (word_order, byte_order):
            return name
    raise ValueError(f"orders must be 'big' or 'little', not {word_order!r}/{byte_order!r}")


def _ascii(reg: int) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in (reg >> 8, reg & 0xFF))


def format_raw(registers: Sequence[int], fmt: str, order: str = "ABCD") -> list[str]:
    """Render a run of raw registers ModScan-style in one of :data:`RAW_FORMATS`.

    16-bit formats give one string per register (``hex`` as ``0x4248``, ``binary`` as 16
    digits, ``ascii`` as two characters with ``.`` for unprintable bytes); the byte part of
    ``order`` (BADC, DCBA) swaps the bytes of each register first. 32-bit formats give one
    string per 2 registers and 64-bit formats one per 4, combined under ``order``; a trailing
    run too short for the format renders as :data:`INCOMPLETE`. Floats use the shortest text
    that reads back as the same value (float32 ``50.01``), NaN and infinity as ``nan``,
    ``inf``, ``-inf``.

    Raises:
        ValueError: unknown ``fmt`` or ``order``, or a register outside 0..65535.
    """
    if fmt not in RAW_FORMATS:
        raise ValueError(f"unknown raw format {fmt!r}: use one of {', '.join(RAW_FORMATS)}")
    word_order, byte_order = order_to_word_byte(order)
    regs = _check_registers(registers)

    if fmt in ("hex", "uint16", "int16", "binary", "ascii"):
        out: list[str] = []
        for reg in regs:
            value = _swap(reg) if byte_order == "little" else reg
            if fmt == "hex":
                out.append(f"0x{value:04X}")
            elif fmt == "uint16":
                out.append(str(value))
            elif fmt == "int16":
                out.append(str(value - 0x10000 if value & 0x8000 else value))
            elif fmt == "binary":
                out.append(f"{value:016b}")
            else:
                out.append(_ascii(value))
        return out

    width = 2 if fmt in ("uint32", "int32", "float32") else 4
    out = []
    for start in range(0, len(regs), width):
        chunk = regs[start : start + width]
        if len(chunk) < width:
            out.append(INCOMPLETE)
            break
        unsigned = registers_to_int(chunk, word_order, byte_order)
        bits = 16 * width
        if fmt in ("uint32", "uint64"):
            out.append(str(unsigned))
        elif fmt in ("int32", "int64"):
            out.append(str(unsigned - (1 << bits) if unsigned >> (bits - 1) else unsigned))
        elif fmt == "float32":
            out.append(_float32_text(_float32(unsigned)))
        else:
            out.append(repr(float(struct.unpack(">d", unsigned.to_bytes(8, "big"))[0])))
    return out
