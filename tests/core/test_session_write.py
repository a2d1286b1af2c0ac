"""BusSession.write, the app's way to write: refused unless the session allows writes,
audited either way, sent through the session's arbiter."""

from __future__ import annotations

from pathlib import Path

import pytest

from emtui.core.bus.writes import AuditLog, WriteRefused, WriteRequest
from emtui.core.config import Config, apply_overrides
from emtui.core.session import BusSession
from emtui.sim.bus import SimulatedBus


def _config(url: str, tmp_path: Path) -> Config:
    return apply_overrides(Config(), port=url, parity="N", ids=[1], state_dir=tmp_path / "state")


def test_session_write_refused_unless_allowed(tmp_path: Path) -> None:
    """allow_writes False: WriteRefused, nothing of it on the wire, a 'refused' audit line;
    allowed: the meter stores the value and the audit line says ok."""
    with SimulatedBus(ids=[1], line_timing=False, seed=31) as bus:
        url = bus.start_tcp()
        session = BusSession(_config(url, tmp_path))
        session.open_bus()
        try:
            request = WriteRequest(1, 16, 5251, (42,))
            with pytest.raises(WriteRefused):
                session.write(request)
            assert not [f for f in bus.served() if f.function == 16]
            session.allow_writes = True
            result = session.write(request)
            assert result.ok
            assert bus.meters[1].scratch[5251] == 42
        finally:
            session.stop()
    outcomes = [line["outcome"] for line in AuditLog(tmp_path / "state").lines()]
    assert outcomes[0].startswith("refused") and outcomes[1:] == ["ok"]
