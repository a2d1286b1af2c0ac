"""The boot service unit and the config check command (issue 3, items 1 and 5)."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import EMTUI, ROOT

from emtui.core.log.service import ServiceError, ServiceOptions, install, options_from, unit_text


def emtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=60)


def test_unit_runs_the_logger_as_a_dialout_user_and_restarts_on_failure() -> None:
    """The unit starts at boot, restarts on failure and never runs as root."""
    text = unit_text(ServiceOptions(executable="/opt/emtui/bin/emtui", user="pumps"))
    lines = text.splitlines()
    assert "ExecStart=/opt/emtui/bin/emtui --log --config /etc/emtui/config.toml" in text
    assert "--data-dir /var/lib/emtui --state-dir /var/lib/emtui/state" in text
    assert "Restart=on-failure" in lines
    assert "RestartPreventExitStatus=2 6 7" in lines  # a bad config is not restarted forever
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

    from emtui.core.upload.queue import UploadQueue

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


def _exec_start(unit: str) -> list[str]:
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_service_print_takes_the_dirs_from_the_config_file(tmp_path: Path) -> None:
    """emtui service print --config FILE (a relative path): the unit runs the logger with the
    file's data_dir and state_dir (relative ones taken from the file's folder) and the config
    as an absolute path, so `emtui status --config FILE` looks in the service's state dir."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "emtui.toml").write_text(
        'state_dir = "run/state"\n[bus]\nport = "/dev/null"\n[logging]\ndata_dir = "/srv/meters"\n'
    )
    result = subprocess.run(
        [*EMTUI, "service", "print", "--config", "site/emtui.toml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    argv = _exec_start(result.stdout)
    assert _flag(argv, "--config") == str(site / "emtui.toml")
    assert _flag(argv, "--data-dir") == "/srv/meters"
    assert _flag(argv, "--state-dir") == str(site / "run" / "state")
    status = emtui("status", "--config", str(site / "emtui.toml"), "--json")
    assert json.loads(status.stdout)["state_dir"] == _flag(argv, "--state-dir")


def test_service_flags_override_the_config_file(tmp_path: Path) -> None:
    """--data-dir and --state-dir override the file's; with neither in the file nor on the
    command line the unit keeps /var/lib/emtui and /var/lib/emtui/state (systemd makes them)."""
    config = tmp_path / "c.toml"
    config.write_text('state_dir = "/srv/state"\n[logging]\ndata_dir = "/srv/data"\n')
    result = emtui(
        "service", "print", "--config", str(config), "--data-dir", "/var/lib/emtui/csv",
        "--state-dir", "/var/lib/emtui/st",
    )  # fmt: skip
    argv = _exec_start(result.stdout)
    assert _flag(argv, "--data-dir") == "/var/lib/emtui/csv"
    assert _flag(argv, "--state-dir") == "/var/lib/emtui/st"
    assert "StateDirectory=emtui/csv emtui/st" in result.stdout.splitlines()
    only_data = emtui("service", "print", "--config", str(config), "--data-dir", "/d")
    assert _flag(_exec_start(only_data.stdout), "--state-dir") == "/srv/state"
    bare = tmp_path / "bare.toml"
    bare.write_text('[bus]\nport = "/dev/null"\n')
    plain = _exec_start(emtui("service", "print", "--config", str(bare)).stdout)
    assert _flag(plain, "--data-dir") == "/var/lib/emtui"
    assert _flag(plain, "--state-dir") == "/var/lib/emtui/state"


def test_service_install_writes_the_config_dirs_into_the_unit(tmp_path: Path) -> None:
    """install with a config that sets both dirs: the unit carries them, and no note about
    state_dir; a config without state_dir gets a note saying where status must look."""
    config = tmp_path / "etc/emtui/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'state_dir = "/var/lib/pumps/state"\n[logging]\ndata_dir = "/var/lib/pumps"\n'
    )
    # read from the scratch tree; the unit names the file where the machine will have it
    target = Path("/etc/emtui/config.toml")
    options = replace(options_from("/usr/bin/emtui", config, "emtui"), config=target)
    steps = install(options, root=tmp_path)
    unit = (tmp_path / "etc/systemd/system/emtui.service").read_text()
    argv = _exec_start(unit)
    assert _flag(argv, "--state-dir") == "/var/lib/pumps/state"
    assert "StateDirectory=pumps pumps/state" in unit.splitlines()
    assert not any("state_dir" in step for step in steps)
    config.write_text('[logging]\ndata_dir = "/var/lib/pumps"\n')
    options = replace(options_from("/usr/bin/emtui", config, "emtui"), config=target)
    steps = install(options, root=tmp_path)
    assert any('does not say state_dir = "/var/lib/pumps/state"' in step for step in steps)


BAD_USERS = ["Bad Name", "pi\nExecStartPre=/bin/sh", "-x", "a:b", "root"]


@pytest.mark.parametrize("user", BAD_USERS)
def test_service_rejects_an_invalid_user(user: str, tmp_path: Path) -> None:
    """emtui service print with an invalid user name (or root) exits 2 with one line naming
    it. (`install` checks the name at the same place, before anything; it is tested in
    process below, as a failing `emtui service install` here would change this machine.)"""
    result = subprocess.run(
        [*EMTUI, "service", "print", f"--user={user}", "--config", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("emtui: --user ") and ("valid user name" in line or "root" in line)


@pytest.mark.parametrize("user", BAD_USERS)
def test_install_refuses_an_invalid_user_before_writing(user: str, tmp_path: Path) -> None:
    """install() refuses an invalid user name (or root) before it writes anything."""
    with pytest.raises(ServiceError, match="--user"):
        install(ServiceOptions(executable="/usr/bin/emtui", user=user), root=tmp_path)
    assert list(tmp_path.iterdir()) == []
