"""The traffic monitor: records, text format, bounded buffer, trace rotation, and its counts
against the arbiter's link statistics under the simulator's CRC noise and wrong-id faults."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings, Outcome
from emtui.core.bus.traffic import (
    TraceWriter,
    TrafficMonitor,
    TrafficRecord,
    add_process_listener,
    format_record,
    remove_process_listener,
)
from emtui.sim.bus import SimulatedBus

REQUEST = bytes.fromhex("01030C250002D690")
REPLY = bytes.fromhex("0103044247D45280A3")


def _record(outcome: Outcome = Outcome.OK, device_id: int = 1, **kw: object) -> TrafficRecord:
    base: dict[str, object] = {
        "time": 1000.0,
        "device_id": device_id,
        "sent": REQUEST,
        "received": REPLY,
        "outcome": outcome,
        "rtt": 0.0128,
        "function": 3,
    }
    base.update(kw)
    return TrafficRecord(**base)  # type: ignore[arg-type]


def test_format_has_time_direction_id_function_length_hex_and_result() -> None:
    """TX and RX lines: ms time, direction, id, function, length, the bytes in hex; the RX
    line ends with the result and the response time."""
    tx, rx = format_record(_record())
    assert tx.endswith("TX    id   1 fc 03 len   8  01 03 0C 25 00 02 D6 90")
    assert rx.endswith("RX    id   1 fc 03 len   9  01 03 04 42 47 D4 52 80 A3   ok 12.8 ms")
    assert tx[8] == "." and len(tx.split()[0]) == 12  # HH:MM:SS.mmm


@pytest.mark.parametrize(
    ("record", "result"),
    [
        (_record(Outcome.CRC, received=REPLY[:-1] + b"\x00"), "CRC error"),
        (_record(Outcome.WRONG_ID, received=b"\x02" + REPLY[1:], other_id=2), "wrong id 2"),
        (
            _record(Outcome.EXCEPTION, exception_code=2, received=bytes.fromhex("018302C0F1")),
            "exception 02 illegal data address",
        ),
        (_record(Outcome.TIMEOUT, received=b""), "timeout"),
    ],
)
def test_format_names_each_problem(record: TrafficRecord, result: str) -> None:
    """CRC errors, wrong-id replies, exceptions and timeouts are named on the RX line."""
    assert result in format_record(record)[-1]


def test_stale_bytes_are_shown_before_the_request() -> None:
    """Bytes flushed before the request (Reply.stale) get their own line before TX."""
    stale, tx, _ = format_record(_record(stale=b"\x01\x03\x02"))
    assert "STALE" in stale and "01 03 02" in stale and "flushed before the request" in stale
    assert " TX " in tx


def test_monitor_is_bounded_drops_oldest_and_counts() -> None:
    """Past maxlen the oldest records go and are counted; outcome counts keep everything;
    filters by id and by outcome work."""
    monitor = TrafficMonitor(maxlen=3)
    for i in range(5):
        monitor.listener(_record(Outcome.CRC if i % 2 else Outcome.OK, device_id=1 + i % 2))
    assert monitor.dropped == 2 and monitor.total == 5
    assert len(monitor.records()) == 3
    assert monitor.count(Outcome.CRC) == 2 and monitor.count(Outcome.OK, 1) == 3
    assert [r.device_id for r in monitor.records(device_id=1)] == [1, 1]
    assert [r.outcome for r in monitor.records(outcomes=[Outcome.CRC])] == [Outcome.CRC]


def test_save_writes_the_text_with_a_header(tmp_path: Path) -> None:
    """save() writes the filtered records in the text format, the drop count in the header."""
    monitor = TrafficMonitor(maxlen=2)
    for _ in range(3):
        monitor.listener(_record())
    path = tmp_path / "traffic.txt"
    assert monitor.save(path) == 2
    lines = path.read_text().splitlines()
    assert lines[0] == "# emtui traffic: 2 record(s); 1 older record(s) dropped"
    assert len(lines) == 5 and " RX " in lines[2]


def test_trace_rotates_at_the_stated_size(tmp_path: Path) -> None:
    """At max_bytes the trace moves to FILE.1 and starts again; neither grows past it."""
    path = tmp_path / "trace.txt"
    writer = TraceWriter(path, max_bytes=1000)
    for _ in range(20):
        writer.listener(_record())
    writer.close()
    old = path.with_name("trace.txt.1")
    assert old.exists()
    assert 0 < path.stat().st_size <= 1000 and old.stat().st_size <= 1000
    assert all(" TX " in line or " RX " in line for line in old.read_text().splitlines())


@pytest.fixture
def noisy_bus() -> Iterator[str]:
    with SimulatedBus(ids=[1, 2], line_timing=False) as bus:
        bus.set_fault(None, crc_noise=0.05, wrong_id=0.02)
        yield bus.start_tcp()


def test_counts_agree_with_link_statistics_under_noise(noisy_bus: str, tmp_path: Path) -> None:
    """Under 5 % CRC noise and 2 % wrong-id replies, the monitor's and the trace file's CRC
    and wrong-id counts per meter equal the arbiter's per-meter statistics, and both occur."""
    monitor = TrafficMonitor(maxlen=100)  # smaller than the traffic: counts survive drops
    trace = tmp_path / "trace.txt"
    writer = TraceWriter(trace)
    add_process_listener(writer.listener)  # as --trace does
    try:
        with BusArbiter(ConnectionSettings(port=noisy_bus, parity="N", timeout=0.2)) as arbiter:
            arbiter.add_listener(monitor.listener)
            for i in range(500):
                arbiter.read_registers(1 + i % 2, 3109, 2, retries=0)
            stats = {d: arbiter.device_stats(d) for d in (1, 2)}
    finally:
        remove_process_listener(writer.listener)
        writer.close()
    assert monitor.dropped > 0
    rx = [line for line in trace.read_text().splitlines() if " RX " in line]
    for device_id, s in stats.items():
        assert monitor.count(Outcome.CRC, device_id) == s.crc_errors
        assert monitor.count(Outcome.WRONG_ID, device_id) == s.wrong_id
        mine = [line for line in rx if f" id {device_id:>3} " in line]
        assert sum("CRC error" in line for line in mine) == s.crc_errors
        assert sum("wrong id" in line for line in mine) == s.wrong_id
    assert sum(s.crc_errors for s in stats.values()) > 0
    assert sum(s.wrong_id for s in stats.values()) > 0


