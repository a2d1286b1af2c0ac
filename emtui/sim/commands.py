"""The EM6400NG command interface, as a simulated meter runs it (design §12, Build facts).

Why this module exists: setup registers (RWC) change only through the command interface, and
emtui's ``setup`` and ``clock --set`` must be tested against something that behaves like the
meter, including the ways it says no:

1. a read of register 5680 (wire 5679) hands out a semaphore, a non-zero number; while one is
   held, a read returns 0 ("another master holds it"); it is freed when written back to 5680
   or after :data:`SEMAPHORE_TIMEOUT` seconds without command activity;
2. ONE FC16 block at register 5000 (wire 4999): ``[command, semaphore, p2, p3, …]`` — the
   Commands table's parameter (n) lands at register 5000 + n;
3. register 5125 (status) reads 0 while the command runs and the command number when done;
   5126 (result) 0 for a valid operation, else an error code (:data:`RESULT_CODES`);
4. the unprotected interface at 5250 works the same with the semaphore ignored, for the
   commands the vendor allows there (its status and result are 5375 and 5376).

Commands it executes: 1003 (set date/time: the meter keeps local time), 5000 (communications
setup: address, baud, parity; it takes effect after the meter has replied to the write, so
the reply still comes from the old address). Other known command numbers are accepted and do
nothing; an unknown one is rejected.

The vendor's result codes were not found in the stored material: the codes here are the
simulator's (0 = OK as documented; the others are non-zero, which is all a client may rely
on).
"""

from __future__ import annotations

import datetime as _dt
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BAUD_CODES",
    "PARITY_CODES",
    "PROTECTED",
    "RESULT_BAD_PARAMETER",
    "RESULT_BAD_SEMAPHORE",
    "RESULT_CODES",
    "RESULT_MALFORMED",
    "RESULT_OK",
    "RESULT_UNKNOWN_COMMAND",
    "SEMAPHORE_ADDRESS",
    "SEMAPHORE_TIMEOUT",
    "UNPROTECTED",
    "CommandInterface",
    "InterfaceBlock",
]

SEMAPHORE_ADDRESS = 5679
"""Wire address of register 5680, the command semaphore."""
SEMAPHORE_TIMEOUT = 240.0
"""Seconds without command activity after which a held semaphore is freed (vendor: ~4 min)."""

RESULT_OK = 0
RESULT_UNKNOWN_COMMAND = 3000
RESULT_BAD_PARAMETER = 3001
RESULT_MALFORMED = 3002
RESULT_BAD_SEMAPHORE = 3003
RESULT_CODES: dict[int, str] = {
    RESULT_OK: "valid operation",
    RESULT_UNKNOWN_COMMAND: "unknown command (simulator code)",
    RESULT_BAD_PARAMETER: "a parameter out of range (simulator code)",
    RESULT_MALFORMED: "too few parameters, or the block not at the command register "
    "(simulator code)",
    RESULT_BAD_SEMAPHORE: "semaphore not held by this command (simulator code)",
}
"""Result codes the simulator writes to the result register."""

BAUD_CODES: dict[int, int] = {0: 4800, 1: 9600, 2: 19200, 3: 38400}
PARITY_CODES: dict[int, str] = {0: "E", 1: "O", 2: "N"}

#: Commands the meter knows but the simulator only acknowledges (resets, setups...).
_ACKNOWLEDGED = {
    1, 1000, 1002, 1008, 2000, 2002, 2003, 2007, 2009, 2010, 2011, 2012, 2013, 2015, 2016,
    2017, 2019, 2020, 2021, 2037, 2039, 2044, 2063, 2106, 2108, 2109, 2114,
}  # fmt: skip
#: Commands the vendor allows on the unprotected interface.
_UNPROTECTED_OK = {1003, 2000, 2009, 2010, 2011, 2020, 2021, 5000}
#: Parameters (after the semaphore) each executed command needs.
_PARAMETERS = {1003: 7, 5000: 6}


@dataclass(frozen=True, slots=True)
class InterfaceBlock:
    """Wire addresses of one command interface (protected or unprotected)."""

    command: int
    last_parameter: int
    status: int
    result: int
    uses_semaphore: bool


PROTECTED = InterfaceBlock(4999, 5123, 5124, 5125, True)
"""Registers 5000 (command), 5001 (semaphore), 5002-5124, 5125 status, 5126 result."""
UNPROTECTED = InterfaceBlock(5249, 5373, 5374, 5375, False)
"""Registers 5250 (command), 5251 (semaphore, ignored), 5252-5374, 5375, 5376."""

SettingsHook = Callable[[int, int, str], None]
"""Called with (new address, new baud, new parity) once command 5000 has been replied to."""
ClockHook = Callable[[_dt.datetime], None]
"""Called with the local date-time command 1003 sets."""


