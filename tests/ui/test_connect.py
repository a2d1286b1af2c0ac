"""The connection dialog (issue 9 part 1): the ports as `emtui ports` lists them, typed ports
and settings, and the bus opened on a worker thread, or the reason it could not be."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from connect_ports import PORTS
from scripted_engine import ScriptedEngine, reference_config
from textual.widgets import DataTable, Input, Static

from emtui.core.bus.link import ConnectionSettings, PortNotFound
from emtui.core.bus.ports import PortInfo
from emtui.core.config import BusConfig, Config, LoggingConfig, UploadConfig
from emtui.core.session import BusSession
from emtui.sim.bus import SimulatedBus
from emtui.ui import connect as connect_module
from emtui.ui import run as run_module
from emtui.ui.connect import ConnectApp, Connected
from emtui.ui.run import open_engine


def bare_config(tmp: Path, port: str | None = None) -> Config:
    """No config file: no port, no meters."""
    return Config(
        bus=BusConfig(port=port),
        logging=LoggingConfig(interval=1.0, data_dir=tmp / "data"),
        upload=UploadConfig(target=None, site="t"),
        state_dir=tmp / "state",
    )


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> list[PortInfo]:
    """The ports the dialog sees (a list the test may change, as a plugged-in adapter)."""
    ports = list(PORTS)
    monkeypatch.setattr(connect_module, "list_serial_ports", lambda busy=False: list(ports))
    return ports


@pytest.fixture
def sim_port() -> Iterator[str]:
    with SimulatedBus(ids=(1, 2), running=True) as sim:
        yield sim.start_tcp("127.0.0.1", 0, framing="rtu")


def text(app: ConnectApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_lists_ports_preselects_a_by_id_name_and_says_who_holds_one(
    tmp_path: Path, listing: list[PortInfo]
) -> None:
    """Every port is a row (device, VID:PID, description, holder); the cursor starts on the
    first adapter with a by-id name and the port field holds that name; moving to the busy
    port shows its PID and command and fills the field with its by-id name; defaults are
    19200 E and ids 1-4."""
    app = ConnectApp(bare_config(tmp_path), open_engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one("#ports", DataTable)
        assert table.row_count == 3
        assert table.get_row_at(1)[:2] == ["/dev/ttyUSB0", "0403:6001"]
        assert table.get_row_at(2)[3] == "PID 812 emtui --log"
        assert table.cursor_row == 1
        port = app.query_one("#connect-port", Input)
        assert port.value == PORTS[1].by_id[0]
        assert app.query_one("#connect-baud", Input).value == "19200"
        assert app.query_one("#connect-parity", Input).value == "E"
        assert app.query_one("#connect-ids", Input).value == "1-4"
        await pilot.press("down")
        await pilot.pause()
        assert port.value == PORTS[2].by_id[0]
        detail = text(app, "#port-detail")
        assert "in use by PID 812 (/usr/bin/python3 /usr/local/bin/emtui --log)" in detail


async def test_refresh_finds_a_plugged_in_adapter(tmp_path: Path, listing: list[PortInfo]) -> None:
    """With no port at all the dialog says to plug the adapter in; ctrl+r lists it then, and
    its by-id name fills the port field."""
    adapter = listing[1]
    listing.clear()
    app = ConnectApp(bare_config(tmp_path), open_engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "No serial ports found" in text(app, "#port-detail")
        listing.append(adapter)
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#ports", DataTable).row_count == 1
        assert app.query_one("#connect-port", Input).value == adapter.by_id[0]


async def test_a_typed_socket_port_opens_the_engine(
    tmp_path: Path, listing: list[PortInfo], sim_port: str
) -> None:
    """Typing the simulator's socket:// port and ids 1-2, enter opens a started session on a
    worker thread and the dialog returns it with the config as chosen."""
    app = ConnectApp(bare_config(tmp_path), open_engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        app.query_one("#connect-port", Input).value = sim_port
        app.query_one("#connect-ids", Input).value = "1-2"
        app.query_one("#connect-ids", Input).focus()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    result = app.return_value
    assert isinstance(result, Connected)
    try:
        assert isinstance(result.engine, BusSession)
        assert result.settings == ConnectionSettings(port=sim_port, baud=19200, parity="E")
        assert [m.id for m in result.config.meters] == [1, 2]
        assert result.config.bus.port == sim_port
    finally:
        result.engine.stop()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("#connect-port", "/dev/ttyNOPE", "no such port"),
        ("#connect-baud", "", "baud: type the line speed"),
        ("#connect-parity", "X", "parity: type E, O or N"),
        ("#connect-ids", "1-300", "ids:"),
        ("#connect-port", "", "port: pick one"),
    ],
)
async def test_a_bad_choice_is_said_in_the_dialog(
    tmp_path: Path, listing: list[PortInfo], field: str, value: str, words: str
) -> None:
    """A port that cannot be opened or a bad field: the reason in the dialog's status line,
    no traceback, the dialog stays open for another try."""
    app = ConnectApp(bare_config(tmp_path), open_engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        app.query_one(field, Input).value = value
        await pilot.press("ctrl+o")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert words in text(app, "#connect-status")
        assert app.is_running and not app.opening
    assert app.return_value is None


async def test_escape_quits_without_connecting(tmp_path: Path, listing: list[PortInfo]) -> None:
    """escape leaves the dialog: nothing opened (run_app then exits 0)."""
    app = ConnectApp(bare_config(tmp_path), open_engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("escape")
        await pilot.pause()
    assert app.return_value is None


def test_a_configured_port_that_cannot_be_opened_asks_with_the_dialog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_app's first step: a configured port that is not there shows the dialog with the
    reason on top (the dialog's own run replaced here); no port at all shows it with none."""
    shown: list[str] = []

    def fake_run(self: ConnectApp) -> None:
        shown.append(self.reason)

    monkeypatch.setattr(ConnectApp, "run", fake_run)
    config = bare_config(tmp_path, "/dev/ttyNOPE")
    assert run_module.connect_first(config, config.bus.settings()) is None
    assert shown[-1].startswith("Cannot open the configured port: /dev/ttyNOPE: no such port")
    assert run_module.connect_first(bare_config(tmp_path), None) is None
    assert shown[-1] == ""
    with pytest.raises(PortNotFound):  # the error the dialog shows is the open's own
        open_engine(config, config.bus.settings())


