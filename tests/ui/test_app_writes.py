"""Safe writes from the app (issue 9 §4): the raw view's write dialog (ctrl+t), the meter
tab's setup (e) and clock (k) dialogs, driven by keys on the scripted engine (its writes are
audited and applied to its simulated meters as the session's are), and the setup and clock
on a real BusSession over the simulator."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_engine import T0, ScriptedEngine, reference_config
from textual.pilot import Pilot
from textual.widgets import Input, Static

from emtui.core.bus.link import ConnectionSettings
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.bus.writes import AUDIT_FILE, WriteRefused, WriteRequest
from emtui.core.config import (
    KEY_BINDING_IDS,
    BusConfig,
    Config,
    LoggingConfig,
    MeterConfig,
    UploadConfig,
)
from emtui.core.observer import LoggerObserver, ReadOnly
from emtui.core.session import BusSession
from emtui.core.setup import SetupPlan
from emtui.sim.bus import SimulatedBus
from emtui.ui.app import EmtuiApp
from emtui.ui.clock_screen import ClockScreen
from emtui.ui.raw_screen import RawScreen
from emtui.ui.setup_screen import SetupScreen
from emtui.ui.widgets.live_table import LiveTable
from emtui.ui.write_screen import WriteScreen

#: A register in the EM6400NG's unprotected command block: the simulated meter stores it.
SCRATCH = 5260


def make_app(
    tmp_path: Path, allow: bool = True, clock_offset: float = 0.0, **kwargs: object
) -> tuple[EmtuiApp, ScriptedEngine, list[TrafficRecord]]:
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: T0 + clock_offset)
    engine.allow_writes = allow
    traffic: list[TrafficRecord] = []
    engine.add_traffic_listener(traffic.append)
    app = EmtuiApp(engine, config=engine.config, clock=lambda: T0 + 0.5, **kwargs)  # type: ignore[arg-type]
    return app, engine, traffic


def audit_lines(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "state" / AUDIT_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def writes_on_wire(traffic: list[TrafficRecord]) -> list[TrafficRecord]:
    return [r for r in traffic if r.function in (5, 6, 15, 16)]


def notes(app: EmtuiApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def text_of(screen: object, widget_id: str) -> str:
    return str(screen.query_one(f"#{widget_id}", Static).render())  # type: ignore[attr-defined]


async def wait_for(pilot: Pilot[None], condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await pilot.pause(0.05)
    return bool(condition())  # type: ignore[operator]


async def open_write(
    pilot: Pilot[None], app: EmtuiApp, register: int = SCRATCH, count: int = 4
) -> tuple[RawScreen, WriteScreen]:
    """r, read a block at ``register``, ctrl+t on its first row."""
    await pilot.press("r")
    await pilot.pause()
    raw = app.screen
    assert isinstance(raw, RawScreen)
    raw.query_one("#raw-start", Input).value = str(register)
    raw.query_one("#raw-count", Input).value = str(count)
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: raw.reads == 1)
    await pilot.press("ctrl+t")
    await pilot.pause()
    dialog = app.screen
    assert isinstance(dialog, WriteScreen)
    return raw, dialog


async def fill(pilot: Pilot[None], dialog: WriteScreen, field: str, value: str) -> None:
    dialog.query_one(f"#write-{field}", Input).value = value
    await pilot.pause()


# -- raw writes ------------------------------------------------------------------------------


async def test_write_without_allow_writes_is_refused_audited_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    """Without --allow-writes the dialog says how to allow them, and a confirmed write is
    refused: no write frame in the traffic, the meter unchanged, one audit line "refused"."""
    app, engine, traffic = make_app(tmp_path, allow=False)
    async with app.run_test(size=(80, 24)) as pilot:
        _raw, dialog = await open_write(pilot, app)
        assert "start emtui with --allow-writes" in text_of(dialog, "write-allowed")
        await fill(pilot, dialog, "values", "1234")
        await pilot.press("enter")
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        assert "refused" in text_of(dialog, "write-outcome")
        assert "--allow-writes" in text_of(dialog, "write-outcome")
    assert writes_on_wire(traffic) == [] and engine.writes == []
    assert engine.sim[1].read(3, SCRATCH - 1, 1) == [0]
    lines = audit_lines(tmp_path)
    assert len(lines) == 1
    assert str(lines[0]["outcome"]).startswith("refused")
    assert lines[0]["register"] == SCRATCH and lines[0]["values"] == [1234]


async def test_confirmed_fc16_write_changes_the_register_and_is_audited(tmp_path: Path) -> None:
    """enter shows the exact frame with its fields named; y sends it as FC16 (the default);
    the simulated register holds the value, the block is read again and shows it, and the
    audit line holds the frame and "ok"."""
    app, engine, traffic = make_app(tmp_path)
    expected = WriteRequest(1, 16, SCRATCH - 1, (4660,)).frame().hex(" ").upper()
    async with app.run_test(size=(80, 24)) as pilot:
        raw, dialog = await open_write(pilot, app)
        assert dialog.query_one("#write-function", Input).value == "16"
        assert dialog.query_one("#write-register", Input).value == str(SCRATCH)
        await fill(pilot, dialog, "values", "4660")
        await pilot.press("enter")
        frame = text_of(dialog, "write-frame")
        assert f"frame: {expected}" in frame
        for name in ("slave id", "function", "address", "quantity", "byte count", "CRC"):
            assert name in frame
        assert "(FC16)" in frame and f"register {SCRATCH}" in frame
        assert engine.writes == []  # shown, not sent
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        assert "ok: id 1 acknowledged" in text_of(dialog, "write-outcome")
        assert await wait_for(pilot, lambda: raw.reads == 2)  # the block read again
        assert raw.values is not None and raw.values[0] == 4660
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is raw
    assert engine.sim[1].read(3, SCRATCH - 1, 1) == [4660]
    assert [r.function for r in writes_on_wire(traffic)] == [16]
    (line,) = audit_lines(tmp_path)
    assert line["outcome"] == "ok" and line["frame"] == expected and line["function"] == 16


async def test_a_float32_in_cdab_goes_as_two_registers_word_swapped(tmp_path: Path) -> None:
    """ctrl+t cycles the type to float32 and ctrl+o the order to CDAB: 49.9 is written as
    its two words, low word first."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        _raw, dialog = await open_write(pilot, app)
        while dialog.kind != "float32":
            await pilot.press("ctrl+t")
        await pilot.press("ctrl+o")
        assert dialog.order == "CDAB"
        await fill(pilot, dialog, "values", "49.9")
        await pilot.press("enter", "y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
    high, low = struct.unpack(">HH", struct.pack(">f", 49.9))
    assert engine.sim[1].read(3, SCRATCH - 1, 2) == [low, high]


async def test_cancel_sends_nothing(tmp_path: Path) -> None:
    """Frame shown, then n (back to the form) and escape: nothing on the wire, no audit."""
    app, engine, traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        raw, dialog = await open_write(pilot, app)
        await fill(pilot, dialog, "values", "7")
        await pilot.press("enter")
        assert dialog.state == "preview"
        await pilot.press("n")
        assert dialog.state == "edit"
        await pilot.press("enter", "escape")
        await pilot.pause()
        assert app.screen is raw
    assert engine.writes == [] and writes_on_wire(traffic) == []
    assert audit_lines(tmp_path) == []


async def test_id_0_is_impossible(tmp_path: Path) -> None:
    """Id 0 in the form is refused before any frame; the engine refuses it too (audited)."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        _raw, dialog = await open_write(pilot, app)
        await fill(pilot, dialog, "id", "0")
        await fill(pilot, dialog, "values", "1")
        await pilot.press("enter")
        assert dialog.state == "edit"
        assert "never 0" in text_of(dialog, "write-outcome")
        await pilot.press("y")  # typed into the form, not a confirmation
    assert engine.writes == []
    with pytest.raises(WriteRefused, match="id 0"):
        engine.write(WriteRequest(0, 16, SCRATCH - 1, (1,)))
    assert engine.writes == [] and str(audit_lines(tmp_path)[0]["outcome"]).startswith("refused")


async def test_fc06_only_when_typed_and_a_coil_block_defaults_to_fc05(tmp_path: Path) -> None:
    """Registers default to FC16; FC06 goes only when typed into the function field; a coil
    block (function 1) defaults to FC05, which the EM6400NG refuses (exception 01, named)."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        raw, dialog = await open_write(pilot, app)
        await fill(pilot, dialog, "function", "6")
        await fill(pilot, dialog, "values", "9")
        await pilot.press("enter")
        assert "(FC06)" in text_of(dialog, "write-frame")
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        await pilot.press("escape")
        await pilot.pause()
        raw.query_one("#raw-function", Input).value = "1"
        await pilot.press("ctrl+t")
        await pilot.pause()
        coil = app.screen
        assert isinstance(coil, WriteScreen)
        assert coil.query_one("#write-function", Input).value == "5"
        await fill(pilot, coil, "values", "on")
        await pilot.press("enter", "y")
        assert await wait_for(pilot, lambda: coil.state == "done")
        assert "exception 01" in text_of(coil, "write-outcome")
        assert "illegal function" in text_of(coil, "write-outcome")
    assert [w.function for w in engine.writes] == [6, 5]
    assert engine.sim[1].read(3, SCRATCH - 1, 1) == [9]


async def test_a_setup_register_answers_exception_02_with_the_hint(tmp_path: Path) -> None:
    """A raw write to a setup register (6502, baud) is refused by the meter: the outcome
    names exception 02 and points to the command interface (emtui setup)."""
    app, _engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        _raw, dialog = await open_write(pilot, app, register=6500)
        await fill(pilot, dialog, "values", "2")
        await pilot.press("enter", "y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        outcome = text_of(dialog, "write-outcome")
    assert "exception 02" in outcome and "emtui setup" in outcome
    assert audit_lines(tmp_path)[0]["outcome"] == "exception:02"


# -- setup and clock keys --------------------------------------------------------------------


async def test_setup_and_clock_keys_exist_only_on_a_meter_tab_and_can_be_remapped(
    tmp_path: Path,
) -> None:
    """e and k do nothing on the overview; on a meter tab they open their dialogs; both are
    in ? (with their ids), in KEY_BINDING_IDS, and a [keys] map moves setup to x."""
    assert {"setup", "clock"} <= set(KEY_BINDING_IDS)
    app, _engine, _traffic = make_app(tmp_path, keymap={"setup": "x"})
    async with app.run_test(size=(80, 24)) as pilot:
        ids = {row[2] for row in app.key_rows()}
        assert {"setup", "clock"} <= ids
        await pilot.press("k", "x")
        await pilot.pause()
        assert not isinstance(app.screen, ClockScreen | SetupScreen)
        await pilot.press("1", "x")
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("escape", "e")  # e is no longer bound
        await pilot.pause()
        assert not isinstance(app.screen, SetupScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Setup meter" in titles and "Meter clock" in titles


async def test_setup_and_clock_refuse_while_logging_or_read_only(tmp_path: Path) -> None:
    """While logging, e and k say to stop logging first; while a headless logger holds the
    bus, they say to stop it; no dialog opens either way."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("l")
        await app.workers.wait_for_complete()
        await pilot.press("1", "e", "k")
        await pilot.pause()
        assert not isinstance(app.screen, SetupScreen | ClockScreen)
        assert "Stop logging (l) before the setup" in notes(app)
        assert "Stop logging (l) before the clock" in notes(app)
    app, engine, _traffic = make_app(tmp_path)
    engine.read_only = True
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "e")
        await pilot.pause()
        assert not isinstance(app.screen, SetupScreen)
        assert "stop it first" in notes(app)
    assert engine.writes == []


async def test_setup_dialog_readdresses_the_scripted_meter_and_polls_its_new_id(
    tmp_path: Path,
) -> None:
    """e on meter 1's tab: enter at the present settings starts nothing; new id 7, enter: the
    plan, then the command block field by field;
    y sends it; the verdict is ok and, the meter being at the bus's settings, the app polls
    id 7 in place of 1 (its tab rebuilt)."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        await pilot.press("enter")  # the present settings: nothing to do, nothing started
        assert dialog.state == "edit"
        assert "nothing to change" in text_of(dialog, "setup-verdict")
        dialog.query_one("#setup-id", Input).value = "7"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: dialog.state == "confirm")
        steps = text_of(dialog, "setup-steps")
        assert "plan: id 1 at" in steps and "→ id 7" in steps
        assert "(FC16), command 5000" in steps and "(4) address — new id 7" in steps
        assert not any(w.values[0] == 5000 for w in engine.writes)  # not yet sent
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        assert "ok: the meter answers at id 7" in text_of(dialog, "setup-verdict")
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: bool(app.query("#tab-meter-7")))
        assert not app.query("#tab-meter-1")
    assert [m.id for m in engine.meters] == [7, 2, 3, 4]
    assert 7 in engine.sim and 1 not in engine.sim
    assert any(line["purpose"] == "command 5000 (communications setup)" for line in
               audit_lines(tmp_path))  # fmt: skip


async def test_setup_without_allow_writes_is_refused_and_audited(tmp_path: Path) -> None:
    """Without --allow-writes the dialog warns, and a start is refused before anything is
    sent: no write on the wire, one audit line "refused" naming the setup."""
    app, engine, traffic = make_app(tmp_path, allow=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        assert "--allow-writes" in text_of(dialog, "setup-allowed")
        dialog.query_one("#setup-id", Input).value = "7"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        assert "refused" in text_of(dialog, "setup-verdict")
    assert engine.writes == [] and writes_on_wire(traffic) == []
    (line,) = audit_lines(tmp_path)
    assert str(line["outcome"]).startswith("refused") and line["purpose"] == "command 5000 (setup)"


@pytest.fixture
def unsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's clock reported as not NTP-synchronised (a fake timedatectl)."""
    program = tmp_path / "timedatectl"
    program.write_text("#!/bin/sh\necho no\n")
    program.chmod(0o755)
    monkeypatch.setenv("EMTUI_TIMEDATECTL", str(program))


async def test_clock_shows_the_offset_and_sets_it_anyway_within_1_s(
    tmp_path: Path, unsynced: None
) -> None:
    """k shows the meter's clock minutes behind this (injected) clock; s with the clock not
    NTP-synchronised asks "set anyway"; y, then the frame (command 1003) and y: read back,
    the offset is within 1 s."""
    app, engine, _traffic = make_app(tmp_path, clock_offset=300.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "k")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ClockScreen)
        assert await wait_for(pilot, lambda: dialog.state == "idle")
        reading = dialog.reading
        assert reading is not None and reading.meter_time is not None
        # the simulated meter's own clock (the registers), against this (injected) clock
        y, mo, d, h, mi, sec, ms = engine.sim[1].read(3, 1836, 7)
        meter = _dt.datetime(y, mo, d, h, mi, sec, ms * 1000)
        assert reading.meter_time == meter
        expected = meter.timestamp() - (T0 + 300)
        assert reading.offset_s == pytest.approx(expected, abs=0.001) and expected < -100
        assert f"offset        {expected:+.3f} s" in text_of(dialog, "clock-reading")
        await pilot.press("s")
        assert await wait_for(pilot, lambda: dialog.state == "ask")
        assert "NOT NTP-synchronised" in text_of(dialog, "clock-frame")
        await pilot.press("y")
        assert await wait_for(pilot, lambda: "command 1003" in text_of(dialog, "clock-frame"))
        assert engine.writes == []  # the semaphore read, nothing written yet
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.after is not None)
        after = dialog.after
        assert after is not None and after.offset_s is not None and abs(after.offset_s) < 1.0
        assert "set: read back" in text_of(dialog, "clock-outcome")
    assert [w.values[0] for w in engine.writes if w.address == 4999] == [1003]


