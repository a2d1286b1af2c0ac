"""The boot service: a systemd unit that runs ``emtui --log`` unattended.

The logger must come back after a power cut or a crash and must not run as root: the unit
runs it as a system user in the ``dialout`` group (the group that owns USB serial adapters
on Debian and Raspberry Pi OS), with systemd's StateDirectory providing /var/lib/emtui.
"""

from __future__ import annotations

import grp
import pwd
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "emtui.service"
DEFAULT_USER = "emtui"
DEFAULT_CONFIG = Path("/etc/emtui/config.toml")
DATA_DIR = Path("/var/lib/emtui")


class ServiceError(Exception):
    """The unit cannot be installed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What the unit runs.

    Attributes:
        executable: the ``emtui`` program (an absolute path: systemd has no PATH of yours).
        config: the config file the logger reads.
        user: the account it runs as (created as a system user by ``install`` if missing).
        data_dir: where the CSVs go.
    """

    executable: str
    config: Path = DEFAULT_CONFIG
    user: str = DEFAULT_USER
    data_dir: Path = DATA_DIR


def default_executable() -> str:
    """The absolute path of the ``emtui`` script of this installation."""
    script = Path(sys.executable).with_name("emtui")
    if script.exists():
        return str(script)
    found = shutil.which("emtui")
    return found or f"{sys.executable} -m emtui"


def unit_text(options: ServiceOptions) -> str:
    """The systemd unit file."""
    # The service user has no home: the queue, status file and lock live beside the data.
    state_dir = options.data_dir / "state"
    exec_start = (
        f"{options.executable} --log --config {shlex.quote(str(options.config))}"
        f" --data-dir {shlex.quote(str(options.data_dir))}"
        f" --state-dir {shlex.quote(str(state_dir))}"
    )
    return f"""\
# emtui logger: polls the meters and writes one CSV per meter per day; uploads daily.
# Installed by `emtui service install`. Watch it with: journalctl -u emtui -f
[Unit]
Description=emtui meter logger
Documentation=man:emtui(1)
After=network-online.target time-sync.target
Wants=network-online.target

[Service]
Type=simple
User={options.user}
SupplementaryGroups=dialout
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
# /var/lib/emtui, owned by the service user.
StateDirectory=emtui
StateDirectoryMode=0750
Environment=PYTHONUNBUFFERED=1
# The logger finishes its current row and flushes on SIGTERM.
KillSignal=SIGTERM
TimeoutStopSec=20
NoNewPrivileges=yes
ProtectSystem=full
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def install(
    options: ServiceOptions, root: Path = Path("/"), run_systemctl: bool = True
) -> list[str]:
    """Create the service user if needed, write the unit, enable and start it.

    ``root`` lets tests install into a scratch tree (then no user is created and systemctl is
    not run). Returns the steps taken, for the user to read.
    """
    steps: list[str] = []
    real = root == Path("/")
    if real:
        try:
            pwd.getpwnam(options.user)
        except KeyError:
            _run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--groups",
                    "dialout",
                    options.user,
                ]
            )
            steps.append(f"created system user {options.user} (group dialout)")
        else:
            if options.user not in grp.getgrnam("dialout").gr_mem:
                _run(["usermod", "-aG", "dialout", options.user])
                steps.append(f"added {options.user} to dialout")
    unit_path = root / "etc/systemd/system" / UNIT_NAME
    try:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        unit_path.write_text(unit_text(options))
    except PermissionError:
        raise ServiceError(f"cannot write {unit_path}: run `sudo emtui service install`") from None
    steps.append(f"wrote {unit_path}")
    if not (root / str(options.config).lstrip("/")).exists():
        steps.append(
            f"note: {options.config} does not exist yet: copy examples/reference-site.toml "
            "there and edit it (emtui config check --config FILE validates it)"
        )
    if real and run_systemctl:
        _run(["systemctl", "daemon-reload"])
        _run(["systemctl", "enable", "--now", UNIT_NAME])
        steps.append(f"enabled and started {UNIT_NAME}; watch it: journalctl -u emtui -f")
    return steps


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise ServiceError(f"{command[0]} not found: is this a systemd machine?") from None
    except subprocess.CalledProcessError as exc:
        message = (exc.stderr or exc.stdout or "").strip()
        hint = " (run with sudo)" if "denied" in message.lower() else ""
        raise ServiceError(f"{' '.join(command)} failed: {message}{hint}") from None
