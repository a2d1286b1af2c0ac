"""The daily CSV files (design §8): columns, precision, naming, repair, full disk, kill -9."""

from __future__ import annotations

import csv
import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import ROOT

from emtui.core.bus.reader import Sample
from emtui.core.log import csvfile as csvlog
from emtui.core.log.csvfile import ClockWatch, MeterCsvWriter, csv_columns, day_file_path
from emtui.core.maps.codec import Value, decode, encode
from emtui.core.maps.registers import RegisterEntry

#: 2026-11-25 13:00:00 UTC
T0 = datetime(2026, 11, 25, 13, 0, tzinfo=UTC).timestamp()


def entry(name: str, type_: str = "float32", register: int = 3000) -> RegisterEntry:
    counts = {"float32": 2, "pf4q": 2, "int64": 4, "uint16": 1, "string": 10}
    return RegisterEntry(name=name, label=name, register=register, type=type_, count=counts[type_])


ENTRIES = [
    entry("voltage_ln_avg"),
    entry("pf_total", "pf4q", 3084),
    entry("energy_wh", "int64", 3204),
    entry("model", "string", 30),
]


def sample(t: float = T0, status: str = "ok", **values: Value) -> Sample:
    return Sample(device_id=1, time=t, status=status, values=dict(values))


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def writer(tmp_path: Path, entries: list[RegisterEntry] = ENTRIES, **kw: object) -> MeterCsvWriter:
    kw.setdefault("tz", UTC)
    return MeterCsvWriter(tmp_path, 1, "em6400ng", entries, **kw)  # type: ignore[arg-type]


def test_header_and_columns_are_exact(tmp_path: Path) -> None:
    """timestamp, epoch, status, the values (pf4q + _lead_lag), then the trailing clock column."""
    w = writer(tmp_path)
    assert w.write(sample(voltage_ln_avg=Value(230.5)))
    w.close()
    path = tmp_path / "meter_1" / "meter_1_2026-11-25.csv"
    assert w.current_path == path
    rows = read_rows(path)
    assert rows[0] == [
        "timestamp",
        "epoch",
        "status",
        "voltage_ln_avg",
        "pf_total",
        "pf_total_lead_lag",
        "energy_wh",
        "model",
        "clock",
    ]
    assert rows[0] == csv_columns(ENTRIES)
    assert len(rows) == 2 and len(rows[1]) == len(rows[0])
    assert path.read_bytes().startswith(b"timestamp,epoch,status,voltage_ln_avg,")
    assert w.rows_written == 1 and w.rows_lost == 0 and w.last_error is None


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    """An entry named like a fixed column would make an ambiguous header."""
    with pytest.raises(ValueError, match="clock"):
        writer(tmp_path, [entry("clock")])


def test_timestamp_has_milliseconds_and_offset_and_epoch_three_decimals(tmp_path: Path) -> None:
    """ISO-8601 local time with milliseconds and UTC offset; epoch from the same millisecond."""
    w = writer(tmp_path, [entry("v")], tz=timezone(timedelta(hours=1)))
    w.write(sample(T0 + 0.1234))
    w.close()
    row = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 25)))[1]
    assert row[0] == "2026-11-25T14:00:00.123+01:00"
    assert row[1] == f"{T0:.0f}.123"
    assert datetime.fromisoformat(row[0]).timestamp() == pytest.approx(float(row[1]), abs=1e-6)


def test_values_are_written_at_full_precision(tmp_path: Path) -> None:
    """Floats as their shortest round-trip repr, a float32 read as decoded, int64 exactly."""
    f32 = entry("f32")
    decoded = decode(f32, encode(f32, 50.01)).value
    assert isinstance(decoded, float)
    w = writer(tmp_path, [entry("sum"), f32, entry("big", "int64")])
    w.write(
        sample(sum=Value(0.1 + 0.2), f32=Value(decoded), big=Value(123456789012345)),
    )
    w.close()
    row = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 25)))[1]
    assert row[3] == "0.30000000000000004"
    assert row[4] == repr(decoded) and float(row[4]) == decoded  # 50.0099983215332, not 50.01
    assert row[5] == "123456789012345"