def test_trace_and_verbose_from_the_cli(tmp_path: Path) -> None:
    """`emtui sim --crc-noise 0.05 --wrong-id 0.02`; `emtui read --trace FILE -v` writes the
    traffic to FILE and stderr, and FILE's CRC / wrong-id lines match the JSON stats."""
    sim = subprocess.Popen(
        [*EMTUI, "sim", "--ids", "1-2", "--listen", "127.0.0.1:0", "--no-line-timing",
         "--crc-noise", "0.05", "--wrong-id", "0.02"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().strip()
        totals = {"crc_errors": 0, "wrong_id": 0}
        trace = tmp_path / "trace.txt"
        for device_id in (1, 2, 1, 2):
            result = subprocess.run(
                [*EMTUI, "read", "--port", port, "--parity", "N", "--id", str(device_id),
                 "--json", "--trace", str(trace), "-v"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode in (0, 5), result.stderr
            assert " TX " in result.stderr and " RX " in result.stderr
            stats = json.loads(result.stdout)["stats"]
            for key in totals:
                totals[key] += stats[key]
        text = trace.read_text()
        assert text.count("CRC error") == totals["crc_errors"]
        assert text.count("wrong id") == totals["wrong_id"]
    finally:
        sim.terminate()
        sim.wait(10)


def test_trace_on_log_and_v_refused_in_the_app(tmp_path: Path) -> None:
    """`emtui --log --trace FILE` traces the logger's polls; `emtui -v` (the app) is refused
    with one line and exit 2, since stderr is the app's screen."""
    with SimulatedBus(ids=[1], line_timing=False) as bus:
        url = bus.start_tcp()
        trace = tmp_path / "log-trace.txt"
        result = subprocess.run(
            [*EMTUI, "--log", "--port", url, "--parity", "N", "--ids", "1", "--cycles", "1",
             "--interval", "0", "--data-dir", str(tmp_path / "data"),
             "--state-dir", str(tmp_path / "state"), "--trace", str(trace)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = trace.read_text().splitlines()
    assert any(" TX    id   1 fc 03 " in line for line in lines)
    assert any(line.endswith(" ms") and " ok " in line for line in lines)
    app = subprocess.run(
        [*EMTUI, "-v", "--port", "socket://127.0.0.1:9"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert app.returncode == 2
    assert "use --trace FILE" in app.stderr and len(app.stderr.strip().splitlines()) == 1
