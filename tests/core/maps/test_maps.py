"""The shipped register maps, checked against the vendor's list, and the map validator."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import pytest
from helpers import DATA, ROOT

from emtui.core.maps.registers import (
    TYPE_COUNTS,
    VENDOR_TYPES,
    MapError,
    RegisterMap,
    builtin_map_names,
    load_map,
    parse_map,
)

REPO = ROOT
VENDOR_LIST = DATA / "em6400ng-register-list.csv"

GROUPS = {
    "identity",
    "setup",
    "realtime",
    "demand",
    "energy",
    "power_quality",
    "timers",
    "clock",
    "command",
}

#: The default logged set of em6400ng (design issue 2): nothing more, nothing less.
NG_LOGGED = {
    *(3000, 3002, 3004, 3006, 3010),
    *(3020, 3022, 3024, 3026, 3028, 3030, 3032, 3036),
    *range(3054, 3077, 2),
    *(3078, 3080, 3082, 3084),
    3110,
    *(2700, 2708, 2716),
    43546,
}


def _vendor_rows() -> dict[int, dict[str, str]]:
    with VENDOR_LIST.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_register = {int(row["register"]): row for row in rows}
    assert len(by_register) == len(rows), "the vendor list repeats a register number"
    return by_register


@pytest.fixture(scope="module")
def vendor() -> dict[int, dict[str, str]]:
    return _vendor_rows()


@pytest.fixture(scope="module")
def ng() -> RegisterMap:
    return load_map("em6400ng")


@pytest.fixture(scope="module")
def legacy() -> RegisterMap:
    return load_map("em6400-legacy")


def _vendor_in(vendor: dict[int, dict[str, str]], *spans: tuple[int, int]) -> set[int]:
    """The vendor's EM6400 NG register numbers inside the inclusive ``spans``."""
    return {reg for reg in vendor for lo, hi in spans if lo <= reg <= hi}


def _group(m: RegisterMap, group: str) -> set[int]:
    return {e.register for e in m if e.group == group}


# --- em6400ng against the vendor list ---------------------------------------------------------


def test_ng_entries_match_vendor_list(ng: RegisterMap, vendor: dict[int, dict[str, str]]) -> None:
    """Every em6400ng entry is a vendor EM6400 NG row: same register, type, size, unit, access."""
    problems = []
    for e in ng:
        row = vendor.get(e.register)
        if row is None:
            problems.append(f"{e.name}: register {e.register} is not in the vendor list")
            continue
        vendor_type = VENDOR_TYPES.get(row["type"])
        if vendor_type != e.type:
            problems.append(f"{e.name}: type {e.type}, vendor {row['type']} ({vendor_type})")
        # Legacy note (design §6): a DATETIME is 4 registers whatever a row's size says;
        # every DATETIME row of v1050_6 does say 4.
        size = TYPE_COUNTS["datetime"] if row["type"] == "DATETIME" else int(row["size"])
        if e.count != size:
            problems.append(f"{e.name}: count {e.count}, vendor size {row['size']}")
        unit = "" if row["units"].strip() in ("---", "") else row["units"].strip()
        if e.unit != unit:
            problems.append(f"{e.name}: unit {e.unit!r}, vendor {row['units']!r}")
        if e.access != row["access"]:
            problems.append(f"{e.name}: access {e.access}, vendor {row['access']}")
    assert not problems, "\n".join(problems)


def test_vendor_list_sizes_fit_types(vendor: dict[int, dict[str, str]]) -> None:
    """The copied vendor list is sane: known types, and fixed-size types have their size."""
    for reg, row in vendor.items():
        assert row["type"] in VENDOR_TYPES, f"register {reg}: unknown vendor type {row['type']}"
        fixed = TYPE_COUNTS[VENDOR_TYPES[row["type"]]]
        if fixed is not None:
            assert int(row["size"]) == fixed, (
                f"register {reg}: size {row['size']} for {row['type']}"
            )


def test_ng_header(ng: RegisterMap) -> None:
    """The em6400ng header: model, high word first, FC03, 125-register blocks, N/A sentinels."""
    assert (ng.name, ng.model) == ("em6400ng", "EM6400NG")
    assert (ng.word_order, ng.byte_order) == ("big", "big")
    assert (ng.block_size, ng.function) == (125, 3)
    assert ng.na == {
        "float32": 0xFFC00000,
        "pf4q": 0xFFC00000,
        "uint16": 0xFFFF,
        "uint32": 0xFFFFFFFF,
        "int64": 0x8000000000000000,
        "datetime": 0xFFFFFFFFFFFFFFFF,
    }
    used = {e.type for e in ng}
    assert used - {"string"} <= set(ng.na), "a numeric type in use has no N/A sentinel"
    assert all(e.word_order == "big" and e.byte_order == "big" for e in ng)