def test_missing_values_are_empty_cells(tmp_path: Path) -> None:
    """None, a missing entry and a missing lead/lag are all empty cells."""
    w = writer(tmp_path)
    w.write(sample(status="timeout", voltage_ln_avg=Value(None), pf_total=Value(None)))
    w.close()
    row = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 25)))[1]
    assert row[2:] == ["timeout", "", "", "", "", "", ""]


def test_power_factor_lead_lag_column(tmp_path: Path) -> None:
    """The pf4q value is followed by lagging/leading/unity."""
    w = writer(tmp_path, [entry("pf", "pf4q")])
    for i, (pf, how) in enumerate([(0.85, "lagging"), (-0.9, "leading"), (1.0, "unity")]):
        w.write(sample(T0 + i, pf=Value(pf, how)))
    w.close()
    rows = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 25)))
    assert rows[0][3:5] == ["pf", "pf_lead_lag"]
    assert [r[3:5] for r in rows[1:]] == [
        ["0.85", "lagging"],
        ["-0.9", "leading"],
        ["1.0", "unity"],
    ]


def test_status_tokens_strings_and_clock_flags(tmp_path: Path) -> None:
    """Status tokens and flags go in as they are; strings are csv-quoted and stay one line."""
    w = writer(tmp_path, [entry("model", "string")])
    statuses = ["ok", "partial", "timeout", "exception:02", "error"]
    for i, status in enumerate(statuses):
        w.write(sample(T0 + i, status, model=Value('EM6400NG, "x"\nline')), "unsynced")
    w.close()
    path = day_file_path(tmp_path, 1, date(2026, 11, 25))
    rows = read_rows(path)
    assert [r[2] for r in rows[1:]] == statuses
    assert {r[3] for r in rows[1:]} == {'EM6400NG, "x" line'}
    assert {r[-1] for r in rows[1:]} == {"unsynced"}
    assert len(path.read_bytes().splitlines()) == 1 + len(statuses)


def test_local_date_names_the_file_and_midnight_closes_the_day(tmp_path: Path) -> None:
    """At +05:30 a row just before and one just after local midnight land in two files."""
    closed: list[tuple[Path, date]] = []
    tz = timezone(timedelta(hours=5, minutes=30))
    w = writer(tmp_path, [entry("v")], tz=tz, on_day_closed=lambda p, d: closed.append((p, d)))
    midnight = datetime(2026, 11, 26, tzinfo=tz).timestamp()  # 2026-11-25 18:30 UTC
    assert w.write(sample(midnight - 0.001, v=Value(1.0)))
    first = w.current_path
    assert w.write(sample(midnight, v=Value(2.0)))
    assert w.write(sample(midnight + 1, v=Value(3.0)))
    w.close()
    assert first == tmp_path / "meter_1" / "meter_1_2026-11-25.csv"
    assert w.current_path == tmp_path / "meter_1" / "meter_1_2026-11-26.csv"
    assert closed == [(first, date(2026, 11, 25))]
    assert read_rows(first)[1][0] == "2026-11-25T23:59:59.999+05:30"
    assert [r[0] for r in read_rows(w.current_path)[1:]] == [
        "2026-11-26T00:00:00.000+05:30",
        "2026-11-26T00:00:01.000+05:30",
    ]


def test_existing_file_is_appended_to_with_one_header(tmp_path: Path) -> None:
    """A restart with the same columns appends to the day's file without a second header."""
    for i in range(3):
        w = writer(tmp_path, [entry("v")])
        w.write(sample(T0 + i, v=Value(float(i))))
        w.close()
    rows = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 25)))
    assert len(rows) == 4 and rows[0][0] == "timestamp"
    assert [r[3] for r in rows[1:]] == ["0.0", "1.0", "2.0"]


