"""Meter clocks against this machine's (``emtui clock``; design §12).

The EM6400NG keeps local time in seven uint16 registers, 1837–1843 (year, month, day, hour,
minute, second, millisecond), and sets it with command 1003 through the command interface.
A Raspberry Pi has no real-time clock: until NTP has synchronised it, its own time may be
wrong, so setting meters from it is refused unless forced (:func:`ntp_status`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.command import CommandError, CommandInterface, command_request
from emtui.core.bus.link import LinkError, Outcome
from emtui.core.bus.writes import AuditLog, WriteRequest
from emtui.core.maps.codec import CLOCK_FIELDS

__all__ = [
    "CLOCK_COUNT",
    "CLOCK_REGISTER",
    "ClockReading",
    "NtpStatus",
    "clock_parameters",
    "ntp_status",
    "read_clock",
    "set_clock",
]

CLOCK_REGISTER = 1837
"""The vendor's number of the first clock register (year); wire address 1836."""
CLOCK_COUNT = len(CLOCK_FIELDS)
#: adjtimex(2) returns TIME_ERROR while the kernel's clock is not synchronised.
_TIME_ERROR = 5


@dataclass(frozen=True, slots=True)
class ClockReading:
    """One read of a meter's clock.

    Attributes:
        id: the meter.
        meter_time: its clock (local time, naive), None when not read or not a date.
        pi_time: this machine's local time when the meter answered (aware).
        status: ``ok``, ``timeout``, ``exception:NN``, ``invalid`` (not a real date), ...
    """

    id: int
    meter_time: _dt.datetime | None
    pi_time: _dt.datetime
    status: str

    @property
    def offset_s(self) -> float | None:
        """Seconds the meter's clock is ahead of this machine's (negative: behind)."""
        if self.meter_time is None:
            return None
        return self.meter_time.timestamp() - self.pi_time.timestamp()


def read_clock(arbiter: BusArbiter, device_id: int, timeout: float | None = None) -> ClockReading:
    """Read registers 1837–1843 of ``device_id`` once; this machine's time is taken half way
    between sending and the reply (the meter reads its clock in between)."""
    before = time.time()
    reply = arbiter.read_registers(
        device_id,
        CLOCK_REGISTER - 1,
        CLOCK_COUNT,
        priority=Priority.INTERACTIVE,
        timeout=timeout,
    )
    after = time.time()
    pi_time = _dt.datetime.fromtimestamp((before + after) / 2).astimezone()
    if reply.outcome is Outcome.EXCEPTION:
        return ClockReading(device_id, None, pi_time, f"exception:{reply.exception_code:02d}")
    if not reply.ok or not reply.registers or len(reply.registers) < CLOCK_COUNT:
        return ClockReading(device_id, None, pi_time, str(reply.outcome))
    year, month, day, hour, minute, second, milli = reply.registers[:CLOCK_COUNT]
    try:
        if not 0 <= milli <= 999:
            raise ValueError(milli)
        meter = _dt.datetime(year, month, day, hour, minute, second, milli * 1000)
    except (ValueError, OverflowError):
        return ClockReading(device_id, None, pi_time, "invalid")
    return ClockReading(device_id, meter, pi_time, "ok")


def clock_parameters(moment: _dt.datetime) -> list[int]:
    """Command 1003's parameters (2)-(8) for the local time ``moment``."""
    return [
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    ]


def set_clock(
    arbiter: BusArbiter,
    audit: AuditLog,
    device_id: int,
    confirm: Callable[[Sequence[str]], bool],
    *,
    retime: bool = True,
    on_sent: Callable[[WriteRequest], object] | None = None,
) -> str | None:
    """Set ``device_id``'s clock from this machine's local time with command 1003
    (``emtui clock --set`` and the app's clock dialog); None when done, else why not.

    The caller has checked :func:`~emtui.core.bus.writes.check_allowed` and the NTP state.
    ``confirm`` is shown the frame (with the semaphore taken) and says whether to send;
    with ``retime`` the time fields are taken again when it is sent (a technician's answer
    takes seconds) and ``on_sent`` is given the block actually sent. The semaphore is always
    given back.
    """
    interface = CommandInterface(arbiter, audit)
    try:
        semaphore = interface.take_semaphore(device_id)
    except CommandError as exc:
        return str(exc)

    def exact() -> WriteRequest:
        # The meter takes the time when the frame has arrived: add the frame's wire time.
        sample = command_request(device_id, 1003, semaphore, clock_parameters(_dt.datetime.now()))
        wire = (len(sample.frame()) + 3.5) * arbiter.settings.char_time
        moment = _dt.datetime.fromtimestamp(time.time() + wire)
        return command_request(device_id, 1003, semaphore, clock_parameters(moment))

    request = exact()
    lines = interface.frame_lines(request)
    if retime:
        lines.append("  (the time fields are taken again when it is sent)")
    try:
        if not confirm(lines):
            return "not confirmed: nothing was sent (the semaphore was given back)"
        if retime:  # the answer took time: the frame sent carries the time of sending
            request = exact()
            if on_sent is not None:
                on_sent(request)
        result = interface.send(request)
        if not result.ok:
            return f"the meter did not accept the command ({result.outcome})"
        done = interface.wait_done(device_id, 1003)
        if not done.done:
            return f"command 1003 not done (status {done.status}, result {done.result})"
        if done.result != 0:
            return f"command 1003 rejected with result code {done.result}"
        return None
    finally:
        with contextlib.suppress(LinkError, OSError):  # it frees itself after ~4 minutes
            interface.release(device_id, semaphore)


@dataclass(frozen=True, slots=True)
class NtpStatus:
    """Whether this machine's clock is NTP-synchronised, and how that was found out.

    Attributes:
        synchronised: True, False, or None when it could not be found out.
        how: ``timedatectl``, ``adjtimex`` or why neither answered.
    """

    synchronised: bool | None
    how: str


def ntp_status() -> NtpStatus:
    """Ask ``timedatectl`` (systemd), else the kernel (adjtimex), whether the clock is
    synchronised. ``$EMTUI_TIMEDATECTL`` names another timedatectl program."""
    program = os.environ.get("EMTUI_TIMEDATECTL") or shutil.which("timedatectl")
    if program:
        try:
            out = subprocess.run(
                [program, "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return NtpStatus(out.stdout.strip() == "yes", "timedatectl")
    return _adjtimex_status()


def _adjtimex_status() -> NtpStatus:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return NtpStatus(None, "neither timedatectl nor adjtimex answered")
    buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: only read
    state = adjtimex(buf)
    if state < 0:
        return NtpStatus(None, "adjtimex failed")
    return NtpStatus(state != _TIME_ERROR, "adjtimex")
