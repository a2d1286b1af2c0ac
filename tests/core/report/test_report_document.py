"""The commissioning report's document and HTML, from hand-made captures: a healthy meter
(id 1) and one with the CT of phase B reversed (id 2)."""

from __future__ import annotations

import html
import json
import math
import os
import re
from pathlib import Path

import pytest
from report_fixtures import PHI, T0, context, meter, site, snap

from emtui.core.check.checks import CHECK_NAMES, run_checks
from emtui.core.check.model import BusCapture
from emtui.core.report import (
    ReportError,
    build_document,
    render_html,
    report_stem,
    write_report,
)
from emtui.core.report.document import TRACE_POINTS


def test_document_summary_and_meters() -> None:
    """The summary names the one failed check (id 2 ct_polarity) and the worst verdict; each
    meter has its identity, setup, every check with verdict/why/evidence, link statistics;
    the context (site, Pi, port, settings, local time with zone, window) is there."""
    capture, report = site()
    doc = build_document(capture, report, context())
    assert doc["site"] == "pumphouse-1"
    assert doc["created"] == {
        "local": "2026-11-30T14:05:09+01:00",
        "zone": "CET",
        "epoch": doc["created"]["epoch"],
    }
    assert doc["pi"] == {"hostname": "pi-test", "emtui_version": "0.1.0"}
    assert doc["connection"]["settings"] == "socket://127.0.0.1:5020 19200 8E1"
    assert doc["window"]["cycles"] == 12 and doc["window"]["interval_s"] == 1.0
    summary = doc["summary"]
    assert summary["meters_checked"] == 2 and summary["worst"] == "fail"
    assert [(f["id"], f["check"]) for f in summary["failed"]] == [(2, "ct_polarity")]
    assert "B reversed" in summary["failed"][0]["why"]
    assert summary["warned"] == []
    assert [b["check"] for b in summary["bus"]] == ["bus_load", "identity"]
    assert summary["line"] == "pumphouse-1: 2 meters checked, worst fail; failed: id 2 ct_polarity"
    one, two = doc["meters"]
    assert one["identity"]["serial"] == 2311000001 and one["identity"]["firmware"] == "1.5.3"
    assert two["identity"]["model"] == "EM6400NG" and two["identity"]["name"] == "Pump 2"
    assert one["setup"]["ct_primary"] == 100 and one["expect"] == {"ct_primary": 100}
    assert one["verdict"] == "pass" and two["verdict"] == "fail"
    names = [c["name"] for c in one["checks"]]
    assert names == [n for n in CHECK_NAMES if n != "bus_load"]
    polarity = next(c for c in two["checks"] if c["name"] == "ct_polarity")
    assert polarity["verdict"] == "fail" and polarity["evidence"]["reversed"] == ["B"]
    assert one["link"]["requests"] == 48 and one["samples"] == 12


def test_checks_key_is_the_check_json_document() -> None:
    """``checks`` is exactly ``emtui check --json``'s document (CheckReport.as_dict())."""
    capture, report = site()
    doc = build_document(capture, report, context())
    assert doc["checks"] == json.loads(json.dumps(report.as_dict()))
    assert set(doc["checks"]) == {"meters", "bus", "seconds"}


def test_trace_and_phasors() -> None:
    """The trace has kW total, V L-N and I per phase at seconds from the window's start; the
    phasors hold each phase's mean V–I angle (B of id 2 at φ − 180°) and magnitudes, and the
    ASCII diagram."""
    capture, report = site()
    doc = build_document(capture, report, context())
    one, two = doc["meters"]
    trace = one["trace"]
    assert trace["t_s"] == [float(n) for n in range(12)]
    kva = (230.0 + 231.0 + 229.0) * 60.0 / 1000.0
    assert trace["kw_total"][0] == pytest.approx(kva * 0.85, abs=1e-3)
    assert trace["voltage_ln"]["b"] == [231.0] * 12
    assert trace["current"]["a"][-1] == pytest.approx(61.1)
    angles = {x: p["angle_deg"] for x, p in two["phasors"]["phases"].items()}
    assert angles["a"] == pytest.approx(PHI, abs=0.1)
    assert angles["b"] == pytest.approx(PHI - 180.0, abs=0.1)
    assert two["phasors"]["phases"]["c"]["voltage_v"] == 229.0
    diagram = two["phasors"]["diagram"]
    assert len(diagram) == 17 and any("+" in line for line in diagram)
    assert all(ch in "".join(diagram) for ch in "ABCabc")