def test_torn_last_line_is_cut_off_and_moved_aside(tmp_path: Path) -> None:
    """A file ending mid-row is truncated to its last whole row; the fragment is kept aside."""
    w = writer(tmp_path, [entry("v")])
    w.write(sample(T0, v=Value(1.0)))
    w.close()
    path = day_file_path(tmp_path, 1, date(2026, 11, 25))
    good = path.read_bytes()
    torn = b"2026-11-25T13:00:01.000+00:00,17"
    with path.open("ab") as f:
        f.write(torn)

    w = writer(tmp_path, [entry("v")])
    assert w.write(sample(T0 + 2, v=Value(2.0)))
    w.close()
    assert w.torn_repaired == 1
    assert (path.parent / f"{path.name}.torn-1").read_bytes() == torn
    rows = read_rows(path)
    assert path.read_bytes().startswith(good)
    assert [r[3] for r in rows[1:]] == ["1.0", "2.0"]
    assert all(len(r) == len(rows[0]) for r in rows)

    # a second torn fragment goes to .torn-2, the first is never overwritten
    with path.open("ab") as f:
        f.write(b"x,y")
    writer(tmp_path, [entry("v")]).write(sample(T0 + 3, v=Value(3.0)))
    assert (path.parent / f"{path.name}.torn-1").read_bytes() == torn
    assert (path.parent / f"{path.name}.torn-2").read_bytes() == b"x,y"


def test_torn_header_is_repaired_and_the_file_reused(tmp_path: Path) -> None:
    """A file cut inside its header (no newline at all) gets a fresh header."""
    path = day_file_path(tmp_path, 1, date(2026, 11, 25))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"timestamp,ep")
    w = writer(tmp_path, [entry("v")])
    assert w.write(sample(T0, v=Value(1.0)))
    w.close()
    assert w.current_path == path
    assert read_rows(path) == [csv_columns([entry("v")]), read_rows(path)[1]]
    assert (path.parent / f"{path.name}.torn-1").read_bytes() == b"timestamp,ep"


def test_changed_columns_start_a_suffixed_file(tmp_path: Path) -> None:
    """Other entries never mix into a file: _2 is started, and the old set finds its file again."""
    day = date(2026, 11, 25)
    a = writer(tmp_path, [entry("v")])
    a.write(sample(T0, v=Value(1.0)))
    a.close()
    b = writer(tmp_path, [entry("v"), entry("i", register=3010)])
    b.write(sample(T0 + 1, v=Value(2.0), i=Value(5.0)))
    b.close()
    assert b.current_path == day_file_path(tmp_path, 1, day, 2)
    assert b.current_path.name == "meter_1_2026-11-25_2.csv"
    c = writer(tmp_path, [entry("v")])
    c.write(sample(T0 + 2, v=Value(3.0)))
    c.close()
    assert c.current_path == day_file_path(tmp_path, 1, day)
    assert [r[3] for r in read_rows(day_file_path(tmp_path, 1, day))[1:]] == ["1.0", "3.0"]
    assert read_rows(day_file_path(tmp_path, 1, day, 2))[0][3:5] == ["v", "i"]


def test_header_only_file_is_reused(tmp_path: Path) -> None:
    """A file holding just our header (crash before the first row) is appended to."""
    path = day_file_path(tmp_path, 1, date(2026, 11, 25))
    path.parent.mkdir(parents=True)
    header = ",".join(csv_columns([entry("v")])) + "\n"
    path.write_text(header)
    w = writer(tmp_path, [entry("v")])
    w.write(sample(T0, v=Value(1.0)))
    w.close()
    assert w.current_path == path
    assert path.read_text().count("timestamp") == 1


def test_a_queued_day_is_never_reopened(tmp_path: Path) -> None:
    """Rows for a day the queue holds go to a new suffix file; the queued file is untouched."""
    day = date(2026, 11, 25)
    first = writer(tmp_path, [entry("v")])
    first.write(sample(T0, v=Value(1.0)))
    first.close()
    queued = day_file_path(tmp_path, 1, day).read_bytes()

    w = writer(tmp_path, [entry("v")], is_day_closed=lambda d: d == day)
    assert w.write(sample(T0 + 1, v=Value(2.0)))
    assert w.write(sample(T0 + 2, v=Value(3.0)))
    w.close()
    assert day_file_path(tmp_path, 1, day).read_bytes() == queued
    assert w.current_path == day_file_path(tmp_path, 1, day, 2)
    assert [r[3] for r in read_rows(w.current_path)[1:]] == ["2.0", "3.0"]

    again = writer(tmp_path, [entry("v")], is_day_closed=lambda d: d == day)
    again.write(sample(T0 + 3, v=Value(4.0)))
    again.close()
    assert again.current_path == day_file_path(tmp_path, 1, day, 3)


