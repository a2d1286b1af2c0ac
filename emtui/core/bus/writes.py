"""Safe writes (design §12): refused unless allowed, shown field by field, audited.

Why this module exists: a write is the one thing emtui does that can take a meter off the bus
or change what it measures, so every write — a raw register or coil write, a command of the
EM6400NG's command interface, a clock set — goes through the same few steps here:

1. :func:`check_allowed`: nothing is written unless the program was started with
   ``--allow-writes``, and never to id 0 (a broadcast: on the command interface it would
   re-address every meter on the bus at once);
2. :func:`describe_frame`: the exact RTU frame, in hex, each field named, for the technician
   to confirm before it is sent;
3. :class:`AuditLog`: every attempt and its outcome, one JSON line in
   ``<state-dir>/audit.log`` (append-only); a write whose line cannot be recorded is not sent;
4. :func:`send_write`: through the connection's arbiter at write priority, never retried
   (a repeated command is not harmless: a re-address already took effect).

Addresses are wire (PDU) addresses, 0-based: register 5000 is address 4999.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import WriteMultipleCoilsRequest, WriteSingleCoilRequest
from pymodbus.pdu.register_message import (
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.link import Outcome, Reply
from emtui.core.maps.codec import int_to_registers

__all__ = [
    "AUDIT_FILE",
    "ENCODINGS",
    "FUNCTION_NAMES",
    "AuditLog",
    "FrameField",
    "WriteRefused",
    "WriteRequest",
    "WriteResult",
    "build_request",
    "check_allowed",
    "describe_frame",
    "encode_values",
    "exception_hint",
    "format_frame",
    "send_write",
]

_log = logging.getLogger(__name__)

AUDIT_FILE = "audit.log"
"""The audit log's name in the state dir."""

FUNCTION_NAMES: dict[int, str] = {
    5: "Write Single Coil",
    6: "Write Single Register",
    15: "Write Multiple Coils",
    16: "Write Multiple Registers",
}
"""The write function codes emtui sends. The EM6400NG documents only FC16 (FC06 is offered
only as an explicit choice; coils only for meters that have them)."""

ENCODINGS: dict[str, tuple[int, bool, bool]] = {
    "uint16": (1, False, False),
    "int16": (1, True, False),
    "uint32": (2, False, False),
    "int32": (2, True, False),
    "float32": (2, True, True),
    "uint64": (4, False, False),
    "int64": (4, True, False),
    "float64": (4, True, True),
}
"""Value type → (registers per value, signed, floating point)."""

_ORDERS: dict[str, tuple[str, str]] = {
    "ABCD": ("big", "big"),
    "CDAB": ("little", "big"),
    "BADC": ("big", "little"),
    "DCBA": ("little", "little"),
}


