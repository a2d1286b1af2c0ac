"""Simulated wiring faults (``emtui sim --wiring``) and ``--pumps``: every value the meter
reports follows one changed pairing of voltage and current, read back through the real map
and codec as the tool reads it."""

from __future__ import annotations

import math
import subprocess

import pytest
from helpers import EMTUI

from emtui.core.maps.codec import Value, decode_entry
from emtui.core.maps.registers import RegisterMap, load_map
from emtui.sim.command import pump_state
from emtui.sim.meter import SimulatedMeter
from emtui.sim.pump import DutyCycle, PumpModel
from emtui.sim.wiring import Wiring, parse_wiring

T0 = 1_795_600_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def ng() -> RegisterMap:
    return load_map("em6400ng")


def make_meter(ng: RegisterMap, fault: str | None, clock: Clock) -> SimulatedMeter:
    pump = PumpModel(37, seed=5, clock=clock, running=True, duty=DutyCycle(continuous=True))
    meter = SimulatedMeter(1, ng, pump)
    if fault is not None:
        meter.set_wiring(parse_wiring(f"1:{fault}")[1])
    return meter


def read(meter: SimulatedMeter, ng: RegisterMap, name: str) -> Value:
    entry = ng.get(name)
    return decode_entry(ng, entry, meter.read(3, entry.address, entry.count))


def num(meter: SimulatedMeter, ng: RegisterMap, name: str) -> float:
    value = read(meter, ng, name).value
    assert isinstance(value, float | int), f"{name} is {value!r}"
    return float(value)


def phase(meter: SimulatedMeter, ng: RegisterMap, x: str) -> dict[str, float | str | None]:
    pf = read(meter, ng, f"power_factor_{x}")
    return {
        "kw": num(meter, ng, f"active_power_{x}"),
        "kvar": num(meter, ng, f"reactive_power_{x}"),
        "kva": num(meter, ng, f"apparent_power_{x}"),
        "i": num(meter, ng, f"current_{x}"),
        "v": num(meter, ng, f"voltage_{x}n"),
        "pf": pf.value if isinstance(pf.value, float) else None,
        "lead_lag": pf.lead_lag,
        "angle": read(meter, ng, f"phase_angle_{x}").value,  # type: ignore[dict-item]
    }


def angle_of(p: dict[str, float | str | None]) -> float:
    return math.degrees(math.atan2(float(p["kvar"] or 0), float(p["kw"] or 0)))


def test_healthy_meter_is_a_lagging_load(ng: RegisterMap) -> None:
    """A healthy meter: every phase imports at a lagging angle near acos(PF), PF positive and
    lagging, the angle register equals atan2(kVAR, kW), received energy 0."""
    meter = make_meter(ng, None, Clock())
    for x in "abc":
        p = phase(meter, ng, x)
        assert p["kw"] > 0 and p["kvar"] > 0  # type: ignore[operator]
        assert p["lead_lag"] == "lagging" and 0.8 < p["pf"] < 0.9  # type: ignore[operator]
        assert p["angle"] == pytest.approx(angle_of(p), abs=0.01)
        assert p["kva"] == pytest.approx(math.hypot(p["kw"], p["kvar"]), rel=1e-4)  # type: ignore[arg-type]
    assert num(meter, ng, "active_energy_received") == 0.0


@pytest.mark.parametrize("x", ["a", "b", "c"])
def test_ct_reversed_one_phase(ng: RegisterMap, x: str) -> None:
    """ct-reversed:X: X's kW and kVAR negative with the healthy magnitudes, angle +180°, PF
    negative and lagging (quadrant III); the other phases unchanged."""
    healthy = make_meter(ng, None, Clock())
    faulty = make_meter(ng, f"ct-reversed:{x.upper()}", Clock())
    for y in "abc":
        h, f = phase(healthy, ng, y), phase(faulty, ng, y)
        if y == x:
            assert f["kw"] == pytest.approx(-h["kw"], rel=1e-5)  # type: ignore[operator]
            assert f["kvar"] == pytest.approx(-h["kvar"], rel=1e-5)  # type: ignore[operator]
            assert f["pf"] == pytest.approx(-h["pf"], rel=1e-5)  # type: ignore[operator]
            assert f["lead_lag"] == "lagging"
            diff = (float(f["angle"]) - float(h["angle"])) % 360  # type: ignore[arg-type]
            assert diff == pytest.approx(180, abs=0.01)
        else:
            assert f["kw"] == pytest.approx(h["kw"], rel=1e-5)


