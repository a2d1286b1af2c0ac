"""Upload runs: sending the queue, and deciding when to (design §8).

:func:`run_uploads` sends what is due once: ``emtui upload --now`` and the logger's
scheduled runs both use it. :class:`UploadScheduler` is what the logger's upload thread calls
in a loop: it runs at the scheduled times, catches up a run missed while the Pi was off,
retries failed files with their backoff in between, and copes with a clock that jumps.

A file is marked sent only when its uploader confirmed it; any failure leaves it queued with
a later next attempt and the reason (``problem``: unconfirmed, collision, changed, …). If the
destination itself cannot be reached, the run stops at once and every remaining file is
backed off, instead of timing out once per file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from emtui.core.upload.queue import QueueItem, UploadQueue
from emtui.core.upload.schedule import Schedule
from emtui.core.upload.targets import UploadConnectionError, Uploader, UploadError

log = logging.getLogger(__name__)

UploaderFactory = Callable[[], Uploader]
"""Builds a fresh uploader for one run (e.g. ``functools.partial(make_uploader, target, …)``)."""


@dataclass(frozen=True, slots=True)
class UploadRunResult:
    """What one run did."""

    started: float
    """The run's time (the ``now`` it was given)."""
    attempted: int = 0
    """Files tried (including those that failed)."""
    sent: int = 0
    """Files confirmed by the destination and marked sent."""
    failed: int = 0
    """Files tried that failed."""
    deferred: int = 0
    """Files not tried because the destination could not be reached (backed off too)."""
    connection_error: str | None = None
    """Why the destination could not be reached, if it could not."""
    busy: bool = False
    """Another run (another process) held the run lock: nothing was done."""
    errors: tuple[str, ...] = field(default_factory=tuple)
    """One message per failed file."""

    @property
    def ok(self) -> bool:
        """Every due file was sent (also true when nothing was due)."""
        return not self.busy and self.failed == 0 and self.deferred == 0

    def summary(self) -> str:
        """One line for logs and ``emtui status``."""
        if self.busy:
            return "another upload run is in progress"
        if self.connection_error is not None and self.attempted <= 1:
            waiting = self.failed + self.deferred
            return f"server unreachable: {self.connection_error} ({waiting} waiting)"
        if self.attempted == 0 and self.deferred == 0:
            return "nothing to send"
        text = f"{self.sent} sent"
        if self.failed:
            text += f", {self.failed} failed"
        if self.deferred:
            text += f", {self.deferred} deferred"
        if self.errors:
            text += f" (last error: {self.errors[-1]})"
        return text


def run_uploads(
    queue: UploadQueue,
    uploader_factory: UploaderFactory,
    now: float | None = None,
    *,
    force: bool = False,
    only: Collection[str] | None = None,
) -> UploadRunResult:
    """Send every due file once and record the run in the queue's state.

    Args:
        queue: The upload queue.
        uploader_factory: Builds the uploader for this run; it is closed at the end.
        now: The run's time (default: the queue's clock); recorded as sent/failed times.
        force: Try every queued file, even those still waiting out a backoff (the scheduled
            runs and ``emtui upload --now``); otherwise only those due (retries).
        only: Queue keys: try just these files (``emtui upload --retry FILE``).

    Returns:
        The counts; the same run is summarised in ``queue.state``.
    """
    now = queue.now() if now is None else now
    with queue.run_lock() as acquired:
        if not acquired:
            return UploadRunResult(started=now, busy=True)
        items = queue.queued() if force else queue.pending(now)
        if only is not None:
            items = [item for item in items if item.key in only]
        result = _send(queue, uploader_factory, items, now) if items else None
        result = result or UploadRunResult(started=now)
        queue.record_run(now, result.summary(), result.ok)
    if result.attempted or result.deferred:
        level = logging.INFO if result.ok else logging.WARNING
        log.log(level, "upload run: %s", result.summary())
    return result


