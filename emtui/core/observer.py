"""The app's engine while a headless logger holds the bus: its values, read-only.

Two masters on one RS-485 line corrupt each other's replies, so the app never fights a
running ``emtui --log`` for the port. :class:`LoggerObserver` has the surface of a
:class:`~emtui.core.session.BusSession` but only reads what the logger publishes — its live
file (:mod:`emtui.core.log.livefile`, the latest sample per meter) and its status file — and
refuses everything that needs the bus, saying how to stop the service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emtui.core.bus.link import ConnectionSettings, LinkError, Reply
from emtui.core.bus.scanner import FoundDevice, ScanReport
from emtui.core.bus.stats import DeviceStats
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.bus.writes import WriteRequest, WriteResult
from emtui.core.clock import ClockReading
from emtui.core.config import Config, MeterConfig
from emtui.core.log.livefile import find_live, sample_from_live, stats_from_live
from emtui.core.log.runstate import read_status
from emtui.core.session import Confirm, LoggingState, MeterInfo, SampleListener, meter_info
from emtui.core.setup import SetupPlan, SetupReport

#: How to free the bus for inspection (the service's unit name is emtui).
STOP_HINT = "stop the logger first (sudo systemctl stop emtui, if it runs as the service)"


class ReadOnly(LinkError):
    """The bus is held by a headless logger."""


class LoggerObserver:
    """Shows a running logger's latest samples (see the module docstring).

    Args:
        config: the app's configuration (meters when the live file names none).
        settings: the connection the logger holds.
        live: the live document found at start (:func:`~emtui.core.log.livefile.find_live`).
        poll: seconds between reads of the live file.
    """

    read_only = True
    allow_writes = False
    """Nothing is ever written through a bus another process holds."""

    def __init__(
        self,
        config: Config,
        settings: ConnectionSettings,
        live: dict[str, Any],
        poll: float = 1.0,
    ) -> None:
        self.config = config
        self.settings = settings
        self.pid = int(live.get("pid", 0))
        self.description = (
            f"{live.get('description') or settings.describe()} (logger PID {self.pid})"
        )
        self.interval = float(live.get("interval") or config.logging.interval)
        self.poll = poll
        meters = [
            MeterConfig(id=int(m["id"]), label=str(m.get("label") or ""), map=str(m["map"]))
            for m in live.get("meters", [])
        ] or list(config.meters)
        self.config = Config(
            bus=config.bus,
            meters=tuple(meters),
            logging=config.logging,
            upload=config.upload,
            state_dir=config.state_dir,
            source=config.source,
        )
        self.meters: list[MeterInfo] = [meter_info(m, self.config) for m in meters]
        self.status_file = Path(live["status_file"]) if live.get("status_file") else None
        self._live = live
        self._stats: dict[int, DeviceStats] = {}
        self._listeners: list[SampleListener] = []
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.logger_gone = False
        """True once the logger stopped publishing (it quit or was stopped)."""

    @property
    def note(self) -> str:
        """What the app says about this mode."""
        if self.logger_gone:
            return (
                f"The logger (PID {self.pid}) has stopped: these values are its last. "
                "Quit and start emtui again to use the bus."
            )
        return (
            f"The bus is held by an emtui logger (PID {self.pid}): these are its latest values, "
            f"read-only. To scan or inspect, {STOP_HINT}."
        )

    def add_listener(self, listener: SampleListener) -> None:
        """Call ``listener`` with each new sample the logger published."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Start following the live file."""
        self._stop.clear()
        self._deliver(self._live)
        self._thread = threading.Thread(target=self._run, name="emtui-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            live = find_live(self.settings.port)
            if live is None:  # it removed its file, or its PID is gone
                self.logger_gone = True
                continue
            self.logger_gone = False
            self._live = live
            self._deliver(live)

    def _deliver(self, live: dict[str, Any]) -> None:
        for meter in live.get("meters", []):
            sample = sample_from_live(meter)
            if sample is None:
                continue
            self._stats[sample.device_id] = stats_from_live(meter)
            if self._seen.get(sample.device_id) == sample.time:
                continue
            self._seen[sample.device_id] = sample.time
            for listener in list(self._listeners):
                listener(sample)

    # -- figures --------------------------------------------------------------------------------

    def stats(self, device_id: int) -> DeviceStats:
        """The logger's link statistics of ``device_id``."""
        return self._stats.get(device_id) or DeviceStats()

    def cycle_time(self) -> float | None:
        """The logger's last poll of every meter (the sum of the meters' read times)."""
        durations = [m.get("duration") for m in self._live.get("meters", [])]
        numbers = [float(d) for d in durations if isinstance(d, int | float)]
        return sum(numbers) if numbers else None

    def bus_load(self) -> float | None:
        """The cycle time against the logger's interval."""
        cycle = self.cycle_time()
        if cycle is None:
            return None
        return cycle / self.interval if self.interval > 0 else 1.0

    def extras_starved(self) -> bool:
        """Nothing but the logged set is read while the logger holds the bus."""
        return False

    # -- what needs the bus ----------------------------------------------------------------------

    def set_focus(self, device_id: int | None) -> None:
        """Nothing to do: only the logged set is known."""

    def refresh_extras(self, device_id: int, names: Sequence[str] | None = None) -> None:
        """Refused: the logger holds the bus."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def scan(
        self,
        ids: Sequence[int],
        expected: Sequence[int],
        on_progress: Callable[[int, int, int], object],
        on_found: Callable[[FoundDevice], object],
    ) -> ScanReport:
        """Refused: the logger holds the bus."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def cancel_scan(self) -> None:
        """Nothing runs."""

    def scan_eta(self) -> float | None:
        """No scan runs here."""
        return None

    def reconnect(self, settings: ConnectionSettings) -> None:
        """Refused: the logger holds the bus."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def set_meters(self, meters: Sequence[MeterConfig]) -> None:
        """Refused: the logger decides what it polls."""
        raise ReadOnly(f"the logger (PID {self.pid}) decides what it polls")

    def start_logging(self) -> LoggingState:
        """The logger already logs: nothing to start."""
        raise ReadOnly(f"the logger (PID {self.pid}) is already logging this bus")

    def stop_logging(self) -> LoggingState:
        """Refused: stop the service instead."""
        raise ReadOnly(f"this app did not start that logger: {STOP_HINT}")

    def logging_state(self) -> LoggingState:
        """The logger's status file, as the logging panel shows it."""
        status = read_status(self.status_file.parent) if self.status_file else None
        state = LoggingState(
            running=False, upload_target=self.config.upload.target, held_by=self.pid
        )
        if status is None:
            return state
        state.data_dir = str(status.get("data_dir", ""))
        state.state_dir = str(self.status_file.parent if self.status_file else "")
        state.rows = sum(int(m.get("rows", 0)) for m in status.get("meters", []))
        state.rows_lost = sum(int(m.get("rows_lost", 0)) for m in status.get("meters", []))
        state.files = {
            int(m["id"]): str(m["file"]) for m in status.get("meters", []) if m.get("file")
        }
        queue = status.get("queue") or {}
        state.queued = int(queue.get("queued", 0))
        state.last_upload = queue.get("last_result")
        state.next_upload = queue.get("next_run")
        return state

    def upload_now(self) -> str:
        """Refused: the logger owns its queue (``emtui upload --now`` works beside it)."""
        return "the logger owns the upload queue: run emtui upload --now in a shell"

    def read_raw(self, device_id: int, address: int, count: int, function: int = 3) -> Reply:
        """Refused: the logger holds the bus."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def add_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        """Nothing to see: the logger's traffic is in its own process (``--trace``)."""

    def remove_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        """Nothing to stop."""

    def write(self, request: WriteRequest) -> WriteResult:
        """Refused: a headless logger holds the bus (nothing is sent)."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def setup_meter(
        self,
        plan: SetupPlan,
        confirm: Confirm,
        say: Callable[[str], None],
        settle: float = 5.0,
    ) -> SetupReport:
        """Refused: a headless logger holds the bus (nothing is sent)."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def read_clock(self, device_id: int) -> ClockReading:
        """Refused: a headless logger holds the bus."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")

    def set_clock(self, device_id: int, confirm: Confirm) -> str | None:
        """Refused: a headless logger holds the bus (nothing is sent)."""
        raise ReadOnly(f"the bus is held by the logger (PID {self.pid}): {STOP_HINT}")
