"""Register maps: the meter's registers as data, loaded from TOML and validated.

No meter model's registers appear in code. A map is a TOML file (shipped ones live in the
top-level ``registers/`` folder and install as the ``emtui.registers`` package); this module
turns it into immutable :class:`RegisterMap` objects and rejects anything that would make a
later decode wrong, with an error that names the file, the entry and the problem.

Register numbers are the vendor's 1-based numbers; the wire address is ``register - 1``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

WordOrder = Literal["big", "little"]
"""``big``: the most significant 16-bit word comes first on the wire (EM6400NG)."""

ByteOrder = Literal["big", "little"]
"""``big``: the high byte of each register comes first (Modbus standard)."""

#: Register count each fixed-size type occupies. ``string`` and ``bitmap`` take any count.
TYPE_COUNTS: dict[str, int | None] = {
    "uint16": 1,
    "int16": 1,
    "uint32": 2,
    "int32": 2,
    "uint64": 4,
    "int64": 4,
    "float32": 2,
    "pf4q": 2,
    "datetime": 4,
    "string": None,
    "bitmap": None,
}

#: Vendor (Schneider register list) type names and the map type each becomes (design §6).
VENDOR_TYPES: dict[str, str] = {
    "INT16U": "uint16",
    "INT16": "int16",
    "INT32U": "uint32",
    "INT32": "int32",
    "INT64U": "uint64",
    "INT64": "int64",
    "FLOAT32": "float32",
    "UTF8": "string",
    "DATETIME": "datetime",
    "BITMAP": "bitmap",
    "4Q_FP_PF": "pf4q",
}

ACCESS_VALUES = ("R", "RW", "RWC", "WC", "W")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_MAP_KEYS = {
    "name",
    "model",
    "description",
    "source",
    "word_order",
    "byte_order",
    "block_size",
    "function",
    "na",
    "identify",
    "max_gap",
    "commands",
}
_ENTRY_KEYS = {
    "name",
    "label",
    "register",
    "type",
    "count",
    "unit",
    "group",
    "access",
    "logged",
    "word_order",
    "byte_order",
    "description",
    "digits",
    "range",
    "acts_on_read",
}


MAX_MAP_BYTES = 1024 * 1024
"""The largest map file read (the full EM6400NG map is under 40 KiB): a bigger file is
surely not a map, and reading it whole could exhaust a small Pi's memory."""

_BOM = b"\xef\xbb\xbf"


