"""SVG snapshots of the main screens (pytest-textual-snapshot) at 100×30 and 80×24.

Regenerate with ``scripts/screenshots`` (it also rewrites ``screenshots/``), then look at what
changed before committing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from app_scenes import SCENES


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
@pytest.mark.parametrize("scene", sorted(SCENES))
def test_screen(snap_compare: Any, tmp_path: Path, scene: str, size: tuple[int, int]) -> None:
    """The screen looks as its baseline (values, layout, keys in the footer)."""
    app, before = SCENES[scene](tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=before)
