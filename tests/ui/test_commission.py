"""The Commission screen (key c): the checks on the live samples, and the ASCII phasors."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from rich.console import Console
from scripted_engine import T0, ScriptedEngine, reference_config
from textual.widgets import Static

from emtui.core.bus.reader import Sample
from emtui.core.check.checks import CHECK_NAMES
from emtui.core.check.model import CheckResult
from emtui.core.check.phasor import VOLTAGE_ANGLES, phasor_diagram
from emtui.core.maps.codec import Value
from emtui.sim.wiring import parse_wiring
from emtui.ui.app import EmtuiApp
from emtui.ui.commission import CommissionScreen, MeterWindow


def tip(lines: list[str], char: str) -> tuple[int, int]:
    """(x, y) of ``char`` in the diagram."""
    for y, line in enumerate(lines):
        if char in line:
            return line.index(char), y
    raise AssertionError(f"{char!r} not drawn")


def test_phasor_reversed_current_points_away_from_its_voltage() -> None:
    """A healthy current sits next to its voltage; a reversed one (φ+180°) on the other side
    of the origin; only ASCII is used."""
    volts = {"a": 230.0, "b": 230.0, "c": 230.0}
    amps = {"a": 60.0, "b": 60.0, "c": 60.0}
    healthy = phasor_diagram({"a": 30.0, "b": 30.0, "c": 30.0}, volts, amps)
    flipped = phasor_diagram({"a": 210.0, "b": 30.0, "c": 30.0}, volts, amps)
    origin = tip(healthy, "+")
    assert VOLTAGE_ANGLES["a"] == 90.0  # A is drawn straight up
    assert tip(healthy, "A")[1] < origin[1] and tip(healthy, "a")[1] < origin[1]
    assert tip(flipped, "a")[1] > origin[1]  # reversed: below the origin
    assert all(ch.isascii() for line in flipped for ch in line)
    assert len({len(line) for line in flipped}) == 1


async def test_commission_screen_shows_a_reversed_ct(tmp_path: Path) -> None:
    """c opens the Commission screen; after 12 s of polls it fails ct_polarity on the meter
    with a reversed CT and passes it on the others, draws the phasors, and escape goes back."""
    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0])
    engine.sim[2].set_wiring(parse_wiring("2:ct-reversed:A")[1])
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        assert sorted(engine.refreshed) == [1, 2, 3, 4]  # identity and setup read once
        for _ in range(12):
            engine.poll()
            now[0] += 1.0
        await pilot.pause()
        screen.refresh_view()
        report = screen.report
        assert report is not None
        verdicts = {m.id: {c.name: c.verdict for c in m.checks} for m in report.meters}
        assert verdicts[2]["ct_polarity"] == "fail"
        assert all(verdicts[i]["ct_polarity"] == "pass" for i in (1, 3, 4))
        assert "A" in screen.phasor_text() and "V–I angle" in screen.phasor_text()
        await pilot.press("right")
        assert screen.phasor_text().startswith("phasors of id 2")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CommissionScreen)
        assert ("c", "Commission", "commission") in app.key_rows()  # listed by ?


# -- flows: each wiring fault of issue 10's table on one meter, no load, a silent meter ---------

POLLS = 15
"""Poll cycles (1 s apart) before judging: the load has run ≥ 10 s of the window."""


async def judged(
    tmp_path: Path,
    wiring: str | None = None,
    *,
    running: bool = True,
    expect: dict[str, float | int] | None = None,
    silence: int | None = None,
) -> tuple[dict[int, dict[str, CheckResult]], dict[str, list[str]], CommissionScreen]:
    """Open the Commission screen on four scripted pumps (``wiring`` installed, e.g.
    ``2:ct-reversed:A``; meter 2's ``[meters.expect]``), poll, and return the verdicts per
    meter, the verdict table as drawn (check → cells), and the screen. ``silence``: that meter
    stops answering after the first polls, for as many cycles again."""
    now = [T0]
    config = reference_config(tmp_path)
    if expect:
        meters = tuple(
            dataclasses.replace(m, expect=tuple(expect.items())) if m.id == 2 else m
            for m in config.meters
        )
        config = dataclasses.replace(config, meters=meters)
    engine = ScriptedEngine(config, clock=lambda: now[0], running=running, live=True)
    if wiring is not None:
        device_id, faults = parse_wiring(wiring)
        engine.sim[device_id].set_wiring(faults)
    app = EmtuiApp(engine, config=config, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        for cycle in range(POLLS * (2 if silence else 1)):
            if silence is not None and cycle == POLLS:
                engine.fail(silence)
            engine.poll()
            now[0] += 1.0
        await pilot.pause()
        screen.refresh_view()
        await pilot.pause()
        report = screen.report
        assert report is not None
        verdicts = {m.id: {c.name: c for c in m.checks} for m in report.meters}
        console = Console(width=60, record=True, file=io.StringIO())
        console.print(screen.verdict_table())
        drawn = {
            cells[0]: cells[1:]
            for line in console.export_text().splitlines()
            if (cells := line.split()) and cells[0] in CHECK_NAMES
        }
    return verdicts, drawn, screen


FAULTS = [
    ("2:ct-reversed:A", "ct_polarity", {}),
    ("2:ct-reversed:B", "ct_polarity", {}),
    ("2:ct-reversed:C", "ct_polarity", {}),
    ("2:ct-reversed:all", "ct_polarity", {"energy": "not_checked"}),
    ("2:ct-swap:A-B", "phasing", {"ct_polarity": "not_checked"}),
    ("2:ct-swap:B-C", "phasing", {"ct_polarity": "not_checked"}),
    ("2:ct-swap:C-A", "phasing", {"ct_polarity": "not_checked"}),
    ("2:vt-missing:A", "voltage_presence", {"unbalance": "not_checked"}),
    ("2:vt-missing:B", "voltage_presence", {"unbalance": "not_checked"}),
    ("2:vt-missing:C", "voltage_presence", {"unbalance": "not_checked"}),
    ("2:ct-ratio:200", "setup", {}),
]


@pytest.mark.parametrize(("wiring", "failing", "follows"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_fault_fails_its_check_on_its_meter_only(
    tmp_path: Path, wiring: str, failing: str, follows: dict[str, str]
) -> None:
    """Every row of issue 10's fault table, on meter 2 (its CT primary expected to be the
    true 100 A): the screen's table shows FAIL for that fault's check in meter 2's column and
    nowhere else; the checks that follow it say not_checked; nothing else fails anywhere."""
    verdicts, drawn, _ = await judged(tmp_path, wiring, expect={"ct_primary": 100})
    failed = {(i, name) for i, checks in verdicts.items() for name, c in checks.items()
              if c.verdict == "fail"}  # fmt: skip
    assert failed == {(2, failing)}
    assert drawn[failing] == ["pass", "FAIL", "pass", "pass"] or (
        failing == "setup" and drawn[failing] == ["--", "FAIL", "--", "--"]
    )
    for name, verdict in follows.items():
        assert verdicts[2][name].verdict == verdict
        assert verdicts[2][name].evidence.get("follows") == failing


async def test_healthy_site_fails_nothing(tmp_path: Path) -> None:
    """Four healthy pumps under load: no check fails; the wiring checks pass on every meter,
    and setup passes against a matching [meters.expect]."""
    verdicts, drawn, _ = await judged(tmp_path, expect={"ct_primary": 100})
    assert not [c for checks in verdicts.values() for c in checks.values() if c.verdict == "fail"]
    for name in ("ct_polarity", "phasing", "voltage_presence", "energy", "link"):
        assert drawn[name] == ["pass"] * 4
    assert verdicts[2]["setup"].verdict == "pass"


async def test_pumps_off_wiring_not_checked(tmp_path: Path) -> None:
    """Pumps standing: ct_polarity and phasing say not_checked: no load (start the pump) on
    every meter, drawn as --; voltage_presence is still judged (it needs no load)."""
    verdicts, drawn, _ = await judged(tmp_path, running=False)
    for checks in verdicts.values():
        for name in ("ct_polarity", "phasing"):
            assert checks[name].verdict == "not_checked"
            assert "no load" in checks[name].why and "start the pump" in checks[name].why
        assert checks["voltage_presence"].verdict == "pass"
    assert drawn["ct_polarity"] == drawn["phasing"] == ["--"] * 4


async def test_meter_silent_mid_session_shows_link_fail_and_stale(tmp_path: Path) -> None:
    """Meter 3 answers 15 cycles, then times out for 15: its link fails (50 % unanswered),
    its column is marked stale, its phasors say it gave no values; the screen keeps running
    and the other meters keep their verdicts."""
    verdicts, drawn, screen = await judged(tmp_path, silence=3)
    assert verdicts[3]["link"].verdict == "fail"
    assert verdicts[3]["link"].evidence["timeouts"] == 45
    assert drawn["link"] == ["pass", "pass", "FAIL", "pass"]
    assert screen.stale(3) and not screen.stale(1)
    screen.selected = 2
    assert "did not answer" in screen.phasor_text()
    assert all(verdicts[i]["link"].verdict == "pass" for i in (1, 2, 4))
    assert all(verdicts[i]["ct_polarity"].verdict == "pass" for i in (1, 2, 4))


def test_window_carries_other_registers_read_block_by_block() -> None:
    """The engine reads the other registers one block per sample (unbalance in one, angles in
    another): each value read in the last minute is carried into the logged samples after it,
    a later block does not drop an earlier one, and an older read is not carried."""
    window = MeterWindow(1)

    def sample(t: float, **values: float) -> Sample:
        return Sample(1, t, "ok", {n: Value(v) for n, v in values.items()}, {}, 0.1, 1)

    window.feed(sample(T0, voltage_unbalance_ll_worst=0.4, current_unbalance_worst=3.0))
    window.feed(sample(T0 + 1, phase_angle_a=31.0))
    window.feed(sample(T0 + 2, current_a=60.0))
    carried = window.samples[-1]
    assert carried.number("voltage_unbalance_ll_worst") == 0.4
    assert carried.number("current_unbalance_worst") == 3.0
    assert carried.number("phase_angle_a") == 31.0
    window.feed(sample(T0 + 61, current_a=60.0))
    later = window.samples[-1]
    assert later.number("voltage_unbalance_ll_worst") is None  # read 61 s before: not carried
    assert later.number("phase_angle_a") == 31.0


async def test_link_is_judged_on_the_last_minute(tmp_path: Path) -> None:
    """Timeouts before the window (the screen opened, then 61 s of clean polls) no longer
    count: the link passes; before that they weigh (warn or fail)."""
    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0])
    engine.fail(1)
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        engine.poll()  # 3 timeouts of meter 1 inside the window
        engine.recover(1)
        for _ in range(10):
            now[0] += 1.0
            engine.poll()
        screen.refresh_view()
        assert screen.report is not None
        assert screen.report.meters[0].get("link").verdict == "warn"  # 3 of 33 unanswered: 9 %
        for _ in range(62):
            now[0] += 1.0
            engine.poll()
            screen.refresh_view()
        link = screen.report.meters[0].get("link")
        assert link.verdict == "pass", link.why
        assert link.evidence["timeouts"] == 0
        assert engine.stats(1).timeouts == 3  # the session's own counters are untouched


@pytest.mark.parametrize(
    ("ids", "width", "side_by_side"),
    [((1, 2, 3, 4), 100, True), ((1, 2, 3, 4), 80, False), ((1, 2, 3, 4, 5, 6, 7, 8), 100, False)],
)
async def test_phasors_beside_the_table_only_when_they_fit(
    tmp_path: Path, ids: tuple[int, ...], width: int, side_by_side: bool
) -> None:
    """Four meters at 100 columns: the phasors sit right of the verdict table; at 80 columns,
    or with eight meters at 100, they go below it (the screen scrolls)."""
    engine = ScriptedEngine(reference_config(tmp_path, ids))
    app = EmtuiApp(engine, config=engine.config, clock=lambda: T0)
    async with app.run_test(size=(width, 30)) as pilot:
        await pilot.press("c")
        engine.poll()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        screen.refresh_view()
        await pilot.pause()
        table = screen.query_one("#verdict-table").region
        phasors = screen.query_one("#phasors").region
        if side_by_side:
            assert phasors.x >= table.right and phasors.y == table.y
        else:
            assert phasors.y >= table.bottom


async def test_screen_reads_everything_once_then_what_it_judges(tmp_path: Path) -> None:
    """On opening, every other register of each meter once (identity, setup); every 15 s
    after, only the unbalance, angle and clock entries."""
    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0])
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        assert engine.refreshed_names == [None] * 4
        now[0] += 16.0
        screen.refresh_view()
        again = engine.refreshed_names[4:]
        assert len(again) == 4 and all(n is not None for n in again)
        assert again[0] is not None
        assert {"voltage_unbalance_ll_worst", "phase_angle_a", "meter_clock_year"} <= set(again[0])
        assert "serial_number" not in again[0]


async def test_read_only_engine_is_judged_without_reads(tmp_path: Path) -> None:
    """On a bus a logger holds (a read-only engine) the screen asks for nothing, says so, and
    judges the logger's samples: what needs the CT primary (wiring) says it was not read."""
    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0])
    engine.read_only = True
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        for _ in range(12):
            engine.poll()
            now[0] += 1.0
        await pilot.pause()
        screen.refresh_view()
        assert engine.refreshed == []
        assert screen.report is not None
        meter = screen.report.meters[0]
        assert meter.get("frequency").verdict == meter.get("voltage_presence").verdict == "pass"
        polarity = meter.get("ct_polarity")
        assert polarity.verdict == "not_checked" and "CT primary was not read" in polarity.why
        assert "read-only" in str(screen.query_one("#commission-title", Static).render())


