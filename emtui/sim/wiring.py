"""Wiring faults of a simulated meter: what a miswired CT or VT makes a healthy feeder look like.

Why this module exists: a meter that answers is not yet a meter that measures right, and
``emtui check`` has to tell the faults apart from the numbers alone. The simulator therefore
has to produce them *consistently* — per-phase kW, kVAR, kVA, the power factor as the meter
encodes it, the V–I angle registers and the energy counters all follow from one changed
pairing of voltage and current, never from patching one register.

The model works on each metered phase as (voltage magnitude, current magnitude, angle φ by
which the current lags the voltage). For a balanced lagging load at angle φ with ABC rotation:

* ``ct-reversed:X`` — the CT of X is turned round: its current flips, φ_X → φ + 180°;
* ``ct-swap:A-B`` (B-C, C-A) — the meter's phase A sees phase B's current and vice versa:
  phase A at φ + 120°, phase B at φ − 120° (the first of the pair +120°, the second −120°);
* ``vt-missing:X`` — the voltage input of X is open: V_X ≈ 0, the current is still there;
* ``ct-ratio:R`` — the meter's CT primary is set to R instead of the true one: every
  current (so every power and energy increment) is scaled by R / true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["PHASES", "Wiring", "parse_wiring"]

PHASES = ("A", "B", "C")
"""Phase letters, in rotation order (index 0, 1, 2)."""

_SWAPS = {"A-B": (0, 1), "B-C": (1, 2), "C-A": (2, 0)}
#: What an open voltage input still reads (induced and leakage voltage), V.
VT_MISSING_RESIDUAL = 0.4

Triple = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Wiring:
    """The wiring faults of one meter (several may be combined; none = healthy).

    Attributes:
        reversed: phase indexes (0 = A) whose CT is reversed.
        swap: a pair of phase indexes whose CTs are exchanged (first gets +120°).
        vt_missing: phase indexes whose voltage input is open.
        ct_primary: the CT primary the meter is set to (None: the true one).
    """

    reversed: frozenset[int] = frozenset()
    swap: tuple[int, int] | None = None
    vt_missing: frozenset[int] = frozenset()
    ct_primary: int | None = None

    @property
    def healthy(self) -> bool:
        """No fault at all."""
        return self == Wiring()

    def combined(self, other: Wiring) -> Wiring:
        """These faults and ``other``'s together (``other`` wins for the swap and the ratio)."""
        return Wiring(
            reversed=self.reversed | other.reversed,
            swap=other.swap if other.swap is not None else self.swap,
            vt_missing=self.vt_missing | other.vt_missing,
            ct_primary=other.ct_primary if other.ct_primary is not None else self.ct_primary,
        )

    def apply(
        self, v: Triple, i: Triple, phi: Triple, true_ct_primary: float
    ) -> tuple[Triple, Triple, Triple]:
        """The (V, I, φ in radians) each metered phase sees, from the true ones."""
        volts, amps, angles = list(v), list(i), list(phi)
        if self.swap is not None:
            first, second = self.swap
            amps[first], amps[second] = i[second], i[first]
            angles[first] = phi[second] + 2.0 * math.pi / 3.0
            angles[second] = phi[first] - 2.0 * math.pi / 3.0
        for k in self.reversed:
            angles[k] += math.pi
        for k in self.vt_missing:
            volts[k] = VT_MISSING_RESIDUAL
        if self.ct_primary is not None and true_ct_primary > 0:
            scale = self.ct_primary / true_ct_primary
            amps = [a * scale for a in amps]
        # Keep every angle in (-180°, 180°] so the angle registers read like a meter's.
        wrapped = [math.atan2(math.sin(a), math.cos(a)) for a in angles]
        return (
            (volts[0], volts[1], volts[2]),
            (amps[0], amps[1], amps[2]),
            (wrapped[0], wrapped[1], wrapped[2]),
        )

    def describe(self) -> str:
        """The faults in ``--wiring`` syntax, comma-separated ("healthy" for none)."""
        parts = []
        if self.reversed:
            which = sorted(self.reversed)
            parts.append(
                "ct-reversed:all"
                if which == [0, 1, 2]
                else ",".join(f"ct-reversed:{PHASES[k]}" for k in which)
            )
        if self.swap is not None:
            parts.append(f"ct-swap:{PHASES[self.swap[0]]}-{PHASES[self.swap[1]]}")
        parts.extend(f"vt-missing:{PHASES[k]}" for k in sorted(self.vt_missing))
        if self.ct_primary is not None:
            parts.append(f"ct-ratio:{self.ct_primary}")
        return ", ".join(parts) or "healthy"


def _phase(text: str, option: str) -> int:
    letter = text.strip().upper()
    if letter not in PHASES:
        raise ValueError(f"{option}: phase must be A, B or C, not {text!r}")
    return PHASES.index(letter)


def parse_wiring(text: str) -> tuple[int, Wiring]:
    """``ID:FAULT`` (``3:ct-reversed:A``, ``2:ct-swap:A-B``, ``1:vt-missing:C``,
    ``4:ct-ratio:200``, ``1:ct-reversed:all``) as (id, :class:`Wiring`).

    Raises:
        ValueError: one line saying what is wrong and what is accepted.
    """
    accepted = "ct-reversed:A|B|C|all, ct-swap:A-B|B-C|C-A, vt-missing:A|B|C, ct-ratio:N"
    ident, sep, rest = text.partition(":")
    kind, sep2, arg = rest.partition(":")
    if not sep or not sep2 or not ident.strip().isdigit():
        raise ValueError(f"--wiring {text!r}: expected ID:FAULT, FAULT one of {accepted}")
    device_id = int(ident)
    if not 1 <= device_id <= 247:
        raise ValueError(f"--wiring {text!r}: the id must be 1-247")
    kind = kind.strip().lower()
    option = f"--wiring {text!r}"
    wiring = Wiring()
    if kind == "ct-reversed":
        phases = (
            frozenset((0, 1, 2))
            if arg.strip().lower() == "all"
            else frozenset({_phase(arg, option)})
        )
        wiring = replace(wiring, reversed=phases)
    elif kind == "ct-swap":
        pair = _SWAPS.get(arg.strip().upper())
        if pair is None:
            raise ValueError(f"{option}: a swap is A-B, B-C or C-A")
        wiring = replace(wiring, swap=pair)
    elif kind == "vt-missing":
        wiring = replace(wiring, vt_missing=frozenset({_phase(arg, option)}))
    elif kind == "ct-ratio":
        if not arg.strip().isdigit() or not 1 <= int(arg) <= 32767:
            raise ValueError(f"{option}: the CT primary must be a whole number of A, 1-32767")
        wiring = replace(wiring, ct_primary=int(arg))
    else:
        raise ValueError(f"{option}: unknown fault {kind!r}; use one of {accepted}")
    return device_id, wiring
