"""`dpo-doctor compare` without a model: the paired bootstrap, the frontier, the pick, the next beta, finding runs,
the compare report through the one loader, its HTML / Markdown / TUI views and their escaping.

The model-backed sweep (three tiny runs at different betas, graded on unseen questions) is tests/test_compare_sweep.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import re

import numpy as np
import pytest

from dpo_doctor.compare import choose
from dpo_doctor.compare.runs import expand_runs, run_names
from dpo_doctor.errors import UserError
from dpo_doctor.metrics.paired_bootstrap import paired_choice
from dpo_doctor.metrics.proportions import wilson
from dpo_doctor.report import load_report
from tests.fixtures.compare_fixture import BETAS, write_fixture_compare

HOSTILE = "<script>alert(1)</script>[bold]x[/bold]"


# ---- paired bootstrap ------------------------------------------------------------------------------------------


def test_pairing_sees_a_difference_that_independent_intervals_hide():
    """Prompt difficulty spreads both rows over 0..0.9; B is 0.05 better on EVERY prompt. Independent 95% Wilson
    intervals of the two means overlap widely (half-width ~0.15 on 40 prompts), the paired difference is exactly
    0.05 in every bootstrap replicate: "clear", B best in 100% of replicates."""
    difficulty = np.linspace(0.0, 0.9, 40)
    a, b = difficulty, difficulty + 0.05
    a_low, a_high = wilson(float(a.sum()), 40)
    b_low, _ = wilson(float(b.sum()), 40)
    assert b_low < a_high  # the unpaired comparison cannot tell them apart
    choice = paired_choice(np.stack([a, b]))
    assert choice.best == 1 and choice.runner_up == 0
    assert choice.diff == pytest.approx(0.05) and choice.diff_low == pytest.approx(0.05)
    assert choice.confidence == "clear" and choice.p_best == pytest.approx((0.0, 1.0))
    assert choice.tied == (1,)


def test_identical_candidates_are_within_noise_and_the_first_wins_the_tie():
    row = np.array([0.0, 0.2, 1.0, 0.6, 0.4])
    choice = paired_choice(np.stack([row, row]))
    assert choice.best == 0 and choice.diff == 0.0 and choice.confidence == "within noise"
    assert choice.p_best == pytest.approx((0.5, 0.5))
    assert set(choice.tied) == {0, 1}


def test_paired_choice_hand_worked():
    """Means 0.5, 0.75, 0.75: the best is row 1 (first of the tie), runner-up row 2, difference 0."""
    choice = paired_choice(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]], dtype=float))
    assert choice.means == pytest.approx((0.5, 0.75, 0.75))
    assert (choice.best, choice.runner_up, choice.diff) == (1, 2, 0.0)
    assert sum(choice.p_best) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros(3), np.array([[0.5, math.nan]])])
def test_paired_choice_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        paired_choice(bad)


# ---- frontier, pick, recommendation ----------------------------------------------------------------------------


def point(run, name, step, kl, q, degenerate=False):
    return choose.Point(run=run, checkpoint=name, step=step, kl=kl, quality=q, quality_low=None, quality_high=None,
                        accuracy=0.8, margin=0.5, length_ratio=1.0, degenerate=degenerate)


def test_frontier_is_the_best_quality_within_each_kl_budget():
    pts = [point("a", "c1", 1, 1.0, 0.6), point("a", "c2", 2, 4.0, 0.55), point("b", "c1", 1, 9.0, 0.7),
           point("b", "c0", 0, 0.25, 0.4)]
    front = choose.frontier(pts, "task/accuracy", reference_y=0.5)
    assert [(f["checkpoint"], f["run"], f["sqrt_kl"], f["y"]) for f in front] == [
        ("reference", None, 0.0, 0.5), ("c1", "a", 1.0, 0.6), ("c1", "b", 3.0, 0.7)]


def test_quality_pick_skips_looping_checkpoints_and_says_how_sure():
    pts = [point("a", "c1", 1, 1.0, None), point("a", "c2", 2, 4.0, None), point("b", "c1", 1, 2.0, None, True)]
    scores = {("a", "c1"): np.array([0.2, 0.4, 0.6, 0.2]), ("a", "c2"): np.array([0.6, 0.8, 1.0, 0.6]),
              ("b", "c1"): np.ones(4)}
    best = choose.choose_by_quality(pts, scores, "task accuracy", reference_q=0.3)
    assert (best["run"], best["checkpoint"]) == ("a", "c2")  # b/c1 scores higher but loops (DPO109)
    assert best["confidence"] == "clear" and best["diff_vs_runner_up"] == pytest.approx(0.4)
    assert "1 looping checkpoint(s) left out" in best["reason"] and "the reference: 0.3" in best["reason"]


def runs_for(betas, peaks):
    return [{"name": f"r{b}", "beta": b, "beta_source": "run config", "learning_rate": 1e-4, "lr_source": "run config",
             "verdict": "healthy"} for b in betas], [point(f"r{b}", "c1", 10, 1.0, q) for b, q in zip(betas, peaks)]


def test_next_beta_is_the_peak_of_a_quadratic_in_log_beta():
    """Peaks 1 - (ln b - ln 0.05)^2 at b = 0.01, 0.1, 1 lie on a parabola whose top is exactly 0.05."""
    betas = (0.01, 0.1, 1.0)
    runs, pts = runs_for(betas, [1 - (math.log(b) - math.log(0.05)) ** 2 for b in betas])
    rec = choose.recommend(pts, runs, {"run": "r0.1", "checkpoint": "c1", "step": 10}, "task/accuracy")
    assert rec["beta_fit"] == pytest.approx(0.05) and rec["beta"] == 0.05
    assert rec["learning_rate"] == 1e-4 and "between the swept values" in rec["text"]


def test_next_beta_at_the_edge_of_the_sweep_says_to_extend_it():
    runs, pts = runs_for((0.01, 0.1, 1.0), [0.7, 0.6, 0.5])  # falling: no interior maximum
    rec = choose.recommend(pts, runs, {"run": "r0.01", "checkpoint": "c1", "step": 10}, "task/accuracy")
    assert rec["beta"] == 0.01 and "lowest beta swept" in rec["text"] and "try beta 0.005" in rec["text"]


# ---- finding runs ----------------------------------------------------------------------------------------------


def make_run(path):
    (path / "checkpoint-1").mkdir(parents=True)
    return path


def test_a_sweep_folder_expands_to_its_runs_and_one_run_is_refused(tmp_path):
    a, b = make_run(tmp_path / "sweep" / "a"), make_run(tmp_path / "sweep" / "b")
    (tmp_path / "sweep" / "notes").mkdir()
    assert expand_runs([tmp_path / "sweep"]) == [a.resolve(), b.resolve()]
    assert expand_runs([a, b, a]) == [a.resolve(), b.resolve()]
    with pytest.raises(UserError, match="at least two runs"):
        expand_runs([a])
    with pytest.raises(UserError, match="does not exist"):
        expand_runs([a, tmp_path / "missing"])
    with pytest.raises(UserError, match="neither a run"):
        expand_runs([a, tmp_path / "sweep" / "notes"])


def test_run_names_are_unique():
    from pathlib import Path

    assert run_names([Path("/x/s1/run"), Path("/x/s2/run"), Path("/x/s2/b c")]) == ["s1_run", "s2_run", "b_c"]


# ---- the report and its views ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_compare(tmp_path_factory):
    return write_fixture_compare(tmp_path_factory.mktemp("cmp") / "compare")


def test_compare_report_loads_with_the_one_loader(fixture_compare):
    b = load_report(fixture_compare)
    r = b.raw
    assert b.kind == "compare" and [x["beta"] for x in r["runs"]] == list(BETAS)
    assert [x["beta_source"] for x in r["runs"]] == ["run config"] * 3
    assert [x["lr_source"] for x in r["runs"]] == ["run config"] * 3
    assert b.points.height == 3 + 4 + 5 and r["best"]["confidence"] == "low"
    assert r["quality"]["signal"] is None and any("no quality signal" in w for w in r["warnings"])
    kl = dict(zip(zip(b.points["run"], b.points["checkpoint"]), b.points["kl"]))
    for x in r["runs"]:  # the points table agrees with each run's own scan
        scan = load_report(fixture_compare / x["report"]).raw
        for c in scan["checkpoints"]:
            assert kl[(x["name"], c["name"])] == pytest.approx(c["metrics"]["gen/kl_mean"])


def test_a_broken_compare_report_names_the_field(fixture_compare, tmp_path):
    doc = json.loads((fixture_compare / "report.json").read_text())
    doc["best"]["run"] = 3
    (tmp_path / "report.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"best\.run is an integer"):
        load_report(tmp_path)


def test_html_and_markdown_show_the_hump_table_and_pick(fixture_compare):
    from dpo_doctor.views import render_all

    html_path, md_path = render_all(fixture_compare)
    page = html_path.read_text()
    assert re.findall(r'<div class="plot" id="(fig-[^"]+)"', page) == ["fig-hump", "fig-per-run", "fig-train-loss"]
    for section in ("hump", "runs", "points", "diagnoses"):
        assert f'<section id="{section}">' in page
    best = load_report(fixture_compare).raw["best"]
    assert f"Ship {best['run']} / {best['checkpoint']}" in page and "confidence: low" in page
    md = md_path.read_text()
    assert f"**Ship {best['run']} / {best['checkpoint']}**" in md.replace("\\", "")
    assert md.count("\n| beta-") == 3


def test_hostile_names_and_messages_are_escaped(tmp_path):
    from dpo_doctor.views import render_all

    out = write_fixture_compare(tmp_path / "bad", texts=HOSTILE)
    html_path, md_path = render_all(out)
    page, md = html_path.read_text(), md_path.read_text()
    assert "<script>alert(1)" not in page  # not as markup, nor inside the figure JSON (plain() then \\u0026 there)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "\\u0026lt;script\\u0026gt;alert(1)" in page
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_tui_opens_a_compare_folder_on_its_overview(fixture_compare):
    from textual.widgets import DataTable, Static

    from dpo_doctor.views.tui.compare import CompareApp
    from dpo_doctor.views.tui.launch import build_tui_app

    app = build_tui_app(fixture_compare)
    assert isinstance(app, CompareApp)
    best = load_report(fixture_compare).raw["best"]

    async def check():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            runs = app.query_one("#runs", DataTable)
            names = [runs.get_cell_at((i, 0)).plain for i in range(runs.row_count)]
            assert names == [f"beta-{b:g}" + (" ★" if f"beta-{b:g}" == best["run"] else "") for b in BETAS]
            assert f"{best['run']} / {best['checkpoint']}" in str(app.query_one("#summary", Static).render())
            assert app.query_one("#points", DataTable).row_count == 12
            await pilot.press("enter")  # says how to open the run's own scan
            await pilot.pause()
    asyncio.run(check())


def test_tui_shows_hostile_names_literally(tmp_path):
    from textual.widgets import DataTable

    from dpo_doctor.views.tui.launch import build_tui_app

    app = build_tui_app(write_fixture_compare(tmp_path / "bad", texts=HOSTILE))

    async def check():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            cell = app.query_one("#runs", DataTable).get_cell_at((0, 0))
            assert cell.plain.startswith(HOSTILE) and not cell.spans
    asyncio.run(check())


def test_judge_marks_average_to_the_win_rate():
    """judge_wins: per answer pair 1 / 0.5 / 0; their mean and Wilson interval are win_rate's on the same scores."""
    import polars as pl

    from dpo_doctor.metrics.judge_win import judge_wins, rate_of_wins, win_rate

    class ByLength:
        @staticmethod
        def score(prompts, completions):
            return [float(len(c)) for c in completions]

    pol = pl.DataFrame({"prompt_id": [0, 0, 1, 1], "sample_idx": [0, 1, 0, 1], "prompt": ["p", "p", "q", "q"],
                        "text": ["long answer", "ab", "xyz", "same"]})
    ref = pol.with_columns(text=pl.Series(["short", "abc", "xy", "same"]))
    wins = judge_wins(ByLength(), pol, ref)
    assert wins["judge_win"].to_list() == [1.0, 0.0, 1.0, 0.5]
    assert rate_of_wins(wins) == pytest.approx(win_rate([11, 2, 3, 4], [5, 3, 2, 4]))


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "../../etc", "/abs/path", "runs/a b"])
def test_a_tampered_run_report_path_is_not_linked(bad):
    from dpo_doctor.report_model import CompareRun
    from dpo_doctor.views.compare_html import run_link

    def run(name, report):
        return CompareRun(name=name, path="/r", report=report, beta=0.1, beta_source="run config", learning_rate=None,
                          lr_source="unknown", verdict="healthy", diagnoses=[], checkpoints=[])

    assert run_link(run("r", bad)) == "r"
    assert run_link(run("<b>", "runs/beta-0.1")) == "<a href='runs/beta-0.1/report.html'>&lt;b&gt;</a>"
