"""Re-addressing an EM6400NG through its command interface (``emtui setup``; design §12).

Why this module exists: command 5000 takes a meter off the bus at its present settings and
puts it back at new ones, so the procedure is careful at every step (Build facts box):

1. at the present settings, the meter must answer, and answer cleanly: CRC or wrong-id errors
   mean two meters may answer one id (new meters all arrive at id 1), and a re-address would
   move both — refused, "connect them one at a time";
2. the new id must not already answer at the new settings (a duplicate address) — refused;
3. parameter (7), the ASCII timeout, has no register in the NG list: register 6504 is read in
   case the meter keeps it there as other PowerLogic meters do; on exception 02 the map's
   documented default is sent, marked unverified;
4. semaphore (5680), ONE FC16 block at 5000 ``[5000, S, 1, 0, id, baud, parity, timeout]``,
   shown field by field and confirmed, audited;
5. the meter switches after it has replied, so status/result (5125/5126) are polled and the
   semaphore released at the NEW settings; with parity None the stop bits are undocumented:
   8N1 is tried, then 8N2;
6. success only when the meter answers at its new id with its communications registers
   saying the new settings; otherwise the report says what was sent and what to try.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.command import CommandError, CommandInterface, command_request
from emtui.core.bus.link import ConnectionSettings, LinkError, Outcome, Reply
from emtui.core.bus.writes import AuditLog, WriteRequest
from emtui.core.maps.registers import RegisterMap

__all__ = [
    "ASCII_TIMEOUT_REGISTER",
    "BAUD_CODE",
    "COMMS_REGISTER",
    "PARITY_CODE",
    "SetupFailed",
    "SetupPlan",
    "SetupReport",
    "commission",
]

COMMS_REGISTER = 6500
"""Protocol (6500), address (6501), baud code (6502), parity code (6503)."""
ASCII_TIMEOUT_REGISTER = 6504
BAUD_CODE = {4800: 0, 9600: 1, 19200: 2, 38400: 3}
PARITY_CODE = {"E": 0, "O": 1, "N": 2}
#: Reads at the present settings that must all come back clean before a re-address.
CLEAN_READS = 3

OpenArbiter = Callable[[ConnectionSettings], BusArbiter]
CloseArbiter = Callable[[BusArbiter], None]
Confirm = Callable[[Sequence[str]], bool]
Say = Callable[[str], None]


class SetupFailed(Exception):
    """The setup was refused or failed; ``exit_code`` follows the README's codes."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class SetupPlan:
    """What to change.

    Attributes:
        device_id: the meter's present id.
        new_id: its new id (default: unchanged).
        new_baud: its new baud (default: unchanged).
        new_parity: its new parity (default: unchanged).
    """

    device_id: int
    new_id: int | None = None
    new_baud: int | None = None
    new_parity: str | None = None

    def target(self, present: ConnectionSettings) -> tuple[int, int, str]:
        """(id, baud, parity) after the change."""
        return (
            self.new_id if self.new_id is not None else self.device_id,
            self.new_baud if self.new_baud is not None else present.baud,
            (self.new_parity or present.parity).upper(),
        )


@dataclass(slots=True)
class SetupReport:
    """What happened.

    Attributes:
        ok: the meter answers at its new id and settings, and says so.
        sent: the command block sent (None: nothing was sent).
        settings: where the meter answered afterwards (None: nowhere tried).
        steps: one line per step, for the technician.
        ascii_timeout: the value sent as parameter (7), and whether it was read from 6504.
        old_silent: after success, nothing answers at the old id and settings any more.
    """

    ok: bool = False
    sent: WriteRequest | None = None
    settings: ConnectionSettings | None = None
    new_id: int | None = None
    steps: list[str] = field(default_factory=list)
    ascii_timeout: int | None = None
    ascii_timeout_verified: bool = False
    old_silent: bool | None = None


def _settings_for(present: ConnectionSettings, baud: int, parity: str) -> list[ConnectionSettings]:
    """The line settings to try the meter at after the change: one for E/O; 8N1 then 8N2 for
    parity N (the vendor does not say which stop bits it uses without parity)."""
    base = dataclasses.replace(present, baud=baud, parity=parity, stopbits=1)
    if parity != "N":
        return [base]
    return [base, dataclasses.replace(base, stopbits=2)]


def _read(arbiter: BusArbiter, device_id: int, register: int, count: int) -> Reply:
    return arbiter.read_registers(
        device_id, register - 1, count, priority=Priority.WRITE, retries=1
    )


def _answered(reply: Reply) -> bool:
    return reply.outcome in (Outcome.OK, Outcome.EXCEPTION)


