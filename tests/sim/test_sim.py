"""The simulator: pump physics, the meter's answers, and the bus on the real RTU path.

Bus tests talk to the simulator the way the tool and third-party clients do: pyserial over a
pty opened with parity N, pyserial's ``socket://`` URL, or pymodbus' clients; frames are built
and checked with pymodbus' framer (CRC included), never by hand.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections.abc import Iterator, Sequence

import pytest
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    WriteMultipleRegistersRequest,
)

from emtui.core.maps.codec import decode
from emtui.core.maps.registers import RegisterMap, load_map
from emtui.sim.bus import Faults, SimulatedBus
from emtui.sim.meter import ModbusExceptionReply, SimulatedMeter
from emtui.sim.pump import DutyCycle, PumpModel

CHAR_19200_11 = 11 / 19200
FREQUENCY_ADDRESS = 3109  # register 3110
T0 = 1_795_600_000.0  # 2026-11-25, a fixed start for the injected clocks


class FakeClock:
    """An injectable clock a test steps by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def ng() -> RegisterMap:
    return load_map("em6400ng")


@pytest.fixture
def bus() -> Iterator[SimulatedBus]:
    """The reference site (ids 1-4) on a pty, paced at 19200 baud, 11 bits, 20 ms."""
    with SimulatedBus(seed=1) as sim:
        yield sim


@pytest.fixture
def fast_bus() -> Iterator[SimulatedBus]:
    """The reference site with line timing off (for tests that do not measure time)."""
    with SimulatedBus(seed=1, line_timing=False) as sim:
        yield sim


def open_pty(path: str, timeout: float = 0.5) -> serial.Serial:
    return serial.Serial(path, 19200, parity=serial.PARITY_NONE, timeout=timeout)


_FRAMER = FramerRTU(DecodePDU(is_server=False))


def read_request(device_id: int, address: int, count: int) -> bytes:
    return _FRAMER.buildFrame(
        ReadHoldingRegistersRequest(address=address, count=count, dev_id=device_id)
    )


def raw_frame(device_id: int, pdu: bytes) -> bytes:
    """An RTU frame around an arbitrary PDU (pymodbus' request classes refuse bad counts)."""
    return _FRAMER.encode(pdu, device_id, 0)


def transact(
    port: serial.Serial, request: bytes, expect: int, timeout: float = 0.5
) -> tuple[bytes, float]:
    """Send ``request``; read ``expect`` bytes (5 for an exception reply) or until ``timeout``."""
    port.reset_input_buffer()
    start = time.perf_counter()
    port.write(request)
    deadline = start + timeout
    data = b""
    while len(data) < expect and time.perf_counter() < deadline:
        want = expect if len(data) >= 5 and not data[1] & 0x80 else 5
        if len(data) >= 5 and data[1] & 0x80:
            break
        port.timeout = max(deadline - time.perf_counter(), 0.001)
        data += port.read(want - len(data))
    return data, time.perf_counter() - start


def parse_reply(data: bytes) -> ModbusPDU | None:
    """The response PDU in ``data`` if its CRC is good, else None."""
    _used, dev_id, _tid, pdu = _FRAMER.decode(data)
    if not pdu:
        return None
    decoded = DecodePDU(is_server=False).decode(pdu)
    if decoded is not None:
        decoded.dev_id = dev_id
    return decoded


def num(value: object) -> float:
    """A served quantity that must be a number."""
    assert isinstance(value, int | float), value
    return float(value)


def float32_be(registers: Sequence[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", registers[0], registers[1]))[0])


# ---------------------------------------------------------------------------------------------
# the bus over a pty


def test_frequency_over_pty_with_pymodbus_client(bus: SimulatedBus) -> None:
    """pymodbus' serial client on the pty (parity N) reads register 3110 as ~50 Hz, and the
    served log holds exactly the registers the client decoded."""
    path = bus.start_pty()
    client = ModbusSerialClient(path, baudrate=19200, parity="N", timeout=1, retries=0)
    assert client.connect()
    try:
        rr = client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=1)
    finally:
        client.close()
    assert not rr.isError()
    hz = client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32)
    assert isinstance(hz, float)
    assert 49.90 <= hz <= 50.05
    served = bus.served()[-1]
    assert (served.device_id, served.function, served.address, served.count) == (1, 3, 3109, 2)
    assert list(served.registers) == rr.registers
    assert served.outcome == "reply"


