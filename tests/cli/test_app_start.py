"""``emtui`` (the app) off a terminal: no connection dialog, the one-line errors scripts rely
on (on a terminal the dialog asks instead: tests/ui/test_connect.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import EMTUI

from emtui.cli.common import ExitCode


def app(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMTUI, *args, "--config", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )


def test_no_port_off_a_terminal_is_a_usage_error(tmp_path: Path) -> None:
    """No port and no terminal: exit 2, one line saying how to give one (no dialog)."""
    (tmp_path / "none.toml").write_text("")
    result = app(tmp_path)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "no port given" in result.stderr and "Traceback" not in result.stderr


def test_missing_port_off_a_terminal_exits_connection(tmp_path: Path) -> None:
    """A configured port that is not there, no terminal: exit 3 naming it (no dialog)."""
    (tmp_path / "none.toml").write_text("")
    result = app(tmp_path, "--port", "/dev/ttyNOPE")
    assert result.returncode == ExitCode.CONNECTION, result.stderr
    assert "/dev/ttyNOPE: no such port" in result.stderr