class WriteRefused(Exception):
    """A write that must not be sent (not allowed, id 0, not confirmed); exit code 2."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write on the wire.

    Attributes:
        device_id: the slave id (1-247; never 0).
        function: 5, 6, 15 or 16.
        address: the first wire address (0-based) of the registers or coils.
        values: register values (0-65535) for FC06/FC16, 0/1 for FC05/FC15.
        purpose: what the write is for (audit log and screens), e.g. ``raw`` or
            ``command 5000 (communications setup)``.
    """

    device_id: int
    function: int
    address: int
    values: tuple[int, ...]
    purpose: str = "raw"

    def __post_init__(self) -> None:
        if self.function not in FUNCTION_NAMES:
            raise ValueError(f"function {self.function} is not a write (5, 6, 15 or 16)")
        if not 0 <= self.address <= 0xFFFF:
            raise ValueError(f"address {self.address} outside 0-65535")
        if not self.values:
            raise ValueError("nothing to write")
        if self.function in (5, 6) and len(self.values) != 1:
            raise ValueError(f"function {self.function} writes exactly one value")
        coils = self.function in (5, 15)
        limit = 1968 if coils else 123
        if len(self.values) > limit:
            raise ValueError(f"function {self.function} writes at most {limit} values")
        for value in self.values:
            if coils and value not in (0, 1):
                raise ValueError(f"a coil is 0 or 1, not {value}")
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"a register holds 0-65535, not {value}")
        if self.address + len(self.values) > 0x10000:
            raise ValueError("the write runs past address 65535")

    @property
    def register(self) -> int:
        """The vendor's 1-based number of the first register or coil."""
        return self.address + 1

    def pdu(self) -> ModbusPDU:
        """The pymodbus request PDU."""
        values = list(self.values)
        if self.function == 16:
            return WriteMultipleRegistersRequest(
                address=self.address, registers=values, dev_id=self.device_id
            )
        if self.function == 6:
            return WriteSingleRegisterRequest(
                address=self.address, registers=values, dev_id=self.device_id
            )
        if self.function == 15:
            return WriteMultipleCoilsRequest(
                address=self.address, bits=[bool(v) for v in values], dev_id=self.device_id
            )
        return WriteSingleCoilRequest(
            address=self.address, bits=[bool(values[0])], dev_id=self.device_id
        )

    def frame(self) -> bytes:
        """The exact RTU frame (id, PDU, CRC) that goes on the wire."""
        return bytes(FramerRTU(DecodePDU(is_server=False)).buildFrame(self.pdu()))


@dataclass(frozen=True, slots=True)
class FrameField:
    """One named field of a frame: its bytes and what they mean."""

    name: str
    data: bytes
    meaning: str

    @property
    def hex(self) -> str:
        """The bytes as spaced hex, e.g. ``13 88``."""
        return self.data.hex(" ").upper()


def describe_frame(request: WriteRequest) -> list[FrameField]:
    """The frame of ``request`` split into named fields, in wire order.

    The concatenated fields are exactly :meth:`WriteRequest.frame`.
    """
    frame = request.frame()
    fc = request.function
    fields = [
        FrameField("slave id", frame[0:1], str(request.device_id)),
        FrameField("function", frame[1:2], f"{fc:02d} {FUNCTION_NAMES[fc]}"),
        FrameField(
            "address",
            frame[2:4],
            f"{request.address} ({'coil' if fc in (5, 15) else 'register'} {request.register})",
        ),
    ]
    pos = 4
    if fc == 5:
        value = request.values[0]
        fields.append(FrameField("value", frame[4:6], "ON" if value else "OFF"))
        pos = 6
    elif fc == 6:
        fields.append(FrameField("value", frame[4:6], str(request.values[0])))
        pos = 6
    else:
        count = len(request.values)
        what = "coils" if fc == 15 else "registers"
        if count == 1:
            what = what[:-1]
        fields.append(FrameField("quantity", frame[4:6], f"{count} {what}"))
        nbytes = frame[6]
        fields.append(FrameField("byte count", frame[6:7], str(nbytes)))
        pos = 7
        if fc == 15:
            bits = "".join(str(v) for v in request.values)
            fields.append(FrameField("coil values", frame[7 : 7 + nbytes], bits))
            pos += nbytes
        else:
            for i, value in enumerate(request.values):
                register = request.register + i
                fields.append(FrameField(f"register {register}", frame[pos : pos + 2], str(value)))
                pos += 2
    fields.append(FrameField("CRC", frame[pos : pos + 2], "checksum"))
    return fields


def format_frame(request: WriteRequest, labels: Sequence[str] | None = None) -> list[str]:
    """Lines showing the frame: the whole frame in hex, then one line per field.

    ``labels`` (one per register written) name what each register means, e.g. the command
    interface's ``semaphore``, ``baud code``.
    """
    fields = describe_frame(request)
    lines = [
        f"write to id {request.device_id}: {FUNCTION_NAMES[request.function]} "
        f"(FC{request.function:02d}), {request.purpose}",
        f"  frame: {request.frame().hex(' ').upper()}",
    ]
    width = max(len(f.name) for f in fields)
    register_index = 0
    for f in fields:
        meaning = f.meaning
        if f.name.startswith("register ") and labels is not None:
            if register_index < len(labels) and labels[register_index]:
                meaning = f"{meaning:>6}  {labels[register_index]}"
            register_index += 1
        lines.append(f"  {f.name:<{width}}  {f.hex:<11}  {meaning}")
    return lines


