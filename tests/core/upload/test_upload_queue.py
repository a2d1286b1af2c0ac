"""The upload queue, the schedule and upload runs, with an injected clock (design §8).

The uploaders here are mostly fakes: what matters is what the queue records and when runs
happen (the repair tests use a real ``file://`` target and the installed ``emtui upload``).
Real servers are in test_uploaders.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.upload.queue import (
    BACKOFF_CAP,
    RECORD_KEEP_DAYS,
    ItemState,
    QueueItem,
    UploadQueue,
    backoff_delay,
)
from emtui.core.upload.run import UploadScheduler, run_uploads
from emtui.core.upload.schedule import Schedule
from emtui.core.upload.targets import UploadConnectionError, UploadError, make_uploader

DAY = 86400.0


def ts(text: str) -> float:
    """Epoch seconds of an ISO time in UTC (the tests' schedules use UTC too)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    """A settable clock."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeUploader:
    """Records uploads; fails the names listed in ``fail``, or everything if ``down``."""

    def __init__(self, log: list[str], *, down: bool = False, fail: set[str] | None = None):
        self.log = log
        self.down = down
        self.fail = fail or set()
        self.closed = False

    def upload(self, local: Path, remote_rel: str, sha256: str, size: int) -> None:
        if self.down:
            raise UploadConnectionError("connection refused")
        if remote_rel in self.fail:
            raise UploadError("disk full")
        assert local.stat().st_size == size
        self.log.append(remote_rel)

    def close(self) -> None:
        self.closed = True


def make_day_file(folder: Path, device_id: int, day: date, rows: int = 3) -> Path:
    """Write a small finished day file like the CSV writer's."""
    path = folder / f"meter_{device_id}" / f"meter_{device_id}_{day.isoformat()}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,epoch,status,frequency"]
    lines += [f"{day}T00:00:{i:02d}.000+00:00,{i}.000,ok,50.0{i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------- the queue


def test_enqueue_is_idempotent_and_records_the_file(tmp_path: Path) -> None:
    """Queueing the same file twice keeps one record; size and hash are taken at queue time."""
    clock = Clock(ts("2024-03-05T00:00:05"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    path = make_day_file(tmp_path / "data", 3, date(2024, 3, 4))
    first = queue.enqueue(path, 3, date(2024, 3, 4))
    clock.t += 100
    second = queue.enqueue(path, 3, date(2024, 3, 4))
    assert first == second
    assert first.remote_rel == "meter_3/meter_3_2024-03-04.csv"
    assert first.size == path.stat().st_size
    assert len(first.sha256) == 64
    assert first.state is ItemState.QUEUED
    assert first.queued_at == ts("2024-03-05T00:00:05")
    assert len(queue.all()) == 1
    assert queue.is_queued(3, date(2024, 3, 4))
    assert not queue.is_queued(3, date(2024, 3, 5))
    assert not queue.is_queued(33, date(2024, 3, 4))
    # A fresh process sees the same queue.
    assert UploadQueue(tmp_path / "state").all() == [first]


def test_a_changed_file_is_never_sent_silently(tmp_path: Path) -> None:
    """A queued file edited afterwards is neither sent nor re-queued behind anyone's back:
    queueing it again marks it "changed" (old size and hash kept, the message says both), a
    run does not send it; a sent file edited afterwards keeps its record and is not deleted."""
    clock = Clock(1e9)
    queue = UploadQueue(tmp_path / "state", clock=clock)
    share = tmp_path / "share"
    share.mkdir()
    path = make_day_file(tmp_path / "data", 1, date(2024, 3, 4))
    item = queue.enqueue(path, 1, date(2024, 3, 4))
    with path.open("a") as handle:
        handle.write("late,row,ok,1\n")
    again = queue.enqueue(path, 1, date(2024, 3, 4))
    assert again.state is ItemState.QUEUED and again.status == "changed"
    assert (again.size, again.sha256) == (item.size, item.sha256)
    assert f"size {item.size} → {path.stat().st_size} bytes" in (again.last_error or "")
    result = run_uploads(queue, lambda: make_uploader(f"file://{share}", site="s"), force=True)
    assert (result.sent, result.failed) == (0, 1)
    assert queue.get(item.key).status == "changed"  # type: ignore[union-attr]
    assert not any(share.rglob("*.csv"))
    # A sent file edited later: still sent, and retention does not delete the edited copy.
    other = make_day_file(tmp_path / "data", 2, date(2024, 3, 4))
    sent = queue.mark_sent(queue.enqueue(other, 2, date(2024, 3, 4)))
    other.write_text("edited\n")
    assert queue.enqueue(other, 2, date(2024, 3, 4)).state is ItemState.SENT
    clock.t += 10 * DAY
    assert queue.purge(1) == [] and other.exists()
    assert queue.get(sent.key).problem == "changed"  # type: ignore[union-attr]
    # The confirmation of old content cannot mark a requeued file sent.
    before, after = queue.requeue(again)
    assert after.sha256 != before.sha256
    assert queue.mark_sent(before).state is ItemState.QUEUED


def test_enqueue_rejects_odd_file_names(tmp_path: Path) -> None:
    """Record names come from file names, so only plain names are accepted."""
    queue = UploadQueue(tmp_path / "state")
    odd = tmp_path / "a b.csv"
    odd.write_text("x\n")
    with pytest.raises(ValueError, match="file names"):
        queue.enqueue(odd, 1, date(2024, 3, 4))


def test_backoff_one_minute_doubling_capped_at_an_hour(tmp_path: Path) -> None:
    """Failures push the next attempt back 1, 2, 4 … min up to 1 h, by the injected clock."""
    assert [backoff_delay(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    clock = Clock(ts("2024-03-05T14:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    item = queue.enqueue(make_day_file(tmp_path, 1, date(2024, 3, 4)), 1, date(2024, 3, 4))
    assert queue.pending() == [item]
    waits = []
    for _ in range(8):
        item = queue.mark_failed(item, "connection refused")
        waits.append(item.next_attempt - clock.t)
        assert queue.pending() == []
        assert queue.pending(item.next_attempt - 1) == []
        assert queue.pending(item.next_attempt) == [item]
        clock.t = item.next_attempt
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert item.attempts == 8 and item.last_error == "connection refused"
    state = queue.state
    assert (state.queued, state.failing, state.last_error) == (1, 1, "connection refused")
    assert state.oldest_day == date(2024, 3, 4)


def test_a_clock_jump_back_does_not_strand_a_retry(tmp_path: Path) -> None:
    """A next attempt further ahead than the backoff cap can only be a clock jump: it is due."""
    clock = Clock(ts("2024-03-08T14:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    item = queue.enqueue(make_day_file(tmp_path, 1, date(2024, 3, 4)), 1, date(2024, 3, 4))
    item = queue.mark_failed(item, "down")
    clock.t = ts("2024-03-05T14:00:00")  # three days back, e.g. fake-hwclock before NTP
    assert queue.pending() == [item]
    assert queue.next_retry() == clock.t
    clock.t = item.next_attempt - BACKOFF_CAP / 2  # within the cap: still waiting
    assert queue.pending() == []


def test_mark_sent_and_failed_survive_reopening(tmp_path: Path) -> None:
    """Sent and failed states are on disk, and a late failure never undoes a confirmation."""
    queue = UploadQueue(tmp_path / "state", clock=Clock(1e9))
    a = queue.enqueue(make_day_file(tmp_path, 1, date(2024, 3, 4)), 1, date(2024, 3, 4))
    b = queue.enqueue(make_day_file(tmp_path, 2, date(2024, 3, 4)), 2, date(2024, 3, 4))
    queue.mark_sent(a, 1e9 + 5)
    queue.mark_failed(a, "stale failure from another run", 1e9 + 6)
    queue.mark_failed(b, "timeout", 1e9 + 7)
    reopened = {i.device_id: i for i in UploadQueue(tmp_path / "state").all()}
    assert reopened[1].state is ItemState.SENT and reopened[1].sent_at == 1e9 + 5
    assert reopened[2].state is ItemState.QUEUED and reopened[2].attempts == 1
    assert reopened[2].last_error == "timeout"
    assert (tmp_path / "state" / "sent" / f"{a.key}.json").exists()
    assert not (tmp_path / "state" / "queue" / f"{a.key}.json").exists()


def test_crash_between_the_two_record_copies_keeps_the_newer(tmp_path: Path) -> None:
    """A crash after writing ``sent/`` but before removing ``queue/``: the newer copy wins."""
    queue = UploadQueue(tmp_path / "state", clock=Clock(1e9))
    item = queue.enqueue(make_day_file(tmp_path, 1, date(2024, 3, 4)), 1, date(2024, 3, 4))
    old_copy = (tmp_path / "state" / "queue" / f"{item.key}.json").read_bytes()
    queue.mark_sent(item)
    (tmp_path / "state" / "queue" / f"{item.key}.json").write_bytes(old_copy)
    [only] = UploadQueue(tmp_path / "state").all()
    assert only.state is ItemState.SENT
    assert UploadQueue(tmp_path / "state").pending(2e9) == []


def test_retention_deletes_only_confirmed_files(tmp_path: Path) -> None:
    """Purge deletes local files sent more than N days ago, never unsent ones."""
    clock = Clock(ts("2024-03-05T00:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    day = date(2024, 3, 4)
    sent = queue.enqueue(make_day_file(tmp_path, 1, day), 1, day)
    unsent = queue.enqueue(make_day_file(tmp_path, 2, day), 2, day)
    failing = queue.enqueue(make_day_file(tmp_path, 3, day), 3, day)
    queue.mark_sent(sent, ts("2024-03-05T14:00:00"))
    queue.mark_failed(failing, "down", ts("2024-03-05T14:00:00"))
    assert queue.purge(7, ts("2024-03-12T14:00:00")) == []  # exactly 7 days: kept
    purged = queue.purge(7, ts("2024-03-12T14:00:01"))
    assert [i.key for i in purged] == [sent.key]
    assert not sent.path.exists()
    assert unsent.path.exists() and failing.path.exists()
    # Months later the unsent files are still there; the sent day still counts as queued.
    assert queue.purge(0, ts("2025-01-01T00:00:00")) == []
    assert unsent.path.exists() and failing.path.exists()
    assert queue.is_queued(1, day)
    assert queue.enqueue(sent.path, 1, day).purged_at is not None  # no error, no requeue
    # Only after RECORD_KEEP_DAYS is the purged file's record dropped; unsent ones stay.
    queue.purge(0, ts("2025-03-12T14:00:01") + RECORD_KEEP_DAYS * DAY)
    assert not queue.is_queued(1, day)
    assert unsent.path.exists() and failing.path.exists() and len(queue.queued()) == 2
    with pytest.raises(ValueError):
        queue.purge(-1)


# --------------------------------------------------------------------------- kill -9 test

_WORKER = textwrap.dedent(
    """
    import sys
    from datetime import date, timedelta
    from pathlib import Path
    from emtui.core.upload.queue import UploadQueue

    state, data, start = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    queue = UploadQueue(state)
    n = start
    while True:
        day = date(2020, 1, 1) + timedelta(days=n // 4)
        device = n % 4 + 1
        path = data / f"meter_{device}_{day}.csv"
        path.write_text(f"row {n}\\n" * 20)
        item = queue.enqueue(path, device, day)
        print("E", item.key, flush=True)
        if n % 3 == 0:
            queue.mark_sent(item)
            print("S", item.key, flush=True)
        elif n % 3 == 1:
            queue.mark_failed(item, "boom")
            print("F", item.key, flush=True)
        queue.record_run(float(n), f"run {n}", True)
        n += 1
    """
)


def test_kill_9_at_any_moment_loses_and_corrupts_nothing(tmp_path: Path) -> None:
    """A process enqueueing and marking in a loop is killed -9 mid-flight, several times.

    Everything it reported done is on disk as reported, and every record parses.
    """
    state, data = tmp_path / "state", tmp_path / "data"
    data.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    enqueued: set[str] = set()
    sent: set[str] = set()
    failed: set[str] = set()
    start = 0
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(state), str(data), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        target = 30 + 17 * round_
        while len(lines) < target:
            line = proc.stdout.readline()
            assert line, "worker died"
            lines.append(line)
        time.sleep(0.003 * round_)  # land the kill somewhere inside the next operation
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lines += proc.stdout.read().splitlines(keepends=True)
        for line in lines:
            if not line.endswith("\n"):
                continue
            kind, key = line.split()
            {"E": enqueued, "S": sent, "F": failed}[kind].add(key)
        start += 1000
        reopened = UploadQueue(state)
        items = {i.key: i for i in reopened.all()}
        assert enqueued <= set(items), "a reported enqueue was lost"
        assert all(items[k].state is ItemState.SENT for k in sent)
        assert all(items[k].attempts >= 1 or items[k].state is ItemState.SENT for k in failed)
        assert not (state / "corrupt").exists()
        for record in [*state.glob("queue/*.json"), *state.glob("sent/*.json")]:
            QueueItem.from_json(json.loads(record.read_text()))
        assert reopened.state.last_run is not None


# ------------------------------------------------------------------------------ schedule


def test_schedule_next_after() -> None:
    """Daily 14:00: the next run is strictly after the given time, in the given zone."""
    sched = Schedule(tz=UTC)
    assert sched.next_after(ts("2024-03-05T09:00:00")) == ts("2024-03-05T14:00:00")
    assert sched.next_after(ts("2024-03-05T14:00:00")) == ts("2024-03-06T14:00:00")
    assert sched.next_after(ts("2024-03-05T14:00:00.5")) == ts("2024-03-06T14:00:00")
    assert sched.last_at_or_before(ts("2024-03-05T14:00:00")) == ts("2024-03-05T14:00:00")
    assert Schedule("*/15 * * * *", tz=UTC).next_after(ts("2024-03-05T09:01:00")) == ts(
        "2024-03-05T09:15:00"
    )
    for bad in ("", "bad", "0 25 * * *", "0 14 * * * *"):
        with pytest.raises(ValueError, match="schedule"):
            Schedule(bad)


def test_schedule_follows_local_daylight_saving() -> None:
    """In a zone with DST, 14:00 stays 14:00 local across the change."""
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    sched = Schedule(tz=paris)
    before = datetime(2024, 3, 30, 15, 0, tzinfo=paris).timestamp()
    nxt = datetime.fromtimestamp(sched.next_after(before), tz=paris)
    assert (nxt.date(), nxt.hour, nxt.minute) == (date(2024, 3, 31), 14, 0)
    assert nxt.utcoffset() == timedelta(hours=2)


def test_schedule_missed() -> None:
    """A run due between the last run and now is missed; an unknown last run counts today's."""
    sched = Schedule(tz=UTC)
    yesterday_run = ts("2024-03-04T14:00:03")
    assert sched.missed(yesterday_run, ts("2024-03-05T15:00:00"))
    assert not sched.missed(yesterday_run, ts("2024-03-05T13:59:59"))
    assert sched.missed(ts("2024-03-01T14:00:00"), ts("2024-03-05T08:00:00"))
    assert sched.missed(None, ts("2024-03-05T14:30:00"))
    assert not sched.missed(None, ts("2024-03-05T10:00:00"))
    # A last run in the future (the clock jumped back) is treated as unknown.
    assert sched.missed(ts("2024-03-09T14:00:00"), ts("2024-03-05T15:00:00"))
    assert not sched.missed(ts("2024-03-09T14:00:00"), ts("2024-03-05T10:00:00"))


# ----------------------------------------------------------------------------- runs


def test_one_failing_file_does_not_stop_the_others(tmp_path: Path) -> None:
    """A per-file failure backs off that file; the others are sent in the same run."""
    clock = Clock(ts("2024-03-05T14:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    day = date(2024, 3, 4)
    for dev in (1, 2, 3):
        queue.enqueue(make_day_file(tmp_path, dev, day), dev, day)
    log: list[str] = []
    uploaders: list[FakeUploader] = []

    def factory() -> FakeUploader:
        uploaders.append(FakeUploader(log, fail={"meter_2/meter_2_2024-03-04.csv"}))
        return uploaders[-1]

    result = run_uploads(queue, factory)
    assert (result.attempted, result.sent, result.failed, result.deferred) == (3, 2, 1, 0)
    assert log == ["meter_1/meter_1_2024-03-04.csv", "meter_3/meter_3_2024-03-04.csv"]
    assert uploaders[0].closed
    assert [i.device_id for i in queue.queued()] == [2]
    state = queue.state
    assert state.last_run == clock.t and state.last_ok is False
    assert "1 failed" in (state.last_result or "")


def test_unreachable_server_stops_the_run_and_backs_off_all(tmp_path: Path) -> None:
    """A connection failure ends the run at the first file; every file is backed off."""
    clock = Clock(ts("2024-03-05T14:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    day = date(2024, 3, 4)
    for dev in (1, 2, 3):
        queue.enqueue(make_day_file(tmp_path, dev, day), dev, day)
    log: list[str] = []
    calls: list[int] = []

    class Counting(FakeUploader):
        def upload(self, local: Path, remote_rel: str, sha256: str, size: int) -> None:
            calls.append(1)
            super().upload(local, remote_rel, sha256, size)

    result = run_uploads(queue, lambda: Counting(log, down=True))
    assert len(calls) == 1
    assert (result.sent, result.failed, result.deferred) == (0, 1, 2)
    assert result.connection_error == "connection refused"
    assert all(i.attempts == 1 and i.next_attempt == clock.t + 60 for i in queue.queued())
    assert "server unreachable" in result.summary()

    def broken_factory() -> FakeUploader:
        raise UploadConnectionError("cannot read token file")

    result = run_uploads(queue, broken_factory, force=True)
    assert result.deferred == 3 and not result.ok


def test_a_second_concurrent_run_does_nothing(tmp_path: Path) -> None:
    """The run lock keeps ``upload --now`` and the scheduled run from sending at once."""
    queue = UploadQueue(tmp_path / "state", clock=Clock(1e9))
    queue.enqueue(make_day_file(tmp_path, 1, date(2024, 3, 4)), 1, date(2024, 3, 4))
    log: list[str] = []
    with queue.run_lock() as held:
        assert held
        result = run_uploads(UploadQueue(tmp_path / "state"), lambda: FakeUploader(log))
    assert result.busy and log == []
    assert run_uploads(queue, lambda: FakeUploader(log)).sent == 1


def test_a_missed_14_00_is_caught_up_at_start(tmp_path: Path) -> None:
    """The Pi was off at 14:00: the first step after start runs; the next waits for 14:00."""
    clock = Clock(ts("2024-03-04T14:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    queue.record_run(clock.t, "0 sent", True)
    day = date(2024, 3, 4)
    queue.enqueue(make_day_file(tmp_path, 1, day), 1, day)
    log: list[str] = []
    clock.t = ts("2024-03-05T16:20:00")  # power back after the 14:00 run
    sched = UploadScheduler(queue, Schedule(tz=UTC), lambda: FakeUploader(log), clock=clock)
    result = sched.step()
    assert result is not None and result.sent == 1
    assert queue.state.next_run == ts("2024-03-06T14:00:00")
    clock.t += 60
    assert sched.step() is None
    assert sched.next_wakeup() == ts("2024-03-06T14:00:00")

    # Started before 14:00 with nothing missed: wait for 14:00.
    queue.enqueue(make_day_file(tmp_path, 1, date(2024, 3, 5)), 1, date(2024, 3, 5))
    clock.t = ts("2024-03-06T09:00:00")
    fresh = UploadScheduler(queue, Schedule(tz=UTC), lambda: FakeUploader(log), clock=clock)
    assert fresh.step() is None
    clock.t = ts("2024-03-06T14:00:01")
    assert (r := fresh.step()) is not None and r.sent == 1


def simulate(sched: UploadScheduler, clock: Clock, until: float, tick: float) -> list[float]:
    """Step the scheduler every ``tick`` seconds up to ``until``; return the run times."""
    runs = []
    while clock.t < until:
        if sched.step() is not None:
            runs.append(clock.t)
        clock.t += tick
    return runs


def test_clock_jumping_back_causes_no_storm_and_no_endless_wait(tmp_path: Path) -> None:
    """After a backward jump of two days the scheduler runs once per 14:00, no more, no less."""
    clock = Clock(ts("2024-03-07T13:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    log: list[str] = []
    sched = UploadScheduler(queue, Schedule(tz=UTC), lambda: FakeUploader(log), clock=clock)
    assert simulate(sched, clock, ts("2024-03-07T15:00:00"), 60) == [ts("2024-03-07T14:00:00")]
    assert queue.state.last_run == ts("2024-03-07T14:00:00")
    # NTP corrects a clock that was two days fast; the last run now lies in the future.
    clock.t = ts("2024-03-05T12:00:00")
    day = date(2024, 3, 4)
    queue.enqueue(make_day_file(tmp_path, 1, day), 1, day)
    runs = simulate(sched, clock, ts("2024-03-07T12:00:00"), 300)
    assert runs == [ts("2024-03-05T14:00:00"), ts("2024-03-06T14:00:00")]
    assert log == ["meter_1/meter_1_2024-03-04.csv"]
    # A restart after the jump, with a "last run" in the future: treated as unknown.
    queue.enqueue(make_day_file(tmp_path, 2, day), 2, day)
    queue.record_run(ts("2024-03-09T14:00:00"), "from the future", True)
    clock.t = ts("2024-03-07T14:30:00")
    restarted = UploadScheduler(queue, Schedule(tz=UTC), lambda: FakeUploader(log), clock=clock)
    assert (r := restarted.step()) is not None and r.sent == 1


def test_clock_jumping_forward_runs_once_not_per_missed_day(tmp_path: Path) -> None:
    """A jump over several 14:00s triggers one run."""
    clock = Clock(ts("2024-03-05T10:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    log: list[str] = []
    sched = UploadScheduler(queue, Schedule(tz=UTC), lambda: FakeUploader(log), clock=clock)
    assert sched.step() is None
    clock.t = ts("2024-03-09T10:00:00")
    assert sched.step() is not None
    clock.t += 60
    assert sched.step() is None


def test_failed_files_are_retried_with_backoff_between_scheduled_runs(tmp_path: Path) -> None:
    """With the server down, retries follow the backoff (1, 2, 4 … min, then hourly)."""
    clock = Clock(ts("2024-03-05T13:59:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    day = date(2024, 3, 4)
    queue.enqueue(make_day_file(tmp_path, 1, day), 1, day)
    log: list[str] = []
    server = {"down": True}
    sched = UploadScheduler(
        queue,
        Schedule(tz=UTC),
        lambda: FakeUploader(log, down=server["down"]),
        clock=clock,
        retention_days=0,
    )
    runs = simulate(sched, clock, ts("2024-03-05T17:00:00"), 30)
    offsets = [round((t - ts("2024-03-05T14:00:00")) / 60) for t in runs]
    assert offsets == [0, 1, 3, 7, 15, 31, 63, 123]
    assert sched.next_wakeup() == ts("2024-03-05T17:03:00")
    assert queue.queued()[0].path.exists()  # retention 0, but never deleted unsent
    server["down"] = False
    clock.t = sched.next_wakeup()
    assert (r := sched.step()) is not None and r.sent == 1
    path = queue.all()[0].path
    assert path.exists()  # retention counts from the confirmation …
    clock.t = ts("2024-03-06T14:00:00")
    assert sched.step() is not None
    assert not path.exists()  # … and the purge after the next run deletes it


# ------------------------------------------------------------------------------ queue repair


def test_a_corrupt_record_comes_back_without_a_restart(tmp_path: Path) -> None:
    """An unreadable record is moved aside and its day queued again from the data folder on
    the scheduler's next pass, by the same process (no restart), then sent at the next run;
    files without any record (today's, or others) are left to the logger."""
    clock = Clock(ts("2024-03-06T10:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    data = tmp_path / "data"
    day = date(2024, 3, 4)
    kept = queue.enqueue(make_day_file(data, 1, day), 1, day)
    lost = queue.enqueue(make_day_file(data, 2, day), 2, day)
    today = make_day_file(data, 2, date(2024, 3, 6))  # still being written: never queued
    make_day_file(data, 3, day)  # never queued: the logger's start-up scan queues such files
    record = tmp_path / "state" / "queue" / f"{lost.key}.json"
    record.write_bytes(b'{"key": "half a rec')
    sent: list[str] = []
    sched = UploadScheduler(
        queue,
        Schedule(tz=UTC),
        lambda: FakeUploader(sent),
        clock=clock,
        data_dir=data,
    )
    sched.step()  # 10:00: no run due yet, but the lost day is back
    assert [i.key for i in queue.queued()] == [kept.key, lost.key]
    assert queue.is_queued(2, day) and not queue.is_queued(2, date(2024, 3, 6))
    assert list((tmp_path / "state" / "corrupt").iterdir())  # kept for a post-mortem
    clock.t = ts("2024-03-06T14:00:01")
    assert sched.step() is not None
    assert sorted(sent) == [kept.remote_rel, lost.remote_rel]
    assert today.exists() and len(queue.all()) == 2


def test_drop_requeue_and_retry_in_the_queue(tmp_path: Path) -> None:
    """drop keeps the file and its day closed, and neither rebuild nor enqueue brings it back;
    requeue does, with the new content; a deleted file can be dropped but not requeued."""
    clock = Clock(ts("2024-03-06T10:00:00"))
    queue = UploadQueue(tmp_path / "state", clock=clock)
    data = tmp_path / "data"
    day = date(2024, 3, 4)
    path = make_day_file(data, 1, day)
    item = queue.enqueue(path, 1, day)
    dropped = queue.drop(queue.find(path.name))
    assert dropped.status == "dropped" and path.exists()
    assert queue.queued() == [] and queue.is_queued(1, day)
    assert queue.rebuild(data, date(2024, 3, 6)) == []
    assert queue.enqueue(path, 1, day).state is ItemState.DROPPED
    path.write_text("edited\n")
    before, after = queue.requeue(queue.find(str(path)))
    assert before.sha256 == item.sha256 and after.sha256 != item.sha256
    assert [i.key for i in queue.queued()] == [item.key]
    failed = queue.mark_failed(after, "down")
    assert queue.retry(failed).next_attempt == clock.t
    path.unlink()
    with pytest.raises(FileNotFoundError):
        queue.requeue(after)
    with pytest.raises(KeyError, match="no file"):
        queue.find("meter_9_2024-03-04.csv")
    queue.drop(after)
    assert queue.queued() == []


def emtui(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed emtui."""
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=60)


def test_emtui_upload_repairs_the_queue(tmp_path: Path) -> None:
    """emtui upload lists state and reason; a corrupt record's day is back; an edited file is
    not sent but flagged, --requeue says what changed (size and hash, before and now) and
    --retry sends it; a deleted file cannot be requeued but --drop removes it; a wrong FILE
    is a usage error (exit 2)."""
    share, state, data = tmp_path / "share", tmp_path / "state", tmp_path / "data"
    share.mkdir()
    config = tmp_path / "emtui.toml"
    config.write_text(
        f'[logging]\ndata_dir = "{data}"\n[upload]\ntarget = "file://{share}"\nsite = "ph1"\n'
    )
    queue = UploadQueue(state)
    days = [date(2024, 3, d) for d in (1, 2, 3)]
    paths = [make_day_file(data, 1, d) for d in days]
    items = [queue.enqueue(p, 1, d) for p, d in zip(paths, days, strict=True)]
    (state / "queue" / f"{items[0].key}.json").write_text("not json")
    base = ["upload", "--config", str(config), "--state-dir", str(state)]

    listed = emtui(*base, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [q["file"] for q in json.loads(listed.stdout)["queued"]] == [str(p) for p in paths]

    old_size = paths[1].stat().st_size
    with paths[1].open("a") as handle:
        handle.write("edited by hand\n")
    paths[2].unlink()
    run = emtui(*base, "--now", "--json")
    assert run.returncode == 8, run.stderr
    doc = json.loads(run.stdout)
    states = {q["file"]: (q["state"], q["reason"]) for q in doc["queued"]}
    assert states[str(paths[1])][0] == "changed" and "changed since" in states[str(paths[1])][1]
    assert states[str(paths[2])][0] == "missing" and "gone" in states[str(paths[2])][1]
    assert str(paths[0]) not in states
    landed = sorted(p.name for p in share.rglob("*.csv"))
    assert landed == [paths[0].name]  # the edited one was not sent

    text = emtui(*base)
    assert "changed     meter 1  2024-03-02" in text.stdout
    assert "missing     meter 1  2024-03-03" in text.stdout

    requeued = emtui(*base, "--requeue", paths[1].name)
    assert requeued.returncode == 0, requeued.stderr
    new_size = paths[1].stat().st_size
    assert f"size {old_size} → {new_size} bytes" in requeued.stdout
    assert f"sha256 {items[1].sha256[:12]}… → " in requeued.stdout

    gone = emtui(*base, "--requeue", str(paths[2]))
    assert gone.returncode == 8 and "--drop" in gone.stderr
    dropped = emtui(*base, "--drop", str(paths[2]), "--json")
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(dropped.stdout)["dropped"]["was"] == "missing"

    retried = emtui(*base, "--retry", str(paths[1]), "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {
        "run": {"summary": "1 sent", "ok": True},
        "queued": [],
    }
    arrived = share / "ph1" / "meter_1" / paths[1].name
    assert arrived.read_bytes() == paths[1].read_bytes()

    wrong = emtui(*base, "--retry", "meter_7_2024-03-01.csv")
    assert wrong.returncode == 2 and "no file in the upload queue" in wrong.stderr
    assert "nothing queued" in emtui(*base).stdout  # the dropped file does not come back
