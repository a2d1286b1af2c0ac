"""The read planner (design §4): as few, as cheap requests as the wanted registers allow.

Cost model, in characters on the line: one FC03 request for N registers costs
``8 + 5 + 2N`` characters plus two 3.5-character silences plus the meter's turnaround
(expressed in characters). Reading through a gap of G unwanted registers costs 2G characters;
a second request costs ``20 + turnaround`` characters. The planner partitions the wanted
entries (in register order) into blocks of at most the map's block size so that the total
cost is minimal (dynamic programming: exact, and cheap for a few hundred entries).

A meter that answers a block with exception 02 (illegal address: the block touches
registers it does not have) gets the block split at its widest gap, and the split is
remembered so it is never merged again; an entry that fails alone is marked unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from emtui.core.maps.registers import RegisterEntry

#: Fixed characters of one read transaction: request 8, reply header + CRC 5, two 3.5-char
#: silences 7.
REQUEST_OVERHEAD_CHARS = 20


def transaction_chars(count: int) -> int:
    """Characters one read of ``count`` registers puts on the line (without turnaround)."""
    return REQUEST_OVERHEAD_CHARS + 2 * count


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One planned read: ``count`` registers from 1-based ``register`` covering ``entries``."""

    register: int
    count: int
    entries: tuple[RegisterEntry, ...]

    @property
    def address(self) -> int:
        """The wire address of the first register."""
        return self.register - 1

    def slice(self, entry: RegisterEntry, registers: Sequence[int]) -> Sequence[int]:
        """The registers of ``entry`` within a reply to this block."""
        start = entry.register - self.register
        return registers[start : start + entry.count]


class ReadPlanner:
    """Plans reads for a set of entries and learns from exception-02 replies.

    Args:
        block_size: the longest read the meter accepts (the map's block size).
        turnaround_chars: the meter's turnaround in character times (it makes an extra
            request dearer, so longer gaps are worth reading through).
        max_gap: never read through more than this many unwanted registers (None: no limit
            beyond the cost model).
        avoid: register numbers that act when read (the map's ``acts_on_read``): no block
            covers one, and entries that contain one are left out.
    """

    def __init__(
        self,
        block_size: int = 125,
        turnaround_chars: float = 35.0,
        max_gap: int | None = None,
        avoid: Iterable[int] = (),
    ) -> None:
        if not 1 <= block_size <= 125:
            raise ValueError(f"block size must be 1-125, not {block_size}")
        self.block_size = block_size
        self.turnaround_chars = turnaround_chars
        self.max_gap = max_gap
        self.avoid = frozenset(avoid)
        # Register numbers R such that no block may contain both R-1's entry and R's entry:
        # learned splits (a block starting at R must start a new request).
        self._barriers: set[int] = set()
        self._unreadable: set[str] = set()

    @property
    def unreadable(self) -> frozenset[str]:
        """Names of entries the meter refused even when read alone."""
        return frozenset(self._unreadable)

    def request_cost(self, count: int) -> float:
        """Line cost of one read of ``count`` registers, in characters."""
        return transaction_chars(count) + self.turnaround_chars

    def plan(self, entries: Iterable[RegisterEntry]) -> list[ReadBlock]:
        """Minimal-cost blocks covering ``entries`` (unreadable ones left out)."""
        wanted = sorted(
            {
                (e.register, e.name): e
                for e in entries
                if e.name not in self._unreadable and not e.acts_on_read and not self._acts(e)
            }.values(),
            key=lambda e: (e.register, e.count),
        )
        n = len(wanted)
        if n == 0:
            return []
        best = [0.0] + [float("inf")] * n  # best[i]: cheapest plan of wanted[:i]
        cut = [0] * (n + 1)
        for i in range(1, n + 1):
            end = wanted[i - 1].end
            # Try blocks wanted[j:i], growing leftwards while they still fit.
            for j in range(i - 1, -1, -1):
                start = wanted[j].register
                span = max(end, max(e.end for e in wanted[j:i])) - start
                if span > self.block_size:
                    break
                if j < i - 1 and not self._may_join(wanted[j], wanted[j + 1]):
                    break
                cost = best[j] + self.request_cost(span)
                if cost < best[i]:
                    best[i], cut[i] = cost, j
        blocks: list[ReadBlock] = []
        i = n
        while i > 0:
            j = cut[i]
            group = tuple(wanted[j:i])
            start = group[0].register
            stop = max(e.end for e in group)
            blocks.append(ReadBlock(start, stop - start, group))
            i = j
        blocks.reverse()
        return blocks

    def _acts(self, entry: RegisterEntry) -> bool:
        return any(entry.register + k in self.avoid for k in range(entry.count))

    def _may_join(self, left: RegisterEntry, right: RegisterEntry) -> bool:
        if right.register in self._barriers:
            return False
        if any(left.end <= r < right.register for r in self.avoid):
            return False  # reading through the gap would read a register that acts
        gap = right.register - left.end
        return self.max_gap is None or gap <= self.max_gap

    def cost(self, blocks: Iterable[ReadBlock]) -> float:
        """Total line cost of ``blocks`` in characters."""
        return sum(self.request_cost(b.count) for b in blocks)

    def refused(self, block: ReadBlock) -> list[ReadBlock]:
        """Record that the meter answered ``block`` with exception 02; return its replacement.

        The block is split at its widest gap between entries and the split is remembered.
        A single entry that is refused is marked unreadable and an empty list returned.
        """
        entries = block.entries
        if len(entries) == 1:
            self._unreadable.add(entries[0].name)
            return []
        gaps = [(entries[k + 1].register - entries[k].end, k) for k in range(len(entries) - 1)]
        _, k = max(gaps)
        self._barriers.add(entries[k + 1].register)
        left, right = entries[: k + 1], entries[k + 1 :]
        return [_block_of(left), _block_of(right)]


def _block_of(entries: Sequence[RegisterEntry]) -> ReadBlock:
    start = entries[0].register
    return ReadBlock(start, max(e.end for e in entries) - start, tuple(entries))
