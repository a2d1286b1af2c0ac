"""The app's main screens as scenes on the scripted engine, for snapshots and screenshots.

Each scene builds the app, and a ``run_before`` coroutine brings it to the screen shown.
Nothing depends on wall time or on a real port: the engine is scripted and the clock fixed.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from connect_ports import PORTS
from scripted_engine import T0, ScriptedEngine, reference_config
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, ProgressBar

from emtui.core.bus.link import Outcome
from emtui.core.bus.scanner import FoundDevice
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.config import BusConfig
from emtui.sim.wiring import parse_wiring
from emtui.ui.app import EmtuiApp
from emtui.ui.commission import CommissionScreen
from emtui.ui.connect import ConnectApp
from emtui.ui.messages import DeviceFound, ScanProgressed
from emtui.ui.raw_screen import RawScreen
from emtui.ui.run import open_engine
from emtui.ui.scan_screen import ScanScreen
from emtui.ui.setup_screen import SetupScreen

Scene = tuple[App[Any], Callable[[Pilot[Any]], Awaitable[None]]]


#: Where the scenes say files go: fixed, so pictures do not change with a temp dir's name (the
#: scripted engine never writes there).
SHOWN_ROOT = Path("/var/lib/emtui")


def _app(tmp: Path) -> tuple[EmtuiApp, ScriptedEngine]:
    engine = ScriptedEngine(reference_config(SHOWN_ROOT))
    app = EmtuiApp(engine, config=engine.config, clock=lambda: T0 + 0.4)
    app.logging_state_every = 0.0  # no wall time in the pictures
    return app, engine


async def _settle(pilot: Pilot[None], app: EmtuiApp) -> None:
    await pilot.pause()
    app.refresh_view()
    await pilot.pause()


def overview(tmp: Path) -> Scene:
    """Four pumps polled, one meter timing out."""
    app, engine = _app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        engine.poll()
        engine.fail(3)
        engine.poll()
        await _settle(pilot, app)

    return app, before


def meter_tab(tmp: Path) -> Scene:
    """Meter 1's tab with every value read once."""
    app, engine = _app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        engine.poll()
        await pilot.press("1")
        engine.refresh_extras(1)
        engine.poll()
        await pilot.press("down", "down")
        await _settle(pilot, app)

    return app, before


def scan_in_progress(tmp: Path) -> Scene:
    """The scan screen part-way through a full scan (id 121 of 247), three meters found.

    The engine's news is posted as the scan worker would post it, so the picture does not
    depend on thread timing.
    """
    app, _ = _app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ScanScreen)
        screen.running = True
        screen.query_one(ProgressBar).update(total=247, progress=0)
        for i in (1, 2, 3):
            device = FoundDevice(
                id=i,
                reply="ok",
                rtt_ms=29.4 + i,
                found_after=0.03 * i,
                identity={"model": "EM6400NG", "serial": f"2314{i:05d}", "name": f"Pump {i}"},
            )
            screen.post_message(DeviceFound(device))
        screen.post_message(ScanProgressed(120, 247, 121))
        await pilot.pause()
        await pilot.pause()

    return app, before


def logging_on(tmp: Path) -> Scene:
    """Logging started from the app: where rows go and that it stops with the app."""
    app, engine = _app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        await pilot.press("l")
        await app.workers.wait_for_complete()
        for _ in range(3):
            engine.poll()
        await _settle(pilot, app)

    return app, before


SCENES: dict[str, Callable[[Path], Scene]] = {
    "overview": overview,
    "meter-tab": meter_tab,
    "scan-in-progress": scan_in_progress,
    "logging-on": logging_on,
}


def raw_view(tmp: Path) -> Scene:
    """The raw view one register late on frequency (3111): the decoder and the hint."""
    app, _ = _app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        screen.query_one("#raw-start", Input).value = "3111"
        screen.query_one("#raw-count", Input).value = "12"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()

    return app, before


def traffic(tmp: Path) -> Scene:
    """The traffic monitor after a raw read, a CRC error and a wrong-id reply."""
    app, engine = _app(tmp)
    app.traffic.tz = datetime.UTC  # the same picture in every time zone

    async def before(pilot: Pilot[None]) -> None:
        engine.read_raw(1, 3109, 2)
        engine.emit_traffic(
            TrafficRecord(
                T0 + 1, 2, bytes.fromhex("02030C250002D6A3"), b"\x02\x03\x04\x00",
                Outcome.CRC, 0.05, function=3,
            )
        )  # fmt: skip
        engine.emit_traffic(
            TrafficRecord(
                T0 + 2, 3, bytes.fromhex("03030C250002D772"), bytes.fromhex("0403044248"),
                Outcome.WRONG_ID, 0.05, function=3, other_id=4,
            )
        )  # fmt: skip
        await pilot.press("t")
        await pilot.pause()

    return app, before


SCENES["raw-view"] = raw_view
SCENES["traffic"] = traffic


def _writing_app(tmp: Path) -> tuple[EmtuiApp, ScriptedEngine]:
    """An app started with --allow-writes; its audit log in ``tmp`` (never the shown root)."""
    app, engine = _app(tmp)
    engine.config = dataclasses.replace(engine.config, state_dir=tmp / "state")
    engine.allow_writes = True
    return app, engine


def raw_write(tmp: Path) -> Scene:
    """The raw view's write dialog (ctrl+t) with the frame shown, waiting for y."""
    app, _ = _writing_app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        screen.query_one("#raw-start", Input).value = "5260"
        screen.query_one("#raw-count", Input).value = "4"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("ctrl+t")
        await pilot.pause()
        app.screen.query_one("#write-values", Input).value = "1234"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()

    return app, before


def setup_confirm(tmp: Path) -> Scene:
    """Meter 1's setup dialog (e) to id 7, stopped at the command block, waiting for y."""
    app, _ = _writing_app(tmp)

    async def before(pilot: Pilot[None]) -> None:
        await pilot.press("1", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        dialog.query_one("#setup-id", Input).value = "7"
        await pilot.press("enter")
        for _ in range(100):
            if dialog.state == "confirm":
                break
            await pilot.pause(0.02)
        await pilot.pause()
        await pilot.pause()

    return app, before


SCENES["raw-write"] = raw_write
SCENES["setup-confirm"] = setup_confirm


def commission(tmp: Path) -> Scene:
    """The Commission screen after 15 s of polls, meter 2 with its phase A CT reversed: the
    verdict table, meter 2's reasons (selected with right) and its phasors."""
    now = [T0]
    engine = ScriptedEngine(reference_config(SHOWN_ROOT), clock=lambda: now[0], live=True)
    engine.sim[2].set_wiring(parse_wiring("2:ct-reversed:A")[1])
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    app.logging_state_every = 0.0

    async def before(pilot: Pilot[None]) -> None:
        await pilot.press("c")
        await pilot.pause()
        for _ in range(15):
            engine.poll()
            now[0] += 1.0
        await pilot.press("right")
        await _settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        screen.refresh_view()
        await pilot.pause()

    return app, before


SCENES["commission"] = commission


def connect(tmp: Path) -> Scene:
    """The connection dialog of ``emtui`` started with no port: three ports, an adapter's
    by-id name preselected, one port held by a logger (the listing is fixed)."""
    config = dataclasses.replace(reference_config(SHOWN_ROOT), bus=BusConfig(), meters=())
    app = ConnectApp(config, open_engine, list_ports=lambda: list(PORTS))

    async def before(pilot: Pilot[Any]) -> None:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()

    return app, before


SCENES["connect"] = connect