async def test_clock_set_anyway_declined_sends_nothing(tmp_path: Path, unsynced: None) -> None:
    """Not synchronised, "set anyway" answered n: nothing is written, the dialog says why."""
    app, engine, _traffic = make_app(tmp_path, clock_offset=30.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "k")
        dialog = app.screen
        assert isinstance(dialog, ClockScreen)
        assert await wait_for(pilot, lambda: dialog.state == "idle")
        await pilot.press("s")
        assert await wait_for(pilot, lambda: dialog.state == "ask")
        await pilot.press("n")
        assert await wait_for(pilot, lambda: dialog.state == "idle")
        assert "not set: wait for NTP" in text_of(dialog, "clock-outcome")
    assert engine.writes == [] and audit_lines(tmp_path) == []


async def test_clock_set_without_allow_writes_is_refused(tmp_path: Path) -> None:
    """Without --allow-writes the clock is read, and s is refused (audited), nothing sent."""
    app, engine, _traffic = make_app(tmp_path, allow=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "k")
        dialog = app.screen
        assert isinstance(dialog, ClockScreen)
        assert await wait_for(pilot, lambda: dialog.state == "idle")
        await pilot.press("s")
        assert await wait_for(pilot, lambda: "refused" in text_of(dialog, "clock-outcome"))
    assert engine.writes == []
    (line,) = audit_lines(tmp_path)
    assert line["purpose"] == "command 1003 (set date/time)"