# --- em6400ng groups --------------------------------------------------------------------------


def test_ng_groups_are_the_known_ones(ng: RegisterMap) -> None:
    """em6400ng uses exactly the eight design groups plus ``command`` (the semaphore register
    5680, flagged acts_on_read), each with at least one entry."""
    assert {e.group for e in ng} == GROUPS


def test_ng_identity_group(ng: RegisterMap) -> None:
    """identity: name, model, manufacturer, product id, serial, manufacture date, HW, firmware."""
    assert _group(ng, "identity") == {30, 50, 70, 90, 130, 132, 136, *range(1637, 1642)}
    assert [ng.get(n).count for n in ("meter_name", "meter_model", "manufacturer")] == [20] * 3
    assert ng.get("hardware_revision").count == 5
    assert ng.get("date_of_manufacture").type == "datetime"


def test_ng_setup_group(ng: RegisterMap, vendor: dict[int, dict[str, str]]) -> None:
    """setup: every vendor NG register 2014-2036 and the RS-485 settings 6500-6503, all RWC."""
    expected = _vendor_in(vendor, (2014, 2036), (6500, 6503))
    assert {2014, 2016, 2018, 2022, 2026, 2030, 2036, 6500, 6501, 6502, 6503} <= expected
    assert _group(ng, "setup") == expected
    assert {e.access for e in ng if e.group == "setup"} == {"RWC"}


def test_ng_realtime_group(ng: RegisterMap, vendor: dict[int, dict[str, str]]) -> None:
    """realtime: the whole vendor NG block 3000-3110, the alternate PF totals 3192, 3194 and
    the V-I phase angles 43508-43512 (the commissioning checks cross-check wiring with them)."""
    angles = _vendor_in(vendor, (43508, 43512))
    assert angles == {43508, 43510, 43512}
    expected = _vendor_in(vendor, (3000, 3110)) | {3192, 3194} | angles
    assert {*range(3000, 3033, 2), *range(3036, 3093, 2), 3110} == expected - {
        3192,
        3194,
        *angles,
    }
    assert _group(ng, "realtime") == expected
    pf4q = {e.register for e in ng if e.type == "pf4q" and e.group == "realtime"}
    assert pf4q == set(range(3078, 3093, 2))
    assert ng.get("frequency").register == 3110
    assert ng.get("frequency").unit == "Hz"


def test_ng_realtime_names(ng: RegisterMap) -> None:
    """The real-time entries carry the agreed stable names at the right registers."""
    names = {
        "current_a": 3000,
        "current_b": 3002,
        "current_c": 3004,
        "current_n": 3006,
        "current_g": 3008,
        "current_avg": 3010,
        "voltage_ab": 3020,
        "voltage_bc": 3022,
        "voltage_ca": 3024,
        "voltage_ll_avg": 3026,
        "voltage_an": 3028,
        "voltage_bn": 3030,
        "voltage_cn": 3032,
        "voltage_ln_avg": 3036,
        "active_power_total": 3060,
        "reactive_power_total": 3068,
        "apparent_power_total": 3076,
        "power_factor_total": 3084,
        "displacement_pf_total": 3092,
        "frequency": 3110,
    }
    assert {n: ng.get(n).register for n in names} == names
    assert ng.get("current_a").label == "Current A"
    assert ng.get("voltage_ab").label == "Voltage A-B"


def test_ng_demand_group(ng: RegisterMap, vendor: dict[int, dict[str, str]]) -> None:
    """demand: last/present/predicted/peak and peak time of kW, kVAR, kVA and current avg."""
    spans = ((3764, 3772), (3780, 3788), (3796, 3804), (3876, 3884))
    expected = _vendor_in(vendor, *spans)
    assert expected == {lo + k for lo, _ in spans for k in (0, 2, 4, 6, 8)}
    assert _group(ng, "demand") == expected
    assert {e.type for e in ng if e.register in {3772, 3788, 3804, 3884}} == {"datetime"}


