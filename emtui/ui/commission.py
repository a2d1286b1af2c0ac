"""The Commission screen (key ``c``): the commissioning checks live, and a phasor diagram.

The screen judges the samples the engine already reads (the logged set every poll, the other
registers when they are read), with the same pure checks as ``emtui check``; it never polls
the bus itself. It keeps the last :data:`WINDOW_S` seconds of samples per meter, and asks the
engine for the other registers once (identity, setup), then for those the checks judge
(unbalance, angles, the meter clock) every :data:`EXTRAS_EVERY_S` seconds. On a bus a logger
holds it judges the logger's samples alone.

Layout: a verdict table (a row per check, a column per meter), the reasons of the selected
meter's verdicts, then the other meters' and the bus's problems; the selected meter's phasors
beside them from 100 columns (four meters; more for more), below them (the screen scrolls) on
a narrower terminal.
"""

from __future__ import annotations

import logging
import math
import textwrap
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import ScrollableContainer, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from emtui.core.bus.link import LinkError
from emtui.core.bus.reader import Sample
from emtui.core.check.capture import CHECK_EXTRAS, STATIC_NAMES
from emtui.core.check.checks import CHECK_NAMES, check_clock, run_checks
from emtui.core.check.model import (
    BusCapture,
    CheckReport,
    CheckResult,
    MeterCapture,
    MeterReport,
    Scalar,
    Snapshot,
)
from emtui.core.check.phasor import legend, phasors
from emtui.core.report import ReportContext, ReportError, write_report
from emtui.core.session import Engine

log = logging.getLogger(__name__)

__all__ = ["EXTRAS_EVERY_S", "WINDOW_S", "CommissionScreen", "MeterWindow"]

WINDOW_S = 60.0
"""Seconds of samples the screen judges."""

REDRAW_NUMBERS_S = 5.0
"""Seconds between redraws of a reason or the phasors whose numbers alone changed."""
EXTRAS_EVERY_S = 15.0
"""Seconds between two reads of the other registers the checks judge (unbalance, the angle
registers, the meter clock: three requests a meter) while the screen shows."""
STALE_CYCLES = 3
FIRST_SAMPLES_S = 15.0
"""Seconds a meter may take to send its first sample after the screen opened (its other
registers are read first) before it is called stale."""
"""A meter whose last answer is older than this many poll cycles is marked stale."""

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_checked": "dim"}
_CELL = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "not_checked": "--"}
_CLOCK = "meter_clock_year"
#: Values outside the logged set that the checks judge with every logged sample: the last read
#: of them (at most a window old) is carried into the logged samples that follow it.
_CARRIED = (
    "voltage_unbalance_ll_worst",
    "voltage_unbalance_ln_worst",
    "current_unbalance_worst",
    *(f"phase_angle_{x}" for x in "abc"),
)


_REREAD = (*_CARRIED, *(n for n in CHECK_EXTRAS if n.startswith("meter_clock_")))
"""What the screen reads again every :data:`EXTRAS_EVERY_S` seconds."""


