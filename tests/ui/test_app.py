"""The app driven by keys (Textual Pilot) on a scripted engine: what a technician sees."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from helpers import EMTUI
from scripted_engine import T0, ScriptedEngine, reference_config
from textual.widgets import TabbedContent

from emtui.core.bus.scanner import FoundDevice
from emtui.core.maps.display import display_value
from emtui.ui.app import EmtuiApp
from emtui.ui.scan_screen import ScanScreen
from emtui.ui.screens import ConfirmScreen, HelpScreen
from emtui.ui.widgets.meter_tab import MeterTab
from emtui.ui.widgets.overview import Overview


def make_app(tmp_path: Path, **kwargs: object) -> tuple[EmtuiApp, ScriptedEngine]:
    engine = ScriptedEngine(reference_config(tmp_path))
    app = EmtuiApp(engine, config=engine.config, clock=lambda: T0 + 0.5, **kwargs)  # type: ignore[arg-type]
    return app, engine


def screen_text(app: EmtuiApp) -> str:
    """The text on the app's current screen, line by line (no styles)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def expected_frequency(engine: ScriptedEngine, device_id: int) -> str:
    """The frequency of a scripted meter at the display precision (0.01 Hz)."""
    info = engine.meters[device_id - 1]
    entry = info.map.get("frequency")
    sample = engine._sample(info, [entry])
    return display_value(sample.values["frequency"], entry)


async def test_overview_shows_every_meter_and_its_frequency_at_80x24(tmp_path: Path) -> None:
    """All four meters with frequency at 0.01 Hz, V, I, kW, PF, kWh fit 80×24."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        engine.poll()
        await pilot.pause()
        app.refresh_view()
        await pilot.pause()
        table = app.query_one(Overview).table
        assert table.row_keys == ["1", "2", "3", "4"]
        for device_id in (1, 2, 3, 4):
            freq = table.cell(str(device_id), "freq")
            assert freq == expected_frequency(engine, device_id)
            assert len(freq.split(".")[1]) == 2  # 0.01 Hz
            assert table.cell(str(device_id), "link") == "ok"
            assert table.cell(str(device_id), "state") == "run"
        screen = screen_text(app)
        for device_id in (1, 2, 3, 4):
            assert expected_frequency(engine, device_id) in screen


async def test_a_meter_that_dies_shows_its_status_and_no_stale_number(tmp_path: Path) -> None:
    """A meter that stops answering: its link says timeout and its values show — (not read), never
    the last number as if it were current; the others carry on; it comes back by itself."""
    now = [T0 + 0.5]
    engine = ScriptedEngine(reference_config(tmp_path))
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    good = expected_frequency(engine, 2)
    async with app.run_test(size=(100, 30)) as pilot:
        engine.poll()
        engine.fail(2)
        now[0] += 10
        engine.poll()
        await pilot.pause()
        app.refresh_view()
        table = app.query_one(Overview).table
        assert table.cell("2", "link") == "timeout"
        assert table.cell("2", "freq") == "—"
        assert table.cell("2", "age") == "10s"  # since its last good sample
        assert table.cell("1", "link") == "ok"
        assert table.cell("1", "freq") == expected_frequency(engine, 1)
        engine.recover(2)
        engine.poll()
        await pilot.pause()
        app.refresh_view()
        assert table.cell("2", "link") == "ok"
        assert table.cell("2", "freq") == good


async def test_meter_tab_groups_values_with_units_registers_and_link_stats(tmp_path: Path) -> None:
    """Key 1 opens meter 1's tab: values grouped as the map groups them, with unit and register."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        engine.poll()
        await pilot.press("1")
        await pilot.pause()
        assert engine.focus == 1
        app.refresh_view()
        tab = app.query_one("#meter-1", MeterTab)
        keys = tab.table.row_keys
        assert keys[0] == "group:realtime"
        assert "frequency" in keys and "serial_number" in keys
        assert tab.table.cell("frequency", "value") == expected_frequency(engine, 1)
        assert tab.table.cell("frequency", "unit") == "Hz"
        assert tab.table.cell("frequency", "register") == "3110"
        assert tab.table.cell("frequency", "low") == tab.table.cell("frequency", "value")
        assert "req 3" in str(tab.stats.render())
        # f reads the tab's other registers now
        await pilot.press("f")
        await pilot.pause()
        assert engine.refreshed == [1]
        app.refresh_view()
        assert tab.table.cell("serial_number", "value") not in ("", "—")
        # o goes back
        await pilot.press("o")
        await pilot.pause()
        assert engine.focus is None


async def test_bus_full_says_which_values_are_not_refreshed(tmp_path: Path) -> None:
    """When the interval has no room for the tab's other registers, the tab says so and how."""
    app, engine = make_app(tmp_path)
    engine.starved = True
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        app.refresh_view()
        note = str(app.query_one("#meter-2", MeterTab).note.render())
        assert "Bus full" in note and "reads all now" in note