def test_the_headless_loggers_view_refuses_every_write() -> None:
    """LoggerObserver (a logger holds the bus) refuses write, setup, clock read and set."""
    config = reference_config(Path("/nonexistent"))
    settings = ConnectionSettings(port="socket://gateway.site:4001", baud=19200, parity="E")
    observer = LoggerObserver(config, settings, {"pid": 4242, "meters": []})
    assert observer.allow_writes is False
    with pytest.raises(ReadOnly, match="PID 4242"):
        observer.write(WriteRequest(1, 16, SCRATCH - 1, (1,)))
    with pytest.raises(ReadOnly):
        observer.setup_meter(SetupPlan(1, 7), lambda lines: True, lambda line: None)
    with pytest.raises(ReadOnly):
        observer.read_clock(1)
    with pytest.raises(ReadOnly):
        observer.set_clock(1, lambda lines: True)


# -- the real session over the simulator -----------------------------------------------------


@pytest.fixture
def sim_bus() -> Iterator[tuple[SimulatedBus, str]]:
    with SimulatedBus(ids=[1, 2], line_timing=False, seed=9) as bus:
        yield bus, bus.start_tcp()


def sim_config(port: str, root: Path) -> Config:
    return Config(
        bus=BusConfig(port=port, baud=19200, parity="E", timeout=0.3),
        meters=(MeterConfig(id=1, label="Pump 1"), MeterConfig(id=2, label="Pump 2")),
        logging=LoggingConfig(interval=0.5, data_dir=root / "data"),
        upload=UploadConfig(target=None, site="test"),
        state_dir=root / "state",
    )