async def test_commission_window_saves_a_report(tmp_path: Path) -> None:
    """The screen's live window (capture() and judge()) is what write_report takes: the saved
    report has every meter, the screen's failed checks (id 2's ct_polarity among them), and
    id 2's phase A drawn reversed."""
    from emtui.core.report import ReportContext, write_report

    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0])
    engine.sim[2].set_wiring(parse_wiring("2:ct-reversed:A")[1])
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        for _ in range(12):
            engine.poll()
            now[0] += 1.0
        await pilot.pause()
        capture = screen.capture()
        judged = screen.judge(capture)
        files = write_report(
            capture,
            judged,
            ReportContext(site="demo", port="socket://sim", settings="socket://sim 19200 8E1"),
            tmp_path / "reports",
        )
    doc = files.document
    assert [m["id"] for m in doc["meters"]] == [1, 2, 3, 4]
    failed = [(f["id"], f["check"]) for f in doc["summary"]["failed"]]
    assert failed == judged.failed() and (2, "ct_polarity") in failed
    assert (1, "ct_polarity") not in failed
    angle_a = doc["meters"][1]["phasors"]["phases"]["a"]["angle_deg"]
    assert abs(abs(angle_a) - 180.0) < 60.0  # about the load angle + 180°
    assert files.html.is_file() and files.json.is_file()


