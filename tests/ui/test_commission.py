"""The Commission screen (key c): the checks on the live samples, and the ASCII phasors."""

from __future__ import annotations

from pathlib import Path

from scripted_engine import T0, ScriptedEngine, reference_config

from emtui.core.check.phasor import VOLTAGE_ANGLES, phasor_diagram
from emtui.sim.wiring import parse_wiring
from emtui.ui.app import EmtuiApp
from emtui.ui.commission import CommissionScreen


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
        assert screen.phasor_text().startswith("id 2")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CommissionScreen)
        assert ("c", "Commission", "commission") in app.key_rows()  # listed by ?


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
