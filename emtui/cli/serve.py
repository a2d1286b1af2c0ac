"""``emtui serve``: the app in a browser through textual-serve (design §12).

textual-serve has no authentication: whoever reaches the port drives the app (and, with
``--allow-writes``, the meters). So it listens on the loopback unless ``--public`` says
otherwise, and the way in from another computer is SSH port forwarding. The server answers
only to its own Host names and refuses websockets opened by other sites' pages
(:mod:`emtui.serve.hosts`), so a web page in the same browser cannot drive it either.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import shlex
import signal
import socket
import sys
from dataclasses import dataclass

from emtui.cli.common import CliError, ExitCode, effective_config, settings_from
from emtui.serve.hosts import HostCheck, machine_names

DEFAULT_LISTEN = "127.0.0.1:8000"

#: The connection and file flags forwarded to the spawned app: (argparse dest, flag).
FORWARDED = (
    ("config", "--config"),
    ("port", "--port"),
    ("baud", "--baud"),
    ("parity", "--parity"),
    ("stopbits", "--stopbits"),
    ("timeout", "--timeout"),
    ("retries", "--retries"),
    ("gap", "--gap"),
    ("ids", "--ids"),
    ("map", "--map"),
    ("interval", "--interval"),
    ("data_dir", "--data-dir"),
    ("state_dir", "--state-dir"),
)


@dataclass(frozen=True)
class Listen:
    """Where to listen: ``host`` (an IP address or ``localhost``) and ``port``."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Only this machine can reach it."""
        if self.host == "localhost":
            return True
        return ipaddress.ip_address(self.host).is_loopback

    def url_host(self) -> str:
        """The host as a URL writes it (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        return f"{self.url_host()}:{self.port}"


def parse_listen(text: str) -> Listen:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) or a usage error saying what is expected."""
    hint = f"--listen {text!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN} or [::1]:8000"
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise CliError(hint, ExitCode.USAGE)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host != "localhost":
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise CliError(
                f"{hint} (HOST is an IP address or localhost, not {host!r})", ExitCode.USAGE
            ) from None
    try:
        port = int(port_text)
    except ValueError:
        raise CliError(f"{hint} (PORT {port_text!r} is not a number)", ExitCode.USAGE) from None
    if not 1 <= port <= 65535:
        raise CliError(f"{hint} (PORT must be 1-65535, not {port})", ExitCode.USAGE)
    return Listen(host, port)


def check_exposure(listen: Listen, public: bool) -> str | None:
    """None on the loopback; the warning to print for ``--public``; else a usage error."""
    if listen.loopback:
        return None
    forward = f"ssh -L {listen.port}:127.0.0.1:{listen.port} USER@THIS-HOST"
    if not public:
        raise CliError(
            f"--listen {listen} is reachable from other computers and the served app has no "
            f"password: add --public to mean it, or keep {DEFAULT_LISTEN} and use SSH "
            f"forwarding ({forward})",
            ExitCode.USAGE,
        )
    return (
        f"warning: serving on {listen} with NO authentication: anyone who reaches this port "
        f"controls the app and the bus; prefer the default {DEFAULT_LISTEN} with {forward}"
    )


def app_argv(args: argparse.Namespace) -> list[str]:
    """The command each browser session runs: this install's emtui with the same flags."""
    # -P: not the current directory first on sys.path, so a checkout's source tree (which
    # lacks the register maps) never shadows the installed package
    argv = [sys.executable, "-P", "-m", "emtui"]
    if args.demo:
        extra = [flag for dest, flag in FORWARDED if dest != "config" and _given(args, dest)]
        extra += ["--local-echo"] * bool(args.local_echo)
        if extra:
            raise CliError(
                f"--demo runs the built-in simulated site: leave out {', '.join(extra)}",
                ExitCode.USAGE,
            )
        argv.append("--demo")
    for dest, flag in FORWARDED:
        if _given(args, dest):
            argv += [flag, str(getattr(args, dest))]
    if args.local_echo and not args.demo:
        argv.append("--local-echo")
    if args.allow_writes:  # the demo's simulated meters take writes too
        argv.append("--allow-writes")
    return argv


def _given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) is not None


def bind(listen: Listen) -> socket.socket:
    """A listening socket on ``listen``; a port in use is exit 3 (CONNECTION)."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
        sock.listen(16)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"{listen} is in use by another program (another emtui serve?): stop it, or "
                f"choose a free port with --listen {listen.url_host()}:PORT",
                ExitCode.CONNECTION,
            ) from None
        raise CliError(
            f"cannot listen on {listen}: {exc.strerror}; give an address of this machine",
            ExitCode.CONNECTION,
        ) from None
    sock.setblocking(False)
    return sock


def serve(args: argparse.Namespace) -> int:
    """Run ``emtui serve`` until Ctrl+C (SIGINT) or SIGTERM."""
    listen = parse_listen(args.listen)
    warning = check_exposure(listen, args.public)
    argv = app_argv(args)
    if args.demo:
        title = "emtui: demo site"
    else:
        # a missing port or a bad config is an error here, not in each browser session
        title = f"emtui: {settings_from(effective_config(args)).port}"
    if warning:
        print(f"emtui: {warning}", file=sys.stderr, flush=True)
    sock = bind(listen)

    from emtui.serve.server import EmtuiServer

    host = socket.gethostname() if not listen.loopback else listen.url_host()
    hosts = HostCheck.for_listen(listen.host, listen.port, args.public, host, machine_names())
    server = EmtuiServer(argv, title=title, hosts=hosts)
    url = f"http://{host}:{listen.port}/"
    print(f"emtui serve: open {url} in a browser (one browser at a time)")
    if listen.loopback:
        print(
            f"  from another computer: ssh -L {listen.port}:127.0.0.1:{listen.port} "
            f"USER@{socket.gethostname()}, then open http://127.0.0.1:{listen.port}/"
        )
    writes = "allowed (--allow-writes)" if args.allow_writes else "off"
    print(f"  app: {shlex.join(['emtui', *argv[4:]])}; writes {writes}; Ctrl+C stops", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: SSH gone
            loop.add_signal_handler(sig, stop.set)
        await server.run(sock, stop)

    try:
        asyncio.run(main())
    finally:
        sock.close()
    print("emtui serve: stopped", flush=True)
    return int(ExitCode.OK)
