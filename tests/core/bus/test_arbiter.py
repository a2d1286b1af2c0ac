"""The bus arbiter: priorities, learned timeouts, retries, backoff, statistics (design §3).

These tests drive the arbiter with a scripted link, so they check its decisions, not timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from pymodbus.pdu import ModbusPDU

from emtui.core.bus.arbiter import ABSENT_FIRST, INITIAL_MARGIN, BusArbiter, Priority
from emtui.core.bus.link import ConnectionSettings, Link, Outcome, Reply


class ScriptedLink(Link):
    """A link whose replies come from a function of (device id, address, timeout)."""

    def __init__(self, answer: Callable[[int, int, float], Reply]) -> None:
        self.settings = ConnectionSettings(port="socket://scripted:0")
        self.answer = answer
        self.calls: list[tuple[int, int, float]] = []
        self.gate = threading.Event()
        self.gate.set()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def transact(self, request: ModbusPDU, timeout: float) -> Reply:
        self.gate.wait(5)
        self.calls.append((request.dev_id, request.address, timeout))
        return self.answer(request.dev_id, request.address, timeout)


def ok_reply(rtt: float = 0.030) -> Reply:
    return Reply(Outcome.OK, registers=[0], rtt=rtt, received=b"x" * 7)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_priorities_order_the_queue() -> None:
    """Queued requests go out writes first, then polls, scans, interactive reads."""
    link = ScriptedLink(lambda dev, addr, t: ok_reply())
    arbiter = BusArbiter(link.settings, link=link).start()
    try:
        link.gate.clear()
        first = arbiter.read_registers  # occupy the bus thread with a blocked request
        blocker = threading.Thread(target=first, args=(9, 0, 1))
        blocker.start()
        while not arbiter._queue and len(link.calls) == 0:
            pass
        futures = []
        for prio, addr in [
            (Priority.INTERACTIVE, 4),
            (Priority.SCAN, 3),
            (Priority.POLL, 2),
            (Priority.WRITE, 1),
        ]:
            from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

            req = ReadHoldingRegistersRequest(address=addr, count=1)
            futures.append(arbiter.submit(1, req, priority=prio))
        link.gate.set()
        for f in futures:
            f.result(5)
        blocker.join()
        assert [addr for dev, addr, _ in link.calls if dev == 1] == [1, 2, 3, 4]
    finally:
        arbiter.stop()


def test_timeout_is_wire_time_plus_learned_margin() -> None:
    """Before any reply the margin is generous; afterwards it follows the measured turnaround."""
    link = ScriptedLink(lambda dev, addr, t: ok_reply(rtt=0.030))
    settings = ConnectionSettings(port="socket://x:1", baud=19200)
    with BusArbiter(settings, link=link) as arbiter:
        wire = arbiter.wire_time(8, 7)
        assert arbiter.timeout_for(1, 8, 7) == pytest.approx(wire + INITIAL_MARGIN)
        for _ in range(5):
            arbiter.read_registers(1, 0, 1)
        turnaround = 0.030 - wire
        assert arbiter.margin(1) == pytest.approx(max(0.025, 2 * turnaround))
        # a meter never heard from borrows the bus's learned margin
        assert arbiter.margin(2) == pytest.approx(arbiter.margin(1))
        assert arbiter.timeout_for(1, 8, 7) < 0.1


def test_fixed_timeout_setting_wins() -> None:
    """--timeout S replaces the learned timeout."""
    link = ScriptedLink(lambda dev, addr, t: ok_reply())
    settings = ConnectionSettings(port="socket://x:1", timeout=0.4)
    with BusArbiter(settings, link=link) as arbiter:
        arbiter.read_registers(1, 0, 1)
    assert link.calls[0][2] == 0.4


def test_retry_once_then_report_timeout() -> None:
    """A silent meter costs 1 + retries transactions and the reply says TIMEOUT."""
    link = ScriptedLink(lambda dev, addr, t: Reply(Outcome.TIMEOUT, rtt=t))
    with BusArbiter(ConnectionSettings(port="socket://x:1", retries=1), link=link) as arbiter:
        reply = arbiter.read_registers(3, 0, 1)
        assert reply.outcome is Outcome.TIMEOUT and reply.attempts == 2
        assert arbiter.device_stats(3).timeouts == 2
        assert arbiter.device_stats(3).requests == 2


def test_exception_reply_is_an_answer_not_a_failure() -> None:
    """An exception is not retried, counted by code, and does not back the meter off."""
    link = ScriptedLink(lambda dev, addr, t: Reply(Outcome.EXCEPTION, exception_code=2, rtt=0.02))
    with BusArbiter(ConnectionSettings(port="socket://x:1"), link=link) as arbiter:
        for _ in range(3):
            assert arbiter.read_registers(1, 0, 1).attempts == 1
        assert arbiter.device_stats(1).exceptions == {2: 3}
        assert not arbiter.backed_off(1)


def test_dead_meter_is_backed_off_and_recovers() -> None:
    """A meter that answered and then died: each poll still gets its retry, after repeated
    failures pollers skip it without touching the wire until the backoff expires; a reply
    resets it."""
    alive = {"yes": True}
    clock = Clock()

    def answer(dev: int, addr: int, t: float) -> Reply:
        return ok_reply() if alive["yes"] else Reply(Outcome.TIMEOUT, rtt=t)

    link = ScriptedLink(answer)
    with BusArbiter(ConnectionSettings(port="socket://x:1"), link=link, clock=clock) as arb:
        assert arb.read_registers(4, 0, 1, respect_backoff=True).ok
        alive["yes"] = False
        assert arb.read_registers(4, 0, 1, respect_backoff=True).attempts == 2
        assert not arb.backed_off(4)
        arb.read_registers(4, 0, 1, respect_backoff=True)
        assert arb.backed_off(4)
        sent = len(link.calls)
        skipped = arb.read_registers(4, 0, 1, respect_backoff=True)
        assert skipped.outcome is Outcome.SKIPPED and len(link.calls) == sent
        # an explicit read still goes to the wire, with its retry
        arb.read_registers(4, 0, 1)
        assert len(link.calls) == sent + 2
        clock.now += 60
        alive["yes"] = True
        assert arb.read_registers(4, 0, 1, respect_backoff=True).ok
        assert not arb.backed_off(4)


def test_never_heard_id_is_absent_from_its_first_miss() -> None:
    """Once meters answer on the bus, an id never heard from costs one request without retry
    and is backed off at once, for long (ABSENT_FIRST), while a meter that answered before
    still gets its retry and a short backoff only after repeated failures."""
    clock = Clock()
    present = {1, 2}

    def answer(dev: int, addr: int, t: float) -> Reply:
        return ok_reply() if dev in present else Reply(Outcome.TIMEOUT, rtt=t)

    link = ScriptedLink(answer)
    with BusArbiter(ConnectionSettings(port="socket://x:1"), link=link, clock=clock) as arb:
        assert arb.read_registers(1, 0, 1, respect_backoff=True).ok
        assert arb.read_registers(2, 0, 1, respect_backoff=True).ok
        miss = arb.read_registers(9, 0, 1, respect_backoff=True)
        assert miss.outcome is Outcome.TIMEOUT and miss.attempts == 1
        assert arb.backed_off(9)
        clock.now += ABSENT_FIRST - 1
        assert arb.read_registers(9, 0, 1, respect_backoff=True).outcome is Outcome.SKIPPED
        clock.now += 2
        assert not arb.backed_off(9)
        present.discard(2)
        assert arb.read_registers(2, 0, 1, respect_backoff=True).attempts == 2
        assert not arb.backed_off(2)
    assert [dev for dev, _, _ in link.calls].count(9) == 1


def test_crc_and_wrong_id_are_counted_apart_from_silence() -> None:
    """Corrupted frames, frames from another id and silence are separate counters."""
    outcomes = iter([Outcome.CRC, Outcome.WRONG_ID, Outcome.TIMEOUT])
    link = ScriptedLink(lambda dev, addr, t: Reply(next(outcomes), rtt=0.01))
    settings = ConnectionSettings(port="socket://x:1", retries=2)
    with BusArbiter(settings, link=link) as arbiter:
        arbiter.read_registers(1, 0, 1)
        stats = arbiter.device_stats(1)
    assert (stats.crc_errors, stats.wrong_id, stats.timeouts) == (1, 1, 1)
    assert stats.as_dict()["requests"] == 3


def test_polling_pause_blocks_pollers_until_released() -> None:
    """A scan pauses polling; the gate reopens when the last pause ends."""
    link = ScriptedLink(lambda dev, addr, t: ok_reply())
    with BusArbiter(link.settings, link=link) as arbiter:
        assert arbiter.polling_allowed
        with arbiter.polling_paused():
            assert not arbiter.wait_for_polling(0.01)
            with arbiter.polling_paused():
                pass
            assert not arbiter.polling_allowed
        assert arbiter.wait_for_polling(0.01)


def test_gateway_no_target_exceptions_are_not_devices() -> None:
    """Behind a Modbus TCP gateway, exception 0B (target failed to respond) and 0A (path
    unavailable) for an id mean nothing is there; any other exception is a device."""
    from emtui.core.bus.scanner import Scanner
    from emtui.core.maps.registers import load_map

    codes = {1: 0x0B, 2: 0x0A, 3: 0x02}
    link = ScriptedLink(
        lambda dev, addr, t: Reply(Outcome.EXCEPTION, exception_code=codes[dev], rtt=0.01)
    )
    with BusArbiter(link.settings, link=link) as arbiter:
        report = Scanner(arbiter, load_map("em6400ng"), identify=False).scan([1, 2, 3])
    assert [(d.id, d.exception_code) for d in report.devices] == [(3, 2)]
