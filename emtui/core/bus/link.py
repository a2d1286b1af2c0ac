"""One request, one reply: the wire layer under the bus arbiter.

pymodbus supplies the framing, the CRC and the PDU classes; this module owns the I/O because
the arbiter needs what pymodbus' clients hide (design §10): a per-request timeout instead of a
client-wide one, no hidden retries, stale bytes flushed before each request, and a miss told
apart as silence, a corrupted frame (bad CRC) or a good frame from another device id. A reply
is read by its expected length (the byte count in the header says how long it is), never by
waiting for a gap: USB adapters deliver bytes in bursts with gaps of many character times.

Three transports share the :class:`Link` interface:
- a serial device (``/dev/ttyUSB0``) and ``socket://host:port`` (RTU frames over TCP, through
  pyserial's URL handler, which never disconnects) use :class:`RtuLink`;
- ``tcp://host:port`` (Modbus TCP) uses :class:`TcpLink`, which reconnects and retries the
  same request once when the server closed the connection.
"""

from __future__ import annotations

import enum
import errno
import os
import select
import socket
import struct
import termios
import time
from dataclasses import dataclass, field
from typing import Any

import serial
import serial.rfc2217
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU

from emtui.core.bus.ports import describe_missing_port, who_holds


class LinkError(Exception):
    """The connection cannot be used; the message says what to do."""

    exit_code = 3


class PortNotFound(LinkError):
    """The serial device does not exist."""


class PortPermission(LinkError):
    """The serial device exists but this user may not open it."""


class PortBusy(LinkError):
    """Another process holds the serial device."""


class PortSettingsRejected(LinkError):
    """The serial device refuses the line settings (baud, parity, stop bits)."""