async def test_header_shows_bus_load_and_warns_past_100_percent(tmp_path: Path) -> None:
    """The header gives the poll cycle against the interval as a load, and OVER past 100 %."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        app.refresh_view()
        await pilot.pause()
        assert "bus 98 % (0.98 s of 1 s)" in screen_text(app)
        engine.cycle = 1.2
        app.refresh_view()
        await pilot.pause()
        assert "bus 120 % (1.20 s of 1 s) OVER" in screen_text(app)


async def test_scan_cancel_rescan_at_other_settings_and_open_tabs(tmp_path: Path) -> None:
    """Scan: meters appear as they answer; escape cancels; a changed baud reopens the bus; a opens
    a tab per meter found."""
    app, engine = make_app(tmp_path)
    engine.scan_result = [
        FoundDevice(
            id=i,
            reply="ok",
            rtt_ms=31.0 + i,
            found_after=0.1 * i,
            identity={"model": "EM6400NG", "serial": f"23100{i}", "name": f"Pump {i}"},
        )
        for i in (1, 2, 5)
    ]
    engine.scan_gate = threading.Event()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ScanScreen)
        screen.query_one("#ids").value = "1-6"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert screen.running
        await pilot.press("escape")  # cancel: what was found stays
        engine.scan_gate.set()
        for _ in range(50):
            await pilot.pause(0.05)
            if not screen.running:
                break
        assert not screen.running
        assert screen.report is not None and screen.report.cancelled
        assert 1 in screen.found
        # rescan at 9600 8N1: the engine reopens the bus first
        engine.scan_gate = None
        screen.query_one("#baud").value = "9600"  # type: ignore[attr-defined]
        screen.query_one("#format").value = "8N1"  # type: ignore[attr-defined]
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause(0.05)
            if not screen.running:
                break
        assert engine.reconnected and engine.reconnected[-1].baud == 9600
        assert engine.reconnected[-1].parity == "N"
        assert sorted(screen.found) == [1, 2, 5]
        assert screen.table.cell("5", "serial") == "231005"
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, ScanScreen)
        assert [m.id for m in engine.meters] == [1, 2, 5]
        assert app.query_one(Overview).table.row_keys == ["1", "2", "5"]
        assert app.query("#meter-5")


async def test_scan_progress_shows_the_engines_eta(tmp_path: Path) -> None:
    """The scan screen's progress line shows the time left by the engine's estimate
    (scan_eta), carried on ScanProgressed."""
    app, engine = make_app(tmp_path)
    engine.scan_result = []
    engine.eta = 42.4
    engine.scan_gate = threading.Event()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ScanScreen)
        screen.query_one("#ids").value = "1-6"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert "about 42 s left" in screen_text(app)
        engine.scan_gate.set()
        for _ in range(50):
            await pilot.pause(0.05)
            if not screen.running:
                break


async def test_scan_writes_the_meters_into_the_config_keeping_comments(tmp_path: Path) -> None:
    """w writes id, label and map of new meters into the loaded config with tomlkit; comments and
    other settings stay, and the result passes emtui config check."""
    config_file = tmp_path / "emtui.toml"
    config_file.write_text(
        '# the pump house\n[bus]\nport = "/dev/ttyUSB0"  # the USB adapter\n\n'
        '[[meters]]\nid = 1\nlabel = "Borehole pump"\n'
    )
    app, engine = make_app(tmp_path)
    import dataclasses

    app.config = dataclasses.replace(engine.config, source=config_file)
    engine.scan_result = [
        FoundDevice(id=i, reply="ok", rtt_ms=30.0, found_after=0.1, identity={}) for i in (1, 3)
    ]
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause(0.05)
            if not app.screen.running:  # type: ignore[attr-defined]
                break
        await pilot.press("w")
        await pilot.pause()
    text = config_file.read_text()
    assert "# the pump house" in text and "# the USB adapter" in text
    assert 'label = "Borehole pump"' in text  # an existing meter is left as it is
    assert text.count("[[meters]]") == 2 and "id = 3" in text
    done = subprocess.run(
        [*EMTUI, "config", "check", "--config", str(config_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_logging_toggle_and_quit_asks_first(tmp_path: Path) -> None:
    """l starts the logging worker and the overview says where rows go and that it stops with the
    app; q then asks first; n keeps running; l stops; q quits at once."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("l")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.logging
        engine.poll()
        app.refresh_view()
        screen = screen_text(app)
        assert "LOGGING" in screen and "stops with the app" in screen
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and engine.logging
        await pilot.press("l")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not engine.logging
        await pilot.press("q")
        await pilot.pause()
    assert engine.stopped


async def test_help_lists_every_key_and_the_keymap_remaps_them(tmp_path: Path) -> None:
    """? lists the bindings with their ids; a [keys] keymap moves toggle_logging to L."""
    app, engine = make_app(tmp_path, keymap={"toggle_logging": "L"})
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for binding_id in ("overview", "scan", "toggle_logging", "upload_now", "help", "quit"):
            assert binding_id in text
        await pilot.press("escape")
        await pilot.press("l")
        await app.workers.wait_for_complete()
        assert not engine.logging  # l is no longer bound
        await pilot.press("L")
        await app.workers.wait_for_complete()
        assert engine.logging


