"""Tracker key names -> TRL's, shared by the TensorBoard, W&B and Trackio readers.

Trackers see the trainer's log through a prefix: HF Trainer's callbacks (`rewrite_logs`) send `loss` as `train/loss`,
`eval_loss` as `eval/loss`, and add `train/global_step`; OpenRLHF sends `train/<key>` and `eval/<key>` plus
`train/global_step` / `eval/global_step`, with its own metric names. A row of tracker values is split by prefix into
one train row and one eval row, and OpenRLHF's names are mapped to TRL's. Unprefixed keys count as train.
"""

from __future__ import annotations

# OpenRLHF's DPOTrainer (openrlhf/trainer/dpo_trainer.py) -> TRL names. `loss` is the preference loss (without the
# NLL / aux terms); `loss_mean` / `acc_mean` (train) are means over the gradient-accumulation window and keep their
# names. `preference_loss` is the key of older OpenRLHF releases.
OPENRLHF_TRAIN_KEYS = {"acc": "rewards/accuracies", "chosen_reward": "rewards/chosen",
                       "reject_reward": "rewards/rejected", "lr": "learning_rate", "preference_loss": "loss"}
OPENRLHF_EVAL_KEYS = {"eval_loss": "loss", "acc_mean": "rewards/accuracies"}
PREFIXES = {"train/": "train", "eval/": "eval"}
STEP_KEYS = ("global_step",)  # after the prefix: the trainer's own step, preferred to the tracker's counter
EPOCH_KEY = "epoch"


def split_row(values: dict, tracker_step) -> list[dict]:
    """{"train/loss": .., "eval/loss": .., "train/global_step": ..} -> raw rows per split (table.clean_row input).

    HF logs an eval dict with `train/global_step` and `train/epoch` beside the `eval/*` keys, so a split without its
    own step or epoch takes the other split's, then the tracker's step counter.
    """
    parts: dict[str, dict] = {}
    for key, value in values.items():
        split, name = _split_key(key)
        if split is not None:
            parts.setdefault(split, {})[name] = value
    steps = {s: p.pop(k) for s, p in parts.items() for k in STEP_KEYS if k in p}
    epochs = {s: p.pop(EPOCH_KEY) for s, p in parts.items() if EPOCH_KEY in p}
    shared_step = next(iter(steps.values()), tracker_step)
    shared_epoch = next(iter(epochs.values()), None)
    rows = []
    for split, part in parts.items():
        row = {"step": steps.get(split, shared_step), "epoch": epochs.get(split, shared_epoch), "split": split}
        mapping = OPENRLHF_EVAL_KEYS if split == "eval" else OPENRLHF_TRAIN_KEYS
        row.update({mapping.get(k, k): v for k, v in part.items() if k not in ("step", "split")})
        rows.append(row)
    return rows


def _split_key(key: str) -> tuple[str | None, str]:
    for prefix, split in PREFIXES.items():
        if key.startswith(prefix):
            return split, key[len(prefix):]
    if key.startswith(("test/", "_", "system/")):  # test-set metrics, tracker bookkeeping, GPU stats
        return None, key
    return "train", key


def merge_rows(rows: list[dict]) -> list[dict]:
    """Rows logged at the same (split, step) in several calls or files -> one row (later values win), sorted by step
    with train before eval; rows without a step keep their order at the end."""
    merged: dict[tuple, dict] = {}
    for i, row in enumerate(rows):
        step = row.get("step")
        key = (row["split"], step) if isinstance(step, (int, float)) and not isinstance(step, bool) else ("?", i)
        merged.setdefault(key, {}).update({k: v for k, v in row.items() if v is not None or k == "split"})
    epochs = {step: r["epoch"] for (_, step), r in merged.items() if r.get("epoch") is not None}
    for (_, step), row in merged.items():  # TensorBoard logs HF's train/epoch apart from the eval scalars
        if row.get("epoch") is None and step in epochs:
            row["epoch"] = epochs[step]
    order = {"train": 0, "eval": 1}
    return sorted(merged.values(), key=lambda r: (_sort_step(r.get("step")), order.get(r["split"], 2)))


def _sort_step(step) -> float:
    try:
        return float(step)
    except (TypeError, ValueError):
        return float("inf")
