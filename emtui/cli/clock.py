"""``emtui clock``: each meter's clock against this machine's; ``--set`` sets it (command 1003).

JSON (a contract, design §12): ``{"meters": [{"id", "meter_time", "pi_time", "offset_s",
"set"}]}`` plus ``status``, ``drift_s_per_day`` (with --drift), ``after`` (with --set: the
clock read back) and ``error``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from collections.abc import Sequence
from typing import Any

from emtui.cli.common import CliError, ExitCode, effective_config, emit_json, settings_from
from emtui.cli.write import audit_for, confirm, open_arbiter, refuse
from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import LinkError
from emtui.core.bus.writes import AuditLog, WriteRefused, WriteRequest, check_allowed
from emtui.core.clock import ClockReading, ntp_status, read_clock, set_clock

__all__ = ["clock"]


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def clock(args: argparse.Namespace) -> int:
    """``emtui clock``: read (and with --set, set) the clocks of ``--ids``."""
    config = effective_config(args)
    ids = [m.id for m in config.meters]
    if not ids:
        raise CliError("give the meters: --ids 1-4 (or meters in the config)", ExitCode.USAGE)
    audit = audit_for(config)
    human = sys.stderr if args.json else sys.stdout
    if args.set:
        for device_id in ids:
            try:
                check_allowed(args.allow_writes, device_id)
            except WriteRefused as exc:
                for each in ids:  # one line per meter that would have been set
                    refused = refuse(
                        audit, config.bus.port or "", None, str(exc),
                        device_id=each, purpose="command 1003 (set date/time)",
                    )  # fmt: skip
                raise refused from None
        ntp = ntp_status()
        if not ntp.synchronised and not args.force:
            state = "not NTP-synchronised" if ntp.synchronised is False else "of unknown sync"
            raise CliError(
                f"this machine's clock is {state} ({ntp.how}): setting the meters from it "
                "could spread a wrong time. Wait for NTP (timedatectl status), or give "
                "--force to set them anyway; nothing was sent",
                ExitCode.USAGE,
            )
        try:
            audit.check_writable()
        except OSError as exc:
            raise CliError(
                f"cannot write the audit log {audit.path} ({exc.strerror or exc}); nothing "
                "was sent: give a writable --state-dir",
                ExitCode.STORAGE,
            ) from None
    settings = settings_from(config)
    arbiter = open_arbiter(settings)
    rows: list[dict[str, Any]] = []
    code = ExitCode.OK
    try:
        first = {i: read_clock(arbiter, i) for i in ids}
        second: dict[int, ClockReading] = {}
        if args.drift:
            time.sleep(args.drift)
            second = {i: read_clock(arbiter, i) for i in ids}
        for device_id in ids:
            reading = first[device_id]
            row = _row(reading)
            later = second.get(device_id)
            if later is not None and reading.offset_s is not None and later.offset_s is not None:
                elapsed = later.pi_time.timestamp() - reading.pi_time.timestamp()
                if elapsed > 0:
                    per_day = (later.offset_s - reading.offset_s) / elapsed * 86400
                    row["drift_s_per_day"] = round(per_day, 1)
                    # the clock has 1 ms steps and each reading's moment is known to about
                    # half its round trip: below this a drift is noise (read longer apart)
                    row["drift_resolution_s_per_day"] = round(0.004 / elapsed * 86400, 1)
            if reading.status != "ok":
                code = max(code, ExitCode.NO_ANSWER)
            if args.set:
                outcome = _set_one(arbiter, audit, device_id, args.yes, human)
                row["set"] = outcome is None
                if outcome is not None:
                    row["error"] = outcome
                    code = max(code, ExitCode.DEVICE)
                else:
                    after = read_clock(arbiter, device_id)
                    row["after"] = _row(after)
            rows.append(row)
    except LinkError as exc:
        raise CliError(str(exc), ExitCode.CONNECTION) from None
    finally:
        arbiter.stop()
    if args.json:
        emit_json({"meters": rows, "port": settings.port})
    else:
        _print(rows)
    return int(code)


def _row(reading: ClockReading) -> dict[str, Any]:
    offset = reading.offset_s
    return {
        "id": reading.id,
        "meter_time": _iso(reading.meter_time),
        "pi_time": _iso(reading.pi_time),
        "offset_s": None if offset is None else round(offset, 3),
        "set": False,
        "status": reading.status,
    }


def _set_one(
    arbiter: BusArbiter, audit: AuditLog, device_id: int, yes: bool, human: Any
) -> str | None:
    """Set one meter's clock; None when done, else why not."""

    def ask(lines: Sequence[str]) -> bool:
        return confirm(lines, yes, human)

    def sent(request: WriteRequest) -> None:
        print(f"  sent: {request.frame().hex(' ').upper()}", file=human)

    outcome = set_clock(arbiter, audit, device_id, ask, retime=not yes, on_sent=sent)
    if outcome is not None and outcome.startswith("not confirmed"):
        return "not confirmed (give --yes to send without asking)"
    return outcome


def _print(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["meter_time"] is None:
            line = f"id {row['id']:>3}  no clock read ({row['status']})"
        else:
            line = (
                f"id {row['id']:>3}  meter {row['meter_time']}  this machine "
                f"{row['pi_time']}  offset {row['offset_s']:+.3f} s"
            )
            if "drift_s_per_day" in row:
                line += (
                    f"  drift {row['drift_s_per_day']:+.1f} s/day "
                    f"(± {row['drift_resolution_s_per_day']:.1f})"
                )
        after = row.get("after")
        if after:
            line += f"\n       set: offset now {after['offset_s']:+.3f} s"
        elif row.get("error"):
            line += f"\n       not set: {row['error']}"
        print(line)
