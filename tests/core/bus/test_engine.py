"""The engine on the real RTU code path: a pty or socket:// to the simulated bus.

Every test here sends real Modbus frames (pymodbus framing and CRC) through pyserial to the
simulator and decodes what comes back, the way a technician's Pi talks to its meters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from helpers import EMTUI

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings, Outcome
from emtui.core.bus.reader import MeterReader
from emtui.core.bus.scanner import Scanner
from emtui.core.maps.codec import decode_entry
from emtui.core.maps.registers import load_map
from emtui.sim.bus import SimulatedBus

EM6400NG = load_map("em6400ng")


@pytest.fixture
def frozen_bus() -> Iterator[SimulatedBus]:
    """The reference site with values that do not change, paced at 19200 8E1."""
    with SimulatedBus(ids=[1, 2, 3, 4], frozen=True, seed=7) as bus:
        yield bus


def pty_settings(port: str, **kw: object) -> ConnectionSettings:
    return ConnectionSettings(port=port, parity="N", **kw)  # type: ignore[arg-type]


def served_values(bus: SimulatedBus, device_id: int) -> dict[str, object]:
    """Decode what the bus actually sent to ``device_id``, entry by entry."""
    values: dict[str, object] = {}
    for frame in bus.served():
        if frame.device_id != device_id or frame.outcome != "reply" or frame.function != 3:
            continue
        for entry in EM6400NG.entries:
            offset = entry.address - frame.address
            if offset >= 0 and offset + entry.count <= len(frame.registers):
                regs = frame.registers[offset : offset + entry.count]
                values[entry.name] = decode_entry(EM6400NG, entry, regs).value
    return values


@pytest.mark.parametrize("transport", ["pty", "socket"])
def test_read_logged_set_equals_what_the_bus_served(
    frozen_bus: SimulatedBus, transport: str
) -> None:
    """Every logged value the reader decodes is exactly what the simulator put on the line."""
    port = frozen_bus.start_pty() if transport == "pty" else frozen_bus.start_tcp()
    settings = pty_settings(port) if transport == "pty" else ConnectionSettings(port=port)
    with BusArbiter(settings) as arbiter:
        sample = MeterReader(arbiter, 2, EM6400NG).read()
    assert sample.status == "ok"
    served = served_values(frozen_bus, 2)
    for entry in EM6400NG.logged:
        assert sample.values[entry.name].value == served[entry.name], entry.name
    assert 49.8 < sample.values["frequency"].value < 50.2  # type: ignore[operator]
    assert sample.requests == 3  # real-time block, energies, run seconds


def test_modbus_tcp_transport_reads_the_same_meter(frozen_bus: SimulatedBus) -> None:
    """tcp:// (MBAP framing) reads the same values as RTU framing."""
    url = frozen_bus.start_tcp(framing="tcp")
    assert url.startswith("tcp://")
    with BusArbiter(ConnectionSettings(port=url)) as arbiter:
        sample = MeterReader(arbiter, 1, EM6400NG).read()
    assert sample.status == "ok"
    served = served_values(frozen_bus, 1)
    assert sample.values["frequency"].value == served["frequency"]


def test_scan_finds_meters_and_exception_only_device_without_phantoms() -> None:
    """Ids 1-4 answer normally, id 6 only with exceptions: all five are reported, nothing else,
    and the meters are identified by model, name and serial."""
    with SimulatedBus(ids=[1, 2, 3, 4, 6], seed=3) as bus:
        bus.set_fault(6, exception=4)
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            report = Scanner(arbiter, EM6400NG).scan(list(range(1, 13)))
    found = {d.id: d for d in report.devices}
    assert sorted(found) == [1, 2, 3, 4, 6]
    assert found[6].reply == "exception" and found[6].exception_code == 4
    assert found[1].identity["model"] == "EM6400NG"
    assert found[3].identity["name"] == "Pump 3"
    assert isinstance(found[2].identity["serial"], int)
    assert found[1].identity["serial"] != found[2].identity["serial"]


