"""A scripted engine for the app's tests and screenshots: no bus, no threads, no wall time.

It has the surface of :class:`emtui.core.session.BusSession` (the app cannot tell them
apart) and serves the values of the simulator's reference-site pumps, frozen at a fixed time,
decoded by the real codec. A test says when a poll happens (:meth:`ScriptedEngine.poll`), what
fails (:meth:`fail`) and what a scan finds (``scan_result``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pymodbus.framer import FramerRTU

from emtui.core.bus.command import command_labels, command_request
from emtui.core.bus.link import ConnectionSettings, LinkError, Outcome, Reply
from emtui.core.bus.reader import Sample
from emtui.core.bus.scanner import FoundDevice, ScanReport
from emtui.core.bus.stats import DeviceStats
from emtui.core.bus.traffic import TrafficRecord
from emtui.core.bus.writes import (
    AuditLog,
    WriteRefused,
    WriteRequest,
    WriteResult,
    check_allowed,
    format_frame,
)
from emtui.core.clock import CLOCK_COUNT, CLOCK_REGISTER, ClockReading, clock_parameters
from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.maps.codec import Value, decode_entry
from emtui.core.maps.registers import RegisterEntry, load_map
from emtui.core.session import (
    CLOCK_PURPOSE,
    SETUP_PURPOSE,
    Confirm,
    LoggingState,
    MeterInfo,
    SampleListener,
    meter_info,
)
from emtui.core.setup import BAUD_CODE, PARITY_CODE, SetupFailed, SetupPlan, SetupReport
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
        self.allow_writes = False
        """As the session's: without it every write is refused (and audited)."""
        self.writes: list[WriteRequest] = []
        """Every write that went on the (scripted) wire."""

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

    # -- writes, as the session does them ----------------------------------------------------

    def _audit(self) -> AuditLog:
        return AuditLog(self.config.state_dir)

    def write(self, request: WriteRequest) -> WriteResult:
        """As :meth:`BusSession.write`: refused (audited) without allow_writes or to id 0;
        else applied to the simulated meter (registers in its command areas take it, others
        answer exception 02, coils 01), the frames given as traffic, the outcome audited."""
        audit = self._audit()
        try:
            check_allowed(self.allow_writes, request.device_id)
        except WriteRefused as exc:
            audit.record(self.settings.port, request, f"refused: {exc}")
            raise
        audit.check_writable()
        reply = self._wire_write(request)
        outcome = "ok" if reply.ok else str(reply.outcome)
        if reply.outcome is Outcome.EXCEPTION:
            outcome = f"exception:{reply.exception_code or 0:02d}"
        audit.record(self.settings.port, request, outcome)
        return WriteResult(request, reply, outcome)

    def _wire_write(self, request: WriteRequest) -> Reply:
        self.writes.append(request)
        sent = request.frame()
        device_id = request.device_id
        meter = self.sim.get(device_id)
        if device_id in self.failing or meter is None:
            reply = Reply(Outcome.TIMEOUT, rtt=0.2, sent=sent)
        else:
            try:
                if request.function in (5, 15):
                    raise ModbusExceptionReply(1)
                meter.write(request.address, request.values)
            except ModbusExceptionReply as exc:
                received = _frame(bytes([device_id, request.function | 0x80, exc.code]))
                reply = Reply(
                    Outcome.EXCEPTION, exception_code=exc.code, rtt=0.03, sent=sent,
                    received=received,
                )  # fmt: skip
            else:
                received = _frame(sent[:6])
                reply = Reply(Outcome.OK, rtt=0.03, sent=sent, received=received)
            if meter.device_id != device_id:  # re-addressed: it answers at its new id now
                self.sim[meter.device_id] = self.sim.pop(device_id)
        self.emit_traffic(
            TrafficRecord(
                time=self.clock(), device_id=device_id, sent=sent, received=reply.received,
                outcome=reply.outcome, rtt=reply.rtt, exception_code=reply.exception_code,
                function=request.function,
            )
        )  # fmt: skip
        return reply

    def _command(self, device_id: int, command: int, parameters: list[int]) -> WriteRequest:
        """The command block with a semaphore taken from the simulated meter."""
        semaphore = self.sim[device_id].read(3, 5679, 1)[0]
        return command_request(device_id, command, semaphore, parameters)

    def read_clock(self, device_id: int) -> ClockReading:
        """The simulated meter's clock registers against the injected clock."""
        pi_time = _dt.datetime.fromtimestamp(self.clock()).astimezone()
        if device_id in self.failing or device_id not in self.sim:
            return ClockReading(device_id, None, pi_time, "timeout")
        fields = self.sim[device_id].read(3, CLOCK_REGISTER - 1, CLOCK_COUNT)
        year, month, day, hour, minute, second, milli = fields
        meter = _dt.datetime(year, month, day, hour, minute, second, milli * 1000)
        return ClockReading(device_id, meter, pi_time, "ok")

    def set_clock(self, device_id: int, confirm: Confirm) -> str | None:
        """Command 1003 from the injected clock, as :meth:`BusSession.set_clock`."""
        self._refuse(device_id, CLOCK_PURPOSE)
        moment = _dt.datetime.fromtimestamp(self.clock())
        request = self._command(device_id, 1003, clock_parameters(moment))
        labels = command_labels(1003, len(request.values))
        if not confirm(format_frame(request, labels)):
            self._release(device_id, request.values[1])
            return "not confirmed: nothing was sent (the semaphore was given back)"
        result = self.write(request)
        self._release(device_id, request.values[1])
        return None if result.ok else f"the meter did not accept the command ({result.outcome})"

    def _release(self, device_id: int, semaphore: int) -> None:
        self.write(WriteRequest(device_id, 16, 5679, (semaphore,), purpose="release"))

    def _refuse(self, device_id: int, purpose: str, *ids: int) -> None:
        audit = self._audit()
        try:
            check_allowed(self.allow_writes, device_id)
            for other in ids:
                check_allowed(True, other)
        except WriteRefused as exc:
            audit.record_refusal(self.settings.port, device_id, purpose, str(exc))
            raise

    def setup_meter(
        self,
        plan: SetupPlan,
        confirm: Confirm,
        say: Callable[[str], None],
        settle: float = 5.0,
    ) -> SetupReport:
        """The command-interface part of a setup on the simulated meter (the real procedure
        with its line checks runs over the simulator in the session's test)."""
        self._refuse(plan.device_id, SETUP_PURPOSE, *((plan.new_id,) if plan.new_id else ()))
        if self.logging:
            raise LinkError("stop logging (l) first: a setup takes the bus for several seconds")
        new_id, baud, parity = plan.target(self.settings)
        if plan.device_id not in self.sim:
            raise SetupFailed(f"id {plan.device_id} does not answer: nothing was sent", 4)
        if new_id != plan.device_id and new_id in self.sim:
            raise SetupFailed(f"id {new_id} already answers: a duplicate address", 5)
        report = SetupReport(new_id=new_id)
        say(f"id {plan.device_id} answers at {self.settings.describe()}")
        report.steps.append(f"id {plan.device_id} answers")
        timeout = int(load_map("em6400ng").commands.get("ascii_timeout_default") or 0)
        request = self._command(
            plan.device_id, 5000, [1, 0, new_id, BAUD_CODE[baud], PARITY_CODE[parity], timeout]
        )
        notes = ["", "", f"new id {new_id}", f"{baud} baud", parity, "map default, unverified"]
        labels = command_labels(5000, len(request.values), notes)
        if not confirm(format_frame(request, labels)):
            self._release(plan.device_id, request.values[1])
            raise SetupFailed("not confirmed: the command was not sent", 2)
        self.write(request)
        report.sent = request
        if new_id not in self.sim:
            raise SetupFailed(f"sent, but id {new_id} does not answer: try emtui detect", 4)
        self._release(new_id, request.values[1])
        report.ok = True
        report.settings = dataclasses.replace(self.settings, baud=baud, parity=parity)
        say(f"id {new_id} answers at {report.settings.describe()}")
        return report

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
