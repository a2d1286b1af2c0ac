"""``emtui write``: one raw register or coil write, allowed, shown, confirmed and audited.

Also the helpers ``emtui setup`` and ``emtui clock --set`` share: the refusal before anything
is on the wire, the confirmation prompt, the audit log of the state dir, and the connection
opened with the logger's "in use by PID" advice.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TextIO

from emtui.cli.common import CliError, ExitCode, effective_config, settings_from
from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings, LinkError, Outcome, PortBusy
from emtui.core.bus.writes import (
    AuditLog,
    WriteRefused,
    WriteRequest,
    build_request,
    check_allowed,
    exception_hint,
    format_frame,
    send_write,
)
from emtui.core.config import Config
from emtui.core.observer import STOP_HINT

__all__ = ["audit_for", "confirm", "open_arbiter", "refuse", "write"]


def audit_for(config: Config) -> AuditLog:
    """The audit log of ``config``'s state dir."""
    return AuditLog(config.state_dir)


def refuse(
    audit: AuditLog,
    port: str,
    request: WriteRequest | None,
    why: str,
    *,
    device_id: int = 0,
    purpose: str = "",
) -> CliError:
    """Record a refused attempt and return the error (exit 2). Best effort: the refusal is
    what matters, and nothing went on the wire. Without a ``request`` (no frame yet: setup,
    clock) the line names ``device_id`` and ``purpose``."""
    with contextlib.suppress(OSError):
        if request is not None:
            audit.record(port, request, f"refused: {why}")
        elif purpose:
            audit.record_refusal(port, device_id, purpose, why)
    return CliError(why, ExitCode.USAGE)


def confirm(lines: Sequence[str], yes: bool, out: TextIO | None = None) -> bool:
    """Show ``lines`` (the frame) and ask; True to send.

    ``--yes`` sends without asking (scripts); without it the answer must come from a
    terminal: a pipe or a file on stdin is no confirmation.
    """
    stream = out or sys.stdout
    for line in lines:
        print(line, file=stream)
    stream.flush()
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    try:
        answer = input("send it? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def open_arbiter(settings: ConnectionSettings) -> BusArbiter:
    """Start an arbiter on ``settings``; a logger holding the port is exit 3 with the PID and
    how to stop its service."""
    arbiter = BusArbiter(settings)
    try:
        arbiter.start()
    except PortBusy as exc:
        raise CliError(f"{exc} ({STOP_HINT})", ExitCode.CONNECTION) from None
    return arbiter


def _request(args: argparse.Namespace) -> WriteRequest:
    """The write the flags describe (a usage error when they do not fit)."""
    address = args.register - 1 if args.register is not None else args.address
    try:
        return build_request(
            args.id, args.function, address, args.value.split(","), args.type, args.order
        )
    except ValueError as exc:
        raise CliError(f"--value: {exc}", ExitCode.USAGE) from None


def write(args: argparse.Namespace) -> int:
    """``emtui write``: check, show, confirm, send, audit; exit 0 when acknowledged."""
    config = effective_config(args, meters=False)
    audit = audit_for(config)
    request = _request(args)
    port = config.bus.port or ""
    try:
        check_allowed(args.allow_writes, request.device_id)
    except WriteRefused as exc:
        raise refuse(audit, port, request, str(exc)) from None
    settings = settings_from(config)
    try:
        audit.check_writable()
    except OSError as exc:
        raise CliError(
            f"cannot write the audit log {audit.path} ({exc.strerror or exc}); nothing was "
            "sent: give a writable --state-dir",
            ExitCode.STORAGE,
        ) from None
    lines = format_frame(request)
    lines.append(f"  on {settings.describe()}")
    if settings.kind == "tcp":
        lines.append(
            "  (over tcp:// the same PDU is sent with an MBAP header, unit id "
            f"{request.device_id}, in place of the slave id byte and the CRC)"
        )
    if not confirm(lines, args.yes):
        raise refuse(audit, port, request, "not confirmed (give --yes to send without asking)")
    try:
        arbiter = open_arbiter(settings)
    except (CliError, LinkError) as exc:  # busy or missing: the attempt is audited too
        with contextlib.suppress(OSError):
            audit.record(port, request, f"error: {exc}")
        raise
    try:
        result = send_write(arbiter, request, audit)
    except LinkError as exc:
        raise CliError(str(exc), ExitCode.CONNECTION) from None
    finally:
        arbiter.stop()
    reply = result.reply
    if result.ok:
        print(f"ok: id {request.device_id} acknowledged the write")
        return int(ExitCode.OK)
    if reply is not None and reply.outcome is Outcome.EXCEPTION:
        print(
            f"emtui: id {request.device_id} refused the write with exception "
            f"{reply.exception_code:02d}" + exception_hint(reply.exception_code),
            file=sys.stderr,
        )
        return int(ExitCode.DEVICE)
    print(
        f"emtui: id {request.device_id} did not acknowledge the write ({result.outcome}); "
        "it may or may not have taken effect: read the register back (emtui read)",
        file=sys.stderr,
    )
    return int(ExitCode.NO_ANSWER)
