"""A deterministic model of a 3-phase induction-motor water pump, as its EM6400NG sees it.

Why this module exists: with no hardware, the simulated meters are the only meters the tool
ever talks to in tests, benchmarks and demos, so their numbers must behave like a real pump
feeder (reference notes §4): a duty cycle of runs and pauses, a direct-on-line start that
draws 6-7x full-load current at a poor power factor and dips the voltage, a slightly
unbalanced supply, a grid frequency that wanders, energies and run-hour counters that only
grow, and identity registers that tell the meters apart.

Everything is a function of a seed and of an injectable clock (epoch seconds), so a test can
step time and get the same numbers every run. Quantities are produced under the names of the
``em6400ng`` map, in its units (kW, kWh, Wh ...); :func:`bind_map` adapts them to any other map
by name (the legacy EM6400 map's ``w_total``, ``fwd_wh`` ... in W and Wh). No register numbers
appear here: the maps own those.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from emtui.core.maps.registers import RegisterEntry, RegisterMap
from emtui.sim.wiring import Wiring

__all__ = [
    "LEGACY_ALIASES",
    "REFERENCE_SITE",
    "STANDARD_SIZES",
    "Clock",
    "DutyCycle",
    "Grid",
    "PumpModel",
    "PumpSpec",
    "QValue",
    "bind_map",
]

Clock = Callable[[], float]
"""A callable returning the time as epoch seconds (``time.time`` or a test's fake)."""

QValue = int | float | str | None
"""A quantity: a number in the map's unit, a string, an ISO date-time string, or None (N/A)."""

SQRT3 = math.sqrt(3.0)
TAU = 2.0 * math.pi


# ---------------------------------------------------------------------------------------------
# nameplates


@dataclass(frozen=True, slots=True)
class PumpSpec:
    """The motor's nameplate and how its feeder is metered.

    Attributes:
        kw: rated shaft power in kW.
        efficiency: motor efficiency at full load (input power = kw / efficiency).
        pf_full_load: true power factor at full load (lagging).
        ct_primary: the CT ratio's primary current in A (secondary 5 A).
        vll: nominal line-to-line voltage in V.
        frequency: nominal frequency in Hz.
    """

    kw: float
    efficiency: float
    pf_full_load: float
    ct_primary: int
    vll: float = 400.0
    frequency: float = 50.0

    @property
    def vln(self) -> float:
        """Nominal line-to-neutral voltage in V."""
        return self.vll / SQRT3

    @property
    def input_kw(self) -> float:
        """Electrical input power at full load in kW."""
        return self.kw / self.efficiency

    @property
    def flc(self) -> float:
        """Full-load line current in A (the FLC a DOL start is a multiple of)."""
        return self.input_kw * 1000.0 / (SQRT3 * self.vll * self.pf_full_load)

    @classmethod
    def for_size(cls, kw: float) -> PumpSpec:
        """The spec of a standard size (15, 37, 75 kW), or one interpolated for another size."""
        if kw in STANDARD_SIZES:
            return STANDARD_SIZES[kw]
        if kw <= 0:
            raise ValueError(f"a pump needs a positive rating, not {kw} kW")
        # Larger motors are a little more efficient and have a slightly better power factor.
        scale = min(max(math.log10(kw), 0.0), 2.5)
        efficiency = min(0.80 + 0.06 * scale, 0.96)
        pf = min(0.76 + 0.06 * scale, 0.90)
        ct = max(5, math.ceil(kw * 2.2 / 25.0) * 25)
        return cls(kw=kw, efficiency=efficiency, pf_full_load=pf, ct_primary=ct)


STANDARD_SIZES: dict[float, PumpSpec] = {
    15.0: PumpSpec(kw=15.0, efficiency=0.90, pf_full_load=0.84, ct_primary=50),
    37.0: PumpSpec(kw=37.0, efficiency=0.93, pf_full_load=0.86, ct_primary=100),
    75.0: PumpSpec(kw=75.0, efficiency=0.945, pf_full_load=0.87, ct_primary=150),
}
"""The pump sizes of the reference notes §4, with the CT ratio each feeder would carry."""

REFERENCE_SITE: tuple[float, ...] = (15.0, 37.0, 37.0, 75.0)
"""Pump ratings (kW) of the reference site's meters, ids 1-4."""


@dataclass(frozen=True, slots=True)
class DutyCycle:
    """How a pump alternates between running and standing.

    Attributes:
        on_minutes: range a run lasts, in minutes (drawn uniformly).
        off_minutes: range a pause lasts, in minutes.
        continuous: the pump runs all the time (once started).
    """

    on_minutes: tuple[float, float] = (20.0, 120.0)
    off_minutes: tuple[float, float] = (10.0, 60.0)
    continuous: bool = False


# ---------------------------------------------------------------------------------------------
# smooth, deterministic variation


class _Wave:
    """A sum of sines with seeded phases: smooth, bounded, cheap and repeatable."""

    __slots__ = ("_terms",)

    def __init__(self, rng: random.Random, periods: tuple[float, ...]) -> None:
        weights = [1.0 / (i + 1) for i in range(len(periods))]
        total = sum(weights)
        self._terms = tuple(
            (w / total, TAU / (p * rng.uniform(0.85, 1.15)), rng.uniform(0.0, TAU))
            for w, p in zip(weights, periods, strict=True)
        )

    def __call__(self, t: float) -> float:
        """A value in -1..1."""
        return sum(a * math.sin(w * t + p) for a, w, p in self._terms)


class Grid:
    """The supply the site's meters share: frequency, voltage level and voltage distortion.

    All meters of one bus see the same grid, as they would on one transformer, so a frequency
    excursion shows on every meter at once.
    """

    def __init__(self, seed: int = 0, frequency: float = 50.0) -> None:
        rng = random.Random(f"grid/{seed}")
        self.nominal_frequency = frequency
        self._freq = _Wave(rng, (900.0, 170.0, 37.0))
        self._level = _Wave(rng, (1800.0, 240.0, 45.0))
        self._thd = _Wave(rng, (3600.0, 400.0))
        self._thd_base = rng.uniform(2.0, 3.5)

    def frequency(self, t: float) -> float:
        """Grid frequency in Hz: 49.90-50.05 on a 50 Hz grid, drifting under 0.02 Hz/s."""
        return self.nominal_frequency - 0.025 + 0.065 * self._freq(t)

    def voltage_factor(self, t: float) -> float:
        """Supply voltage relative to nominal (about ±1.5 %)."""
        return 1.0 + 0.015 * self._level(t)

    def thd_v(self, t: float) -> float:
        """Background voltage distortion in %, 1.5-5."""
        return self._thd_base + 0.9 * self._thd(t)


# ---------------------------------------------------------------------------------------------
# duty schedule


class _Schedule:
    """Run/stop segments drawn from a seeded generator, extended lazily as time advances."""

    def __init__(
        self, rng: random.Random, duty: DutyCycle, t0: float, running: bool | None
    ) -> None:
        self._rng = rng
        self._duty = duty
        if duty.continuous:
            on = True if running is None else running
        elif running is None:
            on_mean = sum(duty.on_minutes) / 2
            on = rng.random() < on_mean / (on_mean + sum(duty.off_minutes) / 2)
        else:
            on = running
        length = self._length(on)
        # Start part-way through the first segment; a pump that is running at t0 started
        # long enough ago that no start transient is in progress.
        elapsed = rng.uniform(0.0, min(length, 3600.0)) if math.isfinite(length) else 3600.0
        if on:
            elapsed = max(elapsed, 60.0)
            length = max(length, elapsed + 60.0)
        self._starts = [t0 - elapsed]
        self._on = [on]
        self._end = t0 - elapsed + length

    def _length(self, on: bool) -> float:
        if self._duty.continuous:
            # Continuous: a running pump runs on, a stopped one (--pumps off) stays stopped
            # until it is switched on.
            return math.inf
        low, high = self._duty.on_minutes if on else self._duty.off_minutes
        return self._rng.uniform(low, high) * 60.0

    def _extend(self, t: float) -> None:
        while self._end <= t:
            on = not self._on[-1]
            self._starts.append(self._end)
            self._on.append(on)
            self._end += self._length(on)
        if len(self._starts) > 2000:  # keep a day or so of history
            del self._starts[:1000], self._on[:1000]

    def at(self, t: float) -> tuple[bool, float]:
        """(running, seconds since the present segment began) at ``t``."""
        self._extend(t)
        i = max(bisect.bisect_right(self._starts, t) - 1, 0)
        return self._on[i], t - self._starts[i]

    def switch(self, on: bool, t: float) -> None:
        """Start or stop the pump at ``t``; later segments are drawn afresh."""
        self._extend(t)
        i = max(bisect.bisect_right(self._starts, t) - 1, 0)
        del self._starts[i + 1 :], self._on[i + 1 :]
        if self._on[i] == on:
            self._end = t + self._length(on)
            return
        self._starts.append(t)
        self._on.append(on)
        self._end = t + self._length(on)

    def next_change(self, t: float) -> float:
        """The time the present segment ends (inf for a continuous run)."""
        self._extend(t)
        i = max(bisect.bisect_right(self._starts, t) - 1, 0)
        return self._starts[i + 1] if i + 1 < len(self._starts) else self._end


# ---------------------------------------------------------------------------------------------
# the electrical state at one instant


@dataclass(frozen=True, slots=True)
class _Instant:
    """What the meter measures at one instant: per metered phase V, I and the angle ``phi``
    (radians) by which the current lags the voltage (after any wiring fault)."""

    running: bool
    starting: bool
    v: tuple[float, float, float]
    i: tuple[float, float, float]
    phi: tuple[float, float, float]
    frequency: float
    thd_i: float

    @property
    def p(self) -> tuple[float, float, float]:
        """Active power per phase in kW (negative when the current is reversed)."""
        return (
            self.v[0] * self.i[0] * math.cos(self.phi[0]) / 1000.0,
            self.v[1] * self.i[1] * math.cos(self.phi[1]) / 1000.0,
            self.v[2] * self.i[2] * math.cos(self.phi[2]) / 1000.0,
        )

    @property
    def q(self) -> tuple[float, float, float]:
        """Reactive power per phase in kVAR (positive for a lagging load)."""
        return (
            self.v[0] * self.i[0] * math.sin(self.phi[0]) / 1000.0,
            self.v[1] * self.i[1] * math.sin(self.phi[1]) / 1000.0,
            self.v[2] * self.i[2] * math.sin(self.phi[2]) / 1000.0,
        )

    @property
    def s(self) -> tuple[float, float, float]:
        """Apparent power per phase in kVA."""
        return (
            self.v[0] * self.i[0] / 1000.0,
            self.v[1] * self.i[1] / 1000.0,
            self.v[2] * self.i[2] / 1000.0,
        )

    def totals(self) -> tuple[float, float, float, float]:
        """(P kW, Q kVAR, S kVA, I avg A)."""
        if not self.running:
            return 0.0, 0.0, 0.0, 0.0
        ptot, qtot = sum(self.p), sum(self.q)
        return ptot, qtot, math.hypot(ptot, qtot), sum(self.i) / 3.0


@dataclass(slots=True)
class _Demand:
    """One demand channel (timed 15-minute blocks, as the meter's default)."""

    start: float
    integral: float = 0.0
    covered: float = 0.0
    last: float = 0.0
    peak: float = 0.0
    peak_time: float = 0.0


# ---------------------------------------------------------------------------------------------
# the pump


_DEMAND_INTERVAL = 900.0
_ACTIVE_LOAD_SETPOINT = 5.0  # A, the meter's default Active Load Timer setpoint
_UNBAL_KEYS = ("a", "b", "c")


class PumpModel:
    """A water pump's feeder as an EM6400NG meters it, evolving with an injectable clock.

    Args:
        kw: motor rating in kW (15, 37 and 75 have reference values; others are interpolated),
            or a :class:`PumpSpec`.
        seed: everything random (duty cycle, unbalance, serial number, ...) derives from it.
        clock: epoch seconds; defaults to ``time.time``.
        grid: the shared supply; one is made from ``seed`` when omitted.
        duty: run/pause pattern; ``DutyCycle(continuous=True)`` runs all the time.
        running: the state at the start (None: drawn from the duty cycle).
        frozen: values do not change with time (everything is evaluated at construction).
        name: the meter name (register "meter_name"); ``serial``: the serial number.

    The model integrates energy, run seconds and demand on a 1-second grid (coarser after a
    long clock jump), so the values depend only on the seed and on the times asked for.
    Thread-safe: the bus thread and a test may query it at once.
    """

    def __init__(
        self,
        kw: float | PumpSpec = 15.0,
        *,
        seed: int = 0,
        clock: Clock = time.time,
        grid: Grid | None = None,
        duty: DutyCycle | None = None,
        running: bool | None = None,
        frozen: bool = False,
        name: str | None = None,
        serial: int | None = None,
    ) -> None:
        self.spec = kw if isinstance(kw, PumpSpec) else PumpSpec.for_size(float(kw))
        self.seed = seed
        self.clock = clock
        self.frozen = frozen
        self.grid = grid if grid is not None else Grid(seed)
        self.duty = duty if duty is not None else DutyCycle()
        self._lock = threading.RLock()
        self._wiring = Wiring()
        rng = random.Random(f"pump/{seed}")
        spec = self.spec

        self.name = name if name is not None else f"Pump {spec.kw:g} kW"
        self.serial = serial if serial is not None else rng.randint(2_300_000_000, 2_399_999_999)
        # The rest of the draws happen in a fixed order: keep appending, never reorder.
        self._load_base = rng.uniform(0.88, 0.98)
        self._load_wave = _Wave(rng, (1500.0, 310.0, 61.0))
        self._jitter = _Wave(rng, (2.3, 5.9, 13.7))
        self._jitter2 = _Wave(rng, (3.1, 7.3, 17.9))
        unbalance = rng.uniform(0.01, 0.05)
        raw = [rng.uniform(-1.0, 1.0) for _ in range(3)]
        mean = sum(raw) / 3
        span = max(abs(r - mean) for r in raw) or 1.0
        self._i_factor = tuple(1.0 + unbalance * (r - mean) / span for r in raw)
        spread = rng.uniform(0.003, 0.02)
        raw = [rng.uniform(-1.0, 1.0) for _ in range(3)]
        mean = sum(raw) / 3
        span = max(abs(r - mean) for r in raw) or 1.0
        self._v_factor = tuple(1.0 + spread * (r - mean) / span for r in raw)
        self._pf_offset = tuple(rng.uniform(-0.006, 0.006) for _ in range(3))
        self._start_multiple = rng.uniform(6.0, 7.0)
        self._start_seconds = rng.uniform(3.0, 8.0)
        self._start_pf = rng.uniform(0.22, 0.38)
        self._start_dip = rng.uniform(0.03, 0.06)
        self._cable_drop = rng.uniform(0.005, 0.015)
        self._thd_i_base = rng.uniform(4.0, 9.0)
        self._thd_i_wave = _Wave(rng, (700.0, 90.0))
        self._thd_v_own = rng.uniform(0.1, 0.6)
        self._freq_offset = rng.uniform(-0.004, 0.004)
        self._clock_offset = rng.uniform(-40.0, 40.0)

        now = clock()
        self.t0 = now
        years = rng.uniform(0.5, 4.0)
        operation = years * 365.25 * 86400.0
        utilisation = rng.uniform(0.45, 0.7)
        run_s = operation * utilisation
        self._operation_base = operation
        self._run_s = run_s
        self._load_s = run_s * rng.uniform(0.85, 0.99)
        avg_kw = spec.input_kw * 0.88
        wh = run_s / 3600.0 * avg_kw * 1000.0
        tan_phi = math.tan(math.acos(spec.pf_full_load))
        self._e = [wh, wh * tan_phi * 1.05, wh / spec.pf_full_load * 1.01]
        reset_fraction = rng.uniform(0.05, 0.6)
        self._e_reset = [e * (1.0 - reset_fraction) for e in self._e]
        # Received (out of load) energies: none on a healthy motor feeder; a reversed CT
        # makes them advance (active, reactive, apparent; permanent and resettable).
        self._rec = [0.0, 0.0, 0.0]
        self._rec_reset = [0.0, 0.0, 0.0]
        self.manufactured = _dt.datetime.fromtimestamp(
            now - operation - rng.uniform(30, 200) * 86400
        )
        self.power_failures = rng.randint(2, 40)
        self._failure_time = now - rng.uniform(2.0, 60.0) * 86400.0
        self._failure_duration = rng.randint(5, 7200)
        peak_kw = spec.input_kw * rng.uniform(1.0, 1.04)
        peak_time = now - rng.uniform(1.0, 25.0) * 86400.0

        self._schedule = _Schedule(rng, self.duty, now, running)
        self._tick = float(math.floor(now))
        first = self._instant(float(self._tick))
        p, q, s, i = first.totals()
        interval_start = math.floor(self._tick / _DEMAND_INTERVAL) * _DEMAND_INTERVAL
        peaks = (
            peak_kw,
            peak_kw * tan_phi,
            peak_kw / spec.pf_full_load,
            spec.flc * peak_kw / spec.input_kw,
        )
        self._demand = [
            _Demand(start=interval_start, last=value, peak=peak, peak_time=peak_time)
            for value, peak in zip((p, q, s, i), peaks, strict=True)
        ]
        self._snapshot_time = math.nan
        self._snapshot: dict[str, QValue] = {}

    # -- control ------------------------------------------------------------------------------

    @property
    def wiring(self) -> Wiring:
        """The wiring faults the meter is installed with (healthy by default)."""
        return self._wiring

    def set_wiring(self, wiring: Wiring, at: float | None = None) -> None:
        """Install the meter with ``wiring`` from now (or ``at``): energies integrated so far
        stay as they were; from then on every value follows the faulty wiring."""
        with self._lock:
            self._advance(self.clock() if at is None else at)
            self._wiring = wiring
            self._snapshot_time = math.nan

    def switch(self, on: bool, at: float | None = None) -> None:
        """Start (``on=True``, a DOL start follows) or stop the pump now or at time ``at``."""
        with self._lock:
            when = self.clock() if at is None else at
            self._advance(when)
            self._schedule.switch(on, max(when, float(self._tick)))
            self._snapshot_time = math.nan

    def running(self, at: float | None = None) -> bool:
        """Whether the motor runs at ``at`` (default: now)."""
        with self._lock:
            return self._schedule.at(self._now() if at is None else at)[0]

    def next_change(self, at: float | None = None) -> float:
        """When the present run or pause ends (inf for a continuous run)."""
        with self._lock:
            return self._schedule.next_change(self._now() if at is None else at)

    # -- physics ------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.t0 if self.frozen else self.clock()

    def _instant(self, t: float) -> _Instant:
        spec = self.spec
        on, since = self._schedule.at(t)
        grid_v = spec.vln * self.grid.voltage_factor(t)
        jitter = self._jitter(t)
        frequency = self.grid.frequency(t) + self._freq_offset + 0.003 * self._jitter2(t)
        if not on:
            v = tuple(grid_v * f * (1.0 + 0.0005 * jitter) for f in self._v_factor)
            volts, _, _ = self._wiring.apply(
                _triple(v), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), spec.ct_primary
            )
            return _Instant(False, False, volts, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), frequency, 0.0)
        load = self._load_base * (1.0 + 0.03 * self._load_wave(t) + 0.004 * jitter)
        pf_run = spec.pf_full_load - 0.2 * max(1.0 - load, 0.0) ** 1.5 + 0.002 * self._jitter2(t)
        p_run = spec.kw * load / spec.efficiency
        i_run = p_run * 1000.0 / (SQRT3 * spec.vll * pf_run)
        starting = since < self._start_seconds
        if starting:
            x = max(since, 0.0) / self._start_seconds
            i_start = self._start_multiple * spec.flc
            # Current stays near locked-rotor until the motor nears speed, then falls fast.
            i_now = i_run + (i_start - i_run) * (1.0 - x**4)
            pf_now = self._start_pf + (pf_run - self._start_pf) * x**4
            excess = (i_now - i_run) / (i_start - i_run)
        else:
            i_now, pf_now, excess = i_run, pf_run, 0.0
        drop = self._start_dip * excess + self._cable_drop * i_now / spec.flc * (1.0 - excess)
        v = tuple(grid_v * f * (1.0 - drop) * (1.0 + 0.0005 * jitter) for f in self._v_factor)
        i = tuple(i_now * f for f in self._i_factor)
        pf = tuple(min(max(pf_now + d, 0.05), 0.999) for d in self._pf_offset)
        thd_i = self._thd_i_base * (1.0 + 0.25 * self._thd_i_wave(t)) * (0.5 if starting else 1.0)
        phi = tuple(math.acos(x) for x in pf)
        volts, amps, angles = self._wiring.apply(
            _triple(v), _triple(i), _triple(phi), spec.ct_primary
        )
        return _Instant(True, starting, volts, amps, angles, frequency, thd_i)

    def _advance(self, t: float) -> None:
        """Integrate energy, timers and demand on whole seconds up to ``t``."""
        if self.frozen:
            return
        while self._tick + 1.0 <= t:
            span = t - self._tick
            step = 1.0 if span <= 3600.0 else (10.0 if span <= 2 * 86400.0 else 60.0)
            step = min(step, math.floor(span))
            mid = self._instant(self._tick + step / 2.0)
            self._accumulate(mid, step)
            self._tick += step

    def _accumulate(self, x: _Instant, dt: float) -> None:
        p, q, s, i = x.totals()
        hours = dt / 3600.0
        for k, (value, into_load) in enumerate(_flows(p, q, s)):
            if into_load:
                self._e[k] += value * 1000.0 * hours
                self._e_reset[k] += value * 1000.0 * hours
            else:
                self._rec[k] += value * 1000.0 * hours
                self._rec_reset[k] += value * 1000.0 * hours
        if x.running:
            self._run_s += dt
        if i > _ACTIVE_LOAD_SETPOINT:
            self._load_s += dt
        end = self._tick + dt
        for channel, value in zip(self._demand, (p, q, s, i), strict=True):
            channel.integral += value * dt
            channel.covered += dt
            if end >= channel.start + _DEMAND_INTERVAL:
                channel.last = channel.integral / channel.covered
                if channel.last > channel.peak:
                    channel.peak, channel.peak_time = channel.last, end
                channel.start = math.floor(end / _DEMAND_INTERVAL) * _DEMAND_INTERVAL
                channel.integral = channel.covered = 0.0

    # -- output -------------------------------------------------------------------------------

    def quantities(self, at: float | None = None) -> dict[str, QValue]:
        """Every quantity the model knows, named as in the ``em6400ng`` map, in its units.

        ``at`` defaults to the clock; asking for a time before the last one asked is allowed
        (the counters never run backwards). A frozen model always answers for its start time.
        """
        with self._lock:
            t = self._now() if at is None or self.frozen else at
            if t == self._snapshot_time:
                return dict(self._snapshot)
            self._advance(t)
            values = self._quantities(t)
            self._snapshot_time, self._snapshot = t, values
            return dict(values)

    def _quantities(self, t: float) -> dict[str, QValue]:
        spec = self.spec
        x = self._instant(t)
        partial = max(t - self._tick, 0.0) if not self.frozen else 0.0
        out: dict[str, QValue] = {}

        # identity, setup and status
        out.update(
            meter_name=self.name,
            meter_model="EM6400NG",
            manufacturer="Schneider Electric",
            product_id=15511,
            serial_number=self.serial,
            date_of_manufacture=_iso(self.manufactured),
            hardware_revision="V2.0",
            firmware_version=1053,
            firmware_major=1,
            firmware_minor=5,
            firmware_quality=3,
            firmware_internal=55,
            control_power_failures=self.power_failures,
            last_power_failure_time=_iso(_dt.datetime.fromtimestamp(self._failure_time)),
            last_power_failure_duration=self._failure_duration,
            number_of_phases=3,
            number_of_wires=4,
            power_system_config=11,
            nominal_frequency=round(spec.frequency),
            nominal_voltage=round(spec.vln, 1),
            nominal_current=5.0,
            nominal_pf=0.8,
            phase_rotation=0,
            vt_count=0,
            vt_primary=120.0,
            vt_secondary=120,
            ct_count=3,
            ct_primary=(
                self._wiring.ct_primary if self._wiring.ct_primary is not None else spec.ct_primary
            ),
            ct_secondary=5,
            ct_location=1,
            vt_location=1,
            vt_connection_type=0,
        )
        clock = _dt.datetime.fromtimestamp(t + self._clock_offset)
        out.update(
            meter_clock_year=clock.year,
            meter_clock_month=clock.month,
            meter_clock_day=clock.day,
            meter_clock_hour=clock.hour,
            meter_clock_minute=clock.minute,
            meter_clock_second=clock.second,
            meter_clock_millisecond=clock.microsecond // 1000,
        )
        run = self._run_s + (partial if x.running else 0.0)
        ptot, qtot, stot, iavg = x.totals()
        load_s = self._load_s + (partial if iavg > _ACTIVE_LOAD_SETPOINT else 0.0)
        out.update(
            meter_operation_timer=int(self._operation_base + (t - self.t0)),
            run_seconds_delivered=int(run),
            run_seconds_received=0,
            active_load_timer=int(load_s),
        )

        # real-time values
        va, vb, vc = x.v
        vab, vbc, vca = _line(va, vb), _line(vb, vc), _line(vc, va)
        vll, vln = (vab + vbc + vca) / 3.0, (va + vb + vc) / 3.0
        out.update(
            voltage_an=va,
            voltage_bn=vb,
            voltage_cn=vc,
            voltage_ln_avg=vln,
            voltage_ab=vab,
            voltage_bc=vbc,
            voltage_ca=vca,
            voltage_ll_avg=vll,
            frequency=x.frequency,
        )
        for key, value in zip(_UNBAL_KEYS, (va, vb, vc), strict=True):
            out[f"voltage_unbalance_{key}n"] = abs(value - vln) / vln * 100.0
        for key, value in zip(("ab", "bc", "ca"), (vab, vbc, vca), strict=True):
            out[f"voltage_unbalance_{key}"] = abs(value - vll) / vll * 100.0
        out["voltage_unbalance_ln_worst"] = max(abs(v - vln) for v in x.v) / vln * 100.0
        out["voltage_unbalance_ll_worst"] = max(abs(v - vll) for v in (vab, vbc, vca)) / vll * 100.0
        thd_v = self.grid.thd_v(t) + self._thd_v_own * (ptot / spec.input_kw)
        for n, key in enumerate(("an", "bn", "cn", "ab", "bc", "ca")):
            out[f"thd_voltage_{key}"] = thd_v * (1.0 + 0.03 * math.sin(n + 0.1 * t))
        out["thd_voltage_ln"] = sum(_float(out[f"thd_voltage_{k}"]) for k in ("an", "bn", "cn")) / 3
        out["thd_voltage_ll"] = sum(_float(out[f"thd_voltage_{k}"]) for k in ("ab", "bc", "ca")) / 3

        ia, ib, ic = x.i
        out.update(current_a=ia, current_b=ib, current_c=ic, current_avg=iavg, current_g=None)
        # The motor is a 3-wire load; what the meter's N channel sees is the unbalance residue.
        out["current_n"] = math.sqrt(
            max(ia * ia + ib * ib + ic * ic - ia * ib - ib * ic - ic * ia, 0.0)
        )
        out["thd_current_n"] = out["thd_current_g"] = None
        if x.running:
            for key, value, factor in zip(_UNBAL_KEYS, x.i, (1.0, 1.04, 0.97), strict=True):
                out[f"current_unbalance_{key}"] = abs(value - iavg) / iavg * 100.0
                out[f"thd_current_{key}"] = x.thd_i * factor
            out["current_unbalance_worst"] = max(abs(v - iavg) for v in x.i) / iavg * 100.0
        else:
            for key in (*_UNBAL_KEYS, "worst"):
                out[f"current_unbalance_{key}"] = None
            for key in _UNBAL_KEYS:
                out[f"thd_current_{key}"] = None

        angles: tuple[QValue, ...] = (None, None, None)
        leads = (False, False, False, False)
        if x.running:
            p, q, s = x.p, x.q, x.s
            distortion = math.sqrt(1.0 + (x.thd_i / 100.0) ** 2)
            # The power factor as the meter decodes it: the sign of kW, and leading when
            # kW and kVAR have opposite signs (4Q_FP_PF quadrants II and IV); an open VT
            # (no kVA) has none.
            pf_list: list[QValue] = []
            dpf_list: list[QValue] = []
            lead_list: list[bool] = []
            for pk, qk, sk in (*zip(p, q, s, strict=True), (ptot, qtot, stot)):
                if sk <= 1e-6:
                    pf_list.append(None)
                    dpf_list.append(None)
                    lead_list.append(False)
                    continue
                pf = max(min(pk / sk, 1.0), -1.0)
                dpf = math.copysign(min(abs(pf) * distortion, 0.999), pf)
                pf_list.append(pf)
                dpf_list.append(dpf)
                lead_list.append(pk * qk < 0)
            pfs: tuple[QValue, ...] = tuple(pf_list)
            dpfs: tuple[QValue, ...] = tuple(dpf_list)
            leads = (lead_list[0], lead_list[1], lead_list[2], lead_list[3])
            angles = tuple(
                math.degrees(phi) if sk > 1e-6 else None for phi, sk in zip(x.phi, s, strict=True)
            )
            pf_total = pf_list[3]
            out["power_factor_total_iec"] = pf_total
            # IEEE: inductive (lagging) is negative
            out["power_factor_total_ieee"] = (
                None if pf_total is None else (abs(_float(pf_total)) * (1 if leads[3] else -1))
            )
        else:
            p = q = s = (0.0, 0.0, 0.0)
            pfs = dpfs = (None, None, None, None)
            out["power_factor_total_iec"] = out["power_factor_total_ieee"] = None
        for key, angle in zip(_UNBAL_KEYS, angles, strict=True):
            out[f"phase_angle_{key}"] = angle
        for key, values, total in (
            ("active_power", p, ptot),
            ("reactive_power", q, qtot),
            ("apparent_power", s, stot),
        ):
            for suffix, value in zip(_UNBAL_KEYS, values, strict=True):
                out[f"{key}_{suffix}"] = value
            out[f"{key}_total"] = total
        for suffix, pf_value, dpf_value, lead in zip(
            (*_UNBAL_KEYS, "total"), pfs, dpfs, leads, strict=True
        ):
            out[f"power_factor_{suffix}"] = pf_value
            out[f"displacement_pf_{suffix}"] = dpf_value
            # Read by the meter's encoder (pf4q leading quadrants); no map entry has this name.
            out[f"power_factor_{suffix}{LEADING_SUFFIX}"] = int(lead)
            out[f"displacement_pf_{suffix}{LEADING_SUFFIX}"] = int(lead)

        # energies: one accumulator per kind, shown as float k-units and INT64 base units
        hours = partial / 3600.0
        for k, ((kind, small), (flow, into_load)) in enumerate(
            zip(
                (("active", "wh"), ("reactive", "varh"), ("apparent", "vah")),
                _flows(ptot, qtot, stot),
                strict=True,
            )
        ):
            extra = flow * 1000.0 * hours
            for suffix, base, base_rec in (
                ("_permanent", self._e[k], self._rec[k]),
                ("", self._e_reset[k], self._rec_reset[k]),
            ):
                del_wh = base + (extra if into_load else 0.0)
                rec_wh = base_rec + (0.0 if into_load else extra)
                delivered, received = int(del_wh), int(rec_wh)
                out[f"{kind}_energy_delivered{suffix}"] = del_wh / 1000.0
                out[f"{kind}_energy_received{suffix}"] = rec_wh / 1000.0
                out[f"{kind}_energy_del_plus_rec{suffix}"] = (del_wh + rec_wh) / 1000.0
                out[f"{kind}_energy_del_minus_rec{suffix}"] = (del_wh - rec_wh) / 1000.0
                out[f"{kind}_energy_delivered_{small}{suffix}"] = delivered
                out[f"{kind}_energy_received_{small}{suffix}"] = received
                out[f"{kind}_energy_del_plus_rec_{small}{suffix}"] = delivered + received
                out[f"{kind}_energy_del_minus_rec_{small}{suffix}"] = delivered - received
        out["reactive_energy_capacitive"] = 0.0

        # demand (timed 15-minute blocks)
        for channel, key, value in zip(
            self._demand,
            ("active_power", "reactive_power", "apparent_power", "current_avg"),
            (ptot, qtot, stot, iavg),
            strict=True,
        ):
            covered = channel.covered + partial
            present = (
                (channel.integral + value * partial) / covered if covered > 0 else channel.last
            )
            remaining = max(channel.start + _DEMAND_INTERVAL - t, 0.0)
            predicted = (channel.integral + value * partial + value * remaining) / _DEMAND_INTERVAL
            peak, peak_time = channel.peak, channel.peak_time
            if present > peak:
                peak, peak_time = present, t
            out[f"{key}_demand_last"] = channel.last
            out[f"{key}_demand_present"] = present
            out[f"{key}_demand_predicted"] = predicted
            out[f"{key}_demand_peak"] = peak
            out[f"{key}_demand_peak_time"] = _iso(_dt.datetime.fromtimestamp(peak_time))
        return out

    def values(self, rmap: RegisterMap, at: float | None = None) -> dict[str, QValue]:
        """Entry name → value for every entry of ``rmap``, in the entry's unit (None = N/A)."""
        binding = bind_map(rmap)
        q = self.quantities(at)
        return {name: resolve(q, how) for name, how in binding.items()}


