"""The configuration file: one TOML file with the bus, the meters, logging and upload.

Where it is (:func:`find_config_file`): ``--config PATH``, else ``$EMTUI_CONFIG``, else
``./emtui.toml``, the user config dir (``~/.config/emtui/config.toml``), then
``/etc/emtui/config.toml``. No file at all is fine: ``--port`` and ``--ids`` are enough.

The file::

    state_dir = "/var/lib/emtui/state"      # optional, top level (before any table)

    [bus]                                   # the connection (ConnectionSettings)
    port = "/dev/serial/by-id/usb-FTDI_…-if00-port0"
    baud = 19200
    parity = "E"
    stopbits = 1
    timeout = "auto"                        # or seconds
    retries = 1
    local_echo = false
    gap = 0.0

    [[meters]]                              # one table per meter
    id = 1
    label = "Pump 1"
    map = "em6400ng"                        # a built-in map name or a TOML file
    values = ["frequency"]                  # optional: overrides [logging] values
    [meters.expect]                         # optional: what emtui check compares setup with
    ct_primary = 200                        # (bound to the [[meters]] table above it)

    [logging]
    interval = 1.0
    data_dir = "/var/lib/emtui"
    values = ["active_power_total"]         # optional: default each map's logged set
    fsync_interval = 5.0

    [upload]
    target = "sftp://emtui@central.example.net/srv/meters"
    schedule = "0 14 * * *"
    retention_days = 30
    site = "pumphouse-1"
    key_file = "/etc/emtui/id_ed25519"
    known_hosts = "/etc/emtui/known_hosts"

Relative paths in a file (data_dir, state_dir, key files, map files) are relative to the
file's folder; ``~`` is expanded. Flags override the file (:func:`apply_overrides`).

Errors: every problem is reported as ``FILE: KEY: problem — fix``, the key written as a path
into the file (``bus.parity``, ``meters[2].id`` — meters are counted from 0 in file order,
``upload.schedule``). :func:`parse_config` rejects what is malformed (wrong types, values out
of range, unknown keys, duplicate meter ids) by raising :class:`ConfigError` with every problem
found; :func:`check_config` adds what needs the outside world (maps that must load, value
names that must be in them, key files) and splits errors from warnings.

Credentials are only ever named by file (``upload.key_file``, ``upload.token_file``); this
module never opens those files, and :func:`effective_dict` and :func:`config_check_text` show
their paths only. A target URL carrying a password, a user in an https URL, or a query
string is rejected, so no secret can hide in it.

No Textual, no Rich, and no pymodbus at import time (``config check`` stays fast).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from emtui.core.bus.ids import MAX_ID, MIN_ID
from emtui.core.maps.registers import MapError, RegisterEntry, RegisterMap, load_map
from emtui.core.upload.rules import PLAIN_HTTP_RULE, default_site, plain_http_allowed

if TYPE_CHECKING:
    from emtui.core.bus.link import ConnectionSettings

APP_NAME = "emtui"

ENV_VAR = "EMTUI_CONFIG"
"""Environment variable naming the config file (after ``--config``, before the search)."""

LOCAL_CONFIG_NAME = "emtui.toml"
"""The file looked for in the current directory."""

SYSTEM_CONFIG = Path("/etc/emtui/config.toml")
"""The system-wide file, looked for last."""

SERVICE_DATA_DIR = Path("/var/lib/emtui")
"""The data dir the system service uses (its unit passes ``--data-dir``)."""

SERVICE_STATE_DIR = Path("/var/lib/emtui/state")
"""The state dir the system service uses (its unit passes ``--state-dir``)."""

DEFAULT_MAP = "em6400ng"
"""The register map of a meter that names none."""

DEFAULT_SCHEDULE = "0 14 * * *"
"""Upload once a day at 14:00 local time."""

PORT_MISSING = "does not exist on this machine"
"""The words of the warning for a serial port that is not there (``emtui --log`` leaves it to
the open, which says it with the ports found)."""

SECRET_KEYS = ("upload.key_file", "upload.token_file")
"""Keys whose files hold credentials: shown as paths, never opened by this module."""

UPLOAD_SCHEMES = ("sftp", "https", "file")
"""Upload target schemes (``http`` is accepted for a loopback host only, for testing)."""


class ConfigError(ValueError):
    """A configuration that cannot be used.

    The message has one line per problem, each ``FILE: KEY: problem — fix``; ``errors``
    holds the same lines one by one.
    """

    def __init__(self, errors: str | Sequence[str]) -> None:
        self.errors: tuple[str, ...] = (errors,) if isinstance(errors, str) else tuple(errors)
        super().__init__("\n".join(self.errors))


def default_data_dir() -> Path:
    """Where CSV files go when nothing says otherwise: the user data dir's ``data`` folder."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "data"


