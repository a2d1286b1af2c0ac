"""End to end: the real ``emtui --demo`` in tmux, read off the screen as a technician reads it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from helpers import EMTUI

FREQUENCY = re.compile(r"(?<![0-9.])(49|50)\.[0-9]{2}(?![0-9])")


@pytest.fixture
def tmux() -> Iterator[str]:
    """A private tmux server (socket name); skips without tmux, except in CI."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required in CI (apt-get install tmux)")
        pytest.skip("tmux not installed")
    name = f"emtui-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)


def capture(server: str) -> str:
    done = subprocess.run(
        ["tmux", "-L", server, "capture-pane", "-p", "-t", "app"], capture_output=True, text=True
    )
    return done.stdout


def wait_for(server: str, predicate: object, timeout: float) -> tuple[bool, str, float]:
    start = time.monotonic()
    screen = ""
    while time.monotonic() - start < timeout:
        screen = capture(server)
        if predicate(screen):  # type: ignore[operator]
            return True, screen, time.monotonic() - start
        time.sleep(0.1)
    return False, screen, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_demo_shows_four_live_meters_and_quits_on_q(tmux: str, size: tuple[int, int]) -> None:
    """At 100×30 and 80×24 the demo shows the 4 meters with frequency near 50 Hz within 3 s
    (plus the time the program takes to start, measured first), a meter tab on 1, and quits on q."""
    cols, rows = size
    marker = f"/tmp/{tmux}.exit"
    command = f"{EMTUI[0]} --demo; echo $? > {marker}; sleep 30"
    subprocess.run(
        [
            "tmux",
            "-L",
            tmux,
            "new-session",
            "-d",
            "-s",
            "app",
            "-x",
            str(cols),
            "-y",
            str(rows),
            command,
        ],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    up, screen, _ = wait_for(tmux, lambda s: "Pump 4" in s, 10.0)
    assert up, f"the app did not start:\n{screen}"
    ok, screen, _ = wait_for(
        tmux, lambda s: len([ln for ln in s.splitlines() if FREQUENCY.search(ln)]) >= 4, 3.0
    )
    assert ok, f"not 4 frequencies within 3 s of the first screen:\n{screen}"
    for n in (1, 2, 3, 4):
        assert f"Pump {n}" in screen
    assert "Quit" in screen and "Scan" in screen  # the footer tells the main keys
    subprocess.run(["tmux", "-L", tmux, "send-keys", "-t", "app", "1"], check=True)
    ok, screen, _ = wait_for(tmux, lambda s: "Frequency" in s or "Current A" in s, 3.0)
    assert ok, f"key 1 did not open meter 1's tab:\n{screen}"
    subprocess.run(["tmux", "-L", tmux, "send-keys", "-t", "app", "q"], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not os.path.exists(marker):
        time.sleep(0.1)
    assert os.path.exists(marker), f"q did not quit:\n{capture(tmux)}"
    with open(marker) as f:
        assert f.read().strip() == "0"
    os.unlink(marker)
