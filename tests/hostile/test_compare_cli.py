"""`dpo-doctor compare` bad input through the installed console script: one line, exit 2, before any model."""

from __future__ import annotations

from tests.hostile.conftest import assert_user_error, run_cli


def runs(tmp_path, *names):
    for n in names:
        (tmp_path / n / "checkpoint-1").mkdir(parents=True)
    return [tmp_path / n for n in names]


def test_one_run_is_refused(tmp_path):
    (a,) = runs(tmp_path, "a")
    assert_user_error(run_cli("compare", a, "--data", tmp_path / "p.jsonl"), "at least two runs", "dpo-doctor scan")


def test_a_sweep_folder_of_one_run_is_refused(tmp_path):
    runs(tmp_path / "sweep", "a")
    assert_user_error(run_cli("compare", tmp_path / "sweep", "--data", tmp_path / "p.jsonl"), "at least two runs")


def test_missing_run_dir(tmp_path):
    a, b = runs(tmp_path, "a", "b")
    assert_user_error(run_cli("compare", a, tmp_path / "nope", "--data", tmp_path / "p.jsonl"), "nope",
                      "does not exist")


def test_a_folder_that_is_no_run(tmp_path):
    (a,) = runs(tmp_path, "a")
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("compare", a, tmp_path / "empty", "--data", tmp_path / "p.jsonl"), "neither a run")


def test_data_is_required_and_log_refused(tmp_path):
    a, b = runs(tmp_path, "a", "b")
    assert_user_error(run_cli("compare", a, b), "--data")
    assert_user_error(run_cli("compare", a, b, "--data", tmp_path / "p.jsonl", "--log", tmp_path / "log.json"),
                      "--log", "each run's own log")


def test_missing_data_file(tmp_path):
    a, b = runs(tmp_path, "a", "b")
    assert_user_error(run_cli("compare", a, b, "--data", tmp_path / "p.jsonl"), "--data", "p.jsonl")
