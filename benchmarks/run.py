"""emtui benchmarks: numbers, not pass/fail (run: .venv/bin/python benchmarks/run.py).

(a) One poll cycle of the default logged set for the 4 simulated meters of the reference site
    on a paced line (19200 baud, 11 bits per character, 20 ms meter turnaround), against the
    wire-time lower bound of that register set (design §4: the cheapest set of FC03 requests,
    each (8 + 5 + 2N) characters + 7 characters of silence + the turnaround), and the same set
    read the old way: one request per value, round robin.
(b) A full scan of ids 1-247 with the 4 meters present: total time (the goal: at most 11 s,
    every meter found and identified, no tuning), time until the 4th meter was reported,
    phantom devices, the learned silent-id timeout; then the first-pass rule: `emtui sim
    --slow 3:S` makes meter 3 answer 3x slower than the others, and the first pass must still
    find it.

Both run the real RTU code path: pyserial on a pty (parity N; the simulator still paces 11
bits per character) to the simulator on its own thread.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings
from emtui.core.bus.planner import ReadPlanner, transaction_chars
from emtui.core.bus.reader import MeterReader
from emtui.core.bus.scanner import SLOW_FACTOR, FoundDevice, Scanner
from emtui.core.maps.registers import load_map
from emtui.sim.bus import SimulatedBus

BAUD = 19200
BITS = 11
TURNAROUND = 0.020
IDS = [1, 2, 3, 4]


def poll_cycle(cycles: int) -> None:
    """Benchmark (a)."""
    rmap = load_map("em6400ng")
    char = BITS / BAUD
    planner = ReadPlanner(rmap.block_size, TURNAROUND / char)
    plan = planner.plan(rmap.logged)
    bound = len(IDS) * sum(transaction_chars(b.count) * char + TURNAROUND for b in plan)
    wanted_regs = sum(e.count for e in rmap.logged)
    with SimulatedBus(ids=IDS, baud=BAUD, bits_per_char=BITS, turnaround=TURNAROUND) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, baud=BAUD, parity="N")) as arbiter:
            readers = [MeterReader(arbiter, i, rmap) for i in IDS]
            for reader in readers:  # warm up: learn the turnaround
                reader.read()
            times = []
            statuses = set()
            for _ in range(cycles):
                t0 = time.perf_counter()
                for reader in readers:
                    statuses.add(reader.read().status)
                times.append(time.perf_counter() - t0)
            # The old script: one request per value, meters round robin.
            t0 = time.perf_counter()
            for entry in rmap.logged:
                for device_id in IDS:
                    arbiter.read_registers(device_id, entry.address, entry.count)
            old = time.perf_counter() - t0
    cycle = statistics.median(times)
    print("(a) poll cycle, default logged set, 4 meters, 19200 baud 11 bits, 20 ms turnaround")
    print(f"    logged values per meter       {len(rmap.logged)} ({wanted_regs} registers)")
    print(f"    plan per meter                {[(b.register, b.count) for b in plan]}")
    print(f"    wire-time lower bound         {bound * 1000:8.1f} ms")
    print(
        f"    measured cycle (median of {cycles:>2})  {cycle * 1000:8.1f} ms"
        f"  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}); statuses {sorted(statuses)}"
    )
    print(f"    ratio cycle / bound           {cycle / bound:8.3f}")
    print(
        f"    one request per value         {old * 1000:8.1f} ms  ({len(rmap.logged) * 4} requests)"
    )
    print(f"    speed-up over one-per-value   {old / cycle:8.2f} x")


def full_scan() -> None:
    """Benchmark (b)."""
    rmap = load_map("em6400ng")
    found: list[tuple[float, FoundDevice]] = []
    with SimulatedBus(ids=IDS, baud=BAUD, bits_per_char=BITS, turnaround=TURNAROUND) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, baud=BAUD, parity="N")) as arbiter:
            t0 = time.perf_counter()
            scanner = Scanner(
                arbiter, rmap, on_found=lambda d: found.append((time.perf_counter() - t0, d))
            )
            report = scanner.scan(list(range(1, 248)))
            timeout, p99 = scanner.probe_timeout(False), scanner.p99()
    ids = [d.id for d in report.devices]
    phantoms = [i for i in ids if i not in IDS]
    print("(b) full scan 1-247, 4 meters present, 19200 baud 11 bits, 20 ms turnaround")
    print(f"    found                         {ids} (phantoms: {phantoms or 'none'})")
    print(f"    4th meter reported after      {found[-1][0]:8.3f} s (identified)")
    print(f"    total                         {report.duration:8.2f} s")
    print(
        f"    per silent id                 {(report.duration - found[-1][0]) / 243 * 1000:8.1f} ms"
    )
    print(
        f"    silent-id timeout             {timeout * 1000:8.1f} ms"
        f"  (p99 of replies {(p99 or 0) * 1000:.1f} ms + margin)"
    )
    ok = report.duration <= 11.0 and ids == IDS and all(d.identity for d in report.devices)
    print(f"    goal <= 11 s, all 4 identified {'met' if ok else 'NOT MET'}")
    slow_first_pass()


def slow_first_pass() -> None:
    """The first-pass rule on `emtui sim --slow`: a meter 3x slower is found by pass one."""
    rmap = load_map("em6400ng")
    base = (8 + 7) * BITS / BAUD + TURNAROUND
    extra = (SLOW_FACTOR - 1.0) * base
    emtui = str(Path(sys.executable).with_name("emtui"))
    sim = subprocess.Popen(
        [emtui, "sim", "--pty", "--ids", "1-4", "--slow", f"3:{extra:.4f}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().strip()
        with BusArbiter(ConnectionSettings(port=port, baud=BAUD, parity="N")) as arbiter:
            report = Scanner(arbiter, rmap).scan(list(range(1, 248)))
    finally:
        sim.terminate()
        sim.wait()
    slow = next((d for d in report.devices if d.id == 3), None)
    holds = slow is not None and not slow.second_pass and [d.id for d in report.devices] == IDS
    print(f"(c) first-pass rule: emtui sim --slow 3:{extra:.3f} (meter 3 answers 3x slower)")
    print(f"    found                         {[d.id for d in report.devices]}")
    rtt = f"{slow.rtt_ms:.1f} ms{' (late reply)' if slow.late else ''}" if slow else "missed"
    print(f"    meter 3 reply                 {rtt}")
    print(f"    total                         {report.duration:8.2f} s")
    print(f"    rule holds                    {'yes' if holds else 'NO'}")


def main() -> None:
    """Run the benchmarks named on the command line (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="poll, scan (default: both)")
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    which = args.which or ["poll", "scan"]
    unknown = set(which) - {"poll", "scan"}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if "poll" in which:
        poll_cycle(args.cycles)
    if "scan" in which:
        full_scan()


if __name__ == "__main__":
    main()
