"""The one entry point, ``emtui`` (design §7).

The commands' ``--json`` output and exit codes are an API: other tools depend on them.
Parsing is light; each command's module (and the app) is imported only when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from emtui.cli.common import (
    SUBCOMMANDS,
    CliError,
    ExitCode,
    effective_config,
    quiet_pymodbus,
    settings_from,
    setup_logging,
)
from emtui.cli.parser import build_parser
from emtui.core.bus.link import LinkError
from emtui.core.config import ConfigError
from emtui.core.maps.registers import MapError

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
    from emtui.cli.trace import install_trace

    install_trace(args, in_app=command is None and not args.log)
    from emtui.cli import bus as commands

    if command == "scan":
        return commands.scan(args)
    if command == "read":
        return commands.read(args)
    if command == "map":
        return commands.show_map(args)
    if command == "check":
        from emtui.cli.check import check

        return check(args)
    if command == "report":
        from emtui.cli.report import report

        return report(args)
    if command in ("write", "setup", "clock"):
        import importlib

        return int(getattr(importlib.import_module(f"emtui.cli.{command}"), command)(args))
    if command == "detect":
        from emtui.cli.detect import detect

        return detect(args)
    if command == "serve":
        from emtui.cli.serve import serve

        return serve(args)
    if command == "ports":
        from emtui.cli.ports import ports

        return ports(args)
    if command == "sim":
        from emtui.sim.command import run as run_sim

        return int(run_sim(args))
    if command in ("config", "upload", "status", "service"):
        from emtui.cli import unattended as logcommands

        return int(getattr(logcommands, command)(args))
    if args.log:
        from emtui.cli import unattended as logcommands

        return logcommands.log(args)
    from emtui.ui.run import run_app, run_demo

    if args.demo:
        return run_demo(_demo_keys(args), allow_writes=args.allow_writes)
    config = effective_config(args)
    # On a terminal, no port (or one that cannot be opened) opens the connection dialog,
    # which lists the ports and asks; off a terminal (a script) it stays a one-line error.
    ask = sys.stdin.isatty() and sys.stdout.isatty()
    settings = settings_from(config) if config.bus.port or not ask else None
    return run_app(config, settings, config.keys, allow_writes=args.allow_writes, ask=ask)


def _demo_keys(args: object) -> dict[str, str]:
    """The ``[keys]`` of the config the demo would find: the demo ignores everything else in
    it (its dirs, bus and upload target), and a config it cannot read changes nothing."""
    from emtui.core.config import find_config_file, load_config

    try:
        return dict(load_config(find_config_file(getattr(args, "config", None))).keys)
    except (ConfigError, OSError):
        return {}


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
