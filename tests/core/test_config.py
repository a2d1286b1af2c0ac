"""The config file: finding it, reading it, flags over it, checking it, showing it safely."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import ROOT

from emtui.core import config as config_module
from emtui.core.config import (
    BusConfig,
    Config,
    ConfigError,
    LoggingConfig,
    MeterConfig,
    UploadConfig,
    apply_overrides,
    check_config,
    config_check_text,
    effective_dict,
    find_config_file,
    load_config,
    parse_config,
    validate_config,
)
from emtui.core.maps.registers import load_map

REPO = ROOT
EXAMPLE = REPO / "examples" / "reference-site.toml"


def _errors(text: str, tmp_path: Path) -> list[str]:
    """Parse ``text`` from a file in tmp_path and return the error lines (none: [])."""
    path = tmp_path / "emtui.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc) == "\n".join(exc.errors)
        return list(exc.errors)
    return []


def _one_error(text: str, tmp_path: Path) -> str:
    errors = _errors(text, tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'emtui.toml'}: "), errors[0]
    return errors[0]


# -- the example ---------------------------------------------------------------------------------


def test_reference_site_example_loads_as_described() -> None:
    """examples/reference-site.toml describes the reference site: 4 pumps, 19200 8E1, sftp."""
    config = load_config(EXAMPLE)
    assert config.source == EXAMPLE
    assert config.bus.port is not None
    assert config.bus.port.startswith("/dev/serial/by-id/")
    assert (config.bus.baud, config.bus.parity, config.bus.stopbits) == (19200, "E", 1)
    assert config.bus.timeout is None
    assert config.ids == [1, 2, 3, 4]
    assert [m.label for m in config.meters] == ["Pump 1", "Pump 2", "Pump 3", "Pump 4"]
    assert {m.map for m in config.meters} == {"em6400ng"}
    assert config.logging.interval == 1.0
    assert config.logging.data_dir == Path("/var/lib/emtui")
    assert config.state_dir == Path("/var/lib/emtui/state")
    assert config.upload.target == "sftp://emtui@central.example.net/srv/meters"
    assert config.upload.schedule == "0 14 * * *"
    assert config.upload.site == "pumphouse-1"
    assert config.upload.retention_days == 30
    assert config.upload.key_file == Path("/etc/emtui/id_ed25519")
    assert config.upload.known_hosts == Path("/etc/emtui/known_hosts")
    settings = config.bus.settings()
    assert settings.describe().endswith("19200 8E1")


def test_reference_site_example_validates_with_warnings_only() -> None:
    """The example has no errors; key files missing on this machine are warnings.

    Decision: a missing key, token or known_hosts file is a warning, not an error, because
    the check may run as a user who cannot see the service's files, or before the keys are
    provisioned; uploads fail loudly until the file is there.
    """
    config = load_config(EXAMPLE)
    report = check_config(config)
    assert report.errors == ()
    assert validate_config(config) == []
    if not Path("/etc/emtui/id_ed25519").exists():
        assert any("upload.key_file" in w for w in report.warnings)


def test_example_is_not_in_the_repo_root() -> None:
    """No emtui.toml in the repo root: every run from the checkout would pick it up."""
    assert not (REPO / "emtui.toml").exists()


def test_no_file_gives_defaults_without_meters() -> None:
    """load_config(None): defaults, no meters, no port, platformdirs folders, no source."""
    config = load_config(None)
    assert config.meters == ()
    assert config.bus == BusConfig()
    assert config.source is None
    assert config.logging.data_dir == config_module.default_data_dir()
    assert config.logging.data_dir.name == "data"
    assert config.state_dir == config_module.default_state_dir()
    assert config.upload.target is None
    with pytest.raises(ConfigError, match=r"bus\.port.*--port"):
        config.bus.settings()


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    """data_dir, key files and map files given relative resolve against the file's folder."""
    path = tmp_path / "site" / "emtui.toml"
    path.parent.mkdir()
    path.write_text(
        'state_dir = "state"\n[logging]\ndata_dir = "data"\n'
        '[upload]\ntoken_file = "token"\n[[meters]]\nid = 1\nmap = "maps/mine.toml"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.logging.data_dir == tmp_path / "site" / "data"
    assert config.state_dir == tmp_path / "site" / "state"
    assert config.upload.token_file == tmp_path / "site" / "token"
    assert config.meters[0].map == str(tmp_path / "site" / "maps" / "mine.toml")


# -- finding the file ----------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A working dir, a user config home and a fake /etc, all under tmp_path."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMTUI_CONFIG", raising=False)
    system = tmp_path / "etc" / "emtui" / "config.toml"
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    user = tmp_path / "xdg" / "emtui" / "config.toml"
    return {"cwd": cwd / "emtui.toml", "user": user, "system": system, "tmp": tmp_path}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    return path


def test_search_order_is_local_user_system(places: dict[str, Path]) -> None:
    """The search path: ./emtui.toml, the user config dir, /etc/emtui/config.toml."""
    assert config_module.config_search_path() == [
        places["cwd"],
        places["user"],
        places["system"],
    ]
    assert config_module.user_config_file() == places["user"]


def test_find_config_file_precedence(places: dict[str, Path]) -> None:
    """--config beats EMTUI_CONFIG beats ./emtui.toml beats user config beats /etc."""
    env: dict[str, str] = {}
    assert find_config_file(None, env) is None
    _touch(places["system"])
    assert find_config_file(None, env) == places["system"]
    _touch(places["user"])
    assert find_config_file(None, env) == places["user"]
    _touch(places["cwd"])
    assert find_config_file(None, env) == places["cwd"]
    from_env = _touch(places["tmp"] / "env.toml")
    env["EMTUI_CONFIG"] = str(from_env)
    assert find_config_file(None, env) == from_env
    explicit = _touch(places["tmp"] / "explicit.toml")
    assert find_config_file(explicit, env) == explicit
    assert find_config_file(str(explicit), env) == explicit


def test_find_config_file_reads_os_environ_by_default(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an env argument, EMTUI_CONFIG is taken from the process environment."""
    from_env = _touch(places["tmp"] / "env.toml")
    monkeypatch.setenv("EMTUI_CONFIG", str(from_env))
    assert find_config_file(None) == from_env


def test_named_config_that_does_not_exist_is_an_error(places: dict[str, Path]) -> None:
    """A missing --config or EMTUI_CONFIG file is an error naming the flag or variable."""
    _touch(places["cwd"])  # present, but an explicit name must not fall back to it
    with pytest.raises(ConfigError, match=r"--config .*nope\.toml: no such file"):
        find_config_file(places["tmp"] / "nope.toml", {})
    with pytest.raises(ConfigError, match=r"EMTUI_CONFIG=.*gone\.toml: no such file"):
        find_config_file(None, {"EMTUI_CONFIG": str(places["tmp"] / "gone.toml")})


# -- flags ---------------------------------------------------------------------------------------


def test_flags_override_the_file() -> None:
    """Every given flag replaces the file's value; flags left at None change nothing."""
    config = load_config(EXAMPLE)
    assert apply_overrides(config) == config
    changed = apply_overrides(
        config,
        port="/dev/ttyUSB1",
        baud=9600,
        parity="o",
        stopbits=2,
        timeout=0.25,
        retries=0,
        local_echo=True,
        gap=0.01,
        interval=0.0,
        data_dir="/tmp/emtui-data",
        state_dir="/tmp/emtui-state",
    )
    assert changed.bus == BusConfig(
        port="/dev/ttyUSB1",
        baud=9600,
        parity="O",
        stopbits=2,
        timeout=0.25,
        retries=0,
        local_echo=True,
        gap=0.01,
    )
    assert changed.logging.interval == 0.0
    assert changed.logging.data_dir == Path("/tmp/emtui-data")
    assert changed.state_dir == Path("/tmp/emtui-state")
    assert changed.meters == config.meters
    assert changed.upload == config.upload


def test_ids_flag_replaces_meters_keeping_labels() -> None:
    """--ids replaces the meter list; ids that stay keep their label, new ones get none."""
    config = load_config(EXAMPLE)
    changed = apply_overrides(config, ids=[4, 2, 9, 2])
    assert changed.ids == [4, 2, 9]
    assert [m.label for m in changed.meters] == ["Pump 4", "Pump 2", ""]
    assert changed.meters[2] == MeterConfig(id=9)


def test_map_flag_applies_to_every_meter() -> None:
    """--map sets the map of every meter, including ones --ids added."""
    changed = apply_overrides(load_config(EXAMPLE), ids=[1, 7], map_name="em6400-legacy")
    assert [m.map for m in changed.meters] == ["em6400-legacy", "em6400-legacy"]


def test_port_and_ids_alone_need_no_file() -> None:
    """--port and --ids on the defaults give a usable config."""
    config = apply_overrides(load_config(None), port="/dev/ttyUSB0", ids=[1, 2, 3, 4])
    assert config.ids == [1, 2, 3, 4]
    assert config.bus.settings().port == "/dev/ttyUSB0"
    assert validate_config(config) == []


def test_bad_flags_name_the_flag() -> None:
    """Out-of-range flag values raise one ConfigError naming each flag."""
    with pytest.raises(ConfigError) as caught:
        apply_overrides(
            Config(), baud=0, parity="X", stopbits=3, ids=[0], interval=-1, port="", gap=-1
        )
    message = str(caught.value)
    for flag in ("--baud", "--parity", "--stopbits", "--ids", "--interval", "--port", "--gap"):
        assert f"command line: {flag}: " in message, flag
    assert len(caught.value.errors) == 7


# -- errors --------------------------------------------------------------------------------------

BASE = '[bus]\nport = "/dev/ttyUSB0"\n'


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[bus]\nparity = "X"\n', "bus.parity", '"E", "O" or "N"'),
        ("[bus]\nbaud = 0\n", "bus.baud", "300 or more"),
        ('[bus]\nbaud = "19200"\n', "bus.baud", "must be an integer"),
        ("[bus]\nstopbits = 3\n", "bus.stopbits", "1 or 2"),
        ("[bus]\ntimeout = -1\n", "bus.timeout", '"auto"'),
        ('[bus]\ntimeout = "fast"\n', "bus.timeout", '"auto"'),
        ("[bus]\nretries = -1\n", "bus.retries", "0 or more"),
        ('[bus]\nlocal_echo = "yes"\n', "bus.local_echo", "true or false"),
        ("[bus]\ngap = -0.1\n", "bus.gap", "0 or more"),
        ('[bus]\nport = "tcp://gateway"\n', "bus.port", "HOST:PORT"),
        ("[[meters]]\nid = 1\n[[meters]]\nid = 0\n", "meters[1].id", "1-247"),
        ("[[meters]]\nid = 248\n", "meters[0].id", "1-247"),
        ('[[meters]]\nid = "1"\n', "meters[0].id", "integer"),
        ('[[meters]]\nlabel = "Pump 1"\n', "meters[0].id", "missing"),
        ("[[meters]]\nid = 1\nlabel = 5\n", "meters[0].label", "string"),
        ('[[meters]]\nid = 1\nvalues = "frequency"\n', "meters[0].values", "array"),
        ("[[meters]]\nid = 1\nvalues = []\n", "meters[0].values", "at least one"),
        ("[meters]\nid = 1\n", "meters", "[[meters]]"),
        ("[logging]\ninterval = -1\n", "logging.interval", "0 or more"),
        ('[logging]\nvalues = ["a", "a"]\n', "logging.values", "more than once"),
        ('[logging]\ndata_dir = ""\n', "logging.data_dir", "empty"),
        ("[logging]\nfsync_interval = -5\n", "logging.fsync_interval", "0 or more"),
        ('[upload]\ntarget = "ftp://host/x"\n', "upload.target", "scheme 'ftp'"),
        ('[upload]\ntarget = "central.example.net"\n', "upload.target", "no scheme"),
        ('[upload]\ntarget = "http://central.example.net/x"\n', "upload.target", "https://"),
        ('[upload]\ntarget = "sftp://u:pw@host/x"\n', "upload.target", "credentials"),
        ('[upload]\ntarget = "https://u@host/x"\n', "upload.target", "credentials"),
        ('[upload]\ntarget = "https://host/x?token=1"\n', "upload.target", "query"),
        ('[upload]\ntarget = "sftp://host/x"\n', "upload.target", "user"),
        ('[upload]\ntarget = "sftp://u@host"\n', "upload.target", "base folder"),
        ('[upload]\ntarget = "sftp://u@host:99999/x"\n', "upload.target", "port"),
        ('[upload]\ntarget = "file://srv/meters"\n', "upload.target", "file:///"),
        ('[upload]\nschedule = "0 25 * * *"\n', "upload.schedule", "cron"),
        ('[upload]\nschedule = "every day"\n', "upload.schedule", "cron"),
        ('[upload]\nschedule = "0 0 14 * * *"\n', "upload.schedule", "five fields"),
        ("[upload]\nretention_days = -1\n", "upload.retention_days", "0 or more"),
        ('[upload]\nsite = "pump house/1"\n', "upload.site", "folder name"),
        ("[upload]\ntimeout = 0\n", "upload.timeout", "more than 0"),
        ("[upload]\nkey_file = 5\n", "upload.key_file", "string"),
        ("state_dir = 1\n", "state_dir", "string"),
        ('bus = "x"\n', "bus", "must be a table"),
    ],
)
def test_every_error_names_the_file_and_key(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    """Each malformed value gives one error: FILE: KEY: problem, with a hint at the fix."""
    error = _one_error(text, tmp_path)
    assert f": {key}: " in error, error
    assert words in error, error


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    """Several problems in one file all come back, one line each."""
    errors = _errors('[bus]\nbaud = 0\nparity = "X"\n[logging]\ninterval = -1\n', tmp_path)
    assert len(errors) == 3
    assert [e.split(": ")[1] for e in errors] == ["bus.baud", "bus.parity", "logging.interval"]


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    error = _one_error("[bus]\nport = /dev/ttyUSB0\n", tmp_path)
    assert "not valid TOML" in error
    assert "line 2" in error


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    """A config path that is a folder cannot be read: the error names it."""
    with pytest.raises(ConfigError, match=r"cannot read"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ("[bus]\nbuad = 9600\n", "bus.buad", "did you mean baud?"),
        ("[[meters]]\nid = 1\nlable = 'x'\n", "meters[0].lable", "did you mean label?"),
        ("[logging]\nintervall = 2\n", "logging.intervall", "did you mean interval?"),
        ("[upload]\npassword = 'x'\n", "upload.password", "remove it"),
        ("[meter]\nid = 1\n", "meter", "did you mean meters?"),
        ("port = '/dev/ttyUSB0'\n", "port", "remove it"),
    ],
)
def test_unknown_keys_are_rejected(tmp_path: Path, text: str, key: str, suggestion: str) -> None:
    """A typo'd or unknown key is an error naming it, with the likely key or 'remove it'."""
    error = _one_error(text, tmp_path)
    assert f": {key}: unknown" in error, error
    assert suggestion in error, error


