"""HTML report and Markdown summary: structure, escaping of untrusted text, size bounds, and a real render in
headless Chromium."""

import html
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest

from dpo_doctor.views import render_all
from dpo_doctor.views.bundle import load_bundle
from dpo_doctor.views.report_html import render_html
from dpo_doctor.views.report_md import render_markdown
from tests.fixtures.make_tui_report import write_report

HOSTILE = ["<script>alert(1)</script>", "</script><img src=x onerror=alert(1)>",
           "[click](javascript:alert(1))", "![x](http://evil/)", "<img src=x onerror=\"document.title='pwned'\">"]


def hostile_report(tmp_path: Path) -> Path:
    """The fixture report with hostile strings in every text field a view shows."""
    out = write_report(tmp_path / "rep", run_name=HOSTILE[0])
    bad = " ".join(HOSTILE)
    r = json.loads((out / "report.json").read_text())
    r["summary"] = r["warnings"][0] = bad
    r["run"]["path"] = r["reference"]["path"] = r["data"]["path"] = bad
    for d in r["diagnoses"]:
        d["message"] = d["recommendation"]["text"] = d["explanation"] = d["name"] = bad
        d["recommendation"]["params"] = {"note": bad}
    r["best_checkpoint"]["reason"] = bad
    (out / "report.json").write_text(json.dumps(r))
    texts = pl.read_parquet(out / "pair_texts.parquet")
    texts.with_columns(prompt=pl.lit(bad), chosen=pl.lit(bad), rejected=pl.lit(bad)).write_parquet(out / "pair_texts.parquet")
    s = pl.read_parquet(out / "samples.parquet")
    s.with_columns(prompt=pl.lit(bad), text=pl.lit(bad)).write_parquet(out / "samples.parquet")
    return out


def test_structure_every_diagnosis_and_figure(tmp_path):
    out = write_report(tmp_path / "rep")
    b = load_bundle(out)
    page = render_html(b)
    for d in b.report["diagnoses"]:
        assert f'id="diag-{d["code"]}"' in page and html.escape(d["message"]) in page
    for section in ("diagnoses", "curves", "trends", "distributions", "pairs", "samples", "metrics"):
        assert f'id="{section}"' in page, section
    n_divs = page.count('<div class="plot" id="fig')
    assert n_divs >= 8 and page.count("Plotly.newPlot(") == n_divs
    assert page.count("<script>") == 2  # plotly.js once + the figure calls
    assert "<script src" not in page and "https://" not in page.split("</head>")[1]  # nothing loaded from a network
    md = render_markdown(b)
    assert all(d["code"] in md for d in b.report["diagnoses"]) and len(md) < 60_000


def test_untrusted_text_is_escaped_everywhere(tmp_path):
    out = hostile_report(tmp_path)
    page = render_html(load_bundle(out))
    for h in HOSTILE:
        if "<" in h:
            assert h not in page
    assert "<img" not in page and page.count("<script>") == 2 and page.count("</script>") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text
    assert "\\u003c/script\\u003e" in page or "&lt;/script&gt;" in page
    md = render_markdown(load_bundle(out))
    assert "<script" not in md and "<img" not in md
    assert "](javascript:" not in md and "](http://evil/)" not in md  # no link or image syntax survives
    assert "\\[click\\]\\(javascript" in md


def test_healthy_and_log_only_reports_render(tmp_path):
    out = write_report(tmp_path / "rep")
    r = json.loads((out / "report.json").read_text())
    r.update(diagnoses=[], verdict="healthy", summary="no finding")
    (out / "report.json").write_text(json.dumps(r))
    assert "looks healthy" in render_html(load_bundle(out))
    r.update(checkpoints=[], log_only=True, files={"train_log": "train_log.parquet"})
    (out / "report.json").write_text(json.dumps(r))
    page, md = render_html(load_bundle(out)), render_markdown(load_bundle(out))
    assert "log-only" in page and "log-only" in md


def test_size_bounds_20_checkpoints_2000_pairs(tmp_path):
    out = write_report(tmp_path / "rep", n_checkpoints=20)
    pairs = pl.read_parquet(out / "pairs.parquet")
    reps = 2000 // pairs["pair_id"].n_unique() + 1
    big = pl.concat([pairs.with_columns(pair_id=pl.col("pair_id") + i * 1000) for i in range(reps)])
    big.write_parquet(out / "pairs.parquet")
    assert big.height >= 20 * 2000
    page = render_html(load_bundle(out))
    assert len(page.encode()) < 10_000_000
    assert len(render_markdown(load_bundle(out))) < 60_000


def test_views_never_import_torch(tmp_path):
    out = write_report(tmp_path / "rep")
    code = ("import sys; from dpo_doctor.views import render_all; render_all(sys.argv[1]); "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "report.html").exists() and (out / "report.md").exists()


def test_report_command_bad_input_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dpo_doctor", "report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "report.json not found" in proc.stderr and "Traceback" not in proc.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tempfile.mkdtemp()}",
             "--virtual-time-budget=8000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium; .ci/run does)")
def test_renders_in_headless_chromium(tmp_path):
    out = hostile_report(tmp_path)
    render_all(out)
    url = (out / "report.html").as_uri()
    dom = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", url)
    n_figs = dom.stdout.count('class="plot js-plotly-plot"')
    assert n_figs >= 8 and n_figs == (out / "report.html").read_text().count('<div class="plot" id="fig')
    assert dom.stdout.count("main-svg") >= n_figs  # every plot drew its svg
    assert "pwned" not in dom.stdout.split("</title>")[0]  # no injected handler ran
    errors = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln and ("Error" in ln or "Uncaught" in ln)]
    assert not errors, errors
    shot = tmp_path / "report.png"
    chromium("--window-size=1280,2400", f"--screenshot={shot}", url)
    assert shot.exists() and shot.stat().st_size > 20_000
