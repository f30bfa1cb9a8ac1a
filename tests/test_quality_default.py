"""Quality by default (issue 20): the measured chance level of a suite, when a suite is informative for a model,
`--prompts` together with a verifiable `--probe-suite`, `--no-quality`, and `dpo-doctor suite make`."""

from __future__ import annotations

import json

import polars as pl
import pytest

from dpo_doctor.data.suites import load_suite
from dpo_doctor.errors import UserError
from dpo_doctor.metrics.task_accuracy import chance_per_prompt, check_contains, informativeness, per_prompt
from dpo_doctor.scan.config import ScanConfig, check_config
from dpo_doctor.scan.pipeline import scan

from tests.hostile.conftest import assert_user_error, run_cli


def _samples(texts: dict[int, list[str]]) -> pl.DataFrame:
    rows = [(pid, i == 0, t) for pid, ts in texts.items() for i, t in enumerate(ts)]
    return pl.DataFrame({"prompt_id": [r[0] for r in rows], "greedy": [r[1] for r in rows],
                         "text": [r[2] for r in rows]})


def test_chance_is_the_check_applied_to_the_other_prompts_answers():
    """A model that always says A on three choice prompts (answers A, B, A): it scores 1, 0.5, 1, but an answer
    that ignores its prompt scores 3/4, 0/4, 3/4 (the other prompts' answers: A,B,A,A / A,A,A,A / A,A,A,B). Mean
    chance 0.5; 3 prompts ahead, none behind: sign test p = 2/8 = 0.25, so not informative."""
    answers = [("A", "choice", 0.0), ("B", "choice", 0.0), ("A", "choice", 0.0)]
    samples = _samples({0: ["A", "A"], 1: ["A", "B"], 2: ["A", "A"]})
    assert per_prompt(samples, answers) == [1.0, 0.5, 1.0]
    assert chance_per_prompt(samples, answers) == [0.75, 0.0, 0.75]
    assert informativeness(samples, answers) == {"task/chance": 0.5, "task/informative": 0.0}


def test_a_model_that_answers_the_questions_is_informative():
    """12 sums answered right: accuracy 1, chance 0 (no other question has the same sum): 12 of 12 ahead,
    p = 2/4096."""
    answers = [(str(10 + i), "numeric", 0.0) for i in range(12)]
    samples = _samples({i: [f"It is {10 + i}.", str(10 + i)] for i in range(12)})
    assert informativeness(samples, answers) == {"task/chance": 0.0, "task/informative": 1.0}
    wrong = _samples({i: ["no idea", "7"] for i in range(12)})
    assert informativeness(wrong, answers)["task/informative"] == 0.0


def test_contains_check():
    assert check_contains("The capital is Paris, of course.", "paris")
    assert check_contains("It is New York City", "new york")
    assert not check_contains("Parisian food", "Paris") and not check_contains("anything", "")


def test_default_suite_is_shipped_and_mixed():
    suite = load_suite("default")
    checks = [t.check for t in suite.tasks]
    assert len(suite.prompts) == 32 and suite.manifest["n_prompts"] == 32
    assert checks.count("choice") == 10 and checks.count("numeric") == 10
    assert checks.count("regex") + checks.count("json_key") == 12


def test_prompts_with_a_prompt_only_suite_is_refused(tmp_path, tiny_dir, pairs_jsonl, monkeypatch):
    """Refused when the suite is read (once, in the pipeline, before any model loads): check_config reads no file."""
    from dpo_doctor.scan import pipeline

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    cfg = ScanConfig(run_dir=tiny_dir, ref=tiny_dir, data=pairs_jsonl, prompts=prompts, probe_suite="open_ended",
                     out=tmp_path / "rep", cache_dir=tmp_path / "cache")
    check_config(cfg)  # flags alone are fine
    monkeypatch.setattr(pipeline, "_context", lambda *a: pytest.fail("a model context was built"))
    with pytest.raises(UserError, match="both name the prompts to sample"):
        scan(cfg)


def test_prompts_and_a_verifiable_suite_combine(tmp_path, tiny_dir, pairs_jsonl):
    """--prompts probes the run (gen/*), the user's suite is graded (task/*, per-prompt scores) on the reference
    and the checkpoint: both, never one instead of the other."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello there"}\n{"prompt": "tell me"}\n')
    suite = tmp_path / "s.jsonl"
    suite.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1), "check": "numeric"})
                             + "\n" for i in range(3)))
    cfg = ScanConfig(run_dir=tiny_dir, ref=tiny_dir, data=pairs_jsonl, prompts=prompts, probe_suite=str(suite),
                     out=tmp_path / "rep", cache_dir=tmp_path / "cache", samples_per_prompt=1, max_new_tokens=4,
                     render=False)
    report = json.loads((scan(cfg) / "report.json").read_text())
    samples = pl.read_parquet(tmp_path / "rep" / "samples.parquet")
    run = samples.filter(pl.col("probe_set") == "run")
    assert sorted(set(run["prompt"])) == ["hello there", "tell me"]
    graded = samples.filter(pl.col("probe_set") == "suite")
    assert set(graded["checkpoint"]) == {"reference", report["checkpoints"][0]["name"]}
    (ckpt,) = report["checkpoints"]
    assert ckpt["metrics"]["task/n_prompts"] == 3.0 and "gen/kl_mean" in ckpt["metrics"]
    assert len(ckpt["per_prompt"]["task/accuracy"]) == 3
    assert report["settings"]["quality"]["signal"] == "task/accuracy" and report["verdict_record"]["quality_measured"]


def test_no_quality_skips_the_default_suite(tmp_path, tiny_dir, pairs_jsonl):
    cfg = ScanConfig(run_dir=tiny_dir, ref=tiny_dir, data=pairs_jsonl, out=tmp_path / "rep", quality=False,
                     cache_dir=tmp_path / "cache", max_prompts=2, samples_per_prompt=1, max_new_tokens=4, render=False)
    report = json.loads((scan(cfg) / "report.json").read_text())
    samples = pl.read_parquet(tmp_path / "rep" / "samples.parquet")
    assert set(samples["probe_set"]) == {"run"} and "task/accuracy" not in report["reference"]["metrics"]
    assert report["verdict"] == "no-failure-found" and "(--no-quality)" in report["summary"]


def test_suite_make_cli_round_trip(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [{"q": "What is 2 + 2?", "a": 4},
                                                            {"q": "What is 3 + 5?", "a": "8"},
                                                            {"q": "What is 2 + 2?", "a": 4}]))
    out = tmp_path / "my_suite"
    proc = run_cli("suite", "make", data, "--prompt-col", "q", "--answer-col", "a", "--check", "numeric",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    suite = load_suite(str(out))
    assert suite.verifiable and suite.name == "my_suite"
    assert suite.answers == (("4", "numeric", 0.0), ("8", "numeric", 0.0))  # the repeated question kept once
    assert_user_error(run_cli("suite", "make", data, "--prompt-col", "question", "--answer-col", "a", "--out",
                              tmp_path / "x"), "--prompt-col question", "columns: a, q")
    assert_user_error(run_cli("suite", "make", data, "--prompt-col", "q", "--answer-col", "a", "--check", "numerc",
                              "--out", tmp_path / "x"), "numeric")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": "What?", "a": "many"}) + "\n")
    assert_user_error(run_cli("suite", "make", bad, "--prompt-col", "q", "--answer-col", "a", "--check", "numeric",
                              "--out", tmp_path / "x"), "row 1", "not a number")
