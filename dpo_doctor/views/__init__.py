"""Views of a finished scan: HTML report (html.py, figures.py), Markdown summary (markdown.py), terminal summary
(terminal.py), terminal dashboard (views/tui). They read a `ReportBundle` from `dpo_doctor.report.load_report` only,
by attribute of its typed `doc`: no model, no torch, no recomputed metric. Shared pieces have their own modules:
verdict_words.py (verdict labels), html_parts.py (escaping, CSS, diagnosis cards), md_parts.py (Markdown escaping,
diagnoses table), so no view borrows another's helpers and no import goes in a circle.
"""

from __future__ import annotations

from pathlib import Path

from dpo_doctor.files import write_atomic
from dpo_doctor.views.verdict_words import NO_FAILURE, VERDICT_WORDS, no_finding_sentence, verdict_of_report

__all__ = ["NO_FAILURE", "VERDICT_WORDS", "no_finding_sentence", "render_all", "verdict_of_report"]


def render_all(report_dir: Path) -> list[Path]:
    """Write report.html and report.md next to report.json; returns their paths (the CLI calls this after a scan)."""
    from dpo_doctor.report import load_report
    from dpo_doctor.views.html import render_html
    from dpo_doctor.views.markdown import render_markdown

    bundle = load_report(report_dir)
    if bundle.kind == "compare":
        from dpo_doctor.views.compare_html import render_compare_html
        from dpo_doctor.views.compare_markdown import render_compare_markdown

        return [write_atomic(bundle.path / "report.html", render_compare_html(bundle)),
                write_atomic(bundle.path / "report.md", render_compare_markdown(bundle))]
    return [write_atomic(bundle.path / "report.html", render_html(bundle)),
            write_atomic(bundle.path / "report.md", render_markdown(bundle))]
