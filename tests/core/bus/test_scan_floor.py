"""A scan at the line's floor (issue 9): the silent-id timeout from the measured response
times (p99 + a small margin), the first-pass rule for a meter up to 3x slower, the report's
hint about slower ones, and an ETA from the same estimate.

Scans on a fast line vary run to run, so the timing checks run the scan several times.
"""

from __future__ import annotations

import pytest

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings
from emtui.core.bus.scanner import (
    LATE_TAIL,
    P99_MARGIN,
    SLOW_FACTOR,
    Scanner,
    ScanReport,
)
from emtui.core.maps.registers import load_map
from emtui.sim.bus import SimulatedBus

EM6400NG = load_map("em6400ng")
BAUD, BITS, TURNAROUND = 19200, 11, 0.020


def _scan(
    bus: SimulatedBus, ids: list[int], expected: list[int] = (), **kw: object
) -> tuple[ScanReport, Scanner, list[tuple[int, float, float]]]:
    """Scan ``ids`` over a pty; also returns (done, eta, elapsed) at each progress call."""
    import time

    port = bus.start_pty()
    progress: list[tuple[int, float, float]] = []
    with BusArbiter(ConnectionSettings(port=port, baud=BAUD, parity="N")) as arbiter:
        t0 = time.monotonic()
        scanner: Scanner

        def on_progress(done: int, total: int, current: int) -> None:
            progress.append((done, scanner.eta(), time.monotonic() - t0))

        scanner = Scanner(arbiter, EM6400NG, identify=False, on_progress=on_progress)
        report = scanner.scan(ids, list(expected), **kw)  # type: ignore[arg-type]
    return report, scanner, progress


def _paced(ids: list[int]) -> SimulatedBus:
    return SimulatedBus(ids=ids, baud=BAUD, bits_per_char=BITS, turnaround=TURNAROUND, seed=9)


@pytest.mark.parametrize("run", range(3))
def test_silent_id_timeout_is_p99_plus_a_small_margin(run: int) -> None:
    """After the meters answered, a silent id costs about the measured reply time plus a
    small margin — not 1.5 x the largest — so 60 ids cost well under 60 x 1.5 x rtt (three
    runs: a fast line varies)."""
    with _paced([1, 2, 3, 4]) as bus:
        report, scanner, _ = _scan(bus, list(range(1, 61)))
    assert [d.id for d in report.devices] == [1, 2, 3, 4]
    p99 = scanner.p99()
    assert p99 is not None
    timeout = scanner.probe_timeout(False)
    assert p99 + P99_MARGIN <= timeout <= 1.15 * p99 + 0.001
    per_silent = (report.duration - LATE_TAIL) / 56
    assert per_silent < 1.3 * p99, (per_silent, p99)


@pytest.mark.parametrize("where", ["middle", "first", "last"])
def test_a_meter_3x_slower_is_found_by_the_first_pass(where: str) -> None:
    """A meter whose reply takes 3x the others' is found by the first pass (its late reply is
    recognised by its id while the next ids are probed, or in the late tail), whether it is
    among the first, middle or last ids — and no silent id is credited with its reply."""
    slow_id = {"middle": 12, "first": 1, "last": 30}[where]
    ids = sorted({1, 2, 3, slow_id})
    with _paced(ids) as bus:
        base = bus.reply_time(8, 7)
        bus.set_fault(slow_id, slow=(SLOW_FACTOR - 1.0) * base)
        report, _, _ = _scan(bus, list(range(1, 31)))
    found = {d.id: d for d in report.devices}
    assert sorted(found) == ids
    assert not found[slow_id].second_pass
    assert found[slow_id].rtt_ms / 1000 >= 2.5 * base


def test_hint_when_a_slow_device_may_have_been_missed() -> None:
    """A scan that took ids for empty after the short learned timeout says that a slower
    device may have been missed and how to look (--expect, --timeout); one stopped because
    every expected id answered does not."""
    with _paced([1, 2]) as bus:
        report, _, _ = _scan(bus, list(range(1, 21)))
        assert report.slow_hint is not None
        assert "--expect" in report.slow_hint and "--timeout" in report.slow_hint
        stopped, _, _ = _scan(bus, list(range(1, 21)), [1, 2])
    assert stopped.stopped_early and stopped.slow_hint is None


def test_a_much_slower_expected_meter_is_found_by_the_second_pass() -> None:
    """A meter slower than any first-pass wait (here 0.6 s more, past the 0.5 s late tail after the
    last id) is found
    when expected, by the second pass."""
    with _paced([1, 2, 20]) as bus:
        bus.set_fault(20, slow=0.6)
        report, _, _ = _scan(bus, list(range(1, 21)), [1, 2, 20])
    found = {d.id: d for d in report.devices}
    assert sorted(found) == [1, 2, 20]
    assert found[20].second_pass


@pytest.mark.parametrize("run", range(2))
def test_eta_matches_the_duration(run: int) -> None:
    """The ETA given once the meters answered (after 10 ids) plus the time already spent is
    within 15 % of the scan's actual duration."""
    with _paced([1, 2, 3, 4]) as bus:
        report, _, progress = _scan(bus, list(range(1, 101)))
    _done, eta, elapsed = next(p for p in progress if p[0] == 10)
    predicted = elapsed + eta
    assert abs(predicted - report.duration) <= 0.15 * report.duration, (
        predicted,
        report.duration,
    )
    # and it counts down to zero
    assert progress[-1][1] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("run", range(3))
def test_full_scan_at_the_reference_line_takes_at_most_11_s(run: int) -> None:
    """A full scan of 1-247 with the 4 reference meters (19200 baud, 11 bits, 20 ms
    turnaround), identification included and no tuning, finds exactly 1-4 in at most 11 s
    (three runs: a fast line varies)."""
    with _paced([1, 2, 3, 4]) as bus:
        port = bus.start_pty()
        with BusArbiter(ConnectionSettings(port=port, baud=BAUD, parity="N")) as arbiter:
            report = Scanner(arbiter, EM6400NG).scan(list(range(1, 248)))
    assert [d.id for d in report.devices] == [1, 2, 3, 4]
    assert all(d.identity.get("model") for d in report.devices)
    assert report.duration <= 11.0, report.duration