class MeterWindow:
    """The recent samples of one meter, as the checks take them."""

    def __init__(self, device_id: int, label: str = "") -> None:
        self.id = device_id
        self.label = label
        self.static: dict[str, Scalar] = {}
        self.samples: deque[Snapshot] = deque()
        self.clock_samples: deque[Snapshot] = deque()
        self.carried: dict[str, tuple[float, Scalar]] = {}
        """The last read of each value in :data:`_CARRIED`: (wall time, value)."""
        self.last_answer: float | None = None
        """Wall time of the last sample with any value (None: never answered)."""

    def feed(self, sample: Sample) -> None:
        """Take one engine sample (logged set, or other registers)."""
        values: dict[str, Scalar] = {}
        for name, value in sample.values.items():
            v = value.value
            if v is None or isinstance(v, int | float | str):
                values[name] = v
        if any(v is not None for v in values.values()):
            self.last_answer = sample.time
        for name in STATIC_NAMES:
            if values.get(name) is not None:
                self.static[name] = values[name]
        if "current_a" not in values:
            # the other registers come one block per sample: keep each value with its time
            for name in _CARRIED:
                if values.get(name) is not None:
                    self.carried[name] = (sample.time, values[name])
        elif values["current_a"] is not None:
            recent = {
                name: v
                for name, (t, v) in self.carried.items()
                if sample.time - t <= WINDOW_S and name not in values
            }
            values = {**recent, **values}
        if "current_a" in values:
            self.samples.append(Snapshot(sample.time, values, sample.duration))
        if _CLOCK in values:
            self.clock_samples.append(Snapshot(sample.time, values, sample.duration))
        for queue in (self.samples, self.clock_samples):
            while queue and queue[0].time < sample.time - WINDOW_S:
                queue.popleft()

    def capture(
        self, link: Mapping[str, object], expect: Mapping[str, float | int] | None = None
    ) -> MeterCapture:
        """This window as a :class:`MeterCapture` (``expect``: ``[meters.expect]``)."""
        return MeterCapture(
            id=self.id,
            static=dict(self.static),
            samples=list(self.samples),
            link=dict(link),
            expect=dict(expect or {}),
            label=self.label,
        )