def test_ng_energy_group(ng: RegisterMap, vendor: dict[int, dict[str, str]]) -> None:
    """energy: FLOAT32 2676-2722 and INT64 3204-3248 and 3304-3348, kWh floats / Wh integers."""
    expected = _vendor_in(vendor, (2676, 2722), (3204, 3248), (3304, 3348))
    assert expected == {*range(2676, 2723, 2), *range(3204, 3249, 4), *range(3304, 3349, 4)}
    assert _group(ng, "energy") == expected
    wanted = {
        "active_energy_delivered": (2700, "float32", "kWh"),
        "reactive_energy_delivered": (2708, "float32", "kVARh"),
        "apparent_energy_delivered": (2716, "float32", "kVAh"),
        "active_energy_delivered_permanent": (2676, "float32", "kWh"),
        "active_energy_delivered_wh": (3204, "int64", "Wh"),
        "active_energy_delivered_wh_permanent": (3304, "int64", "Wh"),
    }
    got = {n: (ng.get(n).register, ng.get(n).type, ng.get(n).unit) for n in wanted}
    assert got == wanted


def test_ng_power_quality_group(ng: RegisterMap, vendor: dict[int, dict[str, str]]) -> None:
    """power_quality: the THD registers 21300-21338 the vendor lists for the NG."""
    expected = _vendor_in(vendor, (21300, 21338))
    assert {21300, 21302, 21304, 21322, 21330, 21338} <= expected
    assert _group(ng, "power_quality") == expected


def test_ng_timers_group(ng: RegisterMap) -> None:
    """timers: power failures (count, time, duration), load/operation timers, run seconds."""
    assert _group(ng, "timers") == {1829, 1830, 1834, 2002, 2004, 43546, 43548}
    assert ng.get("run_seconds_delivered").register == 43546
    assert ng.get("run_seconds_received").register == 43548


def test_ng_clock_group(ng: RegisterMap) -> None:
    """clock: 1837-1843 as the vendor's seven uint16 registers, with the agreed names."""
    clock = [e for e in ng if e.group == "clock"]
    parts = ("year", "month", "day", "hour", "minute", "second", "millisecond")
    assert [e.name for e in clock] == [f"meter_clock_{p}" for p in parts]
    assert [e.register for e in clock] == list(range(1837, 1844))
    assert {(e.type, e.count) for e in clock} == {("uint16", 1)}


def test_ng_logged_set(ng: RegisterMap) -> None:
    """The default logged set is exactly the agreed registers: nothing else is logged."""
    assert {e.register for e in ng.logged} == NG_LOGGED
    assert len(ng.logged) == len(NG_LOGGED)


def test_ng_identify_roles(ng: RegisterMap) -> None:
    """The identify roles name existing string or integer entries (model/name strings)."""
    assert set(ng.identify) >= {"model", "name", "serial"}
    for role, name in ng.identify.items():
        assert ng.get(name).type in {"string", "uint16", "uint32"}, role
    assert ng.get(ng.identify["model"]).register == 50
    assert ng.get(ng.identify["name"]).register == 30
    assert ng.get(ng.identify["serial"]).register == 130
    assert ng.get(ng.identify["model"]).type == "string"
    assert ng.get(ng.identify["serial"]).type == "uint32"


# --- legacy EM6400 ----------------------------------------------------------------------------


def test_legacy_map(legacy: RegisterMap) -> None:
    """em6400-legacy: 33 float32 values, contiguous 3901-3966, low word first, VA total first."""
    assert (legacy.name, legacy.model) == ("em6400-legacy", "EM6400")
    assert (legacy.word_order, legacy.byte_order) == ("little", "big")
    assert len(legacy) == 33
    assert {(e.type, e.count) for e in legacy} == {("float32", 2)}
    assert [e.register for e in legacy] == list(range(3901, 3966, 2))
    assert (legacy.entries[0].register, legacy.entries[-1].end - 1) == (3901, 3966)
    first = legacy.entries[0]
    assert (first.name, first.unit) == ("va_total", "VA")
    assert all(e.word_order == "little" for e in legacy)
    assert all(e.logged for e in legacy)
    assert dict(legacy.identify) == {}
    assert {e.group for e in legacy} == {"realtime", "energy"}