class MapError(ValueError):
    """A register map that cannot be used; the message names the file, entry and problem."""


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One value in a map: a named run of registers with a type.

    Attributes:
        name: stable snake_case identifier, used as CSV column and JSON name.
        label: human label shown in tables.
        register: the vendor's 1-based register number.
        type: one of :data:`TYPE_COUNTS`.
        count: number of 16-bit registers the value spans.
        unit: engineering unit, empty when none.
        group: the group the entry is shown under (identity, realtime, energy, ...).
        access: R, RW, RWC (write through the command interface), WC or W.
        logged: part of the map's default logged set.
        word_order: word order for multi-register values (from the map unless overridden).
        byte_order: byte order inside each register (from the map unless overridden).
        description: optional longer text.
        digits: decimals a screen shows (None: the default for the unit, design §11).
        range: the vendor's valid range (low, high) where its register list gives a
            numeric one; the off-by-one hint takes a value outside it for implausible.
        acts_on_read: reading the register does something (register 5680 takes the
            command-interface semaphore for about 4 minutes): the planner, scans and hints
            never read it, and the raw view asks before a block touches it.
    """

    name: str
    label: str
    register: int
    type: str
    count: int
    unit: str = ""
    group: str = ""
    access: str = "R"
    logged: bool = False
    word_order: WordOrder = "big"
    byte_order: ByteOrder = "big"
    description: str = ""
    digits: int | None = None
    range: tuple[float, float] | None = None
    acts_on_read: bool = False

    @property
    def address(self) -> int:
        """The 0-based wire (PDU) address of the first register."""
        return self.register - 1

    @property
    def end(self) -> int:
        """The register number one past the last register of the value."""
        return self.register + self.count


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A validated register map of one meter model.

    Attributes:
        name: the map's short name (``em6400ng``).
        model: the model string the meter reports, when the map identifies one.
        description: one line on what the map covers.
        source: where the register numbers come from.
        word_order: default word order of multi-register values.
        byte_order: default byte order inside registers.
        block_size: the longest read (in registers) the meter accepts.
        function: the Modbus function code used to read (3 = holding registers).
        na: N/A sentinel per map type, as an unsigned integer over the value's registers.
        identify: roles (``model``, ``name``, ``serial``...) to entry names read on a scan.
        max_gap: the longest run of unwanted registers the planner may read through.
        commands: command-interface defaults by name (``ascii_timeout_default``), whole
            numbers from ``[map.commands]``.
        entries: the entries in register order.
        path: the file the map came from (for messages).
    """

    name: str
    entries: tuple[RegisterEntry, ...]
    model: str = ""
    description: str = ""
    source: str = ""
    word_order: WordOrder = "big"
    byte_order: ByteOrder = "big"
    block_size: int = 125
    function: int = 3
    na: Mapping[str, int] = field(default_factory=dict)
    identify: Mapping[str, str] = field(default_factory=dict)
    max_gap: int | None = None
    commands: Mapping[str, int] = field(default_factory=dict)
    path: str = ""

    def __iter__(self) -> Iterator[RegisterEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, name: str) -> RegisterEntry:
        """Return the entry called ``name`` (KeyError names the map when missing)."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(f"map {self.name!r} has no entry {name!r}")

    def __contains__(self, name: object) -> bool:
        return any(entry.name == name for entry in self.entries)

    @property
    def acting_registers(self) -> frozenset[int]:
        """Register numbers that act when read (every register of a flagged entry)."""
        return frozenset(
            e.register + k for e in self.entries if e.acts_on_read for k in range(e.count)
        )

    @property
    def logged(self) -> tuple[RegisterEntry, ...]:
        """The default logged set, in register order."""
        return tuple(e for e in self.entries if e.logged)

    def select(self, names: list[str] | tuple[str, ...]) -> tuple[RegisterEntry, ...]:
        """Return the entries called ``names``, in the order given; unknown names raise MapError."""
        by_name = {e.name: e for e in self.entries}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise MapError(f"map {self.name!r} has no entries named {', '.join(missing)}")
        return tuple(by_name[n] for n in names)

    def na_value(self, entry: RegisterEntry) -> int | None:
        """The N/A sentinel for ``entry``'s type, or None when the type has none."""
        return self.na.get(entry.type)


# ---------------------------------------------------------------------------------------------
# loading


def builtin_map_names() -> list[str]:
    """Names of the maps shipped inside the package, sorted."""
    root = resources.files("emtui.registers")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_map(name_or_path: str | Path, search_dirs: list[Path] | None = None) -> RegisterMap:
    """Load a map by name (built-in or in ``search_dirs``) or from a file path.

    Raises:
        MapError: the map does not exist or is malformed; the message says which and why.
    """
    text: str
    origin: str
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file() or "/" in str(name_or_path):
        if not candidate.is_file():
            raise MapError(f"{candidate}: no such map file")
        text = read_map_file(candidate)
        origin = str(candidate)
    else:
        name = str(name_or_path)
        for directory in search_dirs or []:
            user = directory / f"{name}.toml"
            if user.is_file():
                text, origin = read_map_file(user), str(user)
                break
        else:
            resource = resources.files("emtui.registers") / f"{name}.toml"
            if not resource.is_file():
                known = ", ".join(builtin_map_names())
                raise MapError(f"unknown map {name!r}: built-in maps are {known}, or give a file")
            text, origin = resource.read_text(encoding="utf-8"), f"{name}.toml (built in)"
    return parse_map(text, origin)


def read_map_file(path: Path) -> str:
    """The text of the map file at ``path``, checked to be a sane size and plain UTF-8.

    Raises:
        MapError: the file cannot be read, is larger than :data:`MAX_MAP_BYTES`, starts with
            a byte-order mark, or is not UTF-8; the message says which and what to do.
    """
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MAP_BYTES + 1)  # never more than the limit, whatever the file
    except OSError as exc:
        raise MapError(f"{path}: cannot read the map: {exc.strerror or exc}") from None
    if len(data) > MAX_MAP_BYTES:
        raise MapError(
            f"{path}: larger than {MAX_MAP_BYTES // 1024} KiB, the limit for a map file — "
            f"is it really a register map?"
        )
    if data.startswith(_BOM):
        raise MapError(
            f"{path}: starts with a UTF-8 byte-order mark (BOM) — save it as UTF-8 without BOM"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MapError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}) — save it as UTF-8"
        ) from None


