"""The one entry point, ``emtui`` (design §7).

The commands' ``--json`` output and exit codes are an API: other tools depend on them.
Human output uses Rich; the TUI modules are imported only for the TUI commands.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from emtui import __version__
from emtui.core.config import (
    STANDARD_BAUDS,
    Config,
    ConfigError,
    apply_overrides,
    find_config_file,
    flag_problem,
    load_config,
    unusual_baud,
)
from emtui.core.ids import MAX_ID, MIN_ID, parse_ids
from emtui.core.link import ConnectionSettings, LinkError
from emtui.core.registers import MapError, RegisterMap, load_map


class ExitCode(enum.IntEnum):
    """Process exit codes (documented in the README)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONNECTION = 3
    NO_ANSWER = 4
    DEVICE = 5
    MAP = 6
    CONFIG = 7
    UPLOAD = 8
    STORAGE = 9
    INTERRUPTED = 130


class CliError(Exception):
    """An error to print as one line (no traceback) and exit with ``code``."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


SUBCOMMANDS = ("scan", "read", "map", "sim", "config", "upload", "status", "service")

NO_ANSWER_ADVICE = (
    "no device answered. Likely causes: wrong baud or parity (EM6400NG factory setting is "
    "9600 8E1, address 1); A and B wires swapped; missing termination or bias on a long bus; "
    "wrong ids; the meter's protocol not set to Modbus RTU"
)


def quiet_pymodbus() -> None:
    """pymodbus logs an ERROR on every miss (design §10): keep it off the terminal."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)


class _StderrHandler(logging.Handler):
    """The one handler of the ``emtui`` loggers: ``emtui: message`` on stderr.

    It looks ``sys.stderr`` up per record, so a replaced stderr (tests, the TUI) is used.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record as one line."""
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def setup_logging() -> None:
    """Send the engine's warnings to stderr as ``emtui: …`` lines, once.

    Without a handler Python's last resort printed them bare; adding one on every call (the
    TUI and tests call :func:`main` more than once per process) would print each line twice.
    """
    logger = logging.getLogger("emtui")
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("emtui: %(message)s"))
    logger.addHandler(handler)


# -- argument parsing ----------------------------------------------------------------------------


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
            "--cycles",
            type=int_range(1, hint=" (leave it out to run until stopped)"),
            help="stop after N poll cycles",
        )
        _add_logging(parser)
        _add_connection(parser, "the meters to poll, e.g. 1-4,7")
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
        _add_json(parser)
    elif command == "read":
        parser.description = "Read and decode a meter's registers once."
        _add_connection(parser, None)
        parser.add_argument(
            "--id", type=int_range(MIN_ID, MAX_ID), required=True, help="the meter's slave id"
        )
        parser.add_argument("--group", action="append", help="only these map groups")
        parser.add_argument("--logged", action="store_true", help="only the logged set")
        _add_json(parser)
    elif command == "map":
        parser.description = "Print and validate a register map."
        parser.add_argument("name", help="a built-in map name or a TOML file")
        _add_json(parser)
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


def effective_config(args: argparse.Namespace, *, meters: bool = True) -> Config:
    """The config file (found as the design says) with this command's flags applied.

    ``meters=False`` leaves ``--ids`` alone (a scan's ids are a range to probe, not meters).
    """
    try:
        config = load_config(find_config_file(getattr(args, "config", None)))
    except ConfigError as exc:
        raise CliError(str(exc), ExitCode.CONFIG) from None
    ids = getattr(args, "ids", None) if meters else None
    try:
        # An empty --ids is an error, not "no flag": test against None, not truthiness.
        effective = apply_overrides(
            config,
            port=getattr(args, "port", None),
            baud=getattr(args, "baud", None),
            parity=getattr(args, "parity", None),
            stopbits=getattr(args, "stopbits", None),
            timeout=getattr(args, "timeout", None),
            retries=getattr(args, "retries", None),
            local_echo=getattr(args, "local_echo", None),
            gap=getattr(args, "gap", None),
            ids=ids_from_text(ids, "--ids") if ids is not None else None,
            map_name=getattr(args, "map", None) if meters else None,
            interval=getattr(args, "interval", None),
            data_dir=getattr(args, "data_dir", None),
            state_dir=getattr(args, "state_dir", None),
        )
    except ConfigError as exc:  # a flag out of range (the parser checks most before)
        raise CliError(str(exc), ExitCode.USAGE) from None
    return effective


def warn_unusual_baud(config: Config) -> None:
    """One warning line when the bit rate is not a standard one (the commands that do not
    run ``check_config``, which warns about it itself)."""
    if config.bus.baud not in STANDARD_BAUDS:
        print(f"emtui: warning: baud {unusual_baud(config.bus.baud)}", file=sys.stderr)


def settings_from(config: Config) -> ConnectionSettings:
    """The connection of ``config``; a missing port is a usage error listing the ports."""
    if not config.bus.port:
        from emtui.core.ports import list_serial_ports

        ports = list_serial_ports()
        found = "; ".join(p.device for p in ports) if ports else "none found"
        raise CliError(
            f"no port given: use --port PATH or set port in the config's [bus] table "
            f"(serial ports: {found})",
            ExitCode.USAGE,
        )
    return config.bus.settings()


def map_from_args(name: str) -> RegisterMap:
    """Load the map named on the command line (MapError becomes exit code MAP)."""
    try:
        return load_map(name)
    except MapError as exc:
        raise CliError(str(exc), ExitCode.MAP) from None


def ids_from_text(text: str, flag: str) -> list[int]:
    """Parse an id list flag (a usage error when malformed)."""
    try:
        return parse_ids(text)
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}", ExitCode.USAGE) from None


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


# -- dispatch ------------------------------------------------------------------------------------


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    quiet_pymodbus()
    setup_logging()
    argv = list(argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv[1:] if command else argv)
    if command == "config" and args.file is not None:
        if args.config is not None and args.config != args.file:
            raise CliError(
                f"two config files given ({args.file} and --config {args.config}) — give one",
                ExitCode.USAGE,
            )
        args.config = args.file
    from emtui import commands

    if command == "scan":
        return commands.scan(args)
    if command == "read":
        return commands.read(args)
    if command == "map":
        return commands.show_map(args)
    if command == "sim":
        from emtui.sim.command import run as run_sim

        return int(run_sim(args))
    if command in ("config", "upload", "status", "service"):
        from emtui import logcommands

        return int(getattr(logcommands, command)(args))
    if args.log:
        from emtui import logcommands

        return logcommands.log(args)
    from emtui.ui.run import run_app, run_demo

    if args.demo:
        return run_demo({})
    config = effective_config(args)
    return run_app(config, settings_from(config), {})


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: errors become one line on stderr and an exit code."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except CliError as exc:
        for line in str(exc).splitlines():  # several config problems: each its own line
            print(f"emtui: {line}", file=sys.stderr)
        return int(exc.code)
    except LinkError as exc:
        print(f"emtui: {exc}", file=sys.stderr)
        return int(ExitCode.CONNECTION)
    except MapError as exc:
        print(f"emtui: {exc}", file=sys.stderr)
        return int(ExitCode.MAP)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"emtui: {line}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    except KeyboardInterrupt:
        print("emtui: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
