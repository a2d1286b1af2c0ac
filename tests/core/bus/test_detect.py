"""Serial-settings detection (issue 9, item 4): the order, the plan, and finding meters at
settings nobody told the command, over RFC 2217 (the client's settings reach the simulator).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI, headless_logger

from emtui.core.bus.detect import (
    FACTORY,
    Detector,
    SerialSettings,
    all_settings,
    ordered,
    parse_only,
    plan,
    start_arbiter,
)
from emtui.core.bus.link import ConnectionSettings
from emtui.core.maps.registers import load_map
from emtui.sim.bus import LineSettings, SimulatedBus

EM6400NG = load_map("em6400ng")
EM6400NG_12 = [
    s for s in all_settings() if s.baud in (4800, 9600, 19200, 38400) and s.stopbits == 1
]


def _detect(*args: str) -> tuple[int, dict[str, object], str]:
    out = subprocess.run(
        [*EMTUI, "detect", *args, "--json"], capture_output=True, text=True, timeout=120
    )
    return out.returncode, (json.loads(out.stdout) if out.stdout else {}), out.stderr


@pytest.fixture
def bus() -> Iterator[SimulatedBus]:
    with SimulatedBus(ids=[], seed=3) as simulated:
        yield simulated


def _with_meters(bus: SimulatedBus, meters: dict[int, LineSettings]) -> str:
    from emtui.sim.bus import build_meters

    bus.meters.update(build_meters(list(meters), EM6400NG, seed=3))
    for device_id, line in meters.items():
        bus.set_meter_settings(device_id, line)
    return bus.start_tcp(framing="rfc2217")


def test_order_factory_first_then_the_connection_then_the_rest() -> None:
    """9600 8E1 comes first, then the connection's settings, then the other EM6400NG
    settings before the other meters' ones; --only restricts (keeping that order)."""
    order = ordered(SerialSettings(38400, "N", 1))
    assert order[0] == FACTORY and order[1] == SerialSettings(38400, "N", 1)
    assert len(order) == len(set(order)) == 28
    assert set(order[:12]) == set(EM6400NG_12)
    only = ordered(SerialSettings(19200, "E", 1), parse_only("19200,9600:8E1"))
    assert only[:2] == [FACTORY, SerialSettings(19200, "E", 1)]
    assert {s.baud for s in only} == {9600, 19200}
    assert parse_only("8N2") == [s for s in all_settings() if (s.parity, s.stopbits) == ("N", 2)]
    with pytest.raises(ValueError, match="FORMAT"):
        parse_only("9600:8X1")


def test_plan_probes_each_id_once_per_setting_quick_pass_first() -> None:
    """The plan: the factory probe (id 1 at 9600 8E1), a quick pass over the likely ids at
    every setting, then the rest of the range; no (setting, id) twice."""
    order = ordered(SerialSettings(19200, "E", 1))
    steps = plan(order, list(range(1, 248)), [])
    assert steps[0].settings == FACTORY and steps[0].ids == (1,)
    quick = [s for s in steps if s.phase == "quick"]
    assert len(quick) == 28 and quick[0].ids == (2, 3, 4, 5) and quick[1].ids == (1, 2, 3, 4, 5)
    pairs = [(s.settings, i) for s in steps for i in s.ids]
    assert len(pairs) == len(set(pairs)) == 28 * 247
    assert steps.index(quick[-1]) < min(i for i, s in enumerate(steps) if s.phase == "full")


def test_factory_fresh_meter_found_in_under_3_s(bus: SimulatedBus) -> None:
    """A factory-fresh meter (id 1 at 9600 8E1) is found by the first probe: `emtui detect
    --expect 1` is done in well under 3 s."""
    url = _with_meters(bus, {1: LineSettings(9600, "E", 1)})
    code, doc, err = _detect("--port", url, "--expect", "1")
    assert code == 0, err
    assert doc["found"][0]["id"] == 1 and doc["found"][0]["baud"] == 9600  # type: ignore[index]
    assert float(doc["duration_s"]) < 3.0  # type: ignore[arg-type]


@pytest.mark.parametrize("line", [EM6400NG_12[-1], SerialSettings(38400, "O", 1)])
def test_meter_at_a_given_id_at_any_em6400ng_setting_in_under_10_s(
    bus: SimulatedBus, line: SerialSettings
) -> None:
    """A meter at a known id (7) at one of the 12 EM6400NG settings — here the last one tried
    and another — is found in under 10 s, at the settings it is at."""
    url = _with_meters(bus, {7: LineSettings(line.baud, line.parity, line.stopbits)})
    code, doc, err = _detect("--port", url, "--expect", "7")
    assert code == 0, err
    (found,) = doc["found"]  # type: ignore[misc]
    assert (found["id"], found["baud"], found["parity"], found["stopbits"]) == (
        7,
        line.baud,
        line.parity,
        line.stopbits,
    )
    assert found["model"] == "EM6400NG"
    assert float(doc["duration_s"]) < 10.0  # type: ignore[arg-type]


