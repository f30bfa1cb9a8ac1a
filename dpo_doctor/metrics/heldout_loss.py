"""The held-out DPO loss, and whether it rose beyond its noise: the overfitting test without a training log.

- `heldout/dpo_loss`: mean over pairs of the sigmoid DPO loss -log sigma(margin) on the scanned pairs (the beta-scaled
  implicit-reward margin), whatever loss the run trained with. On a run's own eval set it equals the trainer's
  logged eval loss (checked on the zoo to 3 decimals).
- `heldout/dpo_loss_rise`, `heldout/dpo_loss_rise_se`: the PAIRED change of the per-pair loss from the lowest-loss
  checkpoint so far (this one or an earlier one; 0 at the lowest) to this checkpoint, and the standard error of
  that mean difference over pairs. The same pairs are scored at every checkpoint, so the paired error is far
  smaller than either checkpoint's own (tiny zoo overfitting: a rise of 0.206 with a paired SE of 0.075, where the
  unpaired errors were 0.065 and 0.110). Rules read rise / SE as a z statistic: a number that means the same on
  any model and any number of pairs.
Pairs with chosen == rejected are excluded.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "heldout/dpo_loss": MetricInfo("nats", "high", "mean sigmoid DPO loss -log sigma(margin) over the scanned pairs"),
    "heldout/dpo_loss_rise": MetricInfo("nats", "high", "paired mean change of the per-pair DPO loss since the "
                                                       "lowest-loss checkpoint so far (0 at it)"),
    "heldout/dpo_loss_rise_se": MetricInfo("nats", None, "standard error of heldout/dpo_loss_rise over pairs"),
}


def per_pair_loss(df: pl.DataFrame) -> pl.DataFrame:
    """pair_id and the sigmoid DPO loss of each kept pair (log(1 + exp(-margin)), stable for any margin)."""
    kept = df.filter(~pl.col("excluded")).sort("pair_id")
    return pl.DataFrame({"pair_id": kept["pair_id"],
                         "loss": np.logaddexp(0.0, -kept["margin"].to_numpy().astype(np.float64))})


def compute(df: pl.DataFrame, beta: float) -> dict[str, float | None]:
    loss = per_pair_loss(df)["loss"]
    return {"heldout/dpo_loss": float(loss.mean()) if len(loss) else None}


def rise_since_best(frames: list[pl.DataFrame]) -> list[dict[str, float | None]]:
    """Per checkpoint (frames in step order): the paired rise of its per-pair loss over the lowest-loss checkpoint
    among it and the earlier ones, with the standard error of that mean difference."""
    out, best = [], None  # best: the lowest-mean per-pair loss table so far
    for frame in frames:
        cur = per_pair_loss(frame)
        if len(cur) and (best is None or cur["loss"].mean() < best["loss"].mean()):
            best = cur
        if not len(cur) or best is None:
            out.append({"heldout/dpo_loss_rise": None, "heldout/dpo_loss_rise_se": None})
            continue
        diff = (cur.join(best, on="pair_id", suffix="_best").select(pl.col("loss") - pl.col("loss_best"))
                .to_series().to_numpy())
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else None
        out.append({"heldout/dpo_loss_rise": float(diff.mean()) if len(diff) else None,
                    "heldout/dpo_loss_rise_se": se})
    return out
