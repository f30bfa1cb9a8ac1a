"""One corpus run in its own process: TRL `DPOTrainer` training, then the outcome measurements of every checkpoint.

    python benchmarks/corpus/train_one.py RUN_DIR      # RUN_DIR/spec.json written by build.py

One trainer configuration per process (accelerate's state is a process-wide singleton). The run is saved as TRL
saves it (checkpoint-N/ with trainer_state.json, training_args.bin and model.safetensors or the LoRA adapter), with
the data it trained on (train.jsonl), its held-out pairs (eval.jsonl), the corpus suite (suite.jsonl) and the
grading questions (grading.jsonl, never given to a scan). Then `measures.json`: for the reference and each
checkpoint, measured on the grading questions and the eval pairs (see `measure`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import tasks as corpus_tasks  # noqa: E402


def load_tokenizer(path: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = json.loads((Path(path) / "tokenizer_config.json").read_text())
    if cfg.get("tokenizer_class") == "PreTrainedTokenizerFast":  # the tiny BPE: keep it exactly (no re-splitting)
        tok = PreTrainedTokenizerFast.from_pretrained(path)
    else:
        tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(run: Path, spec: dict) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    tok = load_tokenizer(spec["ref"])
    model = AutoModelForCausalLM.from_pretrained(spec["ref"], dtype=torch.float32)
    peft_config = None
    if spec["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(r=spec["lora_r"], lora_alpha=2 * spec["lora_r"], lora_dropout=0.0,
                                 target_modules=spec["lora_targets"], task_type="CAUSAL_LM")
    loss = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]} if spec.get("sft_weight") else {}
    cfg = DPOConfig(
        output_dir=str(run), max_steps=spec["steps"], per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=16, learning_rate=spec["lr"], beta=spec["beta"], lr_scheduler_type="linear",
        warmup_steps=spec["warmup"], logging_steps=spec["logging_steps"], save_strategy="steps",
        save_steps=spec["save_steps"], eval_strategy="steps", eval_steps=spec["save_steps"], save_only_model=True,
        seed=spec["seed"], use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        max_length=256, disable_tqdm=True, dataloader_num_workers=0, **loss)
    trainer = DPOTrainer(model=model, args=cfg, processing_class=tok,
                         train_dataset=Dataset.from_list(read_jsonl(run / "train.jsonl")),
                         eval_dataset=Dataset.from_list(read_jsonl(run / "eval.jsonl")), peft_config=peft_config)
    t0 = time.time()
    trainer.train()
    return time.time() - t0


# ---------------------------------------------------------------------------------------------- measurement
def _pad_left(seqs: list[list[int]], pad: int):
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, n - len(s):] = torch.tensor(s)
        mask[i, n - len(s):] = 1
    return ids, mask


def prompt_ids(tok, prompt: str) -> list[int]:
    return tok(prompt)["input_ids"]


def completion_ids(tok, completion: str) -> list[int]:
    return tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


@torch.no_grad()
def seq_logps(model, tok, prompts: list[list[int]], completions: list[list[int]], batch: int = 16) -> list[float]:
    """Sum of the completion tokens' log-probs given the prompt, per sequence (right-padded batches)."""
    out = [0.0] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(completions[i]))
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        seqs = [prompts[i] + completions[i] for i in idx]
        n = max(len(x) for x in seqs)
        ids = torch.full((len(idx), n), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        comp = torch.zeros_like(ids, dtype=torch.bool)
        for j, i in enumerate(idx):
            ids[j, :len(seqs[j])] = torch.tensor(seqs[j])
            mask[j, :len(seqs[j])] = 1
            comp[j, len(prompts[i]):len(seqs[j])] = True
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        sums = (lp * comp[:, 1:]).sum(-1)
        for j, i in enumerate(idx):
            out[i] = float(sums[j])
    return out


@torch.no_grad()
def sample(model, tok, prompts: list[list[int]], k: int, max_new: int, seed: int, batch: int = 32) -> list[list[int]]:
    """k samples per prompt at temperature 1 (no top-k / top-p), cut after EOS; prompt-major order."""
    torch.manual_seed(seed)
    flat = [p for p in prompts for _ in range(k)]
    out: list[list[int]] = []
    for s in range(0, len(flat), batch):
        ids, mask = _pad_left(flat[s:s + batch], tok.pad_token_id)
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=max_new, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for row in gen[:, ids.shape[1]:].tolist():
            cut = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            out.append(row[:cut])
    return out


def distinct2(texts_ids: list[list[int]]) -> float:
    grams = [tuple(s[i:i + 2]) for s in texts_ids for i in range(len(s) - 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def measure_one(policy, ref_ctx, tok, task, grading, evals, k: int, beta: float, seed: int,
                max_new: int | None = None) -> dict:
    """Outcome numbers of one model: graded quality on the grading questions (k samples each, T=1), sampled KL to
    the reference on its own samples, length, distinct-2, and the eval pairs' chosen / rejected log-probs."""
    p_ids = [prompt_ids(tok, it.prompt) for it in grading]
    samples = sample(policy, tok, p_ids, k, max_new or task.max_new_tokens, seed)
    texts = [tok.decode(s, skip_special_tokens=True) for s in samples]
    per_q = [sum(task.grade(texts[i * k + j], it) for j in range(k)) / k for i, it in enumerate(grading)]
    flat_p = [p for p in p_ids for _ in range(k)]
    lp_pol = seq_logps(policy, tok, flat_p, samples)
    with ref_ctx() as ref:
        lp_ref = seq_logps(ref, tok, flat_p, samples)
        ep = [prompt_ids(tok, r["prompt"]) for r in evals]
        ec = [completion_ids(tok, r["chosen"]) for r in evals]
        er = [completion_ids(tok, r["rejected"]) for r in evals]
        ref_c, ref_r = seq_logps(ref, tok, ep, ec), seq_logps(ref, tok, ep, er)
    pol_c, pol_r = seq_logps(policy, tok, ep, ec), seq_logps(policy, tok, ep, er)
    kl = [a - b for a, b in zip(lp_pol, lp_ref)]
    n_tok = [len(s) for s in samples]
    dc = [a - b for a, b in zip(pol_c, ref_c)]
    dr = [a - b for a, b in zip(pol_r, ref_r)]
    c_tok = sum(len(c) for c in ec)
    r_tok = sum(len(c) for c in er)
    return {
        "quality": sum(per_q) / len(per_q), "per_question": per_q, "gen_len": sum(n_tok) / len(n_tok),
        "eos_rate": sum(1 for s in samples if s and s[-1] == tok.eos_token_id) / len(samples),
        "kl": sum(kl) / len(kl), "kl_per_token": sum(kl) / max(1, sum(n_tok)),
        # diversity per prompt (its k samples), mean over prompts: collapse makes a prompt's samples identical
        "distinct2": sum(distinct2(samples[i * k:(i + 1) * k]) for i in range(len(grading))) / len(grading),
        "distinct2_pooled": distinct2(samples),
        "distinct_answers": sum(len(set(t.strip() for t in texts[i * k:(i + 1) * k])) for i in range(len(grading)))
        / len(texts),
        "chosen_logp": sum(pol_c) / len(pol_c), "rejected_logp": sum(pol_r) / len(pol_r),
        "drift_chosen": sum(dc) / len(dc), "drift_rejected": sum(dr) / len(dr),
        "drift_chosen_per_token": sum(dc) / c_tok, "drift_rejected_per_token": sum(dr) / r_tok,
        "reward_acc": sum(1 for a, b in zip(dc, dr) if beta * (a - b) > 0) / len(dc),
        "margin": beta * (sum(dc) - sum(dr)) / len(dc),
        "examples": texts[:6],
    }


class _Same:
    def __init__(self, m):
        self.m = m

    def __enter__(self):
        return self.m

    def __exit__(self, *a):
        return False


def measure(run: Path, spec: dict) -> dict:
    from transformers import AutoModelForCausalLM

    task = corpus_tasks.TASKS[spec["task"]]
    grading = task.split(0)["grading"][:spec.get("grading_n")]  # grading_n: a real model's CPU budget
    evals = read_jsonl(run / "eval.jsonl")[:spec.get("measure_pairs")]
    tok = load_tokenizer(spec["ref"])
    ref = AutoModelForCausalLM.from_pretrained(spec["ref"], dtype=torch.float32).eval()
    k = spec["grade_samples"]
    cks = sorted((p for p in run.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    out = {"reference": measure_one(ref, lambda: _Same(ref), tok, task, grading, evals, k, spec["beta"], 1234,
                         spec.get("max_new_tokens"))}
    for ck in cks:
        t0 = time.time()
        if spec["lora"]:
            from peft import PeftModel

            policy = PeftModel.from_pretrained(ref, ck).eval()
            ctx = policy.disable_adapter
            m = measure_one(policy, lambda: _Ctx(policy), tok, task, grading, evals, k, spec["beta"], 1234,
                         spec.get("max_new_tokens"))
            ref = policy.unload()  # the base model, adapter removed (unmerged)
        else:
            policy = AutoModelForCausalLM.from_pretrained(ck, dtype=torch.float32).eval()
            m = measure_one(policy, lambda: _Same(ref), tok, task, grading, evals, k, spec["beta"], 1234,
                         spec.get("max_new_tokens"))
        m["seconds"] = round(time.time() - t0, 1)
        m["step"] = int(ck.name.split("-")[1])
        out[ck.name] = m
    return out


class _Ctx:
    """The reference of a LoRA policy: the same model with its adapter disabled."""

    def __init__(self, policy):
        self.policy = policy
        self.cm = None

    def __enter__(self):
        self.cm = self.policy.disable_adapter()
        self.cm.__enter__()
        return self.policy

    def __exit__(self, *a):
        return self.cm.__exit__(*a)


def main(run: Path) -> None:
    torch.set_num_threads(int(os.environ.get("CORPUS_THREADS", "1")))
    spec = json.loads((run / "spec.json").read_text())
    timings = {}
    if not (run / "trained.json").exists():
        timings["train_seconds"] = round(train(run, spec), 1)
        (run / "trained.json").write_text(json.dumps(timings))
    timings = json.loads((run / "trained.json").read_text())
    t0 = time.time()
    m = measure(run, spec)
    timings["measure_seconds"] = round(time.time() - t0, 1)
    (run / "measures.json").write_text(json.dumps({"timings": timings, "models": m}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
