"""The built-in trainer: a 20-step run writes checkpoints in TRL's layout that load back, and its logs are right."""

import json
from pathlib import Path

import pytest
import torch

from dpo_doctor.errors import UserError
from dpo_doctor.train.trainer import TrainConfig, lr_lambda, train


def _cfg(tiny_dir, pairs_jsonl, out, **kw) -> TrainConfig:
    base = dict(model=str(tiny_dir), data=str(pairs_jsonl), output_dir=str(out), beta=0.1, learning_rate=1e-3,
                batch_size=4, max_steps=20, logging_steps=5, save_steps=10, seed=0, progress=False)
    return TrainConfig(**{**base, **kw})


def test_twenty_steps_write_trl_layout(tiny_dir, pairs_jsonl, tmp_path):
    out = train(_cfg(tiny_dir, pairs_jsonl, tmp_path / "run", eval_data=str(pairs_jsonl), eval_steps=10))
    for d in (out / "checkpoint-10", out / "checkpoint-20", out):
        assert (d / "model.safetensors").exists() and (d / "config.json").exists()
        assert (d / "tokenizer.json").exists() or (d / "tokenizer_config.json").exists()
        cfg = json.loads((d / "dpo_doctor_config.json").read_text())
        assert cfg["trainer"] == "dpo-doctor" and cfg["beta"] == 0.1 and cfg["loss_type"] == "sigmoid"
    text = (out / "checkpoint-10" / "trainer_state.json").read_text()
    state = json.loads(text)
    assert text == json.dumps(state, indent=2, sort_keys=True) + "\n"  # transformers' formatting
    assert state["global_step"] == 10 and [r["step"] for r in state["log_history"]] == [5, 10, 10]
    train_row, eval_row = state["log_history"][1], state["log_history"][2]
    assert set(train_row) == {"loss", "grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected",
                              "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "epoch",
                              "step"}
    assert {"eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_logps/chosen"} <= set(eval_row)
    # margins = chosen - rejected rewards; 12 pairs / batch 4 = 3 updates per epoch
    assert train_row["rewards/margins"] == pytest.approx(train_row["rewards/chosen"] - train_row["rewards/rejected"])
    assert train_row["epoch"] == pytest.approx(10 / 3)
    final = json.loads((out / "trainer_state.json").read_text())
    assert final["log_history"][-1]["train_loss"] > 0 and final["global_step"] == 20
    # lr 1e-3 on 12 pairs: the policy learns the training pairs
    assert final["log_history"][-2]["eval_rewards/margins"] > 0

    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(out / "checkpoint-20")
    m0 = AutoModelForCausalLM.from_pretrained(tiny_dir)
    moved = sum((a - b).abs().sum().item() for a, b in zip(m.parameters(), m0.parameters()))
    assert moved > 0


def test_lr_zero_leaves_the_model_unchanged(tiny_dir, pairs_jsonl, tmp_path):
    """LR 0: weights identical, margins exactly 0 at every log (the no_learning zoo scenario depends on it)."""
    out = train(_cfg(tiny_dir, pairs_jsonl, tmp_path / "run", learning_rate=0.0, max_steps=3, logging_steps=1,
                     save_steps=3))
    rows = [r for r in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in r]
    assert all(r["rewards/margins"] == 0.0 and r["loss"] == pytest.approx(0.6931471805599453) for r in rows)


def test_lora_run_saves_adapter(tiny_dir, pairs_jsonl, tmp_path):
    out = train(_cfg(tiny_dir, pairs_jsonl, tmp_path / "run", lora=True, lora_r=4, lora_alpha=8, max_steps=2,
                     save_steps=2, logging_steps=1))
    assert (out / "checkpoint-2" / "adapter_config.json").exists()
    assert (out / "checkpoint-2" / "adapter_model.safetensors").exists()
    rows = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert rows[0]["rewards/margins"] == 0.0  # LoRA B starts at 0: the first step's policy is the reference


def test_warmup_then_linear_decay_like_hf():
    f = lr_lambda(warmup=2, total=6)
    assert [f(s) for s in range(7)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_unknown_loss_suggests(tiny_dir, pairs_jsonl, tmp_path):
    with pytest.raises(UserError, match="did you mean sigmoid"):
        train(_cfg(tiny_dir, pairs_jsonl, tmp_path, loss="sigmod"))
