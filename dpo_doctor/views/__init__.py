"""Views of a finished scan: HTML report, Markdown summary, terminal dashboard (views/tui).

They read report.json and the Parquet tables only: no model, no torch, no recomputed metric.
"""

from __future__ import annotations

from pathlib import Path


def render_all(report_dir: Path) -> list[Path]:
    """Write report.html and report.md next to report.json; returns their paths."""
    from dpo_doctor.views.bundle import load_bundle
    from dpo_doctor.views.report_html import render_html
    from dpo_doctor.views.report_md import render_markdown

    bundle = load_bundle(report_dir)
    out = []
    for name, text in (("report.html", render_html(bundle)), ("report.md", render_markdown(bundle))):
        path = bundle.path / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        out.append(path)
    return out
