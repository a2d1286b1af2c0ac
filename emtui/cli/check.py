"""``emtui check``: capture one window from every meter and judge the commissioning checks.

The checks themselves live in :mod:`emtui.core.check.checks` (pure functions); this module
opens the bus through a :class:`~emtui.core.session.BusSession`, captures the window, and
prints the verdicts (a table, or the ``--json`` document of design §12).
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emtui.cli.common import (
    CliError,
    ExitCode,
    effective_config,
    emit_json,
    settings_from,
    warn_unusual_baud,
)
from emtui.core.check.capture import capture_window
from emtui.core.check.checks import run_checks
from emtui.core.check.model import CheckReport, CheckResult
from emtui.core.config import Config
from emtui.core.session import BusSession

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_checked": "dim"}


def expectations(config: Config) -> dict[int, dict[str, float | int]]:
    """Per meter id, the ``[meters.expect]`` values of the config (empty when none)."""
    out: dict[int, dict[str, float | int]] = {}
    for meter in config.meters:
        expect = getattr(meter, "expect", None)
        if expect:
            out[meter.id] = dict(expect)
    return out


def check(args: argparse.Namespace) -> int:
    """``emtui check``: exit 0 when nothing failed, DEVICE (5) when a check failed."""
    config = effective_config(args)
    settings = settings_from(config)
    if not config.meters:
        raise CliError(
            "no meters to check: give --ids (e.g. --ids 1-4) or [[meters]] tables in the config",
            ExitCode.USAGE,
        )
    warn_unusual_baud(config)
    err = Console(stderr=True, highlight=False)
    if not args.json:
        err.print(
            f"checking {settings.describe()}, ids {', '.join(str(i) for i in config.ids)}, "
            f"over {args.seconds:g} s"
        )
    session = BusSession(config, settings)
    session.open_bus()  # PortBusy / LinkError: exit 3, naming the holder
    try:
        capture = capture_window(session, args.seconds, expect=expectations(config))
    finally:
        session.stop()
    report = run_checks(capture)
    if args.json:
        emit_json(report.as_dict())
    else:
        _print(report)
    return int(ExitCode.DEVICE if report.failed() else ExitCode.OK)


def _row(table: Table, check: CheckResult) -> None:
    style = _STYLE.get(check.verdict, "")
    table.add_row(check.name, f"[{style}]{check.verdict}[/]", escape(check.why))


def _print(report: CheckReport) -> None:
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    for meter in report.meters:
        title = f"id {meter.id}" + (f" — {meter.label}" if meter.label else "")
        table = Table(title=title, title_justify="left", show_edge=False)
        table.add_column("check")
        table.add_column("verdict")
        table.add_column("why", overflow="fold")
        for c in meter.checks:
            _row(table, c)
        console.print(table)
    table = Table(title="bus", title_justify="left", show_edge=False)
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("why", overflow="fold")
    for c in report.bus:
        _row(table, c)
    console.print(table)
    failed = report.failed()
    if failed:
        names = ", ".join(f"{'bus' if i is None else f'id {i}'} {n}" for i, n in failed)
        console.print(f"[bold red]failed:[/] {names}")