@pytest.mark.parametrize(
    ("command", "cell"),
    [
        ("/usr/bin/python3 /usr/local/bin/emtui --log", "emtui --log"),
        ("/usr/bin/env python3 /opt/x/bin/mbpoll -a 1", "mbpoll -a 1"),
        ("/usr/sbin/ModemManager", "ModemManager"),
        ("python3", "python3"),
    ],
)
def test_holder_command_is_shortened_for_the_table(command: str, cell: str) -> None:
    """The table names the program, not the interpreter or its paths."""
    assert connect_module.short_command(command) == cell


def test_off_a_terminal_the_open_error_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ask=False (emtui not on a terminal): no dialog; the port's error goes to the CLI."""
    monkeypatch.setattr(ConnectApp, "run", lambda self: pytest.fail("the dialog was shown"))
    config = bare_config(tmp_path, "/dev/ttyNOPE")
    with pytest.raises(PortNotFound):
        run_module.connect_first(config, config.bus.settings(), ask=False)


async def test_escape_while_opening_lets_go_of_the_bus(
    tmp_path: Path, listing: list[PortInfo]
) -> None:
    """escape while a slow port opens: the dialog returns None and the engine it opened is
    stopped again (the bus is not left held)."""
    engine = ScriptedEngine(reference_config(tmp_path))
    release = threading.Event()

    def slow_open(config: Config, settings: ConnectionSettings) -> tuple[ScriptedEngine, str]:
        release.wait(5)
        return engine, ""

    config = bare_config(tmp_path, "socket://gateway.site:4001")
    app = ConnectApp(config, slow_open)  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.opening
        await pilot.press("escape")
        release.set()
        await pilot.pause()
    assert app.return_value is None
    for _ in range(50):
        if engine.stopped:
            break
        threading.Event().wait(0.05)
    assert engine.stopped


async def test_enter_on_a_row_opens_that_rows_port_not_the_failed_name(
    tmp_path: Path, listing: list[PortInfo]
) -> None:
    """The configured /dev/ttyUSB9 failed; the adapter is back as ttyUSB0: the technician
    presses enter on the row the cursor is on (the by-id adapter): its by-id name is opened,
    not /dev/ttyUSB9 again; another row chosen opens that one."""
    tried: list[str] = []

    def opener(config: Config, settings: ConnectionSettings) -> tuple[ScriptedEngine, str]:
        tried.append(settings.port)
        raise PortNotFound(f"{settings.port}: no such port")

    app = ConnectApp(bare_config(tmp_path, "/dev/ttyUSB9"), opener)  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        assert app.query_one("#connect-port", Input).value == "/dev/ttyUSB9"
        table = app.query_one("#ports", DataTable)
        assert table.cursor_row == 1  # the adapter with a by-id name
        table.focus()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("up")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert tried == [PORTS[1].by_id[0], PORTS[0].device]
