"""``emtui setup``: re-addressing through the command interface, with its refusals, checked
against the simulated meter and by independent clients (plain pyserial, mbpoll)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import serial
from helpers import EMTUI
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from emtui.cli.common import ExitCode
from emtui.sim.bus import SimulatedBus
from emtui.sim.meter import COMMAND_AREAS


def emtui(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMTUI, *args], capture_output=True, text=True, timeout=90, cwd=cwd, input=""
    )


def _setup(url: str, tmp_path: Path, *extra: str, new_id: str = "7") -> list[str]:
    return [
        "setup", "--port", url, "--baud", "9600", "--parity", "E", "--id", "1",
        "--new-id", new_id, "--new-baud", "19200", "--new-parity", "E",
        "--state-dir", str(tmp_path / "state"), "--settle", "1", *extra,
    ]  # fmt: skip


def _command_blocks(bus: SimulatedBus) -> list[tuple[int, tuple[int, ...]]]:
    """The FC16 blocks written at register 5000 (wire 4999)."""
    return [
        (f.device_id, f.registers) for f in bus.served() if f.function == 16 and f.address == 4999
    ]


def _raw_read(url: str, device_id: int, address: int, count: int) -> list[int] | None:
    """An FC03 read with plain pyserial and pymodbus' framer only (no emtui code)."""
    framer = FramerRTU(DecodePDU(is_server=False))
    request = ReadHoldingRegistersRequest(address=address, count=count, dev_id=device_id)
    with serial.serial_for_url(url, timeout=0.5) as port:
        port.write(framer.buildFrame(request))
        data = port.read(5 + 2 * count)
    if len(data) < 5 + 2 * count or data[0] != device_id or data[1] != 3:
        return None
    body = data[3 : 3 + 2 * count]
    return [int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2)]


