"""Headless Chromium for the tests that look at a page (the report, ``emtui serve``).

Debian's ``chromium`` and ``chromium-driver`` (CI installs both). Chromium runs with
``--no-sandbox`` (CI is root), without GPU, background networking, extensions or first-run
pages, so a page that needs the web fails visibly instead of fetching. Selenium is told where
the driver is, so its driver manager never goes to the network either.

Without Chromium the tests skip, except under ``CI=true``, where a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--mute-audio",
)


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    return browser, driver


def need_chromium() -> tuple[str, str]:
    """(browser, driver) paths; skip the test without them (fail under ``CI=true``)."""
    found = _binaries()
    if found is None:
        message = "headless Chromium needed: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium WebDriver session at ``width`` × ``height`` CSS pixels."""
    browser, driver_path = need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
