"""Slow, silent and exception-only meters on fast and paced lines (issue 6, items 5, 6, 10).

A meter slower than the timeout is learned from its late reply (recognised by its id, never
credited to the request on the wire when it comes); a meter slower than any sane timeout
costs only its own rows; an id with nothing behind it is given up on after one miss. Every
transport runs: a pty and ``socket://`` (RTU frames) and ``tcp://`` (Modbus TCP).
"""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings
from emtui.core.bus.reader import MeterReader
from emtui.core.bus.scanner import Scanner
from emtui.core.config import Config, LoggingConfig, MeterConfig
from emtui.core.log.worker import LoggingWorker
from emtui.core.maps.registers import load_map
from emtui.sim.bus import SimulatedBus

EM6400NG = load_map("em6400ng")
PRESENT = [1, 3, 5, 7, 9]
EXCEPTION_ONLY = 5
SLOW = 7


def _where(bus: SimulatedBus, transport: str) -> ConnectionSettings:
    if transport == "pty":
        return ConnectionSettings(port=bus.start_pty(), parity="N")
    return ConnectionSettings(port=bus.start_tcp(framing="rtu" if transport == "socket" else "tcp"))


@pytest.fixture
def mixed_bus(request: pytest.FixtureRequest) -> Iterator[SimulatedBus]:
    """Ids 1, 3, 5, 7, 9 (5 answers only exception 04, 7 is 0.3 s slow), 2, 4, 6, 8, 10
    silent, on a paced or an unpaced line."""
    with SimulatedBus(ids=PRESENT, seed=41, line_timing=request.param == "paced") as bus:
        bus.set_fault(EXCEPTION_ONLY, exception=4)
        bus.set_fault(SLOW, slow=0.3)
        yield bus


@pytest.mark.parametrize("transport", ["pty", "socket", "tcp"])
@pytest.mark.parametrize("mixed_bus", ["paced", "unpaced"], indirect=True)
def test_mixed_scans_find_every_meter_every_time(mixed_bus: SimulatedBus, transport: str) -> None:
    """Five scans of ids 1-10 (each a fresh connection, like five `emtui scan` runs) find
    exactly 1, 3, 5, 7 and 9 every time — the exception-only one as an exception, the slow one
    by its late reply — and no silent id is blamed for another's reply."""
    settings = _where(mixed_bus, transport)
    results = []
    for _ in range(5):
        with BusArbiter(settings) as arbiter:
            report = Scanner(arbiter, EM6400NG, identify=False).scan(list(range(1, 11)))
            wrong = sum(arbiter.device_stats(i).wrong_id for i in range(1, 11))
        results.append(([d.id for d in report.devices], wrong))
        replies = {d.id: d.reply for d in report.devices}
        assert replies.get(EXCEPTION_ONLY) == "exception"
    assert results == [(PRESENT, 0)] * 5


@pytest.mark.parametrize("transport", ["pty", "socket", "tcp"])
@pytest.mark.parametrize("mixed_bus", ["paced", "unpaced"], indirect=True)
def test_mixed_polls_keep_every_meter_apart(mixed_bus: SimulatedBus, transport: str) -> None:
    """Polling 1, 2 (silent), 3, 5 (exception only), 7 (0.3 s slow), 9 for four cycles (one
    each 0.5 s at most): the
    normal meters are ok every cycle, 5 is exception:04, 2 is timeout, and 7 is ok from the
    second cycle on (learned from its late first reply), with no wrong-id reply anywhere."""
    settings = _where(mixed_bus, transport)
    ids = [1, 2, 3, EXCEPTION_ONLY, SLOW, 9]
    with BusArbiter(settings) as arbiter:
        readers = [MeterReader(arbiter, i, EM6400NG) for i in ids]
        cycles = []
        for _ in range(4):  # a cycle every 0.5 s at most, as `--log --interval 0.5` would
            began = time.monotonic()
            cycles.append({r.device_id: r.read().status for r in readers})
            time.sleep(max(0.0, 0.5 - (time.monotonic() - began)))
        wrong = {i: arbiter.device_stats(i).wrong_id for i in ids}
    for cycle in cycles:
        assert (cycle[1], cycle[3], cycle[9]) == ("ok", "ok", "ok"), cycles
        assert cycle[EXCEPTION_ONLY] == "exception:04" and cycle[2] == "timeout", cycles
    assert [c[SLOW] for c in cycles[1:]] == ["ok"] * 3, cycles
    assert set(wrong.values()) == {0}


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=timeout)


