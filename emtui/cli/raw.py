"""``emtui read --raw``: a block of registers as they are, in every type and order (design §13).

The technician's ModScan check from a shell: the registers as hex, unsigned and signed, every
32-bit decoding (and 64-bit with ``--json``) from every starting register in all four orders,
the map's names beside the registers it knows, and the off-by-one hint.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.table import Table

from emtui.cli.bus import _console
from emtui.cli.common import (
    NO_ANSWER_ADVICE,
    CliError,
    ExitCode,
    effective_config,
    emit_json,
    map_from_args,
    settings_from,
    warn_unusual_baud,
)
from emtui.core.bus.arbiter import BusArbiter, Priority, reply_values
from emtui.core.bus.link import Outcome, Reply
from emtui.core.maps.codec import WORD_ORDERS
from emtui.core.maps.rawregs import (
    ORDER_LABELS,
    ShiftHint,
    decodings,
    exception_text,
    find_shift_hint,
    names_by_register,
    register_rows,
)

#: The most a request may ask for: registers (FC 3/4), bits (FC 1/2).
MAX_REGISTERS = 125
MAX_BITS = 2000

FUNCTION_NAMES = {
    1: "coils",
    2: "discrete inputs",
    3: "holding registers",
    4: "input registers",
}


def raw_block(args: argparse.Namespace) -> tuple[int, int]:
    """The (first 1-based register, count) that ``--register``/``--address``/``--count`` ask
    for, checked against the function's limits; CliError (usage) otherwise."""
    if (args.register is None) == (args.address is None):
        raise CliError(
            "--raw needs --register R (the vendor's 1-based number) or --address A "
            "(the wire address), not both",
            ExitCode.USAGE,
        )
    register = args.register if args.register is not None else args.address + 1
    function = args.function
    count = args.count
    limit = MAX_BITS if function in (1, 2) else MAX_REGISTERS
    if not 1 <= count <= limit:
        raise CliError(
            f"--count {count}: function {function} reads 1-{limit} "
            f"{'bits' if function in (1, 2) else 'registers'} at a time",
            ExitCode.USAGE,
        )
    if register - 1 + count > 65536:
        raise CliError(
            f"register {register} + {count} runs past the last register 65536; "
            "start lower or read fewer",
            ExitCode.USAGE,
        )
    return register, count


def read_raw(args: argparse.Namespace) -> int:
    """``emtui read --raw``: read one block once and show it in every format."""
    for flag in ("group", "logged"):
        if getattr(args, flag):
            raise CliError(f"--{flag} selects map entries; --raw reads a block", ExitCode.USAGE)
    register, count = raw_block(args)
    function = args.function
    config = effective_config(args, meters=False)
    settings = settings_from(config)
    meter = config.meter(args.id)
    rmap = map_from_args(args.map or (meter.map if meter else "em6400ng"))
    acting = sorted(r for r in rmap.acting_registers if register <= r < register + count)
    if acting and function in (3, 4) and not args.yes:
        names = names_by_register(rmap)
        raise CliError(
            f"the block touches register {acting[0]} ({names.get(acting[0], '?')}), which acts "
            "when read (5680 takes the command-interface semaphore for about 4 minutes); "
            "add --yes to read it anyway, or leave it out of the block",
            ExitCode.USAGE,
        )
    warn_unusual_baud(config)
    hint: ShiftHint | None = None
    with BusArbiter(settings) as arbiter:
        reply = arbiter.read_registers(
            args.id, register - 1, count, function=function, priority=Priority.INTERACTIVE
        )
        values = reply_values(reply, function, count)
        if values is not None and function in (3, 4):

            def read(start: int, n: int) -> tuple[list[int] | None, int | None]:
                r = arbiter.read_registers(args.id, start - 1, n, function=function)
                return reply_values(r, function, n), r.exception_code

            hint = find_shift_hint(rmap, values, register, register, read)
        stats = arbiter.device_stats(args.id).as_dict()
    if args.json:
        emit_json(_document(args, rmap, register, count, reply, values, hint, stats))
    else:
        _print(args, rmap, register, count, reply, values, hint)
    return int(_exit_code(reply, args.id))


