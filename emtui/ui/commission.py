"""The Commission screen (key ``c``): the commissioning checks live, and a phasor diagram.

The screen judges the samples the engine already reads (the logged set every poll, the other
registers when they are read), with the same pure checks as ``emtui check``; it never polls
the bus itself. It keeps the last :data:`WINDOW_S` seconds of samples per meter.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from emtui.core.bus.reader import Sample
from emtui.core.check.capture import STATIC_NAMES
from emtui.core.check.checks import check_clock, run_checks
from emtui.core.check.model import BusCapture, CheckReport, MeterCapture, Scalar, Snapshot
from emtui.core.check.phasor import legend, phasors
from emtui.core.session import Engine

__all__ = ["WINDOW_S", "CommissionScreen", "MeterWindow"]

WINDOW_S = 60.0
"""Seconds of samples the screen judges."""

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_checked": "dim"}
_CLOCK = "meter_clock_year"


class MeterWindow:
    """The recent samples of one meter, as the checks take them."""

    def __init__(self, device_id: int, label: str = "") -> None:
        self.id = device_id
        self.label = label
        self.static: dict[str, Scalar] = {}
        self.samples: deque[Snapshot] = deque()
        self.clock_samples: deque[Snapshot] = deque()

    def feed(self, sample: Sample) -> None:
        """Take one engine sample (logged set, or other registers)."""
        values: dict[str, Scalar] = {}
        for name, value in sample.values.items():
            v = value.value
            if v is None or isinstance(v, int | float | str):
                values[name] = v
        for name in STATIC_NAMES:
            if values.get(name) is not None:
                self.static[name] = values[name]
        snapshot = Snapshot(sample.time, values, sample.duration)
        if "current_a" in values:
            self.samples.append(snapshot)
        if _CLOCK in values:
            self.clock_samples.append(snapshot)
        for queue in (self.samples, self.clock_samples):
            while queue and queue[0].time < sample.time - WINDOW_S:
                queue.popleft()

    def capture(self, link: Mapping[str, object]) -> MeterCapture:
        """This window as a :class:`MeterCapture`."""
        return MeterCapture(
            id=self.id,
            static=dict(self.static),
            samples=list(self.samples),
            link=dict(link),
            label=self.label,
        )


class CommissionScreen(Screen[None]):
    """Every meter's verdicts and the selected meter's phasors.

    Args:
        engine: the bus engine (link statistics, interval, bus load).
        meters: (id, label) of the meters, in tab order.
        clock: wall clock (tests inject one).
    """

    DEFAULT_CSS = """
    CommissionScreen { layout: vertical; }
    CommissionScreen #commission-title { height: 1; padding: 0 1; }
    CommissionScreen Horizontal { height: 1fr; }
    CommissionScreen #verdicts { width: 1fr; padding: 0 1; overflow-y: auto; }
    CommissionScreen #phasors { width: 44; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("right", "select(1)", "Next meter"),
        Binding("left", "select(-1)", "Previous meter"),
    ]

    def __init__(
        self,
        engine: Engine,
        meters: list[tuple[int, str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.windows = {i: MeterWindow(i, label) for i, label in meters}
        self.selected = 0
        self.report: CheckReport | None = None

    def compose(self) -> ComposeResult:
        yield Static("Commission — checks on the samples of the last minute", id="commission-title")
        with Horizontal():
            yield Static("", id="verdicts")
            yield Static("", id="phasors", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        for device_id in self.windows:
            # identity, setup, angles and the clock are outside the logged set: read them once
            self.engine.refresh_extras(device_id)
        self.set_interval(1.0, self.refresh_view)
        self.refresh_view()

    def feed(self, sample: Sample) -> None:
        """A sample from the engine (the app forwards every one while this screen shows)."""
        window = self.windows.get(sample.device_id)
        if window is not None:
            window.feed(sample)

    def capture(self) -> BusCapture:
        """The windows as they are now, as one capture (what :meth:`judge` judges, and what
        ``emtui.core.report.write_report`` takes to save a report)."""
        meters = [
            w.capture(self.engine.stats(i).as_dict()) for i, w in sorted(self.windows.items())
        ]
        cycle = self.engine.cycle_time()
        return BusCapture(
            meters, self.engine.interval, [cycle] if cycle is not None else [], WINDOW_S
        )

    def judge(self, capture: BusCapture | None = None) -> CheckReport:
        """The checks on ``capture`` (default: the windows as they are now)."""
        report = run_checks(capture if capture is not None else self.capture())
        # The clock is read with the other registers, not with the logged set: judge it on
        # those reads alone.
        fixed = []
        for meter_report in report.meters:
            window = self.windows[meter_report.id]
            clock = check_clock(MeterCapture(id=window.id, samples=list(window.clock_samples)))
            checks = tuple(clock if c.name == "clock" else c for c in meter_report.checks)
            fixed.append(replace(meter_report, checks=checks))
        return replace(report, meters=tuple(fixed))

    def refresh_view(self) -> None:
        """Redraw the verdicts and the phasors."""
        self.report = self.judge()
        lines: list[str] = []
        for meter in self.report.meters:
            title = f"[b]id {meter.id}[/b]" + (f" {meter.label}" if meter.label else "")
            marks = " ".join(f"[{_STYLE[c.verdict]}]{c.name}:{c.verdict}[/]" for c in meter.checks)
            lines.append(f"{title}  {marks}")
            for c in meter.checks:
                if c.verdict in ("fail", "warn"):
                    lines.append(f"   [{_STYLE[c.verdict]}]{c.name}[/]: {_escape(c.why)}")
        for c in self.report.bus:
            lines.append(
                f"[b]bus[/b] [{_STYLE[c.verdict]}]{c.name}:{c.verdict}[/] {_escape(c.why)}"
            )
        self.query_one("#verdicts", Static).update("\n".join(lines))
        self.query_one("#phasors", Static).update(self.phasor_text())

    def phasor_text(self) -> str:
        """The selected meter's phasor diagram with its legend."""
        ids = sorted(self.windows)
        if not ids:
            return "no meters"
        window = self.windows[ids[self.selected % len(ids)]]
        # the latest sample: the diagram follows the live values
        now = phasors([window.samples[-1]] if window.samples else [])
        head = f"id {window.id} {window.label}".rstrip() + "  (left/right: meter)"
        return "\n".join([head, *now.diagram(), legend(now.angles)])

    def action_select(self, step: int) -> None:
        """Show the next (or previous) meter's phasors."""
        self.selected = (self.selected + step) % max(len(self.windows), 1)
        self.refresh_view()

    def action_close(self) -> None:
        """Back to the tabs."""
        self.app.pop_screen()


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