def encode_values(texts: Sequence[str], kind: str = "uint16", order: str = "ABCD") -> list[int]:
    """Register values carrying the numbers ``texts`` as ``kind`` in word/byte ``order``.

    ``order`` is the raw view's label: ABCD big-endian, CDAB word swap, BADC byte swap,
    DCBA little-endian (for one-register types only the byte order matters).

    Raises:
        ValueError: an unknown type or order, a text that is not a number, or a number that
            does not fit the type.
    """
    if kind not in ENCODINGS:
        raise ValueError(f"unknown type {kind!r}: one of {', '.join(ENCODINGS)}")
    if order.upper() not in _ORDERS:
        raise ValueError(f"unknown order {order!r}: one of {', '.join(_ORDERS)}")
    word_order, byte_order = _ORDERS[order.upper()]
    count, signed, floating = ENCODINGS[kind]
    bits = 16 * count
    out: list[int] = []
    for text in texts:
        text = text.strip()
        if floating:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
            fmt = ">f" if count == 2 else ">d"
            try:
                raw = int.from_bytes(struct.pack(fmt, number), "big")
            except (OverflowError, struct.error):
                raise ValueError(f"{text} is out of range for {kind}") from None
        else:
            try:
                integer = int(text, 0)
            except ValueError:
                raise ValueError(f"{text!r} is not a whole number (hex as 0x…)") from None
            low = -(1 << (bits - 1)) if signed else 0
            high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
            if not low <= integer <= high:
                raise ValueError(f"{integer} is out of range for {kind} ({low}..{high})")
            raw = integer & ((1 << bits) - 1)
        out.extend(int_to_registers(raw, count, word_order, byte_order))
    return out


def build_request(
    device_id: int,
    function: int,
    address: int,
    texts: Sequence[str],
    kind: str = "uint16",
    order: str = "ABCD",
    purpose: str = "raw",
) -> WriteRequest:
    """The write of the numbers ``texts`` (``emtui write`` and the app's write dialog):
    coils (FC05/FC15) take 0/1/on/off, registers (FC06/FC16) ``kind`` in ``order``.

    Raises:
        ValueError: a value that does not fit, or a function that cannot carry it (FC06 and
            FC05 write one register or coil).
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("give a value (several separated by commas)")
    if function in (5, 15):
        values = []
        for text in texts:
            word = text.strip().lower()
            if word not in ("0", "1", "on", "off", "true", "false"):
                raise ValueError(f"a coil value is 0 or 1 (on/off), not {text!r}")
            values.append(1 if word in ("1", "on", "true") else 0)
    else:
        values = encode_values(texts, kind, order)
    if function == 6 and len(values) != 1:
        raise ValueError(f"FC06 writes one register; {kind} needs {len(values)}: use FC16")
    if function == 5 and len(values) != 1:
        raise ValueError("FC05 writes one coil: use FC15 for several")
    return WriteRequest(device_id, function, address, tuple(values), purpose=purpose)


def exception_hint(code: int | None) -> str:
    """What a write's exception code most likely means here ('' when nothing useful)."""
    if code == 1:
        return " (illegal function: the meter does not support this function code)"
    if code == 2:
        return (
            " (illegal address: not writable; EM6400NG setup registers change only through "
            "the command interface: emtui setup)"
        )
    if code == 3:
        return " (illegal value)"
    return ""


def check_allowed(allow_writes: bool, device_id: int) -> None:
    """Refuse a write before anything goes on the wire.

    Raises:
        WriteRefused: ``--allow-writes`` not given, or id 0 (broadcast).
    """
    if device_id == 0:
        raise WriteRefused(
            "never writing to id 0: a broadcast reaches every meter on the bus at once "
            "(a command would re-address all of them); give the meter's own id"
        )
    if not allow_writes:
        raise WriteRefused(
            "writes are refused unless emtui is started with --allow-writes (nothing was sent)"
        )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())