def test_ct_reversed_all_moves_energy_to_received(ng: RegisterMap) -> None:
    """ct-reversed:all: every phase at φ+180°, total kW negative; over a minute the delivered
    counters stop and the received ones advance at the load's rate."""
    clock = Clock()
    meter = make_meter(ng, "ct-reversed:all", clock)
    for x in "abc":
        assert phase(meter, ng, x)["kw"] < 0  # type: ignore[operator]
    kw = num(meter, ng, "active_power_total")
    assert kw < 0
    del0 = num(meter, ng, "active_energy_delivered")
    rec0 = num(meter, ng, "active_energy_received")
    wh0 = num(meter, ng, "active_energy_received_wh")
    clock.t += 60
    meter.invalidate()
    assert num(meter, ng, "active_energy_delivered") == del0
    gained = num(meter, ng, "active_energy_received") - rec0
    assert gained == pytest.approx(-kw / 60, rel=0.05)
    assert num(meter, ng, "active_energy_received_wh") - wh0 == pytest.approx(gained * 1000, abs=2)


@pytest.mark.parametrize(
    ("pair", "first", "second", "other"),
    [("A-B", "a", "b", "c"), ("B-C", "b", "c", "a"), ("C-A", "c", "a", "b")],
)
def test_ct_swap(ng: RegisterMap, pair: str, first: str, second: str, other: str) -> None:
    """ct-swap: the first phase of the pair at φ+120° (PF ≈ −0.88, leading), the second at
    φ−120° (PF ≈ +0.03, leading), the third normal; angle registers agree with kW/kVAR."""
    healthy = make_meter(ng, None, Clock())
    faulty = make_meter(ng, f"ct-swap:{pair}", Clock())
    h = phase(healthy, ng, other)
    f1, f2, f3 = (phase(faulty, ng, y) for y in (first, second, other))
    phi = angle_of(phase(healthy, ng, second))
    assert angle_of(f1) == pytest.approx(phi + 120, abs=0.05)
    phi1 = angle_of(phase(healthy, ng, first))
    assert angle_of(f2) == pytest.approx(phi1 - 120, abs=0.05)
    assert -0.92 < f1["pf"] < -0.84 and f1["lead_lag"] == "leading"  # type: ignore[operator]
    assert 0.0 < f2["pf"] < 0.08 and f2["lead_lag"] == "leading"  # type: ignore[operator]
    assert f3["kw"] == pytest.approx(h["kw"], rel=1e-5)
    for f in (f1, f2):
        diff = (float(f["angle"]) - angle_of(f) + 180) % 360 - 180  # type: ignore[arg-type]
        assert diff == pytest.approx(0, abs=0.01)


@pytest.mark.parametrize("x", ["a", "b", "c"])
def test_vt_missing(ng: RegisterMap, x: str) -> None:
    """vt-missing:X: V_X ≈ 0, so kW, kVAR and kVA of X ≈ 0 and its PF N/A, while its
    current is normal; the other phases unchanged."""
    healthy = make_meter(ng, None, Clock())
    faulty = make_meter(ng, f"vt-missing:{x.upper()}", Clock())
    f, h = phase(faulty, ng, x), phase(healthy, ng, x)
    assert f["v"] < 1.0  # type: ignore[operator]
    assert abs(f["kw"]) < 0.1 and abs(f["kvar"]) < 0.1 and f["kva"] < 0.1  # type: ignore[operator, arg-type]
    assert f["i"] == pytest.approx(h["i"], rel=1e-5)
    for y in "abc":
        if y != x:
            assert phase(faulty, ng, y)["v"] == pytest.approx(phase(healthy, ng, y)["v"])


