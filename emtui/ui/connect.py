"""The connection dialog: which port, at which settings, for which meters.

Why this module exists: ``emtui`` started with no port configured, or on a port that cannot be
opened (unplugged adapter, wrong name, no permission), should not end in a one-line error when
a technician is standing at the panel. The dialog lists the serial ports as ``emtui ports``
does (USB ids, description, the stable ``/dev/serial/by-id/…`` names, who holds a busy one),
preselects a by-id name, takes any port typed (``socket://``, ``rfc2217://``, ``tcp://``), the
baud, parity and meter ids, and opens the bus on a worker thread (opening may block). It is a
small App of its own, run before the main one: it returns what it opened, or None on escape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Label, Static
from textual.worker import Worker, WorkerState

from emtui.core.bus.ids import parse_ids
from emtui.core.bus.link import ConnectionSettings, LinkError
from emtui.core.bus.ports import PortInfo, list_serial_ports
from emtui.core.config import Config, ConfigError, apply_overrides
from emtui.core.session import Engine

__all__ = ["DEFAULT_IDS", "ConnectApp", "Connected", "Opener", "port_rows", "short_command"]

DEFAULT_IDS = "1-4"
"""The meters asked for when the config names none (the reference site)."""

Opener = Callable[[Config, ConnectionSettings], tuple[Engine, str]]
"""Opens and starts the engine on a connection; returns it and a note for the app's header
(:func:`emtui.ui.run.open_engine`). Raises LinkError when the port cannot be used."""


@dataclass(frozen=True, slots=True)
class Connected:
    """What the dialog opened: the config (port, settings, meters as chosen), the
    connection and the started engine, with the note for the header."""

    config: Config
    settings: ConnectionSettings
    engine: Engine
    note: str


def _usb_ids(port: PortInfo) -> str:
    return f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid else ""


def _preferred_name(port: PortInfo) -> str:
    """The name to connect to: the stable by-id name when there is one."""
    return port.by_id[0] if port.by_id else port.device


def short_command(command: str) -> str:
    """A holder's command line as a table cell: the program's name and its arguments, without
    the interpreter and the paths (``/usr/bin/python3 /usr/local/bin/emtui --log`` →
    ``emtui --log``); the detail line shows it whole."""
    words = command.split()
    while len(words) > 1 and Path(words[0]).name.startswith(("python", "env", "sudo")):
        words = words[1:]
    if words:
        words[0] = Path(words[0]).name
    return " ".join(words)


def port_rows(ports: Sequence[PortInfo]) -> list[tuple[str, str, str, str]]:
    """One row per port: device, VID:PID, description, who holds it."""
    rows = []
    for port in ports:
        holder = port.busy_by
        busy = f"PID {holder.pid} {short_command(holder.command)}" if holder else "free"
        description = port.description or port.product or port.manufacturer
        rows.append((port.device, _usb_ids(port), description, busy))
    return rows


class ConnectApp(App[Connected | None]):
    """Choose the bus and open it; returns :class:`Connected`, or None when the technician
    leaves with escape.

    Args:
        config: the effective config (its bus settings and meters are the defaults shown).
        opener: opens the engine (see :data:`Opener`); run on a worker thread.
        reason: why the dialog is shown (the configured port's error), shown on top.
        list_ports: the port listing (default: every serial port, with its holder).
    """

    TITLE = "emtui: connect"
    CSS = """
    Screen { layout: vertical; }
    #connect-title { height: 1; padding: 0 1; text-style: bold; }
    #connect-why { height: auto; max-height: 4; padding: 0 1; color: $warning; }
    #ports { height: 1fr; min-height: 4; margin: 0 1; }
    #port-detail { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    .connect-row { height: 1; margin: 1 1 0 1; }
    .connect-row Label { width: auto; padding: 0 1 0 0; }
    #connect-port { width: 1fr; }
    #connect-baud { width: 9; margin-right: 2; }
    #connect-parity { width: 4; margin-right: 2; }
    #connect-ids { width: 1fr; }
    #connect-status { height: auto; max-height: 5; padding: 0 1; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "connect", "Connect", priority=True),
        Binding("ctrl+r", "refresh_ports", "Refresh ports", priority=True),
        Binding("escape", "leave", "Quit", priority=True),
    ]

    def __init__(
        self,
        config: Config,
        opener: Opener,
        *,
        reason: str = "",
        list_ports: Callable[[], list[PortInfo]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.opener = opener
        self.reason = reason
        self._list_ports = list_ports
        self.ports: list[PortInfo] = []
        self.opening = False
        self.leaving = False
        self._placed_rows: set[int] = set()
        ids = [m.id for m in config.meters]
        self._ids = ",".join(str(i) for i in ids) if ids else DEFAULT_IDS

    def compose(self) -> ComposeResult:
        yield Static("emtui: choose the bus", id="connect-title")
        yield Static(self.reason or "No port configured.", id="connect-why", markup=False)
        table: DataTable[str] = DataTable(id="ports", cursor_type="row", zebra_stripes=True)
        table.add_columns("device", "VID:PID", "description", "in use by")
        yield table
        yield Static("", id="port-detail", markup=False)
        with Horizontal(classes="connect-row"):
            yield Label("port")
            yield Input(self.config.bus.port or "", id="connect-port", compact=True)
        with Horizontal(classes="connect-row"):
            yield Label("baud")
            yield Input(
                str(self.config.bus.baud), id="connect-baud", restrict=r"[0-9]*", compact=True
            )
            yield Label("parity")
            yield Input(
                self.config.bus.parity, id="connect-parity", restrict=r"[EeOoNn]?", compact=True
            )
            yield Label("ids")
            yield Input(self._ids, id="connect-ids", restrict=r"[0-9, \-]*", compact=True)
        yield Static(
            "↑/↓ pick a port · tab: the fields · enter or ctrl+o: connect · ctrl+r: list "
            "the ports again · escape: quit",
            id="connect-status",
            markup=False,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ports", DataTable).focus()
        self.action_refresh_ports()

    # -- the port list --------------------------------------------------------------------------

    def action_refresh_ports(self) -> None:
        """List the serial ports again (an adapter plugged in since)."""
        self._scan_ports()

    @work(thread=True, exclusive=True, group="ports", exit_on_error=False)
    def _scan_ports(self) -> None:
        # finding who holds a port reads /proc: not on the event loop
        listing = self._list_ports() if self._list_ports else list_serial_ports(busy=True)
        self.call_from_thread(self.show_ports, listing)

    def show_ports(self, ports: list[PortInfo]) -> None:
        """Fill the table; put the cursor on the port typed, else on the first with a by-id
        name (an adapter), and fill the port field from it when it is empty."""
        self.ports = list(ports)
        table = self.query_one("#ports", DataTable)
        table.clear()
        for row in port_rows(self.ports):
            table.add_row(*row)
        field = self.query_one("#connect-port", Input)
        typed = field.value.strip()
        index = next(
            (i for i, p in enumerate(self.ports) if typed in (p.device, *p.by_id)),
            None,
        )
        if index is None:
            # the cursor on the adapter most likely meant (a by-id name); the field takes it
            # only when empty: a typed name (one that failed) stays until a row is chosen
            index = next((i for i, p in enumerate(self.ports) if p.by_id), 0 if ports else None)
            if index is not None and not typed:
                field.value = _preferred_name(self.ports[index])
        # The table tells of its cursor (where it was put here) with RowHighlighted too: only
        # a move by the technician fills the port field.
        # (the rows are added with the cursor on row 0, then it is moved: both tell)
        self._placed_rows = {0} if index is None else {0, index}
        if index is not None:
            table.move_cursor(row=index)
        self._show_detail(index)

    def _show_detail(self, index: int | None) -> None:
        detail = self.query_one("#port-detail", Static)
        if not self.ports:
            detail.update(
                "No serial ports found: plug in the USB RS-485 adapter and press ctrl+r, or "
                "type a socket://HOST:PORT or rfc2217://HOST:PORT address."
            )
            return
        if index is None or not 0 <= index < len(self.ports):
            detail.update("")
            return
        port = self.ports[index]
        lines = [", ".join(port.by_id) if port.by_id else f"{port.device} (no by-id name)"]
        if port.busy_by is not None:
            lines.append(
                f"in use by PID {port.busy_by.pid} ({port.busy_by.command}): a headless emtui "
                "logger there is shown read-only; anything else must be stopped first"
            )
        detail.update("\n".join(lines))

    @on(DataTable.RowHighlighted, "#ports")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = event.cursor_row
        if index in self._placed_rows:
            self._placed_rows.discard(index)
            self._show_detail(index)
            return
        self._placed_rows.clear()
        if 0 <= index < len(self.ports):
            self.query_one("#connect-port", Input).value = _preferred_name(self.ports[index])
        self._show_detail(index)

    @on(DataTable.RowSelected, "#ports")
    def _selected(self, event: DataTable.RowSelected) -> None:
        # enter on a row opens that row's port, whatever the field held (a name that failed)
        index = event.cursor_row
        if 0 <= index < len(self.ports):
            self.query_one("#connect-port", Input).value = _preferred_name(self.ports[index])
        self.action_connect()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.action_connect()

    # -- connecting -----------------------------------------------------------------------------

    def chosen(self) -> tuple[Config, ConnectionSettings]:
        """The config and connection the fields describe.

        Raises:
            ValueError: a field is empty or invalid; the message says which and what to do.
        """
        port = self.query_one("#connect-port", Input).value.strip()
        baud_text = self.query_one("#connect-baud", Input).value.strip()
        parity = self.query_one("#connect-parity", Input).value.strip().upper()
        ids_text = self.query_one("#connect-ids", Input).value.strip()
        if not port:
            raise ValueError("port: pick one from the list or type one (e.g. socket://HOST:PORT)")
        if not baud_text.isdigit() or int(baud_text) <= 0:
            raise ValueError("baud: type the line speed, e.g. 19200")
        if parity not in ("E", "O", "N"):
            raise ValueError("parity: type E, O or N")
        try:
            ids = parse_ids(ids_text)
        except ValueError as exc:
            raise ValueError(f"ids: {exc} (e.g. 1-4,7)") from None
        try:
            config = apply_overrides(
                self.config, port=port, baud=int(baud_text), parity=parity, ids=ids
            )
            return config, config.bus.settings()
        except ConfigError as exc:
            raise ValueError(
                "; ".join(e.replace("command line: ", "") for e in exc.errors)
            ) from None

    def action_connect(self) -> None:
        """Open the bus the fields describe (on a worker thread)."""
        if self.opening:
            return
        try:
            config, settings = self.chosen()
        except ValueError as exc:
            self._status(str(exc), error=True)
            return
        self.opening = True
        self._status(f"opening {settings.describe()} …")
        self._open(config, settings)

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def _open(self, config: Config, settings: ConnectionSettings) -> None:
        engine, note = self.opener(config, settings)
        result = Connected(config, settings, engine, note)
        if self.leaving:  # escape while it opened: let go of the bus again
            engine.stop()
            return
        self.call_from_thread(self.exit, result)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A port that cannot be opened is said in the dialog, never a traceback."""
        if event.worker.group != "open" or event.state is not WorkerState.ERROR:
            return
        self.opening = False
        error = event.worker.error
        if isinstance(error, LinkError):
            self._status(f"cannot open: {error}", error=True)
        else:
            self._status(f"cannot open: {error!r}", error=True)

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#connect-status", Static)
        status.styles.color = "red" if error else None
        status.update(text)

    def action_leave(self) -> None:
        """Quit without connecting (exit 0)."""
        self.leaving = True
        self.exit(None)