def test_scan_stops_early_and_finds_a_slow_expected_meter_by_its_late_reply() -> None:
    """With --expect, a meter too slow for the learned timeout is still found: its reply,
    late for its own probe, is recognised by id during the next probe (not blamed on the next
    id); the scan stops once every expected id has answered."""
    # 5 ms turnaround: fast meters answer in ~14 ms, so the learned timeout is ~21 ms; the
    # slow one answers in ~34 ms, well inside the generous timeout (wire time + 50 ms).
    with SimulatedBus(ids=[1, 2, 3], seed=1, turnaround=0.005) as bus:
        bus.set_fault(3, slow=0.020)
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            scanner = Scanner(arbiter, EM6400NG, identify=False)
            report = scanner.scan(list(range(1, 248)), expected=[1, 2, 3])
    ids = [d.id for d in report.devices]
    assert ids == [1, 2, 3]
    assert report.devices[2].late and not report.devices[1].late
    assert not report.missing and report.stopped_early


def test_scan_stops_once_every_expected_meter_answered() -> None:
    """--expect 1-2 on a bus with 1-3: the scan reports 1 and 2 and stops there."""
    with SimulatedBus(ids=[1, 2, 3], seed=1) as bus:
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            report = Scanner(arbiter, EM6400NG, identify=False).scan(
                list(range(1, 248)), expected=[1, 2]
            )
    assert [d.id for d in report.devices] == [1, 2]
    assert report.stopped_early and not report.missing


def test_slow_meter_late_reply_is_never_credited_to_the_next_id() -> None:
    """A meter that answers after the timeout must not make the next id look present (nor be
    counted as a wrong-id reply there): its late reply is recognised as its own, so the slow
    meter itself is found (late) and only it."""
    with SimulatedBus(ids=[1], seed=2) as bus:
        bus.set_fault(1, slow=0.15)
        port = bus.start_pty()
        settings = pty_settings(port, timeout=0.08)
        with BusArbiter(settings) as arbiter:
            report = Scanner(arbiter, EM6400NG, identify=False).scan([1, 2, 3, 4, 5])
            stats = {i: arbiter.device_stats(i) for i in range(1, 6)}
    assert [(d.id, d.late) for d in report.devices] == [(1, True)]
    assert all(stats[i].ok == 0 for i in range(2, 6))
    assert sum(stats[i].wrong_id for i in range(2, 6)) == 0
    assert stats[1].late == 1


def test_crc_noise_and_wrong_id_are_told_apart_from_silence() -> None:
    """Corrupted replies count as CRC errors, replies from another id as wrong id, an absent
    meter as timeouts."""
    with SimulatedBus(ids=[1, 2, 3], seed=5) as bus:
        bus.set_fault(1, crc_noise=1.0)
        bus.set_fault(2, wrong_id=1.0)
        port = bus.start_pty()
        with BusArbiter(pty_settings(port, retries=0)) as arbiter:
            replies = {i: arbiter.read_registers(i, 3109, 2) for i in (1, 2, 4)}
            stats = {i: arbiter.device_stats(i) for i in (1, 2, 4)}
    assert replies[1].outcome is Outcome.CRC and stats[1].crc_errors == 1
    assert replies[2].outcome is Outcome.WRONG_ID and stats[2].wrong_id == 1
    assert replies[4].outcome is Outcome.TIMEOUT and stats[4].timeouts == 1


def test_refused_block_is_split_and_reading_goes_on() -> None:
    """A meter that refuses reads touching unmapped registers (exception 02): the reader splits
    the block, still returns every value, and the next cycle uses the learned plan."""
    with SimulatedBus(ids=[1], frozen=True, seed=4) as bus:
        bus.set_fault(1, strict_gaps=True)
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            reader = MeterReader(arbiter, 1, EM6400NG)
            first = reader.read()
            second = reader.read()
    assert first.status == "ok" and second.status == "ok"
    assert first.requests > second.requests
    assert all(
        v.value is not None or e.type == "pf4q"
        for e, v in zip(
            EM6400NG.logged, (first.values[e.name] for e in EM6400NG.logged), strict=True
        )
    )
    assert second.values["frequency"] == first.values["frequency"]


def test_absent_meter_is_backed_off_and_does_not_slow_the_others() -> None:
    """With id 5 absent, after the backoff starts a poll cycle costs about what 4 meters do."""
    with SimulatedBus(ids=[1, 2, 3, 4], line_timing=False, seed=6) as bus:
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            readers = [MeterReader(arbiter, i, EM6400NG) for i in (1, 2, 3, 4, 5)]
            statuses = []
            for _ in range(6):
                statuses.append([r.read().status for r in readers])
            requests_to_5 = arbiter.device_stats(5).requests
            skipped_5 = arbiter.device_stats(5).skipped
    assert statuses[-1] == ["ok", "ok", "ok", "ok", "timeout"]
    assert skipped_5 > 0
    assert requests_to_5 < 6 * 3 * 2  # far fewer than every block of every cycle, retried


