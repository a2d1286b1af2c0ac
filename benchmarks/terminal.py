"""Bytes to the terminal and CPU of the app on the demo site (design §11's SSH budget).

Runs the installed ``emtui --demo`` in a pseudo-terminal of the given size, lets it start,
then measures for ``--seconds`` each on the overview and on a meter tab (key ``1``): bytes
per second written to the terminal and CPU as a percentage of one core (user + system of the
app's process, which also runs the simulated site's thread). Prints one line per screen and
the time until the first frequency value was on screen.

    .venv/bin/python benchmarks/terminal.py [--seconds 20] [--size 100x30]

Budget (design §11): under 4 KB/s (aim 2.5) and under 15 % of a core (aim 8 %) on each
screen, first values in under 3 s (aim 2).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

EMTUI = str(Path(sys.executable).with_name("emtui"))
FREQUENCY = re.compile(rb"(?<![0-9.])(49|50)\.[0-9][0-9](?![0-9])")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def drain(fd: int, seconds: float) -> bytes:
    """Everything the app writes during ``seconds``."""
    out = bytearray()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per screen")
    parser.add_argument("--size", default="100x30", help="terminal columns x rows")
    parser.add_argument("--settle", type=float, default=5.0, help="start-up not measured, s")
    parser.add_argument("--keys", default="1", help="key(s) for the second screen")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="also measure the raw view (r) polling 20 registers from 3110 at 2 Hz, logging off",
    )
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.lower().split("x"))
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.environ["COLORTERM"] = "truecolor"
        os.execv(EMTUI, [EMTUI, "--demo"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    started = time.monotonic()
    first = None
    seen = bytearray()
    while time.monotonic() - started < args.settle:
        seen += drain(fd, 0.05)
        if first is None and FREQUENCY.search(seen):
            first = time.monotonic() - started
    results = []
    screens = [("overview", b""), (f"meter tab (key {args.keys})", args.keys.encode())]
    if args.raw:
        # r opens the raw view (start 3110, count 20, 2 Hz by default); enter reads once and
        # ctrl+g turns live polling on
        screens.append(("raw view 20 reg @ 2 Hz", b"r\r\x07"))
    for name, keys in screens:
        if keys:
            os.write(fd, keys)
            drain(fd, 2.0)  # the tab switch redraws the screen once: not steady state
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        data = drain(fd, args.seconds)
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(pid) - cpu0) / elapsed * 100
        results.append((name, len(data) / elapsed, cpu))
    os.write(fd, b"q")
    drain(fd, 1.0)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    os.waitpid(pid, 0)
    print(f"terminal {cols}x{rows}, emtui --demo, {args.seconds:g} s per screen")
    print(f"first frequency on screen after {first:.2f} s" if first else "no frequency seen")
    for name, rate, cpu in results:
        print(f"{name:<22} {rate / 1000:6.2f} KB/s  {cpu:5.1f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