def test_duplicate_meter_ids_are_rejected(tmp_path: Path) -> None:
    """Two meters with one id: the second is named, and the first is pointed at."""
    error = _one_error(
        BASE + "[[meters]]\nid = 3\n[[meters]]\nid = 4\n[[meters]]\nid = 3\n", tmp_path
    )
    assert ": meters[2].id: duplicate id 3 (also meters[0])" in error


def test_duplicate_ids_in_a_built_config_are_errors() -> None:
    """check_config also catches duplicate ids in a config built in code."""
    config = Config(meters=(MeterConfig(id=1), MeterConfig(id=1)))
    assert any("meters[1].id: duplicate id 1" in e for e in validate_config(config))


def test_unknown_map_is_an_error() -> None:
    """A meter whose map does not load is an error on meters[N].map."""
    config = Config(bus=BusConfig(port="socket://h:1"), meters=(MeterConfig(id=1, map="nope"),))
    errors = validate_config(config)
    assert len(errors) == 1
    assert "meters[0].map" in errors[0]
    assert "unknown map 'nope'" in errors[0]


def test_values_must_be_in_the_map() -> None:
    """Values not in a meter's map are errors on the key that listed them."""
    own = Config(meters=(MeterConfig(id=1, values=("frequency", "bogus")),))
    errors = validate_config(own)
    assert len(errors) == 1
    assert "meters[0].values" in errors[0]
    assert "bogus" in errors[0]
    shared = Config(
        logging=LoggingConfig(values=("current_n",)),
        meters=(MeterConfig(id=1), MeterConfig(id=2, map="em6400-legacy")),
    )
    errors = validate_config(shared)
    assert len(errors) == 1
    assert "logging.values" in errors[0]
    assert "meters[1]" in errors[0]