def test_absent_id_gets_no_bytes_at_all(bus: SimulatedBus) -> None:
    """An id with no meter, and a meter made absent, send nothing: not one byte in 200 ms."""
    path = bus.start_pty()
    bus.set_fault(2, absent=True)
    with open_pty(path) as port:
        for device_id in (9, 2, 247):
            data, _ = transact(port, read_request(device_id, FREQUENCY_ADDRESS, 2), 9, timeout=0.2)
            assert data == b""
        data, _ = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
        assert parse_reply(data) is not None
    counters = bus.counters()
    assert counters.dropped[9] == counters.dropped[2] == counters.dropped[247] == 1
    assert counters.replies[1] == 1 and counters.replies[9] == 0


def test_line_pacing_of_a_125_register_read(bus: SimulatedBus) -> None:
    """At 19200 baud, 11 bits and 20 ms turnaround a 125-register read takes at least its wire
    time (8 + 5 + 250 characters x 0.573 ms + 20 ms) and not 30 ms more."""
    path = bus.start_pty()
    expected = (8 + 5 + 250) * CHAR_19200_11 + 0.020
    assert bus.reply_time(8, 255) == pytest.approx(expected)
    times = []
    with open_pty(path) as port:
        for _ in range(3):
            data, rtt = transact(port, read_request(3, 2999, 125), 255, timeout=1.0)
            assert len(data) == 255 and parse_reply(data) is not None
            times.append(rtt)
    assert min(times) >= expected
    assert sorted(times)[1] < expected + 0.030


def test_line_pacing_of_a_short_read_and_a_silent_id(bus: SimulatedBus) -> None:
    """A 2-register read takes (8 + 9) characters + turnaround; a request to an absent id only
    occupies the line for its own wire time, so the next read is not delayed by a reply."""
    path = bus.start_pty()
    expected = (8 + 9) * CHAR_19200_11 + 0.020
    with open_pty(path) as port:
        transact(port, read_request(5, FREQUENCY_ADDRESS, 2), 9, timeout=0.05)
        data, rtt = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
    assert len(data) == 9
    assert expected <= rtt < expected + 0.030


def test_line_timing_off_is_fast(fast_bus: SimulatedBus) -> None:
    """With line_timing=False a 125-register read answers in a few milliseconds."""
    path = fast_bus.start_pty()
    with open_pty(path) as port:
        rtts = [transact(port, read_request(1, 2999, 125), 255)[1] for _ in range(3)]
    assert min(rtts) < 0.015


def test_exception_only_ids(ng: RegisterMap) -> None:
    """An id set to answer only with exceptions returns an exception PDU with that code, for
    any request; a meter built with force_exception does the same."""
    pump = PumpModel(15, seed=1, frozen=True)
    meters = {
        1: SimulatedMeter(1, ng, pump),
        2: SimulatedMeter(2, ng, pump, force_exception=1),
    }
    with SimulatedBus(meters, line_timing=False) as sim:
        sim.set_fault(1, exception=4)
        client = ModbusSerialClient(sim.start_pty(), parity="N", timeout=1, retries=0)
        assert client.connect()
        try:
            rr = client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=1)
            assert rr.isError() and isinstance(rr, ExceptionResponse)
            assert rr.exception_code == 4
            rr = client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=2)
            assert isinstance(rr, ExceptionResponse) and rr.exception_code == 1
            sim.clear_faults(1)
            rr = client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=1)
            assert not rr.isError()
        finally:
            client.close()
    assert sim.counters().exceptions[1] == 1


