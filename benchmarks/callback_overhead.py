"""DoctorCallback overhead: the same tiny TRL DPOTrainer run with the callback off and on.

A tiny Llama from `dpo_doctor.zoo.tiny` (built locally, no hub), full fine-tuning on CPU, one torch thread,
`--steps` optimizer steps with a checkpoint every `--save-steps`; the callback scores `--pairs` held-out pairs per
checkpoint (pairs only, no generation; a cold cache, so the reference is scored at the first save) and runs the
log rules at every logged step. Each role runs in its own subprocess (TRL's Accelerate state is a process-wide
singleton). Timed: `trainer.train()` as a whole. `doctor_s` is the time spent inside the callback's scans (what it
prints as "diagnosed in"); `same_losses` checks that the callback left training bit-identical (it restores the RNG
state the scan reseeds). The machine is shared and noisy: read the ratio. Prints ONE JSON line.

usage: python benchmarks/callback_overhead.py [--steps 24] [--save-steps 8] [--pairs 32] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the cat dog sat ran on under a mat log red blue big small quick slow answer question is what why how yes "
         "no good bad very many few one two three four five").split()


def pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    say = lambda lo, hi: " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    return [{"prompt": say(3, 8) + "?", "chosen": " " + say(2, 20) + ".", "rejected": " " + say(2, 20) + "."}
            for _ in range(n)]


def build(work: Path, hidden: int) -> Path:
    from dpo_doctor.zoo import tiny

    corpus = [p["prompt"] + p["chosen"] + p["rejected"] for p in pairs(200, seed=1)]
    tok = tiny.build_tokenizer(corpus, vocab_size=300)
    return tiny.save(tiny.build_model(tok, hidden=hidden, layers=2, heads=2), tok, work / "model")


def child(role: str, cfg: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(1)
    callbacks = []
    if role == "on":
        from dpo_doctor import DoctorCallback

        callbacks = [DoctorCallback(data=pairs(cfg["pairs"], seed=6), cache_dir=Path(cfg["work"]) / "cache")]
    args = DPOConfig(output_dir=str(Path(cfg["work"]) / role), bf16=False, gradient_checkpointing=False, use_cpu=True,
                     report_to="none", max_steps=cfg["steps"], save_steps=cfg["save_steps"], logging_steps=1,
                     per_device_train_batch_size=4, learning_rate=1e-3, beta=0.1, max_length=64, seed=0,
                     save_only_model=True, dataloader_num_workers=0, disable_tqdm=True)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(cfg["model"]), args=args,
                         train_dataset=Dataset.from_list(pairs(64, seed=5)),
                         processing_class=PreTrainedTokenizerFast.from_pretrained(cfg["model"]), callbacks=callbacks)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"train_s": wall, "losses": losses, "doctor_s": callbacks[0]._doctor_s if callbacks else 0.0}


def run_child(role: str, cfg: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", role, json.dumps(cfg)], capture_output=True,
                          text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{role} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(child(sys.argv[2], json.loads(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--save-steps", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cfg = {"work": work, "model": str(build(Path(work), a.hidden)), "steps": a.steps, "save_steps": a.save_steps,
               "pairs": a.pairs}
        load = [round(x, 2) for x in os.getloadavg()]
        off, on = run_child("off", cfg), run_child("on", cfg)
    scans = a.steps // a.save_steps
    step_s = off["train_s"] / a.steps
    print(json.dumps({
        "benchmark": "callback_overhead", "steps": a.steps, "save_steps": a.save_steps, "scans": scans,
        "pairs": a.pairs, "hidden": a.hidden, "train_s_off": round(off["train_s"], 3),
        "train_s_on": round(on["train_s"], 3), "overhead_ratio": round(on["train_s"] / off["train_s"], 3),
        "doctor_s": round(on["doctor_s"], 3), "doctor_s_per_scan": round(on["doctor_s"] / max(1, scans), 3),
        "scan_in_mean_steps": round(on["doctor_s"] / max(1, scans) / step_s, 2),
        "log_rules_s": round(max(0.0, on["train_s"] - off["train_s"] - on["doctor_s"]), 3),
        "same_losses": off["losses"] == on["losses"], "loadavg_before": load,
    }))


if __name__ == "__main__":
    main()