def default_state_dir() -> Path:
    """Where the upload queue, status file and lock go by default: the user state dir."""
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def user_config_file() -> Path:
    """The per-user config file, ``<user config dir>/emtui/config.toml``."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


# -- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusConfig:
    """The RS-485 bus (or Modbus gateway) and how to talk on it."""

    port: str | None = None
    """Serial device, ``socket://HOST:PORT`` (RTU over TCP) or ``tcp://HOST:PORT`` (Modbus
    TCP). Prefer a ``/dev/serial/by-id/…`` name: ``/dev/ttyUSB0`` can change after a replug.
    None until a file or ``--port`` gives one."""

    baud: int = 19200
    """Line speed in bit/s; every meter on the bus must use the same."""

    parity: str = "E"
    """``E`` (even), ``O`` (odd) or ``N`` (none)."""

    stopbits: int = 1
    """1 or 2."""

    timeout: float | None = None
    """Fixed reply timeout in seconds; None (``"auto"`` in the file) learns it per meter."""

    retries: int = 1
    """Retries of a failed poll request (a scan never retries)."""

    local_echo: bool = False
    """The adapter echoes its own transmission (2-wire adapters without echo suppression)."""

    gap: float = 0.0
    """Extra silence in seconds before each request, for meters that need one."""

    def settings(self) -> ConnectionSettings:
        """The :class:`~emtui.core.bus.link.ConnectionSettings` these describe.

        Raises:
            ConfigError: no port is configured.
        """
        from emtui.core.bus.link import ConnectionSettings

        if not self.port:
            raise ConfigError(
                "bus.port: no port given — set port in the [bus] table of the config file "
                "or use --port (a /dev/serial/by-id/… name survives reboots)"
            )
        return ConnectionSettings(
            port=self.port,
            baud=self.baud,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=self.timeout,
            retries=self.retries,
            local_echo=self.local_echo,
            gap=self.gap,
        )


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One meter on the bus."""

    id: int
    """Modbus slave id, 1-247, unique on the bus."""

    map: str = DEFAULT_MAP
    """Register map: a built-in name or a TOML file (made absolute when read from a file)."""

    label: str = ""
    """Human name shown in the TUI and status, e.g. ``Pump 1``."""

    values: tuple[str, ...] | None = None
    """Map entry names to log for this meter; None takes ``logging.values``, and when that is
    None too, the map's logged set."""

    expect: tuple[tuple[str, float | int], ...] = ()
    """``[meters.expect]``: expected setup values (``ct_primary = 200`` ...) that
    ``emtui check`` compares the meter's setup registers with, as sorted (key, value) pairs."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """What the logger writes, how often and where."""

    interval: float = 1.0
    """Seconds between polls of the whole bus; rows are aligned to multiples of the interval
    (a 1 s interval polls at every whole second). 0 polls back to back, unaligned."""

    data_dir: Path = field(default_factory=default_data_dir)
    """Folder of the CSV files (``meter_<id>/meter_<id>_<date>.csv``). Default: the user data
    dir's ``data`` folder; the system service uses ``/var/lib/emtui``."""

    values: tuple[str, ...] | None = None
    """Map entry names logged for every meter that does not list its own; None: each map's
    logged set."""

    fsync_interval: float = 5.0
    """Seconds between fsyncs of the CSV files (rows are flushed at once regardless); 0 syncs
    every row, which wears an SD card faster."""


@dataclass(frozen=True, slots=True)
class UploadConfig:
    """Sending finished day files to a central server."""

    target: str | None = None
    """Where to: ``sftp://user@host[:port]/base/path``, ``https://host/base`` or
    ``file:///path``. Files land in ``<base>/<site>/meter_<id>/``. None: no uploads."""

    schedule: str = DEFAULT_SCHEDULE
    """When to upload, a cron expression in local time (default daily at 14:00)."""

    retention_days: int = 30
    """Days local copies of sent files are kept after the server confirmed them; 0 deletes
    them as soon as they are confirmed. Unsent files are never deleted."""

    site: str = field(default_factory=default_site)
    """This site's folder name on the server, so several Pis never collide. Default: the host
    name plus a short stable machine id (``raspberrypi-3f9a1c``; ``config check`` warns to set
    a real name). Letters, digits, ``.``, ``_`` and ``-``."""

    key_file: Path | None = None
    """SFTP private key file (a secret: only its path is ever shown)."""

    known_hosts: Path | None = None
    """SFTP known_hosts file the server's host key is checked against."""

    token_file: Path | None = None
    """File holding the HTTPS bearer token (a secret: only its path is ever shown)."""

    timeout: float = 30.0
    """Seconds a connection or transfer step may take before the attempt is abandoned and
    retried later."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: from a file, defaults and flags."""

    bus: BusConfig = field(default_factory=BusConfig)
    """The bus."""

    meters: tuple[MeterConfig, ...] = ()
    """The meters to poll, in file (or ``--ids``) order."""

    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """What is logged where."""

    upload: UploadConfig = field(default_factory=UploadConfig)
    """Where day files go."""

    state_dir: Path = field(default_factory=default_state_dir)
    """Folder of the upload queue, the status file and the lock. Default: the user state
    dir; the system service uses ``/var/lib/emtui/state``."""

    keys: Mapping[str, str] = field(default_factory=dict)
    """The app's keys remapped: binding id → key(s), e.g. ``toggle_logging = "L"`` (``[keys]``;
    ids in :data:`KEY_BINDING_IDS`, several keys comma-separated)."""

    source: Path | None = None
    """The file this came from; None when no file was read."""

    @property
    def ids(self) -> list[int]:
        """The meters' ids, in order."""
        return [m.id for m in self.meters]

    def meter(self, meter_id: int) -> MeterConfig | None:
        """The meter with ``meter_id``, or None."""
        for meter in self.meters:
            if meter.id == meter_id:
                return meter
        return None

    def values_for(self, meter: MeterConfig) -> tuple[str, ...] | None:
        """The entry names to log for ``meter``; None means its map's logged set."""
        return meter.values if meter.values is not None else self.logging.values

    def entries_for(
        self, meter: MeterConfig, register_map: RegisterMap
    ) -> tuple[RegisterEntry, ...]:
        """The map entries to log for ``meter`` (RegisterMap.select / logged).

        Raises:
            MapError: a configured name is not in the map.
        """
        names = self.values_for(meter)
        return register_map.logged if names is None else register_map.select(names)


# -- finding and loading -------------------------------------------------------------------------


def config_search_path() -> list[Path]:
    """The files looked for when neither ``--config`` nor ``$EMTUI_CONFIG`` names one."""
    return [Path.cwd() / LOCAL_CONFIG_NAME, user_config_file(), SYSTEM_CONFIG]


