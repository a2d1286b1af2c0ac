"""``emtui report`` end to end against ``emtui sim``: a reversed CT fails its check in the
report, the HTML shows every meter in headless Chromium and prints to PDF; a bad ``--out`` is
refused before the bus is opened; a logger holding the port is exit 3 for ``check`` and
``report`` alike, naming its PID and how to stop the service.

With ``EMTUI_SCREENSHOTS=1`` (``scripts/report-screenshots``) the end-to-end test saves the
README's screenshots of the report into ``screenshots/``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from helpers import EMTUI, ROOT, headless_logger
from helpers import sim_listen as sim

from emtui.sim.pump import REFERENCE_SITE, STANDARD_SIZES

SITE = "pumphouse-test"
NAME = re.compile(rf"emtui-report-{SITE}-\d{{8}}-\d{{6}}\.(html|json)")


def write_config(path: Path, url: str, ids: range) -> Path:
    """A config for ``ids`` on ``url``: labels, every meter's true CT primary expected."""
    lines = [
        f'[bus]\nport = "{url}"\n',
        "[logging]\ninterval = 1.0\n",
        f'[upload]\nsite = "{SITE}"\n',
    ]
    for i in ids:
        kw = REFERENCE_SITE[(i - 1) % len(REFERENCE_SITE)]
        lines.append(f'[[meters]]\nid = {i}\nlabel = "Pump {i}"\n')
        lines.append(f"[meters.expect]\nct_primary = {STANDARD_SIZES[kw].ct_primary}\n")
    path.write_text("\n".join(lines))
    return path


def run_report(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMTUI, "report", *args], capture_output=True, text=True, timeout=timeout
    )


def pdf_pages(pdf: bytes) -> int:
    """Number of pages of a PDF Chromium printed (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def screenshots(driver: Any, html: Path) -> None:
    """The README's screenshots: the top of the report and the miswired meter's section."""
    from selenium.webdriver.common.by import By

    out = ROOT / "screenshots"
    driver.set_window_size(1100, 1000)
    driver.get(html.as_uri())
    driver.save_screenshot(str(out / "report-top.png"))
    driver.set_window_size(1100, 1900)
    section = driver.find_element(By.ID, "meter-2")
    driver.execute_script("arguments[0].scrollIntoView()", section)
    driver.save_screenshot(str(out / "report-meter.png"))


def test_report_end_to_end_with_a_reversed_ct(tmp_path: Path) -> None:
    """Pumps on, id 2's CT of phase A reversed: exit 5; stdout is the HTML path, the JSON
    path and the summary line naming id 2 ct_polarity; the JSON's ``checks`` is the check
    --json document with exactly that check failed; Chromium shows every meter's serial,
    every check with its verdict and the phasor diagram; A4 print has a page per meter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.print_page_options import PrintOptions

    out = tmp_path / "visit"
    with sim(
        "--ids", "1-3", "--pumps", "on", "--no-line-timing", "--wiring", "2:ct-reversed:A"
    ) as url:
        config = write_config(tmp_path / "emtui.toml", url, range(1, 4))
        done = run_report("--config", str(config), "--out", str(out))
    assert done.returncode == 5, done.stderr
    html_line, json_line, summary = done.stdout.splitlines()
    html, doc_path = Path(html_line), Path(json_line)
    assert NAME.fullmatch(html.name) and doc_path == html.with_suffix(".json")
    assert sorted(p.name for p in out.iterdir()) == sorted([html.name, doc_path.name])
    doc = json.loads(doc_path.read_text())
    assert summary == doc["summary"]["line"]
    assert summary.startswith(f"{SITE}: 3 meters checked, worst fail; failed: id 2 ct_polarity")
    checks = doc["checks"]
    assert set(checks) == {"meters", "bus", "seconds"}
    failed = {
        (m["id"], c["name"])
        for m in checks["meters"]
        for c in m["checks"]
        if c["verdict"] == "fail"
    }
    assert failed == {(2, "ct_polarity")}
    assert all(
        set(c) == {"name", "verdict", "why", "evidence"}
        for m in checks["meters"]
        for c in m["checks"]
    )
    assert [m["label"] for m in doc["meters"]] == ["Pump 1", "Pump 2", "Pump 3"]
    assert doc["connection"]["settings"].startswith(url)
    assert len(doc["meters"][0]["trace"]["t_s"]) >= 10

    with chromium(1100, 900) as driver:
        driver.get(html.as_uri())
        for meter, checked in zip(doc["meters"], checks["meters"], strict=True):
            section = driver.find_element(By.ID, f"meter-{meter['id']}")
            serial = section.find_element(By.CSS_SELECTOR, "td.serial")
            driver.execute_script("arguments[0].scrollIntoView()", serial)
            assert serial.is_displayed() and serial.text == str(meter["identity"]["serial"])
            rows = section.find_elements(By.CSS_SELECTOR, "tr.check")
            got = [tuple(td.text for td in r.find_elements(By.TAG_NAME, "td")[:2]) for r in rows]
            assert got == [(c["name"], c["verdict"]) for c in checked["checks"]]
            pre = section.find_element(By.CSS_SELECTOR, "pre.phasor")
            driver.execute_script("arguments[0].scrollIntoView()", pre)
            assert pre.is_displayed() and "+" in pre.text and "A" in pre.text
        options = PrintOptions()
        options.page_width, options.page_height = 21.0, 29.7
        pdf = base64.b64decode(driver.print_page(options))
        assert pdf_pages(pdf) >= 1 + len(doc["meters"]) and len(pdf) > 20_000
        if os.environ.get("EMTUI_SCREENSHOTS") == "1":
            screenshots(driver, html)


