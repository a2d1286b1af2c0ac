"""``emtui detect``: find devices whatever their serial settings (design §12).

The engine is :mod:`emtui.core.bus.detect`; this module turns flags into a plan and prints
what answered (Rich on a terminal, or one JSON document).
"""

from __future__ import annotations

import argparse

from rich.console import Console

from emtui.cli.common import (
    NO_ANSWER_ADVICE,
    CliError,
    ExitCode,
    effective_config,
    emit_json,
    ids_from_text,
    map_from_args,
    settings_from,
)
from emtui.cli.progress import eta_text, id_progress
from emtui.core.bus.detect import (
    Detected,
    Detector,
    SerialSettings,
    ordered,
    parse_only,
    plan,
    start_arbiter,
)
from emtui.core.bus.ids import format_ids


def _line(found: Detected) -> str:
    device = found.device
    parts = [
        f"[bold green]id {device.id:>3}[/] at [bold]{found.settings.describe()}[/]",
        f"{device.rtt_ms:6.1f} ms",
    ]
    if device.reply == "exception":
        parts.append(f"[yellow]answers with exception {device.exception_code:02d}[/]")
    for role in ("model", "serial"):
        if role in device.identity:
            parts.append(f"{role} {device.identity[role]}")
    parts.append(f"(after {found.found_after:.1f} s)")
    return "  ".join(parts)


def detect(args: argparse.Namespace) -> int:
    """``emtui detect``: try the settings in a smart order; exit NO_ANSWER if none answered,
    DEVICE if an expected id was found at no setting."""
    config = effective_config(args, meters=False)
    base = settings_from(config)
    if base.kind in ("socket", "tcp"):
        raise CliError(
            f"{base.port}: detect changes the line settings, which {base.kind}:// cannot carry "
            "(the gateway's serial side is set on the gateway); use the serial device, or "
            "rfc2217:// if the device server speaks RFC 2217",
            ExitCode.USAGE,
        )
    rmap = map_from_args(args.map or "em6400ng")
    ids = ids_from_text("1-247" if args.ids is None else args.ids, "--ids")
    expected = ids_from_text(args.expect, "--expect") if args.expect is not None else []
    try:
        only = parse_only(args.only) if args.only is not None else None
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    order = ordered(SerialSettings.of(base), only)
    steps = plan(order, ids, expected)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    if not args.json:
        err.print(
            f"detecting on {base.port}: ids {format_ids(ids)}"
            + (f", expecting {format_ids(expected)}" if expected else "")
            + f", {len(order)} setting(s) from {order[0].describe()}"
        )
    progress = id_progress("{task.fields[settings]}", err, disable=args.json or not err.is_terminal)
    total = sum(len(s.ids) for s in steps)
    task = progress.add_task("detect", total=total, settings="", current=0, eta="?")
    detector: Detector | None = None

    def on_progress(done: int, total: int, settings: SerialSettings, current: int) -> None:
        eta = eta_text(detector.eta() if detector is not None else None)
        progress.update(
            task, completed=done, settings=settings.describe(), current=current, eta=eta
        )

    def on_found(found: Detected) -> None:
        if not args.json:
            console = progress.console if out.is_terminal else out
            console.print(_line(found), highlight=False)

    arbiter = start_arbiter(base, order)
    try:
        with progress:
            detector = Detector(
                arbiter, rmap, steps, expected, on_progress=on_progress, on_found=on_found
            )
            try:
                report = detector.run()
            except KeyboardInterrupt:
                detector.cancel()
                raise
    finally:
        arbiter.stop()
    warning = report.mixed_warning()
    if args.json:
        emit_json(
            {
                "found": [d.as_dict() for d in report.found],
                "duration_s": round(report.duration, 3),
                "floor_s": round(report.floor, 3),
                "tried": report.tried_dicts(),
                "rejected": [s.describe() for s in report.rejected],
                "expected": report.expected,
                "missing": report.missing,
                "mixed_settings": warning,
            }
        )
    else:
        out.print(
            f"{len(report.found)} answer(s) at {len({d.settings for d in report.found})} "
            f"setting(s) in {report.duration:.1f} s ({len(report.tried)} pass(es))"
        )
        if report.rejected:
            err.print(
                "the port refused "
                + ", ".join(s.describe() for s in report.rejected)
                + " (a pty takes only parity N): those were not tried"
            )
        if warning:
            err.print(f"[bold yellow]warning:[/] {warning}")
        if report.missing:
            out.print(f"[bold red]missing:[/] {format_ids(report.missing)}")
    if not report.found:
        if not args.json:
            err.print(f"emtui: {NO_ANSWER_ADVICE.split('. ', 1)[0]} at any setting tried")
        return int(ExitCode.NO_ANSWER)
    return int(ExitCode.DEVICE if report.missing else ExitCode.OK)