def test_clock_jumping_back_into_a_left_day_does_not_reopen_it(tmp_path: Path) -> None:
    """A day handed to on_day_closed is closed for this writer even if the queue is slow."""
    closed: list[tuple[Path, date]] = []
    w = writer(tmp_path, [entry("v")], on_day_closed=lambda p, d: closed.append((p, d)))
    day = date(2026, 11, 25)
    w.write(sample(T0, v=Value(1.0)))
    w.write(sample(T0 + 86400, v=Value(2.0)))  # next day
    w.write(sample(T0 + 5, v=Value(3.0)), "stepped_back")  # clock stepped back a day
    assert w.current_path == day_file_path(tmp_path, 1, day, 2)
    w.write(sample(T0 + 86401, v=Value(4.0)))
    w.close()
    assert closed == [
        (day_file_path(tmp_path, 1, day), day),
        (day_file_path(tmp_path, 1, day, 2), day),
    ]
    assert [r[3] for r in read_rows(day_file_path(tmp_path, 1, day))[1:]] == ["1.0"]
    next_day = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 26)))
    assert [r[3] for r in next_day[1:]] == ["2.0", "4.0"]


def test_disk_full_loses_rows_without_raising_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC is counted, reported loudly, never half-written, and writing resumes."""
    w = writer(tmp_path, [entry("v")])
    real_write = os.write
    mode = {"full": False, "short": False}

    def fake_write(fd: int, data: bytes) -> int:
        if mode["short"]:  # the kernel wrote part of the row, then the disk was full
            return real_write(fd, bytes(data)[: len(data) // 2])
        if mode["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fake_write)  # csvlog calls os.write
    assert w.write(sample(T0, v=Value(1.0)))
    mode["full"] = True
    for i in range(5):
        assert not w.write(sample(T0 + 1 + i, v=Value(9.0)))
    assert w.rows_lost == 5 and w.failing
    assert w.last_error is not None and "disk full" in w.last_error
    assert "5 row(s) lost so far" in w.last_error
    mode["full"], mode["short"] = False, True
    assert not w.write(sample(T0 + 7, v=Value(9.0)))
    assert w.rows_lost == 6
    path = day_file_path(tmp_path, 1, date(2026, 11, 25))
    assert path.read_bytes().endswith(b"\n")
    mode["short"] = False
    assert w.write(sample(T0 + 8, v=Value(2.0)))
    assert not w.failing and w.rows_written == 2
    w.close()
    rows = read_rows(path)
    assert [r[3] for r in rows[1:]] == ["1.0", "2.0"]
    assert all(len(r) == len(rows[0]) for r in rows)
    assert not list(path.parent.glob("*.torn-*"))


def test_disk_full_before_the_file_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header that cannot be written is retried on the same file, not a new suffix."""
    real_write = os.write
    full = {"on": True}

    def fake_write(fd: int, data: bytes) -> int:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fake_write)  # csvlog calls os.write
    w = writer(tmp_path, [entry("v")], is_day_closed=lambda d: True)
    assert not w.write(sample(T0, v=Value(1.0)))
    assert not w.write(sample(T0 + 1, v=Value(1.0)))
    full["on"] = False
    assert w.write(sample(T0 + 2, v=Value(2.0)))
    w.close()
    assert w.current_path == day_file_path(tmp_path, 1, date(2026, 11, 25))
    assert [p.name for p in (tmp_path / "meter_1").iterdir()] == ["meter_1_2026-11-25.csv"]
    assert len(read_rows(w.current_path)) == 2


