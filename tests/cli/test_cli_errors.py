"""Clear errors with an exit code and no traceback (issue 2, item 6)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import serial
from helpers import EMTUI

from emtui.cli import ExitCode
from emtui.core.bus.link import (
    ConnectionSettings,
    PortBusy,
    PortNotFound,
    PortPermission,
    _translate_open_error,
)


def emtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMTUI, *args], capture_output=True, text=True, timeout=60)


def test_missing_port_lists_ports_and_exits_connection() -> None:
    """A port that does not exist: exit 3, the message names it, no traceback."""
    result = emtui("read", "--port", "/dev/ttyDOESNOTEXIST", "--id", "1")
    assert result.returncode == ExitCode.CONNECTION
    assert "/dev/ttyDOESNOTEXIST: no such port" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_port_is_a_usage_error() -> None:
    """Without --port the command says how to give one (exit 2)."""
    result = emtui("scan")
    assert result.returncode == ExitCode.USAGE
    assert "use --port" in result.stderr


def test_bad_ids_are_a_usage_error() -> None:
    """--ids 0-5 is refused with the valid range."""
    result = emtui("scan", "--port", "/dev/null", "--ids", "0-5")
    assert result.returncode == ExitCode.USAGE
    assert "1-247" in result.stderr


def test_unknown_map_exits_map_error() -> None:
    """An unknown map name lists the built-in maps (exit 6)."""
    result = emtui("map", "nosuchmeter")
    assert result.returncode == ExitCode.MAP
    assert "em6400ng" in result.stderr and "Traceback" not in result.stderr


def test_malformed_map_file_names_entry_and_problem(tmp_path: os.PathLike[str]) -> None:
    """A map file with an unknown type: the message names the file, the entry and the type."""
    path = os.path.join(tmp_path, "bad.toml")
    with open(path, "w") as f:
        f.write('[map]\nname = "bad"\n[[register]]\nname = "x"\nregister = 1\ntype = "float"\n')
    result = emtui("map", path)
    assert result.returncode == ExitCode.MAP
    assert "bad.toml" in result.stderr and "'x'" in result.stderr and "float" in result.stderr


def test_map_json_keys() -> None:
    """emtui map --json carries the contract keys for every register."""
    result = emtui("map", "em6400ng", "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["name"] == "em6400ng"
    freq = next(r for r in doc["registers"] if r["name"] == "frequency")
    assert freq == freq | {
        "register": 3110,
        "address": 3109,
        "type": "float32",
        "count": 2,
        "unit": "Hz",
        "logged": True,
    }


def test_open_errors_become_advice() -> None:
    """OS errors from opening a serial port become the matching advice."""
    s = ConnectionSettings(port="/dev/ttyUSB9")
    denied = _translate_open_error(s, serial.SerialException(errno.EACCES, "Permission denied"))
    assert isinstance(denied, PortPermission) and "dialout" in str(denied)
    missing = _translate_open_error(s, serial.SerialException(errno.ENOENT, "No such file"))
    assert isinstance(missing, PortNotFound)
    busy = _translate_open_error(
        s, serial.SerialException("Could not exclusively lock port /dev/ttyUSB9")
    )
    assert isinstance(busy, PortBusy) and "in use" in str(busy)


def test_busy_port_names_the_holder() -> None:
    """A port another process holds exclusively: exit 3 and 'in use by PID …'."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import serial, sys, time\n"
            f"s = serial.Serial({path!r}, parity='N', exclusive=True)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = emtui("read", "--port", path, "--parity", "N", "--id", "1")
        assert result.returncode == ExitCode.CONNECTION
        assert f"in use by PID {holder.pid}" in result.stderr
    finally:
        holder.kill()
        holder.wait()
        os.close(master)
        os.close(slave)


# -- bad input: one line, the documented exit code, no traceback (issue 6, item 7) ------------

CONNECTION_COMMANDS = {
    "scan": ["scan", "--port", "/dev/null"],
    "read": ["read", "--port", "/dev/null", "--id", "1"],
    "config check": ["config", "check"],
    "--log": ["--log", "--port", "/dev/null", "--ids", "1"],
}
"""Every command that takes the connection flags, with what else it needs to start."""

LOGGING_COMMANDS = ("config check", "--log")
"""The commands that take --interval."""