def _send(
    queue: UploadQueue, factory: UploaderFactory, items: list[QueueItem], now: float
) -> UploadRunResult:
    sent = failed = 0
    errors: list[str] = []
    try:
        uploader = factory()
    except UploadError as exc:
        return _defer_all(queue, items, str(exc), now, started=now)
    try:
        for index, item in enumerate(items):
            try:
                uploader.upload(item.path, item.remote_rel, item.sha256, item.size)
            except UploadConnectionError as exc:
                queue.mark_failed(item, str(exc), now, exc.problem)
                rest = _defer_all(queue, items[index + 1 :], str(exc), now, started=now)
                return UploadRunResult(
                    started=now,
                    attempted=sent + failed + 1,
                    sent=sent,
                    failed=failed + 1,
                    deferred=rest.deferred,
                    connection_error=str(exc),
                    errors=(*errors, f"{item.remote_rel}: {exc}"),
                )
            except UploadError as exc:
                queue.mark_failed(item, str(exc), now, exc.problem)
                failed += 1
                errors.append(f"{item.remote_rel}: {exc}")
            except Exception as exc:  # a bug must not stop the logger or pass as sent
                log.exception("unexpected error uploading %s", item.remote_rel)
                queue.mark_failed(item, f"{type(exc).__name__}: {exc}", now)
                failed += 1
                errors.append(f"{item.remote_rel}: {type(exc).__name__}: {exc}")
            else:
                queue.mark_sent(item, now)
                sent += 1
    finally:
        try:
            uploader.close()
        except Exception:
            log.exception("closing the uploader failed")
    return UploadRunResult(
        started=now, attempted=sent + failed, sent=sent, failed=failed, errors=tuple(errors)
    )


def _defer_all(
    queue: UploadQueue, items: list[QueueItem], error: str, now: float, *, started: float
) -> UploadRunResult:
    for item in items:
        queue.mark_failed(item, error, now, "unreachable")
    return UploadRunResult(started=started, deferred=len(items), connection_error=error)


class UploadScheduler:
    """Decides when the logger sends the queue; call :meth:`step` whenever it wakes up.

    - At start (first step): if files are queued and a scheduled run was missed since the
      last recorded run (the Pi was off at 14:00), run now.
    - Each time a scheduled time has passed since the previous step: run (every queued file).
    - In between: files whose backoff expired are retried (along with any other due file).
    - The clock jumping back re-anchors the schedule at the new time: no burst of runs, and
      no waiting for the old date to come round again. Jumping forward past scheduled times
      triggers one run, not one per missed time.

    Args:
        queue: The upload queue.
        schedule: When to run.
        uploader_factory: Builds an uploader for each run.
        clock: Current time in epoch seconds (injected by tests).
        retention_days: If set, after every run delete local files sent longer ago.
        data_dir: The CSV folder: on every step, files whose queue record was unreadable
            (and moved aside) are queued again from there, without a restart.
    """

    def __init__(
        self,
        queue: UploadQueue,
        schedule: Schedule,
        uploader_factory: UploaderFactory,
        *,
        clock: Callable[[], float] = time.time,
        retention_days: float | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self._queue = queue
        self._schedule = schedule
        self._factory = uploader_factory
        self._clock = clock
        self._retention = retention_days
        self._data_dir = data_dir
        self._last_check: float | None = None

    def step(self, now: float | None = None) -> UploadRunResult | None:
        """Run the queue if it is time; returns the run's result, or ``None`` if none ran."""
        now = self._clock() if now is None else now
        previous, self._last_check = self._last_check, now
        result: UploadRunResult | None = None
        if self._data_dir is not None:
            try:
                self._queue.rebuild(self._data_dir, datetime.fromtimestamp(now).date())
            except OSError as exc:  # an unreadable data folder must not stop the uploads
                log.warning("cannot look for unqueued files in %s: %s", self._data_dir, exc)
        if previous is None:
            last_run = self._queue.state.last_run
            if self._queue.queued() and self._schedule.missed(last_run, now):
                log.info("an upload run was missed: catching up")
                result = run_uploads(self._queue, self._factory, now, force=True)
        elif now < previous:
            log.warning("clock went back by %.0f s: upload schedule re-anchored", previous - now)
        elif self._schedule.next_after(previous) <= now:
            result = run_uploads(self._queue, self._factory, now, force=True)
        if result is None and any(i.attempts > 0 for i in self._queue.pending(now)):
            result = run_uploads(self._queue, self._factory, now)
        if result is not None and self._retention is not None:
            self._queue.purge(self._retention, now)
        self._queue.record_next_run(self._schedule.next_after(now))
        return result

    def next_wakeup(self, now: float | None = None) -> float:
        """When :meth:`step` next has something to do: the next scheduled time or retry."""
        now = self._clock() if now is None else now
        wake = self._schedule.next_after(now)
        retry = self._queue.next_retry(now)
        return wake if retry is None else max(now, min(wake, retry))