def test_legacy_meter_decodes_low_word_first() -> None:
    """The legacy EM6400 map (FLOAT32 low word first) reads plausible values from a legacy
    meter; the same registers read high word first would be garbage."""
    legacy = load_map("em6400-legacy")
    with SimulatedBus(ids=[1], rmap=legacy, frozen=True, seed=8) as bus:
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            sample = MeterReader(arbiter, 1, legacy).read()
            raw = arbiter.read_registers(1, legacy.get("frequency").address, 2).registers
    assert sample.status == "ok"
    frequency = sample.values["frequency"].value
    assert isinstance(frequency, float) and 49.8 < frequency < 50.2
    vln = sample.values["vln_avg"].value
    assert isinstance(vln, float) and 200 < vln < 260
    assert raw is not None
    swapped = load_map("em6400ng").get("frequency")
    wrong = decode_entry(EM6400NG, swapped, raw).value
    assert wrong is None or not 49 < float(wrong) < 51


# -- the command line, end to end ---------------------------------------------------------------


def emtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=120)


def test_read_json_contract(frozen_bus: SimulatedBus) -> None:
    """emtui read --json: id, map and values with name, register, address, value, unit, status;
    N/A values are null with status na."""
    url = frozen_bus.start_tcp()
    result = emtui("read", "--port", url, "--id", "1", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["id"] == 1 and doc["map"] == "em6400ng"
    freq = next(v for v in doc["values"] if v["name"] == "frequency")
    assert {k: freq[k] for k in ("register", "address", "unit", "status")} == {
        "register": 3110,
        "address": 3109,
        "unit": "Hz",
        "status": "ok",
    }
    assert freq["value"] == served_values(frozen_bus, 1)["frequency"]
    for value in doc["values"]:
        assert value["status"] in ("ok", "na") or value["status"].startswith("exception")
        if value["status"] == "na":
            assert value["value"] is None
    energy = next(v for v in doc["values"] if v["name"] == "active_energy_delivered_wh")
    assert isinstance(energy["value"], int)  # INT64 Wh stays an integer
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$", doc["meter_clock"])


def test_scan_json_contract_and_no_answer_exit() -> None:
    """emtui scan --json lists devices with id, reply, model, rtt_ms; a bus where nobody answers
    exits 4 with the likely causes."""
    with SimulatedBus(ids=[2, 3], seed=9) as bus:
        url = bus.start_tcp()
        result = emtui("scan", "--port", url, "--ids", "1-5", "--json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [(d["id"], d["reply"], d["model"]) for d in doc["devices"]] == [
            (2, "ok", "EM6400NG"),
            (3, "ok", "EM6400NG"),
        ]
        assert all(d["rtt_ms"] > 0 for d in doc["devices"])
        nobody = emtui("scan", "--port", url, "--ids", "7-9")
    assert nobody.returncode == 4
    assert "baud" in nobody.stderr and "A and B" in nobody.stderr


def mbpoll_or_skip() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mbpoll is required in CI (apt-get install mbpoll)")
        pytest.skip("mbpoll not installed")
    return path


def test_mbpoll_and_emtui_read_agree(frozen_bus: SimulatedBus) -> None:
    """An independent Modbus client (mbpoll) and emtui read decode the same registers of the
    simulator to the same numbers: frequency (float32, high word first) and run seconds
    (uint32)."""
    mbpoll = mbpoll_or_skip()
    port = frozen_bus.start_pty()
    common = [mbpoll, "-m", "rtu", "-a", "1", "-b", "19200", "-P", "none", "-B", "-1", "-o", "2"]

    def mbpoll_reads(kind: str, register: int) -> str:
        out = subprocess.run(
            [*common, "-t", kind, "-r", str(register), "-c", "1", port],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        found = re.search(rf"\[{register}\]:\s+(\S+)", out.stdout)
        assert found, out.stdout
        return found.group(1)

    mb_freq = float(mbpoll_reads("4:float", 3110))
    mb_run = int(mbpoll_reads("4:int", 43546))
    result = emtui("read", "--port", port, "--parity", "N", "--id", "1", "--logged", "--json")
    assert result.returncode == 0, result.stderr
    values = {v["name"]: v["value"] for v in json.loads(result.stdout)["values"]}
    assert values["frequency"] == pytest.approx(mb_freq, rel=1e-6)
    assert values["run_seconds_delivered"] == mb_run


def test_a_meter_that_slows_down_is_caught_late_and_learned() -> None:
    """A meter that answered fast becomes slower than the learned timeout: its late reply is
    waited out (never blamed on the next meter), counted as late, and the margin grows so the
    next read succeeds."""
    with SimulatedBus(ids=[1, 2], seed=20, turnaround=0.005) as bus:
        port = bus.start_pty()
        with BusArbiter(pty_settings(port, retries=0)) as arbiter:
            for _ in range(5):
                assert arbiter.read_registers(1, 3109, 2).ok
            bus.set_fault(1, slow=0.1)
            assert arbiter.read_registers(1, 3109, 2).outcome is Outcome.TIMEOUT
            assert arbiter.read_registers(2, 3109, 2).ok
            assert arbiter.read_registers(1, 3109, 2).ok
            stats1, stats2 = arbiter.device_stats(1), arbiter.device_stats(2)
    assert stats1.late == 1 and stats1.timeouts == 1
    assert stats2.wrong_id == 0 and stats2.timeouts == 0


def test_local_echo_option_reads_past_the_adapters_own_echo() -> None:
    """A 2-wire adapter that hears its own transmission: without --local-echo the echo looks
    like a corrupted reply; with it, the echo is dropped and the meter's reply is read."""
    with SimulatedBus(ids=[1], frozen=True, seed=21, echo=True) as bus:
        port = bus.start_pty()
        with BusArbiter(pty_settings(port, retries=0)) as arbiter:
            plain = arbiter.read_registers(1, 3109, 2)
        with BusArbiter(pty_settings(port, retries=0, local_echo=True)) as arbiter:
            echoed = arbiter.read_registers(1, 3109, 2)
            sample = MeterReader(arbiter, 1, EM6400NG).read()
    assert not plain.ok and plain.outcome in (Outcome.CRC, Outcome.WRONG_ID)
    assert echoed.ok
    assert sample.status == "ok"
    assert sample.values["frequency"].value == served_values(bus, 1)["frequency"]


def test_a_serial_device_made_by_socat_reaches_a_gateway() -> None:
    """A serial device path (a socat pty bridged to an RTU-over-TCP gateway, like a stable
    /dev/serial/by-id link) runs the serial code path end to end: read and scan work."""
    socat = shutil.which("socat")
    if socat is None:
        if os.environ.get("CI") == "true":
            pytest.fail("socat is required in CI (apt-get install socat)")
        pytest.skip("socat not installed")
    import tempfile
    import time

    with SimulatedBus(ids=[1, 2], frozen=True, seed=22) as bus, tempfile.TemporaryDirectory() as d:
        url = bus.start_tcp()
        link = os.path.join(d, "usb-RS485-if00-port0")
        bridge = subprocess.Popen(
            [socat, f"pty,link={link},raw,echo=0", f"tcp:{url.removeprefix('socket://')}"],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                if os.path.exists(link):
                    break
                time.sleep(0.05)
            with BusArbiter(pty_settings(link)) as arbiter:
                sample = MeterReader(arbiter, 2, EM6400NG).read()
                report = Scanner(arbiter, EM6400NG, identify=False).scan([1, 2, 3])
        finally:
            bridge.terminate()
            bridge.wait(10)
    assert sample.status == "ok"
    assert sample.values["frequency"].value == served_values(bus, 2)["frequency"]
    assert [d.id for d in report.devices] == [1, 2]


def test_plan_follows_the_meters_measured_turnaround() -> None:
    """Planned with the assumed 20 ms turnaround, a 24-register gap is read through; once the
    meter is measured at ~2 ms, two short reads are cheaper and the plan splits."""
    entries = [EM6400NG.get("voltage_an"), EM6400NG.get("active_power_a")]
    with SimulatedBus(ids=[1], seed=23, turnaround=0.002) as bus:
        port = bus.start_pty()
        with BusArbiter(pty_settings(port)) as arbiter:
            reader = MeterReader(arbiter, 1, EM6400NG, entries)
            first = [(b.register, b.count) for b in reader.plan]
            for _ in range(6):
                assert reader.read().status == "ok"
            later = [(b.register, b.count) for b in reader.plan]
    assert first == [(3028, 28)]
    assert later == [(3028, 2), (3054, 2)]