# ---------------------------------------------------------------------------------------------
# adapting quantities to a map


LEGACY_ALIASES: dict[str, tuple[str, float]] = {
    "va_total": ("apparent_power_total", 1000.0),
    "w_total": ("active_power_total", 1000.0),
    "var_total": ("reactive_power_total", 1000.0),
    "pf_avg": ("power_factor_total", 1.0),
    "vll_avg": ("voltage_ll_avg", 1.0),
    "vln_avg": ("voltage_ln_avg", 1.0),
    "a_avg": ("current_avg", 1.0),
    "v12": ("voltage_ab", 1.0),
    "v23": ("voltage_bc", 1.0),
    "v31": ("voltage_ca", 1.0),
    "fwd_vah": ("apparent_energy_delivered", 1000.0),
    "fwd_wh": ("active_energy_delivered", 1000.0),
    "fwd_varh_ind": ("reactive_energy_delivered", 1000.0),
    "fwd_varh_cap": ("reactive_energy_capacitive", 1000.0),
}
"""Names of the legacy EM6400 map → (em6400ng quantity, factor into the legacy unit)."""

for _n, _p in zip("123", "abc", strict=True):
    LEGACY_ALIASES.update(
        {
            f"va_{_n}": (f"apparent_power_{_p}", 1000.0),
            f"w_{_n}": (f"active_power_{_p}", 1000.0),
            f"var_{_n}": (f"reactive_power_{_p}", 1000.0),
            f"pf_{_n}": (f"power_factor_{_p}", 1.0),
            f"v{_n}": (f"voltage_{_p}n", 1.0),
            f"a_{_n}": (f"current_{_p}", 1.0),
        }
    )