def test_fsync_is_paced_by_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are not fsynced one by one: at most once per interval, and on close."""
    now = [0.0]
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    w = writer(tmp_path, [entry("v")], fsync_interval=5.0, monotonic=lambda: now[0])
    w.write(sample(T0, v=Value(1.0)))
    creation = len(synced)  # the new file and its directory
    for i in range(20):
        now[0] += 0.5
        w.write(sample(T0 + i, v=Value(1.0)))
    assert len(synced) - creation == 2  # at 5.0 and 10.0 seconds
    w.close()  # nothing new since 10.0: nothing to sync
    assert len(synced) - creation == 2
    now[0] += 0.5
    w.write(sample(T0 + 30, v=Value(1.0)))
    w.close()
    assert len(synced) - creation == 3


def test_clock_watch_flags_steps_and_unsynchronised_time() -> None:
    """Backward wall steps, offset jumps and implausible or unsynced time are flagged."""
    wall = [T0]
    mono = [100.0]
    synced: list[bool | None] = [True]
    watch = ClockWatch(wall=lambda: wall[0], monotonic=lambda: mono[0], synced=lambda: synced[0])
    assert watch.check() == ""
    wall[0] += 1
    mono[0] += 1
    assert watch.check() == ""
    wall[0] -= 30  # the clock stepped back 30 s (wall went backwards)
    mono[0] += 1
    assert watch.check() == "stepped_back"
    wall[0] += 5  # 10 s later by the monotonic clock, only 5 s by the wall: stepped back 5 s
    mono[0] += 10
    assert watch.check() == "stepped_back"
    wall[0] += 3600  # NTP set the clock forward
    mono[0] += 1
    assert watch.check() == "stepped"
    wall[0] += 1.5  # jitter inside the tolerances
    mono[0] += 1
    assert watch.check() == ""
    synced[0] = False
    wall[0] += 1
    mono[0] += 1
    assert watch.check() == "unsynced"
    synced[0] = None  # unknown is not flagged
    assert ClockWatch(lambda: T0, lambda: 0.0, lambda: None).check() == ""

    boot = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    old = ClockWatch(wall=lambda: boot, monotonic=lambda: 5.0, synced=lambda: True)
    assert old.check() == "unsynced"
    watch2 = ClockWatch(wall=lambda: wall[0], monotonic=lambda: mono[0], synced=lambda: True)
    watch2.check()
    wall[0] = boot
    mono[0] += 1
    assert watch2.check() == "stepped_back;unsynced"


def test_clock_synchronised_asks_the_kernel_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer is a bool or None and is cached, so a check per row stays cheap."""
    monkeypatch.setattr(csvlog, "_sync_cache", None)
    first = csvlog.clock_synchronised()
    assert first in (True, False, None)
    calls: list[int] = []

    def adjtimex() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(csvlog, "_adjtimex_synchronised", adjtimex)
    assert csvlog.clock_synchronised() == first
    assert calls == []
    monkeypatch.setattr(csvlog, "_sync_cache", (time.monotonic() - 61, first))
    assert csvlog.clock_synchronised() is True and calls == [1]


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import timezone
    from pathlib import Path
    from emtui.core.maps.codec import Value
    from emtui.core.log.csvfile import MeterCsvWriter
    from emtui.core.bus.reader import Sample
    from emtui.core.maps.registers import RegisterEntry

    entries = [
        RegisterEntry("seq", "seq", 1, "int64", 4),
        RegisterEntry("v", "v", 5, "float32", 2),
        RegisterEntry("pf", "pf", 7, "pf4q", 2),
        RegisterEntry("model", "model", 9, "string", 10),
    ]
    w = MeterCsvWriter(Path(sys.argv[1]), 7, "test", entries, fsync_interval=0.05,
                       tz=timezone.utc)
    seq = int(sys.argv[2])
    out = sys.stdout
    while True:
        s = Sample(7, {t0!r} + (seq % 100000) / 1000, "ok", {{
            "seq": Value(seq), "v": Value(seq / 7), "pf": Value(-0.5, "leading"),
            "model": Value("EM6400NG, \\"x\\""),
        }})
        if w.write(s, "unsynced" if seq % 3 == 0 else ""):
            out.write(f"{{seq}}\\n")
            out.flush()
        seq += 1
    """
).format(t0=T0)


def test_kill_9_leaves_parseable_files_holding_every_reported_row(tmp_path: Path) -> None:
    """SIGKILL at random moments (and power-cut torn tails) never costs a reported row."""
    rng = random.Random(6400)
    reported: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    meter_dir = tmp_path / "meter_7"
    for run in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(run * 10_000_000)],
            stdout=subprocess.PIPE,
            env=env,
        )
        # Kill only once the writer has adopted the file (its first row reported): a child
        # killed while Python still starts (a loaded machine) would leave an injected torn
        # tail unrepaired at the end, which says nothing about the writer.
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.endswith(b"\n"), "the child died before writing a row"
        time.sleep(rng.uniform(0.05, 0.35))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        lines = (first + out).decode().split("\n")[:-1]  # a line without "\n" was never reported
        reported.update(int(line) for line in lines)
        if run % 5 == 2:  # a power cut mid-row: the next run must repair it
            files = sorted(meter_dir.glob("*.csv"))
            if files:
                with files[-1].open("ab") as f:
                    f.write(b"2026-11-25T13:00:00.000+00:00,1795,ok,99")
    assert len(reported) > 100, "the child never got going"

    seen: list[int] = []
    files = sorted(meter_dir.glob("*.csv"))
    assert files
    for path in files:
        rows = read_rows(path)
        assert rows[0][:4] == ["timestamp", "epoch", "status", "seq"]
        assert rows[0][-1] == "clock"
        assert all(len(r) == len(rows[0]) for r in rows), path
        seen.extend(int(r[3]) for r in rows[1:])
    assert len(seen) == len(set(seen)), "a row was written twice"
    missing = reported - set(seen)
    assert not missing, f"{len(missing)} reported row(s) missing, e.g. {sorted(missing)[:5]}"
    assert list(meter_dir.glob("*.torn-*")), "the injected torn tails were not moved aside"


def test_stepped_back_flag_persists_past_midnight_until_the_high_water_mark(
    tmp_path: Path,
) -> None:
    """After the clock steps back across midnight, every row whose timestamp repeats one
    already written is flagged stepped_back, including the rows in the next day's file, and
    the flag clears on the first row past the latest time written before the step."""
    midnight = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    wall = [midnight + 3]  # 00:00:03 of the 26th
    mono = [1000.0]
    watch = ClockWatch(wall=lambda: wall[0], monotonic=lambda: mono[0], synced=lambda: True)
    w = writer(tmp_path, [entry("v")])
    flags_by_time: list[tuple[float, str]] = []

    def row() -> None:
        flags = watch.check()
        w.write(sample(wall[0], v=Value(1.0)), flags)
        flags_by_time.append((wall[0], flags))
        wall[0] += 1
        mono[0] += 1

    for _ in range(3):  # 00:00:03 .. 00:00:05 written: the high-water mark is 00:00:05
        row()
    wall[0] = midnight - 3  # NTP steps the clock back 9 s, to 23:59:57 of the 25th
    for _ in range(10):  # 23:59:57 .. 00:00:06
        row()
    w.close()
    seconds = [round(t - midnight) for t, _ in flags_by_time]
    assert seconds == [3, 4, 5, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6]
    flags = [f for _, f in flags_by_time]
    assert flags[:3] == ["", "", ""]
    assert flags[3:12] == ["stepped_back"] * 9  # 23:59:57 .. 00:00:05 again
    assert flags[12] == ""  # 00:00:06, past the high-water mark: the clock is trusted again
    next_day = read_rows(day_file_path(tmp_path, 1, date(2026, 11, 26)))[1:]
    repeated = [r for r in next_day if float(r[1]) - midnight in (3, 4, 5)]
    assert len(repeated) == 6  # each of 00:00:03-05 written twice in the same file
    assert [r[-1] for r in repeated] == ["", "", "", "stepped_back", "stepped_back", "stepped_back"]
