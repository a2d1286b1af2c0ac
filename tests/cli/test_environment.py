"""Environment faults (issue 6, item 8): a port that rejects the line settings, a busy listen
port, state and data dirs that cannot be used, rows lost to a full disk.

Every fault runs the installed ``emtui`` and checks its exit code (README "Exit codes"), one
stderr line naming the path or problem, and no traceback. The tests run as root (CI too), and
root ignores permission bits: "unusable" is a file in the way (``file`` or ``file/sub``),
which fails for every user; the permission cases run as ``nobody`` when that user can run the
installed program.
"""

from __future__ import annotations

import csv
import json
import os
import pty
import resource
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.bus.link import ConnectionSettings, PortSettingsRejected, RtuLink
from emtui.sim.bus import SimulatedBus

CONNECTION, CONFIG, STORAGE = 3, 7, 9


def emtui(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMTUI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``emtui`` lines on stderr; asserts there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("emtui")]


def one_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Exactly one error line, naming every one of ``words``, and exit ``code``."""
    lines = error_lines(result)
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def statuses(csv_path: Path) -> list[str]:
    with csv_path.open(newline="") as f:
        return [row[2] for row in list(csv.reader(f))[1:]]


@pytest.fixture
def pty_bus() -> Iterator[str]:
    """A simulated bus on a pty (ptys take only parity N)."""
    with SimulatedBus(ids=[1, 2], line_timing=False, seed=61) as bus:
        yield bus.start_pty()


@pytest.fixture
def tcp_bus() -> Iterator[str]:
    with SimulatedBus(ids=[1], line_timing=False, seed=62) as bus:
        yield bus.start_tcp()


# -- a port that rejects the line settings --------------------------------------------------------


def test_a_pty_at_parity_e_is_refused_on_open_both_ways() -> None:
    """A fresh pty takes the first tcsetattr and drops PARENB silently; once raw, it fails
    tcsetattr with termios.error (not an OSError). Both must be a PortSettingsRejected (a
    LinkError, exit 3) on open, never a termios.error later inside a read."""
    master, slave = pty.openpty()
    try:
        name = os.ttyname(slave)
        for _ in range(2):  # first: parity silently not applied; then: EINVAL
            link = RtuLink(ConnectionSettings(port=name, parity="E"))
            with pytest.raises(PortSettingsRejected, match="rejected the line settings 19200 8E1"):
                link.open()
            link.close()
        with RtuLink(ConnectionSettings(port=name, parity="N")):
            pass  # parity N opens
    finally:
        os.close(master)
        os.close(slave)


def test_scan_and_read_on_a_pty_at_parity_e_exit_3_with_one_line(pty_bus: str) -> None:
    """emtui scan and emtui read --parity E on a pty: exit 3, one line saying the port rejected
    the settings and what to do (a pty takes only --parity N), no traceback."""
    scan = emtui("scan", "--port", pty_bus, "--parity", "E", "--ids", "1-2")
    one_error(scan, CONNECTION, pty_bus, "rejected the line settings", "--parity N")
    read = emtui("read", "--port", pty_bus, "--parity", "E", "--id", "1")
    one_error(read, CONNECTION, pty_bus, "rejected the line settings", "--parity N")
    scan_again = emtui("scan", "--port", pty_bus, "--parity", "E", "--ids", "1-2")
    one_error(scan_again, CONNECTION, "rejected the line settings")


def test_logger_on_a_pty_at_parity_e_keeps_running_and_writes_error_rows(
    pty_bus: str, tmp_path: Path
) -> None:
    """emtui --log --parity E on a pty behaves like a lost bus: it keeps polling, writes an
    `error` row per meter per cycle, says so in one line, and --cycles N exits 0 (the
    cycles ran; every row was written)."""
    result = emtui(
        "--log",
        "--port",
        pty_bus,
        "--parity",
        "E",
        "--ids",
        "1-2",
        "--cycles",
        "3",
        "--interval",
        "0",
        "--data-dir",
        str(tmp_path / "d"),
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert result.returncode == 0, result.stderr
    lines = error_lines(result)
    rejected = [line for line in lines if "rejected the line settings" in line]
    assert len(rejected) == 1, result.stderr
    assert "--parity N" in rejected[0] and "retrying every cycle" in rejected[0]
    assert lines[-1].startswith("emtui: stopped: rows 6 (3 cycles)")
    for device_id in (1, 2):
        (path,) = (tmp_path / "d" / f"meter_{device_id}").glob("*.csv")
        assert statuses(path) == ["error"] * 3


# -- emtui sim --listen on a port in use ----------------------------------------------------------


def test_sim_listen_on_a_port_in_use_exits_3_with_one_line() -> None:
    """emtui sim --listen on a port another program listens on: one line saying so, exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = emtui("sim", "--listen", f"127.0.0.1:{port}")
    one_error(result, CONNECTION, f"127.0.0.1:{port}", "already in use", "--listen")