def find_config_file(
    explicit: str | Path | None,
    env: Mapping[str, str] = os.environ,
    search: Sequence[Path] | None = None,
) -> Path | None:
    """The config file to use, or None when there is none.

    Order: ``explicit`` (``--config``), ``$EMTUI_CONFIG``, then the first existing file of
    ``search`` (default :func:`config_search_path`: ``./emtui.toml``, the user config dir,
    ``/etc/emtui/config.toml``).

    Raises:
        ConfigError: ``explicit`` or ``$EMTUI_CONFIG`` names a file that does not exist.
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"--config {path}: no such file — check the path, or leave --config out to "
                f"use ./{LOCAL_CONFIG_NAME}, {user_config_file()} or {SYSTEM_CONFIG}"
            )
        return path
    from_env = env.get(ENV_VAR, "")
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_VAR}={from_env}: no such file — fix or unset {ENV_VAR}")
        return path
    for candidate in config_search_path() if search is None else search:
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None) -> Config:
    """Read and parse the config file at ``path``; None gives the defaults (no meters).

    Raises:
        ConfigError: the file cannot be read or is invalid (every problem, one per line).
    """
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"{path}: cannot read: {reason} — check the path and its permissions"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}) — save it as UTF-8") from None
    if text.startswith("\ufeff"):  # tomllib would only say "invalid statement" at 1:1
        raise ConfigError(
            f"{path}: starts with a UTF-8 byte-order mark (BOM) — save it as UTF-8 without BOM"
        )
    return parse_config(text, path)


def parse_config(text: str, origin: str | Path = "<config>") -> Config:
    """Parse config TOML ``text``.

    ``origin`` names the text in messages; when it is a :class:`~pathlib.Path` it is also the
    config's ``source`` and relative paths in the text are taken relative to its folder.

    Raises:
        ConfigError: malformed TOML, wrong types, values out of range, unknown keys or
            duplicate meter ids; one line per problem, each naming the key.
    """
    source = origin if isinstance(origin, Path) else None
    reader = _Reader(str(origin), source.absolute().parent if source is not None else None)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{origin}: not valid TOML: {exc} — fix the syntax there (strings need quotes, "
            f"meters are [[meters]] tables)"
        ) from None
    config = reader.read(data, source)
    if reader.errors:
        raise ConfigError(reader.errors)
    return config


# -- flags ---------------------------------------------------------------------------------------


def apply_overrides(
    config: Config,
    *,
    port: str | None = None,
    baud: int | None = None,
    parity: str | None = None,
    stopbits: int | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    local_echo: bool | None = None,
    gap: float | None = None,
    ids: Sequence[int] | None = None,
    map_name: str | None = None,
    interval: float | None = None,
    data_dir: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> Config:
    """``config`` with the flags that were given (not None) put over it.

    ``ids`` replaces the meter list; a meter whose id stays keeps its label, map and values,
    a new one gets the defaults. ``map_name`` then applies to every meter.

    Raises:
        ConfigError: a flag value is out of range; the message names the flag.
    """
    errors: list[str] = []

    def check(flag: str, spec: _Field, value: Any) -> None:
        problem = _run_check(spec, value)
        if problem is not None:
            errors.append(f"command line: {flag}: {problem}")

    bus_changes: dict[str, Any] = {}
    given: dict[str, Any] = {
        "port": port,
        "baud": baud,
        "parity": parity.upper() if isinstance(parity, str) else parity,
        "stopbits": stopbits,
        "timeout": timeout,
        "retries": retries,
        "local_echo": local_echo,
        "gap": gap,
    }
    for name, value in given.items():
        if value is None:
            continue
        spec = _BUS_FIELDS[name]
        check(spec.flag or name, spec, value)
        bus_changes[name] = value

    meters = config.meters
    if ids is not None:
        kept = {m.id: m for m in config.meters}
        new: list[MeterConfig] = []
        seen: set[int] = set()
        for meter_id in ids:
            check("--ids", _METER_FIELDS["id"], meter_id)
            if meter_id in seen:
                continue
            seen.add(meter_id)
            new.append(kept.get(meter_id, MeterConfig(id=meter_id)))
        meters = tuple(new)
    if map_name is not None:
        check("--map", _METER_FIELDS["map"], map_name)
        meters = tuple(replace(m, map=map_name) for m in meters)

    logging_changes: dict[str, Any] = {}
    if interval is not None:
        check("--interval", _LOGGING_FIELDS["interval"], interval)
        logging_changes["interval"] = float(interval)
    if data_dir is not None:
        logging_changes["data_dir"] = Path(data_dir).expanduser()
    new_state_dir = config.state_dir if state_dir is None else Path(state_dir).expanduser()

    if errors:
        raise ConfigError(errors)
    return replace(
        config,
        bus=replace(config.bus, **bus_changes),
        meters=meters,
        logging=replace(config.logging, **logging_changes),
        state_dir=new_state_dir,
    )


# -- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """What :func:`check_config` found."""

    errors: tuple[str, ...] = ()
    """Problems that make the configuration unusable."""

    warnings: tuple[str, ...] = ()
    """Things that work but are probably not meant (or cannot be checked from here)."""

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors


def check_config(config: Config) -> ConfigReport:
    """Check ``config`` against itself and the outside world.

    Errors: any value out of range (again, for configs built in code or changed by flags),
    duplicate meter ids, maps that do not load, value names not in a meter's map, a bad upload
    target or schedule, a key/token/known_hosts path that is not a file.
    Warnings: a key, token or known_hosts file that does not exist here or cannot be read by
    this user (the service user may still read it, or it is provisioned later: uploads fail
    until it is), a secret readable by every user, a ``/dev/ttyUSB*`` port name, a missing
    serial device, no port, no meters, no upload credentials for the scheme.
    The state and data dirs: a file in the way is an error; a dir this user cannot write
    (or create) a warning. A dir that does not exist yet but could be created is fine.
    """
    origin = str(config.source) if config.source is not None else "config"
    errors: list[str] = []
    warnings: list[str] = []

    def error(key: str, problem: str) -> None:
        errors.append(f"{origin}: {key}: {problem}")

    def warn(key: str, problem: str) -> None:
        warnings.append(f"{origin}: {key}: {problem}")

    for key, problem in _field_problems(config):
        error(key, problem)

    # the bus
    if MIN_BAUD <= config.bus.baud <= MAX_BAUD and config.bus.baud not in STANDARD_BAUDS:
        warn("bus.baud", unusual_baud(config.bus.baud))  # out of range is an error above
    port = config.bus.port
    if not port:
        warn("bus.port", "not set — give --port or set port in [bus]")
    elif "://" not in port:
        if re.fullmatch(r"/dev/tty(USB|ACM)\d+", port):
            warn(
                "bus.port",
                f"{port} can change name after a reboot or replug — use its "
                f"/dev/serial/by-id/… name (ls -l /dev/serial/by-id/)",
            )
        if not os.path.exists(port):
            warn("bus.port", f"{port} {PORT_MISSING} — check the adapter")

    # the meters and their values
    if not config.meters:
        warn("meters", "no meters configured — add [[meters]] tables or give --ids")
    first: dict[int, int] = {}
    labels: dict[str, int] = {}
    maps: dict[str, RegisterMap | None] = {}
    for i, meter in enumerate(config.meters):
        key = f"meters[{i}]"
        if meter.id in first:
            error(
                f"{key}.id",
                f"duplicate id {meter.id} (also meters[{first[meter.id]}]) — every meter on "
                f"a bus needs its own id",
            )
        else:
            first[meter.id] = i
        if meter.label:
            if meter.label in labels:
                warn(f"{key}.label", f"{meter.label!r} is also meters[{labels[meter.label]}]")
            else:
                labels[meter.label] = i
        if meter.map not in maps:
            try:
                maps[meter.map] = load_map(meter.map)
            except MapError as exc:
                maps[meter.map] = None
                error(f"{key}.map", f"{exc} — use a built-in map name or a map file")
                continue
        register_map = maps[meter.map]
        if register_map is None:
            continue
        names = config.values_for(meter)
        if names is None:
            if not register_map.logged:
                # the logger would write rows of timestamps and status only
                error(
                    f"{key}.map",
                    f"map {register_map.name!r} marks no entry logged, so meter {meter.id} "
                    f"would log nothing — list the values to log (values = [...], names from "
                    f"`emtui map {meter.map}`) or set logged = true on entries in the map",
                )
            continue
        values_key = f"{key}.values" if meter.values is not None else "logging.values"
        try:
            register_map.select(names)
        except MapError as exc:
            where = "" if meter.values is not None else f" (for {key}, id {meter.id})"
            error(values_key, f"{exc}{where} — use entry names from `emtui map {meter.map}`")

    # upload
    upload = config.upload
    scheme = _scheme(upload.target)
    if upload.target is not None and scheme == "sftp":
        if upload.key_file is None:
            warn(
                "upload.key_file",
                "not set for an sftp target: the service user's default ~/.ssh keys are "
                "used — set key_file to be sure",
            )
        if upload.known_hosts is None:
            warn(
                "upload.known_hosts",
                "not set for an sftp target: the service user's ~/.ssh/known_hosts is "
                "used — set known_hosts to be sure the server is checked",
            )
        if upload.token_file is not None:
            warn("upload.token_file", "is not used by an sftp target")
    if upload.target is not None and upload.site == default_site():
        warn(
            "upload.site",
            f"not set: files go to the default folder {upload.site!r} (host name + machine "
            f'id) — set site to a name for this installation, e.g. site = "pumphouse-1"',
        )
    if upload.target is not None and scheme in ("https", "http"):
        if upload.token_file is None:
            warn("upload.token_file", "not set for an https target: requests carry no token")
        for name in ("key_file", "known_hosts"):
            if getattr(upload, name) is not None:
                warn(f"upload.{name}", "is not used by an https target")
    for name, secret in (("key_file", True), ("token_file", True), ("known_hosts", False)):
        path = getattr(upload, name)
        if path is not None:
            _check_file(f"upload.{name}", path, secret, error, warn)
    _check_dirs(config, error, warn)
    return ConfigReport(tuple(errors), tuple(warnings))


def _check_dirs(
    config: Config, error: Callable[[str, str], None], warn: Callable[[str, str], None]
) -> None:
    """The state and data dirs must be directories this user can write (or create).

    A file in the way is an error (no user could log there); a permission problem is a
    warning, since the check may run as another user than the service.
    """
    from emtui.core.log.runstate import dir_problem, user_name

    dirs = (("state_dir", config.state_dir), ("logging.data_dir", config.logging.data_dir))
    for key, path in dirs:
        problem = dir_problem(path, write=True)
        if problem is None:
            continue
        if problem.anyone:
            error(key, f"{path} {problem.text} — set {key.split('.')[-1]} to a directory path")
        else:
            warn(
                key,
                f"{path} {problem.text} — the logger cannot write there as {user_name()}; "
                "run the check as the service user (sudo -u emtui emtui config check) or "
                "give the directory to that user",
            )


def unusual_baud(baud: int) -> str:
    """The warning for a bit rate that is valid but not a standard one."""
    return (
        f"{baud} bit/s is not a standard rate — meters and adapters usually support only "
        f"{', '.join(str(b) for b in STANDARD_BAUDS)}; check the meter's setting"
    )


def validate_config(config: Config) -> list[str]:
    """The errors :func:`check_config` finds (warnings left out); empty means usable."""
    return list(check_config(config).errors)


def _check_file(
    key: str,
    path: Path,
    secret: bool,
    error: Callable[[str, str], None],
    warn: Callable[[str, str], None],
) -> None:
    """Check a credential file by its metadata only: it is never opened here."""
    try:
        info = path.stat()
    except PermissionError:
        warn(key, f"{path} cannot be checked by this user — run the check as the service user")
        return
    except OSError:
        warn(
            key,
            f"{path} does not exist (or this user cannot see it) — uploads fail until it "
            f"does; create it, or run the check as the service user",
        )
        return
    if not stat.S_ISREG(info.st_mode):
        error(key, f"{path} is not a file — point {key.split('.')[-1]} at a file")
        return
    mode = stat.S_IMODE(info.st_mode)
    if secret and mode & stat.S_IROTH:
        warn(key, f"{path} is readable by every user (mode {mode:04o}) — chmod 600 {path}")
    elif mode & stat.S_IWOTH:
        warn(key, f"{path} is writable by every user (mode {mode:04o}) — chmod o-w {path}")
    if not os.access(path, os.R_OK):
        warn(key, f"{path} is not readable by this user — the service user must be able to")


# -- showing -------------------------------------------------------------------------------------


def effective_dict(config: Config) -> dict[str, Any]:
    """The configuration as a JSON-ready dict (the ``config check --json`` document).

    Paths are strings, unset values null. Credential files appear as paths only (their
    contents are never read); ``secrets`` lists the keys that name such files. The target is
    shown through :func:`redact_target`.
    """
    bus = config.bus
    log = config.logging
    up = config.upload
    return {
        "source": _str_or_none(config.source),
        "state_dir": str(config.state_dir),
        "bus": {
            "port": bus.port,
            "baud": bus.baud,
            "parity": bus.parity,
            "stopbits": bus.stopbits,
            "timeout": bus.timeout,
            "retries": bus.retries,
            "local_echo": bus.local_echo,
            "gap": bus.gap,
        },
        "meters": [
            {
                "id": m.id,
                "label": m.label,
                "map": m.map,
                "values": _list_or_none(m.values),
                "expect": dict(m.expect),
            }
            for m in config.meters
        ],
        "logging": {
            "interval": log.interval,
            "data_dir": str(log.data_dir),
            "values": _list_or_none(log.values),
            "fsync_interval": log.fsync_interval,
        },
        "upload": {
            "target": None if up.target is None else redact_target(up.target),
            "schedule": up.schedule,
            "retention_days": up.retention_days,
            "site": up.site,
            "key_file": _str_or_none(up.key_file),
            "known_hosts": _str_or_none(up.known_hosts),
            "token_file": _str_or_none(up.token_file),
            "timeout": up.timeout,
        },
        "keys": dict(config.keys),
        "secrets": list(SECRET_KEYS),
    }


_NOTES: dict[str, str] = {
    "bus.timeout": "learned from each meter's replies",
    "upload.key_file": "secret: path only, never shown",
    "upload.token_file": "secret: path only, never shown",
}

_UNSET: dict[str, str] = {
    "bus.port": "not set: give --port",
    "bus.timeout": "",
    "logging.values": "not set: each map's logged set",
    "upload.target": "not set: uploads are off",
    "upload.key_file": "not set",
    "upload.known_hosts": "not set",
    "upload.token_file": "not set",
}


def config_check_text(config: Config, errors: Iterable[str], warnings: Iterable[str] = ()) -> str:
    """Human output of ``emtui config check``: the effective config as TOML, then problems.

    The TOML part can be pasted into a config file. Credential files appear as paths only.
    """
    doc = effective_dict(config)
    out: list[str] = ["# emtui effective configuration"]
    if config.source is not None:
        out.append(f"# from {config.source} (command-line flags take precedence)")
    else:
        out.append("# no config file: defaults and command-line flags only")
    out.append(f"state_dir = {_toml(doc['state_dir'])}")

    def table(name: str, values: dict[str, Any], header: str) -> None:
        out.append("")
        out.append(header)
        for key, value in values.items():
            full = f"{name}.{key}"
            if full == "bus.timeout" and value is None:
                out.append(f'timeout = "auto"  # {_NOTES[full]}')
            elif value is None:
                out.append(f"# {key}: {_UNSET.get(full, 'not set')}")
            elif full in _NOTES:
                out.append(f"{key} = {_toml(value)}  # {_NOTES[full]}")
            else:
                out.append(f"{key} = {_toml(value)}")

    table("bus", doc["bus"], "[bus]")
    if not doc["meters"]:
        out.append("")
        out.append("# no meters: add [[meters]] tables or give --ids")
    for meter in doc["meters"]:
        out.append("")
        out.append("[[meters]]")
        for key, value in meter.items():
            if key == "expect":
                continue
            if value is None:
                out.append("# values: not set: logging.values, else the map's logged set")
            else:
                out.append(f"{key} = {_toml(value)}")
        if meter["expect"]:
            out.append("[meters.expect]")
            out.extend(f"{key} = {_toml(value)}" for key, value in meter["expect"].items())
    table("logging", doc["logging"], "[logging]")
    table("upload", doc["upload"], "[upload]")
    if doc["keys"]:
        table("keys", doc["keys"], "[keys]  # the app's keys, by binding id")

    errors = list(errors)
    warnings = list(warnings)
    out.append("")
    out.extend(f"error: {line}" for line in errors)
    out.extend(f"warning: {line}" for line in warnings)
    summary = f"{len(errors)} error(s)" if errors else "config OK"
    if warnings:
        summary += f", {len(warnings)} warning(s)"
    out.append(summary)
    return "\n".join(out) + "\n"


def _toml(value: Any) -> str:
    """A TOML literal for a str, bool, int, float or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _str_or_none(value: Path | None) -> str | None:
    return None if value is None else str(value)