def test_gaps_read_as_na_or_exception_02(fast_bus: SimulatedBus) -> None:
    """Registers 3034-3035 are unmapped: by default they read 0xFFFF inside a read of mapped
    ones, a read of only unmapped registers answers 02, and with strict gaps any unmapped
    register in the read answers 02."""
    path = fast_bus.start_pty()
    with open_pty(path) as port:
        data, _ = transact(port, read_request(1, 3031, 6), 17)  # registers 3032-3037
        reply = parse_reply(data)
        assert reply is not None and not reply.isError()
        assert list(reply.registers[2:4]) == [0xFFFF, 0xFFFF]
        data, _ = transact(port, read_request(1, 3033, 2), 9)
        reply = parse_reply(data)
        assert isinstance(reply, ExceptionResponse) and reply.exception_code == 2
        fast_bus.set_fault(None, strict_gaps=True)
        data, _ = transact(port, read_request(1, 3031, 6), 17)
        reply = parse_reply(data)
        assert isinstance(reply, ExceptionResponse) and reply.exception_code == 2
        data, _ = transact(port, read_request(1, 3027, 4), 13)  # fully mapped: still fine
        reply = parse_reply(data)
        assert reply is not None and not reply.isError()


def test_bad_counts_answer_exception_03(fast_bus: SimulatedBus) -> None:
    """A read of 0 registers or of more than the block size (125) answers exception 03."""
    path = fast_bus.start_pty()
    with open_pty(path) as port:
        for count in (0, 126):
            request = raw_frame(1, bytes([3]) + struct.pack(">HH", FREQUENCY_ADDRESS, count))
            data, _ = transact(port, request, 5)
            reply = parse_reply(data)
            assert isinstance(reply, ExceptionResponse) and reply.exception_code == 3


def test_writes_only_to_the_command_interface(fast_bus: SimulatedBus) -> None:
    """FC16 to the command block (register 5000, wire 4999) is accepted and stored; FC16 to a
    setup register (RWC, e.g. 2014) answers exception 02."""
    path = fast_bus.start_pty()
    block = [1003, 7, 2026, 11, 25, 14, 0, 0, 0]
    with open_pty(path) as port:
        request = _FRAMER.buildFrame(
            WriteMultipleRegistersRequest(address=4999, registers=block, dev_id=2)
        )
        data, _ = transact(port, request, 8)
        reply = parse_reply(data)
        assert reply is not None and not reply.isError()
        assert (reply.address, reply.count) == (4999, len(block))
        data, _ = transact(port, read_request(2, 4999, len(block)), 5 + 2 * len(block))
        reply = parse_reply(data)
        assert reply is not None and list(reply.registers) == block
        request = _FRAMER.buildFrame(
            WriteMultipleRegistersRequest(address=2013, registers=[1], dev_id=2)
        )
        data, _ = transact(port, request, 8)
        reply = parse_reply(data)
        assert isinstance(reply, ExceptionResponse) and reply.exception_code == 2
    assert fast_bus.meters[2].scratch[4999] == 1003


def test_crc_noise_corrupts_replies(fast_bus: SimulatedBus) -> None:
    """With CRC noise on an id every reply arrives complete but fails its CRC, and pymodbus'
    client sees no valid response; other ids are unaffected."""
    path = fast_bus.start_pty()
    fast_bus.set_fault(1, crc_noise=1.0)
    with open_pty(path) as port:
        for _ in range(3):
            data, _ = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
            assert len(data) == 9
            assert not FramerRTU.check_CRC(data[:-2], int.from_bytes(data[-2:], "big"))
        data, _ = transact(port, read_request(2, FREQUENCY_ADDRESS, 2), 9)
        assert parse_reply(data) is not None
    client = ModbusSerialClient(path, parity="N", timeout=0.3, retries=0)
    assert client.connect()
    try:
        with pytest.raises(ModbusIOException):
            client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=1)
    finally:
        client.close()
    assert fast_bus.counters().corrupted >= 4


