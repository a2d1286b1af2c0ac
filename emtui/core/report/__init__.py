"""The commissioning report: a checked window as one self-contained HTML file and its JSON.

``write_report(capture, report, context, out_dir)`` is all a caller needs (``emtui report``
and the app's Commission screen); the document, the HTML and the charts are built by the
modules below it. No Textual or Rich here (design §2).
"""

from __future__ import annotations

from emtui.core.report.document import ReportContext, build_document, summary_line
from emtui.core.report.files import (
    ReportError,
    ReportFiles,
    prepare_out_dir,
    report_stem,
    write_report,
)
from emtui.core.report.html import render_html

__all__ = [
    "ReportContext",
    "ReportError",
    "ReportFiles",
    "build_document",
    "prepare_out_dir",
    "render_html",
    "report_stem",
    "summary_line",
    "write_report",
]
