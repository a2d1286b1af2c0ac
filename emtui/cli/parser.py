"""The argument parser of every ``emtui`` command (design §7, §12)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from emtui import __version__
from emtui.cli.common import SUBCOMMANDS, ExitCode
from emtui.cli.trace import add_trace_flags
from emtui.core.bus.ids import MAX_ID, MIN_ID
from emtui.core.config import flag_problem

# -- flag types ----------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as ONE line on stderr (exit 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line pointing at ``--help`` and exit USAGE."""
        self.exit(int(ExitCode.USAGE), f"{self.prog}: {message} — see {self.prog} --help\n")


def _number_text(text: str, kind: Callable[[str], float]) -> float:
    """``text`` as a number of ``kind``; "nan", "inf" and non-numbers are refused."""
    try:
        value = kind(text.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def flag_number(flag: str, kind: type[float] | type[int] = float) -> Callable[[str], Any]:
    """An argparse ``type=`` for ``flag``: a finite number in the range of its config key."""

    def parse(text: str) -> float:
        value = _number_text(text, kind)
        problem = flag_problem(flag, value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def int_range(low: int, high: int | None = None, hint: str = "") -> Callable[[str], int]:
    """An argparse ``type=``: a whole number from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        value = int(_number_text(text, int))
        if value < low or (high is not None and value > high):
            span = f"{low}-{high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"must be {span}{hint}, not {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    """``--seconds``: a window of 1-3600 s."""
    value = _number_text(text, float)
    if not 1.0 <= value <= 3600.0:
        raise argparse.ArgumentTypeError(f"must be 1-3600 seconds, not {text}")
    return value


def _add_connection(parser: argparse.ArgumentParser, ids_help: str | None) -> None:
    """Connection flags; each overrides the config file (so none has a default here)."""
    group = parser.add_argument_group("connection (each flag overrides the config file)")
    group.add_argument("--config", help="config file (default: ./emtui.toml, user, /etc/emtui)")
    group.add_argument(
        "--port",
        help="serial device (a /dev/serial/by-id/… name survives reboots), "
        "socket://HOST:PORT (RTU over TCP) or tcp://HOST:PORT (Modbus TCP)",
    )
    group.add_argument("--baud", type=flag_number("--baud", int), help="bit/s (default 19200)")
    group.add_argument("--parity", choices=("E", "O", "N"), type=str.upper, help="default E")
    group.add_argument("--stopbits", type=int, choices=(1, 2), help="default 1")
    group.add_argument(
        "--timeout",
        type=flag_number("--timeout"),
        help="fixed reply timeout in s (default: learned per meter)",
    )
    group.add_argument(
        "--retries", type=flag_number("--retries", int), help="retries of a failed poll (default 1)"
    )
    group.add_argument(
        "--local-echo",
        action="store_true",
        default=None,
        help="the adapter echoes its own transmission",
    )
    group.add_argument(
        "--gap", type=flag_number("--gap"), help="extra silence before each request, s"
    )
    if ids_help is not None:
        group.add_argument("--ids", help=ids_help)
    group.add_argument("--map", help="register map name or TOML file (default em6400ng)")


def _add_logging(parser: argparse.ArgumentParser) -> None:
    """Where the logger polls to and keeps its state (each overrides the config file)."""
    parser.add_argument(
        "--interval", type=flag_number("--interval"), help="poll interval, s (0: back to back)"
    )
    parser.add_argument("--data-dir", help="where the CSV files go")
    parser.add_argument("--state-dir", help="upload queue, status file and port lock")


def _add_window(parser: argparse.ArgumentParser) -> None:
    """``--seconds`` and ``--interval`` of the commands that judge one window (check, report)."""
    parser.add_argument(
        "--seconds",
        type=_seconds,
        default=10.0,
        help="length of the window (default 10; the wiring checks need 10 s of load)",
    )
    parser.add_argument(
        "--interval",
        type=flag_number("--interval"),
        help="poll interval the bus load is judged against (default: the config's)",
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser for ``command`` (None: the top level: TUI, --demo, --log)."""
    if command is None:
        parser = Parser(
            prog="emtui",
            description="Commission and log Modbus RTU meters on RS-485. Commands: "
            + ", ".join(SUBCOMMANDS)
            + " (emtui COMMAND --help).",
        )
        parser.add_argument("--version", action="version", version=f"emtui {__version__}")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--demo", action="store_true", help="live view of the built-in simulated site"
        )
        mode.add_argument(
            "--log", action="store_true", help="log the meters to CSV (headless, unattended)"
        )
        parser.add_argument(
            "--allow-writes",
            action="store_true",
            help="the app may write (raw view, setup, clock; with --demo: to the simulated "
            "meters); each write is shown, confirmed and audited",
        )
        parser.add_argument(
            "--cycles",
            type=int_range(1, hint=" (leave it out to run until stopped)"),
            help="stop after N poll cycles",
        )
        _add_logging(parser)
        _add_connection(parser, "the meters to poll, e.g. 1-4,7")
        add_trace_flags(parser)
        return parser
    parser = Parser(prog=f"emtui {command}")
    if command == "scan":
        parser.description = "Find the meters on a bus and identify them."
        _add_connection(parser, "ids to scan, e.g. 1-10 (default 1-247)")
        parser.add_argument("--expect", help="ids you expect; missed ones are retried")
        parser.add_argument(
            "--all", action="store_true", help="scan every id even when all expected answered"
        )
        parser.add_argument("--no-identify", action="store_true", help="skip identification")
        add_trace_flags(parser)
        _add_json(parser)
    elif command == "read":
        parser.description = "Read and decode a meter's registers once."
        _add_connection(parser, None)
        parser.add_argument(
            "--id", type=int_range(MIN_ID, MAX_ID), required=True, help="the meter's slave id"
        )
        parser.add_argument("--group", action="append", help="only these map groups")
        parser.add_argument("--logged", action="store_true", help="only the logged set")
        raw = parser.add_argument_group("raw registers (--raw; design §13)")
        raw.add_argument(
            "--raw", action="store_true", help="read a block as it is, in every type and order"
        )
        where = raw.add_mutually_exclusive_group()
        where.add_argument(
            "--register",
            type=int_range(1, 65536, hint=" (the vendor's 1-based number)"),
            help="first register, the vendor's 1-based number (frequency: 3110)",
        )
        where.add_argument(
            "--address",
            type=int_range(0, 65535, hint=" (the wire address, register - 1)"),
            help="first wire address (register - 1)",
        )
        raw.add_argument(
            "--count",
            type=int_range(1, 2000),
            default=2,
            help="registers (1-125) or bits (1-2000) to read (default 2)",
        )
        raw.add_argument(
            "--function",
            type=int,
            choices=(1, 2, 3, 4),
            default=3,
            help="1 coils, 2 discrete inputs, 3 holding (default), 4 input registers",
        )
        raw.add_argument(
            "--base",
            type=int,
            choices=(0, 1),
            default=1,
            help="number the rows by register (1, default) or by wire address (0)",
        )
        raw.add_argument(
            "--yes", action="store_true", help="read a block that touches a register that acts"
        )
        add_trace_flags(parser)
        _add_json(parser)
    elif command == "check":
        parser.description = (
            "Commissioning checks over one window: link, identity, setup, CT polarity, phasing, "
            "voltages, unbalance, frequency, clock, energy, bus load."
        )
        _add_connection(parser, "the meters to check, e.g. 1-4")
        _add_window(parser)
        _add_json(parser)
    elif command == "report":
        parser.description = (
            "The commissioning report: the checks of emtui check over one window, written as "
            "one self-contained HTML file (it prints to PDF) and the same data as JSON."
        )
        _add_connection(parser, "the meters to report on, e.g. 1-4")
        _add_window(parser)
        parser.add_argument(
            "--out",
            required=True,
            metavar="DIR",
            help="directory for emtui-report-<site>-<YYYYmmdd-HHMMSS>.html and .json "
            "(created if missing)",
        )
    elif command == "map":
        parser.description = "Print and validate a register map."
        parser.add_argument("name", help="a built-in map name or a TOML file")
        _add_json(parser)
    elif command in ("write", "setup", "clock"):
        from emtui.cli.writeflags import add_write_arguments

        add_write_arguments(parser, command, _add_connection, _add_json)
    elif command == "sim":
        from emtui.sim.command import add_arguments

        parser.description = "Serve a simulated bus of meters; prints the port on line 1."
        add_arguments(parser)
    elif command == "config":
        parser.description = "Validate the config file and print the effective settings."
        parser.add_argument("action", choices=("check",))
        parser.add_argument("file", nargs="?", help="the config file (same as --config FILE)")
        _add_connection(parser, "the meters to poll")
        _add_logging(parser)
        _add_json(parser)
    elif command in ("upload", "status"):
        if command == "upload":
            parser.description = (
                "Show the upload queue with each file's state and reason; send it now (--now), "
                "or repair it: --retry, --requeue, --drop."
            )
            action = parser.add_mutually_exclusive_group()
            action.add_argument("--now", action="store_true", help="send every queued file now")
            action.add_argument(
                "--retry", metavar="FILE|all", help="send this queued file (or all) now"
            )
            action.add_argument(
                "--requeue",
                metavar="FILE",
                help="queue a file that changed (or was dropped) again with its content now",
            )
            action.add_argument(
                "--drop", metavar="FILE", help="take a file out of the queue (the file is kept)"
            )
        else:
            parser.description = "Show the logger's state: rows, errors, queue, uploads."
        parser.add_argument("--config", help="config file")
        parser.add_argument("--state-dir", help="upload queue, status file and port lock")
        _add_json(parser)
    elif command == "detect":
        parser.description = (
            "Find devices whatever their serial settings: factory 9600 8E1 id 1 first, then "
            "the connection's settings, then the rest; stops when every expected id answered."
        )
        _add_connection(parser, "ids to look at, e.g. 20-30 (default 1-247)")
        parser.add_argument("--expect", help="ids you expect; detection stops once all answered")
        parser.add_argument(
            "--only",
            metavar="SETTINGS",
            help="only these settings: BAUD, FORMAT or BAUD:FORMAT, comma-separated "
            "(e.g. 9600:8E1,19200 or 8N1)",
        )
        _add_json(parser)
    elif command == "serve":
        parser.description = (
            "The app in a browser (textual-serve), one browser at a time. No password: it "
            "listens on 127.0.0.1 unless --public; from elsewhere use ssh -L 8000:127.0.0.1:8000."
        )
        parser.add_argument(
            "--demo", action="store_true", help="serve the app on the built-in simulated site"
        )
        parser.add_argument(
            "--listen",
            default="127.0.0.1:8000",
            metavar="HOST:PORT",
            help="address to listen on (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--public",
            action="store_true",
            help="allow a non-loopback --listen (anyone who reaches it controls the app)",
        )
        parser.add_argument(
            "--allow-writes",
            action="store_true",
            help="the served app may write (raw view); each write is confirmed and audited",
        )
        _add_logging(parser)
        _add_connection(parser, "the meters to poll, e.g. 1-4,7")
    elif command == "ports":
        parser.description = "List serial ports: USB ids, /dev/serial/by-id names, who holds them."
        parser.add_argument("devices", nargs="*", metavar="DEVICE", help="also describe these")
        _add_json(parser)
    elif command == "service":
        parser.description = "Print or install the systemd unit that runs emtui --log at boot."
        parser.add_argument("action", choices=("print", "install"))
        parser.add_argument("--user", default="emtui", help="account to run as (default emtui)")
        parser.add_argument(
            "--config", default="/etc/emtui/config.toml", help="config file the service reads"
        )
        parser.add_argument(
            "--data-dir", help="CSV directory (default: the config's, else /var/lib/emtui)"
        )
        parser.add_argument(
            "--state-dir", help="queue, status and lock (default: the config's, else DATA/state)"
        )
    return parser
