"""emtui.core.setup.commission: the re-address procedure's choices that need a line whose
settings matter (the simulator over socket:// ignores them): here each line setting is
routed to its own simulated bus, so "answers at 8N2 but not at 8N1" is a real condition."""

from __future__ import annotations

from pathlib import Path

import pytest

from emtui.core.bus.arbiter import BusArbiter
from emtui.core.bus.link import ConnectionSettings
from emtui.core.bus.writes import AuditLog
from emtui.core.maps.registers import load_map
from emtui.core.setup import SetupFailed, SetupPlan, SetupReport, commission
from emtui.sim.bus import SimulatedBus


def _run(
    present: ConnectionSettings,
    plan: SetupPlan,
    route: dict[tuple[int, str, int], str],
    tmp_path: Path,
) -> tuple[SetupReport, list[tuple[int, str, int]]]:
    """Run commission with each (baud, parity, stopbits) opened on the URL ``route`` gives
    (an empty bus for any other); returns the report and the settings opened, in order."""
    opened: list[tuple[int, str, int]] = []
    with SimulatedBus(ids=[], line_timing=False) as empty:
        nowhere = empty.start_tcp()

        def open_arbiter(settings: ConnectionSettings) -> BusArbiter:
            key = (settings.baud, settings.parity, settings.stopbits)
            opened.append(key)
            url = route.get(key, nowhere)
            arbiter = BusArbiter(
                ConnectionSettings(url, settings.baud, settings.parity, settings.stopbits,
                                   timeout=0.2),
                lock=False,
            )  # fmt: skip
            return arbiter.start()

        report = commission(
            present,
            plan,
            load_map("em6400ng"),
            AuditLog(tmp_path),
            open_arbiter=open_arbiter,
            confirm=lambda lines: True,
            say=lambda line: None,
            settle=0.5,
        )
    return report, opened


def test_parity_none_is_confirmed_at_8n2_when_8n1_is_silent(tmp_path: Path) -> None:
    """New parity N: the meter is looked for at 8N1 first, then 8N2, and found there; the
    report names 8N2 and the semaphore is released there."""
    with SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=41) as bus:
        url = bus.start_tcp()
        present = ConnectionSettings("socket://present", 9600, "E", 1)
        route = {(9600, "E", 1): url, (19200, "N", 2): url}
        report, opened = _run(present, SetupPlan(1, 5, 19200, "N"), route, tmp_path)
        assert isinstance(report, SetupReport) and report.ok
        assert report.settings is not None and report.settings.stopbits == 2
        # checks at present, duplicate probes at 8N1 and 8N2, the send at present, the
        # search at 8N1 then 8N2, the old place checked at present
        assert opened == [
            (9600, "E", 1), (19200, "N", 1), (19200, "N", 2), (9600, "E", 1),
            (19200, "N", 1), (19200, "N", 2), (9600, "E", 1),
        ]  # fmt: skip
        assert bus.meters[5].commands.semaphore is None


def test_duplicate_at_the_new_settings_only_is_refused(tmp_path: Path) -> None:
    """Another meter at id 5 on the line at 19200 (the new settings), not at 9600: refused
    before any command block; meter 1 untouched."""
    with (
        SimulatedBus(ids=[1], baud=9600, line_timing=False, seed=42) as here,
        SimulatedBus(ids=[5], line_timing=False, seed=43) as there,
    ):
        route = {(9600, "E", 1): here.start_tcp(), (19200, "E", 1): there.start_tcp()}
        present = ConnectionSettings("socket://present", 9600, "E", 1)
        with pytest.raises(SetupFailed, match="duplicate address"):
            _run(present, SetupPlan(1, 5, 19200, "E"), route, tmp_path)
        assert not [f for f in here.served() if f.function == 16]
        assert here.meters[1].device_id == 1
