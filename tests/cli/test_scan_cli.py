"""``emtui scan`` on the simulator: the slow-device hint in the report (issue 9)."""

from __future__ import annotations

import json
import subprocess

from helpers import EMTUI


def test_scan_reports_that_a_slow_device_may_have_been_missed() -> None:
    """A scan that took ids for empty after the learned short timeout says so — in --json
    (slow_hint) and on stderr — naming --expect and --timeout as the ways to look."""
    sim = subprocess.Popen(
        [*EMTUI, "sim", "--pty", "--ids", "1-2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().strip()
        base = [*EMTUI, "scan", "--port", port, "--parity", "N", "--ids", "1-12"]
        out = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=60)
        doc = json.loads(out.stdout)
        assert [d["id"] for d in doc["devices"]] == [1, 2]
        assert "--expect" in doc["slow_hint"] and "--timeout" in doc["slow_hint"]
        human = subprocess.run(base, capture_output=True, text=True, timeout=60)
        assert "note: ids silent for" in human.stderr
        stopped = subprocess.run(
            [*base, "--expect", "1-2", "--json"], capture_output=True, text=True, timeout=60
        )
        assert json.loads(stopped.stdout)["slow_hint"] is None
    finally:
        sim.terminate()
        sim.wait()