async def test_setup_dialog_on_a_real_session_over_the_simulator(
    tmp_path: Path, sim_bus: tuple[SimulatedBus, str]
) -> None:
    """On a BusSession polling the simulator, e on meter 2's tab with new id 9: the real
    procedure's steps stream in, the block is confirmed with y, the simulated meter answers
    at id 9 (not 2), and the app then polls id 9 (samples arrive for it)."""
    bus, port = sim_bus
    config = sim_config(port, tmp_path)
    session = BusSession(config)
    session.allow_writes = True
    session.start()
    app = EmtuiApp(session, config=config, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        dialog.query_one("#setup-id", Input).value = "9"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: dialog.state in ("confirm", "done"), 20)
        assert dialog.state == "confirm", text_of(dialog, "setup-verdict")
        steps = text_of(dialog, "setup-steps")
        assert "id 2 at" in steps and "answers" in steps
        assert "nothing answers at id 9" in steps and "command 5000" in steps
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done", 20)
        verdict = text_of(dialog, "setup-verdict")
        assert verdict.startswith("ok: the meter answers at id 9"), verdict
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: bool(app.query("#tab-meter-9")))
        assert await wait_for(pilot, lambda: app.models[9].last_good is not None, 10)
    session.stop()
    assert sorted(bus.meters) == [1, 9]