def test_values_resolution() -> None:
    """A meter's own values beat logging.values, which beats the map's logged set."""
    ng = load_map("em6400ng")
    config = Config(
        logging=LoggingConfig(values=("frequency",)),
        meters=(MeterConfig(id=1), MeterConfig(id=2, values=("current_a", "current_b"))),
    )
    assert [e.name for e in config.entries_for(config.meters[0], ng)] == ["frequency"]
    assert [e.name for e in config.entries_for(config.meters[1], ng)] == ["current_a", "current_b"]
    plain = Config(meters=(MeterConfig(id=1),))
    assert plain.entries_for(plain.meters[0], ng) == ng.logged


def test_range_errors_in_a_built_config() -> None:
    """check_config re-checks ranges, so a config built in code is held to the same rules."""
    config = Config(
        bus=BusConfig(port="/dev/x", parity="Q"),
        upload=UploadConfig(target="gopher://x", schedule="nope", site="a/b"),
    )
    errors = "\n".join(validate_config(config))
    for key in ("bus.parity", "upload.target", "upload.schedule", "upload.site"):
        assert f"config: {key}: " in errors, key


def test_unstable_port_name_is_a_warning() -> None:
    """/dev/ttyUSB0 works but gets a warning recommending /dev/serial/by-id/."""
    report = check_config(Config(bus=BusConfig(port="/dev/ttyUSB0")))
    assert report.ok
    assert any("bus.port" in w and "/dev/serial/by-id/" in w for w in report.warnings)