def _audit(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "state" / "audit.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_factory_fresh_meter_is_readdressed(tmp_path: Path) -> None:
    """A factory-fresh meter (9600 8E1, id 1) set to id 7, 19200 8E1: exit 0; it answers at
    id 7 and not at id 1 (a scan at the new settings, and plain pyserial); its communications
    registers and its state say 19200 even; the command block was [5000, S, 1, 0, 7, 2, 0, t]
    and the audit log has it and the release."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=21) as bus:
        url = bus.start_tcp()
        assert bus.meters[1].baud == 9600 and bus.meters[1].parity == "E"
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        assert "ok: the meter answers at id 7" in result.stdout
        assert "register 5004" in result.stdout and "new id 7" in result.stdout
        ((device, block),) = _command_blocks(bus)
        assert device == 1 and block[0] == 5000 and list(block[2:7]) == [1, 0, 7, 2, 0]
        scan = emtui(
            tmp_path, "scan", "--port", url, "--baud", "19200", "--ids", "1-10", "--all", "--json"
        )
        assert [d["id"] for d in json.loads(scan.stdout)["devices"]] == [7]
        assert _raw_read(url, 7, 6499, 4) == [0, 7, 2, 0]
        assert _raw_read(url, 1, 6499, 4) is None
        meter = bus.meters[7]
        assert (meter.device_id, meter.baud, meter.parity) == (7, 19200, "E")
        assert list(bus.meters) == [7]
        assert meter.commands.semaphore is None  # released (at the new settings)
    audit = _audit(tmp_path)
    assert [(a["id"], a["register"], a["outcome"]) for a in audit] == [
        (1, 5000, "ok"),
        (7, 5680, "ok"),
    ]


def test_setup_without_allow_writes_sends_nothing(tmp_path: Path) -> None:
    """The same command without --allow-writes: exit 2 and not one frame on the wire; the
    refused attempt is one audit line."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=22) as bus:
        url = bus.start_tcp()
        result = emtui(tmp_path, *_setup(url, tmp_path, "--yes"))
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "--allow-writes" in result.stderr
        assert bus.served() == []
        assert list(bus.meters) == [1]
    (line,) = _audit(tmp_path)  # the refused attempt is recorded, with no frame
    assert line["id"] == 1 and line["frame"] is None
    assert str(line["outcome"]).startswith("refused")


def test_a_duplicate_new_id_is_refused(tmp_path: Path) -> None:
    """Id 7 already answers: refused (exit 5, 'duplicate'), no command block sent, meter 1
    unchanged."""
    with SimulatedBus(ids=[1, 7], baud=9600, line_timing=False, seed=23) as bus:
        url = bus.start_tcp()
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.DEVICE, result.stderr
        assert "duplicate address" in result.stderr
        assert _command_blocks(bus) == []
        assert bus.meters[1].device_id == 1


def test_semaphore_held_by_another_master_is_refused(tmp_path: Path) -> None:
    """Another master holds meter 1's semaphore: exit 5 naming it, no command block."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=24) as bus:
        url = bus.start_tcp()
        bus.meters[1].commands.hold_for_another_master()
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.DEVICE, result.stderr
        assert "another master" in result.stderr and "4 minutes" in result.stderr
        assert _command_blocks(bus) == []


def test_two_meters_on_one_id_are_refused(tmp_path: Path) -> None:
    """CRC errors at id 1 (two new meters answering together garble each other): refused
    with 'one at a time', nothing written."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=25) as bus:
        url = bus.start_tcp()
        bus.set_fault(1, crc_noise=1.0)
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.DEVICE, result.stderr
        assert "one at a time" in result.stderr and "CRC" in result.stderr
        assert not [f for f in bus.served() if f.function == 16]


def test_a_readdress_that_does_not_answer_is_reported_failed(tmp_path: Path) -> None:
    """The meter takes the command but is not heard at id 7 afterwards (id 7 silenced): exit 4,
    the message gives the frame sent and says to run emtui detect; the attempt is audited."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=26) as bus:
        url = bus.start_tcp()
        bus.set_fault(7, absent=True)
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.NO_ANSWER, result.stdout + result.stderr
        assert "emtui detect" in result.stderr
        assert "sent 01 10 13 87 00 08" in result.stderr
        assert "ok:" not in result.stdout
    assert [a["register"] for a in _audit(tmp_path)] == [5000]


def test_ascii_timeout_is_read_from_6504_when_the_meter_has_it(tmp_path: Path) -> None:
    """A meter that keeps the ASCII timeout at register 6504 (value 3): parameter (7) is 3,
    'read from 6504'; without it (exception 02) the map's default is sent, 'unverified'."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=27) as bus:
        meter = bus.meters[1]
        meter.writable = (*COMMAND_AREAS, (6504, 6504))
        meter._readable_addresses.append((6503, 6503))
        meter.scratch[6503] = 3
        url = bus.start_tcp()
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        ((_, block),) = _command_blocks(bus)
        assert block[7] == 3
        assert "read from 6504" in result.stdout


def test_readdress_on_a_pty_seen_by_mbpoll(tmp_path: Path) -> None:
    """On a pty at parity N (id 1, 9600 8N1 → id 4, 19200 8N1, tried at 8N1 first): mbpoll, an
    independent client, reads address 4 and baud code 2 at id 4, and gets nothing at id 1."""
    mbpoll = shutil.which("mbpoll")
    if mbpoll is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mbpoll is required in CI (apt-get install mbpoll)")
        pytest.skip("mbpoll not installed")
    with SimulatedBus(ids=[1], baud=9600, bits_per_char=10, line_timing=False, seed=28) as bus:
        path = bus.start_pty()
        result = emtui(
            tmp_path, "setup", "--port", path, "--baud", "9600", "--parity", "N", "--id", "1",
            "--new-id", "4", "--new-baud", "19200", "--new-parity", "N", "--allow-writes",
            "--yes", "--state-dir", str(tmp_path / "state"), "--settle", "1",
        )  # fmt: skip
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        assert "19200 8N1" in result.stdout

        def poll(device_id: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [mbpoll, "-m", "rtu", "-a", device_id, "-b", "19200", "-P", "none", "-t", "4",
                 "-r", "6501", "-c", "3", "-o", "0.5", "-1", path],
                capture_output=True, text=True, timeout=15,
            )  # fmt: skip

        found = poll("4")
        assert found.returncode == 0, found.stdout + found.stderr
        values = dict(re.findall(r"\[(\d+)\]:\s+(\d+)", found.stdout))
        assert values == {"6501": "4", "6502": "2", "6503": "2"}
        gone = poll("1")
        assert gone.returncode != 0
        assert bus.meters[4].baud == 19200


def test_factory_fresh_meter_over_rfc2217_moves_to_its_new_settings(tmp_path: Path) -> None:
    """Over RFC 2217, where the simulator knows the client's line settings: a factory-fresh
    meter (9600 8E1, id 1) set to id 7, 19200 8E1 answers at id 7 at 19200 and at nothing at
    9600 (neither id 1 nor id 7) — checked by scans at both settings and by plain pyserial."""
    from emtui.sim.bus import LineSettings

    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=22) as bus:
        bus.set_meter_settings(1, LineSettings(9600, "E", 1))
        url = bus.start_tcp(framing="rfc2217")
        assert url.startswith("rfc2217://")
        result = emtui(tmp_path, *_setup(url, tmp_path, "--allow-writes", "--yes"))
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        assert bus.meter_settings(7) == LineSettings(19200, "E", 1)

        def scan(baud: str) -> list[int]:
            done = emtui(
                tmp_path, "scan", "--port", url, "--baud", baud, "--parity", "E",
                "--ids", "1-10", "--all", "--no-identify", "--json",
            )  # fmt: skip
            return [d["id"] for d in json.loads(done.stdout)["devices"]] if done.stdout else []

        assert scan("19200") == [7]
        assert scan("9600") == []
        with serial.serial_for_url(url, baudrate=19200, parity="E", timeout=0.5) as port:
            framer = FramerRTU(DecodePDU(is_server=False))
            port.write(
                framer.buildFrame(ReadHoldingRegistersRequest(address=6499, count=4, dev_id=7))
            )
            reply = port.read(13)
        assert len(reply) == 13 and reply[0] == 7 and reply[1] == 3
