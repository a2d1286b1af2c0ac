"""The logging worker and ``emtui --log`` (issue 3): rows, crashes, faults, locking, days."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings
from emtui.core.config import Config, LoggingConfig, MeterConfig
from emtui.core.log.worker import LoggingWorker
from emtui.core.maps.codec import decode_entry
from emtui.core.maps.registers import load_map
from emtui.core.upload.queue import UploadQueue
from emtui.sim.bus import SimulatedBus

EM6400NG = load_map("em6400ng")


def emtui_cmd(*args: str) -> list[str]:
    return [*EMTUI, *args]


def log_cmd(port: str, tmp: Path, *extra: str) -> list[str]:
    """emtui --log on ``port`` with data in tmp/d and state in tmp/s."""
    return emtui_cmd(
        "--log", "--port", port, "--data-dir", str(tmp / "d"), "--state-dir", str(tmp / "s"), *extra
    )


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture
def paced_bus() -> Iterator[SimulatedBus]:
    with SimulatedBus(ids=[1, 2, 3, 4], seed=11) as bus:
        yield bus


def test_log_writes_five_rows_per_meter_equal_to_what_the_bus_served(
    paced_bus: SimulatedBus, tmp_path: Path
) -> None:
    """emtui --log --ids 1-4 --cycles 5 --interval 0.2: exactly 5 rows per meter, every value
    exactly the decoded registers the simulator sent (full precision, no rounding)."""
    port = paced_bus.start_pty()
    data = tmp_path / "d"
    result = subprocess.run(
        log_cmd(
            port, tmp_path, "--parity", "N", "--ids", "1-4", "--cycles", "5", "--interval", "0.2"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "logging" in result.stderr and "stopped" in result.stderr
    served = paced_bus.served()
    for device_id in (1, 2, 3, 4):
        (path,) = (data / f"meter_{device_id}").glob("*.csv")
        header, rows = read_rows(path)
        assert header[:3] == ["timestamp", "epoch", "status"]
        assert len(rows) == 5
        frames = [f for f in served if f.device_id == device_id and f.outcome == "reply"]
        assert len(frames) == 15  # three reads per poll
        for k, row in enumerate(rows):
            cells = dict(zip(header, row, strict=True))
            assert cells["status"] == "ok"
            for frame in frames[3 * k : 3 * k + 3]:
                for entry in EM6400NG.logged:
                    offset = entry.address - frame.address
                    if 0 <= offset < frame.count:
                        regs = frame.registers[offset : offset + entry.count]
                        value = decode_entry(EM6400NG, entry, regs).value
                        expected = "" if value is None else repr(value)
                        assert cells[entry.name] == expected, (device_id, k, entry.name)


def _config(tmp_path: Path, ids: list[int], interval: float = 0.0) -> Config:
    return Config(
        meters=tuple(MeterConfig(id=i, label=f"Pump {i}") for i in ids),
        logging=LoggingConfig(interval=interval, data_dir=tmp_path / "data", fsync_interval=1),
        state_dir=tmp_path / "state",
    )


def test_absent_and_flapping_meters_get_a_row_every_poll_without_stalling(
    tmp_path: Path,
) -> None:
    """Meter 5 is absent and meter 3 drops out and comes back: every poll still writes a row
    for every meter (timeout rows show the gap), and the others stay ok."""
    with SimulatedBus(ids=[1, 2, 3, 4], line_timing=False, seed=12) as bus:
        # down long enough that whole reads fall in the gap (an absent meter 5 now costs
        # nothing after its first miss, so 40 cycles take only a few seconds)
        bus.set_fault(3, flap=(1.5, 0.6))
        port = bus.start_pty()
        config = _config(tmp_path, [1, 2, 3, 4, 5])
        with BusArbiter(ConnectionSettings(port=port, parity="N")) as arbiter:
            worker = LoggingWorker(config, arbiter)
            started = time.monotonic()
            worker.run(threading.Event(), cycles=40)
            elapsed = time.monotonic() - started
    statuses = {}
    for device_id in (1, 2, 3, 4, 5):
        (path,) = (tmp_path / "data" / f"meter_{device_id}").glob("*.csv")
        _, rows = read_rows(path)
        assert len(rows) == 40
        statuses[device_id] = [r[2] for r in rows]
    assert set(statuses[1]) == set(statuses[2]) == set(statuses[4]) == {"ok"}
    assert set(statuses[5]) == {"timeout"}
    assert {"ok", "timeout"} <= set(statuses[3])
    assert elapsed < 40  # the dead meter is backed off, not waited for every cycle


def test_a_finished_day_is_queued_and_never_reopened(tmp_path: Path) -> None:
    """Crossing local midnight queues the previous day's file for upload; a clock that jumps
    back into that day writes a new file instead of reopening the queued one."""
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    times = iter(
        [
            (midnight - timedelta(seconds=3)).timestamp(),
            (midnight - timedelta(seconds=2)).timestamp(),
            (midnight + timedelta(seconds=1)).timestamp(),
            (midnight - timedelta(seconds=1)).timestamp(),  # the clock steps back
        ]
    )
    now = {"t": next(times)}
    with SimulatedBus(ids=[1], line_timing=False, seed=13) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, parity="N")) as arbiter:
            worker = LoggingWorker(_config(tmp_path, [1]), arbiter, wall=lambda: now["t"])
            for t in times:
                worker.cycle()
                now["t"] = t
            worker.cycle()
            worker.close()
    day_before = (midnight - timedelta(days=1)).date()
    queue = UploadQueue(tmp_path / "state")
    assert queue.is_queued(1, day_before)
    files = sorted(p.name for p in (tmp_path / "data" / "meter_1").glob("*.csv"))
    assert files == [
        f"meter_1_{day_before}.csv",
        f"meter_1_{day_before}_2.csv",
        f"meter_1_{midnight.date()}.csv",
    ]
    _, first = read_rows(tmp_path / "data" / "meter_1" / files[0])
    assert len(first) == 2  # the queued file was not touched after midnight
    _, stepped = read_rows(tmp_path / "data" / "meter_1" / files[1])
    assert "stepped_back" in stepped[0][-1]


def test_second_logger_on_the_same_port_is_refused(paced_bus: SimulatedBus, tmp_path: Path) -> None:
    """A second emtui --log on a bus that a logger holds exits 3 with 'in use by PID'."""
    url = paced_bus.start_tcp()
    args = ["--log", "--port", url, "--ids", "1", "--state-dir", str(tmp_path / "st")]
    first = subprocess.Popen(
        emtui_cmd(*args, "--data-dir", str(tmp_path / "a")),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        assert "logging" in first.stderr.readline()
        second = subprocess.run(
            emtui_cmd(*args, "--data-dir", str(tmp_path / "b")),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 3
        assert f"in use by PID {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0  # SIGTERM: finish the row, flush, exit 0


def test_sigterm_finishes_the_row_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM while logging: exit 0, every line of every file a whole row."""
    with SimulatedBus(ids=[1, 2], line_timing=False, seed=14) as bus:
        url = bus.start_tcp()
        proc = subprocess.Popen(
            log_cmd(url, tmp_path, "--ids", "1-2", "--interval", "0"),
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None and "logging" in proc.stderr.readline()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    status = json.loads((tmp_path / "s" / "status.json").read_text())
    assert status["stopped"] is True
    for meter in status["meters"]:
        (path,) = (tmp_path / "d" / f"meter_{meter['id']}").glob("*.csv")
        header, rows = read_rows(path)
        assert len(rows) == meter["rows"] > 0
        assert all(len(r) == len(header) for r in rows)


def test_kill_9_a_hundred_times_loses_no_reported_row(tmp_path: Path) -> None:
    """kill -9 at random moments, 100 times: every CSV parses, every line is a whole row, and
    no row a logger reported written (status file) is missing."""
    rng = random.Random(2026)
    data, state = tmp_path / "d", tmp_path / "s"
    with SimulatedBus(ids=[1, 2, 3, 4], line_timing=False, seed=15) as bus:
        url = bus.start_tcp()
        command = log_cmd(url, tmp_path, "--ids", "1-4", "--interval", "0")
        reported_total = {i: 0 for i in (1, 2, 3, 4)}
        for _ in range(100):
            before = _rows_on_disk(data)
            status_file = state / "status.json"
            status_file.unlink(missing_ok=True)
            proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 1.2))
            proc.kill()
            proc.wait()
            after = _rows_on_disk(data)
            if status_file.exists():
                status = json.loads(status_file.read_text())
                for meter in status["meters"]:
                    i = meter["id"]
                    assert after[i] >= before[i] + meter["rows"], (i, before, after, meter)
                    reported_total[i] += meter["rows"]
    assert all(n > 0 for n in reported_total.values())
    for path in data.rglob("*.csv"):
        header, rows = read_rows(path)
        assert header[:3] == ["timestamp", "epoch", "status"]
        assert all(len(row) == len(header) for row in rows)
        assert path.read_bytes().endswith(b"\n")


