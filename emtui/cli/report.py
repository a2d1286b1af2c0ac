"""``emtui report``: run the commissioning checks and leave the record, an HTML file and its JSON.

The window and the checks are exactly ``emtui check``'s (:func:`emtui.cli.check.capture_checked`);
the report itself is built and written by :mod:`emtui.core.report`, which the app's Commission
screen calls too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emtui.cli.check import announce, capture_checked, checked_config
from emtui.cli.common import CliError, ExitCode, settings_from
from emtui.core.report import ReportContext, ReportError, prepare_out_dir, write_report

__all__ = ["report"]


def report(args: argparse.Namespace) -> int:
    """``emtui report``: exit 0 when no check failed, DEVICE (5) when one did."""
    config = checked_config(args, "report on")
    out_dir = Path(args.out).expanduser()
    try:
        prepare_out_dir(out_dir)  # before the window: a bad --out costs no bus time
    except ReportError as exc:
        raise CliError(f"--out {exc}", ExitCode.USAGE) from None
    announce(config, args.seconds)
    capture, checked = capture_checked(config, args.seconds)
    context = ReportContext.for_connection(config.upload.site, settings_from(config))
    try:
        files = write_report(capture, checked, context, out_dir)
    except ReportError as exc:
        raise CliError(str(exc), ExitCode.STORAGE) from None
    print(files.html)
    print(files.json)
    print(files.document["summary"]["line"])
    return int(ExitCode.DEVICE if checked.failed() else ExitCode.OK)
