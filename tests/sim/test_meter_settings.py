"""Meters with their own serial settings, served over RFC 2217 and a pty (issue 9, item 3).

A meter answers only a client at its own baud, parity and stop bits, paced at its own baud;
over RFC 2217 the client's settings reach the simulator (pyserial's rfc2217:// client sends
them), over a pty the baud is read from termios; over socket:// they cannot be honoured and
the simulator refuses.
"""

from __future__ import annotations

import subprocess

import pytest
from helpers import EMTUI

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.link import ConnectionSettings, Outcome
from emtui.core.bus.scanner import Scanner
from emtui.core.maps.registers import load_map
from emtui.sim.bus import LineSettings, SimulatedBus

EM6400NG = load_map("em6400ng")
PROBE = EM6400NG.get(EM6400NG.identify["model"]).address


def _answers(url: str, baud: int, parity: str, stopbits: int = 1) -> dict[int, float]:
    """id → response time of the ids 1-4 that answer a client at these settings."""
    out: dict[int, float] = {}
    settings = ConnectionSettings(port=url, baud=baud, parity=parity, stopbits=stopbits)
    with BusArbiter(settings) as arbiter:
        for device_id in (1, 2, 3, 4):
            reply = arbiter.read_registers(
                device_id, PROBE, 1, priority=Priority.SCAN, retries=0, timeout=0.3
            )
            if reply.outcome is Outcome.OK:
                out[device_id] = reply.rtt
    return out


def test_rfc2217_meters_answer_only_at_their_own_settings() -> None:
    """Over RFC 2217 with meters at mixed settings, each client setting finds exactly the
    meters set to it, paced at their own baud (a 9600 baud reply takes at least its wire time
    at 9600)."""
    with SimulatedBus(ids=[1, 2, 3, 4], seed=5) as bus:
        bus.set_meter_settings(2, LineSettings(9600, "N", 1))
        bus.set_meter_settings(3, LineSettings(9600, "O", 1))
        bus.set_meter_settings(4, LineSettings(38400, "N", 2))
        url = bus.start_tcp(framing="rfc2217")
        assert url.startswith("rfc2217://")
        assert sorted(_answers(url, 19200, "E")) == [1]
        slow = _answers(url, 9600, "N")
        assert sorted(slow) == [2]
        assert slow[2] >= 15 * 10 / 9600 + bus.turnaround
        assert sorted(_answers(url, 9600, "O")) == [3]
        assert sorted(_answers(url, 38400, "N", 2)) == [4]
        assert _answers(url, 38400, "N", 1) == {}


def test_rfc2217_scan_through_emtui_scan() -> None:
    """`emtui scan --port rfc2217://…` at the meters' settings finds them (the port is
    accepted like socket://)."""
    with SimulatedBus(ids=[1, 2], seed=6) as bus:
        url = bus.start_tcp(framing="rfc2217")
        out = subprocess.run(
            [*EMTUI, "scan", "--port", url, "--ids", "1-3", "--no-identify", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 0, out.stderr
    assert '"id": 1' in out.stdout and '"id": 2' in out.stdout


def test_pty_compares_the_baud() -> None:
    """On a pty the client's baud is read from termios: a meter at 9600 answers a 9600
    client and not a 19200 one; the others (at the bus's 19200) the other way round."""
    with SimulatedBus(ids=[1, 2], seed=7) as bus:
        bus.set_meter_settings(2, LineSettings(9600, "E", 1))
        port = bus.start_pty()
        assert sorted(_answers(port, 19200, "N")) == [1]
        assert sorted(_answers(port, 9600, "N")) == [2]


def test_scanner_over_rfc2217_at_9600() -> None:
    """A scan over RFC 2217 at 9600 8E1 finds the one meter set to it, not the others."""
    with SimulatedBus(ids=[1, 2, 3], seed=8) as bus:
        bus.set_meter_settings(3, LineSettings(9600, "E", 1))
        url = bus.start_tcp(framing="rfc2217")
        settings = ConnectionSettings(port=url, baud=9600, parity="E")
        with BusArbiter(settings) as arbiter:
            report = Scanner(arbiter, EM6400NG, identify=False).scan(list(range(1, 6)))
    assert [d.id for d in report.devices] == [3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "127.0.0.1:0", "--meter-settings", "1:9600:8E1"], "socket://"),
        (
            ["--listen", "127.0.0.1:0", "--framing", "tcp", "--meter-settings", "1:9600:8E1"],
            "tcp://",
        ),
        (["--pty", "--meter-settings", "1:9600:8X1"], "format must be one of"),
        (["--pty", "--meter-settings", "1:fast:8E1"], "baud must be"),
        (["--pty", "--meter-settings", "9600:8E1"], "IDS:BAUD:FORMAT"),
    ],
)
def test_bad_meter_settings_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    """--meter-settings over socket:// or tcp:// (which carry no serial settings), or with a
    bad baud or format, is refused with one line naming the problem, exit 2."""
    out = subprocess.run([*EMTUI, "sim", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_meter_reports_its_own_settings_in_its_comms_registers() -> None:
    """A meter given its own settings reports them in its communications entries (baud code
    1 = 9600, parity code 2 = none), read over RFC 2217 at those settings."""
    from emtui.core.bus.reader import MeterReader

    with SimulatedBus(ids=[1, 2], seed=9) as bus:
        bus.set_meter_settings(2, LineSettings(9600, "N", 1))
        url = bus.start_tcp(framing="rfc2217")
        entries = [EM6400NG.get("rs485_baud_rate"), EM6400NG.get("rs485_parity")]
        with BusArbiter(ConnectionSettings(port=url, baud=9600, parity="N")) as arbiter:
            sample = MeterReader(arbiter, 2, EM6400NG, entries).read()
    assert sample.values["rs485_baud_rate"].value == 1
    assert sample.values["rs485_parity"].value == 2
