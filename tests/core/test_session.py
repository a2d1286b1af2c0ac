"""BusSession, the engine the app and emtui --log hold: polling, logging, sharing the bus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emtui.core.bus.arbiter import TrafficRecord
from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.session import BusSession, DataDirBusy, DataDirLock
from emtui.sim.bus import SimulatedBus


@pytest.fixture
def bus() -> Iterator[str]:
    with SimulatedBus(ids=(1, 2, 3, 4), running=True) as sim:
        yield sim.start_tcp("127.0.0.1", 0, framing="rtu")


def config(port: str, root: Path, interval: float = 1.0) -> Config:
    return Config(
        bus=BusConfig(port=port, baud=19200, parity="E"),
        meters=tuple(MeterConfig(id=i, label=f"Pump {i}") for i in (1, 2, 3, 4)),
        logging=LoggingConfig(interval=interval, data_dir=root / "data"),
        upload=UploadConfig(target=None, site="t"),
        state_dir=root / "state",
    )


@pytest.mark.slow
def test_while_logging_a_tab_refresh_costs_at_most_one_request_per_cycle(
    bus: str, tmp_path: Path
) -> None:
    """With the logger polling the logged set (12 requests a cycle on 4 meters), opening a
    meter tab (a first read of its ~15 other blocks) adds at most one request per cycle, so no
    row is late by more than one request."""
    session = BusSession(config(bus, tmp_path))
    records: list[TrafficRecord] = []
    session.start()
    try:
        session.start_logging()
        time.sleep(2.2)  # the logger has the bus
        session.arbiter.add_listener(records.append)
        started = time.monotonic()
        session.set_focus(1)
        time.sleep(4.0)
        cycles = time.monotonic() - started
        requests = len(records)
    finally:
        session.stop()
    assert requests <= (12 + 1) * (int(cycles) + 1), requests


@pytest.mark.slow
def test_stop_and_stop_logging_do_not_wait_an_interval(bus: str, tmp_path: Path) -> None:
    """At a 5 s interval, stopping logging hands polling back at once and stop() returns
    within a cycle (before, the live thread slept up to three intervals)."""
    session = BusSession(config(bus, tmp_path, interval=5.0))
    samples: list[float] = []
    session.add_listener(lambda s: samples.append(time.monotonic()))
    session.start()
    try:
        session.start_logging()
        time.sleep(1.5)
        t0 = time.monotonic()
        session.stop_logging()
        assert time.monotonic() - t0 < 3.0
        count = len(samples)
        deadline = time.monotonic() + 6.0  # the live thread's next aligned cycle
        while len(samples) == count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(samples) > count, "live polling did not resume after logging stopped"
        session.start_logging()
        time.sleep(0.5)
    finally:
        t0 = time.monotonic()
        session.stop()
        took = time.monotonic() - t0
    assert took < 3.0, took


def test_one_logger_per_data_dir(tmp_path: Path) -> None:
    """The data-dir lock keeps a second logger (the app, or emtui --log) out of the files."""
    first = DataDirLock(tmp_path).acquire()
    try:
        with pytest.raises(DataDirBusy, match="another emtui logger"):
            DataDirLock(tmp_path).acquire()
    finally:
        first.release()
    DataDirLock(tmp_path).acquire().release()


def test_a_cancel_before_the_scan_starts_is_kept(bus: str, tmp_path: Path) -> None:
    """Escape while the bus is being reopened for a rescan: the scan then stops at once."""
    session = BusSession(config(bus, tmp_path))
    session.start()
    try:
        session.cancel_scan()
        found: list[int] = []
        report = session.scan(range(1, 248), [], lambda *a: None, lambda d: found.append(d.id))
    finally:
        session.stop()
    assert report.cancelled and report.duration < 1.0
    # the next scan is not cancelled
    session2 = BusSession(config(bus, tmp_path))
    session2.start()
    try:
        again = session2.scan([1, 2], [], lambda *a: None, lambda d: None)
    finally:
        session2.stop()
    assert not again.cancelled and [d.id for d in again.devices] == [1, 2]