def commission(
    present: ConnectionSettings,
    plan: SetupPlan,
    rmap: RegisterMap,
    audit: AuditLog,
    *,
    open_arbiter: OpenArbiter,
    confirm: Confirm,
    say: Say,
    settle: float = 5.0,
    close_arbiter: CloseArbiter | None = None,
) -> SetupReport:
    """Run the re-address ``plan`` on the meter at ``present`` (see the module docstring).

    ``open_arbiter`` opens (and starts) an arbiter at given settings — the port is reopened
    for each settings change; ``confirm`` shows the frame lines and says whether to send;
    ``say`` reports progress. ``close_arbiter`` is called when one settings' arbiter is
    done with (default: stop it); the app's session, which opens none but retunes its own
    arbiter in place, gives one that does nothing.

    Raises:
        SetupFailed: refused before sending (exit 2 usage, 4 no answer, 5 device), or failed
            after (exit 4: the meter does not answer at its new settings).
    """
    close = close_arbiter or BusArbiter.stop
    new_id, new_baud, new_parity = plan.target(present)
    if new_id == 0 or plan.device_id == 0:
        raise SetupFailed("never id 0: a broadcast would re-address every meter at once", 2)
    if (new_id, new_baud, new_parity) == (plan.device_id, present.baud, present.parity.upper()):
        raise SetupFailed(
            "nothing to change: give --new-id, --new-baud or --new-parity different from the "
            "present settings",
            2,
        )
    if new_baud not in BAUD_CODE:
        raise SetupFailed(f"the EM6400NG takes 4800, 9600, 19200 or 38400 baud, not {new_baud}", 2)
    report = SetupReport(new_id=new_id)

    def step(line: str) -> None:
        report.steps.append(line)
        say(line)

    targets = _settings_for(present, new_baud, new_parity)
    same_line = all(
        (t.baud, t.parity.upper(), t.stopbits)
        == (present.baud, present.parity.upper(), present.stopbits)
        for t in targets[:1]
    )
    old = plan.device_id
    where = f"id {old} at {present.describe()}"

    # 1. the meter answers, cleanly, at its present settings
    arbiter = open_arbiter(present)
    try:
        replies = [_read(arbiter, old, COMMS_REGISTER, 4) for _ in range(CLEAN_READS)]
        stats = arbiter.device_stats(old)
        if not any(r.ok for r in replies):
            if stats.crc_errors or stats.wrong_id:
                raise SetupFailed(_two_meters(where, stats.crc_errors, stats.wrong_id), 5)
            raise SetupFailed(
                f"{where} does not answer: nothing was sent. Give the meter's present "
                "settings (factory: 9600 8E1, id 1), or find it with emtui detect",
                4,
            )
        if stats.crc_errors or stats.wrong_id:
            raise SetupFailed(_two_meters(where, stats.crc_errors, stats.wrong_id), 5)
        comms = next(r for r in replies if r.ok).registers or []
        step(f"{where} answers; communications registers 6500-6503 read {comms}")
        # 3. the ASCII timeout, parameter (7)
        probe = _read(arbiter, old, ASCII_TIMEOUT_REGISTER, 1)
        if probe.ok and probe.registers:
            report.ascii_timeout, report.ascii_timeout_verified = probe.registers[0], True
            step(f"ASCII timeout read from register 6504: {report.ascii_timeout}")
        elif probe.outcome is Outcome.EXCEPTION and probe.exception_code == 2:
            default = rmap.commands.get("ascii_timeout_default")
            if default is None:
                raise SetupFailed(
                    f"register 6504 answers exception 02 and map {rmap.name} keeps no "
                    "ascii_timeout_default in [map.commands]: nothing was sent",
                    5,
                )
            report.ascii_timeout = default
            step(
                f"register 6504 answers exception 02: sending the map's default ASCII "
                f"timeout {default} (unverified)"
            )
        else:
            raise SetupFailed(
                f"{where}: the read of register 6504 (ASCII timeout) gave {probe.outcome}"
                + (f" {probe.exception_code:02d}" if probe.exception_code else "")
                + "; nothing was sent",
                5,
            )
        if same_line:
            _refuse_duplicate(arbiter, new_id, present)
    finally:
        close(arbiter)

    # 2. the new id must not already answer at the new settings
    if not same_line:
        for target in targets:
            arbiter = open_arbiter(target)
            try:
                _refuse_duplicate(arbiter, new_id, target)
            finally:
                close(arbiter)
    step(f"nothing answers at id {new_id} at the new settings")

    # 4. semaphore, the block, confirmation, send
    arbiter = open_arbiter(present)
    interface = CommandInterface(arbiter, audit)
    try:
        semaphore = interface.take_semaphore(old)
    except CommandError as exc:
        close(arbiter)
        raise SetupFailed(str(exc), 5) from None
    try:
        assert report.ascii_timeout is not None
        request = command_request(
            old,
            5000,
            semaphore,
            [1, 0, new_id, BAUD_CODE[new_baud], PARITY_CODE[new_parity], report.ascii_timeout],
        )
        notes = [
            "",
            "",
            f"new id {new_id}",
            f"{new_baud} baud",
            {"E": "even", "O": "odd", "N": "none"}[new_parity],
            "read from 6504" if report.ascii_timeout_verified else "map default, unverified",
        ]
        lines = interface.frame_lines(request, notes)
        after = f"id {new_id}, {new_baud} 8{new_parity}{targets[0].stopbits}"
        lines.append(f"  on {present.describe()}; afterwards the meter answers at {after}")
        if not confirm(lines):
            raise SetupFailed(
                "not confirmed (give --yes to send without asking): the command was not sent "
                "(the semaphore was given back)",
                2,
            )
        result = interface.send(request)
        report.sent = request
        if result.reply is not None and result.reply.outcome is Outcome.EXCEPTION:
            with contextlib.suppress(LinkError, OSError):
                interface.release(old, semaphore)
            raise SetupFailed(
                f"{where} refused the command block with exception "
                f"{result.reply.exception_code:02d}; its settings are unchanged",
                5,
            )
        step(
            "command 5000 acknowledged"
            if result.ok
            else f"no acknowledgement of command 5000 ({result.outcome}): looking for the "
            "meter at its new settings anyway"
        )
    finally:
        if report.sent is None:  # not sent: give the semaphore back at once
            with contextlib.suppress(LinkError, OSError):
                interface.release(old, semaphore)
        close(arbiter)

    # 5. the meter at its new settings: status, result, release, verify
    for target in targets:
        arbiter = open_arbiter(target)
        interface = CommandInterface(arbiter, audit)
        try:
            done = interface.wait_done(new_id, 5000, within=settle)
            if done.status is None:
                step(f"no answer at id {new_id} at {target.describe()}")
                continue
            if done.done and done.result not in (0, None):
                interface.release(new_id, semaphore)
                raise SetupFailed(f"command 5000 rejected with result code {done.result}", 5)
            interface.release(new_id, semaphore)
            check = _read(arbiter, new_id, COMMS_REGISTER, 4)
            if check.ok and check.registers and len(check.registers) >= 4:
                wanted = [0, new_id, BAUD_CODE[new_baud], PARITY_CODE[new_parity]]
                if list(check.registers[:4]) == wanted:
                    report.ok = True
                    report.settings = target
                    step(
                        f"id {new_id} answers at {target.describe()}, status 5000 result "
                        f"{done.result}; 6500-6503 read {check.registers[:4]}"
                    )
                    break
                step(f"id {new_id} answers but 6500-6503 read {check.registers[:4]}, not {wanted}")
        finally:
            close(arbiter)
        if report.ok:
            break
    if report.ok:
        # and it has left its old place (another meter there would now be the one answering)
        arbiter = open_arbiter(present)
        try:
            # one try: it is a check of what was confirmed above, not a search
            gone = arbiter.read_registers(
                old, COMMS_REGISTER - 1, 4, priority=Priority.WRITE, retries=0
            )
            left = not _answered(gone)
        finally:
            close(arbiter)
        report.old_silent = left
        step(
            f"id {old} at {present.describe()} no longer answers"
            if left
            else f"warning: id {old} still answers at {present.describe()}: another meter?"
        )
        return report
    # Not found where it should be: did it keep its old settings (command rejected)?
    arbiter = open_arbiter(present)
    interface = CommandInterface(arbiter, audit)
    try:
        done = interface.wait_done(old, 5000, within=0.5)
        if done.status is not None and done.result not in (0, None):
            interface.release(old, semaphore)
            raise SetupFailed(
                f"the meter still answers at {where}: command 5000 rejected with result "
                f"code {done.result}; its settings are unchanged",
                5,
            )
    finally:
        close(arbiter)
    frame = report.sent.frame().hex(" ").upper() if report.sent else "nothing"
    tried = ", ".join(t.describe() for t in targets)
    raise SetupFailed(
        f"sent {frame} (command 5000: id {new_id}, {new_baud} baud, parity {new_parity}) to "
        f"{where}, but id {new_id} does not answer at {tried}. Find the meter with emtui "
        f"detect --port {present.port} (it may be at its old or its new settings); if it "
        "is gone, set it on its front panel",
        4,
    )


def _refuse_duplicate(arbiter: BusArbiter, new_id: int, at: ConnectionSettings) -> None:
    reply = _read(arbiter, new_id, COMMS_REGISTER, 4)
    if _answered(reply) or reply.outcome in (Outcome.CRC, Outcome.WRONG_ID):
        raise SetupFailed(
            f"id {new_id} already answers at {at.describe()}: a duplicate address. Nothing "
            "was sent; choose another --new-id",
            5,
        )


def _two_meters(where: str, crc: int, wrong: int) -> str:
    return (
        f"{where}: {crc} CRC and {wrong} wrong-id errors in {CLEAN_READS} reads — two meters "
        "may be answering one id (new meters all arrive at id 1). Nothing was sent: connect "
        "new meters one at a time, set each, then connect the next"
    )
