"""`dpo-doctor data` end to end through the installed console script: exit codes 0 / 1 / 2, the files written, hostile
text escaped in HTML and Markdown; the TUI overview opens a data audit; the page draws in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.hostile.conftest import assert_user_error, run_cli
from tests.test_data_audit import clean, length_biased, write

HOSTILE = "<script>alert(1)</script> </script><img src=x onerror=alert(1)> [click](javascript:alert(1)) @team #12"
FILES = ("report.json", "report.html", "report.md", "audit_pairs.parquet", "pair_texts.parquet", "filter_ids.jsonl")


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    """A data set whose texts are hostile and that carries duplicates and a canned answer, so the hostile text
    lands in the flagged-pair tables too."""
    tmp = tmp_path_factory.mktemp("hostile")
    rows = [dict(r, chosen=" " + HOSTILE) for r in clean(30)]
    rows += [dict(r) for r in rows[:10]]
    data = write(tmp / "bad.jsonl", rows)
    proc = run_cli("data", data, "--out", tmp / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "out"


def test_exit_0_writes_every_file_and_the_report_loads(tmp_path):
    data = write(tmp_path / "clean.jsonl", clean())
    proc = run_cli("data", data, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in FILES:
        assert (tmp_path / "out" / name).is_file(), name
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["kind"] == "data_audit" and doc["verdict"] == "healthy" and doc["data"]["n_pairs"] == 60
    assert "no risk found" in proc.stdout and "filter:" in proc.stdout
    md = run_cli("report", tmp_path / "out", "--format", "md", "--out", "-")
    assert md.returncode == 0 and "data audit" in md.stdout


def test_fail_on_warning_exits_1_on_length_bias_and_writes_the_fix(tmp_path):
    data = write(tmp_path / "long.jsonl", length_biased())
    proc = run_cli("data", data, "--out", tmp_path / "out", "--fail-on", "warning", "--no-render")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "DPO301" in proc.stdout and "R-DPO" in proc.stdout
    assert not (tmp_path / "out" / "report.html").exists()
    d = json.loads((tmp_path / "out" / "report.json").read_text())["diagnoses"][0]
    assert d["kind"] == "length_bias" and d["recommendation"]["variant"] == "r_dpo"


@pytest.mark.parametrize("args,needles", [
    (("missing.jsonl",), ("missing.jsonl", "no such file")),
    (("{data}", "--max-length", "0"), ("--max-length", "positive")),
    (("{data}", "--select", "DPO3O1"), ("DPO3O1", "did you mean DPO301")),
    (("{data}", "--ref", "no/such/model/dir"), ("--ref",)),
    (("{bad}",), ("line 2", "not valid JSON")),
    (("{data}", "--fail-on", "info"), ("--fail-on",)),
], ids=["missing", "max-length", "select", "ref", "bad-jsonl", "fail-on"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needles):
    data = write(tmp_path / "ok.jsonl", clean(5))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(clean(1)[0]) + "\n{not json\n")
    proc = run_cli("data", *[a.format(data=data, bad=bad) for a in args], "--out", tmp_path / "out")
    assert_user_error(proc, *needles)


def test_hostile_text_is_escaped_in_html_and_markdown(hostile_report):
    html = (hostile_report / "report.html").read_text()
    body = html.split("</style>", 1)[1]
    body = re.sub(r"<script>.*?</script>", "", body, flags=re.S)  # plotly.js and our figure JSON (escaped apart)
    assert "<img" not in body and "onerror=alert" not in body.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body  # shown, as text, in the flagged-pair tables
    scripts = re.findall(r"<script>(.*?)</script>", html.split("</style>", 1)[1], flags=re.S)
    assert all("</script" not in s.lower() and "<img" not in s for s in scripts[1:])
    md = (hostile_report / "report.md").read_text()
    assert "<script" not in md and "<img" not in md and "](javascript" not in md


def test_tui_overview_opens_a_data_audit(hostile_report):
    from textual.widgets import DataTable

    from dpo_doctor.views.tui.launch import build_tui_app

    async def go():
        app = build_tui_app(hostile_report)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            table = app.screen.query_one("#diagnoses", DataTable)
            codes = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            assert "DPO304" in codes and "DPO303" in codes, codes
            await pilot.press("enter")
            await pilot.pause()
            assert type(app.screen).__name__ == "DiagnosisScreen"

    asyncio.run(go())


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists() and not shutil.which("chromium"),
                    reason="headless Chromium not found (apt-get install chromium; .ci/run installs it)")
def test_data_audit_page_draws_every_figure_in_chromium(tmp_path, tiny_dir):
    from tests.test_views_browser import Elements, check_drawn, chromium, console_lines

    data = write(tmp_path / "pairs.jsonl", [dict(r, prompt=HOSTILE + r["prompt"]) for r in length_biased(30)])
    proc = run_cli("data", data, "--ref", tiny_dir, "--out", tmp_path / "out", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = tmp_path / "out" / "report.html"
    shown = chromium(page.as_uri(), "--dump-dom")
    assert not console_lines(shown), console_lines(shown)
    assert check_drawn(shown.stdout, page.read_text()) == 4  # length ratio, length scatter, CHES, reference margin
    elements = Elements()
    elements.feed(shown.stdout)
    assert "img" not in elements.tags and not elements.handlers
    assert pl.read_parquet(tmp_path / "out" / "audit_pairs.parquet")["ches_norm"].is_not_null().all()
