"""Writing the report: the HTML and the JSON side by side, each atomically.

A report is what the technician leaves on site, often on an SD card that may lose power: each
file appears whole (a temporary file renamed into place) or not at all.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emtui.core.check.model import BusCapture, CheckReport
from emtui.core.durable import atomic_write_bytes
from emtui.core.report.document import ReportContext, build_document
from emtui.core.report.html import render_html

__all__ = ["ReportError", "ReportFiles", "prepare_out_dir", "report_stem", "write_report"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ReportError(Exception):
    """The report cannot be written where asked (the message says what to do)."""


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The files one report was written to.

    Attributes:
        html: the self-contained HTML report.
        json: the same document as JSON.
        document: the document both were made from.
    """

    html: Path
    json: Path
    document: dict[str, Any]


def report_stem(context: ReportContext) -> str:
    """``emtui-report-<site>-<YYYYmmdd-HHMMSS>`` (local time), safe as a file name."""
    site = _UNSAFE.sub("-", context.site).strip("-.") or "site"
    return f"emtui-report-{site}-{context.when.strftime('%Y%m%d-%H%M%S')}"


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` (and its parents) if missing; refuse a path that is a file.

    Raises:
        ReportError: ``out_dir`` is a file, or cannot be created.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"{out_dir} is a file: give a directory to write the report into")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ReportError(f"{out_dir}: a part of that path is a file: give a directory") from None
    except OSError as exc:
        raise ReportError(
            f"{out_dir}: cannot create it ({exc.strerror or exc}); give a writable directory"
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ReportError(f"{out_dir}: not writable by this user; give a writable directory")
    return out_dir


def write_report(
    capture: BusCapture, report: CheckReport, context: ReportContext, out_dir: Path
) -> ReportFiles:
    """Build the report of a checked window and write its HTML and JSON into ``out_dir``.

    The names are ``emtui-report-<site>-<YYYYmmdd-HHMMSS>.html`` and ``.json`` (``-2``, ``-3``…
    added when a report of that second is already there); ``out_dir`` is created if missing.
    The JSON's ``checks`` key is exactly the ``emtui check --json`` document.

    Raises:
        ReportError: ``out_dir`` is a file or cannot be created or written.
    """
    out_dir = prepare_out_dir(Path(out_dir))
    document = build_document(capture, report, context)
    html = render_html(document)
    stem = report_stem(context)
    # two reports in one second (the app's "save report" pressed twice): keep both
    n = 1
    while (out_dir / f"{stem}.html").exists() or (out_dir / f"{stem}.json").exists():
        n += 1
        stem = f"{report_stem(context)}-{n}"
    paths = ReportFiles(out_dir / f"{stem}.html", out_dir / f"{stem}.json", document)
    try:
        atomic_write_bytes(
            paths.json, (json.dumps(document, indent=2, allow_nan=False) + "\n").encode()
        )
        atomic_write_bytes(paths.html, html.encode())
    except OSError as exc:
        raise ReportError(
            f"cannot write the report into {out_dir} ({exc.strerror or exc}); "
            "give a writable directory"
        ) from None
    return paths
