"""The register maps (and the other data files: the app's style, emtui serve's page) ship
inside the installed package (design §2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_non_editable_install_finds_the_maps_from_another_directory(tmp_path: Path) -> None:
    """pip install . (a wheel, not editable) into a fresh target; run from an unrelated
    directory: both shipped maps load through importlib.resources and `emtui map` works."""
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert (target / "emtui" / "registers" / "em6400ng.toml").is_file()
    assert (target / "emtui" / "ui" / "app.tcss").is_file()
    assert (target / "emtui" / "core" / "report" / "templates" / "report.html.j2").is_file()
    assert (target / "emtui" / "serve" / "templates" / "app_index.html").is_file()
    # every package of the source tree is in the wheel (pyproject lists them one by one)
    for init in (ROOT / "emtui").rglob("__init__.py"):
        package = init.parent.relative_to(ROOT)
        assert (target / package / "__init__.py").is_file(), f"{package} missing from the wheel"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import emtui, sys\n"
        "from emtui.core.maps.registers import builtin_map_names, load_map\n"
        "assert emtui.__file__.startswith(sys.argv[1]), emtui.__file__\n"
        "print(builtin_map_names(), len(load_map('em6400ng')), len(load_map('em6400-legacy')))\n"
        "from emtui.core.report.html import _ENV\n"
        "assert _ENV.get_template('report.html.j2').filename.startswith(sys.argv[1])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['em6400-legacy', 'em6400ng'] 181 33"
    cli = subprocess.run(
        [sys.executable, "-m", "emtui", "map", "em6400-legacy", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and '"name": "em6400-legacy"' in cli.stdout
