"""The raw register view (r), its decoder and hint, and the traffic monitor (t), driven by
keys on the scripted engine: raw view → decoder → hint → traffic → save."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from scripted_engine import T0, ScriptedEngine, reference_config
from textual.pilot import Pilot
from textual.widgets import Input, Static

from emtui.core.bus.link import Outcome
from emtui.core.bus.traffic import TrafficRecord
from emtui.ui.app import EmtuiApp
from emtui.ui.raw_screen import RawScreen
from emtui.ui.screens import ConfirmScreen
from emtui.ui.traffic_screen import TrafficScreen
from emtui.ui.widgets.live_table import LiveTable


def make_app(tmp_path: Path) -> tuple[EmtuiApp, ScriptedEngine]:
    engine = ScriptedEngine(reference_config(tmp_path))
    app = EmtuiApp(
        engine, config=engine.config, clock=lambda: T0 + 0.5, traffic_dir=tmp_path / "support"
    )
    return app, engine


def screen_text(app: EmtuiApp) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


async def wait_for(pilot: Pilot[None], condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await pilot.pause(0.05)
    return bool(condition())  # type: ignore[operator]


async def _read(pilot: Pilot[None], screen: RawScreen, start: int, count: int) -> None:
    screen.query_one("#raw-start", Input).value = str(start)
    screen.query_one("#raw-count", Input).value = str(count)
    before = screen.reads
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: screen.reads > before)
    await pilot.pause()


def _frequency(engine: ScriptedEngine, device_id: int = 1) -> float:
    high, low = engine.sim[device_id].read(3, 3109, 2)
    return float(struct.unpack(">f", struct.pack(">HH", high, low))[0])


async def test_raw_view_reads_a_block_with_names_and_formats(tmp_path: Path) -> None:
    """r opens the raw view; a block at 3110 shows the map's name, hex and float32 ABCD equal
    to the meter's frequency; base 0 renumbers rows as addresses; the format cycles."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 3110, 4)
        table = screen.query_one(LiveTable)
        assert engine.raw_reads[-1] == (1, 3109, 4, 3)
        assert table.cell("3110", "name") == "frequency"
        shown = float(table.cell("3110", "value"))  # the shortest text of the float32
        assert struct.unpack(">f", struct.pack(">f", shown))[0] == _frequency(engine)
        assert table.cell("3110", "reg") == "3110"
        await pilot.press("ctrl+b")
        assert table.cell("3110", "reg") == "3109"
        assert screen.query_one("#raw-start", Input).value == "3109"
        await pilot.press("ctrl+b", "ctrl+f")
        assert screen.format == "uint64"
        assert "base 1" in str(screen.query_one("#raw-status", Static).render())


async def test_decoder_shows_every_order_and_the_one_off_hint(tmp_path: Path) -> None:
    """Reading frequency one register late (3111) the hint says 3110 gives a plausible
    frequency; ctrl+y shifts the block and the hint goes; the decoder lists all orders."""
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 3111, 2)
        hint = str(screen.query_one("#raw-hint", Static).render())
        assert "register 3110 (-1)" in hint and "Hz" in hint
        decoder = screen.decoder
        for label in ("ABCD", "CDAB", "BADC", "DCBA", "big-endian", "word-swapped", "float32"):
            assert label in decoder
        await pilot.press("ctrl+y")
        assert await wait_for(pilot, lambda: screen.first == 3110)
        await pilot.pause()
        assert str(screen.query_one("#raw-hint", Static).render()) == ""


async def test_one_early_gives_the_hint_too(tmp_path: Path) -> None:
    """Reading at 3109 (one early) the hint points at 3110 (+1)."""
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 3109, 4)
        assert "register 3110 (+1)" in str(screen.query_one("#raw-hint", Static).render())


async def test_exception_reply_says_its_meaning(tmp_path: Path) -> None:
    """A block past the meter's registers shows exception 02 and what it means."""
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 60001, 4)
        status = str(screen.query_one("#raw-status", Static).render())
        assert "exception 02" in status and "does not have" in status