_PREFIXED_UNITS = {"w", "var", "va", "wh", "varh", "vah"}


def _unit_factor(source: str, target: str) -> float | None:
    """Factor from the model's unit to a map's unit (kW → W is 1000); None if incompatible."""
    src, dst = source.strip().lower(), target.strip().lower()
    if src == dst or not dst or not src:
        return 1.0
    for base in _PREFIXED_UNITS:
        if src == "k" + base and dst == base:
            return 1000.0
        if src == base and dst == "k" + base:
            return 0.001
        if src == "k" + base and dst == "m" + base:
            return 0.001
    return None


def _model_unit(name: str) -> str:
    """The unit the model produces ``name`` in (only power and energy units matter)."""
    for kind, power, energy, base in (
        ("active", "kw", "kwh", "wh"),
        ("reactive", "kvar", "kvarh", "varh"),
        ("apparent", "kva", "kvah", "vah"),
    ):
        if name.startswith(f"{kind}_power"):
            return power
        if name.startswith(f"{kind}_energy"):
            return base if f"_{base}" in name else energy
    return ""


def bind_map(rmap: RegisterMap) -> dict[str, tuple[str, float, str] | None]:
    """How each entry of ``rmap`` is served: entry name → (quantity, factor, entry type).

    An entry is matched by name: an ``em6400ng`` name directly (converting kW/W ... by the
    entry's unit), or a legacy EM6400 name through :data:`LEGACY_ALIASES`. Entries the
    model has nothing for map to None and read as N/A.
    """
    cached = _BINDINGS.get(id(rmap))
    if cached is not None and cached[0] is rmap:
        return cached[1]
    known = _known_quantities()
    binding: dict[str, tuple[str, float, str] | None] = {}
    for entry in rmap.entries:
        binding[entry.name] = _bind_entry(entry, known)
    _BINDINGS[id(rmap)] = (rmap, binding)
    return binding