def _list_or_none(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


# -- field specs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    """How one key is read: its TOML type, its range check and its flag."""

    kind: str
    check: Callable[[Any], str | None] | None = None
    flag: str | None = None


def _run_check(spec: _Field, value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        # nan compares false with everything, so a range check alone would let it through
        return f"must be a finite number, not {value!r}"
    if spec.check is None or value is None:
        return None
    try:
        return spec.check(value)
    except TypeError:
        return f"has the wrong type ({type(value).__name__})"


def _between(low: float, high: float, hint: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value < low:
            return f"must be {low:g} or more{hint}, not {value!r}"
        if value > high:
            return f"must be {high:g} or less{hint}, not {value!r}"
        return None

    return check


def _positive(hint: str, high: float | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value <= 0:
            return f"must be more than 0{hint}, not {value!r}"
        if high is not None and value > high:
            return f"must be {high:g} or less{hint}, not {value!r}"
        return None

    return check


def _check_port(value: Any) -> str | None:
    if not value.strip():
        return "must not be empty — give a serial device such as /dev/serial/by-id/…"
    for scheme in ("socket://", "tcp://", "rfc2217://"):
        if value.startswith(scheme):
            host, sep, port_text = value[len(scheme) :].rpartition(":")
            if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                return f"{value!r} must be {scheme}HOST:PORT with a port 1-65535"
    return None


def _check_parity(value: Any) -> str | None:
    if value not in ("E", "O", "N"):
        return f'must be "E", "O" or "N" (even, odd, none), not {value!r}'
    return None


def _check_stopbits(value: Any) -> str | None:
    if value not in (1, 2):
        return f"must be 1 or 2, not {value!r}"
    return None


def _check_id(value: Any) -> str | None:
    if not MIN_ID <= value <= MAX_ID:
        return f"{value!r} is out of range — Modbus ids are {MIN_ID}-{MAX_ID}"
    return None


def _check_nonempty(value: Any) -> str | None:
    if not value.strip():
        return "must not be empty"
    return None


_SITE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_site(value: Any) -> str | None:
    if not _SITE_RE.fullmatch(value):
        return (
            f"{value!r} is not a usable folder name — use letters, digits, '.', '_' or '-' "
            f'(up to 64, starting with a letter or digit), e.g. "pumphouse-1"'
        )
    return None


_TARGET_FORMS = "sftp://user@host[:port]/base/path, https://host/base or file:///path"


def _scheme(target: str | None) -> str:
    return "" if target is None else urllib.parse.urlsplit(target).scheme.lower()


def redact_target(target: str) -> str:
    """``target`` fit to show: a password, a non-sftp user and any query replaced by ``***``.

    A valid target has none of these (they are errors); this guards the messages about
    invalid ones and configs built in code.
    """
    parts = urllib.parse.urlsplit(target)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        if parts.scheme.lower() != "sftp":
            user = "***"
        netloc = f"{user}{':***' if sep else ''}@{hostport}"
    query = "***" if parts.query else ""
    fragment = "***" if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _check_target(value: Any) -> str | None:
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    shown = repr(redact_target(value))
    if parts.password is not None or (scheme != "sftp" and parts.username is not None):
        return (
            f"{shown} must not contain credentials — name a key in upload.key_file (sftp) or "
            f"a token in upload.token_file (https)"
        )
    if parts.query or parts.fragment:
        return (
            f"{shown} must not have a query or fragment — give the base folder only; a "
            f"token goes in upload.token_file"
        )
    try:
        parts.port  # noqa: B018 - parsing it raises ValueError when it is not a number
    except ValueError:
        return f"{shown} has a bad port number — use {_TARGET_FORMS}"
    if scheme == "http" and plain_http_allowed(parts.hostname):
        scheme = "https"  # plain http to this machine, for testing: the uploader agrees
    elif scheme == "http":
        return f"{shown}: {PLAIN_HTTP_RULE}"
    if scheme not in UPLOAD_SCHEMES:
        what = f"scheme {scheme!r}" if scheme else "no scheme"
        return f"{shown} has {what} — use {_TARGET_FORMS}"
    if scheme == "sftp":
        if not parts.username or not parts.hostname:
            return f"{shown} needs a user and a host: sftp://USER@HOST[:PORT]/base/path"
        if not parts.path or parts.path == "/":
            return f"{shown} needs a base folder: sftp://{parts.netloc}/srv/meters"
    elif scheme == "https":
        if not parts.hostname:
            return f"{shown} needs a host: https://HOST/base"
    elif scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return f"{shown} must be an absolute path: file:///srv/meters (three slashes)"
        if parts.path == "/":
            return f"{shown} needs a folder, not the root: file:///srv/meters"
    return None


def _check_schedule(value: Any) -> str | None:
    """Accept what the uploader's :class:`~emtui.core.upload.schedule.Schedule` accepts."""
    from emtui.core.upload.schedule import Schedule

    hint = (
        '— five fields "minute hour day-of-month month day-of-week" in local time (or an '
        'alias such as @daily), e.g. "0 14 * * *" for every day at 14:00'
    )
    if not value.strip():
        return f"must not be empty {hint}"
    try:
        Schedule(value)
    except ValueError:
        return f"{value!r} is not a valid cron expression {hint}"
    return None


STANDARD_BAUDS = (
    300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600
)  # fmt: skip
"""Bit rates serial adapters and meters commonly support; others get a warning."""

MIN_BAUD = 300
"""The lowest bit rate accepted (no RS-485 meter goes slower)."""

MAX_BAUD = 4_000_000
"""The highest bit rate accepted (fast USB adapters top out around 3 Mbit/s)."""

_BUS_FIELDS: dict[str, _Field] = {
    "port": _Field("str", _check_port, "--port"),
    "baud": _Field(
        "int", _between(MIN_BAUD, MAX_BAUD, " bit/s (a bit rate such as 9600 or 19200)"), "--baud"
    ),
    "parity": _Field("parity", _check_parity, "--parity"),
    "stopbits": _Field("int", _check_stopbits, "--stopbits"),
    "timeout": _Field(
        "timeout",
        _positive(' seconds ("auto" in the file, or no --timeout, learns it)', 60.0),
        "--timeout",
    ),
    "retries": _Field("int", _between(0, 10), "--retries"),
    "local_echo": _Field("bool", None, "--local-echo"),
    "gap": _Field("float", _between(0, 10.0, " seconds"), "--gap"),
}

_METER_FIELDS: dict[str, _Field] = {
    "id": _Field("int", _check_id, "--ids"),
    "map": _Field("map", _check_nonempty, "--map"),
    "label": _Field("str"),
    "values": _Field("names"),
    "expect": _Field("expect"),
}

_LOGGING_FIELDS: dict[str, _Field] = {
    "interval": _Field(
        "float", _between(0, 86400.0, " seconds (0 polls back to back)"), "--interval"
    ),
    "data_dir": _Field("path", None, "--data-dir"),
    "values": _Field("names"),
    "fsync_interval": _Field("float", _between(0, 86400.0, " seconds (0 syncs every row)")),
}

_UPLOAD_FIELDS: dict[str, _Field] = {
    "target": _Field("str", _check_target),
    "schedule": _Field("str", _check_schedule),
    "retention_days": _Field("int", _between(0, 36500, " days (0 deletes once confirmed)")),
    "site": _Field("str", _check_site),
    "key_file": _Field("path"),
    "known_hosts": _Field("path"),
    "token_file": _Field("path"),
    "timeout": _Field("float", _positive(" seconds", 3600.0)),
}

_FLAG_FIELDS: dict[str, _Field] = {
    flag: spec
    for spec in (*_BUS_FIELDS.values(), _LOGGING_FIELDS["interval"])
    if (flag := spec.flag) is not None
}


def flag_problem(flag: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the command-line ``flag`` (None: fine).

    The same range checks as the config file's keys (``--timeout`` as ``bus.timeout``), so a
    flag and a key accept exactly the same values; non-finite numbers are always refused.
    """
    return _run_check(_FLAG_FIELDS[flag], value)


_TOP_KEYS = ("state_dir", "bus", "meters", "logging", "upload", "keys")

#: The app's binding ids a ``[keys]`` table may remap (design §11); the app's own bindings use
#: the same ids (a test checks they agree).
KEY_BINDING_IDS: tuple[str, ...] = (
    "overview",
    *(f"meter_{n}" for n in range(1, 10)),
    "scan",
    "raw",
    "traffic",
    "commission",
    "toggle_logging",
    "upload_now",
    "refresh_extras",
    "setup",
    "clock",
    "help",
    "quit",
)
#: One key as Textual names it: a printable character, or a name like ``ctrl+l``, ``f``,
#: ``question_mark``.
_KEY_RE = re.compile(r"(?:(?:ctrl|shift|alt|meta)\+)*(?:[a-z0-9_]+|[!-~])")


def _field_problems(config: Config) -> list[tuple[str, str]]:
    """Range problems of a built config (the checks :func:`parse_config` also makes)."""
    problems: list[tuple[str, str]] = []
    sections: list[tuple[str, object, dict[str, _Field]]] = [
        ("bus", config.bus, _BUS_FIELDS),
        ("logging", config.logging, _LOGGING_FIELDS),
        ("upload", config.upload, _UPLOAD_FIELDS),
    ]
    sections += [(f"meters[{i}]", m, _METER_FIELDS) for i, m in enumerate(config.meters)]
    for prefix, section, specs in sections:
        for name, spec in specs.items():
            problem = _run_check(spec, getattr(section, name))
            if problem is not None:
                problems.append((f"{prefix}.{name}", problem))
    for prefix, names in [("logging.values", config.logging.values)] + [
        (f"meters[{i}].values", m.values) for i, m in enumerate(config.meters)
    ]:
        if names is not None:
            problem = _names_problem(names)
            if problem is not None:
                problems.append((prefix, problem))
    return problems


def _names_problem(names: Sequence[str]) -> str | None:
    if not names:
        return "must list at least one value — or leave it out to log the map's logged set"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return f"lists {', '.join(duplicates)} more than once — list each value once"
    return None


# -- the reader ----------------------------------------------------------------------------------


class _Bad(Exception):
    """A value of the wrong TOML type (the message is the problem)."""


def _show(raw: Any) -> str:
    """A TOML-ish rendering of a raw value for messages."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return json.dumps(raw, ensure_ascii=False)
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    return str(raw)


def _is_int(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


class _Reader:
    """Turns the parsed TOML into a :class:`Config`, collecting every problem found."""

    def __init__(self, origin: str, base_dir: Path | None) -> None:
        self.origin = origin
        self.base_dir = base_dir
        self.errors: list[str] = []

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"{self.origin}: {key}: {problem}")

    def read(self, data: dict[str, Any], source: Path | None) -> Config:
        self._unknown(data, _TOP_KEYS, "", "top-level key or table")
        kwargs: dict[str, Any] = {"source": source}
        if "state_dir" in data:
            value = self._convert("state_dir", _Field("path"), data["state_dir"])
            if value is not None:
                kwargs["state_dir"] = value
        bus = self._table(data, "bus")
        if bus is not None:
            kwargs["bus"] = BusConfig(**self._fields(bus, "bus", _BUS_FIELDS))
        logging = self._table(data, "logging")
        if logging is not None:
            kwargs["logging"] = LoggingConfig(**self._fields(logging, "logging", _LOGGING_FIELDS))
        upload = self._table(data, "upload")
        if upload is not None:
            kwargs["upload"] = UploadConfig(**self._fields(upload, "upload", _UPLOAD_FIELDS))
        kwargs["meters"] = self._meters(data.get("meters"))
        keys = self._table(data, "keys")
        if keys is not None:
            kwargs["keys"] = self._keys(keys)
        return Config(**kwargs)

    def _keys(self, raw: dict[str, Any]) -> dict[str, str]:
        """``[keys]``: binding id → key(s); unknown ids and malformed keys are errors."""
        self._unknown(raw, KEY_BINDING_IDS, "keys.", "binding id")
        keys: dict[str, str] = {}
        for binding_id, value in raw.items():
            if binding_id not in KEY_BINDING_IDS:
                continue
            parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else []
            if not parts or not all(p and _KEY_RE.fullmatch(p) for p in parts):
                self.error(
                    f"keys.{binding_id}",
                    f'must be a key such as "L", "ctrl+l" or "f5" (several: '
                    f'"l,ctrl+l"), not {_show(value)}',
                )
                continue
            keys[binding_id] = ",".join(parts)
        taken: dict[str, str] = {}
        for binding_id, value in keys.items():
            for key in value.split(","):
                if key in taken:
                    self.error(
                        f"keys.{binding_id}",
                        f"{key!r} is already the key of {taken[key]} — give each action its own",
                    )
                taken[key] = binding_id
        return keys

    def _table(self, data: dict[str, Any], name: str) -> dict[str, Any] | None:
        if name not in data:
            return None
        raw = data[name]
        if not isinstance(raw, dict):
            self.error(name, f"must be a table: write [{name}] on its own line, keys below it")
            return None
        return raw

    def _meters(self, raw: Any) -> tuple[MeterConfig, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
            self.error(
                "meters",
                "must be an array of tables: start each meter with [[meters]] (two brackets)",
            )
            return ()
        meters: list[MeterConfig] = []
        first: dict[int, int] = {}
        for i, table in enumerate(raw):
            key = f"meters[{i}]"
            if "id" not in table:
                self.error(f"{key}.id", "missing — every [[meters]] table needs id = 1-247")
                self._fields(table, key, _METER_FIELDS)
                continue
            values = self._fields(table, key, _METER_FIELDS)
            if "id" not in values:
                continue
            meter_id = values["id"]
            if meter_id in first:
                self.error(
                    f"{key}.id",
                    f"duplicate id {meter_id} (also meters[{first[meter_id]}]) — every meter on "
                    f"a bus needs its own id",
                )
                continue
            first[meter_id] = i
            meters.append(MeterConfig(**values))
        return tuple(meters)

    def _fields(self, raw: dict[str, Any], prefix: str, specs: dict[str, _Field]) -> dict[str, Any]:
        self._unknown(raw, tuple(specs), f"{prefix}.", "key")
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            if name not in raw:
                continue
            key = f"{prefix}.{name}"
            value = self._convert(key, spec, raw[name])
            if value is _INVALID:
                continue
            problem = _run_check(spec, value)
            if problem is None and spec.kind == "names":
                problem = _names_problem(value)
            if problem is not None:
                self.error(key, problem)
                continue
            out[name] = value
        return out

    def _unknown(self, raw: dict[str, Any], known: Sequence[str], prefix: str, what: str) -> None:
        for name in raw:
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            fix = f"did you mean {close[0]}?" if close else "remove it"
            self.error(
                f"{prefix}{name}",
                f"unknown {what} — {fix} (known: {', '.join(known)})",
            )

    def _convert(self, key: str, spec: _Field, raw: Any) -> Any:
        try:
            return _convert(spec.kind, raw, self.base_dir)
        except _Bad as exc:
            self.error(key, str(exc))
            return _INVALID


_INVALID: Any = object()


def _expect(raw: Any) -> tuple[tuple[str, float | int], ...]:
    """A ``[meters.expect]`` table as sorted (key, number) pairs; _Bad names the problem."""
    from emtui.core.check.checks import EXPECT_KEYS  # the keys the setup check knows

    if not isinstance(raw, dict):
        raise _Bad(
            "must be a table: write [meters.expect] below its [[meters]] table, then e.g. "
            "ct_primary = 200"
        )
    pairs: list[tuple[str, float | int]] = []
    for key, value in raw.items():
        if key not in EXPECT_KEYS:
            close = difflib.get_close_matches(key, list(EXPECT_KEYS), n=1)
            fix = f"did you mean {close[0]}?" if close else "remove it"
            raise _Bad(f"unknown key {key!r} — {fix} (known: {', '.join(EXPECT_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(f"{key} must be a number, not {_show(value)}")
        if not math.isfinite(value):
            raise _Bad(f"{key} must be a finite number, not {_show(value)}")
        pairs.append((key, value))
    return tuple(sorted(pairs))


def _path(text: str, base_dir: Path | None) -> Path:
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


def _convert(kind: str, raw: Any, base_dir: Path | None) -> Any:
    """``raw`` as the Python value of ``kind``; _Bad says what was wrong."""
    if kind == "int":
        if not _is_int(raw):
            raise _Bad(f"must be an integer, not {_show(raw)}")
        return raw
    if kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Bad(f"must be a number, not {_show(raw)}")
        if not math.isfinite(raw):
            raise _Bad(f"must be a finite number, not {_show(raw)}")
        return float(raw)
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _Bad(f"must be true or false, not {_show(raw)}")
        return raw
    if kind == "timeout":
        if raw == "auto":
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Bad(f'must be seconds or "auto", not {_show(raw)}')
        if not math.isfinite(raw):
            raise _Bad(f'must be a finite number of seconds or "auto", not {_show(raw)}')
        return float(raw)
    if kind == "expect":
        return _expect(raw)
    if kind == "names":
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            raise _Bad(f'must be an array of value names, e.g. ["frequency"], not {_show(raw)}')
        return tuple(raw)
    if not isinstance(raw, str):
        raise _Bad(f"must be a string (in quotes), not {_show(raw)}")
    if kind == "parity":
        return raw.upper()
    if kind == "path":
        if not raw.strip():
            raise _Bad("must not be empty — give a path, or leave the key out")
        return _path(raw, base_dir)
    if kind == "map" and (raw.endswith(".toml") or "/" in raw):
        return str(_path(raw, base_dir))
    return raw
