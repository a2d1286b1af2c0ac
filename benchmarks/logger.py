"""Headless logger cost: CPU and RSS of ``emtui --log``.

Run: .venv/bin/python benchmarks/logger.py [--seconds 120] [--soak 600]

The simulated site (4 meters, paced 19200 baud, 11 bits, 20 ms turnaround) runs in its own
process, so the numbers are the logger's alone. Two runs:

1. the reference setting, a 1 s interval: CPU as % of one core, RSS;
2. a soak at full speed (``--interval 0`` against an unpaced simulator, so the logger's own
   code is the bottleneck and writes rows as fast as it can): RSS and CPU sampled over time,
   to show they stay flat (no leak, no growth with rows written).

Goal (issue 3): under 2 % of one core and under 60 MB RSS at 1 s, flat over the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The installed program (``python -m emtui`` from the checkout would import the source tree).
EMTUI = str(Path(sys.executable).with_name("emtui"))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 1e6


def measure(interval: float, seconds: float, every: float, work: Path, paced: bool) -> None:
    """Run the logger for ``seconds`` and print CPU and RSS every ``every`` seconds."""
    pacing = [] if paced else ["--no-line-timing"]
    sim = subprocess.Popen(
        [EMTUI, "sim", "--listen", "127.0.0.1:0", "--seed", "1", *pacing],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert sim.stdout is not None
    url = sim.stdout.readline().strip()
    data, state = work / f"data-{interval:g}", work / f"state-{interval:g}"
    logger = subprocess.Popen(
        [
            *(EMTUI, "--log", "--port", url, "--ids", "1-4"),
            *("--interval", str(interval), "--data-dir", str(data), "--state-dir", str(state)),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3.0)  # start-up (imports, first cycle) is not the steady state
        start_cpu, start = cpu_seconds(logger.pid), time.monotonic()
        last_cpu, last = start_cpu, start
        line = "paced line" if paced else "unpaced simulator (software-bound)"
        print(f"interval {interval:g} s, {line}: elapsed, CPU % of one core, RSS MB, rows")
        while time.monotonic() - start < seconds:
            time.sleep(every)
            now, cpu = time.monotonic(), cpu_seconds(logger.pid)
            status = json.loads((state / "status.json").read_text())
            rows = sum(m["rows"] for m in status["meters"])
            print(
                f"  {now - start:7.0f} s  {100 * (cpu - last_cpu) / (now - last):6.2f} %"
                f"  {rss_mb(logger.pid):6.1f} MB  {rows:8d}"
            )
            last_cpu, last = cpu, now
        total = 100 * (cpu_seconds(logger.pid) - start_cpu) / (time.monotonic() - start)
        print(f"  whole run: {total:.2f} % of one core, RSS {rss_mb(logger.pid):.1f} MB")
    finally:
        logger.terminate()
        logger.wait(30)
        sim.terminate()
        sim.wait(30)


def main() -> None:
    """Run the two measurements; durations are flags so a quick look is cheap."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="1 s interval run length")
    parser.add_argument("--soak", type=float, default=600, help="full-speed soak length")
    parser.add_argument("--every", type=float, default=30, help="sample period")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(1.0, args.seconds, args.every, Path(tmp), paced=True)
        measure(0.0, args.soak, args.every, Path(tmp), paced=False)


if __name__ == "__main__":
    main()
