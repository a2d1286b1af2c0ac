"""``emtui check`` end to end: against ``emtui sim`` with one meter per wiring fault, each
fault fails exactly its check on its meter and nothing fails on the healthy ones; with the
pumps off the wiring checks say ``not_checked: no load``; a logger holding the port is exit 3.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import EMTUI, headless_logger
from helpers import sim_listen as sim

from emtui.sim.pump import REFERENCE_SITE, STANDARD_SIZES

FAULTS = {
    2: "ct-reversed:B",
    3: "ct-reversed:all",
    4: "ct-swap:A-B",
    5: "vt-missing:C",
    6: "ct-ratio:200",
}
"""One simulated meter per row of the issue's table; ids 1 and 7 are healthy."""
EXPECTED_FAILS = {
    (2, "ct_polarity"),
    (3, "ct_polarity"),
    (4, "phasing"),
    (5, "voltage_presence"),
    (6, "setup"),
}


def true_ct(device_id: int) -> int:
    """The CT primary of the simulated pump at ``device_id`` (reference site sizes)."""
    kw = REFERENCE_SITE[(device_id - 1) % len(REFERENCE_SITE)]
    return STANDARD_SIZES[kw].ct_primary


def run_check(*args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [*EMTUI, "check", *args, "--json"], capture_output=True, text=True, timeout=timeout
    )
    doc = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, doc, done.stderr


def verdicts(doc: dict[str, Any]) -> dict[int, dict[str, dict[str, Any]]]:
    return {m["id"]: {c["name"]: c for c in m["checks"]} for m in doc["meters"]}


def write_config(path: Path, url: str, ids: range, interval: float) -> Path:
    lines = [f'[bus]\nport = "{url}"\n', f"[logging]\ninterval = {interval}\n"]
    for i in ids:
        lines.append(f'[[meters]]\nid = {i}\nlabel = "Pump {i}"\n')
        lines.append(f"[meters.expect]\nct_primary = {true_ct(i)}\n")
    path.write_text("\n".join(lines))
    return path


def test_each_wiring_fault_fails_exactly_its_check(tmp_path: Path) -> None:
    """Pumps on, one meter per fault of the table (ids 2-6) and two healthy (1, 7), every
    meter's true CT primary expected in [meters.expect]: the failed checks are exactly the
    faults' (ct_polarity, ct_polarity, phasing, voltage_presence, setup), the checks that
    follow them say not_checked naming them, and the healthy meters fail nothing (a meter clock
    tens of seconds off may warn)."""
    wiring = [a for i, fault in FAULTS.items() for a in ("--wiring", f"{i}:{fault}")]
    with sim("--ids", "1-7", "--pumps", "on", "--no-line-timing", *wiring) as url:
        config = write_config(tmp_path / "emtui.toml", url, range(1, 8), 1.0)
        code, doc, err = run_check("--config", str(config))
    assert code == 5, err
    got = verdicts(doc)
    failed = {
        (i, name)
        for i, checks in got.items()
        for name, c in checks.items()
        if c["verdict"] == "fail"
    }
    assert failed == EXPECTED_FAILS, json.dumps(doc, indent=1)[:4000]
    assert not [c for c in doc["bus"]["checks"] if c["verdict"] == "fail"]
    for healthy in (1, 7):
        warned = {n for n, c in got[healthy].items() if c["verdict"] != "pass"}
        assert warned <= {"clock"}, got[healthy]
        assert got[healthy]["setup"]["verdict"] == "pass"
    assert got[2]["ct_polarity"]["evidence"]["reversed"] == ["B"]
    assert got[3]["ct_polarity"]["evidence"]["reversed"] == "all"
    assert got[3]["energy"]["verdict"] == "not_checked"
    assert got[3]["energy"]["evidence"]["follows"] == "ct_polarity"
    assert "A-B" in got[4]["phasing"]["why"]
    assert got[4]["ct_polarity"]["evidence"]["follows"] == "phasing"
    assert got[5]["voltage_presence"]["evidence"]["missing"] == ["C"]
    assert got[5]["unbalance"]["verdict"] == "not_checked"
    assert got[5]["ct_polarity"]["verdict"] == got[5]["phasing"]["verdict"] == "not_checked"
    assert got[6]["setup"]["evidence"]["mismatches"]["ct_primary"] == {
        "expected": true_ct(6),
        "meter": 200,
    }
    # the angle registers agree with atan2(kVAR, kW) under the documented assumption
    angles = got[1]["ct_polarity"]["evidence"]["angle_registers"]
    assert {v["vs_atan2"] for v in angles.values()} == {"agrees"}