def parse_map(text: str, origin: str = "<map>") -> RegisterMap:
    """Parse and validate map TOML ``text``; ``origin`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"{origin}: not valid TOML: {exc}") from None
    return _build_map(data, origin)


def _is_int(value: Any) -> bool:
    """True for a TOML integer (``bool`` is an ``int`` subclass in Python: not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _err(origin: str, where: str, problem: str) -> MapError:
    return MapError(f"{origin}: {where}: {problem}")


def _order(value: Any, origin: str, where: str, key: str) -> Literal["big", "little"]:
    if value == "big":
        return "big"
    if value == "little":
        return "little"
    raise _err(origin, where, f'{key} must be "big" or "little", not {value!r}')


def _build_map(data: dict[str, Any], origin: str) -> RegisterMap:
    head = data.get("map")
    if not isinstance(head, dict):
        raise _err(origin, "[map]", "missing table: a map starts with a [map] table")
    unknown = set(head) - _MAP_KEYS
    if unknown:
        raise _err(origin, "[map]", f"unknown key(s) {', '.join(sorted(unknown))}")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        raise _err(origin, "[map]", "name must be a non-empty string")
    word_order = _order(head.get("word_order", "big"), origin, "[map]", "word_order")
    byte_order = _order(head.get("byte_order", "big"), origin, "[map]", "byte_order")
    block_size = head.get("block_size", 125)
    if not _is_int(block_size) or not 1 <= block_size <= 125:
        raise _err(origin, "[map]", f"block_size must be an integer 1-125, not {block_size!r}")
    function = head.get("function", 3)
    if function not in (3, 4):
        raise _err(origin, "[map]", f"function must be 3 (holding) or 4 (input), not {function!r}")
    max_gap = head.get("max_gap")
    if max_gap is not None and (not _is_int(max_gap) or max_gap < 0):
        raise _err(origin, "[map]", f"max_gap must be a non-negative integer, not {max_gap!r}")
    raw_na = head.get("na", {})
    if not isinstance(raw_na, dict):
        raise _err(origin, "[map.na]", "must be a table of type = sentinel")
    na: dict[str, int] = {}
    for type_name, raw in raw_na.items():
        if type_name not in TYPE_COUNTS:
            raise _err(origin, "[map.na]", f"unknown type {type_name!r}")
        try:
            if isinstance(raw, bool):
                raise TypeError
            value = int(raw, 0) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            raise _err(origin, "[map.na]", f"{type_name} = {raw!r} is not a number") from None
        if value < 0:
            raise _err(origin, "[map.na]", f"{type_name} = {raw!r} must not be negative")
        fixed = TYPE_COUNTS[type_name]
        if fixed is not None and value >= 1 << (16 * fixed):
            raise _err(
                origin, "[map.na]", f"{type_name} = {raw!r} does not fit in {fixed} register(s)"
            )
        na[type_name] = value
    raw_identify = head.get("identify", {})
    if not isinstance(raw_identify, dict) or not all(
        isinstance(v, str) for v in raw_identify.values()
    ):
        raise _err(origin, "[map.identify]", "must be a table of role = entry name (strings)")
    identify: dict[str, str] = dict(raw_identify)
    raw_commands = head.get("commands", {})
    if not isinstance(raw_commands, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF
        for v in raw_commands.values()
    ):
        raise _err(origin, "[map.commands]", "must be a table of name = whole number 0-65535")
    commands: dict[str, int] = dict(raw_commands)

    raw_entries = data.get("register", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise _err(origin, "[[register]]", "a map needs at least one [[register]] entry")
    extra = set(data) - {"map", "register"}
    if extra:
        raise _err(origin, "top level", f"unknown table(s) {', '.join(sorted(extra))}")

    entries = [
        _build_entry(raw, i, origin, word_order, byte_order) for i, raw in enumerate(raw_entries)
    ]
    seen: dict[str, RegisterEntry] = {}
    for entry in entries:
        if entry.name in seen:
            raise _err(origin, f"entry {entry.name!r}", "duplicate name")
        seen[entry.name] = entry
        if entry.count > block_size:
            raise _err(
                origin,
                f"entry {entry.name!r}",
                f"count {entry.count} exceeds the map's block_size {block_size}",
            )
    ordered = sorted(entries, key=lambda e: (e.register, e.count))
    for before, after in pairwise(ordered):
        if after.register < before.end:
            raise _err(
                origin,
                f"entry {after.name!r}",
                f"register {after.register} overlaps {before.name!r} "
                f"(registers {before.register}-{before.end - 1})",
            )
    for role, entry_name in identify.items():
        if entry_name not in seen:
            raise _err(origin, "[map.identify]", f"{role} names unknown entry {entry_name!r}")
    return RegisterMap(
        name=name,
        entries=tuple(ordered),
        model=str(head.get("model", "")),
        description=str(head.get("description", "")),
        source=str(head.get("source", "")),
        word_order=word_order,
        byte_order=byte_order,
        block_size=block_size,
        function=function,
        na=na,
        identify=identify,
        max_gap=max_gap,
        commands=commands,
        path=origin,
    )


def _build_entry(
    raw: Any, index: int, origin: str, word_order: WordOrder, byte_order: ByteOrder
) -> RegisterEntry:
    if not isinstance(raw, dict):
        raise _err(origin, f"[[register]] #{index + 1}", "must be a table")
    name = raw.get("name")
    where = f"entry {name!r}" if isinstance(name, str) else f"[[register]] #{index + 1}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _err(origin, where, "name must be snake_case (a-z, 0-9, _; starting with a letter)")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise _err(origin, where, f"unknown key(s) {', '.join(sorted(unknown))}")
    register = raw.get("register")
    if not isinstance(register, int) or isinstance(register, bool) or not 1 <= register <= 65536:
        raise _err(origin, where, f"register must be an integer 1-65536, not {register!r}")
    type_name = raw.get("type")
    if not isinstance(type_name, str) or type_name not in TYPE_COUNTS:
        known = ", ".join(TYPE_COUNTS)
        raise _err(origin, where, f"unknown type {type_name!r} (known: {known})")
    fixed = TYPE_COUNTS[type_name]
    count = raw.get("count", fixed)
    if count is None:
        raise _err(origin, where, f"type {type_name} needs a count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise _err(origin, where, f"count must be a positive integer, not {count!r}")
    if fixed is not None and count != fixed:
        raise _err(origin, where, f"count {count} does not fit type {type_name} ({fixed})")
    if register + count - 1 > 65536:
        raise _err(origin, where, "runs past the last register 65536")
    access = raw.get("access", "R")
    if access not in ACCESS_VALUES:
        raise _err(origin, where, f"access must be one of {', '.join(ACCESS_VALUES)}")
    logged = raw.get("logged", False)
    if not isinstance(logged, bool):
        raise _err(origin, where, "logged must be true or false")
    digits = raw.get("digits")
    if digits is not None and (not _is_int(digits) or not 0 <= digits <= 9):
        raise _err(origin, where, f"digits must be an integer 0-9, not {digits!r}")
    for key in ("label", "unit", "group", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise _err(origin, where, f"{key} must be a string")
    acts_on_read = raw.get("acts_on_read", False)
    if not isinstance(acts_on_read, bool):
        raise _err(origin, where, "acts_on_read must be true or false")
    if acts_on_read and logged:
        raise _err(origin, where, "an acts_on_read entry cannot be logged (reading it acts)")
    value_range = _range(raw.get("range"), origin, where)
    return RegisterEntry(
        name=name,
        label=raw.get("label", name),
        register=register,
        type=type_name,
        count=count,
        unit=raw.get("unit", ""),
        group=raw.get("group", ""),
        access=access,
        logged=logged,
        word_order=_order(raw.get("word_order", word_order), origin, where, "word_order"),
        byte_order=_order(raw.get("byte_order", byte_order), origin, where, "byte_order"),
        description=raw.get("description", ""),
        digits=digits,
        range=value_range,
        acts_on_read=acts_on_read,
    )


def _range(value: Any, origin: str, where: str) -> tuple[float, float] | None:
    """An entry's ``range = [low, high]`` (two numbers, low <= high), or None."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or value[0] > value[1]
    ):
        raise _err(origin, where, f"range must be [low, high] with low <= high, not {value!r}")
    return float(value[0]), float(value[1])
