"""The one entry point, ``emtui`` (design §7).

The commands' ``--json`` output and exit codes are an API: other tools depend on them.
Human output uses Rich; the TUI modules are imported only for the TUI commands.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from emtui import __version__
from emtui.core.ids import parse_ids
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
    INTERRUPTED = 130


class CliError(Exception):
    """An error to print as one line (no traceback) and exit with ``code``."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


SUBCOMMANDS = ("scan", "read", "map", "sim")

NO_ANSWER_ADVICE = (
    "no device answered. Likely causes: wrong baud or parity (EM6400NG factory setting is "
    "9600 8E1, address 1); A and B wires swapped; missing termination or bias on a long bus; "
    "wrong ids; the meter's protocol not set to Modbus RTU"
)


def quiet_pymodbus() -> None:
    """pymodbus logs an ERROR on every miss (design §10): keep it off the terminal."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)


# -- argument parsing ----------------------------------------------------------------------------


def _add_connection(parser: argparse.ArgumentParser, ids_default: str | None) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--port",
        help="serial device (a /dev/serial/by-id/… name survives reboots), "
        "socket://HOST:PORT (RTU over TCP) or tcp://HOST:PORT (Modbus TCP)",
    )
    group.add_argument("--baud", type=int, default=19200, help="bit/s (default 19200)")
    group.add_argument(
        "--parity", choices=("E", "O", "N"), default="E", type=str.upper, help="default E"
    )
    group.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    group.add_argument(
        "--timeout", type=float, help="fixed reply timeout in s (default: learned per meter)"
    )
    group.add_argument("--retries", type=int, default=1, help="retries of a failed poll")
    group.add_argument(
        "--local-echo", action="store_true", help="the adapter echoes its own transmission"
    )
    group.add_argument(
        "--gap", type=float, default=0.0, help="extra silence before each request, s"
    )
    if ids_default is not None:
        group.add_argument(
            "--ids", default=ids_default, help=f"slave ids, e.g. 1-4,7 (default {ids_default})"
        )
    group.add_argument("--map", default="em6400ng", help="register map name or TOML file")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser for ``command`` (None: the top level: TUI, --demo, --log)."""
    if command is None:
        parser = argparse.ArgumentParser(
            prog="emtui",
            description="Commission and log Modbus RTU meters on RS-485. Commands: "
            + ", ".join(SUBCOMMANDS)
            + " (emtui COMMAND --help).",
        )
        parser.add_argument("--version", action="version", version=f"emtui {__version__}")
        parser.add_argument(
            "--demo", action="store_true", help="live view of the built-in simulated site"
        )
        parser.add_argument(
            "--cycles", type=int, help="stop after N poll cycles (default: run until Ctrl-C)"
        )
        parser.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
        _add_connection(parser, "1-4")
        return parser
    parser = argparse.ArgumentParser(prog=f"emtui {command}")
    if command == "scan":
        parser.description = "Find the meters on a bus and identify them."
        _add_connection(parser, "1-247")
        parser.add_argument("--expect", help="ids you expect; missed ones are retried")
        parser.add_argument(
            "--all", action="store_true", help="scan every id even when all expected answered"
        )
        parser.add_argument("--no-identify", action="store_true", help="skip identification")
        parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    elif command == "read":
        parser.description = "Read and decode a meter's registers once."
        _add_connection(parser, None)
        parser.add_argument("--id", type=int, required=True, help="the meter's slave id")
        parser.add_argument("--group", action="append", help="only these map groups")
        parser.add_argument("--logged", action="store_true", help="only the logged set")
        parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    elif command == "map":
        parser.description = "Print and validate a register map."
        parser.add_argument("name", help="a built-in map name or a TOML file")
        parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    elif command == "sim":
        from emtui.sim.command import add_arguments

        parser.description = "Serve a simulated bus of meters; prints the port on line 1."
        add_arguments(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> ConnectionSettings:
    """The connection the flags describe; a missing port is a usage error with advice."""
    if not args.port:
        from emtui.core.ports import list_serial_ports

        ports = list_serial_ports()
        found = "; ".join(p.device for p in ports) if ports else "none found"
        raise CliError(f"no port given: use --port PATH (serial ports: {found})", ExitCode.USAGE)
    return ConnectionSettings(
        port=args.port,
        baud=args.baud,
        parity=args.parity,
        stopbits=args.stopbits,
        timeout=args.timeout,
        retries=args.retries,
        local_echo=args.local_echo,
        gap=args.gap,
    )


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
    argv = list(argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv[1:] if command else argv)
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
    if args.demo:
        return commands.demo(args)
    return commands.watch(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: errors become one line on stderr and an exit code."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except CliError as exc:
        print(f"emtui: {exc}", file=sys.stderr)
        return int(exc.code)
    except LinkError as exc:
        print(f"emtui: {exc}", file=sys.stderr)
        return int(ExitCode.CONNECTION)
    except MapError as exc:
        print(f"emtui: {exc}", file=sys.stderr)
        return int(ExitCode.MAP)
    except KeyboardInterrupt:
        print("emtui: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
