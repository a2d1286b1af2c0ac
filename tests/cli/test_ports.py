"""``emtui ports``: the listing, its JSON contract (design §12) and who holds a busy port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from helpers import EMTUI

from emtui.core.bus.ports import holders_of, list_serial_ports


def _hold_pty() -> tuple[subprocess.Popen[str], str]:
    """A child process that opens a new pty's device and keeps it open."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os, time; fd = os.open({path!r}, os.O_RDWR | os.O_NOCTTY); "
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "open"
    child._master = master  # type: ignore[attr-defined]  # keep the pty alive
    return child, path


def test_busy_pty_names_the_child_that_holds_it() -> None:
    """A pty held open by a child process is listed busy_by that child's PID and command."""
    child, path = _hold_pty()
    try:
        out = subprocess.run(
            [*EMTUI, "ports", path, "--json"], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        entry = next(p for p in doc["ports"] if p["device"] == path)
        assert set(entry) >= {"device", "vid", "pid", "description", "by_id", "busy_by"}
        assert entry["busy_by"]["pid"] == child.pid
        assert "time.sleep(60)" in entry["busy_by"]["command"]
        human = subprocess.run(
            [*EMTUI, "ports", path], capture_output=True, text=True, timeout=30
        ).stdout
        assert f"in use by PID {child.pid}" in human
    finally:
        child.kill()
        child.wait()
        os.close(child._master)  # type: ignore[attr-defined]


def test_free_pty_is_not_busy() -> None:
    """A pty nobody else has open has busy_by null (this process's own fds do not count)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        (port,) = [p for p in list_serial_ports([path], busy=True) if p.device == path]
        assert port.busy_by is None
        assert port.as_dict()["busy_by"] is None
    finally:
        os.close(slave)
        os.close(master)


def test_holder_found_after_the_child_opens_it() -> None:
    """holders_of sees a process that opened the device after the listing started."""
    child, path = _hold_pty()
    try:
        deadline = time.monotonic() + 5
        holders = holders_of([path])
        while os.path.realpath(path) not in holders and time.monotonic() < deadline:
            time.sleep(0.05)
            holders = holders_of([path])
        assert holders[os.path.realpath(path)].pid == child.pid
    finally:
        child.kill()
        child.wait()
        os.close(child._master)  # type: ignore[attr-defined]
