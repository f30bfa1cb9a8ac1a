"""Issue 20: no view says "healthy" when answer quality was not measured; with a quality signal that held, every
view does. The verdict comes from the rules' own `verdict_record` over the report (not written by hand here)."""

from __future__ import annotations

import asyncio
import html as htmllib
import io
import json
import re

import pytest
from rich.console import Console

from dpo_doctor.report import load_report
from dpo_doctor.rules import facts_from_report, verdict_record
from dpo_doctor.views.html import render_html
from dpo_doctor.views.markdown import render_markdown
from dpo_doctor.views.terminal import print_summary
from dpo_doctor.views.tui.app import DoctorApp
from dpo_doctor.views.tui.data import open_report

from tests.fixtures.report_fixture import write_fixture_report


def _clean_report(tmp_path, quality: bool):
    """The fixture report with no finding; with `quality`, every checkpoint also has a task accuracy."""
    out = write_fixture_report(tmp_path / ("q" if quality else "nq"))
    r = json.loads((out / "report.json").read_text())
    for c in r["checkpoints"]:
        if quality:
            c["metrics"]["task/accuracy"] = 0.6
    record = verdict_record([], facts_from_report(r))
    r.update(diagnoses=[], verdict=record["verdict"], summary=record["text"], verdict_record=record)
    (out / "report.json").write_text(json.dumps(r))
    return out, record


def _visible_html(page: str) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", page))


def _terminal(out) -> str:
    buf = io.StringIO()
    print_summary(load_report(out), Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def _tui(out) -> str:
    async def go():
        app = DoctorApp(open_report(out))
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause()
            verdict = app.screen.query_one("#verdict")
            lines = verdict.render_lines(verdict.region.reset_offset)
            shown = "\n".join("".join(seg.text for seg in line) for line in lines)
            table = app.screen.query_one("#diagnoses")
            cells = " ".join(table.get_cell_at((0, i)).plain for i in range(len(table.columns)))
            return shown + "\n" + cells
    return asyncio.run(go())


VIEWS = {"terminal": _terminal, "markdown": lambda out: render_markdown(load_report(out)),
         "html": lambda out: _visible_html(render_html(load_report(out))), "tui": _tui}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_no_healthy_anywhere_without_a_quality_signal(tmp_path, view):
    out, record = _clean_report(tmp_path, quality=False)
    assert record["verdict"] == "no-failure-found" and record["quality_measured"] is False
    text = VIEWS[view](out).replace(str(tmp_path), "TMP")  # the test's own folder name is not the view's word
    assert "healthy" not in text.lower(), text
    assert "not measured" in text.lower() and "--probe-suite" in text


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_healthy_when_quality_was_measured_and_held(tmp_path, view):
    out, record = _clean_report(tmp_path, quality=True)
    assert record["verdict"] == "healthy" and record["quality_measured"] is True
    assert record["signal"] == "task/accuracy"
    assert "healthy" in VIEWS[view](out).lower()