FLAG_CASES: list[tuple[str, list[str], str]] = [
    *(
        (f"{cmd} {flag} {value}", [*CONNECTION_COMMANDS[cmd], flag, value], flag)
        for cmd in CONNECTION_COMMANDS
        for flag in ("--timeout", "--gap")
        for value in ("nan", "inf", "-inf", "-1")
    ),
    *(
        (
            f"{cmd} --interval {value}",
            [*CONNECTION_COMMANDS[cmd], "--interval", value],
            "--interval",
        )
        for cmd in LOGGING_COMMANDS
        for value in ("nan", "inf", "-1")
    ),
    *(
        (f"{cmd} {flag} {value}", [*CONNECTION_COMMANDS[cmd], flag, value], flag)
        for cmd in CONNECTION_COMMANDS
        for flag, value in (
            ("--baud", "nan"),
            ("--baud", "110"),
            ("--baud", "0"),
            ("--retries", "nan"),
            ("--retries", "-1"),
        )
    ),
    ("--timeout 0", ["scan", "--port", "/dev/null", "--timeout", "0"], "--timeout"),
    ("--timeout 1e9 (too large)", ["scan", "--port", "/dev/null", "--timeout", "1e9"], "--timeout"),
    ("--cycles 0", ["--log", "--port", "/dev/null", "--ids", "1", "--cycles", "0"], "--cycles"),
    ("--cycles -3", ["--log", "--port", "/dev/null", "--ids", "1", "--cycles", "-3"], "--cycles"),
    ("--cycles nan", ["--log", "--port", "/dev/null", "--ids", "1", "--cycles", "nan"], "--cycles"),
    ("read --id 0", ["read", "--port", "/dev/null", "--id", "0"], "--id"),
    ("read --id 248", ["read", "--port", "/dev/null", "--id", "248"], "--id"),
    *(
        (f"{cmd} --ids {value!r}", [*CONNECTION_COMMANDS[cmd][:3], "--ids", value], "--ids")
        for cmd in ("scan", "config check", "--log")
        for value in ("", " ", ",", "0", "248", "1-300", "1-", "-3", "a", "5-2", "1,,2", "1_0")
    ),
    ("scan --expect ''", ["scan", "--port", "/dev/null", "--expect", ""], "--expect"),
    ("sim --turnaround nan", ["sim", "--turnaround", "nan"], "--turnaround"),
    ("sim --slow 1:nan", ["sim", "--slow", "1:nan"], "--slow"),
    ("sim --flap 1:inf:1", ["sim", "--flap", "1:inf:1"], "--flap"),
]


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "flag"), [(args, flag) for _, args, flag in FLAG_CASES], ids=[c[0] for c in FLAG_CASES]
)
def test_bad_flag_values_are_one_line_and_exit_usage(args: list[str], flag: str) -> None:
    """Non-finite, out-of-range or empty flag values (nan/inf timeouts, gaps and intervals,
    negative timeouts, bauds below 300, --cycles 0, --ids '' and other bad id lists) exit 2
    with one stderr line naming the flag, before anything opens the port."""
    result = emtui(*args)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert flag in _one_line(result)