def test_credential_file_checks(tmp_path: Path) -> None:
    """A world-readable token warns; a folder as key_file is an error; a 600 file is fine."""
    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    token.chmod(0o644)
    config = Config(upload=UploadConfig(target="https://h/base", token_file=token))
    report = check_config(config)
    assert report.ok
    assert any("upload.token_file" in w and "chmod 600" in w for w in report.warnings)
    token.chmod(0o600)
    assert not any("upload.token_file" in w for w in check_config(config).warnings)
    folder = Config(upload=UploadConfig(target="sftp://u@h/x", key_file=tmp_path))
    assert any("upload.key_file" in e and "not a file" in e for e in validate_config(folder))


def test_world_readable_secret_warns_even_as_root(tmp_path: Path) -> None:
    """The mode check needs no permissions: a 644 key file warns for any user."""
    key = tmp_path / "id_ed25519"
    key.write_text("PRIVATE\n", encoding="utf-8")
    key.chmod(0o644)
    report = check_config(Config(upload=UploadConfig(target="sftp://u@h/x", key_file=key)))
    assert any("upload.key_file" in w and "readable by every user" in w for w in report.warnings)


def test_loopback_http_target_is_accepted() -> None:
    """http:// is allowed to localhost only (uploader tests); https and file pass."""
    for target in ("http://127.0.0.1:8080/up", "https://central/base", "file:///srv/meters"):
        assert validate_config(Config(upload=UploadConfig(target=target))) == [], target