def test_wrong_id_replies_carry_a_valid_crc(fast_bus: SimulatedBus) -> None:
    """A wrong-id fault answers from another id with a good CRC, so a client can tell it from
    noise; the served log says so."""
    path = fast_bus.start_pty()
    fast_bus.set_fault(3, wrong_id=1.0)
    with open_pty(path) as port:
        data, _ = transact(port, read_request(3, FREQUENCY_ADDRESS, 2), 9)
    assert len(data) == 9 and data[0] == 4
    reply = parse_reply(data)
    assert reply is not None and reply.dev_id == 4
    assert fast_bus.served()[-1].outcome == "wrong_id"
    assert fast_bus.counters().wrong_id == 1


def test_flapping_id_goes_silent_and_comes_back(fast_bus: SimulatedBus) -> None:
    """An id flapping (down 0.4 s / up 0.4 s) answers, then goes silent, then answers again."""
    path = fast_bus.start_pty()
    fast_bus.set_fault(2, flap=(0.4, 0.4))
    answered: list[bool] = []
    with open_pty(path) as port:
        end = time.monotonic() + 1.3
        while time.monotonic() < end:
            data, _ = transact(port, read_request(2, FREQUENCY_ADDRESS, 2), 9, timeout=0.05)
            answered.append(len(data) == 9)
            time.sleep(0.02)
    changes = [b for a, b in itertools.pairwise(answered) if a != b]
    assert answered[0] is True
    assert changes[:2] == [False, True], answered


def test_slow_id_answers_late(fast_bus: SimulatedBus) -> None:
    """A slow id answers after its extra delay: nothing within 100 ms, the reply later."""
    path = fast_bus.start_pty()
    fast_bus.set_fault(4, slow=0.25)
    with open_pty(path) as port:
        data, _ = transact(port, read_request(4, FREQUENCY_ADDRESS, 2), 9, timeout=0.1)
        assert data == b""
        time.sleep(0.25)
        assert len(port.read(9)) == 9


def test_resync_after_garbage(fast_bus: SimulatedBus) -> None:
    """Garbage in front of a request in the same burst, and a stale partial frame followed
    (after a silence) by a good request, do not wedge the parser."""
    path = fast_bus.start_pty()
    with open_pty(path) as port:
        data, _ = transact(port, b"\x55\x01\x03\x99" + read_request(1, FREQUENCY_ADDRESS, 2), 9)
        assert parse_reply(data) is not None
        port.write(read_request(1, FREQUENCY_ADDRESS, 2)[:5])  # a cut-off request
        time.sleep(0.05)
        data, _ = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
        assert parse_reply(data) is not None
    assert fast_bus.counters().discarded_bytes >= 5


def test_client_may_reopen_the_pty(fast_bus: SimulatedBus) -> None:
    """Closing and reopening the pty (a client restarting) keeps the bus serving."""
    path = fast_bus.start_pty()
    for _ in range(3):
        with open_pty(path) as port:
            data, _ = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
            assert parse_reply(data) is not None


def test_other_serial_settings_pace_accordingly(ng: RegisterMap) -> None:
    """At 9600 baud and 10 bits per character (8N1) a 2-register read takes (8 + 9) x 1.042 ms
    + turnaround, and the meters report baud code 1 and parity code 2 (none)."""
    with SimulatedBus(ids=[1], baud=9600, bits_per_char=10, turnaround=0.010) as sim:
        path = sim.start_pty()
        expected = 17 * 10 / 9600 + 0.010
        with open_pty(path) as port:
            data, rtt = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
        assert len(data) == 9
        assert expected <= rtt < expected + 0.030
        meter = sim.meters[1]
        assert meter.value("rs485_baud_rate") == 1 and meter.value("rs485_parity") == 2


# ---------------------------------------------------------------------------------------------
# TCP


