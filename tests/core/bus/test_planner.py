"""The read planner: minimal-cost blocks, block-size limits, learned splits (design §4)."""

from __future__ import annotations

from emtui.core.bus.planner import ReadBlock, ReadPlanner, transaction_chars
from emtui.core.maps.registers import RegisterEntry, load_map


def entry(name: str, register: int, count: int = 2) -> RegisterEntry:
    return RegisterEntry(name=name, label=name, register=register, type="float32", count=count)


def test_transaction_cost_follows_design_formula() -> None:
    """One FC03 read of N registers: 8 + 5 + 2N characters plus 2 x 3.5 characters silence."""
    assert transaction_chars(1) == 8 + 5 + 2 + 7
    assert transaction_chars(125) == 8 + 5 + 250 + 7


def test_adjacent_entries_share_one_request() -> None:
    """Contiguous entries become one block covering exactly their registers."""
    planner = ReadPlanner()
    blocks = planner.plan([entry("a", 3000), entry("b", 3002), entry("c", 3004)])
    assert blocks == [ReadBlock(3000, 6, blocks[0].entries)]
    assert [e.name for e in blocks[0].entries] == ["a", "b", "c"]


def test_reads_through_a_gap_when_cheaper_than_a_second_request() -> None:
    """A gap of 10 registers (20 chars) costs less than a request (20 chars + turnaround)."""
    planner = ReadPlanner(turnaround_chars=35)
    blocks = planner.plan([entry("a", 3000), entry("b", 3012)])
    assert [(b.register, b.count) for b in blocks] == [(3000, 14)]


def test_splits_when_the_gap_costs_more_than_a_request() -> None:
    """A gap of 40 registers (80 chars) is dearer than a second request (55 chars)."""
    planner = ReadPlanner(turnaround_chars=35)
    blocks = planner.plan([entry("a", 3000), entry("b", 3042)])
    assert [(b.register, b.count) for b in blocks] == [(3000, 2), (3042, 2)]


def test_max_gap_forbids_reading_through() -> None:
    """With max_gap 0 the planner never reads registers it was not asked for."""
    planner = ReadPlanner(max_gap=0)
    blocks = planner.plan([entry("a", 3000), entry("b", 3004)])
    assert [(b.register, b.count) for b in blocks] == [(3000, 2), (3004, 2)]


def test_blocks_never_exceed_block_size() -> None:
    """70 contiguous float32 values (140 registers) need two reads of at most 125."""
    planner = ReadPlanner(block_size=125)
    entries = [entry(f"v{i}", 1000 + 2 * i) for i in range(70)]
    blocks = planner.plan(entries)
    assert len(blocks) == 2
    assert all(b.count <= 125 for b in blocks)
    assert sum(len(b.entries) for b in blocks) == 70
    small = ReadPlanner(block_size=10).plan(entries)
    assert all(b.count <= 10 for b in small) and len(small) == 14


def test_plan_is_optimal_against_brute_force() -> None:
    """The plan's cost equals the cheapest of every way to cut a small entry list."""
    import itertools

    regs = [100, 103, 110, 140, 142, 200, 230, 233]
    entries = [entry(f"e{r}", r) for r in regs]
    planner = ReadPlanner(block_size=40, turnaround_chars=35)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(entries) - 1):
        groups, current = [], [entries[0]]
        for cut, e in zip(cuts, entries[1:], strict=True):
            if cut:
                groups.append(current)
                current = [e]
            else:
                current.append(e)
        groups.append(current)
        spans = [g[-1].end - g[0].register for g in groups]
        if all(s <= 40 for s in spans):
            best = min(best, sum(planner.request_cost(s) for s in spans))
    assert planner.cost(planner.plan(entries)) == best


def test_refused_block_is_split_and_remembered() -> None:
    """Exception 02 on a block splits it at its widest gap; the next plan keeps the split."""
    planner = ReadPlanner(turnaround_chars=35)
    entries = [entry("a", 3000), entry("b", 3002), entry("c", 3020), entry("d", 3022)]
    (block,) = planner.plan(entries)
    halves = planner.refused(block)
    assert [(b.register, b.count) for b in halves] == [(3000, 4), (3020, 4)]
    assert [(b.register, b.count) for b in planner.plan(entries)] == [(3000, 4), (3020, 4)]


def test_refused_single_entry_becomes_unreadable() -> None:
    """An entry refused on its own is dropped from later plans and reported."""
    planner = ReadPlanner()
    (block,) = planner.plan([entry("a", 3000)])
    assert planner.refused(block) == []
    assert planner.unreadable == {"a"}
    assert planner.plan([entry("a", 3000), entry("b", 3100)])[0].entries[0].name == "b"


def test_default_logged_set_of_em6400ng_takes_three_requests() -> None:
    """The EM6400NG logged set: the real-time block, the energies, the run seconds."""
    rmap = load_map("em6400ng")
    blocks = ReadPlanner(rmap.block_size, 35).plan(rmap.logged)
    assert [(b.register, b.count) for b in blocks] == [(2700, 18), (3000, 112), (43546, 2)]