def test_mixed_settings_over_rfc2217_all_found_and_warned(bus: SimulatedBus) -> None:
    """Over RFC 2217 with meters at three different settings, every (settings, id) pair is
    reported and the bus is warned about as mixed."""
    url = _with_meters(
        bus,
        {
            1: LineSettings(9600, "E", 1),
            2: LineSettings(19200, "N", 1),
            3: LineSettings(38400, "E", 1),
        },
    )
    code, doc, err = _detect("--port", url, "--ids", "1-3", "--expect", "1-3")
    assert code == 0, err
    pairs = sorted((f["id"], f["baud"], f["parity"]) for f in doc["found"])  # type: ignore[union-attr]
    assert pairs == [(1, 9600, "E"), (2, 19200, "N"), (3, 38400, "E")]
    assert "mixed serial settings" in str(doc["mixed_settings"])
    assert doc["tried"] and doc["missing"] == []


def test_ids_20_30_finds_a_meter_at_an_untold_id_and_settings(bus: SimulatedBus) -> None:
    """`emtui detect --ids 20-30` (nothing else told) on a simulator whose only meter is id 27
    at 38400 8O1 finds it there (here restricted by --only to keep the test short; the full
    run is the slow test below)."""
    url = _with_meters(bus, {27: LineSettings(38400, "O", 1)})
    code, doc, err = _detect("--port", url, "--ids", "20-30", "--only", "9600,38400")
    assert code == 0, err
    assert [(f["id"], f["baud"], f["parity"]) for f in doc["found"]] == [(27, 38400, "O")]  # type: ignore[union-attr]
    assert doc["mixed_settings"] is None


@pytest.mark.slow
def test_ids_20_30_full_run_within_1_2x_its_floor(bus: SimulatedBus) -> None:
    """The same without --only: every setting tried, the meter found, the whole detection
    within 1.2x its floor (Σ of its probes' timeouts and the found meter's identification)."""
    url = _with_meters(bus, {27: LineSettings(38400, "O", 1)})
    code, doc, err = _detect("--port", url, "--ids", "20-30")
    assert code == 0, err
    assert [(f["id"], f["baud"], f["parity"]) for f in doc["found"]] == [(27, 38400, "O")]  # type: ignore[union-attr]
    assert float(doc["duration_s"]) <= 1.2 * float(doc["floor_s"])  # type: ignore[arg-type]


def test_eta_predicts_the_duration(bus: SimulatedBus) -> None:
    """The ETA before the first probe (from the plan and the generous timeouts) is within
    25 % of what a detection that finds nothing takes."""
    url = _with_meters(bus, {})
    order = ordered(None, parse_only("9600,19200"))
    steps = plan(order, list(range(1, 21)), [])
    base = ConnectionSettings(port=url)
    arbiter = start_arbiter(base, order)
    etas: list[tuple[float, float]] = []
    t0 = time.monotonic()
    try:
        detector: Detector

        def progress(done: int, total: int, settings: SerialSettings, current: int) -> None:
            etas.append((time.monotonic() - t0, detector.eta()))

        detector = Detector(arbiter, EM6400NG, steps, on_progress=progress)
        first = detector.eta()
        report = detector.run()
    finally:
        arbiter.stop()
    assert report.found == []
    assert abs(first - report.duration) <= 0.25 * report.duration, (first, report.duration)
    elapsed, eta = etas[len(etas) // 2]
    assert abs(elapsed + eta - report.duration) <= 0.15 * report.duration


@pytest.mark.parametrize("port", ["socket://127.0.0.1:1", "tcp://127.0.0.1:1"])
def test_detect_refuses_connections_without_serial_settings(port: str) -> None:
    """Over socket:// or tcp:// the line settings cannot be changed: one line saying so and
    what to use instead, exit 2, nothing opened."""
    out = subprocess.run(
        [*EMTUI, "detect", "--port", port], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "rfc2217://" in out.stderr


def test_bad_only_is_one_line_exit_2() -> None:
    """--only with a malformed setting: one line naming it, exit 2, nothing opened."""
    out = subprocess.run(
        [*EMTUI, "detect", "--port", "/dev/null", "--only", "9600:7E1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--only" in out.stderr


def test_detect_exits_3_naming_the_logger_that_holds_the_port(
    bus: SimulatedBus, tmp_path: Path
) -> None:
    """While a logger polls the RFC 2217 port, emtui detect exits 3 with "in use by PID
    <logger>" and sends nothing."""
    url = _with_meters(bus, {1: LineSettings(19200, "E", 1)})
    with headless_logger(url, tmp_path, "--interval", "0.5") as logger:
        out = subprocess.run(
            [*EMTUI, "detect", "--port", url, "--expect", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 3, out.stderr
    assert f"in use by PID {logger.pid}" in out.stderr
    assert "Traceback" not in out.stderr


def test_over_a_pty_parity_e_and_o_are_refused_and_listed() -> None:
    """On a pty (no parity) detection skips the settings the port refuses, lists them, and
    finds a 9600 baud meter at its baud; one meter answering at 8N1 and 8N2 (only the baud
    counts on a pty) is not called a mixed bus."""
    with SimulatedBus(ids=[3], seed=4) as bus:
        bus.set_meter_settings(3, LineSettings(9600, "N", 1))
        port = bus.start_pty()
        code, doc, err = _detect("--port", port, "--ids", "1-4", "--only", "9600,19200")
    assert code == 0, err
    assert {f["id"] for f in doc["found"]} == {3}  # type: ignore[union-attr]
    assert {f["baud"] for f in doc["found"]} == {9600}  # type: ignore[union-attr]
    assert "9600 8E1" in doc["rejected"] and "19200 8O1" in doc["rejected"]  # type: ignore[operator]
    assert doc["mixed_settings"] is None
