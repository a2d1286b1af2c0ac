"""The scan screen: find the meters, see them appear, keep them as tabs and in the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, ProgressBar, Static

from emtui.core.bus.ids import format_ids, parse_ids
from emtui.core.bus.link import ConnectionSettings, LinkError
from emtui.core.bus.scanner import FoundDevice, ScanReport
from emtui.core.session import Engine
from emtui.ui.messages import DeviceFound, ScanFinished, ScanProgressed
from emtui.ui.widgets.live_table import Column, LiveTable

FOUND_COLUMNS = (
    Column("id", "id", 3, "right"),
    Column("model", "model", 10),
    Column("serial", "serial", 10),
    Column("name", "name", 16),
    Column("reply", "reply", 9),
    Column("rtt", "rtt ms", 7, "right"),
    Column("pass", "pass", 6),
)
FORMATS = {"8E1": ("E", 1), "8O1": ("O", 1), "8N1": ("N", 1), "8N2": ("N", 2)}


def parse_format(text: str) -> tuple[str, int]:
    """``8E1`` → (parity, stop bits); ValueError names the accepted forms."""
    try:
        return FORMATS[text.strip().upper()]
    except KeyError:
        raise ValueError(f"format {text!r}: use one of {', '.join(FORMATS)}") from None


class ScanScreen(Screen[None]):
    """Id range and expected ids, live progress, found meters; cancel and rescan at will.

    Args:
        engine: the bus.
        expected: the ids the config expects (prefilled).
        on_apply: called with the found devices when the technician keeps them as tabs.
        on_save: called with the found devices to write them into a config file.
    """

    DEFAULT_CSS = """
    ScanScreen { layout: vertical; }
    ScanScreen #scan-form { height: auto; padding: 0 1; }
    ScanScreen #scan-form Label { padding: 1 1 0 0; }
    ScanScreen #scan-form Input { width: 14; }
    ScanScreen #scan-form #ids { width: 16; }
    ScanScreen #scan-status { height: auto; padding: 0 1; }
    ScanScreen ProgressBar { padding: 0 1; }
    ScanScreen LiveTable { height: 1fr; }
    ScanScreen #scan-hint { height: auto; padding: 0 1; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "start", "Scan", priority=True),
        Binding("escape", "cancel_or_close", "Cancel/back"),
        Binding("a", "apply", "Open tabs"),
        Binding("w", "save", "Write config"),
    ]

    def __init__(
        self,
        engine: Engine,
        expected: list[int],
        on_apply: Callable[[list[FoundDevice]], None],
        on_save: Callable[[list[FoundDevice]], None],
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.expected = expected
        self.on_apply = on_apply
        self.on_save = on_save
        self.clock = clock
        self.found: dict[int, FoundDevice] = {}
        self.report: ScanReport | None = None
        self.running = False
        self._progress = (0, 0, 0)

    def compose(self) -> ComposeResult:
        settings = self.engine.settings
        fmt = f"8{settings.parity.upper()}{settings.stopbits}"
        with Horizontal(id="scan-form"):
            yield Label("ids")
            yield Input("1-247", id="ids")
            yield Label("expect")
            yield Input(format_ids(self.expected), id="expect", placeholder="e.g. 1-4")
            yield Label("baud")
            yield Input(str(settings.baud), id="baud", type="integer")
            yield Label("format")
            yield Input(fmt, id="format")
        yield Static("", id="scan-status")
        yield ProgressBar(total=1, show_eta=True, id="scan-progress")
        self.table = LiveTable(FOUND_COLUMNS)
        yield self.table
        yield Static(
            "enter scans (a changed baud or format reopens the port) · escape cancels, then "
            "goes back · then a opens a tab per meter found, w writes them to the config",
            id="scan-hint",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.table.set_rows([])
        self._status(f"Ready to scan {self.engine.description}. Press enter.")

    def _status(self, text: str) -> None:
        self.query_one("#scan-status", Static).update(text)

    # -- actions ----------------------------------------------------------------------------

    def action_start(self) -> None:
        """Start a scan with the form's ids and settings."""
        if self.running:
            return
        try:
            ids = parse_ids(self.query_one("#ids", Input).value)
            expect_text = self.query_one("#expect", Input).value.strip()
            expected = parse_ids(expect_text) if expect_text else []
            baud = int(self.query_one("#baud", Input).value)
            if baud < 300:
                raise ValueError("baud must be at least 300")
            parity, stopbits = parse_format(self.query_one("#format", Input).value)
        except ValueError as exc:
            self._status(f"[red]{exc}[/red]")
            return
        settings = self.engine.settings
        new = ConnectionSettings(
            port=settings.port,
            baud=baud,
            parity=parity,
            stopbits=stopbits,
            timeout=settings.timeout,
            retries=settings.retries,
            local_echo=settings.local_echo,
            gap=settings.gap,
        )
        self.found.clear()
        self.report = None
        self.table.set_rows([])
        self.running = True
        progress = self.query_one(ProgressBar)
        progress.update(total=len(ids), progress=0)
        self._status(f"Scanning ids {format_ids(ids)} on {new.describe()} …")
        self._scan(ids, expected, new if new != settings else None)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def _scan(
        self, ids: list[int], expected: list[int], settings: ConnectionSettings | None
    ) -> None:
        try:
            if settings is not None:
                self.engine.reconnect(settings)
            report = self.engine.scan(
                ids,
                expected,
                on_progress=lambda d, t, c: self.post_message(
                    ScanProgressed(d, t, c, self.engine.scan_eta())
                ),
                on_found=lambda device: self.post_message(DeviceFound(device)),
            )
        except (LinkError, RuntimeError) as exc:
            self.post_message(ScanFinished(None, str(exc)))
            return
        self.post_message(ScanFinished(report))

    def action_cancel_or_close(self) -> None:
        """Cancel a running scan (what it found stays); else go back."""
        if self.running:
            self.engine.cancel_scan()
            self._status("Cancelling after the probe on the wire …")
            return
        self.dismiss(None)

    def action_apply(self) -> None:
        """Open one tab per meter found (and poll them from now on)."""
        if self.running or not self.found:
            self._status("Nothing found yet to open." if not self.running else "Scan running.")
            return
        self.on_apply(sorted(self.found.values(), key=lambda d: d.id))
        self.dismiss(None)

    def action_save(self) -> None:
        """Write the meters found into a config file (asks first where needed)."""
        if self.running or not self.found:
            self._status("Nothing found yet to save." if not self.running else "Scan running.")
            return
        self.on_save(sorted(self.found.values(), key=lambda d: d.id))

    # -- engine news --------------------------------------------------------------------------

    def on_scan_progressed(self, message: ScanProgressed) -> None:
        self._progress = (message.done, message.total, message.current)
        self.query_one(ProgressBar).update(total=message.total, progress=message.done)
        if message.current:
            eta = "" if message.eta is None else f" · about {message.eta:.0f} s left"
            self._status(
                f"Scanning id {message.current} ({message.done}/{message.total}){eta} · "
                f"{len(self.found)} found · escape cancels"
            )

    def on_device_found(self, message: DeviceFound) -> None:
        device = message.device
        self.found[device.id] = device
        rows = [(str(i), None) for i in sorted(self.found)]
        self.table.set_rows(rows)
        for found in self.found.values():
            key = str(found.id)
            identity = found.identity
            self.table.set_cell(key, "id", str(found.id))
            self.table.set_cell(key, "model", str(identity.get("model", "")))
            self.table.set_cell(key, "serial", str(identity.get("serial", "")))
            self.table.set_cell(key, "name", str(identity.get("name", "")))
            reply = "ok" if found.reply == "ok" else f"exc {found.exception_code or 0:02d}"
            self.table.set_cell(key, "reply", reply, "good" if found.reply == "ok" else "warn")
            self.table.set_cell(key, "rtt", f"{found.rtt_ms:.1f}")
            self.table.set_cell(key, "pass", "second" if found.second_pass else "first")
        self.table.flush()

    def on_scan_finished(self, message: ScanFinished) -> None:
        self.running = False
        if message.error is not None:
            self._status(f"[red]Scan failed: {message.error}[/red]")
            return
        report = message.report
        assert report is not None
        self.report = report
        progress = self.query_one(ProgressBar)
        progress.update(total=max(1, len(report.ids)), progress=len(report.ids))
        how = "cancelled" if report.cancelled else "done"
        text = f"Scan {how}: {len(report.devices)} device(s) in {report.duration:.1f} s"
        if report.missing:
            text += f"; [red]missing {format_ids(report.missing)}[/red]"
        if report.devices:
            text += " · a opens their tabs · w writes them to the config"
        self._status(text)
        self.table.focus()