def _exit_code(reply: Reply, device_id: int) -> ExitCode:
    if reply.ok:
        return ExitCode.OK
    if reply.outcome is Outcome.EXCEPTION:
        print(
            f"emtui: meter {device_id}: {exception_text(reply.exception_code or 0)}",
            file=sys.stderr,
        )
        return ExitCode.DEVICE
    if reply.outcome is Outcome.TIMEOUT:
        print(f"emtui: meter {device_id} did not answer: {NO_ANSWER_ADVICE}", file=sys.stderr)
        return ExitCode.NO_ANSWER
    print(f"emtui: meter {device_id}: bad reply ({reply.outcome.value})", file=sys.stderr)
    return ExitCode.DEVICE


def _document(
    args: argparse.Namespace,
    rmap: Any,
    register: int,
    count: int,
    reply: Reply,
    values: list[int] | None,
    hint: ShiftHint | None,
    stats: dict[str, Any],
) -> dict[str, Any]:
    bits = args.function in (1, 2)
    rows: list[dict[str, Any]] = []
    if values is not None:
        if bits:
            rows = [
                {"register": register + i, "address": register - 1 + i, "raw": v}
                for i, v in enumerate(values)
            ]
        else:
            rows = register_rows(values, register, rmap)
    document: dict[str, Any] = {
        "id": args.id,
        "function": args.function,
        "register": register,
        "address": register - 1,
        "count": count,
        "base": args.base,
        "map": rmap.name,
        "status": reply.outcome.value,
        "registers": rows,
        "decodings": decodings(values, register) if values is not None and not bits else [],
        "orders": {
            order: {"name": label.short, "modbus_poll": label.modbus_poll, "bytes8": label.eight}
            for order, label in ORDER_LABELS.items()
        },
        "hint": hint.as_dict() if hint is not None else None,
        "stats": stats,
    }
    if reply.outcome is Outcome.EXCEPTION and reply.exception_code is not None:
        document["exception"] = {
            "code": reply.exception_code,
            "text": exception_text(reply.exception_code),
        }
    return document


def _number(value: float | int | None) -> str:
    if value is None:
        return "nan"
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)


def _print(
    args: argparse.Namespace,
    rmap: Any,
    register: int,
    count: int,
    reply: Reply,
    values: list[int] | None,
    hint: ShiftHint | None,
) -> None:
    out = _console()
    base = args.base
    title = (
        f"meter {args.id} · FC{args.function:02d} {FUNCTION_NAMES[args.function]} · "
        f"register {register} (address {register - 1}) × {count} · {reply.outcome.value}"
    )
    if values is None:
        out.print(title)
        if reply.outcome is Outcome.EXCEPTION and reply.exception_code is not None:
            out.print(exception_text(reply.exception_code))
        return
    names = names_by_register(rmap)
    number = "register" if base == 1 else "address"
    table = Table(title=title, title_justify="left")
    table.add_column(f"{number} (base {base})", justify="right")
    table.add_column("name")
    if args.function in (1, 2):
        table.add_column("bit", justify="right")
        for i, v in enumerate(values):
            table.add_row(str(register + i - (1 - base)), names.get(register + i, ""), str(v))
        out.print(table)
        return
    for column in ("hex", "unsigned", "signed"):
        table.add_column(column, justify="right")
    for row in register_rows(values, register, rmap):
        shown = row["register"] if base == 1 else row["address"]
        table.add_row(
            str(shown), row.get("name", ""), f"0x{row['hex']}", str(row["raw"]), str(row["int16"])
        )
    out.print(table)
    wide = Table(title="32-bit decodings from each starting register", title_justify="left")
    wide.add_column(f"from {number}", justify="right")
    for type_name in ("float32", "int32", "uint32"):
        for order in WORD_ORDERS:
            wide.add_column(f"{type_name} {order}", justify="right")
    for entry in decodings(values, register):
        shown = entry["register"] if base == 1 else entry["register"] - 1
        cells = [_number(entry[t][o]) for t in ("float32", "int32", "uint32") for o in WORD_ORDERS]
        wide.add_row(str(shown), *cells)
    if wide.row_count:
        out.print(wide)
        out.print(
            "orders: "
            + " · ".join(
                f"{o} {label.short} (Modbus Poll: {label.modbus_poll})"
                for o, label in ORDER_LABELS.items()
            )
        )
    if hint is not None:
        out.print(f"[yellow]hint:[/] {hint.text()}", soft_wrap=True)