def test_legacy_names_and_units(legacy: RegisterMap) -> None:
    """em6400-legacy names and units follow the reference layout (per phase VA, W, VAR, PF...)."""
    expected = {
        3901: ("va_total", "VA"),
        3903: ("w_total", "W"),
        3905: ("var_total", "VAR"),
        3907: ("pf_avg", ""),
        3909: ("vll_avg", "V"),
        3911: ("vln_avg", "V"),
        3913: ("a_avg", "A"),
        3915: ("frequency", "Hz"),
        3917: ("va_1", "VA"),
        3923: ("pf_1", ""),
        3925: ("v12", "V"),
        3927: ("v1", "V"),
        3929: ("a_1", "A"),
        3939: ("v23", "V"),
        3953: ("v31", "V"),
        3957: ("a_3", "A"),
        3959: ("fwd_vah", "VAh"),
        3961: ("fwd_wh", "Wh"),
        3963: ("fwd_varh_ind", "VARh"),
        3965: ("fwd_varh_cap", "VARh"),
    }
    by_register = {e.register: (e.name, e.unit) for e in legacy}
    assert {reg: by_register[reg] for reg in expected} == expected
    assert {e.register for e in legacy if e.group == "energy"} == {3959, 3961, 3963, 3965}


# --- validation -------------------------------------------------------------------------------

HEAD = '[map]\nname = "t"\n'
FLOAT = '[[register]]\nname = "a"\nregister = 100\ntype = "float32"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            HEAD + '[[register]]\nname = "volts"\nregister = 1\ntype = "float33"\n',
            ["'volts'", "unknown type 'float33'"],
            id="unknown-type",
        ),
        pytest.param(
            HEAD + '[[register]]\nname = "volts"\nregister = 1\ntype = ["float32"]\n',
            ["'volts'", "unknown type"],
            id="type-not-a-string",
        ),
        pytest.param(
            HEAD + FLOAT + '[[register]]\nname = "b"\nregister = 101\ntype = "uint16"\n',
            ["'b'", "register 101 overlaps 'a'", "100-101"],
            id="overlap",
        ),
        pytest.param(
            HEAD + '[[register]]\nname = "e"\nregister = 1\ntype = "float32"\ncount = 4\n',
            ["'e'", "count 4 does not fit type float32"],
            id="count-does-not-fit",
        ),
        pytest.param(
            HEAD + '[[register]]\nname = "s"\nregister = 1\ntype = "string"\n',
            ["'s'", "type string needs a count"],
            id="string-without-count",
        ),
        pytest.param(
            HEAD + FLOAT + '[[register]]\nname = "a"\nregister = 200\ntype = "uint16"\n',
            ["'a'", "duplicate name"],
            id="duplicate-name",
        ),
        pytest.param(
            HEAD + '[[register]]\nname = "Bad-Name"\nregister = 1\ntype = "uint16"\n',
            ["'Bad-Name'", "snake_case"],
            id="bad-name",
        ),
        pytest.param(
            FLOAT,
            ["[map]", "missing table"],
            id="missing-map",
        ),
        pytest.param(
            HEAD + FLOAT + "scale = 10\n",
            ["'a'", "unknown key(s) scale"],
            id="unknown-entry-key",
        ),
        pytest.param(
            HEAD + "colour = 1\n" + FLOAT,
            ["[map]", "unknown key(s) colour"],
            id="unknown-map-key",
        ),
        pytest.param(
            HEAD + '[map.identify]\nmodel = "nope"\n' + FLOAT,
            ["[map.identify]", "unknown entry 'nope'"],
            id="identify-unknown-entry",
        ),
        pytest.param(
            HEAD + 'identify = "a"\n' + FLOAT,
            ["[map.identify]", "must be a table"],
            id="identify-not-a-table",
        ),
        pytest.param(
            HEAD + '[map.na]\nuint16 = "0xFFC00000"\n' + FLOAT,
            ["[map.na]", "uint16", "does not fit in 1 register"],
            id="na-too-wide",
        ),
        pytest.param(
            HEAD + 'na = "0xFFFF"\n' + FLOAT,
            ["[map.na]", "must be a table"],
            id="na-not-a-table",
        ),
        pytest.param(
            HEAD + '[map.na]\nfloat64 = "0x0"\n' + FLOAT,
            ["[map.na]", "unknown type 'float64'"],
            id="na-unknown-type",
        ),
        pytest.param(
            HEAD + "block_size = 200\n" + FLOAT,
            ["[map]", "block_size"],
            id="block-size",
        ),
        pytest.param(
            HEAD + '[[register]]\nname = "big"\nregister = 1\ntype = "string"\ncount = 126\n',
            ["'big'", "exceeds the map's block_size 125"],
            id="count-over-block-size",
        ),
        pytest.param(
            HEAD + FLOAT + 'access = "X"\n',
            ["'a'", "access must be one of"],
            id="bad-access",
        ),
        pytest.param(
            HEAD + FLOAT + 'word_order = "middle"\n',
            ["'a'", "word_order must be"],
            id="bad-word-order",
        ),
        pytest.param(
            HEAD + '[[register]]\nname = "z"\nregister = 0\ntype = "uint16"\n',
            ["'z'", "register must be an integer 1-65536"],
            id="register-zero",
        ),
        pytest.param(
            HEAD,
            ["[[register]]", "at least one"],
            id="no-entries",
        ),
        pytest.param(
            "[map\n",
            ["not valid TOML"],
            id="not-toml",
        ),
    ],
)
def test_validation_errors(text: str, expected: list[str]) -> None:
    """parse_map rejects a bad map with a MapError naming the origin, the entry and the problem."""
    with pytest.raises(MapError) as info:
        parse_map(text, "test.toml")
    message = str(info.value)
    assert message.startswith("test.toml: "), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_parse_minimal_map() -> None:
    """A minimal valid map parses with the defaults: big-endian, FC03, 125-register blocks."""
    m = parse_map(HEAD + FLOAT, "test.toml")
    assert (m.name, len(m), m.block_size, m.function, m.word_order) == ("t", 1, 125, 3, "big")
    entry = m.get("a")
    assert (entry.register, entry.address, entry.count, entry.end) == (100, 99, 2, 102)
    assert entry.label == "a"
    assert not entry.logged


