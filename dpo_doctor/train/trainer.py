"""The built-in DPO trainer: one readable recipe, in the spirit of nanoGPT's train.py.

Why it exists: to make runs whose failure we know (the zoo, the demo, `repro`), small and cheap. It is minimal on
purpose: one process, one device, policy + frozen reference, AdamW with HF's linear warm-up/decay schedule, gradient
accumulation and clipping, full fine-tuning or LoRA. Log-probs come from `dpo_doctor.engine.pair_logps`, the same
function the scanner uses, so training logs and scans can never disagree on masking or sums.

Output is TRL's layout, so the scanner (and anything that reads TRL runs) needs nothing special:
    OUT/checkpoint-N/   model.safetensors + config.json (or adapter_*), tokenizer files, trainer_state.json,
                        dpo_doctor_config.json
    OUT/                the final model, trainer_state.json (with the train summary row), dpo_doctor_config.json
`trainer_state.json` uses TRL's keys (`loss`, `rewards/*`, `logps/*`, `learning_rate`, `grad_norm`, `epoch`, `step`
and `eval_*`), sorted, indent 2, as `transformers` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dpo_doctor.data.tokens import PairTokens
from dpo_doctor.engine.compat import quiet_peft
from dpo_doctor.engine.devices import pad_id as pad_token_id, resolve_device
from dpo_doctor.engine.logprobs import collate_pairs, pair_logps
from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.train.config import TrainConfig  # noqa: F401 (re-exported: the trainer's config lives there)
from dpo_doctor.train.losses import F_DIVERGENCE_LOSSES, F_DIVERGENCES, LOSSES, LossInputs

CONFIG_NAME = "dpo_doctor_config.json"
STATE_NAME = "trainer_state.json"


def validate(cfg: TrainConfig) -> None:
    """Bad settings fail before any model loads, with the value and what to do."""
    if cfg.loss not in LOSSES:
        raise UserError(f"unknown --loss {cfg.loss!r}{did_you_mean(cfg.loss, LOSSES)} Choose one of: {', '.join(LOSSES)}")
    if cfg.f_divergence not in F_DIVERGENCES:
        raise UserError(f"unknown --f-divergence {cfg.f_divergence!r}; choose one of {', '.join(F_DIVERGENCES)}")
    if cfg.f_divergence != "reverse_kl" and cfg.loss not in F_DIVERGENCE_LOSSES:
        raise UserError(f"--f-divergence {cfg.f_divergence} works with {', '.join(sorted(F_DIVERGENCE_LOSSES))}, "
                        f"not --loss {cfg.loss}; use --loss f_dpo")
    if cfg.loss in ("robust", "cdpo") and not 0 <= cfg.label_smoothing < 0.5:
        raise UserError(f"--label-smoothing {cfg.label_smoothing} must be in [0, 0.5) for --loss {cfg.loss}")
    if cfg.beta <= 0:
        raise UserError(f"--beta {cfg.beta} must be > 0")
    if cfg.batch_size < 1 or cfg.grad_accum < 1:
        raise UserError(f"--batch-size {cfg.batch_size} and --grad-accum {cfg.grad_accum} must be >= 1")
    if not Path(cfg.model).exists():
        raise UserError(f"model {cfg.model} does not exist; pass --model DIR (a saved transformers model)")


# ---- setup ------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def disable_dropout(model) -> None:
    """TRL's `disable_dropout_in_model`: DPO's two forward passes must see the same network."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def load_policy_and_ref(cfg: TrainConfig, device: torch.device):
    """Policy (trainable) and reference (frozen). With LoRA and no separate --ref, the reference is the base model
    with the adapter disabled, as in TRL; `ref` is then None."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    disable_dropout(policy)
    ref = None
    if not cfg.lora or (cfg.ref and Path(cfg.ref).resolve() != Path(cfg.model).resolve()):
        ref = AutoModelForCausalLM.from_pretrained(cfg.ref or cfg.model, dtype=torch.float32).eval()
        ref.requires_grad_(False)
        ref.to(device)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_target_modules
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules="all-linear" if targets == ("all-linear",) else list(targets),
                          task_type="CAUSAL_LM")
        with quiet_peft():
            policy = get_peft_model(policy, lora)
    return policy.to(device).train(), ref


def lr_lambda(warmup: int, total: int):
    """HF's `get_linear_schedule_with_warmup`: 0 -> 1 over `warmup` steps, then linearly to 0 at `total`."""
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (HF defaults: betas 0.9/0.999, eps 1e-8); no weight decay on biases and norms, like HF."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "bias" in name or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8)


