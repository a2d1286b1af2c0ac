"""``emtui sim``: serve a simulated bus of meters until interrupted.

Why this module exists: the simulator is how a technician (or CI, or a developer without a
meter) tries the tool — ``emtui sim`` in one terminal, ``emtui scan --port /dev/pts/N`` in
another. The first line on stdout is the port to connect to and nothing else, so scripts can
read it; the human description goes to stderr.
"""

from __future__ import annotations

import argparse
import errno
import math
import signal
import sys
import threading
from types import FrameType

from emtui.core.bus.ids import format_ids, parse_ids
from emtui.core.maps.registers import MapError, load_map
from emtui.sim.bus import LineSettings, SimulatedBus, quiet_pymodbus
from emtui.sim.pump import DutyCycle
from emtui.sim.wiring import Wiring, parse_wiring

__all__ = ["add_arguments", "main", "run"]

USAGE_ERROR = 2
#: The exit code of a port that cannot be served (emtui's "connection" code).
CONNECTION_ERROR = 3


def _ids(text: str) -> list[int]:
    try:
        return parse_ids(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _finite(option: str, text: str) -> float:
    """``text`` as a finite number (nan and inf compare false with every bound)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{option}: {text!r} is not a finite number")
    return value


def _turnaround(text: str) -> float:
    try:
        value = _finite("--turnaround", text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 10_000:  # false for nan too
        raise argparse.ArgumentTypeError(f"must be a number of ms 0-10000, not {text!r}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{text} is not a fraction 0-1")
    return value


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"--listen takes HOST:PORT (e.g. 127.0.0.1:5020), not {text!r}"
        )
    return (host.strip("[]") or "127.0.0.1"), int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``emtui sim`` options to ``parser``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--pty", action="store_true", help="serve on a new pseudo-terminal (default)"
    )
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_listen,
        help="serve on TCP instead (port 0 picks a free one)",
    )
    parser.add_argument(
        "--framing",
        choices=("rtu", "tcp", "rfc2217"),
        default="rtu",
        help="with --listen: RTU frames over TCP (socket://, default), Modbus TCP (tcp://) or "
        "RTU through RFC 2217 (rfc2217://: the client's baud, parity and stop bits reach the "
        "simulator, like a serial device server)",
    )
    parser.add_argument(
        "--meter-settings",
        action="append",
        default=[],
        metavar="IDS:BAUD:FORMAT",
        help="these meters' own serial settings, e.g. 1:9600:8E1 (FORMAT 8E1, 8N1, 8O1, 8N2; "
        "repeatable): they answer only a client at those settings (over --framing rfc2217; "
        "on a pty the baud alone)",
    )
    parser.add_argument(
        "--ids", type=_ids, default=[1, 2, 3, 4], metavar="RANGE", help="meter ids (default 1-4)"
    )
    parser.add_argument(
        "--map", default="em6400ng", metavar="NAME|FILE", help="register map to serve"
    )
    parser.add_argument(
        "--baud", type=int, default=19200, help="line speed for pacing (default 19200)"
    )
    parser.add_argument(
        "--bits",
        type=int,
        default=11,
        metavar="N",
        help="bits per character: 11 for 8E1/8N2 (default), 10 for 8N1",
    )
    parser.add_argument(
        "--turnaround",
        type=_turnaround,
        default=20.0,
        metavar="MS",
        help="meter turnaround in milliseconds (default 20)",
    )
    parser.add_argument(
        "--no-line-timing", action="store_true", help="answer at once instead of pacing the line"
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        help="echo every request back, like a 2-wire adapter that hears itself",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the pumps and fault dice")
    parser.add_argument("--frozen", action="store_true", help="values do not change with time")
    parser.add_argument(
        "--pumps",
        choices=("on", "off", "auto"),
        default="auto",
        help="on: every pump runs (steady, no start in progress); off: all stand still; "
        "auto: the duty cycles of the reference site (default)",
    )
    parser.add_argument(
        "--wiring",
        action="append",
        default=[],
        metavar="ID:FAULT",
        help="a wiring fault of one meter (repeatable): ct-reversed:A|B|C|all, "
        "ct-swap:A-B|B-C|C-A, vt-missing:A|B|C, ct-ratio:N (the meter's CT primary set to N)",
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--absent", type=_ids, default=[], metavar="IDS", help="ids that never answer"
    )
    faults.add_argument(
        "--slow",
        action="append",
        default=[],
        metavar="ID:SECONDS",
        help="extra reply delay for an id (repeatable)",
    )
    faults.add_argument(
        "--exception",
        action="append",
        default=[],
        metavar="ID:CODE",
        help="an id answers every request with this exception code (repeatable)",
    )
    faults.add_argument(
        "--strict-gaps",
        action="store_true",
        help="reads that touch any unmapped register answer exception 02",
    )
    faults.add_argument(
        "--crc-noise",
        action="append",
        default=[],
        metavar="[ID:]P",
        help="fraction of replies (of one id, or all) with a corrupted byte",
    )
    faults.add_argument(
        "--wrong-id",
        action="append",
        default=[],
        metavar="[ID:]P",
        help="fraction of replies (of one id, or all) sent from another id",
    )
    faults.add_argument(
        "--flap",
        action="append",
        default=[],
        metavar="ID:DOWN_S:UP_S",
        help="an id answers for UP_S seconds, then drops out for DOWN_S, repeatedly",
    )


def _split(option: str, text: str, parts: int) -> list[str]:
    fields = text.split(":")
    if len(fields) != parts:
        raise ValueError(f"{option} {text!r}: expected {parts} fields separated by ':'")
    return fields


def _device(option: str, text: str) -> int:
    ids = parse_ids(text)
    if len(ids) != 1:
        raise ValueError(f"{option}: give one id, not {text!r}")
    return ids[0]


def _apply_faults(bus: SimulatedBus, args: argparse.Namespace) -> list[str]:
    """Set the faults the options ask for; returns a line describing each."""
    notes: list[str] = []
    for device_id in args.absent:
        bus.set_fault(device_id, absent=True)
    if args.absent:
        notes.append(f"absent: {format_ids(args.absent)}")
    for text in args.slow:
        ident, seconds = _split("--slow", text, 2)
        device_id, delay = _device("--slow", ident), _finite("--slow", seconds)
        if delay < 0:
            raise ValueError(f"--slow {text!r}: the delay cannot be negative")
        bus.set_fault(device_id, slow=delay)
        notes.append(f"slow: id {device_id} +{delay:g} s")
    for text in args.exception:
        ident, code = _split("--exception", text, 2)
        device_id, number = _device("--exception", ident), int(code)
        if not 1 <= number <= 255:
            raise ValueError(f"--exception {text!r}: the code must be 1-255")
        bus.set_fault(device_id, exception=number)
        notes.append(f"exception: id {device_id} answers {number:02d}")
    if args.strict_gaps:
        bus.set_fault(None, strict_gaps=True)
        notes.append("strict gaps: unmapped registers answer exception 02")
    for option, key, values in (
        ("--crc-noise", "crc_noise", args.crc_noise),
        ("--wrong-id", "wrong_id", args.wrong_id),
    ):
        for text in values:
            ident, _, fraction = text.rpartition(":")
            device = _device(option, ident) if ident else None
            bus.set_fault(device, **{key: _probability(fraction)})
            scope = f"id {ident}" if ident else "all ids"
            notes.append(f"{key.replace('_', ' ')}: {fraction} of replies ({scope})")
    for text in args.meter_settings:
        fields = text.rsplit(":", 2)
        if len(fields) != 3:
            raise ValueError(
                f"--meter-settings {text!r}: expected IDS:BAUD:FORMAT, e.g. 1:9600:8E1"
            )
        try:
            ids = parse_ids(fields[0])
            line = LineSettings.parse(fields[1], fields[2])
        except ValueError as exc:
            raise ValueError(f"--meter-settings {text!r}: {exc}") from None
        for device_id in ids:
            bus.set_meter_settings(device_id, line)
        notes.append(f"settings: ids {format_ids(ids)} at {line.describe()}")
    for text in args.flap:
        ident, down, up = _split("--flap", text, 3)
        device_id, down_s, up_s = (
            _device("--flap", ident),
            _finite("--flap", down),
            _finite("--flap", up),
        )
        if down_s < 0 or up_s < 0 or down_s + up_s <= 0:
            raise ValueError(f"--flap {text!r}: the periods must be positive")
        bus.set_fault(device_id, flap=(down_s, up_s))
        notes.append(f"flapping: id {device_id} up {up_s:g} s, down {down_s:g} s")
    wirings: dict[int, Wiring] = {}
    for text in args.wiring:
        device_id, wiring = parse_wiring(text)
        if device_id not in bus.meters:
            raise ValueError(
                f"--wiring {text!r}: id {device_id} is not on the simulated bus "
                f"(ids {format_ids(sorted(bus.meters))})"
            )
        wirings[device_id] = wirings.get(device_id, Wiring()).combined(wiring)
    for device_id, wiring in sorted(wirings.items()):
        bus.meters[device_id].set_wiring(wiring)
        notes.append(f"wiring: id {device_id} {wiring.describe()}")
    return notes


def pump_state(pumps: str) -> tuple[DutyCycle | None, bool | None]:
    """(duty cycle, running at start) for ``--pumps on|off|auto``."""
    if pumps == "on":
        return DutyCycle(continuous=True), True
    if pumps == "off":
        return DutyCycle(continuous=True), False
    return None, None


def run(args: argparse.Namespace) -> int:
    """Serve the simulated bus ``args`` describes until SIGINT/SIGTERM; returns the exit code.

    The first line on stdout is the port to connect to (a ``/dev/pts/N`` path, or a
    ``socket://`` / ``tcp://`` URL); a description follows on stderr.
    """
    quiet_pymodbus()
    if args.baud <= 0 or args.bits <= 0 or args.turnaround < 0:
        print(
            "emtui sim: --baud and --bits must be positive, --turnaround not negative",
            file=sys.stderr,
        )
        return USAGE_ERROR
    try:
        rmap = load_map(args.map)
    except MapError as exc:
        print(f"emtui sim: {exc}", file=sys.stderr)
        return USAGE_ERROR
    duty, running = pump_state(getattr(args, "pumps", "auto"))
    bus = SimulatedBus(
        ids=args.ids,
        duty=duty,
        running=running,
        rmap=rmap,
        baud=args.baud,
        bits_per_char=args.bits,
        turnaround=args.turnaround / 1000.0,
        line_timing=not args.no_line_timing,
        echo=args.echo,
        seed=args.seed,
        frozen=args.frozen,
    )
    try:
        notes = _apply_faults(bus, args)
    except ValueError as exc:
        print(f"emtui sim: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if args.meter_settings and args.listen is not None and args.framing != "rfc2217":
        url = "socket://" if args.framing == "rtu" else "tcp://"
        print(
            f"emtui sim: --meter-settings cannot be honoured over {url}, which carries no "
            "serial settings; use --framing rfc2217 (or --pty, where the baud is compared)",
            file=sys.stderr,
        )
        return USAGE_ERROR

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with bus:
            if args.listen is not None:
                host, port = args.listen
                try:
                    where = bus.start_tcp(host, port, framing=args.framing)
                except OSError as exc:
                    print(f"emtui sim: {_listen_error(host, port, exc)}", file=sys.stderr)
                    return CONNECTION_ERROR
            else:
                where = bus.start_pty()
            print(where, flush=True)
            _describe(bus, rmap.name, where, args, notes)
            stop.wait()  # signal handlers run in this (main) thread and set it
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _listen_error(host: str, port: int, exc: OSError) -> str:
    """One line for a TCP port that cannot be served, and what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another simulator or "
            f"server); stop it or choose another port (--listen {host}:0 picks a free one)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot listen on {where}: permission denied; use a port above 1023"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {where}: {reason}; give an address of this machine"


def _describe(
    bus: SimulatedBus, map_name: str, where: str, args: argparse.Namespace, notes: list[str]
) -> None:
    meters = ", ".join(
        f"{i}: {m.pump.spec.kw:g} kW{'' if m.pump.running() else ' (stopped)'}"
        for i, m in sorted(bus.meters.items())
    )
    pacing = (
        f"{args.baud} baud, {args.bits} bits/char ({bus.char_time * 1000:.3f} ms), "
        f"turnaround {args.turnaround:g} ms"
        if bus.line_timing
        else "no line timing (replies at once)"
    )
    lines = [
        f"emtui sim: {len(bus.meters)} meter(s), map {map_name}, ids {format_ids(args.ids)}",
        f"  pumps: {meters}",
        f"  line: {pacing}{', frozen values' if args.frozen else ''}",
        *(f"  fault: {note}" for note in notes),
    ]
    if where.startswith("/dev/"):
        lines.append(f"  connect: emtui scan --port {where} --parity N  (ptys reject even parity)")
    else:
        lines.append(f"  connect: emtui scan --port {where}")
    lines.append("  Ctrl-C to stop")
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m emtui.sim``: the ``emtui sim`` command on its own."""
    parser = argparse.ArgumentParser(
        prog="emtui sim", description="Serve a simulated RS-485 bus of EM6400NG meters."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
