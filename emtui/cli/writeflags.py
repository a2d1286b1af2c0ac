"""The flags of the commands that write: ``emtui write``, ``emtui setup``, ``emtui clock``.

Kept out of :mod:`emtui.cli.parser` so that file only names them (design §12).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from emtui.core.bus.writes import ENCODINGS

__all__ = ["add_write_arguments"]


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, not {value}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be 0-3600 seconds, not {text!r}")
    return value


def add_write_arguments(
    parser: argparse.ArgumentParser,
    command: str,
    add_connection: Callable[[argparse.ArgumentParser, str | None], None],
    add_json: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the flags of ``command`` (write, setup or clock) to ``parser``."""
    safety = parser.add_argument_group("safety")
    safety.add_argument(
        "--allow-writes",
        action="store_true",
        help="without it nothing is ever written (exit 2, nothing on the wire)",
    )
    safety.add_argument(
        "--yes", action="store_true", help="send without asking (scripts); the frame is shown"
    )
    parser.add_argument("--state-dir", help="where the audit log goes (<state-dir>/audit.log)")
    if command == "write":
        parser.description = (
            "Write registers (FC16, or FC06 when asked) or coils (FC05/FC15) of one meter."
        )
        add_connection(parser, None)
        parser.add_argument(
            "--id", type=_int_range(0, 247), required=True, help="the meter's slave id"
        )
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--register", type=_int_range(1, 65536), help="the vendor's 1-based register number"
        )
        where.add_argument("--address", type=_int_range(0, 65535), help="the wire address")
        parser.add_argument(
            "--value", required=True, help="the value (several separated by commas)"
        )
        parser.add_argument(
            "--type", choices=tuple(ENCODINGS), default="uint16", help="default uint16"
        )
        parser.add_argument(
            "--order",
            choices=("ABCD", "CDAB", "BADC", "DCBA"),
            type=str.upper,
            default="ABCD",
            help="word/byte order (ABCD big-endian, default; CDAB word swap; BADC byte swap; "
            "DCBA little-endian)",
        )
        parser.add_argument(
            "--function",
            type=int,
            choices=(16, 6, 5, 15),
            default=16,
            help="16 write registers (default); 6 one register (the EM6400NG documents no "
            "FC06); 5/15 coils",
        )
    elif command == "setup":
        parser.description = (
            "Change a meter's Modbus address, baud and parity through its command interface "
            "(the connection flags give its present settings)."
        )
        add_connection(parser, None)
        parser.add_argument(
            "--id", type=_int_range(0, 247), required=True, help="the meter's present id"
        )
        parser.add_argument("--new-id", type=_int_range(0, 247), help="its new id")
        parser.add_argument(
            "--new-baud", type=int, choices=(4800, 9600, 19200, 38400), help="its new baud"
        )
        parser.add_argument(
            "--new-parity", choices=("E", "O", "N"), type=str.upper, help="its new parity"
        )
        parser.add_argument(
            "--settle",
            type=_positive,
            default=5.0,
            help="seconds to keep trying the meter at its new settings (default 5)",
        )
        add_json(parser)
    else:
        parser.description = (
            "Show each meter's clock against this machine's (offset, drift); --set sets it "
            "from this machine's local time (command 1003)."
        )
        add_connection(parser, "the meters, e.g. 1-4")
        parser.add_argument(
            "--set", action="store_true", help="set the meters' clocks (needs --allow-writes)"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="set even when this machine's clock is not NTP-synchronised",
        )
        parser.add_argument(
            "--drift",
            type=_positive,
            metavar="S",
            help="read again after S seconds and report the drift",
        )
        add_json(parser)
