"""A meter's tab: every decoded value by group, its link statistics and a sparkline."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from emtui.core.bus.stats import DeviceStats
from emtui.core.maps.codec import Value
from emtui.core.maps.display import (
    NA_TEXT,
    digits_for,
    display_value,
    format_number,
    lead_lag_text,
)
from emtui.core.maps.registers import RegisterEntry
from emtui.core.session import STATIC_GROUPS
from emtui.ui.model import MeterModel, age_text
from emtui.ui.widgets.live_table import Column, LiveTable
from emtui.ui.widgets.trend import Trend

#: Map groups in the order a technician reads them; groups not listed follow.
GROUP_ORDER = (
    "realtime",
    "energy",
    "power_quality",
    "demand",
    "timers",
    "clock",
    "identity",
    "setup",
)
COLUMNS = (
    Column("label", "value", 24),
    Column("value", "now", 12, "right"),
    Column("unit", "unit", 5),
    Column("register", "reg", 5, "right"),
    Column("low", "min", 10, "right"),
    Column("high", "max", 10, "right"),
    Column("age", "age", 4, "right"),
)
#: Points the sparkline shows (the newest ones).
SPARK_POINTS = 120


def ordered_entries(entries: tuple[RegisterEntry, ...]) -> list[tuple[str, list[RegisterEntry]]]:
    """``entries`` grouped as the map groups them, groups in :data:`GROUP_ORDER`."""
    groups: dict[str, list[RegisterEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.group or "other", []).append(entry)
    rank = {g: i for i, g in enumerate(GROUP_ORDER)}
    return sorted(groups.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def stats_text(stats: DeviceStats) -> str:
    """One line (under 80 columns for a healthy meter) of link statistics."""
    p50, p99 = stats.rtt_ms(0.5), stats.rtt_ms(0.99)
    exceptions = " ".join(f"{code:02d}:{n}" for code, n in sorted(stats.exceptions.items()))
    parts = [
        f"link: req {stats.requests}",
        f"ok {stats.ok}",
        f"timeout {stats.timeouts}",
        f"CRC {stats.crc_errors}",
        f"wrong id {stats.wrong_id}",
        f"exc {exceptions or 0}",
    ]
    if p50 is not None and p99 is not None:
        parts.append(f"RTT {p50:.0f}/{p99:.0f} ms p50/p99")
    return " · ".join(parts)


class MeterTab(Vertical):
    """One meter: a live table of every value, link statistics, the selected value's trend."""

    DEFAULT_CSS = """
    MeterTab { height: 1fr; }
    MeterTab > LiveTable { height: 1fr; }
    MeterTab > #meter-note { height: 1; color: $warning; }
    MeterTab > #meter-stats { height: 1; color: $text-muted; }
    MeterTab > #meter-selected { height: 1; }
    """

    def __init__(self, model: MeterModel, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.table = LiveTable(COLUMNS, show_cursor=True)
        self.note = Static("", id="meter-note")
        self.stats = Static("", id="meter-stats")
        self.selected = Static("", id="meter-selected")
        self.trend = Trend()
        self._entries: dict[str, RegisterEntry] = {}
        self._texts: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.note
        yield self.stats
        yield self.selected
        yield self.trend

    def on_mount(self) -> None:
        info = self.model.info
        shown = info.logged + info.extras
        rows: list[tuple[str, str | None]] = []
        for group, entries in ordered_entries(shown):
            rows.append((f"group:{group}", f"{group.replace('_', ' ')}"))
            for entry in entries:
                rows.append((entry.name, None))
                self._entries[entry.name] = entry
        self.table.set_rows(rows)
        for entry in self._entries.values():
            self.table.set_cell(entry.name, "label", entry.label)
            self.table.set_cell(entry.name, "unit", entry.unit)
            self.table.set_cell(entry.name, "register", str(entry.register), "dim")
        first = next((i for i, (_, heading) in enumerate(rows) if heading is None), 0)
        self.table.move_cursor(first)

    def _set(self, widget: Static, key: str, text: str) -> None:
        if self._texts.get(key) != text:
            self._texts[key] = text
            widget.update(text)

    def update_view(
        self,
        now: float,
        interval: float,
        stats: DeviceStats,
        *,
        logging: bool,
        starved: bool,
    ) -> None:
        """Refresh the changed cells, the statistics and the sparkline."""
        model = self.model
        table = self.table
        logged = {e.name for e in model.info.logged}
        for name, entry in self._entries.items():
            state = model.entries.get(name)
            value = state.value if state else None
            text = display_value(value, entry)
            side = lead_lag_text(value)
            if side:
                text = f"{text} {side}"
            if state is not None and state.status not in ("", "ok"):
                text, style = f"— {state.status.replace('exception:', 'exc ')}", "bad"
            elif text == NA_TEXT:
                style = "na"
            elif model.stale(name, now, interval, logged=name in logged):
                style = "stale"
            else:
                style = ""
            table.set_cell(name, "value", text, style)
            if state is not None and state.low is not None and state.high is not None:
                for column, number in (("low", state.low), ("high", state.high)):
                    shown = number if entry.type in ("float32", "pf4q") else int(number)
                    table.set_cell(name, column, display_value(Value(shown), entry), "dim")
            read_at = state.read_at if state else None
            age = None if read_at is None else max(0.0, now - read_at)
            table.set_cell(name, "age", age_text(age), "stale" if name not in logged else "")
        table.flush()
        self._set(self.stats, "stats", stats_text(stats))
        note = ""
        if starved:
            static = ", ".join(STATIC_GROUPS)
            note = (
                "Bus full"
                + (" while logging" if logging else "")
                + f": only the logged set refreshes ({static} read once); [b]f[/b] reads all now"
            )
        self._set(self.note, "note", note)
        self._update_spark()

    def _update_spark(self) -> None:
        key = self.table.cursor_key
        entry = self._entries.get(key or "")
        state = self.model.entries.get(key or "")
        if entry is None or state is None or not state.history:
            self._set(self.selected, "selected", "")
            self.trend.show([])
            return
        points = [v for _, v in list(state.history)[-SPARK_POINTS:]]
        low, high = min(points), max(points)
        digits = digits_for(entry)
        span = f"{format_number(low, digits)} to {format_number(high, digits)} {entry.unit}"
        self._set(
            self.selected,
            "selected",
            f"trend of {entry.label} (register {entry.register}): {span}",
        )
        self.trend.show(points)