def _statuses(data: Path, device_id: int) -> list[str]:
    (path,) = (data / f"meter_{device_id}").glob("*.csv")
    with path.open(newline="") as f:
        return [row[2] for row in list(csv.reader(f))[1:]]


def test_half_second_meter_is_read_scanned_and_logged_fine(tmp_path: Path) -> None:
    """`emtui sim --slow 2:0.5`: `read --id 2` is ok (the first reply is waited for and
    learned), `scan --expect 1-4` finds 2, and `--log --cycles 6` logs ok rows for meter 2 from
    its second cycle on, while 1, 3 and 4 are ok throughout."""
    with SimulatedBus(ids=[1, 2, 3, 4], seed=42) as bus:
        bus.set_fault(2, slow=0.5)
        url = bus.start_tcp()
        read = _run("read", "--port", url, "--id", "2", "--json")
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout)["status"] == "ok"
        scan = _run("scan", "--port", url, "--expect", "1-4", "--json", "--no-identify")
        assert scan.returncode == 0, scan.stderr
        assert [d["id"] for d in json.loads(scan.stdout)["devices"]] == [1, 2, 3, 4]
        log = _run(
            "--log", "--port", url, "--ids", "1-4", "--cycles", "6", "--interval", "0",
            "--data-dir", str(tmp_path / "d"), "--state-dir", str(tmp_path / "s"),
        )  # fmt: skip
    assert log.returncode == 0, log.stderr
    rows = {i: _statuses(tmp_path / "d", i) for i in (1, 2, 3, 4)}
    assert all(rows[i] == ["ok"] * 6 for i in (1, 3, 4)), rows
    assert rows[2][1:] == ["ok"] * 5, rows


def test_meter_slower_than_any_timeout_costs_only_its_own_rows(tmp_path: Path) -> None:
    """`emtui sim --slow 2:1.5`: meter 2 never makes it in time, but its late replies are
    waited out or recognised as its own, so meters 1, 3 and 4 log 100 % ok rows."""
    with SimulatedBus(ids=[1, 2, 3, 4], seed=43) as bus:
        bus.set_fault(2, slow=1.5)
        url = bus.start_tcp()
        log = _run(
            "--log", "--port", url, "--ids", "1-4", "--cycles", "8", "--interval", "0",
            "--data-dir", str(tmp_path / "d"), "--state-dir", str(tmp_path / "s"),
        )  # fmt: skip
    assert log.returncode == 0, log.stderr
    rows = {i: _statuses(tmp_path / "d", i) for i in (1, 2, 3, 4)}
    assert all(rows[i] == ["ok"] * 8 for i in (1, 3, 4)), rows
    assert "ok" not in rows[2] and len(rows[2]) == 8, rows


def test_many_absent_ids_do_not_stretch_the_first_cycles(tmp_path: Path) -> None:
    """A logger configured for ids 1-247 on a bus with meters 1-4 (paced, 19200 baud): an
    absent id costs one request without retry and is then left alone for long, and the
    never-heard ids get only a share of the bus (a few per cycle), so neither the first cycle
    nor the next ones stall on them: about what the 4 meters cost (~1 s) plus a little; the
    meters' rows are ok in every cycle."""
    with SimulatedBus(ids=[1, 2, 3, 4], seed=44) as bus:
        port = bus.start_pty()
        config = Config(
            meters=tuple(MeterConfig(id=i) for i in range(1, 248)),
            logging=LoggingConfig(interval=0, data_dir=tmp_path / "d", fsync_interval=1),
            state_dir=tmp_path / "s",
        )
        starts: list[float] = []
        with BusArbiter(ConnectionSettings(port=port, parity="N")) as arbiter:
            worker = LoggingWorker(
                config,
                arbiter,
                on_sample=lambda s: starts.append(time.monotonic()) if s.device_id == 1 else None,
            )
            began = time.monotonic()
            worker.run(threading.Event(), cycles=3)
            ended = time.monotonic()
    first, second, third = starts[1] - began, starts[2] - starts[1], ended - starts[2]
    assert first < 6 and second < 3 and third < 3, (first, second, third)
    for device_id in (1, 2, 3, 4):
        assert _statuses(tmp_path / "d", device_id) == ["ok"] * 3
    assert set(_statuses(tmp_path / "d", 200)) == {"timeout"}