# ---- one batch --------------------------------------------------------------------------------------------------


def batch_logps(model, pairs: list[PairTokens], pad_id: int, cfg: TrainConfig, device: torch.device):
    """(chosen, rejected, n_chosen, n_rejected) for a batch, through the engine's shared log-prob function."""
    batch = {k: v.to(device) for k, v in collate_pairs(pairs, pad_id, cfg.max_length).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"):
        return pair_logps(model, batch)


@torch.no_grad()
def reference_logps(policy, ref, pairs: list[PairTokens], pad_id: int, cfg: TrainConfig, device: torch.device):
    """Reference log-probs of every pair, once (TRL's `precompute_ref_log_probs`: the reference is frozen, so this
    equals scoring it every step, at half the cost). Returns (chosen (N,), rejected (N,)) on CPU, float32."""
    out_c, out_r = [], []
    for i in range(0, len(pairs), cfg.batch_size):
        chunk = pairs[i: i + cfg.batch_size]
        if ref is not None:
            c, r, _, _ = batch_logps(ref, chunk, pad_id, cfg, device)
        else:
            with policy.disable_adapter():  # LoRA: the base model is the reference
                c, r, _, _ = batch_logps(policy, chunk, pad_id, cfg, device)
        out_c.append(c.float().cpu())
        out_r.append(r.float().cpu())
    return torch.cat(out_c), torch.cat(out_r)


def dpo_step(policy, pairs, ref_c, ref_r, pad_id, cfg: TrainConfig, device):
    """Loss (scalar, differentiable) and TRL's per-batch metrics for one micro-batch."""
    pc, pr, nc, nr = batch_logps(policy, pairs, pad_id, cfg, device)  # (B,) each
    pc, pr = pc.float(), pr.float()
    ref_c, ref_r = ref_c.to(device), ref_r.to(device)
    x = LossInputs(policy_chosen=pc, policy_rejected=pr, ref_chosen=ref_c, ref_rejected=ref_r, n_chosen=nc.float(),
                   n_rejected=nr.float(), **cfg.loss_params())
    loss = LOSSES[cfg.loss](x).mean()
    chosen_rewards = cfg.beta * (pc - ref_c).detach()  # TRL: rewards are beta * log-ratios for every loss type
    rejected_rewards = cfg.beta * (pr - ref_r).detach()
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": pc.detach().mean().item(),
        "logps/rejected": pr.detach().mean().item(),
    }
    return loss, metrics


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """TRL's logging: the mean of the per-micro-batch values collected since the last log."""
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


@torch.no_grad()
def evaluate(policy, pairs, ref_c, ref_r, pad_id, cfg: TrainConfig, device) -> dict[str, float]:
    """eval_loss and eval_rewards/* over the whole eval set (mean of batch means, as TRL logs them)."""
    policy.eval()
    rows = []
    for i in range(0, len(pairs), cfg.batch_size):
        loss, m = dpo_step(policy, pairs[i: i + cfg.batch_size], ref_c[i: i + cfg.batch_size],
                           ref_r[i: i + cfg.batch_size], pad_id, cfg, device)
        rows.append({"loss": loss.item(), **m})
    policy.train()
    return {f"eval_{k}": v for k, v in mean_metrics(rows).items()}


# ---- saving -----------------------------------------------------------------------------------------------------


def run_config_json(cfg: TrainConfig) -> dict:
    """What the scanner reads so a built-in run needs no --beta: TRL's names first, then every TrainConfig field."""
    fields = dataclasses.asdict(cfg)
    fields["lora_target_modules"] = list(cfg.lora_target_modules)
    return {"trainer": "dpo-doctor", "beta": cfg.beta, "loss_type": cfg.loss, "learning_rate": cfg.learning_rate,
            "reference": cfg.ref or cfg.model, "base_model": cfg.model if cfg.lora else None, **fields}


