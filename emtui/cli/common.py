"""What every ``emtui`` command shares: exit codes, one-line errors, flag types, the config.

Kept apart from the parser and the commands so each command module imports this and nothing
imports the commands back (the old cli/commands circle).
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
from typing import Any

from emtui.core.bus.ids import parse_ids
from emtui.core.bus.link import ConnectionSettings
from emtui.core.config import (
    STANDARD_BAUDS,
    Config,
    ConfigError,
    apply_overrides,
    find_config_file,
    load_config,
    unusual_baud,
)
from emtui.core.maps.registers import MapError, RegisterMap, load_map


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


SUBCOMMANDS = (
    "scan",
    "read",
    "map",
    "sim",
    "config",
    "upload",
    "status",
    "service",
    "write",
    "setup",
    "clock",
    "check",
    "report",
    "ports",
    "detect",
    "serve",
)

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
        from emtui.core.bus.ports import list_serial_ports

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