async def test_a_block_touching_5680_asks_first(tmp_path: Path) -> None:
    """Register 5680 acts when read: the view asks, and nothing is read on "no"."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        screen.query_one("#raw-start", Input).value = "5679"
        screen.query_one("#raw-count", Input).value = "3"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert not any(a <= 5679 < a + n for _, a, n, _ in engine.raw_reads)


async def test_changed_value_is_highlighted_for_one_refresh(tmp_path: Path) -> None:
    """A register that changed between two reads is marked; on the next read it is not."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 3110, 4)
        engine.raw_overrides[1] = {3110: 0x1234}  # wire address 3110 = register 3111
        await _read(pilot, screen, 3110, 4)
        table = screen.query_one(LiveTable)
        assert table._rows[1].cells["hex"] == ("1234", "warn")
        assert table._rows[0].cells["hex"][1] == ""
        await _read(pilot, screen, 3110, 4)
        assert table._rows[1].cells["hex"] == ("1234", "")


async def test_live_polling_reads_at_its_rate(tmp_path: Path) -> None:
    """ctrl+g polls the block again and again; ctrl+g again stops it."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 3110, 20)
        await pilot.press("ctrl+r", "ctrl+r")  # 2 Hz → 5 Hz → 0.5 Hz ... cycle to 5
        screen.rate = 5.0
        await pilot.press("ctrl+g")
        assert await wait_for(pilot, lambda: screen.reads >= 4, timeout=5)
        await pilot.press("ctrl+g")
        await pilot.pause(0.3)
        reads = screen.reads
        await pilot.pause(0.6)
        assert screen.reads == reads
        assert len(engine.raw_reads) >= 4


async def test_traffic_shows_marks_filters_pauses_and_saves(tmp_path: Path) -> None:
    """Raw reads appear in t as TX/RX hex lines; CRC and wrong-id replies are counted and
    kept under the problems filter; the id filter works; w saves a text file."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RawScreen)
        await _read(pilot, screen, 3110, 2)
        await pilot.press("escape")
        engine.emit_traffic(
            TrafficRecord(
                T0,
                2,
                bytes.fromhex("02030C250002D6A3"),
                b"\x02\x03\x04\x00",
                Outcome.CRC,
                0.05,
                function=3,
            )
        )
        engine.emit_traffic(
            TrafficRecord(
                T0,
                3,
                bytes.fromhex("03030C250002D772"),
                b"\x04\x03\x04\x42\x48\0\0",
                Outcome.WRONG_ID,
                0.05,
                function=3,
                other_id=4,
            )
        )
        await pilot.press("t")
        traffic = app.screen
        assert isinstance(traffic, TrafficScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "TX    id   1 fc 03 len   8  01 03 0C 25 00 02" in text
        assert "CRC error" in text and "wrong id 4" in text
        assert "CRC 1" in text and "wrong id 1" in text
        await pilot.press("e")  # problems only
        await pilot.pause()
        assert " TX    id   1 " not in screen_text(app)
        await pilot.press("e", "e", "i")  # back to all; id 1 only
        await pilot.pause()
        text = screen_text(app)
        assert " id   1 " in text and "CRC error" not in text
        await pilot.press("space")
        engine.read_raw(1, 3109, 2)
        traffic.refresh_lines()
        await pilot.pause()
        assert text.count(" TX ") == screen_text(app).count(" TX ")  # paused
        await pilot.press("space", "i")  # resume; id 2
        await pilot.press("w")
        await pilot.pause()
        assert traffic.saved is not None
        saved = traffic.saved.read_text()
        assert saved.startswith("# emtui traffic: 1 record(s), id 2")
        assert "CRC error" in saved


async def test_tabs_are_not_redrawn_under_a_full_screen(tmp_path: Path) -> None:
    """While the raw view covers the tabs, the app's refresh leaves the hidden overview alone
    (its redraws would still reach the terminal: bytes over SSH); back on it, it catches up."""
    from emtui.ui.widgets.overview import Overview

    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen_stack[0].query_one(Overview).table
        before = table.cell("1", "freq")  # not read yet
        await pilot.press("r")
        await pilot.pause()
        engine.poll()
        await pilot.pause()
        app.refresh_view()
        assert table.cell("1", "freq") == before
        await pilot.press("escape")
        await pilot.pause()
        app.refresh_view()
        assert table.cell("1", "freq") not in (before, "")
