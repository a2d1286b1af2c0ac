"""Clear errors with an exit code and no traceback (issue 2, item 6)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import serial
from helpers import EMTUI

from emtui.cli import ExitCode
from emtui.core.link import (
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