# -- state and data dirs that cannot be used ------------------------------------------------------


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize("layout", ["file", "under-file"])
@pytest.mark.parametrize(
    "command",
    [["status"], ["status", "--json"], ["upload"], ["upload", "--now"], ["--log"]],
    ids=["status", "status-json", "upload", "upload-now", "log"],
)
def test_a_state_dir_that_is_a_file_gives_one_line(
    tmp_path: Path, tcp_bus: str, command: list[str], layout: str
) -> None:
    """--state-dir that is a file (or lies under one) for status, upload and --log: one line
    naming the path and the flag to fix, exit 9 (storage), no traceback."""
    state = _file(tmp_path) if layout == "file" else _file(tmp_path) / "state"
    extra = ["--port", tcp_bus, "--ids", "1", "--cycles", "1", "--data-dir", str(tmp_path / "d")]
    args = [*command, "--state-dir", str(state), *(extra if command == ["--log"] else [])]
    result = emtui(*args)
    one_error(result, STORAGE, f"state dir {state}", "a file, not a directory", "--state-dir")
    assert not (tmp_path / "d").exists()  # nothing was logged


@pytest.mark.parametrize("layout", ["file", "under-file"])
def test_a_data_dir_that_is_a_file_stops_the_logger_with_one_line(
    tmp_path: Path, tcp_bus: str, layout: str
) -> None:
    """--log with --data-dir that is a file (or under one): one line naming it, exit 9 —
    not a logger that runs losing every row."""
    data = _file(tmp_path) if layout == "file" else _file(tmp_path) / "data"
    result = emtui(
        "--log",
        "--port",
        tcp_bus,
        "--ids",
        "1",
        "--cycles",
        "1",
        "--data-dir",
        str(data),
        "--state-dir",
        str(tmp_path / "s"),
    )
    one_error(result, STORAGE, f"data dir {data}", "a file, not a directory", "--data-dir")


def test_status_of_a_state_dir_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    """emtui status on a state dir that does not exist yet: nothing ran here (exit 0), and
    reading does not create it."""
    state = tmp_path / "never"
    result = emtui("status", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert "never ran here" in result.stdout
    assert not state.exists()


@pytest.mark.parametrize("layout", ["file", "under-file"])
def test_config_check_rejects_dirs_that_are_files(tmp_path: Path, layout: str) -> None:
    """emtui config check: a state or data dir that is (or lies under) a file is an error
    naming the key and the path (exit 7)."""
    blocker = _file(tmp_path)
    path = blocker if layout == "file" else blocker / "sub"
    for flag, key in (("--state-dir", "state_dir"), ("--data-dir", "logging.data_dir")):
        result = emtui("config", "check", "--port", "/dev/null", "--ids", "1", flag, str(path))
        assert result.returncode == CONFIG, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("error:")]
        assert f"{key}: {path}" in line and "a file, not a directory" in line


