"""``emtui sim`` as a process, an independent client (mbpoll) against it, and id ranges."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import time

import pytest
import serial
from helpers import EMTUI
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from emtui.core.bus.ids import format_ids, parse_ids
from emtui.sim.bus import SimulatedBus

_FRAMER = FramerRTU(DecodePDU(is_server=False))


def _read_frequency(port: serial.SerialBase, device_id: int = 1) -> float:
    request = ReadHoldingRegistersRequest(address=3109, count=2, dev_id=device_id)
    port.reset_input_buffer()
    port.write(_FRAMER.buildFrame(request))
    data = port.read(9)
    _used, _dev, _tid, pdu = _FRAMER.decode(data)
    assert pdu, f"no valid reply: {data!r}"
    return float(struct.unpack(">f", pdu[2:6])[0])


def _start_sim(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*EMTUI, "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    return proc, first


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_sim_command_prints_the_pty_first_and_serves_until_sigterm() -> None:
    """``python -m emtui.sim`` prints the pty path alone on its first stdout line, describes
    itself on stderr, serves reads, and exits 0 on SIGTERM."""
    proc, first = _start_sim("--ids", "1-2", "--no-line-timing")
    try:
        assert re.fullmatch(r"/dev/pts/\d+", first), first
        with serial.Serial(first, 19200, parity="N", timeout=1) as port:
            assert 49.9 <= _read_frequency(port, 2) <= 50.05
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert "2 meter(s)" in err and "--parity N" in err


def test_sim_command_listens_on_tcp_and_stops_on_sigint() -> None:
    """``--listen 127.0.0.1:0`` prints a socket:// URL that pyserial talks RTU to, with faults
    from the command line; SIGINT exits 0."""
    proc, first = _start_sim("--listen", "127.0.0.1:0", "--absent", "2", "--exception", "3:4")
    try:
        assert re.fullmatch(r"socket://127\.0\.0\.1:\d+", first), first
        with serial.serial_for_url(first, timeout=0.3) as port:
            assert 49.9 <= _read_frequency(port, 1) <= 50.05
            port.write(
                _FRAMER.buildFrame(ReadHoldingRegistersRequest(address=3109, count=2, dev_id=2))
            )
            assert port.read(9) == b""
            port.write(
                _FRAMER.buildFrame(ReadHoldingRegistersRequest(address=3109, count=2, dev_id=3))
            )
            assert port.read(5)[1:3] == b"\x83\x04"
    finally:
        code, err = _stop(proc, signal.SIGINT)
    assert code == 0, err


def test_sim_command_rejects_bad_options() -> None:
    """Bad ids, an unknown map and a malformed fault exit 2 with a message on stderr."""
    for args, message in (
        (["--ids", "0-3"], "ids must be 1-247"),
        (["--map", "no-such-map"], "unknown map"),
        (["--slow", "2"], "--slow"),
    ):
        result = subprocess.run([*EMTUI, "sim", *args], capture_output=True, text=True, timeout=20)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert result.stdout == ""


def test_mbpoll_reads_the_frequency_the_sim_served() -> None:
    """mbpoll (an independent Modbus client) reads register 3110 over the pty, high word first,
    and gets the value the bus logged as served (frozen values)."""
    mbpoll = shutil.which("mbpoll")
    if mbpoll is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mbpoll is required in CI (apt-get install mbpoll)")
        pytest.skip("mbpoll not installed")
    with SimulatedBus(frozen=True, seed=3) as sim:
        path = sim.start_pty()
        result = subprocess.run(
            [
                mbpoll,
                "-m",
                "rtu",
                "-a",
                "1",
                "-b",
                "19200",
                "-P",
                "none",
                "-t",
                "4:float",
                "-B",
                "-r",
                "3110",
                "-c",
                "1",
                "-1",
                path,
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        match = re.search(r"\[3110\]:\s+(-?[\d.]+)", result.stdout)
        assert match, result.stdout
        served = [f for f in sim.served() if f.outcome == "reply" and f.address == 3109]
        assert served
        regs = served[-1].registers
        value = struct.unpack(">f", struct.pack(">HH", regs[0], regs[1]))[0]
        assert float(match.group(1)) == pytest.approx(value, abs=1e-3)
        assert 49.9 <= value <= 50.05


def test_sim_is_quiet_when_idle() -> None:
    """An idle bus burns (almost) no CPU: no polling loop runs while nobody talks to it."""
    with SimulatedBus() as sim:
        sim.start_pty()
        sim.start_tcp()
        before = time.thread_time(), time.process_time()
        time.sleep(0.5)
        used = time.process_time() - before[1]
    assert used < 0.05


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("1-4", [1, 2, 3, 4]),
        ("1-4,7", [1, 2, 3, 4, 7]),
        (" 7, 3 ,1-2,3", [1, 2, 3, 7]),
        ("247", [247]),
    ],
)
def test_parse_ids(text: str, ids: list[int]) -> None:
    """Id lists parse into sorted unique ids and format back compactly."""
    assert parse_ids(text) == ids
    assert parse_ids(format_ids(ids)) == ids


@pytest.mark.parametrize("text", ["", "0", "248", "1-300", "4-1", "a", "1-", "1,,2", "-3"])
def test_parse_ids_rejects(text: str) -> None:
    """Empty lists, ids outside 1-247, backward ranges and junk raise ValueError."""
    with pytest.raises(ValueError):
        parse_ids(text)


def _connect_command(proc: subprocess.Popen[str]) -> list[str]:
    """The ``connect:`` command the simulator's banner suggests, as argv."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if "connect:" in line:
            command = line.split("connect:", 1)[1].split("(")[0].split()
            assert command[0] == "emtui"
            return [*EMTUI, *command[1:]]
    raise AssertionError("no connect: line in the banner")


@pytest.mark.parametrize("where", [["--listen", "127.0.0.1:0"], ["--pty"]])
def test_banner_suggests_a_scan_command_that_works(where: list[str]) -> None:
    """The ``connect:`` line of the banner is a command that runs as printed and finds the
    meters (it used to say ``emtui scan socket://…``, which exits 2)."""
    proc, _first = _start_sim("--ids", "1-2", "--no-line-timing", *where)
    try:
        command = _connect_command(proc)
        result = subprocess.run(
            [*command, "--ids", "1-3", "--json", "--no-identify"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert result.returncode == 0, result.stderr
    assert '"id": 1' in result.stdout and '"id": 2' in result.stdout


def test_unpaced_scan_over_socket_finds_every_meter_every_time() -> None:
    """``emtui sim --ids 1,3,5,7,9 --no-line-timing --listen 127.0.0.1:0`` then
    ``emtui scan --port socket://… --ids 1-10``, five times: each scan finds all 5 (without
    TCP_NODELAY a request after an unanswered one was held back by Nagle, its reply landed in
    the next request's window, and a scan found 3 of 5)."""
    proc, url = _start_sim("--ids", "1,3,5,7,9", "--no-line-timing", "--listen", "127.0.0.1:0")
    try:
        found = []
        for _ in range(5):
            result = subprocess.run(
                [*EMTUI, "scan", "--port", url, "--ids", "1-10", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            found.append(sorted(int(i) for i in re.findall(r'"id": (\d+)', result.stdout)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert found == [[1, 3, 5, 7, 9]] * 5
