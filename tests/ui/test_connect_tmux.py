"""End to end on a real terminal: ``emtui`` with no port opens the connection dialog; a typed
``socket://`` port of a running simulator starts the app on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.sim.bus import SimulatedBus


@pytest.fixture
def server() -> Iterator[str]:
    """A private tmux server (socket name); skips without tmux, except in CI."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required in CI (apt-get install tmux)")
        pytest.skip("tmux not installed")
    name = f"emtui-connect-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)


def tmux(server: str, *args: str) -> str:
    done = subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True)
    return done.stdout


def wait_for(server: str, predicate: Callable[[str], bool], timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux(server, "capture-pane", "-p", "-t", "app")
        if predicate(screen):
            return True, screen
        time.sleep(0.1)
    return False, screen


@pytest.mark.slow
def test_no_port_asks_then_opens_the_typed_socket_port(server: str, tmp_path: Path) -> None:
    """At 80×24: the dialog says no port is configured and offers ids 1-4; tab, the
    simulator's socket:// port typed, enter: the overview shows its four meters live; q
    quits with exit 0."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    marker = tmp_path / "exit"
    with SimulatedBus(ids=(1, 2, 3, 4), running=True) as sim:
        port = sim.start_tcp("127.0.0.1", 0, framing="rtu")
        command = (
            f"{EMTUI[0]} --config {config} --state-dir {tmp_path / 'state'}; "
            f"echo $? > {marker}; sleep 30"
        )
        subprocess.run(
            ["tmux", "-L", server, "new-session", "-d", "-s", "app", "-x", "80", "-y", "24",
             command],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )  # fmt: skip
        ok, screen = wait_for(server, lambda s: "No port configured" in s, 15.0)
        assert ok, f"no connection dialog:\n{screen}"
        assert "ids 1-4" in screen and "baud 19200" in screen
        tmux(server, "send-keys", "-t", "app", "Tab")
        time.sleep(0.3)
        tmux(server, "send-keys", "-t", "app", "End")
        tmux(server, "send-keys", "-t", "app", "C-u")
        time.sleep(0.3)
        tmux(server, "send-keys", "-t", "app", "-l", port)
        ok, screen = wait_for(server, lambda s: f"port {port}" in s, 5.0)
        assert ok, f"the port was not typed:\n{screen}"
        tmux(server, "send-keys", "-t", "app", "Enter")
        ok, screen = wait_for(server, lambda s: s.count(" ok ") >= 4 and "meter 4" in s, 15.0)
        assert ok, f"the app did not show the four meters:\n{screen}"
        assert port in screen  # the header names the connection
        tmux(server, "send-keys", "-t", "app", "q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not marker.exists():
            time.sleep(0.1)
    assert marker.exists() and marker.read_text().strip() == "0"
