"""The generation-probe stage (scan/probes.py) on its own contract: metrics returned (not written into shared
state), samples cached per model, a damaged cache entry sampled again with a note."""

from __future__ import annotations

import json

import polars as pl

from dpo_doctor.scan.config import ScanConfig
from dpo_doctor.scan.pipeline import scan


def _cfg(tmp_path, tiny_dir, pairs_jsonl, out="rep"):
    return ScanConfig(run_dir=tiny_dir, ref=tiny_dir, data=pairs_jsonl, out=tmp_path / out, cache_dir=tmp_path / "cache",
                      max_prompts=3, samples_per_prompt=2, max_new_tokens=6, render=False)


def test_probe_metrics_samples_and_damaged_cache(tmp_path, tiny_dir, pairs_jsonl):
    report = json.loads((scan(_cfg(tmp_path, tiny_dir, pairs_jsonl)) / "report.json").read_text())
    (ckpt,) = report["checkpoints"]
    # the checkpoint is the reference itself: its samples are the reference's, so KL is exactly 0
    assert ckpt["metrics"]["gen/kl_mean"] == 0.0 and ckpt["metrics"]["gen/length_ratio"] == 1.0
    assert "gen/kl_mean" in report["reference"]["metrics"] and "gen/kl_mean" in report["metric_info"]
    samples = pl.read_parquet(tmp_path / "rep" / "samples.parquet")
    assert set(samples["checkpoint"]) == {"reference", ckpt["name"]}
    run = samples.filter(pl.col("probe_set") == "run")
    assert run.filter(pl.col("checkpoint") == "reference").height == 3 * (2 + 1)  # + one greedy per prompt
    # the default quality suite (32 prompts) is sampled on the reference first; a tiny random model does not score
    # above chance on it, so the checkpoints skip it and the verdict says quality was not measured, and why
    suite = samples.filter(pl.col("probe_set") == "suite")
    assert set(suite["checkpoint"]) == {"reference"} and suite.height == 32 * (2 + 1)
    assert suite["prompt_id"].min() == 3  # after the run's own prompts: ids stay unique in the table
    quality = report["settings"]["quality"]
    assert quality["suite"] == "default" and quality["default_suite"] and quality["informative"] is False
    assert quality["signal"] is None and "task/accuracy" not in ckpt["metrics"]
    assert report["reference"]["metrics"]["task/informative"] == 0.0
    assert report["verdict_record"]["quality_measured"] is False
    assert "default quality suite not informative for this model: reference scored" in report["summary"]

    entries = sorted((tmp_path / "cache" / "samples").glob("*.parquet"))
    assert entries, "samples were not cached"
    for e in entries:
        e.write_bytes(b"PAR1 junk")
    again = json.loads((scan(_cfg(tmp_path, tiny_dir, pairs_jsonl, "rep2")) / "report.json").read_text())
    assert any("samples cache entry" in w and "damaged" in w for w in again["warnings"])
    assert again["checkpoints"][0]["metrics"]["gen/kl_mean"] == 0.0
    assert all(pl.read_parquet(e).height > 0 for e in entries)  # replaced by good entries
