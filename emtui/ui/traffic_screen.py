"""The traffic monitor (key t): every request and reply on the bus, problems marked.

The app's :class:`~emtui.core.bus.traffic.TrafficMonitor` collects from the start (a bounded
buffer, the oldest dropped and counted, so it never slows the bus); this screen shows it in
the trace's text format, filtered by id and by outcome, paused at will, and saves it to a
text file for a support ticket. It redraws on a timer, appending only the new lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from emtui.core.bus.link import Outcome
from emtui.core.bus.traffic import PROBLEM_OUTCOMES, TrafficMonitor, TrafficRecord, format_record

#: Outcome filters: name → outcomes shown (None: all).
OUTCOME_FILTERS: dict[str, frozenset[Outcome] | None] = {
    "all": None,
    "problems": PROBLEM_OUTCOMES,
    "ok": frozenset({Outcome.OK}),
}
#: Lines the screen keeps (the monitor keeps its own, larger, buffer).
SHOWN_LINES = 1000


class TrafficScreen(Screen[None]):
    """The bus traffic as hex lines, with counts, filters, pause and save.

    Args:
        monitor: the app's traffic monitor.
        device_ids: the ids the id filter cycles through.
        save_dir: where ``w`` writes the text file.
        clock: wall time for the saved file's name.
        refresh_hz: how often new lines are appended.
    """

    DEFAULT_CSS = """
    TrafficScreen { layout: vertical; }
    TrafficScreen #traffic-status { height: auto; padding: 0 1; }
    TrafficScreen RichLog { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "next_id", "Id filter"),
        Binding("e", "next_outcome", "Outcome filter"),
        Binding("space", "pause", "Pause"),
        Binding("w", "save", "Save"),
        Binding("escape", "close", "Back"),
    ]

    def __init__(
        self,
        monitor: TrafficMonitor,
        device_ids: list[int],
        save_dir: Path,
        clock: Callable[[], float] = time.time,
        refresh_hz: float = 1.0,
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.device_ids = device_ids
        self.save_dir = save_dir
        self.clock = clock
        self.refresh_hz = refresh_hz
        self.id_filter: int | None = None
        self.outcome_filter = "all"
        self.paused = False
        self.saved: Path | None = None
        self._seen = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="traffic-status", markup=False)
        yield RichLog(max_lines=SHOWN_LINES, wrap=False, markup=False, id="traffic-log")
        yield Footer()

    def on_mount(self) -> None:
        self._rewrite()
        self.set_interval(1.0 / self.refresh_hz, self.refresh_lines, name="traffic-refresh")

    def _wanted(self, record: TrafficRecord) -> bool:
        outcomes = OUTCOME_FILTERS[self.outcome_filter]
        return (self.id_filter is None or record.device_id == self.id_filter) and (
            outcomes is None or record.outcome in outcomes
        )

    def _write(self, records: list[TrafficRecord]) -> None:
        log = self.query_one(RichLog)
        for record in records:
            if not self._wanted(record):
                continue
            problem = record.outcome in PROBLEM_OUTCOMES
            for line in format_record(record, self.monitor.tz):
                style = "bold red" if problem and " RX " in line else ""
                if "STALE" in line:
                    style = "yellow"
                log.write(Text(line, style=style))

    def _rewrite(self) -> None:
        self.query_one(RichLog).clear()
        total, records = self.monitor.snapshot()
        self._seen = total
        self._write(records[-SHOWN_LINES:])
        self._show_status()

    def refresh_lines(self) -> None:
        """Append the records that came since the last refresh (unless paused)."""
        if not self.paused:
            total, records = self.monitor.snapshot()
            new = min(total - self._seen, len(records))
            self._seen = total
            if new > 0:
                self._write(records[-new:])
        self._show_status()

    def _show_status(self) -> None:
        m = self.monitor
        parts = [
            f"{m.total} records",
            f"CRC {m.count(Outcome.CRC)}",
            f"wrong id {m.count(Outcome.WRONG_ID)}",
            f"exceptions {m.count(Outcome.EXCEPTION)}",
            f"timeouts {m.count(Outcome.TIMEOUT)}",
            f"dropped {m.dropped}",
            f"id {self.id_filter if self.id_filter is not None else 'all'}",
            f"showing {self.outcome_filter}",
        ]
        if self.paused:
            parts.append("PAUSED")
        if self.saved is not None:
            parts.append(f"saved {self.saved}")
        self.query_one("#traffic-status", Static).update(" · ".join(parts))

    def action_next_id(self) -> None:
        """Cycle the id filter: all, then each meter."""
        choices: list[int | None] = [None, *self.device_ids]
        index = choices.index(self.id_filter) if self.id_filter in choices else 0
        self.id_filter = choices[(index + 1) % len(choices)]
        self._rewrite()

    def action_next_outcome(self) -> None:
        """Cycle the outcome filter: all, problems only, ok only."""
        names = list(OUTCOME_FILTERS)
        self.outcome_filter = names[(names.index(self.outcome_filter) + 1) % len(names)]
        self._rewrite()

    def action_pause(self) -> None:
        """Stop (or resume) appending lines; the monitor keeps collecting."""
        self.paused = not self.paused
        if not self.paused:
            self._rewrite()
        else:
            self._show_status()

    def action_save(self) -> None:
        """Write the filtered traffic to a text file for a support ticket."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        path = self.save_dir / f"emtui-traffic-{stamp}.txt"
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            outcomes = OUTCOME_FILTERS[self.outcome_filter]
            count = self.monitor.save(path, self.id_filter, outcomes)
        except OSError as exc:
            self.notify(f"cannot save to {path}: {exc.strerror}", severity="error")
            return
        self.saved = path
        self.notify(f"{count} record(s) saved to {path}")
        self._show_status()

    def action_close(self) -> None:
        """Back to the app."""
        self.app.pop_screen()
