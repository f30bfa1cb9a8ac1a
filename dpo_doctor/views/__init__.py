"""Views of a finished scan: HTML report (html.py, figures.py), Markdown summary (markdown.py), terminal dashboard
(views/tui). They read report.json and the Parquet tables only (load.py): no model, no torch, no recomputed metric.
"""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temp file and rename, so a viewer never opens a half-written report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def render_all(report_dir: Path) -> list[Path]:
    """Write report.html and report.md next to report.json; returns their paths (the scan calls this)."""
    from dpo_doctor.views.html import render_html
    from dpo_doctor.views.load import load_report
    from dpo_doctor.views.markdown import render_markdown

    bundle = load_report(report_dir)
    return [write_atomic(bundle.path / "report.html", render_html(bundle)),
            write_atomic(bundle.path / "report.md", render_markdown(bundle))]
