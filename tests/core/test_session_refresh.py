"""BusSession.refresh_extras with names: only the blocks holding those entries are read."""

from __future__ import annotations

import time
from pathlib import Path

from emtui.core.bus.reader import Sample
from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.session import BusSession
from emtui.sim.bus import SimulatedBus


def one_meter(port: str, tmp_path: Path, interval: float) -> Config:
    """Meter 1 of a simulator on ``port``, polled every ``interval`` seconds."""
    return Config(
        bus=BusConfig(port=port, baud=19200, parity="E"),
        meters=(MeterConfig(id=1),),
        logging=LoggingConfig(interval=interval, data_dir=tmp_path / "data"),
        upload=UploadConfig(target=None, site="t"),
        state_dir=tmp_path / "state",
    )


def test_refresh_of_named_entries_reads_only_their_blocks(tmp_path: Path) -> None:
    """Asking for the angle registers and the voltage unbalance of meter 1 reads two blocks
    (the angles', the unbalances'), not the meter's ~16 blocks of other registers."""
    with SimulatedBus(ids=(1,), running=True) as sim:
        port = sim.start_tcp("127.0.0.1", 0, framing="rtu")
        session = BusSession(one_meter(port, tmp_path, interval=0.5))
        samples: list[Sample] = []
        session.add_listener(samples.append)
        session.start()
        try:
            time.sleep(0.7)
            samples.clear()
            session.refresh_extras(1, ["phase_angle_a", "voltage_unbalance_ll_worst"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                extras = [s for s in samples if "current_a" not in s.values]
                names = {n for s in extras for n in s.values}
                if {"phase_angle_a", "voltage_unbalance_ll_worst"} <= names:
                    break
                time.sleep(0.05)
            time.sleep(1.2)  # two more cycles: nothing else is read
        finally:
            session.stop()
    extras = [s for s in samples if "current_a" not in s.values]
    assert len(extras) == 2, [sorted(s.values)[:3] for s in extras]
    names = {n for s in extras for n in s.values}
    assert {"phase_angle_a", "voltage_unbalance_ll_worst"} <= names
    assert "serial_number" not in names


def test_run_exclusive_does_not_wait_out_a_long_interval(tmp_path: Path) -> None:
    """With a 30 s interval, the live thread resting after a refresh (its first cycle done)
    gives the bus to run_exclusive at once, not at its next slot; polling goes on after."""
    with SimulatedBus(ids=(1,), running=True) as sim:
        port = sim.start_tcp("127.0.0.1", 0, framing="rtu")
        session = BusSession(one_meter(port, tmp_path, interval=30.0))
        samples: list[Sample] = []
        session.add_listener(samples.append)
        session.start()
        try:
            deadline = time.monotonic() + 10
            while not samples and time.monotonic() < deadline:
                time.sleep(0.05)
            assert samples, "the first cycle did not come"
            count = len(samples)
            session.refresh_extras(1, ["phase_angle_a"])  # wakes it, then it rests again
            while len(samples) == count and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(samples) > count, "the refresh was not served"
            time.sleep(0.3)
            asked = time.monotonic()
            took = session.run_exclusive(lambda arbiter: time.monotonic() - asked)
        finally:
            session.stop()
    assert took < 3.0, f"run_exclusive waited {took:.1f} s for the live thread"


def test_run_exclusive_asked_during_a_cycle_does_not_wait_for_the_next_slot(
    tmp_path: Path,
) -> None:
    """A setup asked for while the live thread is still reading its first cycle (20 s
    interval): the wake is not lost, the bus is handed over as soon as the cycle's reads end."""
    with SimulatedBus(ids=(1,), running=True) as sim:
        port = sim.start_tcp("127.0.0.1", 0, framing="rtu")
        session = BusSession(one_meter(port, tmp_path, interval=20.0))
        session.start()
        try:
            time.sleep(0.02)  # the first cycle's reads are on the wire
            asked = time.monotonic()
            took = session.run_exclusive(lambda arbiter: time.monotonic() - asked)
        finally:
            session.stop()
    assert took < 3.0, f"run_exclusive waited {took:.1f} s for the live thread"
