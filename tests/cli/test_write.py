"""``emtui write``: refused without --allow-writes, the frame shown, every attempt audited."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.cli.common import ExitCode
from emtui.core.bus.writes import WriteRequest, describe_frame, encode_values
from emtui.sim.bus import SimulatedBus


def emtui(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMTUI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        input=stdin if stdin is not None else "",
    )


@pytest.fixture
def bus() -> Iterator[SimulatedBus]:
    with SimulatedBus(ids=[1, 2], line_timing=False, seed=7) as sim:
        sim.start_tcp()
        yield sim


def _audit(state: Path) -> list[dict[str, object]]:
    path = state / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_frame_fields_are_the_frame() -> None:
    """The named fields, joined, are exactly the bytes sent; FC16 at register 5000 names each
    register and ends with the CRC."""
    request = WriteRequest(1, 16, 4999, (5000, 1234, 1, 0, 7, 2, 0, 0))
    fields = describe_frame(request)
    assert b"".join(f.data for f in fields) == request.frame()
    names = [f.name for f in fields]
    assert names[:5] == ["slave id", "function", "address", "quantity", "byte count"]
    assert names[5] == "register 5000" and names[-2] == "register 5007"
    assert names[-1] == "CRC"


def test_values_are_encoded_in_the_order_asked() -> None:
    """float32 50.0 is 0x4248 0x0000 big-endian and swapped for CDAB; int16 -1 is 0xFFFF;
    out-of-range values are refused."""
    assert encode_values(["50"], "float32", "ABCD") == [0x4248, 0]
    assert encode_values(["50"], "float32", "CDAB") == [0, 0x4248]
    assert encode_values(["-1"], "int16") == [0xFFFF]
    with pytest.raises(ValueError):
        encode_values(["70000"], "uint16")


def test_write_without_allow_writes_exits_2_and_sends_nothing(
    bus: SimulatedBus, tmp_path: Path
) -> None:
    """Without --allow-writes: exit 2, one line, no frame at all on the simulated wire (its
    served log stays empty), and the refused attempt is in the audit log."""
    state = tmp_path / "state"
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "1", "--register", "5681",
        "--value", "1", "--yes", "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "--allow-writes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert bus.served() == []
    (line,) = _audit(state)
    assert str(line["outcome"]).startswith("refused")


def test_write_to_id_0_is_refused(bus: SimulatedBus, tmp_path: Path) -> None:
    """id 0 (broadcast) is never written, even with --allow-writes --yes."""
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "0", "--register", "5681",
        "--value", "1", "--allow-writes", "--yes", "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE
    assert "id 0" in result.stderr
    assert bus.served() == []


def test_write_without_confirmation_is_refused(bus: SimulatedBus, tmp_path: Path) -> None:
    """--allow-writes without --yes and no terminal to answer: the frame is shown, nothing is
    sent, exit 2."""
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "1", "--register", "5681",
        "--value", "1", "--allow-writes", "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "frame: 01 10 16 30" in result.stdout
    assert bus.served() == []


def test_write_is_sent_shown_and_audited(bus: SimulatedBus, tmp_path: Path) -> None:
    """A write to the command area with --allow-writes --yes: the frame is shown field by
    field, the simulated meter stores the value, the audit line has every field."""
    state = tmp_path / "state"
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "2", "--register", "5253",
        "--value", "50.5", "--type", "float32", "--allow-writes", "--yes",
        "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == ExitCode.OK, result.stderr
    request = WriteRequest(2, 16, 5252, tuple(encode_values(["50.5"], "float32")))
    assert request.frame().hex(" ").upper() in result.stdout
    assert "register 5253" in result.stdout and "CRC" in result.stdout
    writes = [f for f in bus.served() if f.function == 16]
    assert [(f.device_id, f.address, f.registers) for f in writes] == [(2, 5252, request.values)]
    (line,) = _audit(state)
    assert line["outcome"] == "ok"
    assert line["id"] == 2 and line["function"] == 16 and line["address"] == 5252
    assert line["values"] == list(request.values)
    assert line["frame"] == request.frame().hex(" ").upper()
    assert line["port"] == bus.urls[0]
    assert line["user"] and line["time"]


def test_a_refused_register_is_exit_5_and_audited(bus: SimulatedBus, tmp_path: Path) -> None:
    """A setup register written directly answers exception 02: exit 5, the hint names the
    command interface, the audit line says exception:02. FC05 (no coils on the NG) is 01."""
    state = tmp_path / "state"
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "1", "--register", "6501",
        "--value", "9", "--allow-writes", "--yes", "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == ExitCode.DEVICE, result.stderr
    assert "exception 02" in result.stderr and "emtui setup" in result.stderr
    coil = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "1", "--register", "1",
        "--value", "on", "--function", "5", "--allow-writes", "--yes",
        "--state-dir", str(state),
    )  # fmt: skip
    assert coil.returncode == ExitCode.DEVICE
    assert [line["outcome"] for line in _audit(state)] == ["exception:02", "exception:01"]
    assert _audit(state)[1]["function"] == 5


def test_write_to_an_absent_id_is_no_answer(bus: SimulatedBus, tmp_path: Path) -> None:
    """Nobody at id 9: exit 4, 'did not acknowledge', audit outcome timeout."""
    state = tmp_path / "state"
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "9", "--register", "5681",
        "--value", "1", "--allow-writes", "--yes", "--state-dir", str(state), "--timeout", "0.2",
    )  # fmt: skip
    assert result.returncode == ExitCode.NO_ANSWER, result.stderr
    assert [line["outcome"] for line in _audit(state)] == ["timeout"]


@pytest.mark.parametrize(
    "command",
    [
        ["write", "--id", "1", "--register", "5681", "--value", "1"],
        ["setup", "--id", "1", "--new-id", "5"],
        ["clock", "--ids", "1", "--set", "--force"],
    ],
    ids=["write", "setup", "clock"],
)
def test_a_logger_holding_the_port_is_exit_3(
    bus: SimulatedBus, tmp_path: Path, command: list[str]
) -> None:
    """A logger polling the same connection: write, setup and clock --set exit 3 naming its
    PID and the service advice; nothing of theirs reaches the wire (no FC16 at all)."""
    logger = subprocess.Popen(
        [*EMTUI, "--log", "--port", bus.urls[0], "--ids", "1", "--interval", "0.2",
         "--state-dir", str(tmp_path / "logstate"), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if any(f.device_id == 1 for f in bus.served()):
                break
            subprocess.run(["sleep", "0.1"], check=True)
        result = emtui(
            tmp_path, *command, "--port", bus.urls[0], "--allow-writes", "--yes",
            "--state-dir", str(tmp_path / "s"),
        )  # fmt: skip
    finally:
        logger.terminate()
        logger.wait(timeout=10)
    assert result.returncode == ExitCode.CONNECTION, result.stderr
    assert f"PID {logger.pid}" in result.stderr
    assert "systemctl stop emtui" in result.stderr
    assert not [f for f in bus.served() if f.function == 16]
    if command[0] == "write":
        (line,) = _audit(tmp_path / "s")
        assert str(line["outcome"]).startswith("error:")
        assert f"PID {logger.pid}" in str(line["outcome"])


def test_an_unwritable_audit_log_sends_nothing(bus: SimulatedBus, tmp_path: Path) -> None:
    """A state dir that cannot hold the audit log (a file in its place): the write is not
    sent, exit 9."""
    state = tmp_path / "not-a-dir"
    state.write_text("")
    result = emtui(
        tmp_path, "write", "--port", bus.urls[0], "--id", "1", "--register", "5681",
        "--value", "1", "--allow-writes", "--yes", "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == ExitCode.STORAGE, result.stderr
    assert "nothing was sent" in result.stderr
    assert bus.served() == []
