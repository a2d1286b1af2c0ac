"""One simulated EM6400NG: a register image served from a pump model through the real maps.

Why this module exists: the bus (``emtui.sim.bus``) only moves frames; what a meter answers to
a request — values, N/A sentinels, exceptions for reads it cannot serve, and the few writes it
accepts — is decided here, once, so every transport (pty, ``socket://``, ``tcp://``) and every
test agrees. Values are encoded with :mod:`emtui.core.maps.codec`, the same code the tool decodes
with, from the register map the tool reads with; nothing here knows a register number.

Addresses are wire (PDU) addresses, 0-based: register 3110 is address 3109.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import threading
from collections.abc import Callable, Mapping, Sequence

from emtui.core.maps.codec import encode
from emtui.core.maps.registers import RegisterEntry, RegisterMap
from emtui.sim.commands import SEMAPHORE_ADDRESS, CommandInterface
from emtui.sim.pump import LEADING_SUFFIX, Clock, PumpModel, QValue, bind_map, resolve
from emtui.sim.wiring import Wiring

__all__ = [
    "COMMAND_AREAS",
    "COMMAND_READ_AREAS",
    "DEVICE_FAILURE",
    "ILLEGAL_ADDRESS",
    "ILLEGAL_FUNCTION",
    "ILLEGAL_VALUE",
    "ModbusExceptionReply",
    "SimulatedMeter",
    "WriteHook",
]

ILLEGAL_FUNCTION = 0x01
"""Exception 01: the meter does not support the function code."""
ILLEGAL_ADDRESS = 0x02
"""Exception 02: the address range is not served (unmapped, or not writable)."""
ILLEGAL_VALUE = 0x03
"""Exception 03: a bad quantity (count 0, more than the block size, a malformed write)."""
DEVICE_FAILURE = 0x04
"""Exception 04: the device failed to perform the request."""

COMMAND_AREAS: tuple[tuple[int, int], ...] = ((5000, 5125), (5250, 5374), (5680, 5680))
"""Register ranges (1-based, inclusive) that accept FC16/FC06 writes: the protected command
interface block, the unprotected one, and the semaphore register (written back to release
it). Writes land in :attr:`SimulatedMeter.scratch`; everything else is setup (RWC) or read only
and answers exception 02."""

COMMAND_READ_AREAS: tuple[tuple[int, int], ...] = ((5000, 5249), (5250, 5499), (5680, 5680))
"""Register ranges (1-based, inclusive) of the command interfaces a read serves: command,
parameters, status, result and result data of both interfaces, and the semaphore."""

WriteHook = Callable[["SimulatedMeter", int, list[int]], None]
"""Called after a write is stored: (meter, first wire address, registers written)."""
ReaddressHook = Callable[["SimulatedMeter", int, int], None]
"""Called when a communications setup moved the meter: (meter, old id, new id)."""

_CLOCK_PREFIX = "meter_clock_"
_CLOCK_FIELDS = ("year", "month", "day", "hour", "minute", "second", "millisecond")

_BAUD_CODES = {4800: 0, 9600: 1, 19200: 2, 38400: 3}
_PARITY_CODES = {"E": 0, "O": 1, "N": 2}


class ModbusExceptionReply(Exception):
    """The meter answers the request with a Modbus exception.

    Attributes:
        code: the exception code (1 illegal function, 2 illegal address, 3 illegal value,
            4 device failure, ...).
    """

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"Modbus exception {code:02d}")
        self.code = code


class SimulatedMeter:
    """An EM6400NG (or legacy EM6400) answering reads and writes from a pump model.

    Args:
        device_id: the Modbus slave id (also served as the RS-485 address entry).
        rmap: the register map to serve (``load_map("em6400ng")``, the legacy map, a user map).
        pump: where the values come from.
        clock: epoch seconds for the refresh cadence; defaults to the pump's clock.
        refresh: the image is rebuilt at most this often (seconds of clock time).
        strict_gaps: any unmapped register in a read answers exception 02 (by default
            unmapped registers read 0xFFFF and only an all-unmapped read answers 02).
        force_exception: answer every request with this exception code (a device that only
            answers with exceptions), or None.
        writable: register ranges (1-based, inclusive) that accept writes.
        on_write: called after each accepted write (for command-interface work).
        baud, parity: the serial settings the meter reports in its communications entries
            (and, after a communications setup, its new ones).

    The command interface (:mod:`emtui.sim.commands`) runs in :attr:`commands`: a
    communications setup changes :attr:`device_id`, :attr:`baud` and :attr:`parity` once the
    write has been stored (the reply to the write is built from the request, so it still
    comes from the old address, as the meter's does) and calls :attr:`on_readdress`, which
    the bus uses to serve the meter at its new id; a clock set keeps the meter's clock as an
    offset from the clock.
    """

    def __init__(
        self,
        device_id: int,
        rmap: RegisterMap,
        pump: PumpModel,
        *,
        clock: Clock | None = None,
        refresh: float = 0.1,
        strict_gaps: bool = False,
        force_exception: int | None = None,
        writable: Sequence[tuple[int, int]] = COMMAND_AREAS,
        on_write: WriteHook | None = None,
        baud: int = 19200,
        parity: str = "E",
    ) -> None:
        self.device_id = device_id
        self.rmap = rmap
        self.pump = pump
        self.clock: Clock = clock if clock is not None else pump.clock
        self.refresh = refresh
        self.strict_gaps = strict_gaps
        self.force_exception = force_exception
        self.writable = tuple(writable)
        self.on_write = on_write
        self.baud = baud
        self.parity = parity.upper()
        self.on_readdress: ReaddressHook | None = None
        self.clock_offset: float | None = None
        """Seconds the meter's (local) clock is ahead of ``clock`` after a clock set."""
        self.commands = CommandInterface(self._apply_settings, self._set_clock, seed=device_id)
        self.scratch: dict[int, int] = {}
        """Registers written to the command areas, by wire address (unwritten ones read 0)."""
        self.overrides: dict[str, QValue] = {
            "rs485_protocol": 0,
            "rs485_address": device_id,
            "rs485_baud_rate": _BAUD_CODES.get(baud, 0xFFFF),
            "rs485_parity": _PARITY_CODES.get(parity.upper(), 0xFFFF),
        }
        """Entry name → value served instead of the pump's (comms settings, pinned values)."""
        self._lock = threading.Lock()
        self._entries: tuple[RegisterEntry, ...] = tuple(
            sorted(rmap.entries, key=lambda e: e.address)
        )
        self._starts = [e.address for e in self._entries]
        self._binding = bind_map(rmap)
        self._stamp: float | None = None
        self._quantities: Mapping[str, QValue] = {}
        self._words: dict[int, list[int]] = {}
        self._writable_addresses = [(lo - 1, hi - 1) for lo, hi in self.writable]
        # reads see the whole command interface (status and result too) when it is writable
        readable = self.writable
        if all(area in self.writable for area in COMMAND_AREAS):
            extra = tuple(a for a in self.writable if a not in COMMAND_AREAS)
            readable = COMMAND_READ_AREAS + extra
        self._readable_addresses = [(lo - 1, hi - 1) for lo, hi in readable]

    # -- values -------------------------------------------------------------------------------

    def _fresh(self) -> None:
        """Take new quantities from the pump when the image is older than ``refresh``."""
        now = self.clock()
        stamp = self._stamp
        if stamp is not None and (self.pump.frozen or 0.0 <= now - stamp < self.refresh):
            return
        self._quantities = self.pump.quantities()
        self._stamp = now
        self._words.clear()

    def invalidate(self) -> None:
        """Forget the cached image so the next read takes fresh values (after a change)."""
        with self._lock:
            self._stamp = None
            self._words.clear()

    def set_wiring(self, wiring: Wiring) -> None:
        """Install this meter with the wiring faults ``wiring`` (``emtui sim --wiring``)."""
        self.pump.set_wiring(wiring)
        self.invalidate()

    def value(self, name: str) -> QValue:
        """The value entry ``name`` is served with right now (None = N/A)."""
        with self._lock:
            self._fresh()
            return self._value(name)

    def _value(self, name: str) -> QValue:
        if name in self.overrides:
            return self.overrides[name]
        if self.clock_offset is not None and name.startswith(_CLOCK_PREFIX):
            now = _dt.datetime.fromtimestamp(self.clock() + self.clock_offset)
            field = name.removeprefix(_CLOCK_PREFIX)
            return now.microsecond // 1000 if field == "millisecond" else getattr(now, field)
        return resolve(self._quantities, self._binding.get(name))

    # -- the command interface's effects ------------------------------------------------------

    def _set_clock(self, moment: _dt.datetime) -> None:
        """Command 1003: the meter's clock reads ``moment`` (local time) from now on."""
        self.clock_offset = moment.timestamp() - self.clock()
        self.invalidate()

    def _apply_settings(self, address: int, baud: int, parity: str) -> None:
        """Command 5000: answer at ``address``, ``baud``, ``parity`` from now on."""
        old = self.device_id
        self.device_id = address
        self.baud = baud
        self.parity = parity
        self.overrides.update(
            rs485_address=address,
            rs485_baud_rate=_BAUD_CODES.get(baud, 0xFFFF),
            rs485_parity=_PARITY_CODES.get(parity, 0xFFFF),
        )
        self.invalidate()
        if self.on_readdress is not None:  # the bus moves it (id and line settings)
            self.on_readdress(self, old, address)

    def _encoded(self, index: int) -> list[int]:
        words = self._words.get(index)
        if words is None:
            entry = self._entries[index]
            na = self.rmap.na_value(entry)
            value = self._value(entry.name)
            leading = False
            how = self._binding.get(entry.name)
            if entry.type == "pf4q" and how is not None:
                leading = bool(self._quantities.get(how[0] + LEADING_SUFFIX))
            try:
                words = encode(entry, value, na, leading=leading)
            except ValueError:
                # Out of range for the type, or N/A with no sentinel: serve the type's N/A.
                try:
                    words = encode(entry, None, na)
                except ValueError:
                    fill = 0 if entry.type == "string" else 0xFFFF
                    words = [fill] * entry.count
            self._words[index] = words
        return words

    # -- requests -----------------------------------------------------------------------------

    def _in_writable(self, address: int, count: int) -> bool:
        last = address + count - 1
        return any(lo <= address and last <= hi for lo, hi in self._writable_addresses)

    def _readable_overlap(self, address: int, end: int) -> list[tuple[int, int]]:
        return [
            (max(lo, address), min(hi + 1, end))
            for lo, hi in self._readable_addresses
            if lo < end and hi >= address
        ]

    def read(
        self, function: int, address: int, count: int, *, strict_gaps: bool | None = None
    ) -> list[int]:
        """The registers a read of ``count`` registers at wire ``address`` returns.

        ``strict_gaps`` overrides the meter's own setting for this request.

        Raises:
            ModbusExceptionReply: 01 for a function the map does not read with; 03 for a count
                of 0 or above the map's block size; 02 for a range past 65535, for a read of no
                mapped register at all, or (strict gaps) for any unmapped register in it; the
                forced code when the meter answers only with exceptions.
        """
        if self.force_exception is not None:
            raise ModbusExceptionReply(self.force_exception)
        if function != self.rmap.function:
            raise ModbusExceptionReply(ILLEGAL_FUNCTION, f"function {function} not supported")
        if not 1 <= count <= self.rmap.block_size:
            raise ModbusExceptionReply(
                ILLEGAL_VALUE, f"count {count} outside 1-{self.rmap.block_size}"
            )
        end = address + count
        if address < 0 or end > 0x10000:
            raise ModbusExceptionReply(ILLEGAL_ADDRESS, "range past the last register")
        strict = self.strict_gaps if strict_gaps is None else strict_gaps
        with self._lock:
            self._fresh()
            out = [0xFFFF] * count
            mapped = 0
            i = max(bisect.bisect_right(self._starts, address) - 1, 0)
            entries = self._entries
            while i < len(entries) and entries[i].address < end:
                entry = entries[i]
                lo = max(entry.address, address)
                hi = min(entry.address + entry.count, end)
                if lo < hi:
                    words = self._encoded(i)
                    if self.clock_offset is not None and entry.name.startswith(_CLOCK_PREFIX):
                        del self._words[i]  # the set clock ticks even when values are frozen
                    out[lo - address : hi - address] = words[
                        lo - entry.address : hi - entry.address
                    ]
                    mapped += hi - lo
                i += 1
            for lo, hi in self._readable_overlap(address, end):
                for a in range(lo, hi):
                    special = self.commands.reads(a)
                    if a == SEMAPHORE_ADDRESS:
                        special = self.commands.take()
                    out[a - address] = self.scratch.get(a, 0) if special is None else special
                mapped += hi - lo
        if mapped == 0:
            raise ModbusExceptionReply(ILLEGAL_ADDRESS, "no mapped register in the range")
        if strict and mapped < count:
            raise ModbusExceptionReply(ILLEGAL_ADDRESS, "unmapped registers in the range")
        return out

    def write(self, address: int, registers: Sequence[int]) -> None:
        """Store a FC16/FC06 write of ``registers`` at wire ``address`` in the command area.

        Raises:
            ModbusExceptionReply: the forced code; 02 when any register written lies outside
                :attr:`writable` (setup registers change only through the command interface).
        """
        if self.force_exception is not None:
            raise ModbusExceptionReply(self.force_exception)
        values = [int(r) & 0xFFFF for r in registers]
        if not values or not self._in_writable(address, len(values)):
            raise ModbusExceptionReply(ILLEGAL_ADDRESS, "registers not writable")
        with self._lock:
            for offset, value in enumerate(values):
                self.scratch[address + offset] = value
        after = self.commands.written(address, values)
        if self.on_write is not None:
            self.on_write(self, address, values)
        if after is not None:
            after()
