"""The built-in trainer's settings, without torch: `LossParams` (the one home of every loss hyperparameter's
default) and `TrainConfig` (a run's whole recipe). `dpo-doctor train`'s flags are made from these fields (name,
default, help; TRL's argument names as aliases), the losses read a `LossInputs` that extends `LossParams`, and `repro`
changes a recorded recipe with `dataclasses.replace`.

Loss names are TRL's `loss_type` names where TRL has the loss (sigmoid, hinge, ipo, robust, sigmoid_norm); the
variants TRL 1.16 does not name keep one descriptive spelling (cdpo, dpop, rpo, simpo, r_dpo, f_dpo).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# Every loss of `dpo_doctor.train.losses.LOSSES`, in its order (a test checks the two agree).
LOSS_NAMES = ("sigmoid", "ipo", "hinge", "cdpo", "robust", "dpop", "rpo", "simpo", "sigmoid_norm", "r_dpo", "f_dpo")
# The ones TRL's DPOConfig.loss_type (trl 1.16) also names: a TRL run with these is trained on the same loss.
TRL_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sigmoid_norm")


def _opt(default, help: str, **spelling):
    """A field that is also a `dpo-doctor train` flag (see `dpo_doctor.cli.options_of`)."""
    return field(default=default, metadata={"help": help, **spelling})


def _required(help: str, **spelling):
    return field(metadata={"help": help, **spelling})


@dataclass(frozen=True, kw_only=True)
class LossParams:
    """The loss hyperparameters and their defaults (the only place they are written)."""

    beta: float = _opt(0.1, "DPO beta (default 0.1, TRL's); higher stays closer to the reference.")
    label_smoothing: float = _opt(0.0, "cdpo/robust epsilon, the assumed label-flip rate (default 0).")
    dpop_lambda: float = _opt(50.0, "DPOP penalty weight (default 50, Pal et al.).")
    rpo_alpha: float = _opt(1.0, "RPO weight of the per-token chosen NLL (default 1, Pang et al.).")
    simpo_gamma: float = _opt(0.5, "SimPO target margin gamma, reward units (default 0.5).")
    r_dpo_alpha: float = _opt(0.01, "R-DPO length penalty per token (default 0.01; 0.05 for TL;DR in Park et al.).")
    f_divergence: str = _opt("reverse_kl", "reverse_kl (DPO), forward_kl, js_divergence, alpha_divergence "
                             "(default reverse_kl).", aliases=("--f-divergence-type", "--f_divergence_type"))
    f_alpha: float = _opt(0.5, "alpha of alpha_divergence (default 0.5).",
                          aliases=("--f-alpha-divergence-coef", "--f_alpha_divergence_coef"))

    def loss_params(self) -> dict:
        """The loss hyperparameters of this object (a TrainConfig too) as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(LossParams)}


@dataclass(frozen=True, kw_only=True)
class TrainConfig(LossParams):
    """Everything one training run needs; `dpo-doctor train` mirrors these fields 1:1 as flags."""

    model: str = _required("Policy initialisation: a saved model dir (the SFT model, or the LoRA base).",
                           aliases=("--model-name-or-path", "--model_name_or_path"))
    data: str = _required("Training preference pairs (JSONL/JSON/Parquet/CSV, TRL formats).",
                          aliases=("--dataset-name", "--dataset_name"))
    output_dir: str = _required("Run dir to write (checkpoint-N/ sub-dirs, TRL layout).", aliases=("-o",))
    ref: str | None = _opt(None, "Reference model dir. Default: --model (with --lora: the base, adapters disabled).")
    loss: str = _opt("sigmoid", f"The loss, by TRL's loss_type name where TRL has it: {', '.join(LOSS_NAMES)} "
                     "(default sigmoid, DPO).", aliases=("--loss-type", "--loss_type"))
    learning_rate: float = _opt(1e-6, "Peak learning rate (default 1e-6, TRL's).", aliases=("--lr",))
    warmup_steps: int = _opt(0, "Linear warm-up steps, then linear decay to 0 (default 0).")
    epochs: float = _opt(1.0, "Passes over the data (default 1); --max-steps overrides.",
                         aliases=("--num-train-epochs", "--num_train_epochs"))
    max_steps: int = _opt(-1, "Optimizer steps; > 0 overrides --epochs (default -1).")
    batch_size: int = _opt(8, "Pairs per micro-batch (default 8).",
                           aliases=("--per-device-train-batch-size", "--per_device_train_batch_size"))
    grad_accum: int = _opt(1, "Micro-batches per optimizer step (default 1).",
                           aliases=("--gradient-accumulation-steps", "--gradient_accumulation_steps"))
    max_grad_norm: float = _opt(1.0, "Gradient clipping norm (default 1.0; <= 0 disables).")
    weight_decay: float = _opt(0.0, "AdamW weight decay (default 0).")
    lora: bool = _opt(False, "Train a LoRA adapter instead of all weights (default off).",
                      aliases=("--use-peft", "--use_peft"))
    lora_r: int = _opt(16, "LoRA rank (default 16).")
    lora_alpha: int = _opt(32, "LoRA alpha (default 32).")
    lora_dropout: float = _opt(0.0, "LoRA dropout (default 0).")
    lora_target_modules: tuple[str, ...] = _opt(("all-linear",), "Module names (comma-separated or repeated), or "
                                                "all-linear (default).")
    seed: int = _opt(42, "Seed for shuffling and LoRA init (default 42).")
    logging_steps: int = _opt(10, "Log every N steps (default 10).")
    save_steps: int = _opt(500, "Save checkpoint-N every N steps, and at the end (default 500).")
    eval_data: str | None = _opt(None, "Held-out pairs: eval_* rows in the log.")
    eval_steps: int | None = _opt(None, "Evaluate every N steps (default: --save-steps).")
    max_length: int | None = _opt(1024, "Truncate prompt+response to N tokens, keep_start (default 1024).")
    max_pairs: int | None = _opt(None, "Train on a seeded subset of N pairs (default: all).")
    device: str = _opt("auto", "auto (CUDA if present), cpu, cuda, cuda:N (default auto).")
    bf16: bool = _opt(True, "bf16 autocast on CUDA (default on; CPU always runs float32).")
    progress: bool = True  # rich progress bar (not a flag)
