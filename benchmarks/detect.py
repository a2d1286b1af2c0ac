"""Serial-settings detection benchmarks (run: .venv/bin/python benchmarks/detect.py).

All over RFC 2217 to the simulator (the client's baud, parity and stop bits reach it; each
meter answers only at its own settings, paced at its own baud, 20 ms turnaround):

(a) a factory-fresh meter (id 1, 9600 8E1): wall time of `emtui detect --expect 1`, process
    start included (goal: under 3 s);
(b) a meter at id 7 at each of the 12 EM6400NG settings: `--expect 7` (goal: each under 10 s);
(c) nothing known: one meter at id 27, 38400 8O1, detection over --ids (default 1-247) at
    every setting: the time it was found, the total, and the total against its floor (Σ of the
    probes' timeouts plus the found meter's identification; goal: within 1.2x), with the ETA
    given at the start and halfway.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from emtui.core.bus.detect import (
    Detector,
    SerialSettings,
    all_settings,
    ordered,
    plan,
    start_arbiter,
)
from emtui.core.bus.ids import parse_ids
from emtui.core.bus.link import ConnectionSettings
from emtui.core.maps.registers import load_map
from emtui.sim.bus import LineSettings, SimulatedBus, build_meters

EMTUI = str(Path(sys.executable).with_name("emtui"))
RMAP = load_map("em6400ng")


def _bus(device_id: int, line: SerialSettings) -> SimulatedBus:
    bus = SimulatedBus(ids=[], seed=1)
    bus.meters.update(build_meters([device_id], RMAP, seed=1))
    bus.set_meter_settings(device_id, LineSettings(line.baud, line.parity, line.stopbits))
    return bus


def _cli(url: str, *args: str) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [EMTUI, "detect", "--port", url, *args, "--json"], capture_output=True, text=True
    )
    return time.perf_counter() - t0, json.loads(out.stdout)


def factory() -> None:
    """Benchmark (a)."""
    with _bus(1, SerialSettings(9600, "E", 1)) as bus:
        url = bus.start_tcp(framing="rfc2217")
        wall, doc = _cli(url, "--expect", "1")
    print("(a) factory-fresh meter, id 1 at 9600 8E1: emtui detect --expect 1")
    found = [(f["id"], f["baud"], f["parity"]) for f in doc["found"]]  # type: ignore[union-attr]
    print(f"    found                         {found}")
    print(f"    detection                     {float(doc['duration_s']):8.2f} s")  # type: ignore[arg-type]
    goal = "met" if wall < 3 else "NOT MET"
    print(f"    wall time, process included   {wall:8.2f} s  (goal < 3 s: {goal})")


def each_setting() -> None:
    """Benchmark (b)."""
    twelve = [s for s in all_settings() if s.baud in (4800, 9600, 19200, 38400) and s.stopbits == 1]
    print("(b) a meter at id 7 at each EM6400NG setting: emtui detect --expect 7")
    worst = 0.0
    for line in twelve:
        with _bus(7, line) as bus:
            url = bus.start_tcp(framing="rfc2217")
            wall, doc = _cli(url, "--expect", "7")
        found = [(f["baud"], f["parity"], f["stopbits"]) for f in doc["found"]]  # type: ignore[union-attr]
        ok = found == [(line.baud, line.parity, line.stopbits)]
        worst = max(worst, wall)
        print(f"    {line.describe():<10} found {'yes' if ok else 'NO '}  wall {wall:6.2f} s")
    goal = "met" if worst < 10 else "NOT MET"
    print(f"    worst                         {worst:8.2f} s  (goal < 10 s: {goal})")


def nothing_known(ids_text: str) -> None:
    """Benchmark (c)."""
    ids = parse_ids(ids_text)
    line = SerialSettings(38400, "O", 1)
    with _bus(27, line) as bus:
        url = bus.start_tcp(framing="rfc2217")
        order = ordered(SerialSettings(19200, "E", 1))
        steps = plan(order, ids, [])
        arbiter = start_arbiter(ConnectionSettings(port=url), order)
        etas: list[tuple[float, float]] = []
        t0 = time.monotonic()
        try:
            detector: Detector

            def progress(done: int, total: int, settings: SerialSettings, current: int) -> None:
                etas.append((time.monotonic() - t0, detector.eta()))

            detector = Detector(arbiter, RMAP, steps, on_progress=progress)
            first_eta = detector.eta()
            report = detector.run()
        finally:
            arbiter.stop()
    ratio = report.duration / report.floor
    half_elapsed, half_eta = etas[len(etas) // 2]
    print(f"(c) nothing known: meter 27 at {line.describe()}, ids {ids_text}, all 28 settings")
    found = [(d.device.id, d.settings.describe()) for d in report.found]
    after = report.found[0].found_after if report.found else float("nan")
    print(f"    found                         {found}")
    print(f"    found after                   {after:8.2f} s")
    print(
        f"    total                         {report.duration:8.2f} s  ({len(report.tried)} passes)"
    )
    print(f"    floor                         {report.floor:8.2f} s")
    goal = "met" if ratio <= 1.2 else "NOT MET"
    print(f"    total / floor                 {ratio:8.3f}  (goal <= 1.2: {goal})")
    print(f"    ETA at the start              {first_eta:8.2f} s")
    print(f"    halfway: elapsed + ETA        {half_elapsed + half_eta:8.2f} s")


def main() -> None:
    """Run the benchmarks named on the command line (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="factory, each, nothing (default: all)")
    parser.add_argument("--ids", default="1-247", help="ids for (c) (default 1-247: ~8 min)")
    args = parser.parse_args()
    which = args.which or ["factory", "each", "nothing"]
    if "factory" in which:
        factory()
    if "each" in which:
        each_setting()
    if "nothing" in which:
        nothing_known(args.ids)


if __name__ == "__main__":
    main()
