"""The core and the simulator never import Textual or Rich (design §2)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "emtui.core.maps.registers",
        "emtui.core.maps.codec",
        "emtui.core.bus.link",
        "emtui.core.bus.arbiter",
        "emtui.core.bus.planner",
        "emtui.core.bus.reader",
        "emtui.core.bus.scanner",
        "emtui.core.config",
        "emtui.core.log.csvfile",
        "emtui.core.log.worker",
        "emtui.core.log.runstate",
        "emtui.core.log.service",
        "emtui.core.upload.queue",
        "emtui.core.upload.run",
        "emtui.core.upload.targets",
        "emtui.cli.unattended",
        "emtui.core.session",
        "emtui.core.observer",
        "emtui.core.log.livefile",
        "emtui.core.maps.display",
        "emtui.core.configedit",
        "emtui.core.check.phasor",
        "emtui.core.report",
        "emtui.sim.bus",
        "emtui.sim.command",
    ],
)
def test_core_module_does_not_import_ui_libraries(module: str) -> None:
    """Importing the module in a fresh interpreter leaves textual and rich unimported."""
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"
