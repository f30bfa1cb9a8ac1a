"""Views of a finished scan: HTML report (html.py, figures.py), Markdown summary (markdown.py), terminal summary
(terminal.py), terminal dashboard (views/tui). They read a `ReportBundle` from `dpo_doctor.report.load_report` only:
no model, no torch, no recomputed metric.
"""

from __future__ import annotations

from pathlib import Path

from dpo_doctor.files import write_atomic


NO_FAILURE = "no-failure-found"  # rules.verdict_of's verdict when answer quality was not measured
VERDICT_WORDS = {"healthy": "HEALTHY", NO_FAILURE: "NO FAILURE FOUND (quality not measured)", "warning": "WARNING",
                 "error": "ERROR"}


def verdict_of_report(r: dict) -> str:
    """The report's verdict; a report without one says no failure was found, never "healthy"."""
    return str(r.get("verdict") or NO_FAILURE)


def no_finding_sentence(r: dict) -> str:
    """What a view says when no rule fired: healthy only when answer quality was measured and held."""
    where = " (judged from the training log only)" if r.get("log_only") else ""
    if verdict_of_report(r) == "healthy":
        return f"No finding: every rule passed and answer quality held{where}. This run looks healthy."
    return (f"No finding: every rule passed{where}. Answer quality was not measured, so this means no failure was "
            f"found in what was measured, not that the answers held: add --probe-suite or --judge.")


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