def test_modbus_tcp_framing_and_reconnects(fast_bus: SimulatedBus) -> None:
    """Modbus TCP (tcp://) answers pymodbus' TCP client, over several sequential connections;
    an absent id stays silent there too."""
    url = fast_bus.start_tcp(framing="tcp")
    assert url.startswith("tcp://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    for _ in range(3):
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        assert client.connect()
        try:
            rr = client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=2)
            assert not rr.isError()
            assert 49.9 <= float32_be(rr.registers) <= 50.05
        finally:
            client.close()
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0)
    assert client.connect()
    try:
        with pytest.raises(ModbusIOException):
            client.read_holding_registers(FREQUENCY_ADDRESS, count=2, device_id=20)
    finally:
        client.close()


def test_rtu_over_tcp_is_paced(bus: SimulatedBus) -> None:
    """socket:// (RTU frames over TCP, pyserial's URL handler) runs the same paced RTU path,
    for several sequential connections."""
    url = bus.start_tcp(framing="rtu")
    assert url.startswith("socket://127.0.0.1:")
    expected = (8 + 9) * CHAR_19200_11 + 0.020
    for _ in range(2):
        with serial.serial_for_url(url, timeout=0.5) as port:
            data, rtt = transact(port, read_request(1, FREQUENCY_ADDRESS, 2), 9)
            assert parse_reply(data) is not None
            assert expected <= rtt < expected + 0.030


# ---------------------------------------------------------------------------------------------
# maps


def test_legacy_map_serves_low_word_first_floats() -> None:
    """With the legacy EM6400 map the frequency (register 3915) is a FLOAT32 low word first,
    and powers are in W (kW x 1000)."""
    legacy = load_map("em6400-legacy")
    with SimulatedBus(rmap=legacy, line_timing=False, frozen=True, seed=2) as sim:
        path = sim.start_pty()
        with open_pty(path) as port:
            data, _ = transact(port, read_request(1, 3900, 66), 5 + 132)
        reply = parse_reply(data)
        assert reply is not None and not reply.isError()
        regs = list(reply.registers)
        low_first = float(struct.unpack(">f", struct.pack(">HH", regs[15], regs[14]))[0])
        assert 49.9 <= low_first <= 50.05
        assert not 49 <= float32_be(regs[14:16]) <= 51
        pump = sim.meters[1].pump
        entry = legacy.get("w_total")
        watts = decode(entry, regs[2:4], legacy.na_value(entry)).value
        kw = pump.quantities()["active_power_total"]
        assert isinstance(watts, float) and isinstance(kw, float)
        assert watts == pytest.approx(kw * 1000, rel=1e-6)


def test_every_em6400ng_entry_is_served_or_na(ng: RegisterMap) -> None:
    """Every entry of the em6400ng map decodes (a value or N/A); identity reads as the model,
    manufacturer, product id, a serial unique per meter and the meter's own address."""
    with SimulatedBus(line_timing=False, frozen=True) as sim:
        serials = set()
        for device_id, meter in sim.meters.items():
            values = {}
            for entry in ng.entries:
                regs = meter.read(3, entry.address, entry.count)
                values[entry.name] = decode(entry, regs, ng.na_value(entry)).value
            assert values["meter_model"] == "EM6400NG"
            assert values["manufacturer"] == "Schneider Electric"
            assert values["product_id"] == 15511
            assert values["rs485_address"] == device_id
            assert values["meter_name"] == f"Pump {device_id}"
            assert isinstance(values["date_of_manufacture"], str)
            assert values["frequency"] is not None
            assert num(values["meter_operation_timer"]) >= num(values["run_seconds_delivered"])
            serials.add(values["serial_number"])
        assert len(serials) == len(sim.meters)


def test_meter_read_is_cheap(ng: RegisterMap) -> None:
    """A 125-register read costs well under a millisecond, image rebuild included."""
    clock = FakeClock()
    meter = SimulatedMeter(1, ng, PumpModel(37, seed=5, clock=clock, running=True))
    meter.read(3, 2999, 125)
    start = time.perf_counter()
    for _ in range(50):
        clock.t += 0.2  # every read rebuilds the image
        meter.read(3, 2999, 125)
    assert (time.perf_counter() - start) / 50 < 0.002


