"""An OpenRLHF DPO run scanned end to end through the console script.

Layout as openrlhf/cli/train_dpo.py leaves it (OpenRLHF 2026-08): the final HF model in --ckpt.output_dir (config.json,
model.safetensors, tokenizer), DeepSpeed checkpoints in --ckpt.path (`checkpoints_dpo/global_stepN/`, `latest`,
`zero_to_fp32.py`), and TensorBoard events in <tensorboard_dir>/<run_name>/ with OpenRLHF's `train/<key>` scalars.
"""

from __future__ import annotations

import json
import math

import pytest
from safetensors.torch import save_file

from tests.hostile.conftest import run_cli
from tests.test_zero import copy_model_files, trained, write_zero

pytest.importorskip("tensorboardX")

LN2 = math.log(2)


def write_openrlhf_log(folder, steps: int = 12) -> None:
    """DPOTrainer.save_logs_and_checkpoints: add_scalar(f"train/{k}", v, global_step) for its logs_dict keys; the
    loss stays at ln 2 (rewards pinned at 0, as with beta = 0 or a reference equal to the policy)."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(logdir=str(folder))
    for step in range(1, steps + 1):
        logs = {"loss": LN2 + 1e-5 * (-1) ** step, "acc": 0.0, "chosen_reward": 0.0, "reject_reward": 0.0,
                "lr": 5e-7, "grad_norm": 1.5, "loss_mean": LN2, "acc_mean": 0.0}
        for key, value in logs.items():
            writer.add_scalar(f"train/{key}", value, step)
    writer.close()


@pytest.fixture()
def openrlhf_run(tmp_path, tiny_dir):
    run = tmp_path / "ckpt"  # --ckpt.output_dir ./ckpt
    copy_model_files(tiny_dir, run)
    save_file(trained(tiny_dir, seed=3), str(run / "model.safetensors"), metadata={"format": "pt"})
    for step, seed in ((4, 1), (8, 2)):  # --ckpt.path ./ckpt/checkpoints_dpo, ZeRO-2 on 2 ranks, bf16
        write_zero(run / "checkpoints_dpo", trained(tiny_dir, seed=seed), 2, 2, step)
    (run / "checkpoints_dpo" / "latest").write_text("global_step8")
    write_openrlhf_log(run / "tensorboard" / "dpo_tiny")  # --logger.tensorboard_dir ./ckpt/tensorboard
    return run


def test_openrlhf_run_end_to_end(tmp_path, tiny_dir, pairs_jsonl, openrlhf_run):
    cache = tmp_path / "cache"
    out = tmp_path / "report"
    proc = run_cli("scan", openrlhf_run, "--ref", tiny_dir, "--data", pairs_jsonl, "--no-generate", "--trust-pickles",
                   "--out", out, "--cache-dir", cache, env={"DPO_DOCTOR_CACHE": str(cache)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("converting") == 2  # the two ZeRO checkpoints, once each

    report = json.loads((out / "report.json").read_text())
    names = [c["name"] for c in report["checkpoints"]]
    assert names == ["global_step4", "global_step8", "final"]
    for ckpt in report["checkpoints"]:  # every checkpoint scored, and moved away from the reference
        assert ckpt["metrics"]["rewards/margins"] is not None and ckpt["metrics"]["drift/chosen"] != 0
    kinds = {c["name"]: c["kind"] for c in report["checkpoints"]}
    assert kinds == {"global_step4": "zero", "global_step8": "zero", "final": "full"}
    assert report["run"]["framework"] == "openrlhf"
    codes = {d["code"] for d in report["diagnoses"]}
    assert "DPO201" in codes, codes

    from dpo_doctor.report import load_report

    pairs = load_report(out).pairs
    assert set(pairs["checkpoint"].unique()) == set(names)
    assert pairs["logp_chosen"].is_finite().all()
    step4 = pairs.filter(pairs["checkpoint"] == "global_step4")["logp_chosen"].to_list()
    step8 = pairs.filter(pairs["checkpoint"] == "global_step8")["logp_chosen"].to_list()
    assert step4 != step8  # two different ZeRO checkpoints, two different models


def test_openrlhf_run_without_trust_scans_the_final_model_and_says_why(tmp_path, tiny_dir, pairs_jsonl,
                                                                         openrlhf_run):
    out = tmp_path / "report"
    proc = run_cli("scan", openrlhf_run, "--ref", tiny_dir, "--data", pairs_jsonl, "--no-generate", "--out", out,
                   "--cache-dir", tmp_path / "cache", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["checkpoints"]] == ["final"]
    assert any("--trust-pickles" in w and "global_step4" in w for w in report["warnings"])
