"""The scan pipeline end to end on tiny runs: report contract, cache (K+1 passes, incremental), interrupt/resume,
sanity checks and the CLI's bad-input behaviour (one line, exit code 2)."""

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest
import torch

from dpo_doctor.scan.pipeline import ScanConfig, scan


def make_run(root, tiny_dir, steps=(2, 4), scale=0.02):
    """A run whose checkpoints are the reference with growing random perturbations (a stand-in for training)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(tiny_dir)
    for step in steps:
        model = AutoModelForCausalLM.from_pretrained(tiny_dir)
        g = torch.Generator().manual_seed(step)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * scale * step)
        model.save_pretrained(root / f"checkpoint-{step}")
        tok.save_pretrained(root / f"checkpoint-{step}")
    return root


def cfg(tmp_path, run, data, **kw):
    return ScanConfig(run_dir=run, data=data, ref=kw.pop("ref", None), out=tmp_path / "rep",
                      cache_dir=kw.pop("cache_dir", tmp_path / "cache"), generate=kw.pop("generate", False), render=False, **kw)


def test_report_contract_and_cache(tmp_path, tiny_dir, pairs_jsonl):
    run = make_run(tmp_path / "run", tiny_dir)
    out = scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir))
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1 and report["run"]["beta"] == 0.1 and report["run"]["beta_source"] == "default 0.1"
    assert [c["name"] for c in report["checkpoints"]] == ["checkpoint-2", "checkpoint-4"]
    assert [c["step"] for c in report["checkpoints"]] == [2, 4]
    for key in ("rewards/chosen", "rewards/margins", "rewards/accuracies", "logps/chosen", "accuracy/ranking"):
        assert isinstance(report["checkpoints"][0]["metrics"][key], float)
    assert isinstance(report["diagnoses"], list)
    assert report["settings"]["scored"] == ["reference", "checkpoint-2", "checkpoint-4"]  # K+1 passes
    import polars as pl

    pairs = pl.read_parquet(out / "pairs.parquet")
    assert pairs.height == 2 * 12 and set(pairs["checkpoint"]) == {"checkpoint-2", "checkpoint-4"}

    timings = report["timings"]  # where the time went: per stage and per model, stages not overlapping
    assert {"startup", "discovery", "data", "loading", "pair_scoring", "metrics_rules"} <= set(timings["stages"])
    assert set(timings["checkpoints"]) == {"reference", "checkpoint-2", "checkpoint-4"}
    assert all(set(t) == {"cache", "loading", "pair_scoring"} and min(t.values()) > 0
               for t in timings["checkpoints"].values())
    assert timings["stages"]["loading"] == pytest.approx(sum(t["loading"] for t in timings["checkpoints"].values()), abs=1e-3)
    assert sum(timings["stages"].values()) <= timings["total_s"] + 1e-3

    again = json.loads((scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir)) / "report.json").read_text())
    assert again["settings"]["scored"] == [] and len(again["settings"]["from_cache"]) == 3
    assert again["checkpoints"] == report["checkpoints"]
    assert "loading" not in again["timings"]["stages"]  # all cached: no model loaded, only the lookups
    assert {name: set(t) for name, t in again["timings"]["checkpoints"].items()} == {
        name: {"cache"} for name in ("reference", "checkpoint-2", "checkpoint-4")}

    make_run(run, tiny_dir, steps=(6,))
    third = json.loads((scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir)) / "report.json").read_text())
    assert third["settings"]["scored"] == ["checkpoint-6"]
    assert [c["step"] for c in third["checkpoints"]] == [2, 4, 6]


def test_interrupt_keeps_scores_and_resumes(tmp_path, tiny_dir, pairs_jsonl):
    run = make_run(tmp_path / "run", tiny_dir, steps=(2,))
    calls = []

    def interrupt(stage, done, total):
        calls.append(stage)
        if stage == "scoring checkpoint-2":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir, batch_size="2"), progress=interrupt)
    resumed = json.loads((scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir)) / "report.json").read_text())
    assert "reference" in resumed["settings"]["from_cache"]  # finished before the interrupt
    assert resumed["settings"]["scored"] == ["checkpoint-2"]  # resumed from its partial entry
    clean = json.loads((scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir, cache_dir=tmp_path / "c2"))
                        / "report.json").read_text())
    for k, v in clean["checkpoints"][0]["metrics"].items():
        assert resumed["checkpoints"][0]["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_checkpoint_equal_to_reference_is_flagged(tmp_path, tiny_dir, pairs_jsonl):
    run = tmp_path / "run"
    shutil.copytree(tiny_dir, run / "checkpoint-5")
    report = json.loads((scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir)) / "report.json").read_text())
    m = report["checkpoints"][0]["metrics"]
    assert m["rewards/margins"] == 0.0 and m["rewards/accuracies"] == 0.0  # strict >: ties count 0, as in TRL
    assert any("nothing was trained" in w for w in report["warnings"])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dpo_doctor", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, tiny_dir, pairs_jsonl):
    run = make_run(tmp_path / "run", tiny_dir, steps=(2,))
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text(pairs_jsonl.read_text().splitlines()[0] + "\n{oops\n")
    cols = tmp_path / "cols.jsonl"
    cols.write_text('{"question": "a", "answer": "b"}\n')
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    st = corrupt / "checkpoint-2" / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    common = ["--cache-dir", tmp_path / "cache", "--out", tmp_path / "o", "--no-generate", "--no-render"]
    cases = [
        (["scan", tmp_path / "missing", "--data", pairs_jsonl, "--ref", tiny_dir], "missing"),
        (["scan", empty_dir, "--data", pairs_jsonl, "--ref", tiny_dir], "No checkpoints found"),
        (["scan", run, "--data", empty, "--ref", tiny_dir], "empty"),
        (["scan", run, "--data", bad_line, "--ref", tiny_dir], "bad.jsonl: line 2"),
        (["scan", run, "--data", cols, "--ref", tiny_dir], "chosen"),
        (["scan", corrupt, "--data", pairs_jsonl, "--ref", tiny_dir], "model.safetensors"),
        (["scan", run, "--data", pairs_jsonl, "--ref", tiny_dir, "--beta", "-1"], "beta"),
    ]
    for args, needle in cases:
        proc = run_cli(*args, *common)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("dpo-doctor: error")]
        assert len(lines) == 1 and needle.lower() in lines[0].lower(), (needle, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr


def test_scan_with_generation_probes(tmp_path, tiny_dir, pairs_jsonl):
    """Generation probes fill gen/* metrics and samples.parquet; the cache makes a re-scan generate nothing new."""
    import polars as pl

    run = make_run(tmp_path / "run", tiny_dir, steps=(3,))
    c = ScanConfig(run_dir=run, data=pairs_jsonl, ref=tiny_dir, out=tmp_path / "rep", cache_dir=tmp_path / "cache",
                   render=False, max_prompts=4, samples_per_prompt=2, max_new_tokens=8)
    report = json.loads((scan(c) / "report.json").read_text())
    m = report["checkpoints"][0]["metrics"]
    for key in ("gen/kl_mean", "gen/length_ratio", "gen/ead_per_input", "drift/kl_on_data_per_token"):
        assert m[key] is not None and m[key] >= 0, key
    assert report["reference"]["metrics"]["gen/length_ratio"] == pytest.approx(1.0)
    assert m["gen/kl_mean"] > 0  # a perturbed checkpoint differs from its reference
    samples = pl.read_parquet(tmp_path / "rep" / "samples.parquet")
    assert set(samples["checkpoint"]) == {"reference", "checkpoint-3"}
    assert samples.filter(pl.col("checkpoint") == "reference")["kl"].abs().max() == 0.0
    again = json.loads((scan(c) / "report.json").read_text())
    assert again["checkpoints"][0]["metrics"] == pytest.approx(m, nan_ok=True)
    assert again["settings"]["scored"] == []


@pytest.mark.parametrize("generate", [False, True], ids=["pairs", "pairs+generation"])
def test_distributed_two_ranks_match_one(tmp_path, tiny_dir, pairs_jsonl, generate):
    """torchrun with 2 CPU processes (gloo) writes the single-process report, to float tolerance: pairs sharded,
    and with generation probes the prompts too (the samples table is the single-process one, row for row)."""
    run = make_run(tmp_path / "run", tiny_dir, steps=(2, 4))
    gen = {"generate": True, "max_prompts": 5, "samples_per_prompt": 2, "max_new_tokens": 8} if generate else {}
    single = scan(cfg(tmp_path, run, pairs_jsonl, ref=tiny_dir, **gen))
    flags = ["--max-prompts", "5", "--samples-per-prompt", "2", "--max-new-tokens", "8"] if generate else \
        ["--no-generate"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(29517 + int(generate)), "-m", "dpo_doctor", "scan", str(run), "--data",
           str(pairs_jsonl), "--ref", str(tiny_dir), "--out", str(tmp_path / "dist"), "--cache-dir",
           str(tmp_path / "dcache"), "--no-render", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                                 "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((single / "report.json").read_text())
    b = json.loads((tmp_path / "dist" / "report.json").read_text())
    assert [c["name"] for c in a["checkpoints"]] == [c["name"] for c in b["checkpoints"]]
    for ca, cb in zip(a["checkpoints"], b["checkpoints"]):
        assert set(ca["metrics"]) == set(cb["metrics"])
        assert any(k.startswith("gen/") for k in ca["metrics"]) == generate
        for k, v in ca["metrics"].items():
            assert cb["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    if generate:
        sa, sb = (pl.read_parquet(p / "samples.parquet") for p in (single, tmp_path / "dist"))
        run_rows = sa.filter(pl.col("probe_set") == "run").height  # reference + 2 checkpoints, 5 x (2 + greedy)
        assert run_rows == 3 * 5 * 3 and sa.height == sb.height == run_rows + 32 * 3  # + the default suite (ref)
        assert sa["text"].to_list() == sb["text"].to_list()
        assert sa["kl"].to_list() == pytest.approx(sb["kl"].to_list(), rel=1e-5, abs=1e-6)


def test_log_only_scan_from_trainer_state(tmp_path):
    """No --data: diagnoses from trainer_state.json alone, flagged log-only (loss stuck at ln 2 -> no learning)."""
    run = tmp_path / "run"
    run.mkdir()
    history = [{"step": s, "epoch": s / 100, "loss": 0.6931, "rewards/margins": 0.0, "rewards/accuracies": 0.0,
                "rewards/chosen": 0.0, "rewards/rejected": 0.0, "learning_rate": 1e-6} for s in range(10, 110, 10)]
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 100, "log_history": history}))
    report = json.loads((scan(ScanConfig(run_dir=run, data=None, out=tmp_path / "rep", render=False))
                         / "report.json").read_text())
    assert report["log_only"] is True and report["checkpoints"] == []
    assert "no_learning" in [d["kind"] for d in report["diagnoses"]]
    empty = tmp_path / "empty"
    empty.mkdir()
    from dpo_doctor.errors import UserError

    with pytest.raises(UserError, match="no trainer_state.json"):
        scan(ScanConfig(run_dir=empty, data=None, out=tmp_path / "rep2", render=False))