def trainer_state(cfg: TrainConfig, log_history: list[dict], step: int, epoch: float, max_steps: int,
                  eval_steps: int | None) -> dict:
    """transformers' TrainerState fields (the ones TRL runs carry), with our cumulative log_history."""
    return {
        "best_global_step": None, "best_metric": None, "best_model_checkpoint": None, "epoch": epoch,
        "eval_steps": eval_steps, "global_step": step, "is_hyper_param_search": False,
        "is_local_process_zero": True, "is_world_process_zero": True, "log_history": log_history,
        "logging_steps": cfg.logging_steps, "max_steps": max_steps, "num_input_tokens_seen": 0,
        "num_train_epochs": math.ceil(cfg.epochs) if cfg.max_steps <= 0 else 0, "save_steps": cfg.save_steps,
        "stateful_callbacks": {}, "total_flos": 0.0, "train_batch_size": cfg.batch_size, "trial_name": None,
        "trial_params": None,
    }


def save(path: Path, policy, tokenizer, cfg: TrainConfig, state: dict) -> Path:
    """Model (safetensors, or adapter files), tokenizer, trainer_state.json and our config JSON into `path`."""
    path.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    (path / STATE_NAME).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    (path / CONFIG_NAME).write_text(json.dumps(run_config_json(cfg), indent=2, sort_keys=True) + "\n")
    return path


# ---- callbacks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackArgs:
    """The `TrainingArguments` fields a callback reads; callbacks follow transformers' `TrainerCallback` protocol
    (on_train_begin / on_log / on_save / on_train_end with (args, state, control, **kwargs)), so one callback (e.g.
    `dpo_doctor.DoctorCallback`) serves TRL's DPOTrainer and this trainer alike."""

    output_dir: str
    logging_dir: str
    report_to: tuple[str, ...] = ()
    beta: float = 0.1
    max_length: int | None = 1024
    learning_rate: float = 1e-6
    logging_steps: int = 10
    save_steps: int = 500
    eval_steps: int | None = None
    seed: int = 42


class Callbacks:
    """Calls every callback's hook with transformers' arguments; a hook may return a new control."""

    def __init__(self, callbacks, cfg: TrainConfig, total: int, eval_steps: int | None, log_history: list[dict]):
        from transformers import TrainerControl, TrainerState

        self.callbacks = list(callbacks)
        self.args = CallbackArgs(cfg.output_dir, str(Path(cfg.output_dir) / "runs"), beta=cfg.beta,
                                 max_length=cfg.max_length, learning_rate=cfg.learning_rate,
                                 logging_steps=cfg.logging_steps, save_steps=cfg.save_steps, eval_steps=eval_steps,
                                 seed=cfg.seed)
        self.state = TrainerState(max_steps=total, logging_steps=cfg.logging_steps, save_steps=cfg.save_steps,
                                  eval_steps=eval_steps or 500, train_batch_size=cfg.batch_size)
        self.state.log_history = log_history  # the trainer's own list: callbacks see every row as it lands
        self.control = TrainerControl()

    def __call__(self, event: str, **kwargs) -> None:
        for callback in self.callbacks:
            hook = getattr(callback, event, None)
            result = hook(self.args, self.state, self.control, **kwargs) if hook is not None else None
            self.control = result if result is not None else self.control


