"""Shared test helpers."""

from __future__ import annotations

import sys
from pathlib import Path

#: The installed ``emtui`` program. Tests never run ``python -m emtui``: from a checkout that
#: would import the source tree, where the register maps are not (they install as the
#: ``emtui.registers`` package), instead of the installed package under test.
EMTUI = [str(Path(sys.executable).with_name("emtui"))]
#: The repository's root (the checkout under test) and the test data folder.
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
