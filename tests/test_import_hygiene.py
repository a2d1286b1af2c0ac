"""The core and the simulator never import Textual or Rich (design §2)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "emtui.core.registers",
        "emtui.core.codec",
        "emtui.core.link",
        "emtui.core.arbiter",
        "emtui.core.planner",
        "emtui.core.reader",
        "emtui.core.scanner",
        "emtui.core.config",
        "emtui.core.csvlog",
        "emtui.core.logger",
        "emtui.core.runstate",
        "emtui.core.service",
        "emtui.core.uploadqueue",
        "emtui.core.uploadrun",
        "emtui.core.uploaders",
        "emtui.logcommands",
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
