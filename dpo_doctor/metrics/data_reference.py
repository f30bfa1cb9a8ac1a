"""What the reference model says about each pair: its own preference, and the CHES similarity of the two answers.

Reference preference: ref_margin = log pi_ref(chosen) - log pi_ref(rejected) (summed over response tokens), and per
token, log pi_ref(chosen)/|chosen| - log pi_ref(rejected)/|rejected|, which does not grow with length. A pair the
reference strongly disfavours (per-token margin below -`DISFAVOUR` nats) is a candidate for review: label noise, or
an answer far off the reference's distribution, or simply a hard pair. It is a list to read, not a verdict.

CHES (Razin et al. 2024, "Unintentional Unalignment", arXiv:2410.08847, eq. for CHES and its length-normalized
variant; princeton-nlp/unintentional-unalignment ches/ches.py): with S+ (S-) the sum of the reference's last-layer
hidden states over the positions that predict the chosen (rejected) tokens,

    CHES = <S+, S-> - ||S+||^2,        CHES_norm = <S+/|y+|, S-/|y-|> - ||S+/|y+|||^2.

Higher CHES means the answers look more alike to the model, and DPO more likely lowers the chosen answer's
likelihood with the rejected one's. The first-order analysis behind it (their Theorem on the change of log pi(y+))
predicts the chosen likelihood falls when CHES > 0; `displacement_risk` marks pairs with CHES_norm > 0 (the
length-normalized score is the one the paper filters on). Pairs with chosen == rejected are left out (CHES = 0).
"""

from __future__ import annotations

import numpy as np

from dpo_doctor.metrics.info import MetricInfo

DISFAVOUR = 1.0  # nats per token: the reference finds the chosen answer e^1 = 2.7x less likely per token

INFO = {
    "ref/prefers_chosen_frac": MetricInfo("fraction", "low", "share of pairs where the reference already gives the "
                                          "chosen answer the higher summed log-prob"),
    "ref/margin_per_token_median": MetricInfo("nats / token", "low", "median of the reference's per-token log-prob "
                                              "difference, chosen minus rejected"),
    "ref/disfavoured_frac": MetricInfo("fraction", "high", f"share of pairs where the reference's per-token margin is "
                                       f"below -{DISFAVOUR:g} nats (listed for review)"),
    "ches/median": MetricInfo("hidden-state units^2", "high", "median CHES score (Razin et al. 2024)"),
    "ches/norm_median": MetricInfo("hidden-state units^2", "high", "median length-normalized CHES"),
    "ches/norm_p90": MetricInfo("hidden-state units^2", "high", "90th percentile of length-normalized CHES"),
    "ches/risk_frac": MetricInfo("fraction", "high", "share of pairs with length-normalized CHES > 0: displacement "
                                 "of the chosen answer predicted"),
}


def ches(sum_chosen: np.ndarray, sum_rejected: np.ndarray, n_chosen: np.ndarray, n_rejected: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """(CHES, length-normalized CHES) per pair from summed hidden states (n, H) and response lengths (n,)."""
    raw = np.einsum("nh,nh->n", sum_chosen, sum_rejected) - np.einsum("nh,nh->n", sum_chosen, sum_chosen)
    mc = sum_chosen / np.maximum(n_chosen, 1)[:, None]
    mr = sum_rejected / np.maximum(n_rejected, 1)[:, None]
    return raw, np.einsum("nh,nh->n", mc, mr) - np.einsum("nh,nh->n", mc, mc)


def compute(logp_chosen: np.ndarray, logp_rejected: np.ndarray, n_chosen: np.ndarray, n_rejected: np.ndarray,
            sum_chosen: np.ndarray, sum_rejected: np.ndarray, identical: np.ndarray
            ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(stats, per-pair columns: ref_logp_chosen/rejected, ref_margin, ref_margin_per_token, ref_disfavours, ches,
    ches_norm, displacement_risk)."""
    margin = logp_chosen - logp_rejected
    per_token = logp_chosen / np.maximum(n_chosen, 1) - logp_rejected / np.maximum(n_rejected, 1)
    raw, norm = ches(sum_chosen, sum_rejected, n_chosen, n_rejected)
    kept = ~identical
    risk = (norm > 0) & kept
    disfavours = (per_token < -DISFAVOUR) & kept
    def q(x, p):  # noqa: E306
        return float(np.percentile(x[kept], p)) if kept.any() else None
    stats = {"ref/prefers_chosen_frac": float((margin[kept] > 0).mean()) if kept.any() else None,
             "ref/margin_per_token_median": q(per_token, 50), "ref/disfavoured_frac":
             float(disfavours[kept].mean()) if kept.any() else None,
             "ches/median": q(raw, 50), "ches/norm_median": q(norm, 50), "ches/norm_p90": q(norm, 90),
             "ches/risk_frac": float(risk[kept].mean()) if kept.any() else None}
    return stats, {"ref_logp_chosen": logp_chosen, "ref_logp_rejected": logp_rejected, "ref_margin": margin,
                   "ref_margin_per_token": per_token, "ref_disfavours": disfavours, "ches": raw, "ches_norm": norm,
                   "displacement_risk": risk}
