"""Parity with TRL: a run trained by TRL's DPOTrainer at beta 0.05 (not TRL's default), scanned by the installed
`dpo-doctor` with no --beta, gives TRL's own `evaluate()` numbers on the same eval pairs (1e-4 relative), for full
fine-tuning and for LoRA: beta comes from the run's training_args.bin, read without unpickling."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_pairs
from tests.hostile.conftest import run_cli

KEYS = ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"]
BETA = 0.05


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_scan_matches_trl_evaluate(tmp_path, tiny_dir, mode):
    train, evalp = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(16, seed=5)))
    evalp.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(8, seed=6)))  # 2 full eval batches of 4
    run, result = tmp_path / "run", tmp_path / "trl_eval.json"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "tests" / "trl_runner.py"), str(tiny_dir), str(train), str(evalp),
                           str(run), mode, str(result), str(BETA)], capture_output=True, text=True, cwd=root,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trl = json.loads(result.read_text())

    out = tmp_path / "rep"
    proc = run_cli("scan", run, "--data", evalp, "--ref", tiny_dir, "--max-length", 64, "--out", out,
                   "--cache-dir", tmp_path / "cache", "--no-generate", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["beta"] == BETA
    assert report["run"]["beta_source"] == "training_args.bin (read without unpickling)"
    assert report["run"]["loss_type"] == "sigmoid"
    assert not any("beta" in w for w in report["warnings"]), report["warnings"]
    final = report["checkpoints"][-1]
    assert final["step"] == 4
    for key in KEYS:
        ours, theirs = final["metrics"][key], trl[f"eval_{key}"]
        assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-6), (key, ours, theirs)
    assert abs(final["metrics"]["rewards/margins"]) > 1e-3  # the run really moved away from the reference
    print(json.dumps({"mode": mode, **{k: [final["metrics"][k], trl[f"eval_{k}"]] for k in KEYS}}))