async def test_w_saves_the_report_of_the_screen_and_a_bad_folder_says_so(tmp_path: Path) -> None:
    """w on the Commission screen writes the HTML and JSON report of the window on screen into
    the app's working directory (off the event loop); the JSON's checks are the screen's
    verdicts. A folder that is a file gives an error notice, nothing written, no crash."""
    import json

    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0], live=True)
    engine.sim[2].set_wiring(parse_wiring("2:ct-reversed:A")[1])
    out = tmp_path / "site-visit"
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0], traffic_dir=out)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        for _ in range(POLLS):
            engine.poll()
            now[0] += 1.0
        await pilot.pause()
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.saved is not None and screen.saved.parent == out
        html = screen.saved.read_text()
        assert "ct_polarity" in html and "Meter id 2" in html and "<pre" in html
        doc = json.loads(screen.saved.with_suffix(".json").read_text())
        failed = {(m["id"], c["name"]) for m in doc["checks"]["meters"] for c in m["checks"]
                  if c["verdict"] == "fail"}  # fmt: skip
        assert (2, "ct_polarity") in failed and (1, "ct_polarity") not in failed
        assert any("Report saved" in n.message for n in app._notifications)

        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        screen.report_dir = blocker
        first = screen.saved
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.saved == first
        assert any("Report not saved" in n.message for n in app._notifications)
        assert isinstance(app.screen, CommissionScreen)


