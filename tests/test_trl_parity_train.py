"""The built-in trainer agrees with TRL's DPOTrainer: same tiny model, data, seed and settings.

Batch size = number of pairs, so both trainers see the same single batch every step whatever their shuffling.
Step 1 checks the loss, log-probs and gradient norm (the policy equals the reference, so rewards are exactly 0);
step 2 checks everything after one AdamW update (rewards, margins, accuracies, log-probs, loss, learning rate).
TRL runs in a subprocess: Accelerate's state is a process-wide singleton.
"""

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("trl")

from dpo_doctor.train.trainer import TrainConfig, train  # noqa: E402

KEYS = ("loss", "grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected", "rewards/margins",
        "rewards/accuracies", "logps/chosen", "logps/rejected", "epoch", "step")
N_PAIRS, LR, BETA, SEED = 12, 1e-3, 0.1, 0

TRL_SCRIPT = textwrap.dedent("""
    import json, sys
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    model_dir, data, out, loss = sys.argv[1:5]
    rows = [json.loads(line) for line in open(data)]
    args = DPOConfig(output_dir=out, bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
                     logging_steps=1, max_steps=2, learning_rate=%(lr)r, per_device_train_batch_size=%(n)d,
                     disable_dropout=True, seed=%(seed)d, beta=%(beta)r, loss_type=[loss], save_strategy="no",
                     max_length=None)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                         ref_model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                         train_dataset=Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.train()
    print("RESULT " + json.dumps(trainer.state.log_history))
""") % {"lr": LR, "n": N_PAIRS, "seed": SEED, "beta": BETA}


def trl_history(tiny_dir, data, tmp_path, loss: str) -> list[dict]:
    script = tmp_path / "trl_run.py"
    script.write_text(TRL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tiny_dir), str(data), str(tmp_path / "trl"), loss],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_matches_trl(loss, tiny_dir, pairs_jsonl, tmp_path):
    data = pairs_jsonl  # 12 pairs
    assert len(data.read_text().splitlines()) == N_PAIRS
    theirs = trl_history(tiny_dir, data, tmp_path, loss)
    out = train(TrainConfig(model=str(tiny_dir), data=str(data), output_dir=str(tmp_path / "ours"), loss=loss,
                            beta=BETA, learning_rate=LR, batch_size=N_PAIRS, max_steps=2, logging_steps=1,
                            save_steps=10, seed=SEED, max_length=None, progress=False))
    ours = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert ours[0]["loss"] == pytest.approx(0.6931471805599453 if loss == "sigmoid" else 1 / (2 * BETA) ** 2)
    for step in (0, 1):
        for key in KEYS:
            assert ours[step][key] == pytest.approx(theirs[step][key], rel=1e-4, abs=1e-6), (step, key)
    assert ours[1]["rewards/margins"] > 0.01  # step 2 is a real comparison, not 0 == 0
