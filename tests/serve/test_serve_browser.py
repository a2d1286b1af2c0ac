"""``emtui serve --demo`` in headless Chromium: the overview with live values, offline, and a
second tab turned away.

Reading the terminal: textual-serve's page draws with xterm.js on a canvas (WebGL, else 2D),
so the DOM holds no text and textual.js keeps its ``Terminal`` in a closure. Before the page
loads, the test defines a setter for ``terminal`` on ``Object.prototype`` (CDP
``Page.addScriptToEvaluateOnNewDocument``): textual.js's ``this.terminal = new Terminal(…)``
runs it, it keeps the instance as ``window.__emtuiTerminal`` and makes it an own property
again. The rows are then ``terminal.buffer.active.getLine(y).translateToString()`` (a
wrapped row joined to the one before): what xterm.js holds for the screen, the cells the
canvas shows. Test-only: the product page
is not changed for it.

``EMTUI_SCREENSHOTS=1`` writes the screenshot to ``screenshots/serve-demo.png`` (the README's);
otherwise it goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from browser import chromium
from helpers import ROOT
from selenium.webdriver.common.action_chains import ActionChains
from served import alive, served, wait_until

HOOK = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true});
    window.__emtuiTerminal = value;
  },
});
"""
ROWS = """
const t = window.__emtuiTerminal;
if (!t) return null;
const b = t.buffer.active, rows = [];
for (let y = 0; y < t.rows; y++) {
  const line = b.getLine(b.viewportY + y), text = line.translateToString(true);
  if (line.isWrapped && rows.length) rows[rows.length - 1] += text; else rows.push(text);
}
return rows;
"""
#: An overview row: meter, id, pump, V L-N, I avg, kW, PF, Hz, kWh.
ROW = re.compile(
    r"^\s*(Pump [1-4])\s+[1-4]\s+\w+\s+(\d+\.\d)\s+(\d+\.\d\d)\s+(-?\d+\.\d\d)\s+(-?\d\.\d{3})"
    r"\s+(\d\d\.\d\d)\s+(\d+\.\d)"
)


def _values(driver: Any) -> dict[str, tuple[str, ...]]:
    """The overview's rows by meter: (V, A, kW, PF, Hz, kWh) as shown."""
    found = {}
    for line in driver.execute_script(ROWS) or []:
        if match := ROW.match(line):
            found[match[1]] = match.groups()[1:]
    return found


def _wait(driver: Any, condition: Any, timeout: float) -> dict[str, tuple[str, ...]]:
    deadline = time.monotonic() + timeout
    values = _values(driver)
    while not condition(values) and time.monotonic() < deadline:
        time.sleep(0.2)
        values = _values(driver)
    return values


def _closed(driver: Any) -> bool:
    """The page shows its "session ended" bar (the websocket closed)."""
    return "-closed" in (driver.find_element("tag name", "body").get_attribute("class") or "")


def test_served_demo_shows_live_values_and_turns_a_second_tab_away(tmp_path: Path) -> None:
    """The served demo's page loads with nothing from another host, the overview shows
    Pump 1..4 with V, A, kW, PF, Hz and kWh numbers within 15 s, the values change, and a
    second tab's terminal says "open in another browser" and no second app starts; a reload
    of the first tab gets a new app; q ends it and the page says the session ended."""
    with served("--demo") as server, chromium(1200, 640) as driver:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK})
        started = time.monotonic()
        driver.get(server.url)
        loaded = time.monotonic() - started
        _wait(driver, lambda v: len(v) >= 1, 15)
        first_values = time.monotonic() - started
        first = _wait(driver, lambda v: len(v) == 4, 15)
        all_values = time.monotonic() - started
        assert sorted(first) == ["Pump 1", "Pump 2", "Pump 3", "Pump 4"], driver.execute_script(
            ROWS
        )
        for volts, _amps, kw, *_ in first.values():
            assert 200 < float(volts) < 260 and float(kw) != 0
        later = _wait(driver, lambda v: len(v) == 4 and v != first, 10)
        assert later != first, "the values did not change"
        origin = server.url.rstrip("/")
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert resources and all(name.startswith(origin) for name in resources), resources
        out = ROOT / "screenshots" if os.environ.get("EMTUI_SCREENSHOTS") else tmp_path
        assert driver.save_screenshot(str(out / "serve-demo.png"))

        driver.switch_to.new_window("tab")
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK})
        driver.get(server.url)
        assert wait_until(lambda: _closed(driver), 10), "the second tab was not turned away"
        busy = " ".join(driver.execute_script(ROWS)).strip()
        assert busy.startswith("The app is open in another browser (127.0.0.1, since ")
        assert busy.endswith("close it there first, then reload this page.")
        [app] = server.app_pids()  # no second app
        driver.close()

        driver.switch_to.window(driver.window_handles[0])
        driver.refresh()  # a reload gets a new app, not the "another browser" line
        assert len(_wait(driver, lambda v: len(v) == 4, 15)) == 4
        assert wait_until(lambda: not alive(app), 10)
        [app] = server.app_pids()
        driver.find_element("id", "terminal").click()  # xterm.js takes keys once focused
        ActionChains(driver).send_keys("q").perform()  # quits at once: nothing is logging
        assert wait_until(lambda: not alive(app), 10), "q did not end the app"
        assert wait_until(lambda: _closed(driver), 5)
        assert driver.find_element("css selector", ".closed-bar").is_displayed()
        print(
            f"\npage loaded in {loaded:.2f} s; first values after {first_values:.2f} s, "
            f"all four meters after {all_values:.2f} s"
        )
