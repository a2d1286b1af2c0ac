"""A simulated RS-485 line of meters, served over a pty or TCP on its own thread.

Why this module exists: there is no hardware, so this bus *is* the field for every test,
benchmark and demo, and it has to behave like a real one where the tool's correctness depends
on it (design §3, §4, §5, §9):

* **Line pacing.** A character takes ``bits_per_char / baud`` seconds (11 bits at 19200 baud:
  0.573 ms, even on a pty opened with parity N). A reply's last byte reaches the client no
  earlier than request wire time + the meter's turnaround + reply wire time after the
  request arrived; the line is half duplex, one request at a time.
* **Silence.** An id with no meter never answers — pymodbus' own servers answer every unknown
  id with exception 04, which would make a scan find 247 meters. So this module reads the
  bytes itself and uses pymodbus only for what it is good at: the RTU/socket framers (CRC
  included), the request decoder and the response PDU classes.
* **Faults on demand.** Absent, slow, exception-only, strict gaps, CRC noise, replies from the
  wrong id and flapping ids can be set and cleared at any time from any thread.
* **Its own thread and event loop**, so a UI in the same process cannot distort the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import random
import socket
import termios
import threading
import time
import tty
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from emtui.core.maps.registers import RegisterMap, load_map
from emtui.sim.meter import (
    _BAUD_CODES,
    _PARITY_CODES,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    ModbusExceptionReply,
    SimulatedMeter,
)
from emtui.sim.pump import REFERENCE_SITE, Clock, DutyCycle, Grid, PumpModel

__all__ = [
    "BusCounters",
    "Faults",
    "Framing",
    "ServedFrame",
    "SimulatedBus",
    "build_meters",
    "quiet_pymodbus",
]

Framing = Literal["rtu", "tcp", "rfc2217"]
"""``rtu``: RTU frames (CRC) on the byte stream; ``tcp``: Modbus TCP (MBAP header);
``rfc2217``: RTU frames inside a Telnet COM-port-control session (RFC 2217), which carries the
client's baud, parity and stop bits — what a serial device server or ser2net speaks."""

