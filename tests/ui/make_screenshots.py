"""Write the README's screenshots (``screenshots/*.svg``) from the scripted scenes.

Run by ``scripts/screenshots``, which first regenerates the snapshot baselines: both come from
the same scenes (tests/app_scenes.py), so the README shows what the tests check.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from app_scenes import SCENES
from helpers import ROOT

OUT = ROOT / "screenshots"


async def shoot(name: str, size: tuple[int, int]) -> Path:
    """Bring scene ``name`` on screen at ``size`` and save it as an SVG."""
    with tempfile.TemporaryDirectory() as tmp:
        app, before = SCENES[name](Path(tmp))
        async with app.run_test(size=size) as pilot:
            await before(pilot)
            await pilot.pause()
            path = OUT / f"{name}.svg"
            app.save_screenshot(filename=path.name, path=str(OUT))
    return path


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name in SCENES:
        print(asyncio.run(shoot(name, (100, 30))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
