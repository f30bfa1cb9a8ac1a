"""`dpo-doctor compare` bad input through the installed console script: one line, exit 2, before any model."""

from __future__ import annotations

import shutil

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


def perturbed_run(root, tiny_dir, scales, reference=None, seed=0):
    """A run dir of `checkpoint-N/` copies of the tiny model, each N-th weights nudged by Gaussian noise x scale
    (a stand-in for training, seconds instead of minutes); `reference` is written to our trainer's config."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tiny_dir / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    for step, scale in enumerate(scales, start=1):
        ck = root / f"checkpoint-{step}"
        shutil.copytree(tiny_dir, ck)
        save_file({k: v + scale * torch.randn(v.shape, generator=gen) for k, v in weights.items()},
                  str(ck / "model.safetensors"), metadata={"format": "pt"})
    if reference is not None:
        (root / "dpo_doctor_config.json").write_text(json.dumps({"reference": str(reference), "beta": 0.1,
                                                                 "learning_rate": 1e-5}))
    return root


def test_compare_end_to_end_through_the_console_script(tmp_path, tiny_dir, pairs_jsonl):
    import json

    sweep = tmp_path / "sweep"
    perturbed_run(sweep / "a", tiny_dir, [0.01, 0.02], reference=tiny_dir)
    perturbed_run(sweep / "b", tiny_dir, [0.03, 0.06], reference=tiny_dir, seed=1)
    out = tmp_path / "cmp"
    proc = run_cli("compare", sweep, "--data", pairs_jsonl, "--no-generate", "--cache-dir", tmp_path / "cache",
                   "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    assert r["kind"] == "compare" and [x["name"] for x in r["runs"]] == ["a", "b"]
    assert [x["beta_source"] for x in r["runs"]] == ["dpo_doctor_config.json"] * 2 and r["runs"][0]["learning_rate"] == 1e-5  # beta: the file it was read from
    assert (out / "report.html").is_file() and (out / "runs" / "a" / "report.html").is_file()
    assert "compare" in proc.stdout and "next run" in proc.stdout
    md = run_cli("report", out, "--format", "md", "--out", "-")
    assert md.returncode == 0 and "dpo-doctor compare: cmp" in md.stdout


def test_runs_of_different_references_are_refused_before_scanning(tmp_path, tiny_dir, pairs_jsonl):
    other = tmp_path / "other-sft"
    perturbed_run(tmp_path / "o", tiny_dir, [0.5])
    shutil.copytree(tmp_path / "o" / "checkpoint-1", other)
    perturbed_run(tmp_path / "s" / "a", tiny_dir, [0.01], reference=tiny_dir)
    perturbed_run(tmp_path / "s" / "b", tiny_dir, [0.01], reference=other)
    proc = run_cli("compare", tmp_path / "s", "--data", pairs_jsonl, "--no-generate", "--out", tmp_path / "c")
    assert_user_error(proc, "trained from", "other-sft", "one reference")
    proc = run_cli("compare", tmp_path / "s" / "a", tmp_path / "s" / "b", "--ref", tiny_dir, "--data", pairs_jsonl,
                   "--no-generate", "--out", tmp_path / "c")
    assert_user_error(proc, "trained from", "other-sft", "--ref")
    assert not (tmp_path / "c" / "report.json").exists()