def test_pumps_off_wiring_not_checked(tmp_path: Path) -> None:
    """Pumps off: ct_polarity and phasing say not_checked: no load — start the pump; a
    missing VT is still found (voltage presence needs no load)."""
    with sim(
        "--ids", "1-2", "--pumps", "off", "--no-line-timing", "--wiring", "2:vt-missing:A"
    ) as url:
        code, doc, err = run_check("--port", url, "--ids", "1-2", "--seconds", "3")
    got = verdicts(doc)
    for i in (1, 2):
        for name in ("ct_polarity", "phasing"):
            assert got[i][name]["verdict"] == "not_checked"
            assert got[i][name]["why"] == "no load — start the pump"
    assert got[2]["voltage_presence"]["verdict"] == "fail"
    assert got[1]["voltage_presence"]["verdict"] == "pass"
    assert code == 5, err


@pytest.mark.slow
def test_healthy_reference_site_warns_only_where_it_deserves(tmp_path: Path) -> None:
    """The paced reference site (4 meters, 19200 baud 8E1 timing), pumps on, healthy: nothing
    fails; the only warnings are the meter clocks (tens of seconds off) and the bus load
    (~98 % of a 1 s interval)."""
    with sim("--pumps", "on") as url:
        code, doc, err = run_check("--port", url, "--ids", "1-4", "--seconds", "10")
    assert code == 0, err
    got = verdicts(doc)
    for checks in got.values():
        assert {n for n, c in checks.items() if c["verdict"] in ("warn", "fail")} <= {"clock"}
        assert checks["setup"]["verdict"] == "not_checked"
    bus = {c["name"]: c for c in doc["bus"]["checks"]}
    assert bus["bus_load"]["verdict"] == "warn"
    assert 0.9 <= bus["bus_load"]["evidence"]["load"] <= 1.0
    assert bus["identity"]["verdict"] == "pass"


def test_logger_holding_the_port_is_exit_3(tmp_path: Path) -> None:
    """A logger on the bus: emtui check exits 3 and names it ('in use by PID …')."""
    with (
        sim("--ids", "1", "--no-line-timing") as url,
        headless_logger(url, tmp_path) as logger,
    ):
        done = subprocess.run(
            [*EMTUI, "check", "--port", url, "--ids", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3
    assert f"in use by PID {logger.pid}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "socket://127.0.0.1:9", "--seconds", "0"], "--seconds"),
        (["--port", "socket://127.0.0.1:9", "--seconds", "nan"], "--seconds"),
        (["--port", "socket://127.0.0.1:9", "--config", "/nonexistent/x.toml"], "x.toml"),
    ],
)
def test_bad_flags(args: list[str], words: str) -> None:
    """Bad --seconds or a missing config: one line naming the problem, no traceback."""
    done = subprocess.run([*EMTUI, "check", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode in (2, 7)
    assert words in done.stderr and "Traceback" not in done.stderr


def test_no_meters_is_a_usage_error(tmp_path: Path) -> None:
    """No --ids and no [[meters]]: exit 2 saying to give --ids."""
    config = tmp_path / "emtui.toml"
    config.write_text('[bus]\nport = "socket://127.0.0.1:9"\n')
    done = subprocess.run(
        [*EMTUI, "check", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "--ids" in done.stderr


def test_text_output_escapes_labels_and_ends_with_what_needs_doing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A label with brackets prints as it is (not as Rich markup, never a MarkupError); the
    last lines name the failed, warned and not-judged checks (setup without expectations is
    not one of them)."""
    from emtui.cli.check import _print
    from emtui.core.check.model import CheckReport, CheckResult, MeterReport

    checks = (
        CheckResult("setup", "not_checked", "no expected values"),
        CheckResult("ct_polarity", "not_checked", "no load — start the pump"),
        CheckResult("clock", "warn", "meter clock 26 s ahead"),
        CheckResult("energy", "fail", "stepped back"),
    )
    report = CheckReport(
        (MeterReport(3, checks, "Pump [spare] [/]"),), (CheckResult("bus_load", "pass", "ok"),)
    )
    _print(report)
    out = capsys.readouterr().out
    assert "id 3 — Pump [spare] [/]" in out
    tail = out.strip().splitlines()[-3:]
    assert tail[0] == "failed: id 3 energy"
    assert tail[1] == "warned: id 3 clock"
    assert tail[2].startswith("not checked: id 3 ct_polarity (")