# -- secrets and output --------------------------------------------------------------------------


def test_secrets_never_appear_in_output(tmp_path: Path) -> None:
    """A token file's contents are in neither effective_dict nor config_check_text."""
    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    token.chmod(0o600)
    key = tmp_path / "key"
    key.write_text("-----BEGIN s3cret KEY-----\n", encoding="utf-8")
    key.chmod(0o600)
    path = tmp_path / "emtui.toml"
    path.write_text(
        '[upload]\ntarget = "https://central.example.net/meters"\n'
        f'token_file = "{token}"\nkey_file = "{key}"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    report = check_config(config)
    document = json.dumps(effective_dict(config))
    text = config_check_text(config, report.errors, report.warnings)
    for output in (document, text, repr(config), "\n".join(report.warnings)):
        assert "s3cret" not in output
    assert str(token) in document and str(token) in text
    assert effective_dict(config)["secrets"] == ["upload.key_file", "upload.token_file"]
    assert f'token_file = "{token}"  # secret' in text


@pytest.mark.parametrize(
    "target",
    [
        "sftp://u:hunter2@host:99999/x",
        "ftp://u:hunter2@host/x",
        "https://hunter2@host/x",
        "https://host/x?token=hunter2",
        "gopher://hunter2@host/x",
    ],
)
def test_credentials_in_a_target_are_never_echoed(tmp_path: Path, target: str) -> None:
    """A target carrying a password, a token user or a query is rejected without echoing it."""
    error = _one_error(f'[upload]\ntarget = "{target}"\n', tmp_path)
    assert ": upload.target: " in error
    assert "hunter2" not in error
    built = Config(upload=UploadConfig(target=target))
    assert "hunter2" not in "\n".join(validate_config(built))
    assert "hunter2" not in json.dumps(effective_dict(built))


def test_effective_dict_is_json_ready() -> None:
    """effective_dict has the config's sections, plain JSON types, and round-trips json."""
    document = effective_dict(load_config(EXAMPLE))
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    sections = {"source", "state_dir", "bus", "meters", "logging", "upload", "keys", "secrets"}
    assert set(document) == sections
    assert document["meters"][0] == {
        "id": 1,
        "label": "Pump 1",
        "map": "em6400ng",
        "values": None,
        "expect": {},
    }
    assert document["bus"]["timeout"] is None
    assert document["logging"]["data_dir"] == "/var/lib/emtui"


def test_check_text_is_toml_that_loads_back(tmp_path: Path) -> None:
    """The TOML part of config_check_text parses back to the same config."""
    config = load_config(EXAMPLE)
    text = config_check_text(config, [], [])
    assert text.endswith("\nconfig OK\n")
    back = parse_config(text.rsplit("\nconfig OK", 1)[0], tmp_path / "emtui.toml")
    assert replace(back, source=None) == replace(config, source=None)


def test_check_text_lists_errors_and_warnings() -> None:
    """Errors and warnings follow the config, one per line, with a count at the end."""
    text = config_check_text(Config(), ["f: bus.baud: bad"], ["f: bus.port: not set"])
    assert "error: f: bus.baud: bad\n" in text
    assert "warning: f: bus.port: not set\n" in text
    assert text.rstrip().endswith("1 error(s), 1 warning(s)")
    assert "# no meters" in text
    assert "# no config file" in text


def test_config_module_does_not_import_ui_or_wire_libraries() -> None:
    """Importing emtui.core.config loads no Textual, Rich or pymodbus (config check is fast)."""
    code = (
        "import sys, emtui.core.config\n"
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('textual', 'rich', 'pymodbus'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# -- the upload site -----------------------------------------------------------------------------


def test_default_site_is_the_host_name_plus_a_stable_machine_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Pis both called raspberrypi get different default sites; one Pi always the same;
    the machine id is hashed (never shown) and odd host names still give a usable folder."""
    from emtui.core.upload.rules import default_site, machine_id

    one = default_site("raspberrypi", "0123456789abcdef0123456789abcdef")
    assert re.fullmatch(r"raspberrypi-[0-9a-f]{6}", one)
    assert one == default_site("raspberrypi", "0123456789abcdef0123456789abcdef")
    assert one != default_site("raspberrypi", "fedcba9876543210fedcba9876543210")
    assert "0123456789ab" not in one  # hashed, not shown
    for host in ("Pump House #1.local", "x" * 100, ""):
        site = default_site(host, "id")
        assert config_module._check_site(site) is None, site
    assert UploadConfig().site == default_site()
    from emtui.core.upload import rules as uploadtarget

    monkeypatch.setattr(uploadtarget, "machine_id", lambda: None)
    assert default_site("pi") == "pi"  # no id at all: the host name (config check warns)
    # Where the id comes from: machine-id, else a Pi's CPU serial; an empty one is skipped.
    ids, cpuinfo = tmp_path / "machine-id", tmp_path / "cpuinfo"
    ids.write_text("\n")
    cpuinfo.write_text("processor\t: 0\nSerial\t\t: 10000000abcdef01\n")
    assert machine_id((ids,), cpuinfo) == "serial:10000000abcdef01"
    ids.write_text("5f1e2d3c4b5a69788796a5b4c3d2e1f0\n")
    assert machine_id((ids,), cpuinfo) == "5f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_config_check_warns_when_site_is_not_set() -> None:
    """With an upload target and no site, config check warns and names the default folder;
    a site that is set gives no such warning."""
    from emtui.core.upload.rules import default_site

    unset = check_config(Config(upload=UploadConfig(target="file:///srv/meters")))
    [warning] = [w for w in unset.warnings if "upload.site" in w]
    assert "not set" in warning and default_site() in warning
    named = check_config(Config(upload=UploadConfig(target="file:///srv/meters", site="ph-1")))
    assert not any("upload.site" in w for w in named.warnings)
    assert not any("upload.site" in w for w in check_config(Config()).warnings)  # no uploads


FLOAT_KEYS = [
    ("bus", "timeout"),
    ("bus", "gap"),
    ("logging", "interval"),
    ("logging", "fsync_interval"),
    ("upload", "timeout"),
]


@pytest.mark.parametrize("value", ["nan", "+nan", "inf", "-inf"])
@pytest.mark.parametrize(("table", "key"), FLOAT_KEYS, ids=lambda v: str(v))
def test_non_finite_numbers_are_refused_in_every_float_key(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    """TOML allows nan and inf; no numeric key accepts them (nan passed every range check:
    timeout = nan made every row a timeout, interval = nan crashed the logger)."""
    (error,) = _errors(f"[{table}]\n{key} = {value}\n", tmp_path)
    assert f": {table}.{key}: must be a finite number" in error


@pytest.mark.parametrize(
    ("override", "flag"),
    [
        ({"timeout": float("nan")}, "--timeout"),
        ({"gap": float("inf")}, "--gap"),
        ({"interval": float("nan")}, "--interval"),
        ({"timeout": 1e300}, "--timeout"),
        ({"interval": 1e300}, "--interval"),
    ],
)
def test_overrides_refuse_non_finite_and_huge_numbers(
    override: dict[str, float], flag: str
) -> None:
    """apply_overrides (configs built in code, flags) runs the same finite and range checks;
    1e300 s would overflow the waits it ends up in."""
    with pytest.raises(ConfigError, match=f"command line: {flag}: "):
        apply_overrides(Config(), **override)  # type: ignore[arg-type]


def test_built_config_with_nan_fails_check_config() -> None:
    """A Config built in code with nan is caught by check_config too."""
    report = check_config(replace(Config(), bus=BusConfig(timeout=float("nan"))))
    assert any("bus.timeout: must be a finite number" in e for e in report.errors)


@pytest.mark.parametrize(
    ("baud", "error", "warning"),
    [(110, True, False), (299, True, False), (300, False, False), (1234, False, True),
     (19200, False, False), (5_000_000, True, False)],
)  # fmt: skip
def test_baud_range_and_unusual_rates(baud: int, error: bool, warning: bool) -> None:
    """Bauds below 300 (or absurdly high) are errors; valid but non-standard ones warn."""
    report = check_config(replace(Config(), bus=BusConfig(port="/dev/null", baud=baud)))
    assert any("bus.baud" in e for e in report.errors) is error
    assert any("bus.baud" in w and "not a standard rate" in w for w in report.warnings) is warning


def test_a_map_that_logs_nothing_is_a_config_error(tmp_path: Path) -> None:
    """A meter whose map marks nothing logged (and no values): check_config says it would log
    nothing; naming values fixes it."""
    map_file = tmp_path / "nolog.toml"
    map_file.write_text('[map]\nname = "nolog"\n[[register]]\nname = "v"\nregister = 1\n'
                        'type = "uint16"\n', encoding="utf-8")  # fmt: skip
    config = replace(Config(), meters=(MeterConfig(id=2, map=str(map_file)),))
    (error,) = check_config(config).errors
    assert "meters[0].map" in error and "would log nothing" in error
    fixed = replace(config, meters=(MeterConfig(id=2, map=str(map_file), values=("v",)),))
    assert check_config(fixed).ok


def test_a_config_file_with_a_bom_says_so(tmp_path: Path) -> None:
    """A BOM (Windows editors) is named instead of TOML's 'invalid statement'."""
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbf[bus]\nbaud = 9600\n")
    with pytest.raises(ConfigError, match="byte-order mark"):
        load_config(path)


# -- the app's keys ------------------------------------------------------------------------------


def test_keys_table_remaps_the_apps_bindings(tmp_path: Path) -> None:
    """[keys] maps binding ids to keys; config check shows them."""
    path = tmp_path / "c.toml"
    path.write_text('[keys]\ntoggle_logging = "L"\nscan = "ctrl+s, f2"\n')
    config = load_config(path)
    assert dict(config.keys) == {"toggle_logging": "L", "scan": "ctrl+s,f2"}
    assert "[keys]" in config_check_text(config, [])
    assert 'toggle_logging = "L"' in config_check_text(config, [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[keys]\ntoggle_loging = "L"\n', "keys.toggle_loging: unknown binding id — did you mean"),
        ('[keys]\nscan = ""\n', "keys.scan: must be a key"),
        ("[keys]\nscan = 5\n", "keys.scan: must be a key"),
        ('[keys]\nscan = "ctrl+ s"\n', "keys.scan: must be a key"),
        ('[keys]\nscan = "x"\nhelp = "x"\n', "'x' is already the key of scan"),
        ('keys = "L"\n', "keys: must be a table"),
    ],
)
def test_bad_keys_are_config_errors_naming_the_key(tmp_path: Path, text: str, problem: str) -> None:
    """Unknown binding ids, malformed keys and one key for two actions are refused."""
    errors = _errors(text, tmp_path)
    assert any(problem in e for e in errors), errors


def test_the_apps_binding_ids_are_the_ones_keys_accepts() -> None:
    """Every binding of the app has an id, and [keys] accepts each of them."""
    from textual.binding import Binding

    from emtui.core.config import KEY_BINDING_IDS
    from emtui.ui.app import EmtuiApp

    ids = [b.id for b in EmtuiApp.BINDINGS if isinstance(b, Binding)]
    assert all(ids) and set(ids) <= set(KEY_BINDING_IDS)
    assert {"overview", "meter_1", "meter_9", "scan", "toggle_logging", "upload_now", "help",
            "quit"} <= set(ids)  # fmt: skip