def test_session_setup_pauses_polling_and_clock_set_within_1_s(
    tmp_path: Path, sim_bus: tuple[SimulatedBus, str]
) -> None:
    """BusSession.setup_meter while the live thread polls: no poll goes on the wire between
    the confirmation and the verdict (polling paused), polling resumes afterwards; then
    set_clock leaves the meter's clock within 1 s of this machine's (read back)."""
    bus, port = sim_bus
    session = BusSession(sim_config(port, tmp_path))
    session.allow_writes = True
    polled: list[tuple[int, float]] = []
    session.add_listener(lambda sample: polled.append((sample.device_id, time.monotonic())))
    session.start()
    try:
        deadline = time.monotonic() + 5
        while not polled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert polled, "live polling did not start"
        window: list[float] = []
        lock = threading.Lock()

        def confirm(lines: object) -> bool:
            with lock:
                window.append(time.monotonic())
            return True

        report = session.setup_meter(SetupPlan(2, 5), confirm, lambda line: None, settle=2.0)
        ended = time.monotonic()
        assert report.ok and report.new_id == 5
        assert not [t for _, t in polled if window[0] < t < ended]
        assert sorted(bus.meters) == [1, 5]
        count = len(polled)
        deadline = time.monotonic() + 5
        while len(polled) == count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(polled) > count, "polling did not resume"
        assert session.set_clock(1, lambda lines: True) is None
        after = session.read_clock(1)
        assert after.offset_s is not None and abs(after.offset_s) < 1.0
        assert after.pi_time.date() == _dt.date.today()
    finally:
        session.stop()
    with pytest.raises(WriteRefused):
        BusSession(sim_config(port, tmp_path)).setup_meter(
            SetupPlan(1, 6), lambda lines: True, lambda line: None
        )


