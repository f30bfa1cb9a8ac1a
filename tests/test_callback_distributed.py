"""DoctorCallback under torchrun (2 gloo CPU processes, TRL's DPOTrainer): every rank takes part in each scan
(no rank waits in a collective while another scores alone), and when the pairs are not visible on every rank (an
output_dir or data folder that is not shared) nothing is scanned during training and rank 0 scans after it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_pairs

SCRIPT = """
import os, sys
from pathlib import Path
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer
import dpo_doctor.scan.pipeline as pipeline
from dpo_doctor import DoctorCallback

model_dir, out, data, train_pairs = sys.argv[1:5]
rank = int(os.environ["RANK"])
real_scan = pipeline.scan
def counted(cfg, progress=None):
    print(f"<scan by rank {rank}>", flush=True)
    return real_scan(cfg, progress)
pipeline.scan = counted
if sys.argv[5] == "hidden" and rank == 1:
    data = data + ".not-on-this-machine"
tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
args = DPOConfig(output_dir=out, use_cpu=True, bf16=False, report_to="none", max_steps=4, save_steps=2,
                 logging_steps=1, per_device_train_batch_size=2, learning_rate=5e-3, beta=0.1, max_length=64,
                 seed=0, save_only_model=True, dataloader_num_workers=0, disable_tqdm=True)
doctor = DoctorCallback(data=data, ref=model_dir, cache_dir=Path(out).parent / f"cache{rank}", strict=True)
trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, processing_class=tok,
                     train_dataset=Dataset.from_json(train_pairs), callbacks=[doctor])
trainer.train()
print(f"rank {rank} done at step {trainer.state.global_step}", flush=True)
"""


def scans(out: str, rank: int) -> int:
    """How many times rank `rank` entered a scan, counted anywhere in the output: the two ranks share stdout and
    print() writes the text and its newline separately, so markers can interleave (two on one line seen once in four
    runs under load). The marker is one the callback's own messages cannot contain."""
    return out.count(f"<scan by rank {rank}>")


@pytest.mark.parametrize("where", ["shared", "hidden"])
def test_two_ranks_share_the_scans_or_rank0_scans_after_training(tmp_path, tiny_dir, where):
    from dpo_doctor.scan.pipeline import ScanConfig, scan

    data, train = tmp_path / "pairs.jsonl", tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(8, seed=6)))
    train.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(16, seed=5)))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29561 + (where == "hidden")), str(script), str(tiny_dir), str(run), str(data), str(train), where]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "rank 0 done at step 4" in out and "rank 1 done at step 4" in out
    if where == "shared":  # both saves scanned by both ranks, together
        assert scans(out, 0) == 2 and scans(out, 1) == 2
        assert "diagnosed in" in out
    else:  # no scan during training; rank 0 alone, once, at the end
        assert "not visible on every rank" in out
        assert scans(out, 0) == 1 and scans(out, 1) == 0
    live = json.loads((run / "dpo-doctor" / "report.json").read_text())
    assert [c["name"] for c in live["checkpoints"]] == ["checkpoint-2", "checkpoint-4"]
    later = scan(ScanConfig(run_dir=run, data=data, ref=tiny_dir, beta=0.1, max_length=64, out=tmp_path / "later",
                            cache_dir=tmp_path / "fresh", generate=False, render=False))
    by_name = {c["name"]: c["metrics"] for c in json.loads((Path(later) / "report.json").read_text())["checkpoints"]}
    for c in live["checkpoints"]:
        for key in ("rewards/margins", "rewards/accuracies", "logps/chosen"):
            assert c["metrics"][key] == pytest.approx(by_name[c["name"]][key], rel=1e-5, abs=1e-6), key
