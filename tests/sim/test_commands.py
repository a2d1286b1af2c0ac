"""The simulated meter's command interface behaves as the Build facts describe, seen from the
tool's own client (emtui.core.bus.command) over the simulated wire."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.command import CommandError, CommandInterface, command_request
from emtui.core.bus.link import ConnectionSettings, Outcome
from emtui.core.bus.writes import AuditLog, WriteRequest
from emtui.core.clock import clock_parameters, read_clock
from emtui.sim import commands as simcmd
from emtui.sim.bus import SimulatedBus


@pytest.fixture
def line() -> Iterator[tuple[SimulatedBus, BusArbiter]]:
    with SimulatedBus(ids=[1, 2], line_timing=False, seed=11) as bus:
        url = bus.start_tcp()
        arbiter = BusArbiter(ConnectionSettings(url, parity="N", timeout=0.3), lock=False)
        with arbiter:
            yield bus, arbiter


def _interface(arbiter: BusArbiter, tmp_path: Path) -> CommandInterface:
    return CommandInterface(arbiter, AuditLog(tmp_path))


def test_semaphore_is_handed_out_once_until_released(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """5680 gives a non-zero semaphore; while held it reads 0 (the client says 'another
    master'); written back it is free again."""
    _bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    semaphore = ci.take_semaphore(1)
    assert semaphore != 0
    with pytest.raises(CommandError, match="another master"):
        ci.take_semaphore(1)
    assert ci.release(1, semaphore).ok
    assert ci.take_semaphore(1) != 0


def test_semaphore_times_out(line: tuple[SimulatedBus, BusArbiter], tmp_path: Path) -> None:
    """A semaphore held by another master is freed after the timeout without activity."""
    bus, arbiter = line
    now = [1000.0]
    meter = bus.meters[1]
    meter.commands.monotonic = lambda: now[0]
    meter.commands.hold_for_another_master()
    ci = _interface(arbiter, tmp_path)
    with pytest.raises(CommandError, match="another master"):
        ci.take_semaphore(1)
    now[0] += simcmd.SEMAPHORE_TIMEOUT + 1
    assert ci.take_semaphore(1) != 0


def test_set_clock_is_done_and_read_back(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """Command 1003: status reads 0 while busy, then 1003 with result 0; the clock registers
    read the time set (and keep ticking)."""
    _bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    semaphore = ci.take_semaphore(2)
    target = _dt.datetime(2026, 11, 25, 14, 0, 0)
    result = ci.send(command_request(2, 1003, semaphore, clock_parameters(target)))
    assert result.ok
    busy = ci.read(2, 5125, 2)
    assert busy.registers == [0, 0]  # received, not done yet
    done = ci.wait_done(2, 1003)
    assert done.ok
    reading = read_clock(arbiter, 2)
    assert reading.meter_time is not None
    assert 0 <= (reading.meter_time - target).total_seconds() < 2
    ci.release(2, semaphore)


def test_malformed_and_wrong_semaphore_commands_are_rejected(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """Too few parameters: result MALFORMED; a wrong semaphore: BAD_SEMAPHORE; a bad month:
    BAD_PARAMETER; an unknown command: UNKNOWN. The clock is not changed by any."""
    bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    semaphore = ci.take_semaphore(1)
    cases = [
        (command_request(1, 1003, semaphore, [2026, 11]), simcmd.RESULT_MALFORMED),
        (
            command_request(1, 1003, semaphore ^ 0x5A5A, [2026, 11, 25, 14, 0, 0, 0]),
            simcmd.RESULT_BAD_SEMAPHORE,
        ),
        (
            command_request(1, 1003, semaphore, [2026, 13, 25, 14, 0, 0, 0]),
            simcmd.RESULT_BAD_PARAMETER,
        ),
        (command_request(1, 4321, semaphore, [0]), simcmd.RESULT_UNKNOWN_COMMAND),
    ]
    for request, code in cases:
        assert ci.send(request).ok  # the write itself is acknowledged
        done = ci.wait_done(1, request.values[0])
        if code == simcmd.RESULT_BAD_SEMAPHORE:
            assert done.result == code
        else:
            assert done.done and done.result == code
    assert bus.meters[1].clock_offset is None
    ci.release(1, semaphore)


def test_communications_setup_moves_the_meter_after_its_reply(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """Command 5000 to id 1 (new address 7, 9600, odd): the write is acknowledged from id 1;
    then id 1 is silent, id 7 answers, its status says done, its communications registers and
    its state say 7 / 9600 / odd."""
    bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    semaphore = ci.take_semaphore(1)
    result = ci.send(command_request(1, 5000, semaphore, [1, 0, 7, 1, 1, 0]))
    assert result.ok and result.reply is not None
    assert result.reply.received[0] == 1  # the reply came from the old address
    assert read_clock(arbiter, 1).status == "timeout"
    assert ci.wait_done(7, 5000).ok
    assert ci.read(7, 6500, 4).registers == [0, 7, 1, 1]
    meter = bus.meters[7]
    assert (meter.device_id, meter.baud, meter.parity) == (7, 9600, "O")
    assert 1 not in bus.meters
    assert ci.release(7, semaphore).ok


def test_communications_setup_with_bad_codes_changes_nothing(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """A baud code 9 (no such code) is rejected: the meter stays at id 1."""
    bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    semaphore = ci.take_semaphore(1)
    assert ci.send(command_request(1, 5000, semaphore, [1, 0, 7, 9, 0, 0])).ok
    done = ci.wait_done(1, 5000)
    assert done.done and done.result == simcmd.RESULT_BAD_PARAMETER
    assert 1 in bus.meters and 7 not in bus.meters
    assert ci.read(1, 6501).outcome is Outcome.OK


def test_unprotected_interface_ignores_the_semaphore(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """Command 1003 at 5250 (the unprotected interface) works without a semaphore and reports
    at 5375/5376; a command the vendor does not allow there (1008) is rejected."""
    _bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    target = _dt.datetime(2027, 1, 2, 3, 4, 5)
    clock = WriteRequest(1, 16, 5249, (1003, 0, *clock_parameters(target)))
    assert ci.send(clock).ok
    time.sleep(0.1)
    assert ci.read(1, 5375, 2).registers == [1003, 0]
    reading = read_clock(arbiter, 1)
    assert reading.meter_time is not None and reading.meter_time.year == 2027
    assert ci.send(WriteRequest(1, 16, 5249, (1008, 0, 65))).ok
    time.sleep(0.1)
    assert ci.read(1, 5375, 2).registers == [1008, simcmd.RESULT_UNKNOWN_COMMAND]


def test_parameters_without_their_command_are_malformed(
    line: tuple[SimulatedBus, BusArbiter], tmp_path: Path
) -> None:
    """A block that does not start at the command register (5002 alone) is not a command:
    result MALFORMED, nothing executed."""
    bus, arbiter = line
    ci = _interface(arbiter, tmp_path)
    assert ci.send(WriteRequest(1, 16, 5001, (7, 2, 0))).ok
    time.sleep(0.1)
    assert ci.read(1, 5126).registers == [simcmd.RESULT_MALFORMED]
    assert bus.meters[1].commands.executed == []
