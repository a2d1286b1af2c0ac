"""``emtui read --raw`` against a bus emtui did not write (pymodbus' own server, RTU over
TCP): registers, every decoding in every order, the off-by-one hint, exceptions, usage."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Iterator

import pytest
from helpers import EMTUI
from pymodbus_server import FREQUENCIES, frequency_bus


@pytest.fixture(scope="module")
def bus() -> Iterator[str]:
    with frequency_bus() as port:
        yield port


def emtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=60)


def _f32(data: bytes) -> float:
    return float(struct.unpack(">f", data)[0])


def test_read_raw_json_frequency_in_every_order(bus: str) -> None:
    """At 3110 float32 ABCD is the server's frequency (50.02 as float32); CDAB, BADC and
    DCBA are the same four bytes swapped, computed here with struct, not with emtui's codec."""
    result = emtui("read", "--port", bus, "--id", "1", "--raw", "--register", "3110",
                   "--count", "4", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["id"], doc["function"], doc["register"], doc["address"]) == (1, 3, 3110, 3109)
    data = struct.pack(">f", FREQUENCIES[1])  # bytes A B C D
    a, b, c, d = data
    rows = doc["registers"]
    assert [(r["register"], r["address"]) for r in rows] == [(3110 + i, 3109 + i) for i in range(4)]
    assert [r["raw"] for r in rows] == [(a << 8) | b, (c << 8) | d, 0, 0]
    assert rows[0]["hex"] == f"{a:02X}{b:02X}" and rows[0]["name"] == "frequency"
    first = doc["decodings"][0]
    assert first["register"] == 3110
    f32 = first["float32"]
    assert f32["ABCD"] == _f32(data) == pytest.approx(FREQUENCIES[1], abs=1e-5)
    assert f32["CDAB"] == _f32(bytes([c, d, a, b]))
    assert f32["BADC"] == _f32(bytes([b, a, d, c]))
    assert f32["DCBA"] == _f32(bytes([d, c, b, a]))
    assert first["uint32"]["ABCD"] == int.from_bytes(data, "big")
    assert first["int32"]["DCBA"] == int.from_bytes(data, "little", signed=True)
    assert first["uint64"]["ABCD"] == int.from_bytes(data + b"\0\0\0\0", "big")
    assert first["float64"]["ABCD"] == struct.unpack(">d", data + b"\0\0\0\0")[0]
    assert [d["register"] for d in doc["decodings"]] == [3110, 3111, 3112]
    assert "float64" not in doc["decodings"][1]
    assert doc["orders"]["CDAB"]["modbus_poll"] == "Little-endian byte swap"
    assert doc["hint"] is None


@pytest.mark.parametrize(("register", "shift"), [(3109, 1), (3111, -1)])
def test_read_raw_one_off_gives_the_hint(bus: str, register: int, shift: int) -> None:
    """Reading frequency one register early or late, --raw says 3110 gives a plausible
    frequency (human output and JSON)."""
    args = ["read", "--port", bus, "--id", "2", "--raw", "--register", str(register)]
    result = emtui(*args, "--json")
    assert result.returncode == 0, result.stderr
    hint = json.loads(result.stdout)["hint"]
    assert hint is not None
    assert (hint["name"], hint["register"], hint["shift"]) == ("frequency", 3110, shift)
    assert hint["value"] == pytest.approx(FREQUENCIES[2], abs=1e-5)
    human = emtui(*args)
    assert human.returncode == 0, human.stderr
    assert f"register 3110 ({'+' if shift > 0 else ''}{shift})" in human.stdout


def test_read_raw_address_is_the_wire_address(bus: str) -> None:
    """--address 3109 reads the same block as --register 3110."""
    result = emtui("read", "--port", bus, "--id", "1", "--raw", "--address", "3109", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["registers"][0]["register"] == 3110


def test_read_raw_exception_02_is_named(bus: str) -> None:
    """A block past the server's registers: exit 5, exception 02 with its meaning."""
    result = emtui("read", "--port", bus, "--id", "1", "--raw", "--register", "44000",
                   "--count", "4", "--json")  # fmt: skip
    assert result.returncode == 5
    doc = json.loads(result.stdout)
    assert doc["status"] == "exception" and doc["exception"]["code"] == 2
    assert "touches a register the meter does not have" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--register", "3110"], "add --raw"),
        (["--raw"], "--raw needs --register"),
        (["--raw", "--register", "3110", "--count", "126"], "reads 1-125 registers"),
        (["--raw", "--register", "65535", "--count", "4"], "runs past the last register"),
        (["--raw", "--register", "5679", "--count", "3"], "acts when read"),
        (["--raw", "--register", "0"], "must be 1-65536"),
    ],
)
def test_read_raw_usage_errors(args: list[str], message: str) -> None:
    """Bad raw flags: one line naming the problem, exit 2, nothing on the wire (the port
    does not exist)."""
    result = emtui("read", "--port", "socket://127.0.0.1:9", "--id", "1", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