# ---- the recipe -------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, callbacks=()) -> Path:
    """Train with DPO (or a variant) and write a TRL-layout run to `cfg.output_dir`; returns that directory.

    `callbacks`: objects with transformers' TrainerCallback hooks (see `CallbackArgs`); a callback may stop
    training (`control.should_training_stop`) or ask for a save now (`control.should_save`)."""
    from transformers import AutoTokenizer

    from dpo_doctor.data.pairs import load_pairs

    validate(cfg)
    out = Path(cfg.output_dir)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    pad_id = pad_token_id(tokenizer)
    train_pairs = list(load_pairs(Path(cfg.data), tokenizer, max_length=cfg.max_length,
                                  max_pairs=cfg.max_pairs, seed=cfg.seed).tokens)
    eval_pairs = (list(load_pairs(Path(cfg.eval_data), tokenizer, max_length=cfg.max_length).tokens)
                  if cfg.eval_data else [])
    policy, ref = load_policy_and_ref(cfg, device)
    log_history: list[dict] = []
    hooks = Callbacks(callbacks, cfg, 0, None, log_history)
    hooks("on_train_begin", model=policy, processing_class=tokenizer, ref_model=ref)
    ref_train = reference_logps(policy, ref, train_pairs, pad_id, cfg, device)
    ref_eval = reference_logps(policy, ref, eval_pairs, pad_id, cfg, device) if eval_pairs else None
    del ref  # the reference is only needed for its log-probs, now cached

    # Schedule: HF counts optimizer updates; a partial accumulation at the end of an epoch is dropped, as in HF.
    n_batches = math.ceil(len(train_pairs) / cfg.batch_size)
    updates_per_epoch = max(1, n_batches // cfg.grad_accum)
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.epochs * updates_per_epoch)
    eval_steps = (cfg.eval_steps or cfg.save_steps) if eval_pairs else None
    optimizer = make_optimizer(policy, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total))
    params = [p for p in policy.parameters() if p.requires_grad]

    def batches():
        """Endless stream of shuffled micro-batches (index lists); a fresh seeded permutation per epoch."""
        epoch = 0
        while True:
            g = torch.Generator().manual_seed(cfg.seed + epoch)
            order = torch.randperm(len(train_pairs), generator=g).tolist()
            for b in range(updates_per_epoch * cfg.grad_accum):
                yield order[b * cfg.batch_size: (b + 1) * cfg.batch_size]
            epoch += 1

    hooks.state.max_steps, hooks.state.eval_steps = total, eval_steps or hooks.state.eval_steps
    pending: list[dict] = []  # metrics since the last log
    loss_since_log, steps_since_log, loss_total = 0.0, 0, 0.0
    step, t0 = 0, time.time()
    stream = batches()

    def state_now() -> dict:
        return trainer_state(cfg, list(log_history), step, step / updates_per_epoch, total, eval_steps)

    def checkpoint() -> Path:
        return save(out / f"checkpoint-{step}", policy, tokenizer, cfg, state_now())

    progress = _progress(cfg.progress, total)
    try:
        with progress:
            task = progress.add_task("DPO", total=total, info="")
            while step < total:
                # ---- one optimizer update: grad_accum micro-batches -------------------------------------------
                step_loss = 0.0
                for _ in range(cfg.grad_accum):
                    idx = next(stream)
                    loss, metrics = dpo_step(policy, [train_pairs[i] for i in idx], ref_train[0][idx],
                                             ref_train[1][idx], pad_id, cfg, device)
                    (loss / cfg.grad_accum).backward()
                    step_loss += loss.item() / cfg.grad_accum
                    pending.append(metrics)
                max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()  # norm before clipping
                lr = scheduler.get_last_lr()[0]  # the rate this update used (what HF logs)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                hooks.state.global_step, hooks.state.epoch = step, step / updates_per_epoch
                loss_since_log += step_loss
                steps_since_log += 1
                loss_total += step_loss
                epoch = step / updates_per_epoch

                # ---- log, evaluate, save ---------------------------------------------------------------------
                if step % cfg.logging_steps == 0 or step == total:
                    row = {"loss": loss_since_log / steps_since_log, "grad_norm": grad_norm, "learning_rate": lr,
                           **mean_metrics(pending), "epoch": epoch, "step": step}
                    log_history.append(row)
                    pending, loss_since_log, steps_since_log = [], 0.0, 0
                    progress.update(task, info=f"loss {row['loss']:.4f} margin {row['rewards/margins']:+.3f} "
                                               f"acc {row['rewards/accuracies']:.2f}")
                    hooks("on_log", model=policy, logs=row)
                if eval_steps and (step % eval_steps == 0 or step == total):
                    row = evaluate(policy, eval_pairs, *ref_eval, pad_id, cfg, device)
                    log_history.append({**row, "epoch": epoch, "step": step})
                    hooks("on_log", model=policy, logs=log_history[-1])
                if step % cfg.save_steps == 0 or step == total or hooks.control.should_save:
                    checkpoint()
                    hooks.control.should_save = False
                    hooks("on_save", model=policy)
                progress.update(task, advance=1)
                if hooks.control.should_training_stop:
                    break
    except KeyboardInterrupt:
        if step > 0 and not (out / f"checkpoint-{step}").exists():
            checkpoint()
        raise

    runtime = time.time() - t0
    log_history.append({"epoch": step / updates_per_epoch, "step": step, "total_flos": 0.0,
                        "train_loss": loss_total / max(1, step), "train_runtime": round(runtime, 4),
                        "train_samples_per_second": round(step * cfg.batch_size * cfg.grad_accum / runtime, 3),
                        "train_steps_per_second": round(step / runtime, 3)})
    save(out, policy, tokenizer, cfg, state_now())
    hooks("on_train_end", model=policy)
    return out


def _progress(enabled: bool, total: int):
    """A rich progress bar (disabled: a no-op with the same interface)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), disable=not enabled, transient=False)
