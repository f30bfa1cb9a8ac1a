"""Pair metrics on a hand-built six-row table; expected values worked out in each docstring."""

import polars as pl
import pytest

from dpo_doctor.metrics import (accuracy, across_checkpoints, data_stats, drift, length_bias, margins, pair_metrics,
                                rewards)

BETA = 0.5


def table():
    """Six pairs (log-probs in nats). Log-ratios rho_c = logp_c - ref_c, rho_r = logp_r - ref_r:
    pair  rho_c  rho_r  len_c len_r  margin=beta*(rho_c-rho_r)
     0     -1     -3     2     2      1.0
     1      0     -2     4     2      1.0
     2     -2     -1     2     4     -0.5
     3      1      1     2     2      0.0   (tie: counts 0 in strict accuracy)
     4     -4     -8     8     4      2.0
     5      2      2     2     2      0.0   (chosen == rejected: excluded from accuracy)
    """
    rho_c = [-1, 0, -2, 1, -4, 2]
    rho_r = [-3, -2, -1, 1, -8, 2]
    ref_c = [-10.0, -20, -8, -6, -30, -5]
    ref_r = [-12.0, -9, -15, -6, -25, -5]
    df = pl.DataFrame({
        "checkpoint": ["c"] * 6, "step": [1] * 6, "pair_id": list(range(6)),
        "logp_chosen": [a + b for a, b in zip(ref_c, rho_c)], "logp_rejected": [a + b for a, b in zip(ref_r, rho_r)],
        "ref_logp_chosen": ref_c, "ref_logp_rejected": ref_r,
        "len_chosen": [2, 4, 2, 2, 8, 2], "len_rejected": [2, 2, 4, 2, 4, 2],
        "excluded": [False] * 5 + [True],
    })
    return df.with_columns(reward_chosen=BETA * (pl.col("logp_chosen") - pl.col("ref_logp_chosen")),
                           reward_rejected=BETA * (pl.col("logp_rejected") - pl.col("ref_logp_rejected"))
                           ).with_columns(margin=pl.col("reward_chosen") - pl.col("reward_rejected"))


def test_rewards_trl_definitions():
    """rewards/chosen = beta*mean(rho_c) = 0.5*(-4/6); margins = mean(1,1,-.5,0,2,0) = 3.5/6;
    accuracies over 5 kept pairs with strict >: pairs 0,1,4 -> 3/5; logps/chosen = mean(logp_c)."""
    m = rewards.compute(table(), BETA)
    assert m["rewards/chosen"] == pytest.approx(0.5 * -4 / 6)
    assert m["rewards/rejected"] == pytest.approx(0.5 * -11 / 6)
    assert m["rewards/margins"] == pytest.approx(3.5 / 6)
    assert m["rewards/accuracies"] == pytest.approx(3 / 5)
    assert m["logps/chosen"] == pytest.approx((-11 - 20 - 10 - 5 - 34 - 3) / 6)


def test_accuracies():
    """beta-free = 3/5 as above. Ranking pi(y_w) > pi(y_l) on kept pairs: logp_c = -11,-20,-10,-5,-34;
    logp_r = -15,-11,-16,-5,-33 -> pairs 0,2 -> 2/5. Reference ranking: ref_c > ref_r for pairs 0,2 -> 2/5.
    Length-normalized: rho_c/len_c vs rho_r/len_r = (-.5,-1.5),(0,-1),(-1,-.25),(.5,.5),(-.5,-2) -> 0,1,4 -> 3/5."""
    m = accuracy.compute(table(), BETA)
    assert m == pytest.approx({"accuracy/beta_free": 0.6, "accuracy/ranking": 0.4, "accuracy/ranking_ref": 0.4,
                               "accuracy/length_normalized": 0.6})


def test_drift():
    """drift/chosen = mean(rho_c) = -4/6; per token = sum(rho_c)/sum(len_c) = -4/20; fell = pairs 0,2,4 -> 3/6;
    margins_per_token = mean(rho_c/len_c - rho_r/len_r) = mean(1, 1, -.75, 0, 1.5, 0) = 2.75/6."""
    m = drift.compute(table(), BETA)
    assert m["drift/chosen"] == pytest.approx(-4 / 6)
    assert m["drift_per_token/chosen"] == pytest.approx(-4 / 20)
    assert m["drift_per_token/rejected"] == pytest.approx(-11 / 16)
    assert m["drift/chosen_fell_frac"] == pytest.approx(0.5)
    assert m["margins_per_token"] == pytest.approx(2.75 / 6)


def test_margins_and_length():
    """Kept margins 1, 1, -0.5, 0, 2 -> median 1, negative share 1/5. Spearman of margin with len diff
    (0, 2, -2, 0, 4): ranks of margins (3.5, 3.5, 1, 2, 5), of diffs (2.5, 4, 1, 2.5, 5); centred products sum
    to 8.75 and both centred square sums to 9.5 -> rho = 8.75 / 9.5 = 0.9211."""
    m = margins.compute(table(), BETA)
    assert m["margins/q50"] == pytest.approx(1.0)
    assert m["margins/negative_frac"] == pytest.approx(0.2)
    rho = length_bias.compute(table(), BETA)["length/margin_spearman"]
    assert rho == pytest.approx(8.75 / 9.5)


def test_data_stats_and_all_metrics_named():
    """chosen longer in pairs 1 and 4 of 5 kept -> 0.4; mean ratio (2+4+2+2+8)/(2+2+4+2+4) = 18/14."""
    s = data_stats.compute(table())
    assert s["length/chosen_longer_frac"] == pytest.approx(0.4)
    assert s["length/mean_ratio"] == pytest.approx(18 / 14)
    from dpo_doctor.metrics import metric_info

    across = set(across_checkpoints([table()])[0])  # the metrics that compare checkpoints
    assert set(pair_metrics(table(), BETA)) | across == set(metric_info())


def test_heldout_dpo_loss_and_its_paired_rise():
    """Kept margins (pair 5 excluded) 1, 1, -0.5, 0, 2: losses log(1+e^-m) = 0.31326, 0.31326, 0.97408, 0.69315,
    0.12693 -> mean 0.48414. A second checkpoint with every margin 0.5 lower (losses 0.47408, 0.47408, 1.31326,
    0.97408, 0.20141: per-pair changes 0.16082, 0.16082, 0.33918, 0.28093, 0.07448, mean 0.20325, sd 0.10570, SE
    0.04727); then a third back at the first's margins: rise 0 against the first (the lowest so far)."""
    from dpo_doctor.metrics import heldout_loss

    first = table()
    second = first.with_columns(margin=pl.col("margin") - 0.5)
    assert heldout_loss.compute(first, BETA)["heldout/dpo_loss"] == pytest.approx(0.48414, abs=1e-5)
    rises = across_checkpoints([first, second, first])
    assert rises[0] == {"heldout/dpo_loss_rise": 0.0, "heldout/dpo_loss_rise_se": 0.0}
    assert rises[1]["heldout/dpo_loss_rise"] == pytest.approx(0.20325, abs=1e-5)
    assert rises[1]["heldout/dpo_loss_rise_se"] == pytest.approx(0.04727, abs=1e-5)
    assert rises[2]["heldout/dpo_loss_rise"] == pytest.approx(0.0, abs=1e-12)
    assert "heldout/dpo_loss" in pair_metrics(first, BETA)