async def test_upload_now_runs_off_the_ui_thread(tmp_path: Path) -> None:
    """u asks the engine to upload (in a worker) and says what happened."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("u")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.uploads == 1


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_nothing_breaks_at_small_terminals(tmp_path: Path, size: tuple[int, int]) -> None:
    """Every screen opens at 80×24 and 100×30 and the footer shows the main keys."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        engine.poll()
        for key in ("1", "2", "3", "4", "o", "s", "escape", "question_mark", "escape"):
            await pilot.press(key)
            await pilot.pause()
        text = screen_text(app)
        for hint in ("Scan", "Logging", "Help", "Quit"):
            assert hint in text


def test_the_demo_touches_no_real_data(tmp_path: Path) -> None:
    """--demo: data, state and a saved scan all go under its own temporary folder, and there is
    no upload target."""
    from emtui.ui.run import demo_config

    config = demo_config("socket://127.0.0.1:1", tmp_path)
    assert config.upload.target is None
    for path in (config.logging.data_dir, config.state_dir, config.source):
        assert path is not None and tmp_path in path.parents
    assert [m.id for m in config.meters] == [1, 2, 3, 4]


async def test_ctrl_q_asks_first_while_logging(tmp_path: Path) -> None:
    """Textual's own quit (ctrl+q, the palette's Quit) asks first while logging too."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("l")
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and engine.logging


async def test_quit_with_logging_asks_and_yes_quits(tmp_path: Path) -> None:
    """q with logging on shows the question (it does not quit at once); y quits."""
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("l")
        await app.workers.wait_for_complete()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and app.is_running
        await pilot.press("y")
        await pilot.pause()
    assert engine.stopped


async def test_no_logging_or_second_scan_from_the_scan_screen(tmp_path: Path) -> None:
    """On the scan screen, l is refused (a scan pauses the logger) and s opens no second scan
    screen; a opens the found meters' tabs."""
    app, engine = make_app(tmp_path)
    engine.scan_result = [FoundDevice(id=2, reply="ok", rtt_ms=30.0, found_after=0.1)]
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause(0.05)
            if not app.screen.running:  # type: ignore[attr-defined]
                break
        await pilot.press("l", "s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not engine.logging
        assert sum(isinstance(s, ScanScreen) for s in app.screen_stack) == 1
        await pilot.press("a")
        await pilot.pause()
        assert [m.id for m in engine.meters] == [2]


async def test_f_shows_only_on_a_meter_tab(tmp_path: Path) -> None:
    """The footer offers f (read all) on a meter tab only."""
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "Read all" not in screen_text(app)
        await pilot.press("1")
        await pilot.pause()
        assert "Read all" in screen_text(app)


def test_save_to_the_user_config_keeps_the_loaded_settings(tmp_path: Path) -> None:
    """A scan saved to a new user config (the loaded one is not writable) starts from the
    loaded file's text: configs are not merged, so nothing of it may be lost."""
    from emtui.core.config import load_config
    from emtui.core.configedit import NewMeter, save_meters

    loaded = tmp_path / "etc.toml"
    loaded.write_text('[bus]\nport = "/dev/ttyUSB0"\nbaud = 9600\n\n[logging]\ninterval = 5.0\n')
    user = tmp_path / "user" / "config.toml"
    save_meters(user, [NewMeter(3, "Pump 3")], base=loaded)
    config = load_config(user)
    assert config.bus.port == "/dev/ttyUSB0" and config.bus.baud == 9600
    assert config.logging.interval == 5.0 and config.ids == [3]


def test_save_refuses_a_result_emtui_could_not_read(tmp_path: Path) -> None:
    """Invalid TOML in the file, or a result that would not load, writes nothing."""
    from emtui.core.config import ConfigError
    from emtui.core.configedit import NewMeter, save_meters

    bad = tmp_path / "bad.toml"
    bad.write_text("[bus\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        save_meters(bad, [NewMeter(1, "x")])
    assert bad.read_text() == "[bus\n"
    clash = tmp_path / "clash.toml"
    clash.write_text('[bus]\nbaud = "fast"\n')
    with pytest.raises(ConfigError):
        save_meters(clash, [NewMeter(1, "x")])
    assert "meters" not in clash.read_text()


async def test_help_shows_remapped_meter_keys(tmp_path: Path) -> None:
    """With meter_2 remapped to F2 the help lists each meter key (1 F2 3 … 9), not "1-9",
    and F2 opens the second meter's tab; unmapped, it reads 1-9."""
    app, _engine = make_app(tmp_path, keymap={"meter_2": "f2"})
    async with app.run_test(size=(100, 30)) as pilot:
        row = next(r for r in app.key_rows() if r[2] == "meter_1…meter_9")
        assert row[0] == "1 f2 3 4 5 6 7 8 9"
        await pilot.press("f2")
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "tab-meter-2"
    plain, _ = make_app(tmp_path)
    assert next(r for r in plain.key_rows() if r[2] == "meter_1…meter_9")[0] == "1-9"