def test_long_window_is_thinned_and_total_falls_back_to_phases() -> None:
    """A 10-minute window keeps at most TRACE_POINTS points, first and last included; without
    the total register the kW total is the sum of the phases."""
    samples = [snap(T0 + n) for n in range(600)]
    for s in samples:
        del s.values["active_power_total"]  # type: ignore[attr-defined]
    m = meter(1, 1)
    m.samples = samples
    capture = BusCapture([m], 1.0, [0.1] * 600, 600.0)
    doc = build_document(capture, run_checks(capture), context())
    trace = doc["meters"][0]["trace"]
    assert len(trace["t_s"]) == TRACE_POINTS
    assert trace["t_s"][0] == 0.0 and trace["t_s"][-1] == 599.0
    per_phase = sum(samples[0].number(f"active_power_{x}") or 0.0 for x in "abc")
    assert trace["kw_total"][0] == pytest.approx(per_phase, abs=1e-3)


def test_document_is_strict_json_with_missing_values() -> None:
    """A value not read (None) or not finite (in the trace, the setup and the checks'
    evidence) becomes null, so the document dumps with allow_nan=False."""
    capture, _ = site()
    capture.meters[0].samples[2].values["voltage_an"] = None  # type: ignore[index]
    capture.meters[0].samples[3].values["current_b"] = math.nan  # type: ignore[index]
    capture.meters[1].static["ct_primary"] = math.nan  # shown in the setup check's evidence
    doc = build_document(capture, run_checks(capture), context())
    json.dumps(doc, allow_nan=False)
    assert doc["meters"][1]["setup"]["ct_primary"] is None
    assert doc["meters"][0]["trace"]["voltage_ln"]["a"][2] is None
    assert doc["meters"][0]["trace"]["current"]["b"][3] is None
    render_html(doc)  # the charts take the gaps


def _section(page: str, device_id: int) -> str:
    start = page.index(f'<section class="meter" id="meter-{device_id}">')
    end = page.find("<section", start + 1)
    return page[start : end if end > 0 else len(page)]


def test_html_has_every_serial_check_and_phasor_diagram() -> None:
    """Each meter's section shows its serial, one row per check with its verdict, the ASCII
    phasor diagram in a <pre> and the phasor chart; the summary lists the failed check."""
    capture, report = site()
    doc = build_document(capture, report, context())
    page = render_html(doc)
    for m, checked in zip(doc["meters"], report.meters, strict=True):
        part = _section(page, m["id"])
        assert f'<td class="mono serial">{m["identity"]["serial"]}</td>' in part
        rows = re.findall(r'data-check="(\w+)" data-verdict="(\w+)"', part)
        assert rows == [(c.name, c.verdict) for c in checked.checks]
        diagram = "\n".join(html.escape(line, quote=False) for line in m["phasors"]["diagram"])
        assert diagram in part
        assert 'class="phasor-chart"><svg' in part
        assert part.count("<svg") == 4  # phasors, kW, V, I
    summary = page[page.index('<section id="summary"') : page.index('<table id="meters"')]
    assert "ct_polarity" in summary and "v-fail" in summary


def test_html_has_no_external_reference() -> None:
    """No http(s) URL but the SVG namespace (never fetched), no protocol-relative link: no
    script, stylesheet link, @import, src= or url(), no comment left by pygal naming its home
    page; the bus's socket:// port is only text."""
    capture, report = site()
    page = render_html(build_document(capture, report, context()))
    urls = re.findall(r"https?://[^\s\"'<>)]*", page)
    svgs = page.count("<svg")
    assert svgs == 8
    assert sorted(set(urls)) == ["http://www.w3.org/2000/svg"]
    assert page.count('xmlns="http://www.w3.org/2000/svg"') == svgs == len(urls)
    for banned in ("<script", "<link", "@import", "src=", "url(", "<!--", "pygal.org"):
        assert banned not in page, banned
    assert not re.search(r"""\b(href|src|action)\s*=\s*["']?(?!["'#])""", page)  # only #anchors
    assert "@font-face" not in page
    assert re.search(r"@page\s*\{\s*size:\s*A4", page)
    assert re.search(r"@media print\s*\{[^@]*section\.meter\s*\{\s*break-before:\s*page", page)