async def test_a_write_without_acknowledgement_says_it_may_have_taken_effect(
    tmp_path: Path,
) -> None:
    """A meter that stops answering: the write times out, the dialog says it may or may not
    have taken effect and that the block is read again; the audit line says timeout."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        _raw, dialog = await open_write(pilot, app)
        engine.fail(1)
        await fill(pilot, dialog, "values", "5")
        await pilot.press("enter", "y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        outcome = text_of(dialog, "write-outcome")
    assert "no acknowledgement (timeout)" in outcome and "may or may not" in outcome
    assert audit_lines(tmp_path)[0]["outcome"] == "timeout"


async def test_a_setup_to_other_line_settings_says_where_the_meter_went(tmp_path: Path) -> None:
    """Setup of meter 3 to 9600 baud (the bus runs 19200): ok, and the app says the meter is
    no longer polled on this bus's settings and what to do; its tab stays as it was."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        dialog.query_one("#setup-baud", Input).value = "9600"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: dialog.state == "confirm")
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        assert "9600 8E1" in text_of(dialog, "setup-verdict")
        await pilot.press("escape")
        await pilot.pause()
        assert "not on this bus's settings" in notes(app) and "Scan (s)" in notes(app)
        assert app.query("#tab-meter-3")
    assert [m.id for m in engine.meters] == [1, 2, 3, 4]
    assert engine.sim[3].baud == 9600


async def test_setup_answered_no_sends_no_command_block(tmp_path: Path) -> None:
    """At the command block, n: the verdict says nothing was sent; the only write is the
    semaphore given back, the meter keeps its id."""
    app, engine, _traffic = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        dialog.query_one("#setup-id", Input).value = "7"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: dialog.state == "confirm")
        await pilot.press("n")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        assert "not sent: answered no" in text_of(dialog, "setup-verdict")
    assert [(w.address, w.purpose) for w in engine.writes] == [(5679, "release")]
    assert 1 in engine.sim and 7 not in engine.sim


async def test_the_dialog_takes_the_selected_row_and_its_value(tmp_path: Path) -> None:
    """With the cursor on the block's third row, ctrl+t offers that register and its present
    value; a write there leaves the rows around it unchanged."""
    app, engine, _traffic = make_app(tmp_path)
    engine.sim[1].write(SCRATCH + 1, [77])  # register SCRATCH + 2 holds 77
    async with app.run_test(size=(80, 24)) as pilot:
        raw, first = await open_write(pilot, app)
        await pilot.press("escape")
        await pilot.pause()
        raw.query_one(LiveTable).move_cursor(2)
        await pilot.pause()
        await pilot.press("ctrl+t")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, WriteScreen) and dialog is not first
        assert dialog.query_one("#write-register", Input).value == str(SCRATCH + 2)
        assert dialog.query_one("#write-values", Input).value == "77"
        await fill(pilot, dialog, "values", "78")
        await pilot.press("enter", "y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
    assert engine.sim[1].read(3, SCRATCH - 1, 4) == [0, 0, 78, 0]


async def test_a_setup_keeps_every_meters_configuration_and_quitting_waits_for_it(
    tmp_path: Path,
) -> None:
    """Meter 1 (its own logged values and [meters.expect]) moved to id 7 in the app: the new
    id keeps them, and so do the other meters; q and ctrl+q while the setup waits at its
    command block do not quit (the meter would be left half set up) and say why."""
    app, engine, _traffic = make_app(tmp_path)
    own = dataclasses.replace(
        engine.config.meters[0],
        values=("voltage_an", "current_a"),
        expect=(("ct_primary", 100),),
    )
    other = dataclasses.replace(engine.config.meters[1], expect=(("ct_primary", 50),))
    engine.set_meters([own, other, *engine.config.meters[2:]])
    app.config = engine.config
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SetupScreen)
        dialog.query_one("#setup-id", Input).value = "7"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: dialog.state == "confirm")
        app.action_quit_app()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and app.screen is dialog
        assert "Not quitting: a setup of meter 1 is under way" in notes(app)
        await pilot.press("y")
        assert await wait_for(pilot, lambda: dialog.state == "done")
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: bool(app.query("#tab-meter-7")))
    meters = {m.id: m for m in engine.config.meters}
    assert sorted(meters) == [2, 3, 4, 7]
    assert meters[7].values == ("voltage_an", "current_a")
    assert meters[7].expect == (("ct_primary", 100),) and meters[7].label == "Pump 1"
    assert meters[2].expect == (("ct_primary", 50),)
