"""The overview: one line per meter with the numbers a technician reads first."""

from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from emtui.core.maps.display import NA_TEXT, display_value
from emtui.core.session import LoggingState
from emtui.ui.model import MeterModel, age_text
from emtui.ui.widgets.live_table import Column, LiveTable

#: (column key, title, width, map entry shown) — fits 80 columns with room for a scrollbar.
COLUMNS = (
    Column("label", "meter", 10),
    Column("id", "id", 3, "right"),
    Column("state", "pump", 4),
    Column("voltage", "V L-N", 6, "right"),
    Column("current", "I avg A", 7, "right"),
    Column("power", "kW", 6, "right"),
    Column("pf", "PF", 5, "right"),
    Column("freq", "Hz", 5, "right"),
    Column("energy", "kWh", 9, "right"),
    Column("link", "link", 7),
    Column("age", "age", 4, "right"),
)
VALUE_COLUMNS = {
    "voltage": "voltage_ln_avg",
    "current": "current_avg",
    "power": "active_power_total",
    "pf": "power_factor_total",
    "freq": "frequency",
    "energy": "active_energy_delivered",
}


def link_cell(model: MeterModel) -> tuple[str, str]:
    """The link column: the last poll's status, styled by how bad it is."""
    status = model.last_status
    if not status:
        return "waiting", "dim"
    if status == "ok":
        return "ok", "good"
    if status == "partial":
        return "partial", "warn"
    return status.replace("exception:", "exc "), "bad"


class Overview(Vertical):
    """Every meter at a glance, plus what the logger is doing."""

    DEFAULT_CSS = """
    Overview { height: 1fr; }
    Overview #overview-table { height: auto; max-height: 12; }
    Overview #logging-panel { height: auto; padding: 1 0 0 0; }
    """

    def __init__(self, models: list[MeterModel], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.models = models
        self.table = LiveTable(COLUMNS, id="overview-table")
        self.logging_panel = Static("", id="logging-panel")
        self._panel_text = ""

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.logging_panel

    def on_mount(self) -> None:
        self.set_models(self.models)

    def set_models(self, models: list[MeterModel]) -> None:
        """Show these meters (after a scan changed them)."""
        self.models = models
        self.table.set_rows((str(m.info.id), None) for m in models)
        self.table.styles.height = len(models) + 1

    def update_view(self, now: float, interval: float) -> None:
        """Refresh the cells from the models (only changed cells are repainted)."""
        table = self.table
        for model in self.models:
            key = str(model.info.id)
            table.set_cell(key, "label", model.info.label)
            table.set_cell(key, "id", str(model.info.id))
            running = model.running()
            table.set_cell(
                key,
                "state",
                "—" if running is None else ("run" if running else "stop"),
                "good" if running else "dim",
            )
            for column, name in VALUE_COLUMNS.items():
                entry = model.info.map.get(name) if name in model.info.map else None
                if entry is None:
                    table.set_cell(key, column, "")
                    continue
                text = display_value(model.value(name), entry, read=model.fresh(name))
                stale = model.stale(name, now, interval)
                style = "stale" if stale else ("na" if text == NA_TEXT else "")
                table.set_cell(key, column, text, style)
            table.set_cell(key, "link", *link_cell(model))
            age = None if model.last_good is None else max(0.0, now - model.last_good)
            table.set_cell(
                key, "age", age_text(age), "warn" if age is not None and age > 3 * interval else ""
            )
        table.flush()

    def show_logging(self, state: LoggingState, note: str) -> None:
        """The logging panel: on/off, rows, files, queue, uploads."""
        if state.held_by is not None:
            text = (
                f"Logged by the headless logger (PID {state.held_by}) to {state.data_dir}: "
                f"{state.rows} rows"
                + (f", [red]{state.rows_lost} NOT WRITTEN[/red]" if state.rows_lost else "")
                + f"; queue {state.queued} file(s); last upload: {state.last_upload or '—'}"
            )
            if note:
                text += f"\n{note}"
        elif not state.running:
            text = f"Logging off. [b]l[/b] starts it (CSV files in {state.data_dir})."
            if state.error:
                text += f"\n[red]{state.error}[/red]"
            if note:
                text += f"\n{note}"
        else:
            lines = [
                f"[b green]Logging[/] to {state.data_dir}: {state.rows} rows"
                + (f", [red]{state.rows_lost} NOT WRITTEN[/red]" if state.rows_lost else "")
                + f"; queue {state.queued} file(s)",
            ]
            upload = state.upload_target or "no upload target"
            if state.upload_target and state.next_upload:
                when = datetime.fromtimestamp(state.next_upload).strftime("%Y-%m-%d %H:%M")
                upload += f", next {when}"
            lines.append(f"upload: {upload}; last: {state.last_upload or '—'} ([b]u[/b] now)")
            for device_id, path in sorted(state.files.items()):
                lines.append(f"  meter {device_id}: {path}")
            lines.append(
                "Logging started here stops with the app; for unattended logging use the "
                "service (emtui service install)."
            )
            if note:
                lines.append(note)
            text = "\n".join(lines)
        if self._panel_text != text:
            self._panel_text = text
            self.logging_panel.update(text)
