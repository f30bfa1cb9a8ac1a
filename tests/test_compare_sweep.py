"""`dpo-doctor compare` on a real sweep: three tiny DPO runs of one reference at beta 0.02 / 0.1 / 0.5
(`zoo.sweep`: the zoo's tiny task, the built-in trainer, 48 steps, a checkpoint every 16), compared on held-out
pairs with a verifiable suite of held-out questions, and every checkpoint graded apart on 64 questions that no scan
and no training saw (`zoo.measure.grade_run`).

The pick-gap test is in the default suite (build, compare and grading: about 2 minutes on 2 idle cores, 8 on a
machine shared with seven other jobs); the console-script run on the sweep and the judge signal reuse the sweep and
run with DPO_DOCTOR_SLOW=1 (the fast console-script checks are in tests/hostile/test_compare_cli.py).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from dpo_doctor.compare import quality
from dpo_doctor.compare.pipeline import CompareConfig, compare
from dpo_doctor.report import load_report
from dpo_doctor.scan.config import ScanConfig
from dpo_doctor.zoo.sweep import SweepConfig, build_sweep, grade_sweep
from tests.hostile.conftest import assert_user_error, run_cli

SLOW = pytest.mark.skipif(os.environ.get("DPO_DOCTOR_SLOW") != "1", reason="slow: set DPO_DOCTOR_SLOW=1")
MAX_PROMPTS = 48  # the whole probe suite (SweepConfig.n_eval questions)


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    return build_sweep(tmp_path_factory.mktemp("sweep") / "sweep", SweepConfig())


def scan_config(sweep: Path) -> ScanConfig:
    return ScanConfig(run_dir=sweep / "runs", data=sweep / "eval.jsonl", ref=sweep / "reference", device="cpu",
                      cache_dir=sweep / "reports" / ".cache", probe_suite=str(sweep / "probes.jsonl"),
                      max_prompts=MAX_PROMPTS)


@pytest.fixture(scope="session")
def compared(sweep) -> Path:
    return compare(CompareConfig(runs=(sweep / "runs",), scan=scan_config(sweep), out=sweep / "compare"))


@SLOW  # builds and grades a 3-run sweep (about 2 minutes idle): run with DPO_DOCTOR_SLOW=1 (CI stays under 20 min)
def test_compare_picks_within_two_points_of_the_best_graded_checkpoint(sweep, compared):
    r = load_report(compared).raw
    best = r["best"]
    assert r["quality"]["signal"] == "task/accuracy" and best["signal"] == "task/accuracy"
    graded = grade_sweep(sweep, sweep / "reports")
    trained = {(run, ck): q for run, cks in graded.items() for ck, q in cks.items() if ck != "reference"}
    assert len(trained) == 9 and None not in trained.values()
    gap = 100 * (max(trained.values()) - trained[(best["run"], best["checkpoint"])])
    assert gap <= 2.0, (best, graded)
    check_report_is_built_from_the_runs_own_scans(sweep, compared)


def check_report_is_built_from_the_runs_own_scans(sweep, compared):
    b = load_report(compared)
    r = b.raw
    assert [x["name"] for x in r["runs"]] == ["beta-0.02", "beta-0.1", "beta-0.5"]
    assert [x["beta"] for x in r["runs"]] == [0.02, 0.1, 0.5] and {x["beta_source"] for x in r["runs"]} == {"dpo_doctor_config.json"}
    assert {x["learning_rate"] for x in r["runs"]} == {5e-4} and {x["lr_source"] for x in r["runs"]} == {"run config"}
    answers = quality.suite_answers(str(sweep / "probes.jsonl"))
    for x in r["runs"]:
        scan = load_report(compared / x["report"])
        assert scan.raw["settings"]["max_pairs"] is None and len(scan.checkpoints) == 3
        for c in scan.checkpoints:  # per-prompt quality averages back to the scan's own task/accuracy
            per = quality.per_prompt(scan.samples, c.name, "task/accuracy", answers)
            assert len(per) == MAX_PROMPTS
            assert per.mean() == pytest.approx(c.metrics["task/accuracy"], abs=1e-12)
    lows = [f["sqrt_kl"] for f in r["frontier"]]
    assert lows == sorted(lows) and r["frontier"][0]["checkpoint"] == "reference"
    ys = [f["y"] for f in r["frontier"]]
    assert ys == sorted(ys) and ys[-1] == pytest.approx(r["best"]["quality"])  # the pick tops the frontier here
    assert 0.02 <= r["recommendation"]["beta"] <= 0.5
    assert b.train_log is not None and set(b.train_log["run"].unique()) == {"beta-0.02", "beta-0.1", "beta-0.5"}


@SLOW
def test_cli_compare_end_to_end(sweep, compared, tmp_path):
    s = scan_config(sweep)
    out = tmp_path / "cli"
    proc = run_cli("compare", sweep / "runs", "--ref", s.ref, "--data", s.data, "--probe-suite", s.probe_suite,
                   "--max-prompts", MAX_PROMPTS, "--device", "cpu", "--cache-dir", s.cache_dir, "--out", out,
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    assert r["best"]["run"] == load_report(compared).raw["best"]["run"]
    assert r["best"]["checkpoint"] == load_report(compared).raw["best"]["checkpoint"]
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert all((out / x["report"] / "report.html").is_file() for x in r["runs"])
    assert f"ship {r['best']['run']}/{r['best']['checkpoint']}" in proc.stdout.replace("\n", " ")
    md = run_cli("report", out, "--format", "md", "--out", "-")
    assert md.returncode == 0 and md.stdout.startswith("## dpo-doctor compare: cli")


@SLOW
def test_runs_of_different_references_are_refused(sweep, tiny_dir, tmp_path):
    """A copy of one run whose config says it was trained from another model: refused with or without --ref."""
    mixed = tmp_path / "mixed"
    shutil.copytree(sweep / "runs" / "beta-0.1", mixed / "a")
    shutil.copytree(sweep / "runs" / "beta-0.5", mixed / "b")
    config = json.loads((mixed / "b" / "dpo_doctor_config.json").read_text())
    config["reference"] = str(tiny_dir)
    (mixed / "b" / "dpo_doctor_config.json").write_text(json.dumps(config))
    data = sweep / "eval.jsonl"
    assert_user_error(run_cli("compare", mixed, "--data", data, "--no-generate"), "trained from", "one reference")
    assert_user_error(run_cli("compare", mixed / "a", mixed / "b", "--ref", sweep / "reference", "--data", data,
                              "--no-generate"), "trained from", str(tiny_dir))


JUDGE = '''
import re
OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}

def right(prompts, completions):
    """1 when the answer's last number is within 9 of the question's result (the task's notion of right)."""
    out = []
    for p, c in zip(prompts, completions):
        a, op, b = re.search(r"(-?\\d+) (plus|minus|times) (-?\\d+)", p).groups()
        found = re.findall(r"-?\\d+", c)
        out.append(float(bool(found) and abs(int(found[-1]) - OPS[op](int(a), int(b))) <= 9))
    return out
'''


@SLOW
def test_a_judge_signal_is_compared_prompt_by_prompt(sweep, tmp_path, monkeypatch):
    """--judge (a module:function) outranks the suite; its per-answer marks (samples.parquet `judge_win`) average to
    each checkpoint's judge/win_rate, and the pick comes from the paired bootstrap over them."""
    (tmp_path / "sweep_judges.py").write_text(JUDGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = compare(CompareConfig(runs=(sweep / "runs",), scan=replace(scan_config(sweep), judge="sweep_judges:right"),
                                out=tmp_path / "judged"))
    r = load_report(out).raw
    assert r["quality"]["signal"] == "judge/win_rate" and r["best"]["signal"] == "judge/win_rate"
    assert "paired difference" in r["best"]["reason"] and r["best"]["p_best"] > 0
    for x in r["runs"]:
        scan = load_report(out / x["report"])
        for c in scan.checkpoints:
            per = quality.per_prompt(scan.samples, c.name, "judge/win_rate", None)
            marks = scan.samples.filter(scan.samples["checkpoint"] == c.name)["judge_win"]
            assert marks.mean() == pytest.approx(c.metrics["judge/win_rate"], abs=1e-12)
            assert len(per) == MAX_PROMPTS