def test_vt_missing_stopped_pump_still_reads_no_voltage(ng: RegisterMap) -> None:
    """A missing VT shows with the pump stopped too: the voltage does not need load."""
    pump = PumpModel(37, seed=5, clock=Clock(), running=False, duty=DutyCycle(continuous=True))
    meter = SimulatedMeter(1, ng, pump)
    meter.set_wiring(parse_wiring("1:vt-missing:B")[1])
    assert num(meter, ng, "voltage_bn") < 1.0
    assert num(meter, ng, "voltage_an") > 200.0


def test_ct_ratio(ng: RegisterMap) -> None:
    """ct-ratio:R: the CT primary register reads R; currents and powers scale by R/true, and
    energy increments too."""
    clock_h, clock_f = Clock(), Clock()
    healthy = make_meter(ng, None, clock_h)
    faulty = make_meter(ng, "ct-ratio:200", clock_f)
    assert num(faulty, ng, "ct_primary") == 200
    true = num(healthy, ng, "ct_primary")
    scale = 200 / true
    for name in ("current_a", "active_power_total", "reactive_power_b", "apparent_power_c"):
        assert num(faulty, ng, name) == pytest.approx(num(healthy, ng, name) * scale, rel=1e-4)
    e_h, e_f = (num(m, ng, "active_energy_delivered") for m in (healthy, faulty))
    clock_h.t += 120
    clock_f.t += 120
    healthy.invalidate()
    faulty.invalidate()
    d_h = num(healthy, ng, "active_energy_delivered") - e_h
    d_f = num(faulty, ng, "active_energy_delivered") - e_f
    assert d_f == pytest.approx(d_h * scale, rel=0.01)


def test_parse_wiring_rejects_bad_faults() -> None:
    """--wiring takes ID:FAULT with a known fault; anything else is one clear error."""
    assert parse_wiring("2:ct-reversed:all")[1].reversed == frozenset({0, 1, 2})
    assert parse_wiring("3:ct-swap:c-a")[1].swap == (2, 0)
    for bad in ("ct-reversed:A", "1:ct-reversed:D", "1:ct-swap:A-C", "1:bogus:A", "1:ct-ratio:0"):
        with pytest.raises(ValueError, match="--wiring"):
            parse_wiring(bad)
    assert Wiring().describe() == "healthy"


def test_pumps_on_and_off() -> None:
    """--pumps on: every pump runs and keeps running, past any start; off: none runs, for
    hours; auto: the duty cycles (the default)."""
    for state, expect in (("on", True), ("off", False)):
        duty, running = pump_state(state)
        clock = Clock()
        pumps = [
            PumpModel(kw, seed=n, clock=clock, duty=duty, running=running)
            for n, kw in enumerate((15, 37, 75))
        ]
        for hours in (0, 1, 5, 30):
            clock.t = T0 + hours * 3600
            assert all(p.running() is expect for p in pumps)
            if expect:
                assert all(p.quantities()["current_a"] > 10 for p in pumps)  # type: ignore[operator]
    assert pump_state("auto") == (None, None)


def test_sim_cli_wiring_errors() -> None:
    """emtui sim --wiring with an id not on the bus or a bad fault: exit 2, one line."""
    for args, words in (
        (["--wiring", "9:ct-reversed:A"], "not on the simulated bus"),
        (["--wiring", "1:ct-flip:A"], "unknown fault"),
        (["--pumps", "maybe"], "invalid choice"),
    ):
        done = subprocess.run(
            [*EMTUI, "sim", "--listen", "127.0.0.1:0", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2, done.stderr
        assert words in done.stderr
        assert "Traceback" not in done.stderr