def _bind_entry(entry: RegisterEntry, known: frozenset[str]) -> tuple[str, float, str] | None:
    if entry.name in known:
        factor = _unit_factor(_model_unit(entry.name), entry.unit)
        return None if factor is None else (entry.name, factor, entry.type)
    alias = LEGACY_ALIASES.get(entry.name)
    if alias is not None:
        return (alias[0], alias[1], entry.type)
    return None


def resolve(quantities: Mapping[str, QValue], how: tuple[str, float, str] | None) -> QValue:
    """The value a binding (from :func:`bind_map`) gives: scaled, cast to the entry's type."""
    if how is None:
        return None
    name, factor, kind = how
    value = quantities.get(name)
    if value is None or isinstance(value, str):
        return value if kind in ("string", "datetime") or value is None else None
    if kind in ("string", "datetime"):
        return None
    scaled = value * factor if factor != 1.0 else value
    if kind in ("float32", "pf4q"):
        return float(scaled)
    return round(scaled)


_BINDINGS: dict[int, tuple[RegisterMap, dict[str, tuple[str, float, str] | None]]] = {}
_KNOWN: list[frozenset[str]] = []


def _known_quantities() -> frozenset[str]:
    if not _KNOWN:
        probe = PumpModel(15.0, seed=0, clock=lambda: 1_700_000_000.0, frozen=True)
        _KNOWN.append(frozenset(probe.quantities()))
    return _KNOWN[0]


# ---------------------------------------------------------------------------------------------
# helpers


LEADING_SUFFIX = ":leading"
"""Suffix of the quantity that says a power factor is in the leading quadrants (1 or 0)."""


def _flows(p: float, q: float, s: float) -> tuple[tuple[float, bool], ...]:
    """(magnitude, into the load?) of the active, reactive and apparent power flows: what
    the delivered and received energy counters integrate."""
    return ((abs(p), p >= 0.0), (abs(q), q >= 0.0), (s, p >= 0.0))


def _triple(values: tuple[float, ...]) -> tuple[float, float, float]:
    return values[0], values[1], values[2]


def _line(a: float, b: float) -> float:
    """Line-to-line magnitude of two phase voltages 120° apart."""
    return math.sqrt(a * a + b * b + a * b)


def _float(value: QValue) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _iso(moment: _dt.datetime) -> str:
    """ISO text the codec takes for a datetime entry (the meter keeps 2000-2127)."""
    moment = min(max(moment, _dt.datetime(2000, 1, 1)), _dt.datetime(2127, 12, 31))
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{moment.microsecond // 1000:03d}"