async def test_only_what_changed_is_drawn_again(tmp_path: Path) -> None:
    """Settled verdicts are not drawn again on the next refresh (bytes over SSH); a number
    alone changing in the reasons waits REDRAW_NUMBERS_S; selecting another meter redraws
    the reasons and the phasors at once."""
    from emtui.ui.commission import REDRAW_NUMBERS_S

    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0], live=True)
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        for _ in range(POLLS):
            engine.poll()
            now[0] += 1.0
            screen.refresh_view()
        drawn: list[str] = []
        for part in ("verdict-table", "reasons", "phasors"):
            widget = screen.query_one(f"#{part}", Static)
            original = widget.update

            def spy(content: object = "", *, _part: str = part, _orig: object = original) -> None:
                drawn.append(_part)
                _orig(content)  # type: ignore[operator]

            widget.update = spy  # type: ignore[method-assign]
        engine.poll()
        now[0] += 1.0
        screen.refresh_view()
        assert "verdict-table" not in drawn
        drawn.clear()
        screen._drawn["reasons"] = "something else"  # a number changed in a reason …
        screen._drawn_at["reasons"] = now[0]  # … just after it was drawn
        screen.refresh_view()
        assert "reasons" not in drawn  # drawn less than REDRAW_NUMBERS_S ago
        now[0] += REDRAW_NUMBERS_S
        screen.refresh_view()
        assert "reasons" in drawn
        drawn.clear()
        await pilot.press("right")
        assert {"verdict-table", "reasons", "phasors"} <= set(drawn)


