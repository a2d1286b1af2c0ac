"""``emtui setup``: change a meter's id, baud and parity through its command interface.

The connection flags give the meter's PRESENT settings; ``--new-id``, ``--new-baud`` and
``--new-parity`` what it should answer at afterwards (see :mod:`emtui.core.setup`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from emtui.cli.common import (
    CliError,
    ExitCode,
    effective_config,
    emit_json,
    map_from_args,
    settings_from,
)
from emtui.cli.write import audit_for, confirm, open_arbiter, refuse
from emtui.core.bus.link import LinkError
from emtui.core.bus.writes import WriteRefused, WriteRequest, check_allowed
from emtui.core.setup import SetupFailed, SetupPlan, commission

__all__ = ["setup"]


def setup(args: argparse.Namespace) -> int:
    """``emtui setup``: refuse without --allow-writes, else re-address and verify."""
    config = effective_config(args, meters=False)
    audit = audit_for(config)
    port = config.bus.port or ""
    human = sys.stderr if args.json else sys.stdout
    try:
        check_allowed(args.allow_writes, args.id)
        if args.new_id is not None:
            check_allowed(True, args.new_id)
    except WriteRefused as exc:
        raise refuse(
            audit, port, None, str(exc), device_id=args.id, purpose="command 5000 (setup)"
        ) from None
    if args.new_id is None and args.new_baud is None and args.new_parity is None:
        raise CliError("give --new-id, --new-baud and/or --new-parity", ExitCode.USAGE)
    settings = settings_from(config)
    if settings.kind == "tcp":
        raise CliError(
            "emtui setup needs the RS-485 line itself (a serial port or socket://): over "
            "tcp:// the gateway, not the meter, decides the line settings",
            ExitCode.USAGE,
        )
    try:
        audit.check_writable()
    except OSError as exc:
        raise CliError(
            f"cannot write the audit log {audit.path} ({exc.strerror or exc}); nothing was "
            "sent: give a writable --state-dir",
            ExitCode.STORAGE,
        ) from None
    rmap = map_from_args(args.map or "em6400ng")
    plan = SetupPlan(args.id, args.new_id, args.new_baud, args.new_parity)

    def ask(lines: Sequence[str]) -> bool:
        return confirm(lines, args.yes, human)

    def say(line: str) -> None:
        print(f"  {line}", file=human, flush=True)

    try:
        report = commission(
            settings,
            plan,
            rmap,
            audit,
            open_arbiter=open_arbiter,
            confirm=ask,
            say=say,
            settle=args.settle,
        )
    except SetupFailed as exc:
        if args.json:
            emit_json({"ok": False, "error": str(exc), "id": args.id})
        raise CliError(str(exc), ExitCode(exc.exit_code)) from None
    except LinkError as exc:
        raise CliError(str(exc), ExitCode.CONNECTION) from None
    assert report.settings is not None
    done = f"ok: the meter answers at id {report.new_id}, {report.settings.describe()}"
    if report.old_silent:
        done += f" (and no longer at id {args.id}, {settings.describe()})"
    if args.json:
        emit_json(
            {
                "ok": True,
                "id": args.id,
                "new_id": report.new_id,
                "baud": report.settings.baud,
                "parity": report.settings.parity,
                "stopbits": report.settings.stopbits,
                "frame": _hex(report.sent),
                "ascii_timeout": report.ascii_timeout,
                "ascii_timeout_verified": report.ascii_timeout_verified,
                "steps": report.steps,
                "old_silent": report.old_silent,
            }
        )
        print(done, file=human)
    else:
        print(done)
    return int(ExitCode.OK)


def _hex(request: WriteRequest | None) -> str | None:
    return None if request is None else request.frame().hex(" ").upper()