class Outcome(enum.StrEnum):
    """How a transaction ended."""

    OK = "ok"
    EXCEPTION = "exception"
    TIMEOUT = "timeout"
    CRC = "crc"
    WRONG_ID = "wrong_id"
    SKIPPED = "skipped"
    """Not sent: the device is backed off after repeated failures."""
    LATE = "late"
    """Traffic only, not a transaction: a reply that came after its request timed out."""


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where the bus is and how to talk to it.

    Attributes:
        port: a serial device path, ``socket://HOST:PORT`` (RTU over TCP) or ``tcp://HOST:PORT``.
        baud: line speed in bit/s.
        parity: ``E``, ``O`` or ``N``.
        stopbits: 1 or 2.
        bytesize: data bits per character (8 for Modbus RTU).
        timeout: a fixed reply timeout in seconds; None learns it from measured replies.
        retries: retries of a failed poll request (a scan never retries).
        local_echo: the adapter echoes what it transmits (2-wire adapters without echo
            suppression); the echo is read back and dropped before the reply.
        gap: extra silence in seconds before each request, for meters that need one.
    """

    port: str
    baud: int = 19200
    parity: str = "E"
    stopbits: int = 1
    bytesize: int = 8
    timeout: float | None = None
    retries: int = 1
    local_echo: bool = False
    gap: float = 0.0

    @property
    def kind(self) -> str:
        """``serial``, ``socket`` (RTU frames over TCP), ``rfc2217`` (RTU frames to a serial
        device server, which sets its port to our baud, parity and stop bits) or ``tcp``
        (Modbus TCP)."""
        if self.port.startswith("socket://"):
            return "socket"
        if self.port.startswith("tcp://"):
            return "tcp"
        if self.port.startswith("rfc2217://"):
            return "rfc2217"
        return "serial"

    @property
    def bits_per_char(self) -> int:
        """Start bit + data bits + parity bit + stop bits."""
        return 1 + self.bytesize + (0 if self.parity.upper() == "N" else 1) + self.stopbits

    @property
    def char_time(self) -> float:
        """Seconds one character takes on the line."""
        return self.bits_per_char / self.baud

    def describe(self) -> str:
        """Short human form, e.g. ``/dev/ttyUSB0 19200 8E1``."""
        if self.kind == "tcp":
            return self.port
        return f"{self.port} {self.baud} {self.bytesize}{self.parity.upper()}{self.stopbits}"


@dataclass(slots=True)
class Reply:
    """The result of one transaction on the wire.

    Attributes:
        outcome: how it ended.
        registers: the registers of an OK read reply.
        exception_code: the Modbus exception code of an EXCEPTION reply.
        pdu: the decoded reply PDU (OK or EXCEPTION).
        rtt: seconds from the start of sending to the last byte of the reply (or to the end of
            waiting for it).
        sent: the request frame as sent.
        received: every byte received for this request.
        other_id: the device id a WRONG_ID reply came from.
        attempts: how many times the request went out.
    """

    outcome: Outcome
    registers: list[int] | None = None
    exception_code: int | None = None
    pdu: ModbusPDU | None = None
    rtt: float = 0.0
    sent: bytes = b""
    received: bytes = b""
    other_id: int | None = None
    attempts: int = 1
    stale: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        """True for a normal (non-exception) reply."""
        return self.outcome is Outcome.OK

    @property
    def answered(self) -> bool:
        """True when the device replied at all (normal or exception)."""
        return self.outcome in (Outcome.OK, Outcome.EXCEPTION)


_DECODER = DecodePDU(is_server=False)

#: Seconds after a silent timeout during which a frame from that device is taken for its late
#: reply (and not for a reply from the wrong id). Longer than any sane timeout.
LATE_HORIZON = 3.0


@dataclass(frozen=True, slots=True)
class LateReply:
    """A device's reply that came after its request had timed out.

    RTU has no transaction id: a late frame is recognised by coming from a device whose last
    request went unanswered, within :data:`LATE_HORIZON`. It is never credited to the request
    on the wire when it comes.

    Attributes:
        device_id: the device that answered late.
        rtt: seconds from the start of its request to the end of the frame; None when the
            frame was found among stale bytes and its arrival time is unknown.
        request_chars: length of the request it answers.
        received: the frame.
        exception_code: the code when the late reply is a Modbus exception.
    """

    device_id: int
    rtt: float | None
    request_chars: int
    received: bytes
    exception_code: int | None = None


@dataclass(slots=True)
class _Pending:
    """A request that timed out in silence: its device may still answer."""

    function: int
    start: float
    request_chars: int


def _expected_rtu_length(head: bytes, function: int) -> int | None:
    """Total frame length implied by the first 3 bytes of an RTU reply, None if unknown."""
    fc = head[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4, 23):
        return 5 + head[2]
    if fc in (5, 6, 15, 16):
        return 8
    return None


def _rtu_frames(data: bytes) -> list[bytes]:
    """The CRC-valid RTU reply frames found in ``data`` (stale or drained bytes)."""
    frames = []
    i = 0
    while i + 4 <= len(data):
        length = _expected_rtu_length(data[i : i + 3], 0)
        if length is not None and i + length <= len(data):
            frame = data[i : i + length]
            if FramerRTU.check_CRC(frame[:-2], (frame[-2] << 8) | frame[-1]):
                frames.append(frame)
                i += length
                continue
        i += 1
    return frames


def _classify_rtu(frame: bytes, device_id: int, sent: bytes, rtt: float) -> Reply:
    """Turn a complete received RTU frame into a Reply (CRC, wrong id, exception, ok)."""
    if len(frame) < 4 or not FramerRTU.check_CRC(frame[:-2], (frame[-2] << 8) | frame[-1]):
        return Reply(Outcome.CRC, rtt=rtt, sent=sent, received=frame)
    if frame[0] != device_id:
        return Reply(Outcome.WRONG_ID, rtt=rtt, sent=sent, received=frame, other_id=frame[0])
    return _reply_from_pdu_bytes(frame[1:-2], sent, frame, rtt)


def _reply_from_pdu_bytes(pdu_bytes: bytes, sent: bytes, received: bytes, rtt: float) -> Reply:
    try:
        pdu = _DECODER.decode(pdu_bytes)
    except Exception:  # pymodbus raises several types on malformed PDUs
        pdu = None
    if pdu is None:
        return Reply(Outcome.CRC, rtt=rtt, sent=sent, received=received)
    if isinstance(pdu, ExceptionResponse):
        return Reply(
            Outcome.EXCEPTION,
            exception_code=int(pdu.exception_code),
            pdu=pdu,
            rtt=rtt,
            sent=sent,
            received=received,
        )
    registers = getattr(pdu, "registers", None)
    return Reply(
        Outcome.OK,
        registers=list(registers) if registers is not None else None,
        pdu=pdu,
        rtt=rtt,
        sent=sent,
        received=received,
    )


class Link:
    """A connection that carries one request and its reply at a time."""

    settings: ConnectionSettings

    def _init_late(self) -> None:
        self._late: list[LateReply] = []
        self._pending: dict[int, _Pending] = {}

    def __getattr__(self, name: str) -> Any:
        # a Link subclass (a test's scripted link) need not call _init_late
        if name in ("_late", "_pending"):
            self._init_late()
            return getattr(self, name)
        raise AttributeError(name)

    def take_late(self) -> list[LateReply]:
        """The late replies recognised since the last call (see :class:`LateReply`)."""
        late, self._late = self._late, []
        return late

    def expecting_late(self) -> bool:
        """True while a device that timed out in silence may still answer (the bus thread
        then listens between requests, so a late reply's time is measured)."""
        now = time.monotonic()
        for device_id, pending in list(self._pending.items()):
            if now - pending.start > LATE_HORIZON:
                del self._pending[device_id]
        return bool(self._pending) and self.is_open

    @property
    def is_open(self) -> bool:
        """True while the connection is open."""
        return False

    def late_waiting(self) -> bool:
        """True if bytes have arrived outside a transaction (non-blocking)."""
        return False

    def owes_late(self, device_id: int) -> bool:
        """True if ``device_id`` timed out in silence within the horizon."""
        pending = self._pending.get(device_id)
        return pending is not None and time.monotonic() - pending.start <= LATE_HORIZON

    def _note_sent(self, device_id: int, reply: Reply, function: int, start: float) -> None:
        """Remember a silent timeout (its late reply may come); forget it on an answer."""
        if reply.outcome is Outcome.TIMEOUT and not reply.received:
            self._pending[device_id] = _Pending(function, start, len(reply.sent))
        elif reply.answered:
            self._pending.pop(device_id, None)

    def _late_frame(self, frame: bytes, end: float | None) -> bool:
        """Record ``frame`` as a late reply if a device owes one; True if it did."""
        if len(frame) < 4:
            return False
        pending = self._pending.get(frame[0])
        if pending is None or (frame[1] & 0x7F) != pending.function:
            return False
        if end is not None and end - pending.start > LATE_HORIZON:
            return False
        del self._pending[frame[0]]
        rtt = None if end is None else end - pending.start
        code = frame[2] if frame[1] & 0x80 else None
        self._late.append(LateReply(frame[0], rtt, pending.request_chars, frame, code))
        return True

    def open(self) -> None:
        """Open the connection; raise LinkError with advice when it cannot be opened."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection (idempotent)."""
        raise NotImplementedError

    def transact(self, request: ModbusPDU, timeout: float) -> Reply:
        """Send ``request`` (its ``dev_id`` set) and wait up to ``timeout`` for the reply.

        ``timeout`` counts from the start of sending, so it must cover the request's own wire
        time, the device's turnaround and the reply's wire time.
        """
        raise NotImplementedError

    def retune(self, settings: ConnectionSettings) -> None:
        """Take other line settings (baud, parity, stop bits) on the same port: in place
        where the port is open (a serial device server hears of it by RFC 2217), else at the
        next open. Late replies owed are forgotten (they were at the old settings)."""
        self.settings = settings
        self._init_late()

    def drain_late(self, window: float) -> float | None:
        """Wait up to ``window`` s for a late reply and discard it.

        Returns the seconds waited until its first byte, or None when the line stayed quiet.
        Called after a timeout, so the next request does not go out while a slow meter's
        reply is still on the wire, and so that reply's time can still be measured.
        """
        return None

    def __enter__(self) -> Link:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RtuLink(Link):
    """Modbus RTU over a serial device or ``socket://`` (pyserial URL)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._serial: Any = None
        self._framer = FramerRTU(_DECODER)
        self._last_rx_end = 0.0
        self._init_late()

    @property
    def is_open(self) -> bool:
        """True while the port is open."""
        return self._serial is not None

    def open(self) -> None:
        """Open the port exclusively; translate OS errors into advice."""
        if self._serial is not None:
            return
        s = self.settings
        if s.kind == "serial" and not os.path.exists(s.port):
            raise PortNotFound(describe_missing_port(s.port))
        try:
            self._serial = serial.serial_for_url(
                s.port,
                baudrate=s.baud,
                parity=s.parity.upper(),
                stopbits=s.stopbits,
                bytesize=s.bytesize,
                timeout=0.1,
                # pyserial's RFC 2217 client refuses a write timeout (its writes go to a socket)
                write_timeout=None if s.kind == "rfc2217" else 2.0,
                exclusive=True if s.kind == "serial" else None,
            )
        except serial.SerialException as exc:
            raise _translate_open_error(s, exc) from None
        except OSError as exc:
            raise _translate_open_error(s, exc) from None
        except termios.error as exc:  # not an OSError: tcsetattr refused the line settings
            raise _rejected_settings(s, exc.args[-1] if exc.args else str(exc)) from None
        if s.kind == "serial" and not _parity_applied(self._serial, s.parity):
            # A pty (or a driver without parity) may accept the first tcsetattr and drop the
            # parity bit silently; the next reconfigure (every read timeout) then fails.
            self.close()
            raise _rejected_settings(s, "parity not applied")
        sock = getattr(self._serial, "_socket", None)
        if sock is not None:
            # Without it Nagle holds a request back while the previous one (to a silent id)
            # is unacknowledged: ~20-40 ms, so its reply lands in the next request's window.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def retune(self, settings: ConnectionSettings) -> None:
        """See :meth:`Link.retune`; a port that rejects the settings is closed (LinkError)."""
        if settings.port != self.settings.port:
            raise ValueError("retune changes the line settings, not the port")
        self.settings = settings
        self._init_late()
        if self._serial is None:
            self.open()  # closed by an earlier refusal: does the port take these?
            return
        try:
            if isinstance(self._serial, serial.rfc2217.Serial):
                _rfc2217_retune(self._serial, settings)
            else:
                self._serial.apply_settings(
                    {
                        "baudrate": settings.baud,
                        "parity": settings.parity.upper(),
                        "stopbits": settings.stopbits,
                        "bytesize": settings.bytesize,
                    }
                )
            applied = settings.kind != "serial" or _parity_applied(self._serial, settings.parity)
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            self.close()
            raise _rejected_settings(settings, str(exc)) from None
        if not applied:
            self.close()
            raise _rejected_settings(settings, "parity not applied")

    def close(self) -> None:
        """Close the port."""
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None

    def late_waiting(self) -> bool:
        """See :meth:`Link.late_waiting`."""
        try:
            return self._serial is not None and bool(self._serial.in_waiting)
        except (serial.SerialException, OSError):
            return False

    def _flush_stale(self) -> bytes:
        """Drop bytes that arrived since the last transaction (a late reply, noise)."""
        stale = b""
        waiting = self._serial.in_waiting
        if waiting:
            stale = self._serial.read(waiting)
        if not isinstance(self._serial, serial.rfc2217.Serial):
            # (the RFC 2217 client waits for the server to confirm a purge: 50 ms or more per
            # request; reading what is waiting has emptied its buffer already)
            self._serial.reset_input_buffer()
        if stale and self._pending:
            for frame in _rtu_frames(stale):
                self._late_frame(frame, None)
        return stale

    def transact(self, request: ModbusPDU, timeout: float) -> Reply:
        """Send one RTU request and read its reply by length; see :meth:`Link.transact`."""
        if self._serial is None:
            self.open()
        ser = self._serial
        s = self.settings
        device_id = request.dev_id
        frame = self._framer.buildFrame(request)
        # The protocol's own silence (3.5 characters) since the last reply, plus any extra gap.
        silence = 3.5 * s.char_time + s.gap
        wait = self._last_rx_end + silence - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            stale = self._flush_stale()
            start = time.monotonic()
            ser.write(frame)
            if s.local_echo:
                echo = self._read_exact(len(frame), start + timeout)
                if echo != frame:
                    stale += echo
            reply = self._read_reply(device_id, request.function_code, frame, start, timeout)
            self._note_sent(device_id, reply, request.function_code, start)
        except serial.SerialException as exc:
            self.close()
            raise LinkError(f"{s.port}: connection lost ({exc}); check the adapter") from None
        except OSError as exc:
            self.close()
            raise LinkError(f"{s.port}: connection lost ({exc}); check the adapter") from None
        reply.stale = stale
        if reply.outcome is Outcome.TIMEOUT and not reply.received:
            # Nothing came back: the line has been silent since the request's last byte, so
            # the next request owes no further 3.5-character silence (a scan's silent ids
            # would otherwise pay it 243 times).
            self._last_rx_end = start + len(frame) * s.char_time
        else:
            self._last_rx_end = time.monotonic()
        return reply

    def _read_exact(self, size: int, deadline: float) -> bytes:
        """Read up to ``size`` bytes, returning early only at ``deadline``."""
        ser = self._serial
        buf = bytearray()
        while len(buf) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            _set_timeout(ser, remaining)
            chunk = ser.read(size - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _read_reply(
        self, device_id: int, function: int, sent: bytes, start: float, timeout: float
    ) -> Reply:
        wrong: Reply | None = None
        while True:
            reply = self._read_frame(device_id, function, sent, start, start + timeout)
            if reply.outcome is Outcome.WRONG_ID:
                if not self._late_frame(reply.received, time.monotonic()):
                    wrong = wrong or reply  # e.g. a late reply to another program's request
                continue  # not ours: keep listening for ours until the deadline
            if reply.outcome is Outcome.TIMEOUT and wrong is not None:
                wrong.rtt = reply.rtt
                return wrong
            return reply

    def _read_frame(
        self, device_id: int, function: int, sent: bytes, start: float, deadline: float
    ) -> Reply:
        head = self._read_exact(3, deadline)
        if len(head) < 3:
            rtt = time.monotonic() - start
            outcome = Outcome.TIMEOUT if not head else Outcome.CRC
            return Reply(outcome, rtt=rtt, sent=sent, received=head)
        length = _expected_rtu_length(head, function)
        if length is None or length > 256:
            # Not a frame we can size: collect what follows until a short silence, then
            # classify (almost always noise or a collision).
            rest = self._read_until_quiet(deadline)
            return _classify_rtu(head + rest, device_id, sent, time.monotonic() - start)
        # A reply whose first bytes came before the deadline is read whole: cut off at the
        # deadline, its tail would be flushed as noise and a slow meter's late reply lost.
        rest_time = (length - 3) * self.settings.char_time
        body = self._read_exact(length - 3, max(deadline, time.monotonic() + rest_time + 0.005))
        rtt = time.monotonic() - start
        received = head + body
        if len(received) < length:
            return Reply(Outcome.CRC, rtt=rtt, sent=sent, received=received)
        return _classify_rtu(received, device_id, sent, rtt)

    def drain_late(self, window: float) -> float | None:
        """See :meth:`Link.drain_late`."""
        if self._serial is None:
            return None
        start = time.monotonic()
        try:
            first = self._read_exact(1, start + window)
            if not first:
                return None
            arrived = time.monotonic()
            rest = self._read_until_quiet(time.monotonic() + window)
        except (serial.SerialException, OSError):
            return None  # the next transaction reports the broken link
        self._last_rx_end = time.monotonic()
        for frame in _rtu_frames(first + rest):
            # the frame ended about its own wire time after its first byte came
            self._late_frame(frame, arrived + (len(frame) - 1) * self.settings.char_time)
        return arrived - start

    def _read_until_quiet(self, deadline: float) -> bytes:
        ser = self._serial
        quiet = max(0.02, 10 * self.settings.char_time)
        buf = bytearray()
        while time.monotonic() < deadline:
            _set_timeout(ser, min(quiet, max(0.0, deadline - time.monotonic())))
            chunk = ser.read(256)
            if not chunk:
                break
            buf += chunk
        return bytes(buf)


class TcpLink(Link):
    """Modbus TCP (MBAP framing) with reconnect-and-retry on a closed connection."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        host, _, port = settings.port.removeprefix("tcp://").rpartition(":")
        if not host or not port.isdigit():
            raise LinkError(f"{settings.port}: expected tcp://HOST:PORT")
        self._address = (host, int(port))
        self._sock: socket.socket | None = None
        self._framer = FramerSocket(_DECODER)
        self._tid = 0
        self._init_late()
        # transaction id -> (device id, start, request length) of requests that timed out:
        # Modbus TCP names the request a reply answers, so a late one is known for sure
        self._timed_out: dict[int, tuple[int, float, int]] = {}

    @property
    def is_open(self) -> bool:
        """True while connected."""
        return self._sock is not None

    def expecting_late(self) -> bool:
        """See :meth:`Link.expecting_late`."""
        now = time.monotonic()
        for tid, (_dev, start, _chars) in list(self._timed_out.items()):
            if now - start > LATE_HORIZON:
                del self._timed_out[tid]
        return bool(self._timed_out) and self.is_open

    def owes_late(self, device_id: int) -> bool:
        """Never: a late Modbus TCP reply carries its request's transaction id."""
        return False

    def late_waiting(self) -> bool:
        """See :meth:`Link.late_waiting`."""
        if self._sock is None:
            return False
        try:
            return bool(select.select([self._sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def _tcp_late(self, tid: int, frame: bytes, end: float) -> None:
        entry = self._timed_out.pop(tid, None)
        if entry is not None:
            device_id, start, chars = entry
            code = frame[8] if len(frame) > 8 and frame[7] & 0x80 else None
            self._late.append(LateReply(device_id, end - start, chars, frame, code))

    def open(self) -> None:
        """Connect to the Modbus TCP server."""
        if self._sock is not None:
            return
        try:
            self._sock = socket.create_connection(self._address, timeout=3.0)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise LinkError(
                f"{self.settings.port}: cannot connect ({exc.strerror or exc}); "
                "check the address and that the gateway is on"
            ) from None

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def transact(self, request: ModbusPDU, timeout: float) -> Reply:
        """Send one Modbus TCP request; reconnect once if the server had closed."""
        for attempt in (1, 2):
            try:
                return self._transact_once(request, timeout)
            except (OSError, _Closed) as exc:  # closed, reset, unreachable, no route...
                self.close()
                if attempt == 2:
                    reason = "closed the connection" if isinstance(exc, _Closed) else str(exc)
                    raise LinkError(f"{self.settings.port}: {reason}") from exc
                self.open()
        raise AssertionError("unreachable")

    def _transact_once(self, request: ModbusPDU, timeout: float) -> Reply:
        if self._sock is None:
            self.open()
        sock = self._sock
        assert sock is not None
        self._tid = self._tid % 65535 + 1
        request.transaction_id = self._tid
        frame = self._framer.buildFrame(request)
        start = time.monotonic()
        deadline = start + timeout
        sock.settimeout(0)
        try:  # drop a late reply to an earlier request
            while sock.recv(4096):
                pass
        except BlockingIOError:
            pass
        sock.settimeout(None)
        sock.sendall(frame)
        while True:
            header = self._recv_exact(sock, 7, deadline)
            if len(header) < 7:
                self._timed_out[self._tid] = (request.dev_id, start, len(frame) - 4)
                return Reply(Outcome.TIMEOUT, rtt=time.monotonic() - start, sent=frame)
            tid, _pid, length, unit = struct.unpack(">HHHB", header)
            body = self._recv_exact(sock, length - 1, deadline)
            rtt = time.monotonic() - start
            if len(body) < length - 1:
                return Reply(Outcome.TIMEOUT, rtt=rtt, sent=frame, received=header + body)
            if tid != self._tid:
                self._tcp_late(tid, header + body, time.monotonic())
                continue  # a late answer to an earlier request
            if unit != request.dev_id:
                return Reply(
                    Outcome.WRONG_ID, rtt=rtt, sent=frame, received=header + body, other_id=unit
                )
            return _reply_from_pdu_bytes(body, frame, header + body, rtt)

    def drain_late(self, window: float) -> float | None:
        """See :meth:`Link.drain_late`."""
        sock = self._sock
        if sock is None:
            return None
        start = time.monotonic()
        try:
            header = self._recv_exact(sock, 7, start + window)
            if len(header) < 7:
                return None
            arrived = time.monotonic()
            tid, _pid, length, _unit = struct.unpack(">HHHB", header)
            body = self._recv_exact(sock, length - 1, arrived + 1.0)
        except (OSError, _Closed):
            self.close()  # the next transaction reconnects
            return None
        self._tcp_late(tid, header + body, time.monotonic())
        return arrived - start

    @staticmethod
    def _recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(size - len(buf))
            except TimeoutError:
                break
            if not chunk:
                raise _Closed
            buf += chunk
        return bytes(buf)


class _Closed(Exception):
    """The peer closed the TCP connection."""


def _rfc2217_retune(ser: Any, s: ConnectionSettings) -> None:
    """Send new line settings to an RFC 2217 server and wait for its acknowledgements.

    pyserial's own path (``apply_settings``) sleeps 50 ms before looking for the answers and
    another 50 ms re-sending the flow control: 0.1 s per change, which serial-settings
    detection (dozens of changes) would pay over and over. This sends the same four
    COM-PORT-OPTION requests and polls for the answers every millisecond.
    """
    r = serial.rfc2217
    ser._baudrate, ser._bytesize = s.baud, s.bytesize
    ser._parity, ser._stopbits = s.parity.upper(), s.stopbits
    options = ser._rfc2217_port_settings
    options["baudrate"].set(struct.pack("!I", s.baud))
    options["datasize"].set(struct.pack("!B", s.bytesize))
    options["parity"].set(struct.pack("!B", r.RFC2217_PARITY_MAP[s.parity.upper()]))
    options["stopsize"].set(struct.pack("!B", r.RFC2217_STOPBIT_MAP[s.stopbits]))
    deadline = time.monotonic() + max(1.0, float(ser._network_timeout))
    while not all(o.active for o in options.values()):
        if time.monotonic() > deadline:
            raise serial.SerialException("the server did not accept the new line settings")
        time.sleep(0.001)


def _set_timeout(ser: Any, timeout: float) -> None:
    """Set a pyserial port's read timeout.

    pyserial's RFC 2217 client renegotiates every line setting with the server, and sleeps at
    least 50 ms, whenever ``timeout`` is assigned; its ``read`` only consults ``_timeout``, so
    that is set directly there (every other port: the public property, a cheap tcsetattr).
    """
    if isinstance(ser, serial.rfc2217.Serial):
        ser._timeout = timeout
    else:
        ser.timeout = timeout


def open_link(settings: ConnectionSettings) -> Link:
    """Create (not yet open) the link for ``settings.port``."""
    if settings.kind == "tcp":
        return TcpLink(settings)
    return RtuLink(settings)


def _translate_open_error(s: ConnectionSettings, exc: BaseException) -> LinkError:
    """Turn an error from opening the port into advice a technician can act on."""
    err = getattr(exc, "errno", None)
    text = str(exc)
    if s.kind in ("socket", "rfc2217"):
        return LinkError(f"{s.port}: cannot connect ({text}); is the simulator or gateway running?")
    if err == errno.ENOENT or "No such file" in text:
        return PortNotFound(describe_missing_port(s.port))
    if err in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return PortPermission(
            f"{s.port}: permission denied. Add yourself to the port's group "
            f"(usually dialout): sudo usermod -aG dialout $USER, then log out and back in"
        )
    if err in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        holder = who_holds(s.port)
        who = f"in use by {holder}" if holder else "in use by another program"
        return PortBusy(f"{s.port}: {who}; stop it (or its service) and try again")
    if err == errno.EINVAL or "Invalid argument" in text:
        return _rejected_settings(s, text)
    return LinkError(f"{s.port}: cannot open ({text})")


def _rejected_settings(s: ConnectionSettings, reason: str) -> PortSettingsRejected:
    """The advice for a port that refuses the line settings (a pty and parity E or O)."""
    return PortSettingsRejected(
        f"{s.port}: the port rejected the line settings "
        f"{s.baud} {s.bytesize}{s.parity.upper()}{s.stopbits} ({reason}); "
        "use the baud, parity and stop bits the adapter supports (a pty accepts only "
        "--parity N)"
    )


def _parity_applied(port: Any, parity: str) -> bool:
    """True when the device's termios parity bits say what was asked for (or cannot be read)."""
    fd = getattr(port, "fd", None)
    if not isinstance(fd, int):
        return True
    try:
        cflag = termios.tcgetattr(fd)[2]
    except (termios.error, OSError):
        return True  # nothing to compare: the first transaction reports a broken port
    wanted = parity.upper()
    if wanted == "N":
        return not cflag & termios.PARENB
    odd = bool(cflag & termios.PARODD)
    return bool(cflag & termios.PARENB) and odd == (wanted == "O")