# --- loading ----------------------------------------------------------------------------------


def test_builtin_maps_ship_as_package_data() -> None:
    """Both maps are resources of the emtui.registers package, found by importlib.resources."""
    root = resources.files("emtui.registers")
    assert root.joinpath("em6400ng.toml").is_file()
    assert root.joinpath("em6400-legacy.toml").is_file()
    assert {"em6400ng", "em6400-legacy"} <= set(builtin_map_names())


def test_load_builtin_by_name(ng: RegisterMap) -> None:
    """load_map("em6400ng") finds the built-in map by name and says where it came from."""
    assert ng.name == "em6400ng"
    assert ng.path == "em6400ng.toml (built in)"
    assert len(ng) > 100


def test_load_unknown_name_lists_builtins() -> None:
    """An unknown map name raises a MapError that lists the built-in map names."""
    with pytest.raises(MapError) as info:
        load_map("em9999")
    message = str(info.value)
    assert "em9999" in message
    assert "em6400ng" in message
    assert "em6400-legacy" in message


def test_load_from_file_path(tmp_path: Path) -> None:
    """load_map accepts a file path (str or Path), and a missing file is a clear MapError."""
    from_repo = load_map(REPO / "registers" / "em6400-legacy.toml")
    assert from_repo.name == "em6400-legacy"
    user = tmp_path / "mine.toml"
    user.write_text(HEAD + FLOAT, encoding="utf-8")
    assert load_map(str(user)).get("a").register == 100
    assert load_map(user).path == str(user)
    with pytest.raises(MapError, match="no such map file"):
        load_map(tmp_path / "absent.toml")


def test_load_from_search_dirs(tmp_path: Path) -> None:
    """A map name found in a search dir (the user's config dir) wins over a built-in one."""
    (tmp_path / "em6400ng.toml").write_text(HEAD + FLOAT, encoding="utf-8")
    assert load_map("em6400ng", search_dirs=[tmp_path]).name == "t"
    assert load_map("em6400-legacy", search_dirs=[tmp_path]).name == "em6400-legacy"


def test_malformed_file_names_the_file(tmp_path: Path) -> None:
    """A malformed map file's error names the file it came from."""
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + '[[register]]\nname = "x"\nregister = 1\ntype = "nope"\n', "utf-8")
    with pytest.raises(MapError) as info:
        load_map(bad)
    assert str(info.value).startswith(f"{bad}: entry 'x': unknown type 'nope'")


SMALL_MAP = '[map]\nname = "small"\n[[register]]\nname = "v"\nregister = 1\ntype = "uint16"\n'


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\xef\xbb\xbf" + SMALL_MAP.encode(), "byte-order mark (BOM)"),
        (SMALL_MAP.replace("small", "sm\xe4ll").encode("latin-1"), "not UTF-8 text (byte 16"),
        (SMALL_MAP.encode() + b"#" * (1024 * 1024), "larger than 1024 KiB"),
    ],
    ids=["bom", "latin-1", "too large"],
)
def test_map_files_must_be_plain_utf8_and_not_huge(
    tmp_path: Path, content: bytes, words: str
) -> None:
    """A map with a BOM, in another encoding or over the size limit raises MapError naming
    the file and the problem (a non-UTF-8 file raised UnicodeDecodeError before)."""
    path = tmp_path / "m.toml"
    path.write_bytes(content)
    with pytest.raises(MapError, match=r"m\.toml: ") as info:
        load_map(path)
    assert words in str(info.value)
    path.write_text(SMALL_MAP, encoding="utf-8")
    assert load_map(path).name == "small"


