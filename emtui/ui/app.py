"""The emtui app: an overview of the meters, a tab per meter, the scan screen and logging.

The app is a view onto an :class:`~emtui.core.session.Engine` (a
:class:`~emtui.core.session.BusSession`, or a scripted one in tests): it never talks to the
bus itself. The engine's threads post one :class:`SamplesRead` per meter per poll; the app
folds them into its models at once and redraws on a timer (1 Hz by default, at most 5 Hz),
and then only the cells that changed on the screen that is showing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from emtui.core.bus.link import LinkError
from emtui.core.bus.scanner import FoundDevice
from emtui.core.bus.traffic import TrafficMonitor
from emtui.core.check.capture import expectations
from emtui.core.config import SYSTEM_CONFIG, Config, MeterConfig, user_config_file
from emtui.core.configedit import NewMeter, save_meters, writable
from emtui.core.maps.registers import MapError, RegisterMap, load_map
from emtui.core.session import Engine, LoggingState
from emtui.core.setup import SetupReport
from emtui.ui.commission import CommissionScreen
from emtui.ui.messages import SamplesRead
from emtui.ui.model import MeterModel
from emtui.ui.scan_screen import ScanScreen
from emtui.ui.screens import ConfirmScreen, HelpScreen
from emtui.ui.widgets.meter_tab import MeterTab
from emtui.ui.widgets.overview import Overview

#: Highest refresh rate of the screens (design §11).
MAX_REFRESH_HZ = 5.0
#: Bus load (cycle time / interval) from which the header warns.
LOAD_WARN = 0.9
#: Seconds between reads of the logger's state (rows, files, queue) for the screens.
LOGGING_STATE_EVERY = 3.0


def _meter_bindings() -> list[Binding]:
    return [
        Binding(str(n), f"meter({n})", f"Meter {n}", show=False, id=f"meter_{n}")
        for n in range(1, 10)
    ]


class EmtuiApp(App[None]):
    """The technician's view of one bus.

    Args:
        engine: the bus engine (started by the app, stopped when it quits).
        config: the effective configuration (where a scan can be saved, the logging dirs).
        clock: wall clock for ages (tests inject a fixed one).
        refresh_hz: how often the screens redraw (capped at 5 Hz).
        keymap: binding id → keys, from the config's ``[keys]``.
        note: one line shown under the header (``--demo`` says where its files go).
        start_engine: start the engine on mount (tests with a scripted engine may not).
    """

    CSS_PATH = "app.tcss"
    TITLE = "emtui"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "overview", "Overview", id="overview"),
        *_meter_bindings(),
        Binding("s", "scan", "Scan", id="scan"),
        Binding("r", "raw", "Raw registers", show=False, id="raw"),
        Binding("t", "traffic", "Traffic monitor", show=False, id="traffic"),
        # Not in the footer (80 columns hold only the main keys); in ? and the palette.
        Binding("c", "commission", "Commission", show=False, id="commission"),
        Binding("l", "toggle_logging", "Logging", id="toggle_logging"),
        Binding("u", "upload_now", "Upload", id="upload_now"),
        Binding("f", "refresh_extras", "Read all", id="refresh_extras"),
        # On a meter tab only; not in its footer either (80 columns hold no more keys).
        Binding("e", "setup", "Setup meter", show=False, id="setup"),
        Binding("k", "clock", "Meter clock", show=False, id="clock"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit_app", "Quit", id="quit"),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        config: Config | None = None,
        clock: Callable[[], float] = time.time,
        refresh_hz: float = 1.0,
        keymap: Mapping[str, str] | None = None,
        note: str = "",
        start_engine: bool = True,
        traffic_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.config = config
        self.clock = clock
        self.refresh_hz = min(MAX_REFRESH_HZ, max(0.2, refresh_hz))
        self.note = note
        self.start_engine = start_engine
        # The traffic monitor collects from the start, so the screen (t) shows what went before.
        self.traffic = TrafficMonitor()
        self.traffic_dir = traffic_dir or Path.cwd()
        self.models: dict[int, MeterModel] = {m.id: MeterModel(m) for m in engine.meters}
        self.logging_note = ""
        self._status_text = ""
        self._where_text = ""
        self._logging_state = engine.logging_state()
        self._logging_checked = 0.0
        self.logging_state_every = LOGGING_STATE_EVERY
        """Seconds between reads of the logger's state (tests set 0)."""
        if keymap:
            self.set_keymap(dict(keymap))

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="header"):
            yield Static("", id="where", markup=False)
            yield Static("", id="status")
        if self.note:
            yield Static(self.note, id="note")
        with TabbedContent(id="tabs"):
            with TabPane("o Overview", id="tab-overview"):
                yield Overview(list(self.models.values()), id="overview")
            for n, model in enumerate(self.models.values(), start=1):
                with TabPane(self._tab_title(n, model), id=f"tab-meter-{model.info.id}"):
                    yield MeterTab(model, id=f"meter-{model.info.id}")
        yield Footer()

    @staticmethod
    def _tab_title(n: int, model: MeterModel) -> str:
        prefix = f"{n} " if n <= 9 else ""
        return f"{prefix}{model.info.label} ({model.info.id})"

    def on_mount(self) -> None:
        self.engine.add_listener(lambda sample: self.post_message(SamplesRead(sample)))
        self.engine.add_traffic_listener(self.traffic.listener)
        if self.start_engine:
            self._start_engine()
        self.set_interval(1.0 / self.refresh_hz, self.refresh_view, name="refresh")
        self.refresh_view()

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def _start_engine(self) -> None:
        self.engine.start()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Errors of the thread workers become notifications, never a crash."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(f"{event.worker.group}: {error}", severity="error", timeout=10)

    def on_unmount(self) -> None:
        self.engine.stop()

    # -- data ---------------------------------------------------------------------------------

    def on_samples_read(self, message: SamplesRead) -> None:
        model = self.models.get(message.sample.device_id)
        if model is not None:
            model.apply(message.sample)
        if isinstance(self.screen, CommissionScreen):
            self.screen.feed(message.sample)

    def refresh_view(self) -> None:
        """Redraw what changed: the header and the visible tab."""
        # a timer tick while the app shuts down finds its widgets gone
        with contextlib.suppress(NoMatches):
            self._refresh_view()

    def _refresh_view(self) -> None:
        if len(self.screen_stack) > 1 and not isinstance(self.screen, ModalScreen):
            # A full screen (scan, raw view, traffic) covers the tabs; Textual would still
            # send their redraws to the terminal: ~7 KB/s over SSH for nothing on show.
            return
        now = self.clock()
        interval = self.engine.interval
        # Rows, files and the queue move on (the queue is read from disk: every few seconds).
        if (self._logging_state.running or self.read_only) and (
            time.monotonic() - self._logging_checked >= self.logging_state_every
        ):
            self._logging_checked = time.monotonic()
            self._logging_state = self.engine.logging_state()
        self._update_status()
        if self.read_only:  # the logger may have stopped meanwhile: the engine says so
            note = str(getattr(self.engine, "note", self.note))
            if note != self.note and self.query("#note"):
                self.note = note
                self.query_one("#note", Static).update(note)
        tabs = self.query_one(TabbedContent)
        active = tabs.active
        if active == "tab-overview":
            overview = self.query_one(Overview)
            overview.update_view(now, interval)
            overview.show_logging(self._logging_state, self.logging_note)
        elif active.startswith("tab-meter-"):
            device_id = int(active.rsplit("-", 1)[1])
            tab = self.query_one(f"#meter-{device_id}", MeterTab)
            tab.update_view(
                now,
                interval,
                self.engine.stats(device_id),
                logging=self._logging_state.running,
                starved=self.engine.extras_starved(),
            )

    def _update_status(self) -> None:
        """The header: where (left, cut to fit) and the bus health and logging (right)."""
        engine = self.engine
        where = f"emtui · {engine.description} · {len(self.models)} meter(s)"
        if where != self._where_text:
            self._where_text = where
            self.query_one("#where", Static).update(where)
        load = engine.bus_load()
        cycle = engine.cycle_time()
        parts = []
        if cycle is not None and load is not None:
            figure = f"bus {load * 100:.0f} % ({cycle:.2f} s of {engine.interval:g} s)"
            if load > 1.0:
                figure = f"[b red]{figure} OVER[/b red]"
            elif load >= LOAD_WARN:
                figure = f"[yellow]{figure}[/yellow]"
            parts.append(figure)
        else:
            parts.append("bus —")
        if self._logging_state.held_by is not None:
            parts.append(f"[b green]logged by PID {self._logging_state.held_by}[/b green]")
        else:
            parts.append("[b green]LOGGING[/b green]" if self._logging_state.running else "log off")
        text = " · ".join(parts)
        if text != self._status_text:
            self._status_text = text
            self.query_one("#status", Static).update(text)

    # -- navigation ---------------------------------------------------------------------------

    def action_overview(self) -> None:
        """Show the overview."""
        self.query_one(TabbedContent).active = "tab-overview"

    def action_meter(self, n: int) -> None:
        """Show the n-th meter's tab."""
        models = list(self.models.values())
        if 1 <= n <= len(models):
            self.query_one(TabbedContent).active = f"tab-meter-{models[n - 1].info.id}"

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or ""
        device_id = int(pane.rsplit("-", 1)[1]) if pane.startswith("tab-meter-") else None
        self.engine.set_focus(device_id)
        self.refresh_bindings()  # f exists only on a meter tab
        self.refresh_view()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys only where they do something: f on a meter tab of a bus this app holds."""
        if action in ("refresh_extras", "setup", "clock"):
            try:
                active = self.query_one(TabbedContent).active
            except Exception:  # before the tabs are mounted
                return False
            if not active.startswith("tab-meter-"):
                return False
            # setup and clock refuse with a notice saying what to do (read-only, logging)
            return not self.read_only or action != "refresh_extras"
        if action in ("toggle_logging", "upload_now", "scan"):
            return None if self.read_only else True  # shown, but disabled
        return True

    def action_refresh_extras(self) -> None:
        """Read every register of the meter on screen now (between poll cycles)."""
        active = self.query_one(TabbedContent).active
        if active.startswith("tab-meter-") and not self._refuse_read_only():
            device_id = int(active.rsplit("-", 1)[1])
            self.engine.refresh_extras(device_id)
            self.notify(f"Reading every register of meter {device_id} after this cycle")

    def _meter_on_screen(self) -> MeterModel | None:
        """The model of the meter tab on screen (None, said, on another tab)."""
        active = self.query_one(TabbedContent).active
        model = None
        if active.startswith("tab-meter-"):
            model = self.models.get(int(active.rsplit("-", 1)[1]))
        if model is None:
            self.notify("Open a meter's tab first (1-9)", timeout=5)
        return model

    def _refuse_bus_busy(self, what: str) -> bool:
        """Refuse (with a notice) while a headless logger holds the bus or logging is on."""
        if self._refuse_read_only():
            return True
        if self._logging_state.running:
            self.notify(
                f"Stop logging (l) before the {what}: it needs the bus to itself, and the "
                "logged rows must not stop.",
                severity="warning",
                timeout=8,
            )
            return True
        return False

    def action_setup(self) -> None:
        """The setup dialog (e): a new id, baud and parity for the meter on screen."""
        from emtui.ui.setup_screen import SetupScreen

        model = self._meter_on_screen()
        if model is None or self._refuse_bus_busy("setup"):
            return
        old_id = model.info.id

        def done(report: object) -> None:
            if isinstance(report, SetupReport) and report.ok:
                self.apply_setup(old_id, report)

        self.push_screen(SetupScreen(self.engine, old_id, model.info.label), done)

    def apply_setup(self, old_id: int, report: SetupReport) -> None:
        """After a setup: poll the meter at its new id when it answers at the bus's settings,
        else say where it went."""
        settings, bus = report.settings, self.engine.settings
        new_id = report.new_id if report.new_id is not None else old_id
        if settings is None:
            return
        same_line = (settings.baud, settings.parity.upper(), settings.stopbits) == (
            bus.baud,
            bus.parity.upper(),
            bus.stopbits,
        )
        if not same_line:
            self.notify(
                f"Meter {old_id} now answers at id {new_id}, {settings.describe()}: not on "
                "this bus's settings, so it is no longer polled here. Scan (s) at its new "
                "settings, or set the others to match.",
                severity="warning",
                timeout=12,
            )
            return
        if new_id == old_id:
            return
        meters = []
        for model in self.models.values():
            info = model.info
            configured = self._configured(info.id, info.label, info.map.name)
            if info.id == old_id:
                label = info.label if info.label != f"meter {old_id}" else f"meter {new_id}"
                meters.append(dataclasses.replace(configured, id=new_id, label=label))
            elif info.id != new_id:
                meters.append(configured)
        try:
            self.engine.set_meters(meters)
        except (RuntimeError, LinkError, MapError) as exc:
            self.notify(f"Not polled at its new id: {exc}", severity="error", timeout=8)
            return
        self.models = {m.id: MeterModel(m) for m in self.engine.meters}
        self.call_later(self._rebuild_tabs)
        self.notify(f"Polling meter {old_id} at its new id {new_id}", timeout=8)

    def action_clock(self) -> None:
        """The clock dialog (k): the meter on screen's clock against this machine's; set."""
        from emtui.ui.clock_screen import ClockScreen

        model = self._meter_on_screen()
        if model is None or self._refuse_bus_busy("clock"):
            return
        self.push_screen(ClockScreen(self.engine, model.info.id, model.info.label))

    def action_raw(self) -> None:
        """The raw register view and decoder (r)."""
        if self._refuse_read_only():
            return
        from emtui.ui.raw_screen import RawScreen

        ids = [m.id for m in self.engine.meters]
        maps = {m.id: m.map for m in self.engine.meters}
        default = self.engine.meters[0].map if self.engine.meters else None

        def map_for(device_id: int) -> RegisterMap:
            return maps.get(device_id) or default or load_map("em6400ng")

        self.push_screen(RawScreen(self.engine, ids, map_for, lambda: self._logging_state.running))

    def action_traffic(self) -> None:
        """The traffic monitor (t)."""
        from emtui.ui.traffic_screen import TrafficScreen

        ids = [m.id for m in self.engine.meters]
        self.push_screen(
            TrafficScreen(self.traffic, ids, self.traffic_dir, self.clock, self.refresh_hz)
        )

    def action_help(self) -> None:
        """List every key."""
        self.push_screen(HelpScreen(self.key_rows()))

    def key_rows(self) -> list[tuple[str, str, str]]:
        """(keys, description, binding id) of the app's bindings, as currently mapped."""
        rows: list[tuple[str, str, str]] = []
        keymap = self._keymap
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            binding_id = binding.id or binding.action
            keys = keymap.get(binding_id, binding.key_display or binding.key)
            description = binding.description
            if binding_id.startswith("meter_"):
                if binding_id != "meter_1":
                    continue
                meter_ids = [f"meter_{n}" for n in range(1, 10)]
                if any(i in keymap for i in meter_ids):  # remapped: say which key is which
                    keys = " ".join(keymap.get(i, str(n)) for n, i in enumerate(meter_ids, 1))
                else:
                    keys = "1-9"
                description, binding_id = "a meter's tab, in order", "meter_1…meter_9"
            rows.append((keys.replace("question_mark", "?"), description, binding_id))
        return rows

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Every action in the command palette too."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Overview", "Every meter at a glance", self.action_overview)
        for n, model in enumerate(self.models.values(), start=1):
            yield SystemCommand(
                f"Meter {model.info.label}",
                f"Tab of meter {model.info.id}",
                functools.partial(self.action_meter, n),
            )
        yield SystemCommand("Scan the bus", "Find and identify meters", self.action_scan)
        yield SystemCommand(
            "Commission", "Checks on the live values, and phasors", self.action_commission
        )
        yield SystemCommand(
            "Logging on/off", "Start or stop the CSV logger", self.action_toggle_logging
        )
        yield SystemCommand("Upload now", "Send the queued day files", self.action_upload_now)
        yield SystemCommand(
            "Read all registers", "Read the meter tab's other registers", self.action_refresh_extras
        )
        yield SystemCommand(
            "Setup meter", "New id, baud and parity for the meter tab's meter", self.action_setup
        )
        yield SystemCommand(
            "Meter clock", "The meter tab's clock against this machine's; set it", self.action_clock
        )

    def action_commission(self) -> None:
        """Open the Commission screen: the checks on the live samples, and phasors."""
        meters = [(m.info.id, m.info.label) for m in self.models.values()]
        configured = self.config.meters if self.config is not None else ()
        expect = expectations(configured)
        site = self.config.upload.site if self.config is not None else ""
        self.push_screen(
            CommissionScreen(
                self.engine,
                meters,
                clock=self.clock,
                expect=expect,
                report_dir=self.traffic_dir,
                site=site,
            )
        )

    # -- scan ---------------------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        """True while a headless logger holds the bus (the engine only shows its values)."""
        return self.engine.read_only

    def _refuse_read_only(self) -> bool:
        if self.read_only:
            self.notify(
                "A headless logger holds the bus: stop it first "
                "(sudo systemctl stop emtui, if it runs as the service).",
                severity="warning",
                timeout=8,
            )
        return self.read_only

    def action_scan(self) -> None:
        """Open the scan screen."""
        if isinstance(self.screen, ScanScreen) or self._refuse_read_only():
            return
        if self._logging_state.running:
            self.notify("Stop logging (l) before scanning: a scan pauses the logger's rows.")
            return
        expected = sorted(self.models)
        self.push_screen(ScanScreen(self.engine, expected, self.apply_scan, self.save_scan))

    def apply_scan(self, devices: list[FoundDevice]) -> None:
        """Poll the meters found and give each a tab."""
        meters = [self._configured(d.id, self._label_for(d), self._map_for(d.id)) for d in devices]
        try:
            self.engine.set_meters(meters)
        except (RuntimeError, LinkError, MapError) as exc:
            self.notify(f"Not applied: {exc}", severity="error", timeout=8)
            return
        self.models = {m.id: MeterModel(m) for m in self.engine.meters}
        self.call_later(self._rebuild_tabs)
        self.notify(f"Polling {len(meters)} meter(s) found by the scan")

    def _configured(self, device_id: int, label: str, map_name: str) -> MeterConfig:
        """The meter's configuration as the engine has it (its logged values, expectations and
        map file kept), else a new one with ``label`` and ``map_name``."""
        config = getattr(self.engine, "config", None) or self.config
        for meter in config.meters if config is not None else ():
            if meter.id == device_id:
                return meter
        return MeterConfig(id=device_id, label=label, map=map_name)

    def _label_for(self, device: FoundDevice) -> str:
        existing = self.models.get(device.id)
        if existing is not None:
            return existing.info.label
        return f"meter {device.id}"

    def _map_for(self, device_id: int) -> str:
        existing = self.models.get(device_id)
        return existing.info.map.name if existing is not None else "em6400ng"

    async def _rebuild_tabs(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "tab-overview"
        for pane in list(tabs.query(TabPane)):
            if (pane.id or "").startswith("tab-meter-"):
                await tabs.remove_pane(pane.id or "")
        for n, model in enumerate(self.models.values(), start=1):
            await tabs.add_pane(
                TabPane(
                    self._tab_title(n, model),
                    MeterTab(model, id=f"meter-{model.info.id}"),
                    id=f"tab-meter-{model.info.id}",
                )
            )
        self.query_one(Overview).set_models(list(self.models.values()))
        self.refresh_view()

    def save_scan(self, devices: list[FoundDevice]) -> None:
        """Write the meters found into the config (asking before the service's file)."""
        loaded = self.config.source if self.config is not None else None
        target = loaded
        if target is None or not writable(target):
            target = user_config_file()
        if target == SYSTEM_CONFIG or target.resolve() == SYSTEM_CONFIG:

            def answer(yes: bool | None) -> None:
                if yes:
                    self._save_to(target, devices, loaded)

            self.push_screen(
                ConfirmScreen(
                    f"Write the meters into the service's config {target}? The running "
                    "service reads it at its next start."
                ),
                answer,
            )
            return
        self._save_to(target, devices, loaded)

    def _save_to(self, path: Path, devices: list[FoundDevice], loaded: Path | None) -> None:
        meters = [NewMeter(d.id, self._label_for(d), self._map_for(d.id)) for d in devices]
        base = loaded if loaded is not None and loaded != path else None
        try:
            result = save_meters(path, meters, base=base)
        except (OSError, ValueError) as exc:
            self.notify(f"Not saved: {exc}", severity="error", timeout=10)
            return
        kept = f"; already there: {', '.join(map(str, result.kept))}" if result.kept else ""
        added = ", ".join(map(str, result.added)) or "none"
        copied = f" (a copy of {base} with the meters added)" if base is not None else ""
        self.notify(f"Saved to {result.path}{copied}: added {added}{kept}", timeout=8)

    # -- logging ------------------------------------------------------------------------------

    def action_toggle_logging(self) -> None:
        """Start or stop the logging worker (the same one as ``emtui --log``)."""
        if self._refuse_read_only():
            return
        if isinstance(self.screen, ScanScreen):
            self.notify("Finish the scan screen first (escape): a scan pauses the logger's rows.")
            return
        self._toggle_logging(not self._logging_state.running)

    @work(thread=True, exclusive=True, group="logging", exit_on_error=False)
    def _toggle_logging(self, on: bool) -> None:
        try:
            state = self.engine.start_logging() if on else self.engine.stop_logging()
        except Exception as exc:
            self.call_from_thread(self.notify, f"Logging: {exc}", severity="error", timeout=10)
            return
        self.call_from_thread(self._logging_changed, state, on)

    def _logging_changed(self, state: LoggingState, started: bool) -> None:
        self._logging_state = state
        self._logging_checked = time.monotonic()
        if started and state.running:
            self.notify(
                f"Logging to {state.data_dir}. It stops when the app quits; "
                "for unattended logging install the service (emtui service install).",
                timeout=8,
            )
        elif not started:
            self.notify(f"Logging stopped: {state.rows} rows written")
        self.refresh_view()

    def action_upload_now(self) -> None:
        """Send the queued day files now."""
        if self._refuse_read_only():
            return
        self.notify("Uploading the queued files …")
        self._upload()

    @work(thread=True, exclusive=True, group="upload", exit_on_error=False)
    def _upload(self) -> None:
        summary = self.engine.upload_now()
        self.call_from_thread(self.notify, f"Upload: {summary}", timeout=8)

    # -- quitting -----------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q, the palette's Quit) asks first too while logging."""
        self.action_quit_app()

    def procedure_under_way(self) -> str | None:
        """What a setup or clock dialog is in the middle of (None: nothing): quitting then
        would leave the meter half set up, its semaphore held, and no verdict shown."""
        from emtui.ui.clock_screen import ClockScreen
        from emtui.ui.setup_screen import SetupScreen

        for screen in self.screen_stack:
            if isinstance(screen, SetupScreen) and screen.state in ("running", "confirm"):
                return f"a setup of meter {screen.device_id} is under way"
            if isinstance(screen, ClockScreen) and screen.state == "setting":
                return f"meter {screen.device_id}'s clock is being set"
        return None

    def action_quit_app(self) -> None:
        """Quit; asks first while logging; refused while a setup or clock set runs."""
        busy = self.procedure_under_way()
        if busy is not None:
            self.notify(
                f"Not quitting: {busy}. Answer its question or wait for its verdict first.",
                severity="warning",
                timeout=8,
            )
            return
        if not self._logging_state.running:
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(
            ConfirmScreen("Logging is on. Stop logging and quit? (rows stop being written)"),
            answer,
        )