class CommissionScreen(Screen[None]):
    """Every meter's verdicts and the selected meter's reasons and phasors.

    Args:
        engine: the bus engine (link statistics, interval, bus load).
        meters: (id, label) of the meters, in tab order.
        clock: wall clock (tests inject one).
        expect: per meter id, its ``[meters.expect]`` (what ``setup`` is checked against).
    """

    DEFAULT_CSS = """
    CommissionScreen { layout: vertical; }
    CommissionScreen #commission-title { height: auto; padding: 0 1; }
    CommissionScreen #commission-body { height: 1fr; layout: horizontal; }
    CommissionScreen #commission-left { width: 1fr; height: auto; padding: 0 1; }
    CommissionScreen #verdict-table { height: auto; }
    CommissionScreen #reasons { height: auto; }
    CommissionScreen #phasors { width: 45; height: auto; padding: 0 1; }
    CommissionScreen.-narrow #commission-body { layout: vertical; }
    CommissionScreen.-narrow #phasors { width: 1fr; padding: 1 1 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("w", "save_report", "Save report"),
        # priority: the scrolling body would take left/right for sideways scrolling
        Binding("right", "select(1)", "Next meter", priority=True),
        Binding("left", "select(-1)", "Previous meter", priority=True),
    ]

    def __init__(
        self,
        engine: Engine,
        meters: list[tuple[int, str]],
        clock: Callable[[], float] = time.time,
        expect: Mapping[int, Mapping[str, float | int]] | None = None,
        report_dir: Path | None = None,
        site: str = "",
    ) -> None:
        super().__init__()
        self.engine = engine
        self.report_dir = report_dir or Path.cwd()
        """Where ``w`` saves the report (the app's working directory)."""
        self.site = site
        self.saved: Path | None = None
        """The last report saved (its HTML file)."""
        self.clock = clock
        self.windows = {i: MeterWindow(i, label) for i, label in meters}
        self.expect = {i: dict(e) for i, e in (expect or {}).items()}
        self.order = [i for i, _ in meters]
        self.selected = 0
        self.report: CheckReport | None = None
        self._extras_asked = 0.0
        self._drawn: dict[str, object] = {}  # what each part shows (redrawn when it differs)
        self._drawn_at: dict[str, float] = {}
        self._cycle_readings: deque[tuple[float, float]] = deque()
        self._opened = clock()
        self._link_history: dict[int, deque[tuple[float, dict[str, object]]]] = {}

    def compose(self) -> ComposeResult:
        title = "Commission — checks on the last minute of samples · ←/→ meter · ↑/↓ scroll"
        if self.engine.read_only:
            title = (
                "Commission (read-only: the logger's samples; setup, unbalance, angles and "
                "clock not read) · ←/→ meter"
            )
        yield Static(title, id="commission-title", markup=False)
        with ScrollableContainer(id="commission-body"):
            with Vertical(id="commission-left"):
                yield Static("", id="verdict-table")
                yield Static("", id="reasons")
            yield Static("", id="phasors", markup=False)
        yield Footer()

    def wide_from(self) -> int:
        """Columns from which the phasors fit beside the table: 100 for four meters, more
        for more (each column of the table takes 8)."""
        return max(100, 66 + 8 * len(self.order))

    def on_resize(self, event: events.Resize) -> None:
        self._lay_out(event.size.width)

    def _lay_out(self, width: int) -> None:
        wide = width >= self.wide_from()
        self.set_class(wide, "-wide")
        self.set_class(not wide, "-narrow")

    def on_mount(self) -> None:
        self._lay_out(self.app.size.width)
        self._ask_extras(first=True)
        self.set_interval(1.0, self.refresh_view)
        self.refresh_view()
        self.query_one("#commission-body").focus()

    def _ask_extras(self, first: bool = False) -> None:
        # Identity, setup, unbalance, the angles and the clock are outside the logged set:
        # everything once, then only the blocks holding what the checks judge.
        self._extras_asked = self.clock()
        if self.engine.read_only:
            return  # a logger holds the bus: only its samples are seen
        names = None if first else _REREAD
        for device_id in self.windows:
            try:
                self.engine.refresh_extras(device_id, names)
            except LinkError as exc:
                self.notify(f"Commission: {exc}", severity="warning", timeout=6)
                return

    def feed(self, sample: Sample) -> None:
        """A sample from the engine (the app forwards every one while this screen shows)."""
        window = self.windows.get(sample.device_id)
        if window is not None:
            window.feed(sample)

    def capture(self) -> BusCapture:
        """The windows as they are now, as one capture (what :meth:`judge` judges, and what
        ``emtui.core.report.write_report`` takes to save a report)."""
        meters = [
            w.capture(self._windowed_link(i), self.expect.get(i))
            for i, w in sorted(self.windows.items())
        ]
        # the window is what the samples span (the screen may have been open only seconds)
        times = [s.time for m in meters for s in m.samples]
        span = min(WINDOW_S, max(times) - min(times)) if times else 0.0
        # the session's cycle time as read at each refresh of the window (about one per
        # cycle at a 1 s interval): bus_load judges their median, as emtui check does
        cycles = [c for _, c in self._cycle_readings]
        if not cycles and (now := self.engine.cycle_time()) is not None:
            cycles = [now]
        return BusCapture(meters, self.engine.interval, cycles, span)

    def _read_cycle(self) -> None:
        """Keep the session's cycle time of this refresh (the last :data:`WINDOW_S` s)."""
        cycle = self.engine.cycle_time()
        now = self.clock()
        if cycle is not None:
            self._cycle_readings.append((now, cycle))
        while self._cycle_readings and self._cycle_readings[0][0] < now - WINDOW_S:
            self._cycle_readings.popleft()

    def judge(self, capture: BusCapture | None = None) -> CheckReport:
        """The checks on ``capture`` (default: the windows as they are now)."""
        report = run_checks(capture if capture is not None else self.capture())
        # The clock is read with the other registers, not with the logged set: judge it on
        # those reads alone (unless the link check already says nothing answered).
        fixed = []
        for meter_report in report.meters:
            window = self.windows[meter_report.id]
            clock = check_clock(MeterCapture(id=window.id, samples=list(window.clock_samples)))
            checks = tuple(
                clock if c.name == "clock" and c.evidence.get("follows") != "link" else c
                for c in meter_report.checks
            )
            fixed.append(replace(meter_report, checks=checks))
        return replace(report, meters=tuple(fixed))

    def _windowed_link(self, device_id: int) -> dict[str, object]:
        """The link statistics of the last :data:`WINDOW_S` seconds (since the screen opened,
        at first): the counters now minus those of the oldest reading inside the window, so
        an early timeout does not weigh on the verdict for ever. Until a request is counted
        in the window, the statistics since the session began."""
        now = self.clock()
        current = self.engine.stats(device_id).as_dict()
        history = self._link_history.setdefault(device_id, deque())
        history.append((now, current))
        while len(history) > 1 and history[1][0] <= now - WINDOW_S:
            history.popleft()
        base = history[0][1]
        delta = dict(current)
        for key in _LINK_COUNTS:
            delta[key] = _count(current, key) - _count(base, key)
        old = base.get("exceptions")
        new = current.get("exceptions")
        if isinstance(old, dict) and isinstance(new, dict):
            delta["exceptions"] = {
                k: n - old.get(k, 0) for k, n in new.items() if n > old.get(k, 0)
            }
        return delta if _count(delta, "requests") > 0 else current

    def stale(self, device_id: int) -> bool:
        """True when meter ``device_id`` has not answered for :data:`STALE_CYCLES` cycles."""
        last = self.windows[device_id].last_answer
        cycle = max(self.engine.interval, self.engine.cycle_time() or 0.0, 1.0)
        if last is None:  # nothing yet: stale only once the first reads had their time
            return self.clock() - self._opened > FIRST_SAMPLES_S + STALE_CYCLES * cycle
        return self.clock() - last > STALE_CYCLES * cycle

    def waiting(self, device_id: int) -> bool:
        """True while meter ``device_id`` has sent no sample since the screen opened, or not
        yet its identity (its verdicts would say no load, no voltage or identity not read for
        want of values)."""
        window = self.windows[device_id]
        if self.stale(device_id):
            return False
        if window.last_answer is None:
            return True
        # identity and setup come with the first read of the other registers: until then
        # identity would warn "not read" (a logger-held bus never reads them: not waited for)
        return (
            not self.engine.read_only
            and "serial_number" not in window.static
            and self.clock() - self._opened < FIRST_SAMPLES_S
        )

    @property
    def selected_id(self) -> int | None:
        """The meter whose reasons and phasors are shown."""
        return self.order[self.selected % len(self.order)] if self.order else None

    def refresh_view(self) -> None:
        """Redraw the verdicts, the reasons and the phasors."""
        if self.clock() - self._extras_asked >= EXTRAS_EVERY_S:
            self._ask_extras()
        self._read_cycle()
        self.report = report = self.judge()
        # Only what changed goes to the terminal, and a changed number in a reason or a
        # phasor at most every few seconds: each redraw lays the screen out again, and a
        # whole redraw every second is ~15 KB/s over SSH. A changed verdict, the selection,
        # the width or a meter going stale are drawn at once.
        now = self.clock()
        stale = tuple((self.stale(i), self.waiting(i)) for i in self.order)
        table_key = (
            self.selected_id,
            stale,
            tuple((m.id, tuple(c.verdict for c in m.checks)) for m in report.meters),
        )
        if self._changed("table", table_key, now, 0.0):
            self.query_one("#verdict-table", Static).update(self.verdict_table())
        selected = self._meter_report(self.selected_id)
        shown = [
            (m.id, c)
            for m in report.meters
            for c in m.checks
            if (m is selected and c.verdict != "pass") or c.verdict == "fail"
        ] + [(None, c) for c in report.bus]
        layout = (
            self.selected_id,
            self.query_one("#reasons").content_size.width,
            stale,
            tuple((i, c.name, c.verdict) for i, c in shown),
        )
        reasons_key = (layout, tuple(c.why for _, c in shown))
        if self._changed("reasons-layout", layout, now, 0.0) or self._changed(
            "reasons", reasons_key, now, REDRAW_NUMBERS_S
        ):
            self._drawn["reasons"], self._drawn_at["reasons"] = reasons_key, now
            self.query_one("#reasons", Static).update(self.reasons())
        phasors_text = self.phasor_text()
        head = phasors_text.split("\n", 1)[0]
        if self._changed("phasors-head", head, now, 0.0) or self._changed(
            "phasors", phasors_text, now, REDRAW_NUMBERS_S
        ):
            self._drawn["phasors"], self._drawn_at["phasors"] = phasors_text, now
            self.query_one("#phasors", Static).update(phasors_text)

    def _changed(self, part: str, key: object, now: float, every: float) -> bool:
        """Whether ``part`` must be drawn again: ``key`` differs from what it shows and at
        least ``every`` seconds went by since it was last drawn (recorded when True)."""
        if key == self._drawn.get(part):
            return False
        # (a clock stepped back counts as expired: never a redraw held off for that long)
        if every > 0 and 0 <= now - self._drawn_at.get(part, -math.inf) < every:
            return False
        self._drawn[part], self._drawn_at[part] = key, now
        return True

    def _meter_report(self, device_id: int | None) -> MeterReport | None:
        if self.report is None:
            return None
        return next((m for m in self.report.meters if m.id == device_id), None)

    def verdict_table(self) -> Table:
        """A row per check, a column per meter (the selected meter's header reversed)."""
        table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False)
        table.add_column("check", no_wrap=True)
        reports = [self._meter_report(i) for i in self.order]
        for device_id in self.order:
            style = "reverse bold" if device_id == self.selected_id else "bold"
            head = Text(f"id {device_id}", style=style)
            if self.stale(device_id):
                head.append("\nstale", style="bold red")
            else:
                label = self.windows[device_id].label
                # "meter 3" says nothing "id 3" does not; a site's own label fits in 8
                shown = "" if label in ("", f"meter {device_id}") else label[:8]
                head.append("\n" + shown, style="dim")
            table.add_column(head, no_wrap=True, justify="center", min_width=6)
        for name in CHECK_NAMES:
            if name == "bus_load":
                continue
            cells: list[Text] = []
            for device_id, meter in zip(self.order, reports, strict=True):
                check = next((c for c in meter.checks if c.name == name), None) if meter else None
                if self.waiting(device_id):
                    cells.append(Text("..", style="dim"))  # no sample yet: nothing to judge
                elif check is None:
                    cells.append(Text(""))
                else:
                    cells.append(Text(_CELL[check.verdict], style=_STYLE[check.verdict]))
            table.add_row(name, *cells)
        return table

    def reasons(self) -> Table:
        """The selected meter's verdicts that are not a pass, the other meters' failures, and
        the bus checks: one row each, the reason wrapped beside its check."""
        # an indent column, then the reasons, wrapped here so that a long one's next lines
        # are indented under its first
        shown_width = self.query_one("#reasons").content_size.width
        width = (shown_width or 62) - 2
        grid = Table.grid(padding=0)
        grid.add_column(width=2, no_wrap=True)
        grid.add_column(ratio=1)
        selected = self._meter_report(self.selected_id)

        def heading(text: Text) -> None:
            grid.add_row(Text(""), Text(""))
            grid.add_row("", text)  # the heading sits in the wide column, one space in

        grid.add_row("", Text("-- = not checked · .. = no values yet", style="dim"))
        if selected is not None:
            head = Text(f"id {selected.id} {selected.label}".rstrip(), style="bold")
            if self.stale(selected.id):
                head.append(" STALE: no answer for 3 poll cycles", style="bold red")
            heading(head)
            waiting = self.waiting(selected.id)
            shown = [] if waiting else [c for c in selected.checks if c.verdict != "pass"]
            if waiting:
                text = "  waiting for its first values (identity and setup are read first)"
                grid.add_row("", Text(text, style="dim"))
            elif not shown:
                grid.add_row("", Text("  every check passes", style="green"))
            for check in shown:
                grid.add_row("", _reason(check, width=width))
        others = [
            (m, c)
            for m in (self.report.meters if self.report else ())
            if m.id != self.selected_id and not self.waiting(m.id)
            for c in m.checks
            if c.verdict == "fail"
        ]
        if others:
            heading(Text("other meters", style="bold"))
            for meter, check in others:
                grid.add_row("", _reason(check, f"id {meter.id} ", width))
        if self.report is not None:
            heading(Text("bus", style="bold"))
            for check in self.report.bus:
                grid.add_row("", _reason(check, width=width))
        return grid

    def phasor_text(self) -> str:
        """The selected meter's phasor diagram with its legend."""
        device_id = self.selected_id
        if device_id is None:
            return "no meters"
        window = self.windows[device_id]
        # the latest sample: the diagram follows the live values
        now = phasors([window.samples[-1]] if window.samples else [])
        head = f"phasors of id {window.id} {window.label}".rstrip()
        if not window.samples or all(v is None for v in now.volts.values()):
            return head + "\n(no values: not read yet, or the meter did not answer)"
        return "\n".join([head, *now.diagram(), *legend(now.angles).split("   ")])

    def action_save_report(self) -> None:
        """Save the window as judged now as the commissioning report (HTML and JSON), the
        same files as ``emtui report``, in :attr:`report_dir`."""
        capture = self.capture()
        report = self.judge(capture)
        context = ReportContext.for_connection(self.site, self.engine.settings)
        if self.engine.description != context.settings:
            context = replace(context, settings=self.engine.description)
        self.notify(f"Saving the report into {self.report_dir} …", timeout=3)
        self._save_report(capture, report, context)

    @work(thread=True, exclusive=True, group="report", exit_on_error=False)
    def _save_report(
        self, capture: BusCapture, report: CheckReport, context: ReportContext
    ) -> None:
        # rendering the charts takes a moment on a Pi: never on the event loop
        try:
            files = write_report(capture, report, context, self.report_dir)
        except ReportError as exc:
            self.app.call_from_thread(self.notify, f"Report not saved: {exc}", severity="error")
            return
        except Exception as exc:  # a bug: say so rather than fail silently
            log.exception("saving the report")
            message = f"Report not saved (an emtui bug, see app.log): {exc!r}"
            self.app.call_from_thread(self.notify, message, severity="error")
            return
        self.saved = files.html
        worst = report.worst()
        self.app.call_from_thread(
            self.notify, f"Report saved ({worst}): {files.html} and its .json", timeout=10
        )

    def action_select(self, step: int) -> None:
        """Show the next (or previous) meter's reasons and phasors."""
        self.selected = (self.selected + step) % max(len(self.order), 1)
        self.refresh_view()

    def action_close(self) -> None:
        """Back to the tabs."""
        self.app.pop_screen()


_LINK_COUNTS = ("requests", "ok", "timeouts", "crc_errors", "wrong_id", "skipped", "late")


def _count(stats: Mapping[str, object], key: str) -> int:
    value = stats.get(key, 0)
    return value if isinstance(value, int) else 0


def _reason(check: CheckResult, prefix: str = "", width: int = 60) -> Text:
    """``[prefix]name VERDICT: why`` wrapped to ``width`` with the continuation lines indented
    (the name and verdict in the verdict's colour)."""
    word = {"not_checked": "--"}.get(check.verdict, check.verdict.upper())
    label = f"{prefix}{check.name} {word}"
    lines = textwrap.wrap(
        f"{label}: {check.why}", max(width, 20), subsequent_indent="    ", break_on_hyphens=False
    )
    text = Text("\n".join(lines))
    text.stylize(_STYLE[check.verdict], len(prefix), len(label))
    return text
