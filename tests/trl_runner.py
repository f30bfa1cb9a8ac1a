"""Train a tiny model with TRL's DPOTrainer and record `trainer.evaluate()` (run in a subprocess: Accelerate's
state is a process-wide singleton, so each TRL configuration gets its own process).

usage: python tests/trl_runner.py MODEL_DIR TRAIN.jsonl EVAL.jsonl OUT_DIR {full|lora} RESULT.json [BETA]
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main(model_dir, train_path, eval_path, out_dir, mode, result_path, beta="0.1"):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    data = load_dataset("json", data_files={"train": train_path, "eval": eval_path})
    args = DPOConfig(output_dir=out_dir, bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
                     max_steps=4, save_steps=4, logging_steps=1, per_device_train_batch_size=4,
                     per_device_eval_batch_size=4, learning_rate=5e-3 if mode == "lora" else 1e-3, beta=float(beta),
                     max_length=64, seed=0, save_only_model=True, dataloader_num_workers=0)
    peft_config = None
    if mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["eval"],
                         processing_class=tok, peft_config=peft_config)
    trainer.train()
    metrics = trainer.evaluate()
    with open(result_path, "w") as f:
        json.dump(metrics, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