#: Data formats a meter may be set to (data bits, parity, stop bits).
FORMATS = ("8E1", "8N1", "8O1", "8N2")


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Serial settings: of a meter (it answers only a client at the same ones), or what a
    client's port is set to.

    Attributes:
        baud: bit/s.
        parity: ``E``, ``O`` or ``N``.
        stopbits: 1 or 2.
    """

    baud: int
    parity: str = "E"
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        """Start bit + 8 data bits + parity bit + stop bits."""
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_time(self) -> float:
        """Seconds one character takes at these settings."""
        return self.bits_per_char / self.baud

    def describe(self) -> str:
        """E.g. ``9600 8E1``."""
        return f"{self.baud} 8{self.parity}{self.stopbits}"

    @classmethod
    def parse(cls, baud: str, fmt: str) -> LineSettings:
        """``("9600", "8E1")`` → settings; ValueError naming what is wrong."""
        if not baud.isdigit() or int(baud) <= 0:
            raise ValueError(f"baud must be a positive whole number, not {baud!r}")
        text = fmt.upper()
        if text not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return cls(int(baud), text[1], int(text[2]))


class _PortSettings:
    """The serial-port object an RFC 2217 :class:`serial.rfc2217.PortManager` configures: it
    only remembers what the client set (baud, parity, stop bits), as a device server's UART
    would be set."""

    def __init__(self) -> None:
        self.name = "emtui-sim"
        self.baudrate = 9600
        self.bytesize = 8
        self.parity = "N"
        self.stopbits: float = 1
        self.rts = self.dtr = True
        self.break_condition = False
        self.rtscts = self.xonxoff = False
        self.cts = self.dsr = self.cd = True
        self.ri = False

    def reset_input_buffer(self) -> None:
        """Nothing buffered here: requests are framed as they come."""

    def reset_output_buffer(self) -> None:
        """Nothing buffered here."""

    def line(self) -> LineSettings:
        """What the client set."""
        return LineSettings(int(self.baudrate), str(self.parity), int(self.stopbits))


#: termios speed constant → bit/s, to read the baud a client set on the pty.
_TERMIOS_SPEEDS = {
    getattr(termios, f"B{rate}"): rate
    for rate in (
        300,
        600,
        1200,
        2400,
        4800,
        9600,
        19200,
        38400,
        57600,
        115200,
        230400,
        460800,
        921600,
    )
    if hasattr(termios, f"B{rate}")
}


def quiet_pymodbus() -> None:
    """Silence pymodbus' logger: it logs an ERROR for every frame it does not like."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults of one device id (or, set for ``None``, of every id on the bus).

    Attributes:
        absent: the id never answers.
        slow: extra seconds before the reply (beyond the turnaround), e.g. past a client's
            timeout; the late reply is still sent, as a real meter would.
        exception: answer every request with this exception code.
        strict_gaps: any unmapped register in a read answers exception 02 (None: the meter's
            own setting).
        crc_noise: the fraction of replies with one byte corrupted (the CRC then fails).
        wrong_id: the fraction of replies sent from another device id, with a valid CRC.
        flap: ``(down_s, up_s)``: the id answers for ``up_s`` seconds, then drops out for
            ``down_s`` seconds, and so on, counted from when the fault was set.
    """

    absent: bool = False
    slow: float = 0.0
    exception: int | None = None
    strict_gaps: bool | None = None
    crc_noise: float = 0.0
    wrong_id: float = 0.0
    flap: tuple[float, float] | None = None

    def merged(self, other: Faults) -> Faults:
        """These faults combined with ``other`` (the id's own faults win where both are set)."""
        return Faults(
            absent=self.absent or other.absent,
            slow=self.slow + other.slow,
            exception=other.exception if other.exception is not None else self.exception,
            strict_gaps=other.strict_gaps if other.strict_gaps is not None else self.strict_gaps,
            crc_noise=1.0 - (1.0 - self.crc_noise) * (1.0 - other.crc_noise),
            wrong_id=1.0 - (1.0 - self.wrong_id) * (1.0 - other.wrong_id),
            flap=other.flap if other.flap is not None else self.flap,
        )


@dataclass(frozen=True, slots=True)
class ServedFrame:
    """One request the bus saw and what it did about it.

    Attributes:
        time: wall-clock time (epoch seconds) the request was handled.
        device_id: the id the request was addressed to.
        function: the request's function code.
        address: the first wire address (0-based) of a read or write.
        count: registers requested or written.
        registers: the registers sent in a read reply (as sent, before any corruption), or
            written by a write request.
        outcome: ``reply``, ``exception``, ``absent`` (no meter at the id), ``silent`` (a fault
            kept it quiet), ``corrupted`` (reply sent with a bad CRC), ``wrong_id`` (reply sent
            from another id), ``broadcast`` (id 0: executed, never answered), ``settings`` (the
            client's serial settings are not the meter's: it heard noise and kept quiet).
        exception: the exception code sent, if any.
        reply: the exact bytes put on the line (empty when nothing was sent).
        port: the port or URL the request came in on.
    """

    time: float
    device_id: int
    function: int
    address: int
    count: int
    registers: tuple[int, ...]
    outcome: str
    exception: int | None = None
    reply: bytes = b""
    port: str = ""


@dataclass(slots=True)
class BusCounters:
    """What the bus has seen since it started (a snapshot: :meth:`SimulatedBus.counters`).

    Attributes:
        requests: requests seen, per device id (any id, present or not).
        replies: replies sent, per device id (exceptions, corrupted and wrong-id included).
        dropped: requests left unanswered, per device id (absent, silent, flapping).
        exceptions: exception replies, per device id.
        corrupted: replies sent with a corrupted byte.
        wrong_id: replies sent from another id.
        discarded_bytes: received bytes that formed no frame (garbage, partial frames).
    """

    requests: Counter[int] = field(default_factory=Counter)
    replies: Counter[int] = field(default_factory=Counter)
    dropped: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[int] = field(default_factory=Counter)
    corrupted: int = 0
    wrong_id: int = 0
    discarded_bytes: int = 0

    def copy(self) -> BusCounters:
        """An independent copy."""
        return BusCounters(
            Counter(self.requests),
            Counter(self.replies),
            Counter(self.dropped),
            Counter(self.exceptions),
            self.corrupted,
            self.wrong_id,
            self.discarded_bytes,
        )


# ---------------------------------------------------------------------------------------------
# byte streams → frames


@dataclass(slots=True)
class _Frame:
    device_id: int
    tid: int
    pdu: bytes
    arrival: float


class _Receiver:
    """Turns a byte stream into request frames with pymodbus' framers.

    RTU has no frame delimiter but silence: bytes that sit unanswered for longer than
    ``gap`` seconds are a partial or garbled frame and are dropped before new bytes are
    added (the 3.5-character rule), and a frame that fails its CRC is hunted through byte by
    byte so garbage in front of a good request does not hide it.
    """

    MAX_BUFFER = 1024

    def __init__(self, framing: Framing, gap: float) -> None:
        self.framing = framing
        self.gap = gap
        self._decoder = DecodePDU(is_server=True)
        self._framer: FramerRTU | FramerSocket = (
            FramerRTU(self._decoder) if framing == "rtu" else FramerSocket(self._decoder)
        )
        self._buf = bytearray()
        self._last = 0.0
        self.discarded = 0

    def feed(self, data: bytes, now: float) -> list[_Frame]:
        """Add received bytes; return the complete frames they finish."""
        if self._buf and self.framing == "rtu" and now - self._last > self.gap:
            self.discarded += len(self._buf)
            self._buf.clear()
        self._last = now
        self._buf += data
        frames: list[_Frame] = []
        while len(self._buf) >= 4:
            used, dev_id, tid, pdu = self._framer.decode(bytes(self._buf))
            if pdu:
                if self.framing == "rtu":
                    # FramerRTU reports the whole buffer used; keep what follows this frame.
                    start = self._buf.find(bytes([dev_id]) + pdu)
                    end = start + len(pdu) + 3 if start >= 0 else len(self._buf)
                    self.discarded += max(start, 0)
                else:
                    end = used
                del self._buf[:end]
                frames.append(_Frame(dev_id, tid, pdu, now))
                continue
            if used == 0:
                break  # incomplete: wait for more bytes
            if self.framing == "rtu":
                # CRC failure: resynchronise one byte later instead of dropping everything.
                del self._buf[:1]
                self.discarded += 1
            else:
                del self._buf[:used]
                self.discarded += used
        if len(self._buf) > self.MAX_BUFFER:
            self.discarded += len(self._buf)
            self._buf.clear()
        return frames


# ---------------------------------------------------------------------------------------------
# the bus


@dataclass(slots=True)
class _Port:
    name: str
    framing: Framing
    receiver: _Receiver | None
    send: Callable[[bytes], None]
    close: Callable[[], None]
    #: the client's serial settings (None: unknown, every meter answers); with
    #: ``baud_only`` only the baud is known (a pty: parity cannot be set on one)
    line: Callable[[], LineSettings | None] = lambda: None
    baud_only: bool = False


class SimulatedBus:
    """A line of simulated meters behind one pty or TCP port, paced like RS-485.

    Args:
        meters: the meters by id; or leave it out and give ``ids`` (default 1-4) and ``rmap``
            (a map or its name, default ``em6400ng``) to build pumps of the reference site
            (15, 37, 37, 75 kW, repeating for more ids).
        ids, rmap, kws: see ``meters``; ``kws`` maps an id to its pump's rating in kW.
        baud: line speed for the pacing (and the meters' reported baud entry).
        bits_per_char: bits per character on the wire: 11 for 8E1 or 8N2, 10 for 8N1.
        turnaround: seconds a meter takes between a request's end and its reply's start.
        line_timing: pace the line (wire time and turnaround); False answers at once.
        seed: makes the pumps, the grid and the fault dice repeatable.
        clock: the pumps' clock (epoch seconds); a test may inject its own.
        frozen: pump values do not change with time (for agreement tests).
        duty: the pumps' duty cycle (default 20-120 min on, 10-60 min off).
        running: every pump's state at the start (None: drawn from its duty cycle).
        refresh: how often (clock seconds) a meter's image takes new values.
        log_size: how many served frames :meth:`served` keeps.
        echo: the client's adapter hears its own transmission (a 2-wire RS-485 adapter without
            echo suppression): every byte a client sends on an RTU port comes back to it.

    Start it with :meth:`start_pty` and/or :meth:`start_tcp`; :meth:`stop` (or leaving a
    ``with`` block) shuts it down. Every method is safe to call from any thread.
    """

    def __init__(
        self,
        meters: Mapping[int, SimulatedMeter] | None = None,
        *,
        ids: Iterable[int] | None = None,
        rmap: RegisterMap | str | None = None,
        kws: Mapping[int, float] | None = None,
        baud: int = 19200,
        bits_per_char: int = 11,
        turnaround: float = 0.020,
        line_timing: bool = True,
        seed: int = 0,
        clock: Clock = time.time,
        frozen: bool = False,
        duty: DutyCycle | None = None,
        running: bool | None = None,
        refresh: float = 0.1,
        log_size: int = 1000,
        echo: bool = False,
    ) -> None:
        if baud <= 0 or bits_per_char <= 0:
            raise ValueError("baud and bits_per_char must be positive")
        quiet_pymodbus()
        self.baud = baud
        self.bits_per_char = bits_per_char
        self.turnaround = turnaround
        self.line_timing = line_timing
        self.echo = echo
        self.seed = seed
        self.clock = clock
        if meters is None:
            the_map = load_map(rmap or "em6400ng") if not isinstance(rmap, RegisterMap) else rmap
            meters = build_meters(
                list(ids) if ids is not None else [1, 2, 3, 4],
                the_map,
                kws=kws,
                seed=seed,
                clock=clock,
                frozen=frozen,
                duty=duty,
                running=running,
                refresh=refresh,
                baud=baud,
                parity="E" if bits_per_char >= 11 else "N",
            )
        self.meters: dict[int, SimulatedMeter] = dict(meters)
        for each in self.meters.values():  # a communications setup moves a meter to a new id
            each.on_readdress = self._readdress
        self.default_line = LineSettings(baud, "E" if bits_per_char >= 11 else "N", 1)
        """The settings of every meter not given its own (:meth:`set_meter_settings`)."""
        self._meter_line: dict[int, LineSettings] = {}
        self._faults: dict[int | None, Faults] = {}
        self._flap_epoch: dict[int | None, float] = {}
        self._faults_lock = threading.Lock()
        self._rng = random.Random(f"bus/{seed}")
        self._served: deque[ServedFrame] = deque(maxlen=log_size)
        self._served_lock = threading.Lock()
        self._counters = BusCounters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[tuple[_Frame, _Port]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._ports: list[_Port] = []
        self._servers: list[asyncio.Server] = []
        self._line_free = 0.0
        self._lifecycle = threading.Lock()
        self.urls: list[str] = []
        """The ports started so far, as returned by the start_* methods."""

    # -- serial settings ----------------------------------------------------------------------

    def set_meter_settings(self, device_id: int, line: LineSettings | None) -> None:
        """Give a meter its own serial settings (None: back to :attr:`default_line`).

        A meter with its own settings answers only a client whose port is at the same ones
        (over RFC 2217, where the client's settings are known; over a pty the baud alone is
        compared, a pty having no parity), paced at its own baud. Over ``socket://`` and
        Modbus TCP the client's settings are unknown and every meter answers.
        """
        if line is None:
            self._meter_line.pop(device_id, None)
        else:
            self._meter_line[device_id] = line
        meter = self.meters.get(device_id)
        if meter is not None:  # its communications entries report the settings it is at
            shown = self.meter_settings(device_id)
            meter.overrides["rs485_baud_rate"] = _BAUD_CODES.get(shown.baud, 0xFFFF)
            meter.overrides["rs485_parity"] = _PARITY_CODES.get(shown.parity, 0xFFFF)
            meter.invalidate()

    def meter_settings(self, device_id: int) -> LineSettings:
        """The serial settings the meter at ``device_id`` answers at."""
        return self._meter_line.get(device_id, self.default_line)

    def _client_line(self, port: _Port) -> LineSettings | None:
        """The client's settings where they count (RFC 2217 always; a pty once some meter
        has its own settings, so plain pty clients keep working at any baud)."""
        if port.framing == "rfc2217" or (port.baud_only and self._meter_line):
            return port.line()
        return None

    # -- timing -------------------------------------------------------------------------------

    @property
    def char_time(self) -> float:
        """Seconds one character occupies the line."""
        return self.bits_per_char / self.baud

    def wire_time(self, chars: int) -> float:
        """Seconds ``chars`` characters occupy the line."""
        return chars * self.char_time

    def reply_time(self, request_bytes: int, reply_bytes: int) -> float:
        """Request arrival → last reply byte, for frames of these sizes (no faults)."""
        if not self.line_timing:
            return 0.0
        return self.wire_time(request_bytes + reply_bytes) + self.turnaround

    # -- lifecycle ----------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lifecycle:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._queue = asyncio.Queue()
                self._worker = loop.create_task(self._line_worker())
                loop.call_soon(ready.set)
                loop.run_forever()
                # shutting down: let cancelled tasks finish, then close
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

            thread = threading.Thread(target=run, name="emtui-sim-bus", daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the bus thread and return its result."""
        loop = self._ensure_loop()

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result()

    def start_pty(self) -> str:
        """Serve on a new pseudo-terminal; returns the path clients open (``/dev/pts/N``).

        Open it with parity N (Linux ptys reject even parity); the pacing still counts
        ``bits_per_char`` bits per character. The bus keeps the slave end open itself, so
        clients may close and reopen the port freely.
        """
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[2] = (attrs[2] & ~(termios.PARENB | termios.CSTOPB | termios.CSIZE)) | (
            termios.CS8 | termios.CLOCAL | termios.CREAD
        )
        attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        path = os.ttyname(slave)
        receiver = _Receiver("rtu", self._gap())

        def send(data: bytes) -> None:
            # A full buffer (nobody reading) or a closed pty loses the bytes, as a line would.
            with contextlib.suppress(OSError):
                os.write(master, data)

        loop = self._ensure_loop()

        def close() -> None:
            with contextlib.suppress(Exception):
                loop.remove_reader(master)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

        def line() -> LineSettings | None:
            try:
                speed = termios.tcgetattr(master)[4]
            except (termios.error, OSError):
                return None
            rate = _TERMIOS_SPEEDS.get(speed)
            return None if rate is None else LineSettings(rate, "N", 1)

        port = _Port(path, "rtu", receiver, send, close, line=line, baud_only=True)

        def on_readable() -> None:
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                return
            except OSError as exc:  # EIO while no slave is open: nothing to read
                if exc.errno != errno.EIO:
                    raise
                return
            self._received(port, data)

        def install() -> None:
            loop.add_reader(master, on_readable)
            self._ports.append(port)

        self._call(install)
        self.urls.append(path)
        return path

    def start_tcp(self, host: str = "127.0.0.1", port: int = 0, framing: Framing = "rtu") -> str:
        """Serve on a TCP port; returns ``socket://HOST:PORT`` (RTU frames over TCP, what
        pyserial's URL handler talks) or ``tcp://HOST:PORT`` (Modbus TCP) for ``framing``
        ``"rtu"`` or ``"tcp"``. Clients may connect, disconnect and reconnect at will.
        """
        if framing not in ("rtu", "tcp", "rfc2217"):
            raise ValueError(f"framing must be 'rtu', 'tcp' or 'rfc2217', not {framing!r}")
        loop = self._ensure_loop()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(
                lambda r, w: self._connection(r, w, framing, url), host, port
            )

        url = ""
        server = asyncio.run_coroutine_threadsafe(start(), loop).result()
        bound = server.sockets[0].getsockname()
        scheme = {"rtu": "socket", "tcp": "tcp", "rfc2217": "rfc2217"}[framing]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"{scheme}://{shown}:{bound[1]}"
        self._servers.append(server)
        self.urls.append(url)
        return url

    async def _connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framing: Framing,
        url: str,
    ) -> None:
        def write(data: bytes) -> None:
            if not writer.is_closing():
                writer.write(data)

        sock = writer.get_extra_info("socket")
        if sock is not None:  # a reply must not wait for the client's delayed ACK (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        manager: Any = None
        uart = _PortSettings()
        if framing == "rfc2217":
            from serial.rfc2217 import PortManager

            class _Connection:
                def write(self, data: bytes) -> None:
                    write(data)

            # starts the Telnet negotiation; the client's settings then land on ``uart``
            manager = PortManager(uart, _Connection())

        def send(data: bytes) -> None:
            write(data if manager is None else b"".join(manager.escape(data)))

        receiver = _Receiver("tcp" if framing == "tcp" else "rtu", self._gap())
        port = _Port(url, framing, receiver, send, writer.close, line=uart.line)
        self._ports.append(port)
        try:
            while data := await reader.read(4096):
                if manager is not None:
                    data = b"".join(manager.filter(data))  # Telnet commands answered/applied
                    if not data:
                        continue
                self._received(port, data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if port in self._ports:
                self._ports.remove(port)
            writer.close()

    def stop(self) -> None:
        """Close every port and stop the bus thread (idempotent)."""
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for port in list(self._ports):
                with contextlib.suppress(Exception):
                    port.close()
            self._ports.clear()
            self._servers.clear()
            if self._worker is not None:
                self._worker.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    def __enter__(self) -> SimulatedBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -------------------------------------------------------------------------------

    def set_faults(self, device_id: int | None, faults: Faults) -> None:
        """Replace the faults of ``device_id`` (None: faults applying to every id)."""
        with self._faults_lock:
            self._faults[device_id] = faults
            if faults.flap is not None:
                self._flap_epoch[device_id] = time.monotonic()

    def set_fault(self, device_id: int | None, **changes: Any) -> Faults:
        """Change some fault fields of ``device_id`` (None: every id); returns the new faults.

        Example: ``bus.set_fault(3, absent=True)``, ``bus.set_fault(None, crc_noise=0.1)``,
        ``bus.set_fault(2, flap=(2.0, 5.0))``.
        """
        with self._faults_lock:
            current = self._faults.get(device_id, Faults())
        updated = dataclasses.replace(current, **changes)
        if "flap" not in changes:
            with self._faults_lock:
                self._faults[device_id] = updated
            return updated
        self.set_faults(device_id, updated)
        return updated

    def clear_faults(self, *device_ids: int | None) -> None:
        """Clear the faults of the ids given (None: the bus-wide ones), or all faults."""
        with self._faults_lock:
            if not device_ids:
                self._faults.clear()
                self._flap_epoch.clear()
            for device_id in device_ids:
                self._faults.pop(device_id, None)
                self._flap_epoch.pop(device_id, None)

    def faults(self, device_id: int | None) -> Faults:
        """The faults set for ``device_id`` (None: the bus-wide ones)."""
        with self._faults_lock:
            return self._faults.get(device_id, Faults())

    def _effective(self, device_id: int) -> tuple[Faults, bool]:
        """(merged faults, flapping down now) for a request to ``device_id``."""
        with self._faults_lock:
            common = self._faults.get(None, Faults())
            own = self._faults.get(device_id, Faults())
            merged = common.merged(own)
            epoch = self._flap_epoch.get(device_id if own.flap is not None else None)
        down = False
        if merged.flap is not None and epoch is not None:
            down_s, up_s = merged.flap
            period = down_s + up_s
            if period > 0:
                down = (time.monotonic() - epoch) % period >= up_s
        return merged, down

    def _readdress(self, meter: SimulatedMeter, old: int, new: int) -> None:
        """Command 5000 set ``meter``'s address, baud and parity: serve it at ``new`` and at
        its new line settings from now on (it answers a client at the old ones no more)."""
        before = self._meter_line.pop(old, None) or self.default_line
        if self.meters.get(old) is meter:
            del self.meters[old]
        self.meters[new] = meter
        # 8N1 or 8N2 after a change to parity None is undocumented: the simulator takes 8N1
        stopbits = before.stopbits if meter.parity == before.parity else 1
        line = LineSettings(meter.baud, meter.parity, stopbits)
        if line != self.default_line or self._meter_line:
            self._meter_line[new] = line

    # -- observation --------------------------------------------------------------------------

    def served(self) -> list[ServedFrame]:
        """The most recent served frames, oldest first."""
        with self._served_lock:
            return list(self._served)

    def clear_served(self) -> None:
        """Forget the served log."""
        with self._served_lock:
            self._served.clear()

    def counters(self) -> BusCounters:
        """A snapshot of the bus counters."""
        with self._served_lock:
            snapshot = self._counters.copy()
        return snapshot

    def _log(self, frame: ServedFrame) -> None:
        with self._served_lock:
            self._served.append(frame)

    # -- serving ------------------------------------------------------------------------------

    def _gap(self) -> float:
        """Silence after which a partial frame is dropped (3.5 characters, at least 5 ms)."""
        return max(3.5 * self.char_time, 0.005)

    def _received(self, port: _Port, data: bytes) -> None:
        assert self._loop is not None and self._queue is not None and port.receiver is not None
        now = self._loop.time()
        if self.echo and port.framing != "tcp":
            port.send(data)  # the adapter's receiver hears the transmitter
        before = port.receiver.discarded
        frames = port.receiver.feed(data, now)
        lost = port.receiver.discarded - before
        if lost:
            with self._served_lock:
                self._counters.discarded_bytes += lost
        for frame in frames:
            self._queue.put_nowait((frame, port))

    async def _line_worker(self) -> None:
        assert self._queue is not None
        while True:
            frame, port = await self._queue.get()
            try:
                self._serve(frame, port)
            except Exception:  # a bug must not kill the line; the request goes unanswered
                logging.getLogger(__name__).exception("simulated bus failed on a request")

    def _serve(self, frame: _Frame, port: _Port) -> None:
        """Answer one request: decide the reply now, put it on the line when it is due."""
        assert self._loop is not None
        dev = frame.device_id
        client = self._client_line(port)
        own = self.meter_settings(dev)
        # at the client's settings, a meter at others hears noise: it stays silent
        mismatch = client is not None and (
            client.baud != own.baud
            or (
                not port.baud_only
                and (client.parity, client.stopbits) != (own.parity, own.stopbits)
            )
        )
        # paced at the meter's own settings where they are in play, else at the bus's
        line_char = own.char_time if (client is not None or dev in self._meter_line) else None
        char = (line_char or self.char_time) if self.line_timing else 0.0
        start = max(frame.arrival, self._line_free)
        request_end = start + (len(frame.pdu) + 3) * char
        request = DecodePDU(is_server=True).decode(frame.pdu)
        function = frame.pdu[0] if frame.pdu else 0
        address, count, written = _request_fields(request)
        with self._served_lock:
            self._counters.requests[dev] += 1

        def log(outcome: str, **extra: Any) -> None:
            self._log(
                ServedFrame(
                    time=time.time(),
                    device_id=dev,
                    function=function,
                    address=address,
                    count=count,
                    registers=extra.pop("registers", written),
                    outcome=outcome,
                    port=port.name,
                    **extra,
                )
            )

        meter = self.meters.get(dev)
        if dev == 0:  # broadcast: writes go to every meter, nobody answers
            if isinstance(request, WriteMultipleRegistersRequest | WriteSingleRegisterRequest):
                for each in self.meters.values():
                    with contextlib.suppress(ModbusExceptionReply):
                        each.write(address, written)
            self._line_free = request_end + 3.5 * char
            log("broadcast")
            return
        faults, flapping_down = self._effective(dev)
        if meter is not None and mismatch:
            self._line_free = request_end + 3.5 * char
            with self._served_lock:
                self._counters.dropped[dev] += 1
            log("settings")
            return
        if meter is None or faults.absent or flapping_down:
            self._line_free = request_end + 3.5 * char
            with self._served_lock:
                self._counters.dropped[dev] += 1
            log("absent" if meter is None else "silent")
            return

        response = self._answer(meter, request, function, faults, frame)
        response.dev_id = dev
        response.transaction_id = frame.tid
        outcome = "exception" if isinstance(response, ExceptionResponse) else "reply"
        registers = tuple(response.registers) if outcome == "reply" and written == () else written
        exception = response.exception_code if outcome == "exception" else None
        if faults.wrong_id > 0 and self._rng.random() < faults.wrong_id:
            response.dev_id = dev % 247 + 1
            outcome = "wrong_id"
        framer: FramerRTU | FramerSocket = (
            FramerSocket(DecodePDU(False)) if port.framing == "tcp" else FramerRTU(DecodePDU(False))
        )
        data = framer.buildFrame(response)
        if faults.crc_noise > 0 and self._rng.random() < faults.crc_noise:
            data = _corrupt(data, self._rng, port.framing)
            outcome = "corrupted"
        rtu_size = len(response.encode()) + 4  # id + function + data + CRC
        due = request_end + (self.turnaround if self.line_timing else 0.0)
        due += faults.slow + rtu_size * char
        # A slow meter's late reply does not hold the line for the next request: on a real
        # bus it would collide with whatever the master does next.
        line_busy_until = due - faults.slow + 3.5 * char
        self._line_free = max(self._line_free, line_busy_until)
        with self._served_lock:
            self._counters.replies[dev] += 1
            if exception is not None:
                self._counters.exceptions[dev] += 1
            if outcome == "corrupted":
                self._counters.corrupted += 1
            elif outcome == "wrong_id":
                self._counters.wrong_id += 1
        log(outcome, registers=registers, exception=exception, reply=data)
        if due <= self._loop.time():
            port.send(data)
        else:
            self._loop.call_at(due, port.send, data)

    def _answer(
        self,
        meter: SimulatedMeter,
        request: ModbusPDU | None,
        function: int,
        faults: Faults,
        frame: _Frame,
    ) -> ModbusPDU:
        """The response PDU a meter gives to ``request`` (None: it did not decode)."""
        if faults.exception is not None:
            return ExceptionResponse(function & 0x7F, faults.exception)
        if request is None:
            # The framer knew the function but the request's fields are out of range
            # (e.g. a read of 0 or more than 125 registers).
            return ExceptionResponse(function & 0x7F, ILLEGAL_VALUE)
        try:
            if isinstance(request, ReadHoldingRegistersRequest):  # FC03 and FC04
                registers = meter.read(
                    request.function_code,
                    request.address,
                    request.count,
                    strict_gaps=faults.strict_gaps,
                )
                response_class = (
                    ReadHoldingRegistersResponse
                    if request.function_code == 3
                    else ReadInputRegistersResponse
                )
                return response_class(registers=registers)
            if isinstance(request, WriteMultipleRegistersRequest):
                if (
                    not 1 <= request.count <= 123
                    or request.byte_count != 2 * request.count
                    or len(request.registers) != request.count
                ):
                    return ExceptionResponse(request.function_code, ILLEGAL_VALUE)
                meter.write(request.address, list(request.registers))
                return WriteMultipleRegistersResponse(address=request.address, count=request.count)
            if isinstance(request, WriteSingleRegisterRequest):
                meter.write(request.address, list(request.registers))
                return WriteSingleRegisterResponse(
                    address=request.address, registers=list(request.registers)
                )
            if meter.force_exception is not None:
                return ExceptionResponse(request.function_code, meter.force_exception)
            return ExceptionResponse(request.function_code, ILLEGAL_FUNCTION)
        except ModbusExceptionReply as exc:
            return ExceptionResponse(function & 0x7F, exc.code)


def _request_fields(request: ModbusPDU | None) -> tuple[int, int, tuple[int, ...]]:
    """(address, count, registers written) of a decoded request, for the served log."""
    if request is None:
        return 0, 0, ()
    if isinstance(request, WriteMultipleRegistersRequest | WriteSingleRegisterRequest):
        return request.address, len(request.registers), tuple(request.registers)
    return getattr(request, "address", 0), getattr(request, "count", 0), ()


def _corrupt(data: bytes, rng: random.Random, framing: Framing) -> bytes:
    """Flip bits in one byte after the device id: the CRC (or, over Modbus TCP, the
    contents) no longer match. CRC-16 catches every single-byte error."""
    first = 7 if framing == "tcp" else 1
    buf = bytearray(data)
    index = rng.randrange(first, len(buf))
    buf[index] ^= rng.randrange(1, 256)
    return bytes(buf)


def build_meters(
    ids: Iterable[int],
    rmap: RegisterMap,
    *,
    kws: Mapping[int, float] | None = None,
    seed: int = 0,
    clock: Clock = time.time,
    frozen: bool = False,
    duty: DutyCycle | None = None,
    running: bool | None = None,
    refresh: float = 0.1,
    baud: int = 19200,
    parity: str = "E",
) -> dict[int, SimulatedMeter]:
    """Meters on pumps of the reference site (15, 37, 37, 75 kW, repeating) for ``ids``.

    All pumps share one :class:`Grid`; each gets its own seed, name ("Pump N") and a serial
    number unique on the bus.
    """
    grid = Grid(seed)
    serial_base = random.Random(f"serials/{seed}").randint(2_310_000_000, 2_319_000_000)
    meters: dict[int, SimulatedMeter] = {}
    for n, device_id in enumerate(sorted(set(ids))):
        if not 1 <= device_id <= 247:
            raise ValueError(f"id {device_id} out of range: ids must be 1-247")
        kw = (kws or {}).get(device_id, REFERENCE_SITE[n % len(REFERENCE_SITE)])
        pump = PumpModel(
            kw,
            seed=seed * 1000 + device_id,
            clock=clock,
            grid=grid,
            duty=duty,
            running=running,
            frozen=frozen,
            name=f"Pump {device_id}",
            serial=serial_base + device_id * 1009,
        )
        meters[device_id] = SimulatedMeter(
            device_id, rmap, pump, refresh=refresh, baud=baud, parity=parity
        )
    return meters
