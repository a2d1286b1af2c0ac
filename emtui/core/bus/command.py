"""The EM6400NG command interface, from the tool's side (Build facts; design §12).

Setup registers (RWC) change only through it, exactly so:

1. read register 5680 (wire 5679) to obtain a semaphore (0 = another master holds it);
2. write ONE FC16 block at register 5000 (wire 4999): ``[command, semaphore, p2, p3, …]`` —
   the Commands table's parameter (n) goes to register 5000 + n;
3. poll 5125 (status: the command number when done) and 5126 (result: 0 = OK);
4. write the semaphore back to 5680 to release it (it also times out after about 4 minutes).

Every write goes through :func:`emtui.core.bus.writes.send_write` (audited, write priority,
no retry). The caller shows :meth:`CommandInterface.frame_lines` and gets confirmation first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.link import Outcome, Reply
from emtui.core.bus.writes import AuditLog, WriteRequest, WriteResult, format_frame, send_write

__all__ = [
    "COMMAND_NAMES",
    "COMMAND_REGISTER",
    "RESULT_REGISTER",
    "SEMAPHORE_REGISTER",
    "STATUS_REGISTER",
    "CommandError",
    "CommandInterface",
    "CommandOutcome",
    "command_labels",
    "command_request",
]

SEMAPHORE_REGISTER = 5680
COMMAND_REGISTER = 5000
STATUS_REGISTER = 5125
RESULT_REGISTER = 5126

COMMAND_NAMES: dict[int, tuple[str, tuple[str, ...]]] = {
    1003: (
        "set date/time",
        ("year", "month", "day", "hour", "minute", "second", "millisecond"),
    ),
    5000: (
        "communications setup",
        (
            "port ID (1 = RS-485)",
            "protocol (0 = Modbus RTU)",
            "address",
            "baud code (0=4800 1=9600 2=19200 3=38400)",
            "parity code (0=even 1=odd 2=none)",
            "ASCII timeout",
        ),
    ),
}
"""Command number → (name, the meanings of parameters (2), (3), … from the Commands table)."""


class CommandError(Exception):
    """The command interface could not be used; the message says why and what to do."""


def command_request(
    device_id: int, command: int, semaphore: int, parameters: Sequence[int]
) -> WriteRequest:
    """The one FC16 block at register 5000: ``[command, semaphore, *parameters]``."""
    name = COMMAND_NAMES.get(command, (f"command {command}", ()))[0]
    return WriteRequest(
        device_id,
        16,
        COMMAND_REGISTER - 1,
        (command, semaphore, *parameters),
        purpose=f"command {command} ({name})",
    )


def command_labels(command: int, count: int, notes: Sequence[str] = ()) -> list[str]:
    """What each register of a command block means: ``command``, ``(1) semaphore``,
    ``(2) …`` from the Commands table; ``notes`` are added to parameters (2), (3), …"""
    names = COMMAND_NAMES.get(command, ("", ()))[1]
    labels = [f"command {command}", "(1) semaphore"]
    for n in range(2, count):
        text = f"({n}) {names[n - 2]}" if n - 2 < len(names) else f"({n})"
        if n - 2 < len(notes) and notes[n - 2]:
            text += f" — {notes[n - 2]}"
        labels.append(text)
    return labels[:count]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What the meter said about a command: its status and result registers.

    Attributes:
        status: register 5125 (the command number when done; None if never read).
        result: register 5126 (0 = OK).
        done: status equals the command number.
    """

    status: int | None
    result: int | None
    done: bool

    @property
    def ok(self) -> bool:
        """Done with result 0."""
        return self.done and self.result == 0


class CommandInterface:
    """Runs commands on one meter through one arbiter, auditing every write.

    Args:
        arbiter: the connection (started).
        audit: where write attempts are recorded.
        timeout: a fixed timeout per request (None: the arbiter's learned one).
    """

    def __init__(self, arbiter: BusArbiter, audit: AuditLog, timeout: float | None = None) -> None:
        self.arbiter = arbiter
        self.audit = audit
        self.timeout = timeout

    def read(self, device_id: int, register: int, count: int = 1, retries: int = 1) -> Reply:
        """Read ``count`` registers from the vendor's 1-based ``register``."""
        return self.arbiter.read_registers(
            device_id,
            register - 1,
            count,
            priority=Priority.WRITE,
            retries=retries,
            timeout=self.timeout,
        )

    def take_semaphore(self, device_id: int) -> int:
        """Read register 5680 for a semaphore.

        Raises:
            CommandError: no answer, an exception, or 0 (another master holds it).
        """
        # never retried: a retry after a lost reply would find the semaphore already taken
        reply = self.read(device_id, SEMAPHORE_REGISTER, retries=0)
        if reply.outcome is Outcome.EXCEPTION:
            raise CommandError(
                f"id {device_id} answered exception {reply.exception_code:02d} to a read of "
                f"the command semaphore (register {SEMAPHORE_REGISTER}): it has no EM6400NG "
                "command interface"
            )
        if not reply.ok or not reply.registers:
            raise CommandError(
                f"id {device_id} did not answer the read of the command semaphore "
                f"({reply.outcome}); nothing was written"
            )
        semaphore = reply.registers[0]
        if semaphore == 0:
            raise CommandError(
                f"id {device_id}: another master holds the command semaphore (register "
                f"{SEMAPHORE_REGISTER} reads 0); nothing was written. Stop the other program "
                "(a SCADA, another emtui), or wait: the meter frees it after about 4 minutes"
            )
        return semaphore

    def frame_lines(self, request: WriteRequest, notes: Sequence[str] = ()) -> list[str]:
        """The frame of a command block with every register named."""
        return format_frame(request, command_labels(request.values[0], len(request.values), notes))

    def send(self, request: WriteRequest) -> WriteResult:
        """Send the command block (audited, never retried)."""
        return send_write(self.arbiter, request, self.audit, timeout=self.timeout)

    def wait_done(
        self, device_id: int, command: int, within: float = 2.0, poll: float = 0.05
    ) -> CommandOutcome:
        """Poll status (5125) and result (5126) until the status is ``command`` or
        ``within`` seconds pass."""
        deadline = time.monotonic() + within
        status: int | None = None
        result: int | None = None
        while True:
            reply = self.read(device_id, STATUS_REGISTER, 2)
            if reply.ok and reply.registers and len(reply.registers) >= 2:
                status, result = reply.registers[0], reply.registers[1]
                if status == command:
                    return CommandOutcome(status, result, True)
            if time.monotonic() >= deadline:
                return CommandOutcome(status, result, False)
            time.sleep(poll)

    def release(self, device_id: int, semaphore: int) -> WriteResult:
        """Write the semaphore back to register 5680 (audited)."""
        request = WriteRequest(
            device_id,
            16,
            SEMAPHORE_REGISTER - 1,
            (semaphore,),
            purpose="release the command semaphore",
        )
        return send_write(self.arbiter, request, self.audit, timeout=self.timeout)
