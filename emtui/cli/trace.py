"""``--trace FILE`` and ``-v``: the traffic monitor's text for scan, read, --log and the app.

Both hook every arbiter the process creates (:func:`add_process_listener`), so a command and
the app are traced the same way without each one passing a listener around. ``-v`` prints to
stderr and is refused in the app, where stderr is the screen.
"""

from __future__ import annotations

import argparse
import atexit
import sys
from pathlib import Path

from emtui.cli.common import CliError, ExitCode
from emtui.core.bus.traffic import (
    TRACE_MAX_BYTES,
    StderrTrace,
    TraceWriter,
    add_process_listener,
)


def add_trace_flags(parser: argparse.ArgumentParser, verbose: bool = True) -> None:
    """Add ``--trace FILE`` (and ``-v``) to a command's parser."""
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="append every request and reply to FILE in the traffic monitor's text format "
        f"(rotated to FILE.1 at {TRACE_MAX_BYTES // (1024 * 1024)} MiB)",
    )
    if verbose:
        parser.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="print every request and reply to stderr (not in the app: use --trace)",
        )


def install_trace(args: argparse.Namespace, in_app: bool) -> None:
    """Start the trace the flags ask for; CliError (usage) for ``-v`` in the app or a trace
    file that cannot be opened."""
    if getattr(args, "verbose", False):
        if in_app:
            raise CliError(
                "-v prints the traffic to stderr, which would draw over the app: "
                "use --trace FILE (or the traffic screen, key t)",
                ExitCode.USAGE,
            )
        add_process_listener(StderrTrace(sys.stderr).listener)
    path = getattr(args, "trace", None)
    if path:
        try:
            writer = TraceWriter(Path(path))
        except OSError as exc:
            raise CliError(
                f"--trace {path}: cannot write it ({exc.strerror}); give a writable file",
                ExitCode.USAGE,
            ) from None
        atexit.register(writer.close)
        add_process_listener(writer.listener)
