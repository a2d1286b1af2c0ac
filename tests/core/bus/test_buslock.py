"""One bus, one program: network connections are locked machine-wide (issue 6, item 4).

A serial device is locked by opening it exclusively; ``socket://`` and ``tcp://`` are locked
by host and port in a directory every emtui process sees, whatever its ``--state-dir``.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.bus.link import ConnectionSettings, PortBusy
from emtui.core.log.runstate import ConnectionLock, connection_key, lock_dir
from emtui.sim.bus import SimulatedBus


@pytest.fixture
def bus() -> Iterator[SimulatedBus]:
    with SimulatedBus(ids=[1, 2, 3, 4], seed=31) as simulated:
        yield simulated


def _start_logger(url: str, tmp: Path) -> subprocess.Popen[str]:
    logger = subprocess.Popen(
        [
            *EMTUI,
            "--log",
            "--port",
            url,
            "--ids",
            "1-4",
            "--interval",
            "0.2",
            "--state-dir",
            str(tmp / "logger-state"),
            "--data-dir",
            str(tmp / "data"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert logger.stderr is not None
    assert "logging" in logger.stderr.readline()
    return logger


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("framing", ["rtu", "tcp", "rfc2217"])
def test_scan_and_read_while_a_logger_polls_the_same_gateway_exit_3(
    bus: SimulatedBus, framing: str, tmp_path: Path
) -> None:
    """emtui scan / read on the socket:// (tcp://, rfc2217://) address a logger polls: exit 3 with
    "in use by PID <logger>", also when spelt localhost instead of 127.0.0.1, and a second
    logger with another --state-dir is refused the same way; once the logger stops, the scan
    runs."""
    url = bus.start_tcp(framing=framing)  # type: ignore[arg-type]
    scheme, _, rest = url.partition("://")
    alias = f"{scheme}://localhost:{rest.rpartition(':')[2]}"
    logger = _start_logger(url, tmp_path)
    try:
        for result in (
            _run("scan", "--port", url, "--ids", "1-4"),
            _run("scan", "--port", alias, "--ids", "1-4", "--json"),
            _run("read", "--port", url, "--id", "1"),
            _run(
                "--log",
                "--port",
                url,
                "--ids",
                "1",
                "--cycles",
                "1",
                "--state-dir",
                str(tmp_path / "other-state"),
                "--data-dir",
                str(tmp_path / "other-data"),
            ),
        ):
            assert result.returncode == 3, result.stderr
            assert f"in use by PID {logger.pid} (emtui --log)" in result.stderr
            assert "Traceback" not in result.stderr
    finally:
        logger.send_signal(signal.SIGTERM)
        assert logger.wait(30) == 0
    after = _run("scan", "--port", url, "--ids", "1-4", "--no-identify")
    assert after.returncode == 0, after.stderr


def test_connection_key_names_host_and_port_whatever_the_scheme() -> None:
    """socket://, tcp:// and rfc2217:// to one gateway, and localhost or 127.0.0.1, are one
    connection."""
    keys = {
        connection_key(ConnectionSettings(port=p))
        for p in (
            "socket://127.0.0.1:5020",
            "tcp://localhost:5020",
            "socket://LOCALHOST:5020",
            "socket://127.0.0.1:5020?logging=debug",
            "rfc2217://localhost:5020",
            "rfc2217://127.0.0.1:5020?ign_set_control",
        )
    }
    assert keys == {"127.0.0.1:5020"}
    assert connection_key(ConnectionSettings(port="tcp://[::1]:502")) == "::1:502"
    assert connection_key(ConnectionSettings(port="/dev/ttyUSB0")) is None


def test_lock_works_for_root_and_another_user() -> None:
    """The lock directory is world-writable with the sticky bit and the lock file is made
    readable and writable by everyone, so a lock root took and released can be taken by an
    unprivileged user, and while root holds it that user is told root's PID. A released lock
    leaves no file behind."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    assert lock_dir().stat().st_mode & 0o1777 == 0o1777
    settings = ConnectionSettings(port=f"socket://127.0.0.1:{40000 + os.getpid() % 20000}")
    lock = ConnectionLock(settings)
    lock.path.unlink(missing_ok=True)
    # root's Python is not readable by nobody: import as root, then become nobody for good
    code = (
        "import os, sys\n"
        "from emtui.core.bus.link import ConnectionSettings, PortBusy\n"
        "from emtui.core.log.runstate import ConnectionLock\n"
        f"os.setgroups([]); os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid})\n"
        "assert os.geteuid() != 0\n"
        f"lock = ConnectionLock(ConnectionSettings(port={settings.port!r}))\n"
        "try:\n"
        "    lock.acquire()\n"
        "except PortBusy as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
        "print('took it')\n"
    )

    def as_nobody() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
        )

    try:
        with lock:
            assert lock.path.stat().st_mode & 0o777 == 0o666
            busy = as_nobody()
            assert busy.returncode == 3, busy.stderr
            assert f"in use by PID {os.getpid()}" in busy.stdout
        assert not lock.path.exists()  # removed on release: /run/lock does not fill up
        free = as_nobody()
        assert free.returncode == 0 and "took it" in free.stdout, free.stderr
        # root takes it again after nobody; a second holder fails
        with pytest.raises(PortBusy), lock, ConnectionLock(settings):
            pass
    finally:
        lock.path.unlink(missing_ok=True)
