"""A scripted engine for the app's tests and screenshots: no bus, no threads, no wall time.

It has the surface of :class:`emtui.core.session.BusSession` (the app cannot tell them
apart) and serves the values of the simulator's reference-site pumps, frozen at a fixed time,
decoded by the real codec. A test says when a poll happens (:meth:`ScriptedEngine.poll`), what
fails (:meth:`fail`) and what a scan finds (``scan_result``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pymodbus.framer import FramerRTU

from emtui.core.bus.link import ConnectionSettings, LinkError, Outcome, Reply
from emtui.core.bus.reader import Sample
from emtui.core.bus.scanner import FoundDevice, ScanReport
from emtui.core.bus.stats import DeviceStats
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.maps.codec import Value, decode_entry
from emtui.core.maps.registers import RegisterEntry, load_map
from emtui.core.session import LoggingState, MeterInfo, SampleListener, meter_info
from emtui.sim.bus import build_meters
from emtui.sim.meter import ModbusExceptionReply, SimulatedMeter
from emtui.sim.pump import DutyCycle

#: The fixed wall time of every scripted sample: 2026-06-01 10:00:00 UTC.
T0 = 1_780_308_000.0


def reference_config(tmp: Path, ids: Sequence[int] = (1, 2, 3, 4)) -> Config:
    """The reference site's config (4 pumps, 19200 8E1), with dirs under ``tmp``."""
    return Config(
        bus=BusConfig(port="socket://gateway.site:4001", baud=19200, parity="E"),
        meters=tuple(MeterConfig(id=i, label=f"Pump {i}") for i in ids),
        logging=LoggingConfig(interval=1.0, data_dir=tmp / "data"),
        upload=UploadConfig(target=None, site="pumphouse"),
        state_dir=tmp / "state",
    )


