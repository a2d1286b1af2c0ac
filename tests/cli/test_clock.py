"""``emtui clock``: offsets against this machine, --set through command 1003, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.cli.common import ExitCode
from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings
from emtui.core.clock import read_clock
from emtui.sim.bus import SimulatedBus


def emtui(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMTUI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        input="",
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def bus() -> Iterator[SimulatedBus]:
    with SimulatedBus(ids=[1, 2, 3, 4], line_timing=False, seed=5) as sim:
        sim.start_tcp()
        yield sim


def _timedatectl(tmp_path: Path, answer: str) -> dict[str, str]:
    """A timedatectl that reports NTPSynchronized=answer."""
    program = tmp_path / f"timedatectl-{answer}"
    program.write_text(f"#!/bin/sh\necho {answer}\n")
    program.chmod(0o755)
    return {"EMTUI_TIMEDATECTL": str(program)}


def test_clock_reports_each_meter_offset(bus: SimulatedBus, tmp_path: Path) -> None:
    """--json: one entry per meter with the contract keys; the offsets are those of the
    simulated meters' clocks (each pump's clock is off by up to ±40 s)."""
    result = emtui(tmp_path, "clock", "--port", bus.urls[0], "--ids", "1-4", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    meters = json.loads(result.stdout)["meters"]
    assert [m["id"] for m in meters] == [1, 2, 3, 4]
    for m in meters:
        assert {"id", "meter_time", "pi_time", "offset_s", "set"} <= set(m)
        assert m["set"] is False
        assert abs(m["offset_s"]) <= 41
    assert len({round(m["offset_s"]) for m in meters}) > 1  # the meters differ


def test_clock_set_leaves_every_meter_within_a_second(bus: SimulatedBus, tmp_path: Path) -> None:
    """`clock --ids 1-4 --set --allow-writes --yes --force`: every meter's clock, read back
    from registers 1837-1843, is within 1 s of this machine's; four command blocks and four
    releases are audited."""
    state = tmp_path / "state"
    result = emtui(
        tmp_path, "clock", "--port", bus.urls[0], "--ids", "1-4", "--set", "--allow-writes",
        "--yes", "--force", "--json", "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == ExitCode.OK, result.stderr
    meters = json.loads(result.stdout)["meters"]
    assert all(m["set"] for m in meters)
    arbiter = BusArbiter(ConnectionSettings(bus.urls[0], parity="N", timeout=0.5), lock=False)
    with arbiter:
        for device_id in (1, 2, 3, 4):
            reading = read_clock(arbiter, device_id)
            assert reading.offset_s is not None
            assert abs(reading.offset_s) < 1.0, (device_id, reading)
    audit = [json.loads(x) for x in (state / "audit.log").read_text().splitlines()]
    assert [(a["id"], a["values"][0] if a["register"] == 5000 else "release") for a in audit] == [
        (1, 1003), (1, "release"), (2, 1003), (2, "release"),
        (3, 1003), (3, "release"), (4, 1003), (4, "release"),
    ]  # fmt: skip
    assert all(a["outcome"] == "ok" for a in audit)


def test_clock_set_is_refused_without_allow_writes(bus: SimulatedBus, tmp_path: Path) -> None:
    """--set without --allow-writes: exit 2, not one frame on the wire, one refused audit
    line per meter."""
    result = emtui(
        tmp_path, "clock", "--port", bus.urls[0], "--ids", "1-4", "--set", "--yes", "--force",
        "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "--allow-writes" in result.stderr
    assert bus.served() == []
    audit = [json.loads(x) for x in (tmp_path / "s" / "audit.log").read_text().splitlines()]
    assert [(a["id"], a["outcome"].startswith("refused")) for a in audit] == [
        (1, True), (2, True), (3, True), (4, True),
    ]  # fmt: skip


def test_clock_set_needs_ntp_or_force(bus: SimulatedBus, tmp_path: Path) -> None:
    """An unsynchronised clock (timedatectl says no): refused, exit 2, nothing on the wire;
    synchronised (yes): set without --force."""
    args = ["clock", "--port", bus.urls[0], "--ids", "2", "--set", "--allow-writes", "--yes"]
    args += ["--state-dir", str(tmp_path / "s")]
    refused = emtui(tmp_path, *args, env=_timedatectl(tmp_path, "no"))
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert "NTP" in refused.stderr and "--force" in refused.stderr
    assert bus.served() == []
    done = emtui(tmp_path, *args, "--json", env=_timedatectl(tmp_path, "yes"))
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["meters"][0]["set"] is True


def test_clock_set_with_the_semaphore_held_elsewhere(bus: SimulatedBus, tmp_path: Path) -> None:
    """Another master holds meter 3's semaphore: meter 3 is not set (its error names the
    other master), the others are, exit 5; no command block goes to meter 3."""
    bus.meters[3].commands.hold_for_another_master()
    result = emtui(
        tmp_path, "clock", "--port", bus.urls[0], "--ids", "1-4", "--set", "--allow-writes",
        "--yes", "--force", "--json", "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert result.returncode == ExitCode.DEVICE, result.stderr
    meters = {m["id"]: m for m in json.loads(result.stdout)["meters"]}
    assert [i for i, m in meters.items() if m["set"]] == [1, 2, 4]
    assert "another master" in meters[3]["error"]
    assert not [f for f in bus.served() if f.device_id == 3 and f.function == 16]


def test_clock_drift(bus: SimulatedBus, tmp_path: Path) -> None:
    """--drift S reads twice S apart and reports a drift with its resolution."""
    started = time.monotonic()
    result = emtui(tmp_path, "clock", "--port", bus.urls[0], "--ids", "1", "--drift", "1", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    assert time.monotonic() - started >= 1
    (meter,) = json.loads(result.stdout)["meters"]
    assert abs(meter["drift_s_per_day"]) <= meter["drift_resolution_s_per_day"] * 2
