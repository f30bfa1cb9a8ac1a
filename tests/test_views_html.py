"""report.html and the report loader: structure, every diagnosis and figure, untrusted text escaped, missing parts,
size bounds, and no torch import. The browser render is in test_views_browser.py."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from dataclasses import FrozenInstanceError
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from dpo_doctor.errors import UserError
from dpo_doctor.views import render_all
from dpo_doctor.views.figures import MAX_SCATTER, N_BINS, _least_squares, all_plots, spread
from dpo_doctor.views.html import render_html, script_json
from dpo_doctor.report import load_report
from tests.fixtures.report_fixture import write_fixture_report

HOSTILE = ("<script>alert(1)</script> </script><img src=x onerror=alert(1)> [click](javascript:alert(1)) "
           "![x](http://evil/)")
FIGURES = ["curve-loss", "curve-margins", "curve-accuracies", "curve-rewards", "curve-logps", "trend-margins",
           "trend-drift", "trend-kl", "trend-length", "trend-diversity", "trend-entropy", "trend-length_bias",
           "dist-hist", "dist-scatter"]


@pytest.fixture
def report_dir(tmp_path) -> Path:
    return write_fixture_report(tmp_path / "rep")


def figure_specs(page: str) -> dict[str, dict]:
    """div id -> the figure JSON handed to Plotly.newPlot (un-escaping \\u003c etc. as a browser's JSON parse does)."""
    out = {}
    for spec, div in re.findall(r'F=(\{.*?\});F\.layout\.template=T;Plotly\.newPlot\("([^"]+)"', page):
        out[div] = json.loads(spec)
    return out


# ---- loader ------------------------------------------------------------------------------------------------


def test_load_reads_report_and_tables(report_dir):
    b = load_report(report_dir)
    assert b.doc.run.name == "exp-length" and len(b.doc.checkpoints) == 4 and b.raw["run"]["name"] == "exp-length"
    assert b.pairs.height == 4 * 40 and b.pair_texts.height == 40 and b.train_log.height > 0
    assert load_report(report_dir / "report.json").path == report_dir  # the file path works too
    with pytest.raises(FrozenInstanceError):
        b.doc = None


def test_load_errors_name_the_file(tmp_path, report_dir):
    with pytest.raises(UserError, match=r"report\.json not found"):
        load_report(tmp_path / "nowhere")
    (report_dir / "report.json").write_text("{broken")
    with pytest.raises(UserError, match=rf"{re.escape(str(report_dir / 'report.json'))} is not valid JSON"):
        load_report(report_dir)
    (report_dir / "report.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UserError, match="not a dpo-doctor report"):
        load_report(report_dir)
    (report_dir / "report.json").write_text(json.dumps({"schema_version": 1, "run": {"name": "r", "beta": 0.1},
                                                        "checkpoints": [{"step": 1}]}))
    with pytest.raises(UserError, match=r"checkpoints\[0\]\.name is missing"):
        load_report(report_dir)
    bad = {"schema_version": 1, "run": {"name": "r", "beta": 0.1},
           "checkpoints": [{"name": "c", "step": 1, "metrics": {"rewards/margins": "x"}}]}
    (report_dir / "report.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r'checkpoints\[0\]\.metrics\["rewards/margins"\] is a string'):
        load_report(report_dir)
    (report_dir / "report.json").write_text(json.dumps({"schema_version": 2, "run": {}, "checkpoints": []}))
    with pytest.raises(UserError, match="schema_version 2"):
        load_report(report_dir)


def test_load_rejects_a_table_without_its_columns(report_dir):
    pl.DataFrame({"pair_id": [0]}).write_parquet(report_dir / "pairs.parquet")
    with pytest.raises(UserError, match=r"pairs\.parquet lacks column\(s\) checkpoint"):
        load_report(report_dir)


def test_missing_optional_tables_are_none(report_dir):
    (report_dir / "samples.parquet").unlink()
    r = json.loads((report_dir / "report.json").read_text())
    r["files"]["train_log"] = None
    (report_dir / "report.json").write_text(json.dumps(r))
    b = load_report(report_dir)
    assert b.samples is None and b.train_log is None and b.pairs is not None


# ---- structure ---------------------------------------------------------------------------------------------


def test_every_diagnosis_card_and_figure_present(report_dir):
    b = load_report(report_dir)
    page = render_html(b)
    for i, d in enumerate(b.raw["diagnoses"]):
        assert f'id="diag-{d["code"]}-{i}"' in page
        assert html.escape(d["message"]) in page and html.escape(d["recommendation"]["text"]) in page
        assert f'<details class="explain" id="explain-{i}">' in page and f'href="#explain-{i}"' in page
    assert "variant = r_dpo" in page and "beta = 0.3" in page and "dpop_lambda = 50" in page
    # evidence: value vs threshold vs reference, linked to the figure that draws the metric
    assert '<a href="#fig-trend-length"><code>gen/length_ratio</code></a></td><td>2</td><td>1.3</td><td>1</td>' in page
    specs = figure_specs(page)
    assert list(specs) == [f"fig-{f}" for f in FIGURES]
    for f in FIGURES:
        assert page.count(f'id="fig-{f}"') == 1
    for section in ("diagnoses", "curves", "trends", "distributions", "pairs", "samples", "metrics"):
        assert f'<section id="{section}">' in page and f'href="#{section}"' in page


def test_plotly_embedded_once_and_no_network(report_dir):
    from plotly.offline import get_plotlyjs

    page = render_html(load_report(report_dir))
    assert page.count(get_plotlyjs()) == 1
    assert page.count("<script") == 2 and page.count("</script>") == 2  # plotly.js + our figure calls
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", page)
    body = page.split("</head>", 1)[1]
    assert "http://" not in body and "https://" not in body and "cdn" not in body.lower()
    ours = page.replace(get_plotlyjs(), "")
    assert ours.count('"colorway"') == 1 and '"template"' not in ours  # the Plotly template is shared, set once


def test_thresholds_bands_and_markers_are_drawn(report_dir):
    b = load_report(report_dir)
    plots = {p.id: p.fig for ps in all_plots(b).values() for p in ps}
    dashed = lambda fig: {round(s.y0, 6) for s in fig.layout.shapes if s.line.dash == "dash"}  # noqa: E731
    assert 1.3 in dashed(plots["trend-length"])  # DPO101 gen/length_ratio threshold
    assert {-0.05, 0.6} <= dashed(plots["trend-drift"])  # DPO106 thresholds, left and right axis
    assert 0.5 in dashed(plots["trend-length_bias"])
    ck = b.raw["checkpoints"]
    band = [t for t in plots["trend-kl"].data if t.fill == "toself"][0]
    high, low = [c["metrics"]["gen/kl_ci_high"] for c in ck], [c["metrics"]["gen/kl_ci_low"] for c in ck]
    assert list(band.y) == high + low[::-1]
    steps = {c["step"] for c in ck}
    for key in ("curve-loss", "curve-margins"):
        assert {s.x0 for s in plots[key].layout.shapes if s.line.dash == "dot"} == steps  # checkpoint markers
    eval_trace = [t for t in plots["curve-loss"].data if t.name == "eval"][0]
    assert eval_trace.line.dash == "dash"


def test_histogram_ridges_keep_every_pair(report_dir):
    b = load_report(report_dir)
    hist = next(p for p in all_plots(b)["distributions"] if p.id == "dist-hist").fig
    ridges = [t for t in hist.data if t.customdata is not None]
    kept = b.pairs.filter(~pl.col("excluded"))
    assert len(ridges) == 4
    for t, c in zip(ridges, b.raw["checkpoints"]):
        assert len(t.customdata) == N_BINS
        assert sum(t.customdata) == kept.filter(pl.col("checkpoint") == c["name"]).height


def test_least_squares_line_hand_worked():
    """Points (0,1), (1,3), (2,5) lie on y = 1 + 2x, so the line's ends are (0,1) and (2,5)."""
    assert _least_squares([0, 1, 2], [1, 3, 5]) == ([0, 2], [1.0, 5.0])
    assert _least_squares([1, 1, 1], [0, 1, 2]) is None  # no spread in x: no line
    assert spread(list(range(10)), 4) == [0, 3, 6, 9] and spread([1, 2], 4) == [1, 2]


def test_scatter_title_carries_the_scans_spearman(report_dir):
    b = load_report(report_dir)
    fig = next(p for p in all_plots(b)["distributions"] if p.id == "dist-scatter").fig
    rho = b.raw["checkpoints"][-1]["metrics"]["length/margin_spearman"]
    assert f"Spearman rho = {rho:.3f}" in fig.layout.title.text
    assert [t.name for t in fig.data] == ["pairs", "least-squares trend (points shown)"]


# ---- untrusted text ----------------------------------------------------------------------------------------


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "script", "body", "nav", "a", "header", "div", "h1", "h2",
                "h3", "span", "p", "table", "tr", "th", "td", "ul", "li", "section", "b", "code", "details", "summary",
                "pre", "select", "option", "footer"}


class Tags(HTMLParser):
    """Every element and attribute a browser would build from the page (script bodies are opaque, as in a browser)."""

    def __init__(self):
        super().__init__()
        self.names, self.bad_attrs, self.scripts = set(), [], 0

    def handle_starttag(self, tag, attrs):
        self.names.add(tag)
        self.scripts += tag == "script"
        self.bad_attrs += [(tag, k, v) for k, v in attrs
                           if k.startswith("on") or k == "src" or (v or "").strip().lower().startswith("javascript")]


def hostile_report(tmp_path: Path) -> Path:
    """The fixture with HOSTILE in every text a view shows: prompt, chosen, rejected, samples, run name, paths,
    diagnosis message/name/recommendation/explanation, warnings, summary, checkpoint names."""
    out = write_fixture_report(tmp_path / "bad", texts=HOSTILE, run_name=HOSTILE)
    r = json.loads((out / "report.json").read_text())
    r["run"]["path"] = r["reference"]["path"] = r["data"]["path"] = r["run"]["loss_type"] = HOSTILE
    for d in r["diagnoses"]:
        d["name"] = d["kind"] = HOSTILE
        d["recommendation"]["params"] = {HOSTILE: HOSTILE}
        d["evidence"][HOSTILE] = {"value": 2.0, "threshold": 1.0, "reference_value": None}  # numbers only (schema)
    r["checkpoints"][-1]["name"] = HOSTILE + "-last"
    r["metric_info"][HOSTILE] = {"unit": HOSTILE, "description": HOSTILE}
    r["checkpoints"][0]["metrics"][HOSTILE] = 1.0
    (out / "report.json").write_text(json.dumps(r))
    for name in ("pairs", "samples"):
        t = pl.read_parquet(out / f"{name}.parquet")
        t.with_columns(checkpoint=pl.when(pl.col("checkpoint") == "checkpoint-100").then(pl.lit(HOSTILE + "-last"))
                       .otherwise(pl.col("checkpoint"))).write_parquet(out / f"{name}.parquet")
    return out


def test_untrusted_text_is_escaped_everywhere(tmp_path):
    from plotly.offline import get_plotlyjs

    page = render_html(load_report(hostile_report(tmp_path))).replace(get_plotlyjs(), "PLOTLYJS")
    assert "<script>alert" not in page and "<img" not in page
    tags = Tags()
    tags.feed(page)
    assert tags.names <= ALLOWED_TAGS, tags.names - ALLOWED_TAGS  # no injected element of any kind
    assert not tags.bad_attrs, tags.bad_attrs  # no on* handler, no javascript: URL
    assert tags.scripts == 2
    assert page.count("<script") == 2 and page.count("</script>") == 2  # nothing closed or opened a script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text in the HTML
    specs = figure_specs(page)
    assert len(specs) == len(FIGURES)  # JSON still parses: escaping did not break the figure calls
    plotly_text = json.dumps(specs)
    assert "<script>" not in plotly_text and "&lt;script&gt;" in plotly_text  # inert inside Plotly's HTML subset
    assert 'href="javascript' not in page and "](javascript" in page  # the link trick stays literal text
    # the hostile checkpoint name reached the samples viewer, the trend hover text and the ridgeline labels
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; [click](javascript:alert(1)) ![x](http://evil/)-last" \
        in page


def test_script_json_cannot_close_a_script_tag():
    s = script_json({"t": "</script><!-- & \u2028"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"t": "</script><!-- & \u2028"}


# ---- missing parts -----------------------------------------------------------------------------------------


def test_healthy_run_without_samples_or_train_log(report_dir):
    r = json.loads((report_dir / "report.json").read_text())
    r.update(diagnoses=[], verdict="healthy", summary="no finding", train_log=None)
    r["files"].update(samples=None, train_log=None)
    for c in r["checkpoints"] + [r["reference"]]:
        c["metrics"] = {k: v for k, v in c["metrics"].items() if not k.startswith("gen/")}
    (report_dir / "report.json").write_text(json.dumps(r))
    page = render_html(load_report(report_dir))
    assert "HEALTHY" in page and "every rule passed and answer quality held. This run looks healthy." in page
    assert "No training log was recorded" in page and "No generation samples were recorded" in page
    assert set(figure_specs(page)) == {"fig-trend-margins", "fig-trend-drift", "fig-trend-length_bias",
                                       "fig-dist-hist", "fig-dist-scatter"}


def test_log_only_report_renders(report_dir):
    r = json.loads((report_dir / "report.json").read_text())
    r.update(checkpoints=[], log_only=True, best_checkpoint=None, files={"train_log": "train_log.parquet"})
    r["diagnoses"] = r["diagnoses"][:1]
    (report_dir / "report.json").write_text(json.dumps(r))
    page = render_html(load_report(report_dir))
    assert "log-only" in page and "No checkpoint was scored." in page
    assert set(figure_specs(page)) == {f"fig-{f}" for f in FIGURES if f.startswith("curve-")}


# ---- size, imports, CLI ------------------------------------------------------------------------------------


def test_size_under_10mb_for_20_checkpoints_x_2000_pairs(tmp_path):
    out = write_fixture_report(tmp_path / "big", n_checkpoints=20, n_pairs=2000, n_prompts=32)
    b = load_report(out)
    assert b.pairs.height == 40_000
    page = render_html(b)
    assert len(page.encode()) < 10_000_000
    scatter = figure_specs(page)["fig-dist-scatter"]
    assert len(scatter["data"][0]["x"]) == MAX_SCATTER  # points downsampled ...
    rho = b.raw["checkpoints"][-1]["metrics"]["length/margin_spearman"]
    title = scatter["layout"]["title"]["text"]
    assert f"Spearman rho = {rho:.3f}" in title and "1500 of 1999 pairs shown" in title  # ... not the statistic


def test_render_all_writes_both_files_without_importing_torch(report_dir):
    code = ("import sys; from dpo_doctor.views import render_all; print(render_all(sys.argv[1])); "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code, str(report_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (report_dir / "report.html").stat().st_size > 1000 and (report_dir / "report.md").stat().st_size > 500
    assert not list(report_dir.glob("*.tmp"))


def test_report_command(report_dir, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "dpo_doctor", "report", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    proc = run(report_dir, "--format", "md", "--out", "-")
    assert proc.returncode == 0 and "DPO106" in proc.stdout and "| checkpoint |" in proc.stdout
    proc = run(report_dir, "--out", tmp_path / "x.html")
    assert proc.returncode == 0 and (tmp_path / "x.html").read_text().startswith("<!DOCTYPE html>")
    before = (report_dir / "report.json").read_text()
    proc = run(report_dir, "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["schema_version"] == 1
    assert (report_dir / "report.json").read_text() == before  # json goes to stdout, never over report.json
    proc = run(tmp_path / "nowhere")
    assert proc.returncode == 2 and "report.json not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(report_dir, "--format", "pdf")
    assert proc.returncode == 2 and "use html, md or json" in proc.stderr