def _file(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


NO_LOGGED = '[map]\nname = "nolog"\n[[register]]\nname = "v"\nregister = 1\ntype = "uint16"\n'

CONFIG_KEYS: list[tuple[str, str, str]] = [
    (table, key, value)
    for table, key in (
        ("bus", "timeout"),
        ("bus", "gap"),
        ("bus", "baud"),
        ("bus", "retries"),
        ("logging", "interval"),
        ("logging", "fsync_interval"),
        ("upload", "timeout"),
        ("upload", "retention_days"),
    )
    for value in ("nan", "inf", "-inf")
]


@pytest.mark.parametrize(
    "command",
    [
        ["config", "check", "{file}"],
        ["--log", "--config", "{file}"],
        ["scan", "--config", "{file}"],
        ["status", "--config", "{file}"],
        ["upload", "--config", "{file}"],
    ],
    ids=["config check FILE", "--log", "scan", "status", "upload"],
)
@pytest.mark.parametrize(("table", "key", "value"), CONFIG_KEYS, ids=lambda v: str(v))
def test_non_finite_config_numbers_are_one_line_and_exit_config(
    tmp_path: Path, command: list[str], table: str, key: str, value: str
) -> None:
    """nan/inf in any numeric key of the config file is refused by every command that reads
    the file (today timeout = nan passed config check), exit 7, one line naming the key."""
    path = _file(
        tmp_path,
        "c.toml",
        f'[bus]\nport = "/dev/null"\n[[meters]]\nid = 1\n[{table}]\n{key} = {value}\n'
        if table != "bus"
        else f'[bus]\nport = "/dev/null"\n{key} = {value}\n[[meters]]\nid = 1\n',
    )
    result = emtui(*(a.format(file=path) for a in command))
    assert result.returncode == ExitCode.CONFIG, result.stderr
    line = _one_line(result)
    assert f"{table}.{key}" in line and value.lstrip("-") in line


CONFIG_CASES: list[tuple[str, str | bytes, str]] = [
    ("baud below 300", "[bus]\nbaud = 110\n", "bus.baud"),
    ("negative timeout", "[bus]\ntimeout = -1.0\n", "bus.timeout"),
    ("id outside 1-247", "[[meters]]\nid = 248\n", "meters[0].id"),
    ("BOM", b"\xef\xbb\xbf[bus]\nbaud = 9600\n", "byte-order mark"),
    ("not UTF-8", b'[bus]\nport = "/dev/\xff"\n', "not UTF-8"),
    ("empty values", "[logging]\nvalues = []\n", "logging.values"),
]


@pytest.mark.parametrize(
    ("content", "problem"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_config_files_are_one_line_and_exit_config(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    """A config file with an out-of-range value, a BOM or bytes that are not UTF-8: exit 7,
    one line that names the problem."""
    path = _file(tmp_path, "c.toml", content)
    result = emtui("config", "check", path)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert problem in _one_line(result)


MAP_CASES: list[tuple[str, bytes, str]] = [
    ("BOM", b"\xef\xbb\xbf" + NO_LOGGED.encode(), "byte-order mark (BOM)"),
    ("not UTF-8", NO_LOGGED.replace("nolog", "n\xe9").encode("latin-1"), "not UTF-8"),
    ("too large", b"#" * (1024 * 1024 + 1), "larger than 1024 KiB"),
]


@pytest.mark.parametrize(
    ("content", "problem"), [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES]
)
def test_unreadable_map_files_are_one_line_and_exit_map(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    """A map file with a BOM, not in UTF-8, or larger than the limit: exit 6, one line saying
    which (before: a traceback for non-UTF-8, "invalid statement" for a BOM)."""
    path = _file(tmp_path, "m.toml", content)
    result = emtui("map", path)
    assert result.returncode == ExitCode.MAP, result.stderr
    line = _one_line(result)
    assert problem in line and "m.toml" in line


@pytest.mark.parametrize(
    ("args", "code", "problem"),
    [
        (
            ["--log", "--port", "/dev/null", "--ids", "1", "--map", "{map}", "--state-dir", "{st}"],
            7,
            "log nothing",
        ),
        (["read", "--port", "/dev/null", "--id", "1", "--map", "{map}", "--logged"], 2, "--logged"),
    ],
    ids=["--log", "read --logged"],
)
def test_a_logged_set_that_logs_nothing_is_refused(
    tmp_path: Path, args: list[str], code: int, problem: str
) -> None:
    """A map that marks no entry logged: --log would write rows without values, read --logged
    would read nothing; both are refused with one line before the port is opened."""
    path = _file(tmp_path, "nolog.toml", NO_LOGGED)
    result = emtui(*(a.format(map=path, st=tmp_path / "st") for a in args))
    assert result.returncode == code, result.stderr
    assert problem in _one_line(result)


def test_config_values_that_log_nothing_fail_config_check(tmp_path: Path) -> None:
    """A meter whose map logs nothing and whose config names no values: config check exits 7
    and says the meter would log nothing."""
    map_path = _file(tmp_path, "nolog.toml", NO_LOGGED)
    path = _file(tmp_path, "c.toml", f'[[meters]]\nid = 3\nmap = "{map_path}"\n')
    result = emtui("config", "check", path)
    assert result.returncode == ExitCode.CONFIG
    assert "meters[0].map" in result.stdout and "would log nothing" in result.stdout
    ok = _file(tmp_path, "ok.toml", f'[[meters]]\nid = 3\nmap = "{map_path}"\nvalues = ["v"]\n')
    assert emtui("config", "check", ok).returncode == ExitCode.OK


def test_unusual_baud_is_a_warning(tmp_path: Path) -> None:
    """A baud that is valid but not standard (1234) works, with a warning naming it."""
    result = emtui("config", "check", "--baud", "1234")
    assert result.returncode == ExitCode.OK
    assert "bus.baud: 1234 bit/s is not a standard rate" in result.stdout
    standard = emtui("config", "check", "--baud", "9600")
    assert "not a standard rate" not in standard.stdout


def test_config_check_takes_the_file_as_an_argument(tmp_path: Path) -> None:
    """emtui config check FILE reads FILE, like --config FILE; two different files is an error."""
    path = _file(tmp_path, "c.toml", "[bus]\nbaud = 9600\n[[meters]]\nid = 5\n")
    by_arg = emtui("config", "check", path, "--json")
    by_flag = emtui("config", "check", "--config", path, "--json")
    assert by_arg.returncode == by_flag.returncode == ExitCode.OK
    assert json.loads(by_arg.stdout) == json.loads(by_flag.stdout)
    assert json.loads(by_arg.stdout)["source"] == path
    other = _file(tmp_path, "d.toml", "")
    both = emtui("config", "check", path, "--config", other)
    assert both.returncode == ExitCode.USAGE
    assert "two config files" in _one_line(both)


# -- messages said once, output whole off a terminal (issue 6, item 10) -----------------------


def test_log_without_a_port_says_so_once(tmp_path: Path) -> None:
    """emtui --log with no port: one line (before: a "bus.port: not set" warning as well)."""
    result = emtui("--log", "--ids", "1", "--state-dir", str(tmp_path / "st"))
    assert result.returncode == ExitCode.USAGE
    assert "no port given" in _one_line(result)


def test_log_with_a_missing_port_reports_it_once(tmp_path: Path) -> None:
    """A port that is not there at start: the bus-down message once (before: a "does not
    exist" warning, "bus unavailable at start" and then "bus down", all naming the port)."""
    result = emtui(
        "--log", "--ids", "1", "--port", "/dev/ttyNOPE", "--cycles", "2",
        "--state-dir", str(tmp_path / "st"), "--data-dir", str(tmp_path / "d"),
    )  # fmt: skip
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stderr.count("/dev/ttyNOPE") == 2, result.stderr  # the start line, bus down
    assert result.stderr.count("/dev/ttyNOPE: no such port") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_write_failure_is_reported_once(tmp_path: Path) -> None:
    """A meter's folder that cannot be created (a file in its place, found only when the first
    row is written): the failure is one line (before: the writer's log record printed bare by
    Python's last-resort handler, and the logger's report line); --cycles exits 9 (rows lost)."""
    from emtui.sim.bus import SimulatedBus

    data = tmp_path / "data"
    data.mkdir()
    (data / "meter_1").write_text("")
    with SimulatedBus(ids=[1], line_timing=False) as bus:
        url = bus.start_tcp()
        result = emtui(
            "--log", "--ids", "1", "--port", url, "--parity", "N", "--cycles", "2",
            "--state-dir", str(tmp_path / "st"), "--data-dir", str(data),
        )  # fmt: skip
    assert result.returncode == ExitCode.STORAGE, result.stderr
    assert result.stderr.count("cannot write") == 1, result.stderr
    assert all(line.startswith("emtui: ") for line in result.stderr.splitlines())


def test_engine_warnings_get_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """main() run twice in one process (the TUI, tests) adds its stderr handler once: an
    engine warning is printed once, as "emtui: …"."""
    import logging

    from emtui.cli import main

    assert main(["map", "em6400ng", "--json"]) == 0
    assert main(["map", "em6400ng", "--json"]) == 0
    capsys.readouterr()
    logging.getLogger("emtui.core.log.csvfile").warning("torn line moved aside")
    assert capsys.readouterr().err == "emtui: torn line moved aside\n"


def test_map_output_is_whole_when_piped() -> None:
    """emtui map into a pipe prints every name and label whole (before: Rich assumed 80
    columns and cut the cells with an ellipsis)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run(
        [*EMTUI, "map", "em6400ng"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0
    assert "…" not in result.stdout
    doc = json.loads(emtui("map", "em6400ng", "--json").stdout)
    for register in doc["registers"]:
        assert f" {register['name']} " in result.stdout
        assert f" {register['label']} " in result.stdout


def test_read_and_scan_output_is_whole_when_piped() -> None:
    """emtui read and scan into a pipe: no cell cut, every label whole (every entry but the
    one that acts when read, which emtui read never reads)."""
    from emtui.sim.bus import SimulatedBus

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with SimulatedBus(ids=[1], line_timing=False) as bus:
        url = bus.start_tcp()
        read = subprocess.run(
            [*EMTUI, "read", "--port", url, "--parity", "N", "--id", "1"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        scan = subprocess.run(
            [*EMTUI, "scan", "--port", url, "--parity", "N", "--ids", "1-2"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert "…" not in read.stdout
    doc = json.loads(emtui("map", "em6400ng", "--json").stdout)
    for register in doc["registers"]:
        if register["acts_on_read"]:
            assert f" {register['label']} " not in read.stdout
            continue
        assert f" {register['label']} " in read.stdout
    assert scan.returncode == 0, scan.stderr
    (found,) = [line for line in scan.stdout.splitlines() if line.startswith("id ")]
    assert "model EM6400NG" in found and "serial" in found
