"""The bus load in the app's header: the smoothed poll cycle (CycleAverage) is near its steady
value after a few cycles, even when the first contact with the meters was slow."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.session import BusSession, CycleAverage
from emtui.sim.bus import Faults, SimulatedBus


def test_first_cycle_is_not_counted_then_a_running_mean() -> None:
    """A slow first cycle (first contact) is skipped; the next cycles give their mean until
    10 are counted: three cycles of 0.98 s after a 1.6 s one read exactly 0.98 s."""
    average = CycleAverage()
    average.add(1.6)
    assert average.value is None  # still measuring
    for _ in range(3):
        average.add(0.98)
    assert average.value == pytest.approx(0.98)


def test_one_slow_cycle_weighs_at_most_a_tenth() -> None:
    """Past the running mean, one 0.25 s timeout moves the figure by at most 0.025 s, and it
    fades (exponential over about 10 cycles); a lasting change is followed."""
    average = CycleAverage()
    for _ in range(20):
        average.add(0.98)
    average.add(1.23)
    assert average.value == pytest.approx(1.005)
    for _ in range(10):
        average.add(0.98)
    assert average.value is not None and average.value < 0.99
    for _ in range(40):
        average.add(1.5)
    assert average.value == pytest.approx(1.5, abs=0.01)


def test_reset_starts_the_warm_up_again() -> None:
    """After a reset (a new connection, new meters) the next first cycle is skipped again."""
    average = CycleAverage()
    for took in (1.0, 0.5, 0.5):
        average.add(took)
    average.reset()
    average.add(3.0)
    assert average.value is None
    average.add(0.6)
    assert average.value == pytest.approx(0.6)


@pytest.mark.slow
def test_header_load_after_a_slow_first_contact_is_near_steady(tmp_path: Path) -> None:
    """On the paced simulator (2 meters, 19200 8E1, interval 0.5 s) meter 1 answers its first
    requests late (past the timeout, so the first cycle has timeouts and retries): the bus
    load read after 4 cycles is within 5 % of the one after 16 (the old average, seeded by
    the first cycle, read several times the steady load there)."""
    with SimulatedBus(ids=(1, 2), running=True) as sim:
        port = sim.start_tcp("127.0.0.1", 0, framing="rtu")
        sim.set_faults(1, Faults(slow=0.6))
        config = Config(
            bus=BusConfig(port=port, baud=19200, parity="E"),
            meters=(MeterConfig(id=1), MeterConfig(id=2)),
            logging=LoggingConfig(interval=0.5, data_dir=tmp_path / "data"),
            upload=UploadConfig(target=None, site="t"),
            state_dir=tmp_path / "state",
        )
        session = BusSession(config)
        session.start()
        try:
            averages = session._cycles

            def wait(cycles: int) -> None:
                deadline = time.monotonic() + 30
                while averages.seen < cycles:
                    assert time.monotonic() < deadline, "the cycles did not come"
                    time.sleep(0.01)

            def load_after(cycles: int) -> float:
                wait(cycles)
                load = session.bus_load()
                assert load is not None
                return load

            wait(1)
            assert session.bus_load() is None  # the first contact is not counted
            sim.set_faults(1, Faults())  # the first contact was slow; it answers from now on
            early = load_after(4)
            steady = load_after(16)
        finally:
            session.stop()
    assert early == pytest.approx(steady, rel=0.05), (early, steady)
    assert steady < 1.0