def test_meter_rejects_other_functions(ng: RegisterMap) -> None:
    """FC04 (not the map's function) answers 01; a read past register 65536 answers 02."""
    meter = SimulatedMeter(1, ng, PumpModel(15, seed=1, frozen=True))
    with pytest.raises(ModbusExceptionReply) as info:
        meter.read(4, FREQUENCY_ADDRESS, 2)
    assert info.value.code == 1
    with pytest.raises(ModbusExceptionReply) as info:
        meter.read(3, 65530, 10)
    assert info.value.code == 2


# ---------------------------------------------------------------------------------------------
# pump physics (injected clock)


def test_energies_and_run_seconds_integrate_only_while_running() -> None:
    """While running, energies (float kWh, INT64 Wh = kWh x 1000, permanent >= resettable) and
    run seconds rise every step; while stopped they stand still but the meter operation timer
    keeps counting."""
    clock = FakeClock()
    pump = PumpModel(37, seed=7, clock=clock, running=True, duty=DutyCycle(continuous=True))
    previous = pump.quantities()
    for _ in range(60):
        clock.t += 10
        q = pump.quantities()
        for name in (
            "active_energy_delivered",
            "reactive_energy_delivered",
            "apparent_energy_delivered",
        ):
            assert num(q[name]) > num(previous[name])
        assert num(q["run_seconds_delivered"]) == num(previous["run_seconds_delivered"]) + 10
        kwh, wh = q["active_energy_delivered"], q["active_energy_delivered_wh"]
        assert isinstance(kwh, float) and isinstance(wh, int)
        assert abs(wh - kwh * 1000) <= 1
        assert num(q["active_energy_delivered_wh_permanent"]) >= wh
        assert num(q["active_energy_delivered_permanent"]) >= kwh
        previous = q
    # 10 minutes at ~35-40 kW is ~6-7 kWh
    pump.switch(False)
    stopped = pump.quantities()
    clock.t += 600
    later = pump.quantities()
    assert later["active_energy_delivered"] == pytest.approx(
        stopped["active_energy_delivered"], abs=0.01
    )
    assert later["run_seconds_delivered"] == stopped["run_seconds_delivered"]
    assert num(later["meter_operation_timer"]) == num(stopped["meter_operation_timer"]) + 600


def test_full_load_pf_is_lagging_about_085(ng: RegisterMap) -> None:
    """A 37 kW pump at load reads PF ~0.85 (0.80-0.89) lagging through the pf4q register,
    with S ~ sqrt(P^2 + Q^2) and P near the rated input (39-41 kW at full load)."""
    clock = FakeClock()
    pump = PumpModel(37, seed=3, clock=clock, running=True, duty=DutyCycle(continuous=True))
    meter = SimulatedMeter(1, ng, pump)
    entry = ng.get("power_factor_total")
    value = decode(entry, meter.read(3, entry.address, 2), ng.na_value(entry))
    assert value.lead_lag == "lagging"
    assert isinstance(value.value, float) and 0.80 <= value.value <= 0.89
    q = pump.quantities()
    p, r, s = (
        num(q[k]) for k in ("active_power_total", "reactive_power_total", "apparent_power_total")
    )
    assert s == pytest.approx(math.hypot(p, r), rel=1e-6)
    assert 33 <= p <= 41.5
    assert 0.80 <= num(q["power_factor_a"]) <= 0.89