class ScriptedEngine:
    """Everything the app asks of an engine, answered from a script.

    Args:
        config: the meters and dirs (see :func:`reference_config`).
        clock: the time stamped on samples (tests move it).
        running: the pumps run (False: standing, no load).
        live: the simulated meters follow ``clock`` (energy counters advance, values move
            as the pump model says) instead of being frozen at :data:`T0`.
    """

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] | None = None,
        *,
        running: bool = True,
        live: bool = False,
    ) -> None:
        self.config = config
        self.read_only = False
        self.settings = ConnectionSettings(
            port=config.bus.port or "socket://gateway.site:4001",
            baud=config.bus.baud,
            parity=config.bus.parity,
        )
        self.description = self.settings.describe()
        self.interval = config.logging.interval
        self.clock = clock or (lambda: T0)
        self.meters: list[MeterInfo] = [meter_info(m, config) for m in config.meters]
        scripted_clock = self.clock
        self.sim: dict[int, SimulatedMeter] = build_meters(
            [m.id for m in self.meters],
            load_map("em6400ng"),
            clock=(lambda: scripted_clock()) if live else (lambda: T0),
            frozen=not live,
            running=running,
            duty=DutyCycle(continuous=True) if live else None,
        )
        self.listeners: list[SampleListener] = []
        self._stats: dict[int, DeviceStats] = {}
        self.failing: dict[int, str] = {}
        self.started = False
        self.stopped = False
        self.focus: int | None = None
        self.refreshed: list[int] = []
        self.refreshed_names: list[tuple[str, ...] | None] = []
        """The ``names`` of each refresh_extras call (None: every other register)."""
        self.starved = False
        self.cycle = 0.98
        self.scan_result: list[FoundDevice] = []
        self.scan_calls: list[tuple[list[int], list[int]]] = []
        self.reconnected: list[ConnectionSettings] = []
        self.logging = False
        self.log_rows = 0
        self.uploads = 0
        self.cancelled = False
        self.scan_gate: threading.Event | None = None
        """When set to an Event, a scan waits on it after probing each id (tests cancel then)."""
        self.eta: float | None = None
        """What scan_eta() answers."""
        self.traffic_listeners: list[Callable[[TrafficRecord], None]] = []
        self.raw_reads: list[tuple[int, int, int, int]] = []
        """Every raw read asked for: (device id, wire address, count, function)."""
        self.raw_overrides: dict[int, dict[int, int]] = {}
        """Registers a test changes: device id → {wire address: value}."""

    # -- the Engine surface -------------------------------------------------------------------

    def add_listener(self, listener: SampleListener) -> None:
        self.listeners.append(listener)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def stats(self, device_id: int) -> DeviceStats:
        return self._stats.setdefault(device_id, DeviceStats())

    def bus_load(self) -> float | None:
        return self.cycle / self.interval if self.interval else None

    def cycle_time(self) -> float | None:
        return self.cycle

    def set_focus(self, device_id: int | None) -> None:
        self.focus = device_id

    def refresh_extras(self, device_id: int, names: Sequence[str] | None = None) -> None:
        self.refreshed.append(device_id)
        self.refreshed_names.append(None if names is None else tuple(names))
        info = self._info(device_id)
        entries = info.extras if names is None else [e for e in info.extras if e.name in names]
        self._publish(self._sample(info, entries))

    def extras_starved(self) -> bool:
        return self.starved

    def scan(
        self,
        ids: Sequence[int],
        expected: Sequence[int],
        on_progress: Callable[[int, int, int], None],
        on_found: Callable[[FoundDevice], None],
    ) -> ScanReport:
        self.scan_calls.append((list(ids), list(expected)))
        found = {d.id: d for d in self.scan_result}
        devices = []
        for index, device_id in enumerate(ids):
            if self.cancelled:
                break
            on_progress(index, len(ids), device_id)
            if device_id in found:
                devices.append(found[device_id])
                on_found(found[device_id])
            if self.scan_gate is not None:
                self.scan_gate.wait(5)
        report = ScanReport(
            devices=devices,
            ids=list(ids),
            expected=list(expected),
            duration=1.5,
            cancelled=self.cancelled,
        )
        self.cancelled = False
        return report

    def cancel_scan(self) -> None:
        self.cancelled = True

    def scan_eta(self) -> float | None:
        return self.eta

    def reconnect(self, settings: ConnectionSettings) -> None:
        if self.logging:  # as BusSession
            raise LinkError("stop logging before changing the serial settings")
        self.reconnected.append(settings)
        self.settings = settings
        self.description = settings.describe()

    def set_meters(self, meters: Sequence[MeterConfig]) -> None:
        if self.logging:  # as BusSession
            raise RuntimeError("stop logging before changing the meters")
        self.config = dataclasses.replace(self.config, meters=tuple(meters))
        self.meters = [meter_info(m, self.config) for m in self.config.meters]
        extra = [m.id for m in self.meters if m.id not in self.sim]
        if extra:
            self.sim.update(
                build_meters(extra, load_map("em6400ng"), clock=lambda: T0, frozen=True)
            )

    def start_logging(self) -> LoggingState:
        self.logging = True
        return self.logging_state()

    def stop_logging(self) -> LoggingState:
        self.logging = False
        return self.logging_state()

    def logging_state(self) -> LoggingState:
        data = self.config.logging.data_dir
        return LoggingState(
            running=self.logging,
            data_dir=str(data),
            state_dir=str(self.config.state_dir),
            rows=self.log_rows,
            files={
                m.id: str(data / f"meter_{m.id}" / f"meter_{m.id}_2026-06-01.csv")
                for m in self.meters
            }
            if self.logging
            else {},
        )

    def upload_now(self) -> str:
        self.uploads += 1
        return "nothing queued"

    def read_raw(self, device_id: int, address: int, count: int, function: int = 3) -> Reply:
        """The simulated meter's registers (or its exception), with its frames as traffic."""
        self.raw_reads.append((device_id, address, count, function))
        request = _frame(bytes([device_id, function, address >> 8, address & 0xFF, count >> 8,
                                count & 0xFF]))  # fmt: skip
        stats = self.stats(device_id)
        stats.requests += 1
        if device_id in self.failing or device_id not in self.sim:
            stats.timeouts += 1
            reply = Reply(Outcome.TIMEOUT, rtt=0.2, sent=request)
        else:
            try:
                if function not in (3, 4):
                    raise ModbusExceptionReply(1)
                registers = self.sim[device_id].read(function, address, count)
            except ModbusExceptionReply as exc:
                stats.exceptions[exc.code] += 1
                received = _frame(bytes([device_id, function | 0x80, exc.code]))
                reply = Reply(
                    Outcome.EXCEPTION, exception_code=exc.code, rtt=0.03, sent=request,
                    received=received,
                )  # fmt: skip
            else:
                over = self.raw_overrides.get(device_id, {})
                registers = [over.get(address + i, r) for i, r in enumerate(registers)]
                data = b"".join(r.to_bytes(2, "big") for r in registers)
                received = _frame(bytes([device_id, function, len(data)]) + data)
                stats.ok += 1
                reply = Reply(
                    Outcome.OK, registers=registers, rtt=0.03, sent=request, received=received
                )
        self.emit_traffic(
            TrafficRecord(
                time=self.clock(),
                device_id=device_id,
                sent=reply.sent,
                received=reply.received,
                outcome=reply.outcome,
                rtt=reply.rtt,
                exception_code=reply.exception_code,
                function=function,
            )
        )
        return reply

    def add_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        self.traffic_listeners.append(listener)

    def remove_traffic_listener(self, listener: Callable[[TrafficRecord], None]) -> None:
        if listener in self.traffic_listeners:
            self.traffic_listeners.remove(listener)

    def emit_traffic(self, record: TrafficRecord) -> None:
        """Hand ``record`` to the traffic listeners, as the bus thread would."""
        for listener in list(self.traffic_listeners):
            listener(record)

    # -- the script ---------------------------------------------------------------------------

    def _info(self, device_id: int) -> MeterInfo:
        return next(m for m in self.meters if m.id == device_id)

    def _sample(self, info: MeterInfo, entries: Sequence[RegisterEntry]) -> Sample:
        failure = self.failing.get(info.id)
        values: dict[str, Value] = {}
        status: dict[str, str] = {}
        meter = self.sim[info.id]
        for entry in entries:
            if failure:
                values[entry.name] = Value(None)
                status[entry.name] = failure
                continue
            registers = meter.read(3, entry.address, entry.count)
            values[entry.name] = decode_entry(info.map, entry, registers)
            status[entry.name] = "ok"
        return Sample(
            device_id=info.id,
            time=self.clock(),
            status=failure or "ok",
            values=values,
            entry_status=status,
            duration=0.24,
            requests=3,
        )

    def _publish(self, sample: Sample) -> None:
        for listener in self.listeners:
            listener(sample)

    def poll(self) -> None:
        """One poll cycle: a sample of each meter's logged set, as the bus would give."""
        for info in self.meters:
            sample = self._sample(info, info.logged)
            stats = self.stats(info.id)
            stats.requests += 3
            if info.id in self.failing:
                stats.timeouts += 3
            else:
                stats.ok += 3
                for rtt in (0.0452, 0.0921, 0.0301):
                    stats.rtts.append(rtt)
            if self.logging:
                self.log_rows += 1
            self._publish(sample)

    def fail(self, device_id: int, status: str = "timeout") -> None:
        """From now on meter ``device_id`` gives ``status`` rows (None-valued)."""
        self.failing[device_id] = status

    def recover(self, device_id: int) -> None:
        """Meter ``device_id`` answers again."""
        self.failing.pop(device_id, None)


def _frame(body: bytes) -> bytes:
    """An RTU frame: ``body`` and its CRC."""
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
