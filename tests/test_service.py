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
    assert "--data-dir /var/lib/emtui --state-dir /var/lib/emtui/state" in text
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


def test_upload_command_lists_sends_and_reports_failure(tmp_path: Path) -> None:
    """emtui upload lists the queue; --now sends it to a file:// target and confirms it; with
    the target missing it exits 8 and keeps the file queued."""
    from datetime import date

    from emtui.core.uploadqueue import UploadQueue

    server = tmp_path / "server"
    server.mkdir()
    day_file = tmp_path / "d" / "meter_1" / "meter_1_2026-11-24.csv"
    day_file.parent.mkdir(parents=True)
    day_file.write_text("timestamp,epoch,status\n2026-11-24T10:00:00.000+00:00,1.000,ok\n")
    state = tmp_path / "st"
    UploadQueue(state).enqueue(day_file, 1, date(2026, 11, 24))
    config = tmp_path / "emtui.toml"

    def write_config(target: Path) -> None:
        config.write_text(
            f'[bus]\nport = "/dev/null"\n[upload]\ntarget = "file://{target}"\nsite = "ph1"\n'
        )

    base = ["upload", "--config", str(config), "--state-dir", str(state)]
    write_config(tmp_path / "not-mounted")
    listed = emtui(*base)
    assert listed.returncode == 0 and "meter 1  2026-11-24" in listed.stdout
    failed = emtui(*base, "--now")
    assert failed.returncode == 8
    assert json.loads(emtui(*base, "--json").stdout)["queued"][0]["attempts"] == 1
    write_config(server)
    sent = emtui(*base, "--now", "--json")
    assert sent.returncode == 0, sent.stderr
    doc = json.loads(sent.stdout)
    assert doc["run"]["ok"] is True and doc["queued"] == []
    arrived = server / "ph1" / "meter_1" / "meter_1_2026-11-24.csv"
    assert arrived.read_bytes() == day_file.read_bytes()
    assert day_file.exists()  # kept locally until the retention period has passed