def test_nothing_failed_is_exit_0(tmp_path: Path) -> None:
    """A healthy meter over a short window (wiring not_checked, a clock may warn): exit 0, and
    the files are written into a folder the command creates."""
    out = tmp_path / "a" / "b"
    with sim("--ids", "1", "--pumps", "on", "--no-line-timing") as url:
        done = run_report("--port", url, "--ids", "1", "--seconds", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("emtui-report-*.html"))) == 1
    assert len(list(out.glob("emtui-report-*.json"))) == 1
    assert "worst fail" not in done.stdout


def test_out_that_is_a_file_is_refused_before_the_bus(tmp_path: Path) -> None:
    """--out naming a file: exit 2 with one line saying to give a directory, and the bus is
    never opened (the port here has nobody listening: opening it would be exit 3); no --out:
    exit 2 naming the flag."""
    target = tmp_path / "report.html"
    target.write_text("keep")
    done = run_report("--port", "socket://127.0.0.1:9", "--ids", "1", "--out", str(target))
    assert done.returncode == 2
    assert f"--out {target} is a file: give a directory" in done.stderr
    assert "Traceback" not in done.stderr and target.read_text() == "keep"
    done = run_report("--port", "socket://127.0.0.1:9", "--ids", "1")
    assert done.returncode == 2 and "--out" in done.stderr


@pytest.mark.parametrize("seconds", ["0", "nan", "4000"])
def test_bad_seconds_is_a_usage_error(seconds: str, tmp_path: Path) -> None:
    """--seconds outside 1-3600 (or not a number): exit 2 naming the flag, nothing written."""
    done = run_report(
        "--port",
        "socket://127.0.0.1:9",
        "--ids",
        "1",
        "--seconds",
        seconds,
        "--out",
        str(tmp_path / "o"),
    )
    assert done.returncode == 2 and "--seconds" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_logger_holding_the_port_is_exit_3_for_check_and_report(tmp_path: Path) -> None:
    """``emtui --log`` on the simulator's port, then ``emtui check`` and ``emtui report`` on
    the same port: both exit 3 naming the logger's PID and how to stop the service; the
    report writes nothing."""
    out = tmp_path / "out"
    with (
        sim("--ids", "1", "--no-line-timing") as url,
        headless_logger(url, tmp_path) as logger,
    ):
        for command in (["check"], ["report", "--out", str(out)]):
            done = subprocess.run(
                [*EMTUI, *command, "--port", url, "--ids", "1"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 3, (command, done.stderr)
            assert f"in use by PID {logger.pid}" in done.stderr
            assert "sudo systemctl stop emtui" in done.stderr
            assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2
    assert out.is_dir() and not list(out.iterdir())
