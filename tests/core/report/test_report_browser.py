"""The report in headless Chromium: the serials, the checks and the phasor diagram are
visible, a label with markup shows as text, and it prints to PDF with a page per meter."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from browser import chromium
from report_fixtures import context, site

from emtui.core.report import write_report


def pdf_pages(pdf: bytes) -> int:
    """Number of pages of a PDF Chromium printed (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, without trailing blanks (as the browser shows them)."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_report_visible_in_chromium(tmp_path: Path) -> None:
    """Chromium shows each meter's serial, every check row with its verdict and the phasor
    diagram (text and chart); the label ``<b>Pump</b>`` reads literally in the heading."""
    from selenium.webdriver.common.by import By

    capture, report = site(label_2="<b>Pump</b>")
    files = write_report(capture, report, context(), tmp_path)
    with chromium(1100, 900) as driver:
        driver.get(files.html.as_uri())
        assert driver.title.startswith("Commissioning report — pumphouse-1")
        summary = driver.find_element(By.ID, "summary")
        assert summary.is_displayed() and "ct_polarity" in summary.text
        for checked, doc in zip(report.meters, files.document["meters"], strict=True):
            section = driver.find_element(By.ID, f"meter-{checked.id}")
            serial = section.find_element(By.CSS_SELECTOR, "td.serial")
            driver.execute_script("arguments[0].scrollIntoView()", serial)
            assert serial.is_displayed() and serial.text == str(doc["identity"]["serial"])
            rows = section.find_elements(By.CSS_SELECTOR, "tr.check")
            assert [r.get_attribute("data-check") for r in rows] == [c.name for c in checked.checks]
            for row, c in zip(rows, checked.checks, strict=True):
                assert row.is_displayed()
                name, verdict = row.find_elements(By.TAG_NAME, "td")[:2]
                assert (name.text, verdict.text) == (c.name, c.verdict)
            pre = section.find_element(By.CSS_SELECTOR, "pre.phasor")
            driver.execute_script("arguments[0].scrollIntoView()", pre)
            assert pre.is_displayed()
            assert lines(pre.text) == lines("\n".join(doc["phasors"]["diagram"]))
            chart = section.find_element(By.CSS_SELECTOR, ".phasor-chart svg")
            assert chart.is_displayed() and chart.size["width"] > 200
        heading = driver.find_element(By.CSS_SELECTOR, "#meter-2 h2")
        assert "<b>Pump</b>" in heading.text
        assert driver.find_elements(By.CSS_SELECTOR, "#meter-2 h2 b") == []


def test_report_prints_to_pdf_a_page_per_meter(tmp_path: Path) -> None:
    """Printed on A4, the report is the summary page plus at least one page per meter (each
    meter starts a page), and the PDF is not trivial."""
    from selenium.webdriver.common.print_page_options import PrintOptions

    capture, report = site()
    files = write_report(capture, report, context(), tmp_path)
    with chromium(1100, 900) as driver:
        driver.get(files.html.as_uri())
        options = PrintOptions()
        options.page_width, options.page_height = 21.0, 29.7
        pdf = base64.b64decode(driver.print_page(options))
    assert pdf.startswith(b"%PDF-")
    assert pdf_pages(pdf) >= 1 + len(report.meters)
    assert len(pdf) > 20_000


PRINT_WIDTH_PX = 707
"""The printable width of A4 with the report's 11 mm side margins, in CSS pixels (187 mm)."""


def test_print_media_is_light_and_fits_the_page(tmp_path: Path) -> None:
    """Under print media at A4's printable width: every meter section starts a page, every
    chart fits the width, and no element has a dark background (luminance < 0.6)."""
    capture, report = site()
    files = write_report(capture, report, context(), tmp_path)
    with chromium(PRINT_WIDTH_PX, 1000) as driver:
        driver.get(files.html.as_uri())
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert width <= PRINT_WIDTH_PX
        breaks = driver.execute_script(
            "return [...document.querySelectorAll('section.meter')]"
            ".map(e => getComputedStyle(e).breakBefore)"
        )
        assert breaks == ["page"] * len(report.meters)
        rights = driver.execute_script(
            "return [...document.querySelectorAll('svg')].map(e => e.getBoundingClientRect().right)"
        )
        assert len(rights) == 4 * len(report.meters) and max(rights) <= width
        backgrounds = driver.execute_script(
            "return [...new Set([...document.querySelectorAll('*')]"
            ".map(e => getComputedStyle(e).backgroundColor))]"
        )
    for colour in backgrounds:
        r, g, b, *alpha = (float(v) for v in re.findall(r"[\d.]+", colour))
        if alpha and alpha[0] == 0:
            continue  # transparent
        luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
        assert luminance >= 0.6, colour