def test_config_check_accepts_dirs_that_can_be_created(tmp_path: Path) -> None:
    """A state and data dir that do not exist yet but can be created are fine (exit 0, no
    warning about them), and the check creates neither."""
    state, data = tmp_path / "new" / "state", tmp_path / "new" / "data"
    result = emtui(
        "config", "check", "--port", "/dev/null", "--ids", "1",
        "--state-dir", str(state), "--data-dir", str(data), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert not [p for p in doc["errors"] + doc["warnings"] if "_dir" in p.split(": ")[1]]
    assert not (tmp_path / "new").exists()


# -- the same as a user without permission --------------------------------------------------------


def _nobody_can_run_emtui() -> bool:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return False
    try:
        probe = subprocess.run(
            ["runuser", "-u", "nobody", "--", *EMTUI, "--version"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


needs_nobody = pytest.mark.skipif(
    not _nobody_can_run_emtui(),
    reason="needs root, runuser and an emtui that user nobody can run (here the Python may "
    "live under /root)",
)


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *EMTUI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


@needs_nobody
def test_dirs_nobody_may_not_use_give_one_line(tmp_path: Path, tcp_bus: str) -> None:
    """As user nobody: a root-only state dir for status, a root-owned state dir for upload and
    a root-owned data dir for --log each give one line naming the path and the user (exit 9);
    config check warns about both dirs (exit 0: the service user may differ)."""
    os.chmod(tmp_path, 0o755)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    result = as_nobody("status", "--state-dir", str(private))
    one_error(result, STORAGE, str(private), "not readable by user nobody")
    result = as_nobody("upload", "--state-dir", str(shared))
    one_error(result, STORAGE, str(shared), "not writable by user nobody")
    result = as_nobody(
        "--log", "--port", tcp_bus, "--ids", "1", "--cycles", "1",
        "--data-dir", str(shared / "d"), "--state-dir", str(tmp_path / "nobody-state"),
    )  # fmt: skip
    one_error(result, STORAGE, f"data dir {shared / 'd'}", "not writable by user nobody")
    result = as_nobody(
        "config", "check", "--port", "/dev/null", "--ids", "1",
        "--state-dir", str(private / "s"), "--data-dir", str(shared / "d"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert any("state_dir" in w and str(private / "s") in w for w in warnings), warnings
    assert any("data_dir" in w and "not writable by user nobody" in w for w in warnings)


# -- rows lost: --log --cycles N exits 9 ----------------------------------------------------------


def _limit_file_size(limit: int) -> None:
    """In the child: files may grow to ``limit`` bytes; a write past it fails with EFBIG
    (Python ignores SIGXFSZ), as a write on a full disk fails with ENOSPC."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_log_cycles_exits_9_when_rows_were_not_written(tmp_path: Path, tcp_bus: str) -> None:
    """A write failure while logging (files capped at 4 KiB, like a full disk): the logger
    keeps polling, and --cycles N then exits 9 with a last line saying how many rows were not
    written and where; a run that wrote every row exits 0."""
    base = [
        "--log", "--port", tcp_bus, "--ids", "1", "--interval", "0",
        "--state-dir", str(tmp_path / "s"),
    ]  # fmt: skip
    result = subprocess.run(
        [*EMTUI, *base, "--cycles", "12", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: _limit_file_size(4096),
    )
    assert result.returncode == STORAGE, result.stderr
    lines = error_lines(result)
    (path,) = (tmp_path / "d" / "meter_1").glob("*.csv")
    written = len(statuses(path))
    assert 0 < written < 12
    assert f"{12 - written} row(s) NOT WRITTEN" in lines[-2]
    assert lines[-1] == (
        f"emtui: {12 - written} row(s) were not written to {tmp_path / 'd'} (see above): "
        "free space on that disk or fix the directory"
    )
    ok = emtui(*base, "--cycles", "2", "--data-dir", str(tmp_path / "d2"))
    assert ok.returncode == 0, ok.stderr