def test_dol_start_draws_six_to_seven_times_flc() -> None:
    """Half a second into a direct-on-line start the current is 6-7x full-load current at a PF
    of 0.2-0.4 with the voltage dipped; a minute later it has settled below FLC."""
    clock = FakeClock()
    pump = PumpModel(75, seed=4, clock=clock, running=False)
    off = pump.quantities()
    assert off["current_avg"] == 0.0 and off["active_power_total"] == 0.0
    assert off["power_factor_total"] is None
    pump.switch(True)
    clock.t += 0.5
    start = pump.quantities()
    flc = pump.spec.flc
    assert 5.9 * flc <= num(start["current_avg"]) <= 7.1 * flc
    assert 0.2 <= num(start["power_factor_total"]) <= 0.4
    clock.t += 60
    running = pump.quantities()
    assert 0.8 * flc <= num(running["current_avg"]) <= 1.02 * flc
    assert num(start["voltage_ln_avg"]) < 0.985 * num(running["voltage_ln_avg"])


def test_stopped_pump_reads_zero_current_and_na_pf(ng: RegisterMap) -> None:
    """A stopped pump serves I = 0 and P = 0, and PF as the N/A sentinel (decodes to None)."""
    pump = PumpModel(15, seed=2, clock=FakeClock(), running=False)
    meter = SimulatedMeter(1, ng, pump)
    for name, expected in (
        ("current_a", 0.0),
        ("active_power_total", 0.0),
        ("power_factor_total", None),
    ):
        entry = ng.get(name)
        assert decode(entry, meter.read(3, entry.address, 2), ng.na_value(entry)).value == expected
    entry = ng.get("power_factor_total")
    assert meter.read(3, entry.address, 2) == [0xFFC0, 0x0000]


def test_frequency_walks_slowly_within_band() -> None:
    """Over two hours the frequency stays within 49.90-50.05 Hz and moves under 0.02 Hz/s."""
    clock = FakeClock()
    pump = PumpModel(15, seed=9, clock=clock)
    last = None
    for _ in range(2 * 3600 // 5):
        clock.t += 5
        hz = num(pump.quantities()["frequency"])
        assert 49.90 <= hz <= 50.05
        if last is not None:
            assert abs(hz - last) / 5 < 0.02
        last = hz


def test_duty_cycle_alternates_runs_and_pauses() -> None:
    """The default duty cycle alternates runs of 20-120 min and pauses of 10-60 min."""
    clock = FakeClock()
    pump = PumpModel(15, seed=11, clock=clock)
    changes = []
    state = pump.running()
    for _ in range(12 * 60):  # 12 hours, minute by minute
        clock.t += 60
        now = pump.running()
        if now != state:
            changes.append((clock.t, now))
            state = now
    assert len(changes) >= 6
    for (t1, on), (t2, _) in itertools.pairwise(changes):
        minutes = (t2 - t1) / 60
        low, high = (20, 120) if on else (10, 60)
        assert low - 1 <= minutes <= high + 1


def test_same_seed_same_values() -> None:
    """Two pumps with the same seed and clock give identical quantities; frozen ones never
    change."""
    a = PumpModel(37, seed=5, clock=FakeClock())
    b = PumpModel(37, seed=5, clock=FakeClock())
    assert a.quantities() == b.quantities()
    clock = FakeClock()
    frozen = PumpModel(37, seed=5, clock=clock, frozen=True)
    first = frozen.quantities()
    clock.t += 3600
    assert frozen.quantities() == first


def test_faults_api_merges_bus_wide_and_per_id() -> None:
    """Bus-wide faults apply to every id and combine with an id's own; clearing works per id."""
    sim = SimulatedBus(ids=[1, 2], line_timing=False)
    sim.set_fault(None, crc_noise=0.5, slow=0.1)
    sim.set_fault(2, crc_noise=0.5, exception=4)
    assert sim.faults(2) == Faults(crc_noise=0.5, exception=4)
    merged, down = sim._effective(2)
    assert merged.crc_noise == pytest.approx(0.75) and merged.slow == 0.1
    assert merged.exception == 4 and not down
    sim.clear_faults(2)
    assert sim._effective(2)[0].exception is None
    sim.clear_faults()
    assert sim._effective(1)[0] == Faults()
