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
from emtui.core.bus.link import PortBusy
from emtui.core.check.capture import capture_window, expectations
from emtui.core.check.checks import run_checks
from emtui.core.check.model import BusCapture, CheckReport, CheckResult
from emtui.core.config import Config
from emtui.core.observer import STOP_HINT
from emtui.core.session import BusSession

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_checked": "dim"}


def checked_config(args: argparse.Namespace, what: str) -> Config:
    """The config of ``emtui check`` / ``report``: meters to ``what`` and a port, or a usage
    error saying what to give."""
    config = effective_config(args)
    settings_from(config)  # no port: a usage error listing the ports
    if not config.meters:
        raise CliError(
            f"no meters to {what}: give --ids (e.g. --ids 1-4) or [[meters]] tables in the config",
            ExitCode.USAGE,
        )
    warn_unusual_baud(config)
    return config


def announce(config: Config, seconds: float) -> None:
    """The line on stderr before the window: what is checked, over how long."""
    ids = ", ".join(str(i) for i in config.ids)
    print(
        f"checking {settings_from(config).describe()}, ids {ids}, over {seconds:g} s",
        file=sys.stderr,
        flush=True,
    )


def capture_checked(config: Config, seconds: float) -> tuple[BusCapture, CheckReport]:
    """Open the bus, capture one window of every meter of ``config`` and judge it.

    Raises:
        CliError: a logger (or another program) holds the port: exit 3 naming its PID and how
            to stop the service.
    """
    session = BusSession(config, settings_from(config))
    try:
        session.open_bus()
    except PortBusy as exc:
        raise CliError(f"{exc} ({STOP_HINT})", ExitCode.CONNECTION) from None
    try:
        capture = capture_window(session, seconds, expect=expectations(config.meters))
    finally:
        session.stop()
    return capture, run_checks(capture)


def check(args: argparse.Namespace) -> int:
    """``emtui check``: exit 0 when nothing failed, DEVICE (5) when a check failed."""
    config = checked_config(args, "check")
    if not args.json:
        announce(config, args.seconds)
    _, report = capture_checked(config, args.seconds)
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
        title = f"id {meter.id}" + (f" — {escape(meter.label)}" if meter.label else "")
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

    def named(verdict: str) -> str:
        found: list[tuple[int | None, str]] = [
            (m.id, c.name)
            for m in report.meters
            for c in m.checks
            # setup without [meters.expect] is only shown: not a check left undone
            if c.verdict == verdict and not (verdict == "not_checked" and c.name == "setup")
        ]
        found += [(None, c.name) for c in report.bus if c.verdict == verdict]
        return ", ".join(f"{'bus' if i is None else f'id {i}'} {n}" for i, n in found)

    # the last lines say what needs doing: failed, warned, and what could not be judged
    if failed := named("fail"):
        console.print(f"[bold red]failed:[/] {failed}")
    if warned := named("warn"):
        console.print(f"[yellow]warned:[/] {warned}")
    if unjudged := named("not_checked"):
        console.print(f"[dim]not checked:[/] {unjudged} (see why above)")
    if not failed and not warned and not unjudged:
        console.print("[green]nothing failed or warned[/]")
