"""The boot service unit and the config check command (issue 3, items 1 and 5)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import EMTUI

from emtui.core.service import ServiceOptions, install, unit_text

ROOT = Path(__file__).resolve().parent.parent


def emtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=60)


def test_unit_runs_the_logger_as_a_dialout_user_and_restarts_on_failure() -> None:
    """The unit starts at boot, restarts on failure and never runs as root."""
    text = unit_text(ServiceOptions(executable="/opt/emtui/bin/emtui", user="pumps"))
    lines = text.splitlines()
    assert "ExecStart=/opt/emtui/bin/emtui --log --config /etc/emtui/config.toml" in text
    assert "--data-dir /var/lib/emtui" in text
    assert "Restart=on-failure" in lines
    assert "User=pumps" in lines and "SupplementaryGroups=dialout" in lines
    assert "WantedBy=multi-user.target" in lines
    assert not any(line.startswith("User=root") for line in lines)


def test_service_print_command() -> None:
    """emtui service print writes the unit with this installation's emtui."""
    result = emtui("service", "print", "--user", "pi")
    assert result.returncode == 0
    assert "User=pi" in result.stdout and " --log " in result.stdout


def test_install_into_a_scratch_root(tmp_path: Path) -> None:
    """install writes the unit under the given root and says what to do about the config."""
    steps = install(ServiceOptions(executable="/usr/bin/emtui"), root=tmp_path)
    unit = tmp_path / "etc/systemd/system/emtui.service"
    assert unit.read_text() == unit_text(ServiceOptions(executable="/usr/bin/emtui"))
    assert any("config.toml does not exist" in s for s in steps)


def test_config_check_of_the_reference_site_example() -> None:
    """emtui config check --config examples/reference-site.toml: valid, four pumps at 19200 8E1,
    upload daily at 14:00; --json carries the effective settings."""
    example = str(ROOT / "examples" / "reference-site.toml")
    result = emtui("config", "check", "--config", example, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["bus"]["baud"] == 19200 and doc["bus"]["parity"] == "E"
    assert [m["id"] for m in doc["meters"]] == [1, 2, 3, 4]
    assert doc["upload"]["schedule"] == "0 14 * * *"
    text = emtui("config", "check", "--config", example, "--port", "/dev/ttyAMA0")
    assert text.returncode == 0 and "/dev/ttyAMA0" in text.stdout


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    """A bad value exits 7 and names the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[bus]\nport = "/dev/ttyUSB0"\nparity = "X"\n')
    result = emtui("config", "check", "--config", str(bad))
    assert result.returncode == 7
    assert "bus.parity" in result.stderr + result.stdout