# --- value ranges and registers that act when read --------------------------------------------

_RANGE_NUMBER = r"(0x[0-9A-Fa-f]+|-?\d+(?:\.\d+)?)"


def _vendor_range(text: str) -> tuple[float, float] | None:
    """The vendor's range column as (low, high) where it is plainly numeric ("42 – 70")."""
    import re

    match = re.fullmatch(rf"\s*{_RANGE_NUMBER}\s*[–-]\s*{_RANGE_NUMBER}\s*", text)
    if match is None:
        return None
    low, high = (int(t, 16) if t.lower().startswith("0x") else float(t) for t in match.groups())
    return float(low), float(high)


def test_ng_ranges_are_the_vendor_ranges(
    ng: RegisterMap, vendor: dict[int, dict[str, str]]
) -> None:
    """Every entry has the vendor's numeric range column as ``range`` (and none where the
    vendor gives none or a non-numeric one); frequency is 42-70 Hz."""
    problems = []
    for e in ng:
        expected = _vendor_range(vendor[e.register]["range"])
        if e.range != expected:
            problems.append(f"{e.name}: range {e.range}, vendor {expected}")
    assert not problems, "\n".join(problems)
    assert ng.get("frequency").range == (42.0, 70.0)


def test_ng_command_semaphore_acts_on_read(ng: RegisterMap) -> None:
    """Register 5680 (the command semaphore) is in the map, flagged acts_on_read, not logged;
    it is the only such register."""
    entry = ng.get("command_semaphore")
    assert (entry.register, entry.type, entry.acts_on_read, entry.logged) == (
        5680,
        "uint16",
        True,
        False,
    )
    assert ng.acting_registers == frozenset({5680})


def test_planner_and_reader_never_read_acting_registers(ng: RegisterMap) -> None:
    """Asked for every entry of the map, the reader's plan covers no acts_on_read register
    (neither as an entry nor read through a gap), but still covers its neighbours."""
    from emtui.core.bus.arbiter import BusArbiter
    from emtui.core.bus.link import ConnectionSettings
    from emtui.core.bus.reader import MeterReader

    arbiter = BusArbiter(ConnectionSettings(port="socket://127.0.0.1:9"))
    reader = MeterReader(arbiter, 1, ng, ng.entries)
    assert "command_semaphore" not in {e.name for e in reader.entries}
    covered = {b.register + k for b in reader.plan for k in range(b.count)}
    assert 5680 not in covered
    assert {e.register for e in ng.entries if not e.acts_on_read} <= covered


def test_planner_does_not_read_through_an_avoided_register() -> None:
    """Two entries either side of an avoided register, cheap to join, stay two requests."""
    from emtui.core.bus.planner import ReadPlanner

    m = parse_map(
        HEAD
        + """
[[register]]
name = "a"
register = 10
type = "uint16"
[[register]]
name = "b"
register = 12
type = "uint16"
"""
    )
    joined = ReadPlanner().plan(m.entries)
    assert [(b.register, b.count) for b in joined] == [(10, 3)]
    apart = ReadPlanner(avoid={11}).plan(m.entries)
    assert [(b.register, b.count) for b in apart] == [(10, 1), (12, 1)]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("range = [5, 1]", "range must be [low, high]"),
        ("range = 5", "range must be [low, high]"),
        ("range = [1, 'x']", "range must be [low, high]"),
        ("acts_on_read = 1", "acts_on_read must be true or false"),
        ("acts_on_read = true\nlogged = true", "cannot be logged"),
    ],
)
def test_range_and_acts_on_read_are_validated(extra: str, problem: str) -> None:
    """A bad range or acts_on_read value is refused with a message naming the entry."""
    text = (
        HEAD
        + f"""
[[register]]
name = "a"
register = 10
type = "uint16"
{extra}
"""
    )
    with pytest.raises(MapError, match=r"entry 'a'.*" + problem.replace("[", r"\[")):
        parse_map(text)