def _rows_on_disk(data: Path) -> dict[int, int]:
    counts = {i: 0 for i in (1, 2, 3, 4)}
    for path in data.rglob("meter_*.csv"):
        device_id = int(path.parent.name.split("_")[1])
        with path.open(newline="") as f:
            counts[device_id] += max(0, sum(1 for _ in csv.reader(f)) - 1)
    return counts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_status_command_reads_the_status_file(tmp_path: Path) -> None:
    """emtui status shows rows per meter and the queue after a logger ran."""
    with SimulatedBus(ids=[1], line_timing=False, seed=16) as bus:
        url = bus.start_tcp()
        subprocess.run(
            log_cmd(url, tmp_path, "--ids", "1", "--cycles", "3", "--interval", "0"),
            check=True,
            capture_output=True,
            timeout=60,
        )
    out = subprocess.run(
        emtui_cmd("status", "--state-dir", str(tmp_path / "s")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "not running" in out.stdout and "meter 1 (Pump 1): 3 rows" not in out.stdout
    assert "meter 1: 3 rows, 0 errors" in out.stdout
    doc = json.loads(
        subprocess.run(
            emtui_cmd("status", "--state-dir", str(tmp_path / "s"), "--json"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert doc["logger"]["meters"][0]["rows"] == 3 and doc["queue"]["queued"] == 0


def test_full_disk_is_reported_once_polling_goes_on_and_writing_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while logging: one loud line when it starts, polling goes on, the lost rows are
    counted (status file and summary), and a line when writing resumes."""
    import errno

    real_write = os.write
    full = {"on": False}

    def fake_write(fd: int, data: bytes) -> int:
        if full["on"] and data.endswith(b"\n") and data.count(b",") > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    lines: list[str] = []
    with SimulatedBus(ids=[1], line_timing=False, seed=17) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, parity="N")) as arbiter:
            worker = LoggingWorker(_config(tmp_path, [1]), arbiter, report=lines.append)
            monkeypatch.setattr(os, "write", fake_write)
            worker.cycle()
            full["on"] = True
            for _ in range(5):
                worker.cycle()
            full["on"] = False
            worker.cycle()
            worker.close()
    failures = [line for line in lines if "No space" in line or "disk full" in line]
    assert len(failures) == 1
    assert any("writing resumed (5 row(s) lost)" in line for line in lines)
    assert worker.cycles == 7
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["meters"][0]["rows"] == 2 and status["meters"][0]["rows_lost"] == 5
    assert "5 row(s) NOT WRITTEN" in worker.summary()
    (path,) = (tmp_path / "data" / "meter_1").glob("*.csv")
    _, rows = read_rows(path)
    assert len(rows) == 2


def test_bus_lost_and_back_gives_error_rows_then_resumes(tmp_path: Path) -> None:
    """The gateway goes away mid-run: every meter still gets a row per poll (status error),
    one line says the bus is down, and polling resumes by itself when it is back."""
    lines: list[str] = []
    bus = SimulatedBus(ids=[1, 2], line_timing=False, seed=18)
    url = bus.start_tcp()
    tcp_port = int(url.rsplit(":", 1)[1])
    try:
        with BusArbiter(ConnectionSettings(port=url)) as arbiter:
            worker = LoggingWorker(_config(tmp_path, [1, 2]), arbiter, report=lines.append)
            first = worker.cycle()
            bus.stop()
            down = [worker.cycle() for _ in range(3)]
            bus = SimulatedBus(ids=[1, 2], line_timing=False, seed=18)
            bus.start_tcp(port=tcp_port)
            back = worker.cycle()
            worker.close()
    finally:
        bus.stop()
    assert [s.status for s in first] == ["ok", "ok"]
    assert all(s.status == "error" for cycle in down for s in cycle)
    assert [s.status for s in back] == ["ok", "ok"]
    assert sum("bus down" in line for line in lines) == 1
    assert sum("bus back" in line for line in lines) == 1
    for device_id in (1, 2):
        (path,) = (tmp_path / "data" / f"meter_{device_id}").glob("*.csv")
        _, rows = read_rows(path)
        assert [r[2] for r in rows] == ["ok", "error", "error", "error", "ok"]


def test_log_started_while_the_bus_is_missing_writes_error_rows(tmp_path: Path) -> None:
    """An adapter unplugged at boot: emtui --log does not exit; it says so once and writes an
    error row per meter per poll (the gap is visible), then stops cleanly."""
    missing = str(tmp_path / "ttyUSB-unplugged")
    result = subprocess.run(
        log_cmd(missing, tmp_path, "--ids", "1-2", "--cycles", "3", "--interval", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no such port") == 1  # said once: "bus down: …"
    assert "bus down" in result.stderr
    for device_id in (1, 2):
        (path,) = (tmp_path / "d" / f"meter_{device_id}").glob("*.csv")
        _, rows = read_rows(path)
        assert [r[2] for r in rows] == ["error"] * 3


def test_torn_row_in_a_past_day_is_repaired_before_it_is_queued(tmp_path: Path) -> None:
    """A power cut tore the last row of yesterday's file: at start the logger cuts the torn
    bytes off (kept aside) before hashing and queueing the day, so the server gets whole rows."""
    yesterday = (datetime.now() - timedelta(days=1)).date()
    folder = tmp_path / "data" / "meter_1"
    folder.mkdir(parents=True)
    path = folder / f"meter_1_{yesterday}.csv"
    path.write_bytes(b"timestamp,epoch,status\nA,1.000,ok\nB,2.0")
    with SimulatedBus(ids=[1], line_timing=False, seed=19) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, parity="N")) as arbiter:
            worker = LoggingWorker(_config(tmp_path, [1]), arbiter)
            worker.run(threading.Event(), cycles=1)
    assert path.read_bytes() == b"timestamp,epoch,status\nA,1.000,ok\n"
    assert (folder / f"{path.name}.torn-1").read_bytes() == b"B,2.0"
    (item,) = UploadQueue(tmp_path / "state").queued()
    assert item.path == path and item.size == len(path.read_bytes())


def test_an_interval_shorter_than_the_wire_time_is_reported_once(tmp_path: Path) -> None:
    """Four paced meters cannot be polled in 0.2 s: the logger says so once, and keeps a row
    per poll."""
    lines: list[str] = []
    with SimulatedBus(ids=[1, 2, 3, 4], seed=24) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, parity="N")) as arbiter:
            config = _config(tmp_path, [1, 2, 3, 4], interval=0.2)
            worker = LoggingWorker(config, arbiter, report=lines.append)
            worker.run(threading.Event(), cycles=6)
    overruns = [line for line in lines if "longer than the 0.2 s interval" in line]
    assert len(overruns) == 1
    assert worker.cycles == 6 and all(m.rows == 6 for m in worker.meters)
