"""The CLI commands' bodies: engine calls plus Rich (human) or JSON output.

Kept apart from :mod:`emtui.cli` so argument parsing stays light; Rich is imported here, never
in the core.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from emtui.cli.common import (
    NO_ANSWER_ADVICE,
    CliError,
    ExitCode,
    effective_config,
    emit_json,
    ids_from_text,
    map_from_args,
    settings_from,
    warn_unusual_baud,
)
from emtui.cli.progress import eta_text, id_progress
from emtui.core.bus.arbiter import BusArbiter, Priority
from emtui.core.bus.ids import format_ids
from emtui.core.bus.link import ConnectionSettings
from emtui.core.bus.reader import MeterReader, Sample
from emtui.core.bus.scanner import FoundDevice, Scanner
from emtui.core.maps.codec import Value, display_text, meter_clock
from emtui.core.maps.registers import RegisterEntry, RegisterMap

#: Width of human output that goes to a file or a pipe: wide enough that no value is cut.
PIPE_WIDTH = 1000


def _console() -> Console:
    # Off a terminal Rich assumes 80 columns and cuts table cells with an ellipsis; a file or
    # a pipe (grep, less -S, a spreadsheet import) needs every value whole. $COLUMNS still wins.
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console


def _err_console() -> Console:
    return Console(stderr=True, highlight=False)


def format_value(value: Value, entry: RegisterEntry) -> str:
    """A decoded value for a table: exact and short (see codec.display_text), PF side added."""
    text = display_text(value, entry)
    if value.value is not None and value.lead_lag:
        text += " lag" if value.lead_lag == "lagging" else f" {value.lead_lag}"
    return text


# -- scan ----------------------------------------------------------------------------------------


def scan(args: argparse.Namespace) -> int:
    """``emtui scan``: find and identify the meters; exit NO_ANSWER when nobody answered."""
    config = effective_config(args, meters=False)
    settings = settings_from(config)
    rmap = map_from_args(args.map or "em6400ng")
    # `is None`, not `or`: an empty --ids '' is a mistake to report, not "scan everything"
    ids = ids_from_text("1-247" if args.ids is None else args.ids, "--ids")
    expected = ids_from_text(args.expect, "--expect") if args.expect is not None else []
    warn_unusual_baud(config)
    out = _console()
    err = _err_console()
    progress = id_progress("scanning", err, disable=args.json or not err.is_terminal)
    task = progress.add_task("scan", total=len(ids), current=ids[0] if ids else 0, eta="?")
    scanner: Scanner | None = None

    def on_progress(done: int, total: int, current: int) -> None:
        eta = eta_text(scanner.eta() if scanner is not None else None)
        progress.update(task, completed=done, current=current, eta=eta)

    def on_found(device: FoundDevice) -> None:
        if not args.json:
            # Above the progress bar on a terminal; to stdout when that is a file or a pipe.
            console = progress.console if out.is_terminal else out
            console.print(_found_line(device), highlight=False)

    if not args.json:
        err.print(
            f"scanning {settings.describe()}, ids {format_ids(ids)}"
            + (f", expecting {format_ids(expected)}" if expected else "")
        )
    with BusArbiter(settings) as arbiter, progress:
        scanner = Scanner(
            arbiter,
            rmap,
            identify=not args.no_identify,
            on_progress=on_progress,
            on_found=on_found,
        )
        try:
            report = scanner.scan(ids, expected, stop_early=not args.all)
        except KeyboardInterrupt:
            scanner.cancel()
            raise
        stats = {str(d.id): arbiter.device_stats(d.id).as_dict() for d in report.devices}
    if args.json:
        emit_json(
            {
                "devices": [d.as_dict() for d in report.devices],
                "port": settings.port,
                "ids": format_ids(ids),
                "expected": expected,
                "missing": report.missing,
                "duration_s": round(report.duration, 3),
                "stopped_early": report.stopped_early,
                "slow_hint": report.slow_hint,
                "stats": stats,
            }
        )
    else:
        summary = f"{len(report.devices)} device(s) in {report.duration:.1f} s"
        if report.stopped_early:
            summary += " (stopped: every expected id answered; --all scans the rest)"
        out.print(summary)
        if report.missing:
            out.print(f"[bold red]missing:[/] {format_ids(report.missing)}")
        if report.slow_hint:
            err.print(f"note: {report.slow_hint}")
    if not report.devices:
        if not args.json:
            err.print(f"emtui: {NO_ANSWER_ADVICE}")
        return int(ExitCode.NO_ANSWER)
    return int(ExitCode.DEVICE if report.missing else ExitCode.OK)


def _found_line(device: FoundDevice) -> str:
    parts = [f"[bold green]id {device.id:>3}[/]", f"{device.rtt_ms:6.1f} ms"]
    if device.reply == "exception":
        parts.append(f"[yellow]answers with exception {device.exception_code:02d}[/]")
    for role in ("model", "name", "serial"):
        if role in device.identity:
            parts.append(f"{role} {device.identity[role]}")
    if device.second_pass:
        parts.append("(second pass)")
    return "  ".join(parts)


# -- read ----------------------------------------------------------------------------------------


def _read_entries(rmap: RegisterMap, args: argparse.Namespace) -> list[RegisterEntry]:
    # Registers that act when read (the command semaphore) are only read by --raw, on request.
    entries = [e for e in (rmap.logged if args.logged else rmap.entries) if not e.acts_on_read]
    if args.group:
        groups = set(args.group)
        known = {e.group for e in rmap.entries}
        unknown = groups - known
        if unknown:
            raise CliError(
                f"--group: unknown group(s) {', '.join(sorted(unknown))}; "
                f"map {rmap.name} has {', '.join(sorted(known))}",
                ExitCode.USAGE,
            )
        entries = [e for e in entries if e.group in groups]
    if not entries:
        which = " in group(s) " + ", ".join(sorted(set(args.group))) if args.group else ""
        raise CliError(
            f"--logged: map {rmap.name} marks no entry{which} logged, so there is nothing to "
            f"read — leave out --logged (or --group), or mark entries logged = true in the map",
            ExitCode.USAGE,
        )
    return entries


def _value_status(sample: Sample, entry: RegisterEntry) -> str:
    status = sample.entry_status.get(entry.name, "ok")
    if status == "ok" and sample.values[entry.name].value is None:
        return "na"
    return status


def read(args: argparse.Namespace) -> int:
    """``emtui read``: read one meter once and print every value (``--raw``: one block)."""
    if args.raw:
        from emtui.cli.raw import read_raw

        return read_raw(args)
    if args.register is not None or args.address is not None:
        raise CliError("--register/--address read a raw block: add --raw", ExitCode.USAGE)
    config = effective_config(args, meters=False)
    settings = settings_from(config)
    meter = config.meter(args.id)
    rmap = map_from_args(args.map or (meter.map if meter else "em6400ng"))
    entries = _read_entries(rmap, args)
    warn_unusual_baud(config)
    with BusArbiter(settings) as arbiter:
        reader = MeterReader(
            arbiter,
            args.id,
            rmap,
            entries,
            priority=Priority.INTERACTIVE,
            respect_backoff=False,
        )
        sample = reader.read()
        stats = arbiter.device_stats(args.id).as_dict()
    clock = meter_clock(sample.values)
    if args.json:
        values: list[dict[str, Any]] = []
        for entry in entries:
            value = sample.values[entry.name]
            item: dict[str, Any] = {
                "name": entry.name,
                "register": entry.register,
                "address": entry.address,
                "value": value.value,
                "unit": entry.unit,
                "status": _value_status(sample, entry),
                "label": entry.label,
                "type": entry.type,
                "group": entry.group,
            }
            if entry.type == "pf4q":
                item["lead_lag"] = value.lead_lag
            values.append(item)
        document: dict[str, Any] = {
            "id": args.id,
            "map": rmap.name,
            "status": sample.status,
            "values": values,
            "port": settings.port,
            "duration_s": round(sample.duration, 4),
            "requests": sample.requests,
            "stats": stats,
        }
        if clock is not None:
            document["meter_clock"] = clock
        emit_json(document)
    else:
        _print_read(sample, rmap, entries, clock, settings)
    return int(read_exit_code(sample, args.id))


def read_exit_code(sample: Sample, device_id: int) -> ExitCode:
    """Exit code of ``emtui read`` (README): 3 bus lost, 4 no answer, 5 any value not read."""
    if sample.link_error:
        print(f"emtui: {sample.link_error}", file=sys.stderr)
        return ExitCode.CONNECTION
    if sample.status == "timeout":
        print(f"emtui: meter {device_id} did not answer: {NO_ANSWER_ADVICE}", file=sys.stderr)
        return ExitCode.NO_ANSWER
    if sample.status != "ok":
        return ExitCode.DEVICE
    return ExitCode.OK


def _print_read(
    sample: Sample,
    rmap: RegisterMap,
    entries: list[RegisterEntry],
    clock: str | None,
    settings: ConnectionSettings,
) -> None:
    table = Table(
        title=f"meter {sample.device_id} · {rmap.name} · {settings.describe()} · {sample.status}",
        title_justify="left",
    )
    table.add_column("group")
    table.add_column("register", justify="right")
    table.add_column("name")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("status")
    for entry in entries:
        status = _value_status(sample, entry)
        style = "" if status == "ok" else ("dim" if status == "na" else "red")
        table.add_row(
            entry.group,
            str(entry.register),
            entry.label,
            format_value(sample.values[entry.name], entry),
            entry.unit,
            status,
            style=style,
        )
    console = _console()
    console.print(table)
    if clock is not None:
        console.print(f"meter clock: {clock}")
    console.print(f"{sample.requests} request(s) in {sample.duration * 1000:.0f} ms")


# -- map -----------------------------------------------------------------------------------------


def show_map(args: argparse.Namespace) -> int:
    """``emtui map``: print and validate a register map."""
    rmap = map_from_args(args.name)
    if args.json:
        emit_json(
            {
                "name": rmap.name,
                "model": rmap.model,
                "description": rmap.description,
                "word_order": rmap.word_order,
                "byte_order": rmap.byte_order,
                "block_size": rmap.block_size,
                "registers": [
                    {
                        "name": e.name,
                        "register": e.register,
                        "address": e.address,
                        "type": e.type,
                        "count": e.count,
                        "unit": e.unit,
                        "logged": e.logged,
                        "label": e.label,
                        "group": e.group,
                        "access": e.access,
                        "word_order": e.word_order,
                        "byte_order": e.byte_order,
                        "range": list(e.range) if e.range is not None else None,
                        "acts_on_read": e.acts_on_read,
                    }
                    for e in rmap.entries
                ],
            }
        )
        return int(ExitCode.OK)
    table = Table(
        title=f"{rmap.name}: {rmap.description} ({len(rmap)} entries, {len(rmap.logged)} logged)",
        title_justify="left",
    )
    for column in ("register", "address", "name", "label", "type", "count", "unit", "group"):
        table.add_column(column, justify="right" if column in ("register", "address") else "left")
    table.add_column("logged")
    for e in rmap.entries:
        table.add_row(
            str(e.register),
            str(e.address),
            e.name,
            e.label,
            e.type,
            str(e.count),
            e.unit,
            e.group,
            "yes" if e.logged else "",
        )
    _console().print(table)
    return int(ExitCode.OK)
