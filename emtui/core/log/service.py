"""The boot service: a systemd unit that runs ``emtui --log`` unattended.

The logger must come back after a power cut or a crash and must not run as root: the unit
runs it as a system user in the ``dialout`` group (the group that owns USB serial adapters
on Debian and Raspberry Pi OS), with systemd's StateDirectory providing /var/lib/emtui.
The data and state dirs come from the config file the unit runs with (flags override it), so
``emtui status`` with the same config looks where the service writes.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from emtui.core.config import load_config

UNIT_NAME = "emtui.service"
DEFAULT_USER = "emtui"
DEFAULT_CONFIG = Path("/etc/emtui/config.toml")
DATA_DIR = Path("/var/lib/emtui")
#: systemd's StateDirectory= root: the dirs under it are created for the service user.
STATE_ROOT = Path("/var/lib")
#: A user name systemd and useradd both take (and that cannot break the unit file).
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")


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
        state_dir: the upload queue, status file and lock; None: ``<data_dir>/state`` (the
            service user has no home for the default).
    """

    executable: str
    config: Path = DEFAULT_CONFIG
    user: str = DEFAULT_USER
    data_dir: Path = DATA_DIR
    state_dir: Path | None = None

    @property
    def state(self) -> Path:
        """The state dir the unit passes to the logger."""
        return self.state_dir if self.state_dir is not None else self.data_dir / "state"


def user_problem(user: str) -> str | None:
    """Why ``user`` cannot be the service's account, or None."""
    if not _USER_NAME.fullmatch(user):
        return (
            f"--user {user!r}: not a valid user name — letters, digits, _ and -, starting "
            "with a letter or _, at most 32 characters (e.g. emtui)"
        )
    if user == "root":
        return "--user root: the logger must not run as root — use a system user (e.g. emtui)"
    return None


def options_from(
    executable: str,
    config: Path,
    user: str,
    data_dir: Path | None = None,
    state_dir: Path | None = None,
) -> ServiceOptions:
    """The unit's options: ``data_dir`` and ``state_dir`` from the flags, else the config file,
    else the service defaults; every path absolute (systemd runs the unit from ``/``).

    Raises:
        ConfigError: the config file exists but is invalid.
    """
    config = Path(os.path.abspath(config.expanduser()))
    from_file_data, from_file_state = _dirs_in(config)
    data = data_dir if data_dir is not None else from_file_data
    state = state_dir if state_dir is not None else from_file_state
    return ServiceOptions(
        executable=executable,
        config=config,
        user=user,
        data_dir=_absolute(data) if data is not None else DATA_DIR,
        state_dir=_absolute(state) if state is not None else None,
    )


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


def _dirs_in(config: Path) -> tuple[Path | None, Path | None]:
    """The data_dir and state_dir the config file sets (None for each it leaves out)."""
    if not config.is_file():
        return None, None  # installed before the config: the defaults, and a note
    loaded = load_config(config)  # validates; relative paths are taken from its folder
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    logging = data.get("logging")
    sets_data = isinstance(logging, dict) and "data_dir" in logging
    return (
        loaded.logging.data_dir if sets_data else None,
        loaded.state_dir if "state_dir" in data else None,
    )


def _state_directories(options: ServiceOptions) -> list[str]:
    """The dirs systemd creates for the user (StateDirectory=, relative to /var/lib)."""
    names = []
    for path in (options.data_dir, options.state):
        if path.is_relative_to(STATE_ROOT) and path != STATE_ROOT:
            name = str(path.relative_to(STATE_ROOT))
            if re.fullmatch(r"[A-Za-z0-9_.@/-]+", name) and name not in names:
                names.append(name)
    return names


def outside_dirs(options: ServiceOptions) -> list[Path]:
    """The dirs systemd does not create: ``install`` creates them for the service user."""
    inside = {STATE_ROOT / name for name in _state_directories(options)}
    return [p for p in dict.fromkeys((options.data_dir, options.state)) if p not in inside]


def default_executable() -> str:
    """The absolute path of the ``emtui`` script of this installation."""
    script = Path(sys.executable).with_name("emtui")
    if script.exists():
        return str(script)
    found = shutil.which("emtui")
    return found or f"{sys.executable} -m emtui"


def unit_text(options: ServiceOptions) -> str:
    """The systemd unit file."""
    # The dirs always go on the command line: the service user has no home for the
    # defaults, and `emtui status --config FILE` then finds the same state dir.
    exec_start = (
        f"{options.executable} --log --config {shlex.quote(str(options.config))}"
        f" --data-dir {shlex.quote(str(options.data_dir))}"
        f" --state-dir {shlex.quote(str(options.state))}"
    )
    names = _state_directories(options)
    state_directory = (
        f"# {', '.join(str(STATE_ROOT / n) for n in names)}, owned by the service user.\n"
        f"StateDirectory={' '.join(names)}\nStateDirectoryMode=0750\n"
        if names
        else ""
    )
    # The latest sample per meter for the app (emtui.core.log.livefile): in memory, world-readable.
    state_directory += "RuntimeDirectory=emtui\nRuntimeDirectoryMode=0755\n"
    outside = "".join(
        f"# {path} must be writable by {options.user} (emtui service install creates it).\n"
        for path in outside_dirs(options)
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
# A bad flag (2), map (6) or config (7) does not mend itself: no restart loop; fix and start.
RestartPreventExitStatus=2 6 7
{state_directory}{outside}Environment=PYTHONUNBUFFERED=1
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
    problem = user_problem(options.user)
    if problem is not None:  # before anything is created or written
        raise ServiceError(problem)
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
    for path in outside_dirs(options) if real else []:
        _make_dir_for(path, options.user)
        steps.append(f"created {path} for {options.user}")
    unit_path = root / "etc/systemd/system" / UNIT_NAME
    try:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        unit_path.write_text(unit_text(options))
    except PermissionError:
        raise ServiceError(f"cannot write {unit_path}: run `sudo emtui service install`") from None
    steps.append(f"wrote {unit_path}")
    config_file = root / str(options.config).lstrip("/")
    if not config_file.exists():
        steps.append(
            f"note: {options.config} does not exist yet: copy examples/reference-site.toml "
            "there and edit it (emtui config check --config FILE validates it)"
        )
    if _dirs_in(config_file)[1] != options.state:
        steps.append(
            f'note: {options.config} does not say state_dir = "{options.state}": add it '
            f"there, or `emtui status` looks elsewhere (or give it --state-dir {options.state})"
        )
    if real and run_systemctl:
        _run(["systemctl", "daemon-reload"])
        _run(["systemctl", "enable", "--now", UNIT_NAME])
        steps.append(f"enabled and started {UNIT_NAME}; watch it: journalctl -u emtui -f")
    return steps


def _make_dir_for(path: Path, user: str) -> None:
    """Create ``path`` owned by ``user`` (a dir outside /var/lib that systemd does not make)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        account = pwd.getpwnam(user)
        os.chown(path, account.pw_uid, account.pw_gid)
    except (OSError, KeyError) as exc:
        raise ServiceError(f"cannot create {path} for {user}: {exc}") from None


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise ServiceError(f"{command[0]} not found: is this a systemd machine?") from None
    except subprocess.CalledProcessError as exc:
        message = (exc.stderr or exc.stdout or "").strip()
        hint = " (run with sudo)" if "denied" in message.lower() else ""
        raise ServiceError(f"{' '.join(command)} failed: {message}{hint}") from None