def test_html_escapes_labels_and_site() -> None:
    """A meter label ``<b>Pump</b>`` and a site with ``&`` are shown as text, never markup."""
    capture, report = site(label_2="<b>Pump</b> & co")
    page = render_html(build_document(capture, report, context("north & <south>")))
    assert "<b>Pump</b>" not in page
    assert "&lt;b&gt;Pump&lt;/b&gt; &amp; co" in page
    assert "north &amp; &lt;south&gt;" in page and "<south>" not in page


def test_write_report_files(tmp_path: Path) -> None:
    """write_report creates the folder, writes <stem>.html and <stem>.json (the document,
    with the check verdicts under "checks") and leaves no temporary file behind."""
    capture, report = site()
    out = tmp_path / "reports" / "visit"
    files = write_report(capture, report, context(), out)
    stem = "emtui-report-pumphouse-1-20261130-140509"
    assert files.html == out / f"{stem}.html" and files.json == out / f"{stem}.json"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.html", f"{stem}.json"]
    saved = json.loads(files.json.read_text())
    assert saved == json.loads(json.dumps(files.document))
    assert saved["checks"] == json.loads(json.dumps(report.as_dict()))
    assert "2311000002" in files.html.read_text()


def test_second_report_in_the_same_second_keeps_the_first(tmp_path: Path) -> None:
    """Two reports with the same context (same second) are both kept: the second gets -2."""
    capture, report = site()
    first = write_report(capture, report, context(), tmp_path)
    second = write_report(capture, report, context(), tmp_path)
    assert second.html.name == first.html.name.replace(".html", "-2.html")
    assert second.json.name == first.json.name.replace(".json", "-2.json")
    assert len(list(tmp_path.iterdir())) == 4


def test_write_report_refuses_a_file(tmp_path: Path) -> None:
    """An out_dir that is a file (or under one) is a ReportError saying to give a directory."""
    capture, report = site()
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(ReportError, match="is a file: give a directory"):
        write_report(capture, report, context(), target)
    with pytest.raises(ReportError, match="give a directory"):
        write_report(capture, report, context(), target / "below")
    assert target.read_text() == "x"


def test_write_report_refuses_a_folder_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder this user cannot write into is refused up front (root ignores permission
    bits, so the permission answer is faked), and nothing is written."""
    capture, report = site()
    real = os.access

    def access(path: object, mode: int) -> bool:
        return False if Path(str(path)) == tmp_path else real(str(path), mode)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ReportError, match="not writable by this user"):
        write_report(capture, report, context(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_stem_is_a_safe_file_name() -> None:
    """A site with spaces, slashes or dots at the ends still gives one plain file name."""
    assert report_stem(context("../north site/2")) == "emtui-report-north-site-2-20261130-140509"
    assert report_stem(context("///")) == "emtui-report-site-20261130-140509"


def test_checks_not_judged_are_named_in_the_summary_and_phasors_are_the_judged_samples() -> None:
    """A stopped pump's wiring checks are listed as not checked in the summary, its line and
    the HTML (never read as "wiring OK"); setup without expectations is not listed. The
    phasors of a pump that ran part of the window are those of the samples judged."""
    stopped = meter(1, 2311000001, "Pump 1")
    stopped.samples = [snap(T0 + n, amps=0.5) for n in range(12)]
    stopped.expect = {}
    part = meter(2, 2311000002, "Pump 2")
    # standing (0.5 A: under 5 % of the CT) for 8 s, then 60 A for 14 s: 5 samples judged
    part.samples = [snap(T0 + n, amps=0.5) for n in range(8)] + [snap(T0 + n) for n in range(8, 22)]
    capture = BusCapture([stopped, part], interval=1.0, cycle_times=[0.4] * 22, seconds=21.0)
    report = run_checks(capture)
    doc = build_document(capture, report, context())
    unjudged = {(i["id"], i["check"]) for i in doc["summary"]["not_checked"]}
    assert {(1, "ct_polarity"), (1, "phasing")} <= unjudged
    assert (1, "setup") not in unjudged
    assert "not checked: id 1 ct_polarity" in doc["summary"]["line"]
    assert "Not checked" in render_html(doc)
    phasors = doc["meters"][1]["phasors"]
    judged = report.meters[1].get("ct_polarity").evidence["samples"]
    assert phasors["judged"] is True and phasors["samples"] == judged
    assert phasors["phases"]["a"]["current_a"] > 55.0  # the running pump, not a mean with 0 A
    assert f"over the {judged} samples the wiring checks judged" in phasors["note"]
