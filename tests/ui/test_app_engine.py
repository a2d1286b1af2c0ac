"""The app on the real engine: a bus emtui did not write, the logging toggle, a logger that
holds the port. These run the real RTU code path over RTU-over-TCP on the loopback."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI
from pymodbus_server import FREQUENCIES, frequency_bus

from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.log.livefile import find_live
from emtui.core.observer import LoggerObserver
from emtui.core.session import BusSession
from emtui.sim.bus import SimulatedBus
from emtui.ui.app import EmtuiApp
from emtui.ui.run import open_engine
from emtui.ui.widgets.overview import Overview


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_config(port: str, root: Path, ids: tuple[int, ...] = (1, 2, 3, 4)) -> Config:
    return Config(
        bus=BusConfig(port=port, baud=19200, parity="E"),
        meters=tuple(MeterConfig(id=i, label=f"Pump {i}") for i in ids),
        logging=LoggingConfig(interval=1.0, data_dir=root / "data"),
        upload=UploadConfig(target=None, site="test"),
        state_dir=root / "state",
    )


async def wait_until(pilot: object, condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await pilot.pause(0.1)  # type: ignore[attr-defined]
    return bool(condition())  # type: ignore[operator]


# -- a bus emtui did not write: pymodbus' own server ----------------------------------------------


@pytest.fixture
def pymodbus_bus() -> Iterator[tuple[str, dict[int, float]]]:
    """pymodbus' TCP server with RTU framing (RTU over TCP), two devices with known
    frequencies at register 3110 (wire address 3109), float32 high word first."""
    with frequency_bus() as port:
        yield port, dict(FREQUENCIES)


async def test_overview_shows_the_known_frequency_of_a_pymodbus_bus(
    tmp_path: Path, pymodbus_bus: tuple[str, dict[int, float]]
) -> None:
    """Pointed at an RTU-over-TCP bus emtui did not write, the overview shows each meter's
    known frequency at 0.01 Hz."""
    port, frequencies = pymodbus_bus
    config = site_config(port, tmp_path, ids=(1, 2))
    session = BusSession(config)
    session.start()
    app = EmtuiApp(session, config=config, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(Overview).table

        def shown() -> bool:
            app.refresh_view()
            return all(table.cell(str(i), "freq") not in ("", "—") for i in frequencies)

        assert await wait_until(pilot, shown, 10)
        for device_id, frequency in frequencies.items():
            assert table.cell(str(device_id), "freq") == f"{frequency:.2f}"


# -- the logging toggle writes what emtui --log writes --------------------------------------------


@pytest.fixture
def sim_bus() -> Iterator[str]:
    """The simulated reference site over RTU-over-TCP (paced 19200 8E1)."""
    with SimulatedBus(ids=(1, 2, 3, 4), running=True) as bus:
        yield bus.start_tcp("127.0.0.1", 0, framing="rtu")


def _rows(data_dir: Path, device_id: int) -> list[dict[str, str]]:
    files = sorted((data_dir / f"meter_{device_id}").glob("*.csv"))
    assert len(files) == 1, files
    with files[0].open(newline="") as f:
        return list(csv.DictReader(f))


def _header(data_dir: Path, device_id: int) -> list[str]:
    files = sorted((data_dir / f"meter_{device_id}").glob("*.csv"))
    with files[0].open(newline="") as f:
        return next(csv.reader(f))


@pytest.mark.slow
async def test_l_writes_the_rows_emtui_log_writes_and_l_stops_them(
    tmp_path: Path, sim_bus: str
) -> None:
    """l starts the logging worker: every meter gets the design §8 CSV with the same header as
    emtui --log writes; l stops it and no more rows come."""
    config = site_config(sim_bus, tmp_path / "app")
    session = BusSession(config)
    session.start()
    app = EmtuiApp(session, config=config, start_engine=False)
    data = config.logging.data_dir
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("l")
        await app.workers.wait_for_complete()

        def three_rows() -> bool:
            files = list((data / "meter_4").glob("*.csv")) if (data / "meter_4").is_dir() else []
            return bool(files) and len(files[0].read_text().splitlines()) >= 4

        assert await wait_until(pilot, three_rows, 15)
        await pilot.press("l")
        await app.workers.wait_for_complete()
        assert not session.logging
        counts = {i: len(_rows(data, i)) for i in (1, 2, 3, 4)}
        await pilot.pause(2.5)
        assert {i: len(_rows(data, i)) for i in (1, 2, 3, 4)} == counts  # stopped
    for device_id in (1, 2, 3, 4):
        rows = _rows(data, device_id)
        assert len(rows) >= 3 and all(r["status"] == "ok" for r in rows)
        assert 49.0 < float(rows[-1]["frequency"]) < 51.0
    # the headless logger on the same bus writes the same columns
    headless = tmp_path / "headless"
    subprocess.run(
        [
            *EMTUI,
            "--log",
            "--port",
            sim_bus,
            "--ids",
            "1-4",
            "--cycles",
            "2",
            "--interval",
            "0",
            "--data-dir",
            str(headless / "data"),
            "--state-dir",
            str(headless / "state"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for device_id in (1, 2, 3, 4):
        assert _header(data, device_id) == _header(headless / "data", device_id)


# -- a headless logger holds the port -------------------------------------------------------------


@pytest.mark.slow
async def test_a_headless_logger_keeps_the_port_and_the_app_shows_its_values(
    tmp_path: Path, sim_bus: str
) -> None:
    """With emtui --log on the bus, the app does not fight for the port: it shows that logger's
    latest values and status read-only, names its PID, and refuses scan and logging."""
    state = tmp_path / "logger-state"
    logger = subprocess.Popen(
        [
            *EMTUI,
            "--log",
            "--port",
            sim_bus,
            "--ids",
            "1-4",
            "--data-dir",
            str(tmp_path / "logger-data"),
            "--state-dir",
            str(state),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        live = None
        while time.monotonic() < deadline:
            live = find_live(sim_bus)
            if live and all("time" in m for m in live["meters"]):
                break
            time.sleep(0.2)
        assert live is not None and live["pid"] == logger.pid
        config = site_config(sim_bus, tmp_path / "app")
        config = Config(
            bus=config.bus,
            meters=config.meters,
            logging=config.logging,
            upload=config.upload,
            state_dir=state,
        )
        engine, note = open_engine(config, config.bus.settings())
        assert isinstance(engine, LoggerObserver)
        assert f"PID {logger.pid}" in note and "systemctl stop emtui" in note
        app = EmtuiApp(engine, config=config, note=note, start_engine=False)
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.query_one(Overview).table

            def shown() -> bool:
                app.refresh_view()
                return all(table.cell(str(i), "freq") not in ("", "—") for i in (1, 2, 3, 4))

            assert await wait_until(pilot, shown, 10)
            for i in (1, 2, 3, 4):
                assert 49.0 < float(table.cell(str(i), "freq")) < 51.0
            await pilot.press("s")
            await pilot.press("l")
            await pilot.pause()
            assert app.screen is app.screen_stack[0]  # no scan screen
            panel = str(app.query_one(Overview).logging_panel.render())
            assert f"PID {logger.pid}" in panel
        engine.stop()
    finally:
        logger.terminate()
        logger.wait(15)
    assert logger.returncode == 0
    assert find_live(sim_bus) is None  # the logger removed its live file
    document = json.loads((state / "status.json").read_text())
    assert document["stopped"]