class AuditLog:
    """The append-only audit log of write attempts: one JSON line each.

    Each line holds ``time`` (local ISO-8601 with offset), ``user``, ``port``, ``id``,
    ``function``, ``address``, ``register``, ``values``, ``frame`` (hex), ``purpose`` and
    ``outcome`` (``ok``, ``exception:NN``, ``timeout``, ``refused: …`` …), plus ``detail``.
    Lines are written with O_APPEND and fsync'd: a record survives a power cut once the
    write has been reported.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / AUDIT_FILE

    def record(
        self, port: str, request: WriteRequest, outcome: str, detail: str = ""
    ) -> dict[str, Any]:
        """Append one line; returns it. Raises OSError when the log cannot be written."""
        line: dict[str, Any] = {
            "time": _dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "user": _user(),
            "port": port,
            "id": request.device_id,
            "function": request.function,
            "address": request.address,
            "register": request.register,
            "values": list(request.values),
            "frame": request.frame().hex(" ").upper(),
            "purpose": request.purpose,
            "outcome": outcome,
        }
        if detail:
            line["detail"] = detail
        self._append(line)
        return line

    def record_refusal(self, port: str, device_id: int, purpose: str, why: str) -> None:
        """Append a line for an attempt refused before its frame existed (``emtui setup`` or
        ``clock --set`` without ``--allow-writes``: no semaphore, so no command block):
        ``function``, ``address``, ``values`` and ``frame`` are null. Raises OSError."""
        line: dict[str, Any] = {
            "time": _dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "user": _user(),
            "port": port,
            "id": device_id,
            "function": None,
            "address": None,
            "register": None,
            "values": None,
            "frame": None,
            "purpose": purpose,
            "outcome": f"refused: {why}",
        }
        self._append(line)

    def _append(self, line: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def check_writable(self) -> None:
        """Raise OSError when the audit log cannot be appended to (checked before a write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.close(fd)

    def lines(self) -> list[dict[str, Any]]:
        """Every recorded line (oldest first); [] when there is no log."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What became of one write.

    Attributes:
        request: the write.
        reply: the arbiter's reply (outcome, exception code, bytes).
        outcome: the audit log's word for it: ``ok``, ``exception:NN``, ``timeout``, ``crc``,
            ``wrong_id``, ``error: …`` (the link failed).
    """

    request: WriteRequest
    reply: Reply | None
    outcome: str

    @property
    def ok(self) -> bool:
        """True when the meter acknowledged the write."""
        return self.outcome == "ok"


def outcome_text(reply: Reply) -> str:
    """The audit word for a reply."""
    if reply.outcome is Outcome.EXCEPTION:
        return f"exception:{reply.exception_code or 0:02d}"
    return str(reply.outcome)


def send_write(
    arbiter: BusArbiter,
    request: WriteRequest,
    audit: AuditLog,
    *,
    timeout: float | None = None,
) -> WriteResult:
    """Send one write at write priority (no retry) and record the attempt in ``audit``.

    The caller has checked :func:`check_allowed` and had the frame confirmed. The audit log is
    checked for writability first: a write that cannot be recorded is not sent (OSError).
    """
    check_allowed(True, request.device_id)
    audit.check_writable()
    try:
        reply = arbiter.submit(
            request.device_id,
            request.pdu(),
            priority=Priority.WRITE,
            retries=0,
            timeout=timeout,
        ).result()
    except Exception as exc:  # the link failed: record it, then let the caller report it
        audit.record(arbiter.settings.port, request, f"error: {exc}")
        raise
    outcome = outcome_text(reply)
    try:
        audit.record(arbiter.settings.port, request, outcome)
    except OSError as exc:  # checked writable just before: say so, but report the write
        _log.warning("the write was sent (%s) but its audit line was not written: %s", outcome, exc)
    return WriteResult(request, reply, outcome)