async def test_a_meter_without_values_yet_waits_then_goes_stale(tmp_path: Path) -> None:
    """Meter 3 silent from the start: its column shows .. (no values yet, judged on
    nothing would say no load) and its reasons say it waits; once the first reads have had
    their time it is marked stale, its link failing; the others are judged all along."""
    from emtui.ui.commission import FIRST_SAMPLES_S

    now = [T0]
    engine = ScriptedEngine(reference_config(tmp_path), clock=lambda: now[0], live=True)
    engine.fail(3)
    app = EmtuiApp(engine, config=engine.config, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CommissionScreen)
        for _ in range(3):
            engine.poll()
            now[0] += 1.0
        await pilot.press("right", "right")  # meter 3 selected
        screen.refresh_view()
        assert screen.waiting(3) and not screen.stale(3) and not screen.waiting(1)
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(screen.reasons())
        console.print(screen.verdict_table())
        drawn = console.export_text()
        assert "waiting for its first values" in drawn
        ct_row = next(line.split() for line in drawn.splitlines() if line.startswith("ct_pol"))
        assert ct_row[3] == ".."  # meter 3's column
        while now[0] < T0 + FIRST_SAMPLES_S + 5:
            engine.poll()
            now[0] += 1.0
        screen.refresh_view()
        assert screen.stale(3) and not screen.waiting(3)
        assert screen.report is not None
        assert screen.report.meters[2].get("link").verdict == "fail"