class CommandInterface:
    """The command interface of one simulated meter.

    Args:
        on_settings: applies a communications setup (the meter's address/baud/parity).
        on_clock: sets the meter's clock.
        busy_time: seconds a command takes before its status reads done (a client must poll).
        seed: makes the semaphores handed out repeatable.
        monotonic: the clock of the semaphore timeout and the busy time.
    """

    def __init__(
        self,
        on_settings: SettingsHook,
        on_clock: ClockHook,
        *,
        busy_time: float = 0.05,
        seed: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_settings = on_settings
        self.on_clock = on_clock
        self.busy_time = busy_time
        self.monotonic = monotonic
        self._rng = random.Random(f"semaphore/{seed}")
        self._lock = threading.Lock()
        self.semaphore: int | None = None
        """The semaphore handed out and not yet released (None: free)."""
        self._activity = 0.0
        self._status: dict[InterfaceBlock, tuple[int, int, float]] = {}
        self.executed: list[tuple[int, tuple[int, ...], int]] = []
        """(command, parameters after the semaphore, result) of every command received."""

    # -- the semaphore --------------------------------------------------------------------------

    def _expire(self) -> None:
        if self.semaphore is not None and self.monotonic() - self._activity >= SEMAPHORE_TIMEOUT:
            self.semaphore = None

    def take(self) -> int:
        """A read of register 5680: a new semaphore, or 0 while one is held."""
        with self._lock:
            self._expire()
            if self.semaphore is not None:
                return 0
            self.semaphore = self._rng.randint(1, 0xFFFF)
            self._activity = self.monotonic()
            return self.semaphore

    def hold_for_another_master(self) -> int:
        """Take the semaphore as another master would (tests); returns it."""
        return self.take()

    def release(self, value: int) -> None:
        """A write to register 5680: frees the semaphore when ``value`` is the one held."""
        with self._lock:
            if self.semaphore is not None and value == self.semaphore:
                self.semaphore = None

    # -- registers --------------------------------------------------------------------------

    def reads(self, address: int) -> int | None:
        """The value a read of wire ``address`` returns, or None when it is not special
        (the stored scratch value is served)."""
        if address == SEMAPHORE_ADDRESS:
            return None  # the caller takes a semaphore for a read of exactly this register
        for block in (PROTECTED, UNPROTECTED):
            if address in (block.status, block.result):
                with self._lock:
                    command, result, done_at = self._status.get(block, (0, 0, 0.0))
                if address == block.status:
                    return command if self.monotonic() >= done_at else 0
                return result if self.monotonic() >= done_at else 0
        return None

    def written(self, address: int, values: list[int]) -> Callable[[], None] | None:
        """A write of ``values`` at wire ``address`` has been stored; act on it.

        Returns what must happen once the reply to the write has gone out (a new address or
        baud), or None.
        """
        if address == SEMAPHORE_ADDRESS and len(values) == 1:
            self.release(values[0])
            return None
        for block in (PROTECTED, UNPROTECTED):
            if address == block.command:
                return self._command(block, values)
            if block.command < address <= block.last_parameter and block is PROTECTED:
                # parameters written apart from their command are not a command: a meter
                # takes ONE block starting at the command register
                self._finish(block, 0, RESULT_MALFORMED)
        return None

    def _finish(self, block: InterfaceBlock, command: int, result: int) -> None:
        with self._lock:
            self._status[block] = (command, result, self.monotonic() + self.busy_time)
            self._activity = self.monotonic()

    def _command(self, block: InterfaceBlock, values: list[int]) -> Callable[[], None] | None:
        command = values[0]
        parameters = tuple(values[2:])
        after: Callable[[], None] | None = None
        if block.uses_semaphore:
            with self._lock:
                self._expire()
                held = self.semaphore
            if len(values) < 2 or held is None or values[1] != held:
                result = RESULT_BAD_SEMAPHORE
                self._record(block, command, parameters, result)
                return None
        elif command not in _UNPROTECTED_OK:
            self._record(block, command, parameters, RESULT_UNKNOWN_COMMAND)
            return None
        needed = _PARAMETERS.get(command)
        if needed is not None and len(parameters) < needed:
            result = RESULT_MALFORMED
        elif command == 1003:
            result, after = self._set_clock(parameters)
        elif command == 5000:
            result, after = self._comms(parameters)
        elif command in _ACKNOWLEDGED:
            result = RESULT_OK
        else:
            result = RESULT_UNKNOWN_COMMAND
        self._record(block, command, parameters, result)
        return after

    def _record(
        self, block: InterfaceBlock, command: int, parameters: tuple[int, ...], result: int
    ) -> None:
        self.executed.append((command, parameters, result))
        self._finish(block, command, result)

    def _set_clock(self, p: tuple[int, ...]) -> tuple[int, Callable[[], None] | None]:
        year, month, day, hour, minute, second, milli = p[:7]
        if not 2000 <= year <= 2127 or not 0 <= milli <= 999:
            return RESULT_BAD_PARAMETER, None
        try:
            moment = _dt.datetime(year, month, day, hour, minute, second, milli * 1000)
        except ValueError:
            return RESULT_BAD_PARAMETER, None
        self.on_clock(moment)
        return RESULT_OK, None

    def _comms(self, p: tuple[int, ...]) -> tuple[int, Callable[[], None] | None]:
        port, protocol, address, baud_code, parity_code = p[:5]
        # p[5] is the ASCII timeout: stored by a real meter, not used for Modbus RTU
        if port != 1 or protocol != 0 or not 1 <= address <= 247:
            return RESULT_BAD_PARAMETER, None
        if baud_code not in BAUD_CODES or parity_code not in PARITY_CODES:
            return RESULT_BAD_PARAMETER, None
        baud, parity = BAUD_CODES[baud_code], PARITY_CODES[parity_code]

        def apply() -> None:
            self.on_settings(address, baud, parity)

        return RESULT_OK, apply
