"""A bus emtui did not write: pymodbus' own server, RTU framing over TCP, for tests.

Shared by the app tests (tests/ui/test_app_engine.py) and the raw-read CLI tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping


def free_port() -> int:
    """A TCP port free on the loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _registers(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]


def float_registers(value: float) -> list[int]:
    """``value`` as float32, high word first (ABCD): two registers."""
    return _registers(value)


@contextlib.contextmanager
def pymodbus_server(devices: Mapping[int, Mapping[int, int]], size: int = 44000) -> Iterator[str]:
    """pymodbus' TCP server with RTU framing (RTU over TCP) serving ``devices``: device id
    → {wire address: register}; holding registers 0..size-1 (others answer exception 02).
    Yields the ``socket://`` port."""
    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.framer import FramerType
    from pymodbus.server import ModbusTcpServer

    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def device(registers: Mapping[int, int]) -> ModbusDeviceContext:
        values = [0] * size
        for address, value in registers.items():
            values[address] = value
        # block address 1 is wire address 0 in pymodbus 3.16's datastore
        return ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, values))

    context = ModbusServerContext(devices={i: device(r) for i, r in devices.items()})
    servers: list[ModbusTcpServer] = []

    async def serve() -> None:
        server = ModbusTcpServer(context, framer=FramerType.RTU, address=("127.0.0.1", port))
        servers.append(server)
        started.set()
        await server.serve_forever()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"socket://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(servers[0].shutdown(), loop).result(5)
        thread.join(5)


def frequency_bus() -> contextlib.AbstractContextManager[str]:
    """Two devices with known frequencies at register 3110 (wire address 3109), float32
    high word first: 1 → 50.02 Hz, 2 → 49.97 Hz (see :data:`FREQUENCIES`)."""
    return pymodbus_server(
        {i: dict(zip((3109, 3110), _registers(f), strict=True)) for i, f in FREQUENCIES.items()}
    )


#: The frequencies :func:`frequency_bus` serves.
FREQUENCIES = {1: 50.02, 2: 49.97}
