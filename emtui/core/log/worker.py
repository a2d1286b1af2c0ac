"""The logging worker: poll every meter round-robin, one CSV row per poll, queue finished days.

The same worker runs headless (``emtui --log``, the boot service) and inside the TUI (toggled
on and off), so it owns no terminal: it reports through a ``report`` callback (one line of
text) and an ``on_sample`` callback (one :class:`~emtui.core.bus.reader.Sample` per meter per
poll), and shares its state through the status file.

Uploads run on their own thread (:class:`UploadThread`) so a slow server never delays a row.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.reader import MeterReader, Sample
from emtui.core.config import Config, MeterConfig
from emtui.core.log.csvfile import ClockWatch, MeterCsvWriter, cut_torn_tail
from emtui.core.log.livefile import LivePublisher
from emtui.core.log.runstate import STATUS_FILE, write_json_atomic
from emtui.core.maps.registers import load_map
from emtui.core.upload.queue import UploadQueue
from emtui.core.upload.run import UploadScheduler
from emtui.core.upload.schedule import Schedule
from emtui.core.upload.targets import uploader_factory

#: Seconds between summary lines (journald-friendly: one a minute).
SUMMARY_EVERY = 60.0
#: Cycles in a row longer than the interval before the logger says so.
OVERRUN_CYCLES = 3
#: Seconds between status-file updates.
STATUS_EVERY = 2.0


@dataclass(slots=True)
class MeterLog:
    """One meter's reader, writer and counters."""

    config: MeterConfig
    reader: MeterReader
    writer: MeterCsvWriter
    rows: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    last: Sample | None = None
    write_failing: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The status-file form."""
        return {
            "id": self.config.id,
            "label": self.config.label,
            "map": self.reader.map.name,
            "rows": self.rows,
            "rows_lost": self.writer.rows_lost,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "last_status": self.last.status if self.last else None,
            "last_time": self.last.time if self.last else None,
            "file": str(self.writer.current_path) if self.writer.current_path else None,
            "write_error": self.writer.last_error,
        }


class LoggingWorker:
    """Polls the configured meters and writes their CSVs until stopped.

    Args:
        config: the effective configuration (meters, logging, upload, state dir).
        arbiter: the running bus arbiter.
        report: receives one line of text per event worth a log line.
        on_sample: receives every sample (the TUI shows them).
        wall, monotonic: clocks (injectable for tests).
    """

    def __init__(
        self,
        config: Config,
        arbiter: BusArbiter,
        *,
        report: Callable[[str], None] = lambda line: None,
        on_sample: Callable[[Sample], None] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        live: LivePublisher | None = None,
    ) -> None:
        if not config.meters:
            raise ValueError("no meters configured: give --ids or [[meters]] in the config")
        self.config = config
        self.arbiter = arbiter
        self.report = report
        self.on_sample = on_sample
        self.live = live
        self.wall = wall
        self.monotonic = monotonic
        self.queue = UploadQueue(config.state_dir)
        self.clock_watch = ClockWatch(wall=wall, monotonic=monotonic)
        self.meters: list[MeterLog] = []
        for meter in config.meters:
            rmap = load_map(meter.map)
            entries = config.entries_for(meter, rmap)
            reader = MeterReader(
                arbiter, meter.id, rmap, entries, priority=Priority.POLL, clock=wall
            )
            writer = MeterCsvWriter(
                config.logging.data_dir,
                meter.id,
                rmap.name,
                entries,
                fsync_interval=config.logging.fsync_interval,
                is_day_closed=functools.partial(self.queue.is_queued, meter.id),
                on_day_closed=functools.partial(self._day_closed, meter.id),
                monotonic=monotonic,
            )
            self.meters.append(MeterLog(meter, reader, writer))
        self.cycles = 0
        self.started = wall()
        self.schedule = Schedule(config.upload.schedule)
        self.upload_thread: UploadThread | None = None
        self._last_summary = monotonic()
        self._last_status = 0.0
        self._clock_flags = ""
        self._link_down = False
        self._overruns = 0
        self._overrun_reported = False

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, cycles: int | None = None) -> int:
        """Poll until ``stop`` is set or ``cycles`` cycles ran; returns the cycles run.

        Rows are aligned to the interval (a 1 s interval starts each cycle on a whole second);
        ``interval 0`` polls back to back. Stopping finishes the current cycle's rows.
        """
        self.queue_finished_days()
        if self.config.upload.target:
            self.upload_thread = UploadThread(self.config, self.queue, stop, self.report)
            self.upload_thread.start()
        interval = self.config.logging.interval
        try:
            while not stop.is_set() and (cycles is None or self.cycles < cycles):
                while not self.arbiter.wait_for_polling(0.2):  # a scan has the bus
                    if stop.is_set():
                        return self.cycles
                started = self.monotonic()
                self.cycle()
                self._check_overrun(self.monotonic() - started, interval)
                self._periodic()
                if cycles is not None and self.cycles >= cycles:
                    break
                if interval > 0:
                    stop.wait(self._delay_to_next_slot(interval))
        finally:
            self.close()
        return self.cycles

    def _check_overrun(self, took: float, interval: float) -> None:
        """Say once when polling every meter takes longer than the interval (the wire is full:
        rows then come back to back instead of on the interval)."""
        self._overruns = self._overruns + 1 if 0 < interval < took else 0
        if self._overruns == OVERRUN_CYCLES and not self._overrun_reported:
            self._overrun_reported = True
            self.report(
                f"a poll of {len(self.meters)} meter(s) takes {took:.2f} s, longer than the "
                f"{interval:g} s interval: rows come back to back; raise the interval or log "
                "fewer values"
            )

    def _delay_to_next_slot(self, interval: float) -> float:
        now = self.wall()
        delay = (math.floor(now / interval) + 1) * interval - now
        return min(max(delay, 0.0), interval)

    def cycle(self) -> list[Sample]:
        """Poll every meter once, in order, and write a row for each."""
        self._clock_flags = self.clock_watch.check()
        samples = []
        link_error: str | None = None
        for meter in self.meters:
            if link_error is None:
                sample = meter.reader.read()
                link_error = sample.link_error
            else:  # the bus is down: a row that shows the gap, without waiting on the wire
                sample = meter.reader.failed(link_error)
            written = meter.writer.write(sample, self._clock_flags)
            meter.last = sample
            meter.statuses[sample.status] = meter.statuses.get(sample.status, 0) + 1
            if written:
                meter.rows += 1
                if meter.write_failing:
                    meter.write_failing = False
                    lost = meter.writer.rows_lost
                    self.report(f"meter {meter.config.id}: writing resumed ({lost} row(s) lost)")
            elif not meter.write_failing:  # say it once when it starts, not on every row
                meter.write_failing = True
                self.report(f"meter {meter.config.id}: {meter.writer.last_error}")
            if sample.status != "ok":
                meter.errors += 1
            if self.on_sample is not None:
                self.on_sample(sample)
            samples.append(sample)
        if link_error and not self._link_down:
            self.report(f"bus down: {link_error}; retrying every cycle")
        elif self._link_down and not link_error:
            self.report("bus back: polling again")
        self._link_down = link_error is not None
        self.cycles += 1
        self._publish_live()
        return samples

    def _publish_live(self) -> None:
        """The latest sample per meter for the app (design §11: every poll, in memory)."""
        if self.live is None:
            return
        self.live.publish(
            [(m.config.id, m.config.label, m.reader.map.name, m.last) for m in self.meters],
            {m.config.id: self.arbiter.device_stats(m.config.id) for m in self.meters},
            self.config.state_dir / STATUS_FILE,
        )

    def close(self) -> None:
        """Flush and close every file and write the final status."""
        for meter in self.meters:
            meter.writer.close()
        self.write_status(stopped=True)
        if self.live is not None:
            self.live.remove()

    # -- days and uploads ----------------------------------------------------------------------

    def _day_closed(self, device_id: int, path: Path, day: date) -> None:
        self.queue.enqueue(path, device_id, day)
        self.report(f"meter {device_id}: {path.name} finished and queued for upload")

    def queue_finished_days(self) -> None:
        """Queue files of past days left by an earlier run (a crash or power cut at midnight).

        A file is final once its day is over: today's files stay open for appending.
        """
        today = datetime.fromtimestamp(self.wall()).date()
        for meter in self.meters:
            folder = meter.writer.directory
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(f"meter_{meter.config.id}_*.csv")):
                day = _day_of(path)
                if day is None or day >= today:
                    continue
                if not self.queue.holds(path, meter.config.id, day):
                    # A power cut at the end of that day may have torn its last row: repair
                    # before the file is hashed and queued, as the writer would on reopening.
                    cut_torn_tail(path)
                self.queue.enqueue(path, meter.config.id, day)

    # -- reporting ------------------------------------------------------------------------------

    def _periodic(self) -> None:
        now = self.monotonic()
        if now - self._last_status >= STATUS_EVERY:
            self._last_status = now
            self.write_status()
        if now - self._last_summary >= SUMMARY_EVERY:
            self._last_summary = now
            self.report(self.summary())

    def summary(self) -> str:
        """One line: rows, errors per meter, queue, next upload."""
        rows = sum(m.rows for m in self.meters)
        errors = ", ".join(f"{m.config.id}: {m.errors}" for m in self.meters)
        lost = sum(m.writer.rows_lost for m in self.meters)
        queued = self.queue.state.queued
        line = f"rows {rows} ({self.cycles} cycles); errors {errors}; queue {queued} file(s)"
        if lost:
            line += f"; {lost} row(s) NOT WRITTEN"
        if self._clock_flags:
            line += f"; clock {self._clock_flags}"
        if self.config.upload.target:
            next_run = datetime.fromtimestamp(self.schedule.next_after(self.wall()))
            line += f"; next upload {next_run:%Y-%m-%d %H:%M}"
        return line

    def status(self, stopped: bool = False) -> dict[str, Any]:
        """The status-file document (what ``emtui status`` and the TUI read)."""
        state = self.queue.state
        return {
            "pid": os.getpid(),
            "stopped": stopped,
            "started": self.started,
            "updated": self.wall(),
            "port": self.arbiter.settings.port,
            "interval": self.config.logging.interval,
            "data_dir": str(self.config.logging.data_dir),
            "cycles": self.cycles,
            "clock": self._clock_flags,
            "meters": [m.as_dict() for m in self.meters],
            "queue": {
                "queued": state.queued,
                "failing": state.failing,
                "oldest_day": state.oldest_day.isoformat() if state.oldest_day else None,
                "last_run": state.last_run,
                "last_result": state.last_result,
                "next_run": state.next_run,
                "last_error": state.last_error,
            },
            "upload_target": bool(self.config.upload.target),
        }

    def write_status(self, stopped: bool = False) -> None:
        """Write the status file (atomically)."""
        try:
            write_json_atomic(self.config.state_dir / STATUS_FILE, self.status(stopped))
        except OSError as exc:
            self.report(f"cannot write the status file: {exc}")


def _day_of(path: Path) -> date | None:
    """The date in ``meter_<id>_<YYYY-MM-DD>[_n].csv``."""
    parts = path.stem.split("_")
    for part in parts[2:3]:
        try:
            return date.fromisoformat(part)
        except ValueError:
            return None
    return None


class UploadThread(threading.Thread):
    """Runs the upload scheduler beside the logger until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        queue: UploadQueue,
        stop: threading.Event,
        report: Callable[[str], None],
    ) -> None:
        super().__init__(name="emtui-upload", daemon=True)
        upload = config.upload
        assert upload.target is not None
        factory = uploader_factory(upload)
        self.scheduler = UploadScheduler(
            queue,
            Schedule(upload.schedule),
            factory,
            retention_days=upload.retention_days,
            data_dir=config.logging.data_dir,
        )
        self.stop_event = stop
        self.report = report

    def run(self) -> None:
        """Step the scheduler, sleeping until its next wake-up (at most a minute at a time)."""
        while not self.stop_event.is_set():
            try:
                result = self.scheduler.step()
            except Exception as exc:  # an upload bug must never stop the logger
                self.report(f"upload: {exc}")
                result = None
            if result is not None and (result.attempted or result.deferred):
                self.report(f"upload: {result.summary()}")
            wake = self.scheduler.next_wakeup()
            self.stop_event.wait(min(60.0, max(1.0, wake - time.time())))
