"""Generated-length metrics (`metrics.length_gen`) on hand-built samples tables."""

import math

import polars as pl
import pytest

from dpo_doctor.metrics.generation import METRIC_INFO, generation_metrics
from dpo_doctor.metrics.length_gen import length_metrics


def _frame(lengths, greedy_lengths, logp, ref_logp=None):
    n = len(lengths)
    ref_logp = ref_logp if ref_logp is not None else [0.0] * n
    return pl.DataFrame({
        "prompt_id": list(range(n)) + list(range(len(greedy_lengths))),
        "sample_idx": [0] * n + [1] * len(greedy_lengths),
        "greedy": [False] * n + [True] * len(greedy_lengths),
        "n_tokens": list(lengths) + list(greedy_lengths),
        "n_chars": [4 * x for x in lengths] + [4 * x for x in greedy_lengths],
        "logp": list(logp) + [0.0] * len(greedy_lengths),
        "ref_logp": list(ref_logp) + [0.0] * len(greedy_lengths),
    })


def test_length_metrics_hand_values():
    """Policy sampled lengths 1 2 3 4 (mean 2.5, median 2.5, 10 chars), reference 5 6 7 8 (mean 6.5):
    ratio 2.5/6.5. Complete separation of 4 vs 4: exact two-sided Mann-Whitney p = 2 / C(8,4) = 2/70.
    Greedy lengths 3, 5 vs the reference's 2, 2: ratio 4/2 = 2.
    Rewards beta*(logp - ref_logp) = 0.1 * (1 3 2 4) against lengths 1 2 3 4: rank differences 0 1 1 0,
    Spearman = 1 - 6*2/(4*15) = 0.8; Pearson r = cov/sd/sd = 4/sqrt(5*5) = 0.8, so R^2 = 0.64."""
    policy = _frame([1, 2, 3, 4], [3, 5], logp=[1.0, 3.0, 2.0, 4.0])
    ref = _frame([5, 6, 7, 8], [2, 2], logp=[0.0] * 4)
    m = length_metrics(policy, ref, beta=0.1)
    assert (m["gen/length_mean"], m["gen/length_median"], m["gen/length_chars_mean"]) == (2.5, 2.5, 10.0)
    assert m["gen/length_ratio"] == pytest.approx(2.5 / 6.5)
    assert m["gen/length_pvalue"] == pytest.approx(2 / 70)
    assert (m["gen/greedy_length_mean"], m["gen/greedy_length_ratio"]) == (4.0, 2.0)
    assert m["gen/reward_length_spearman"] == pytest.approx(0.8)
    assert m["gen/reward_length_r2"] == pytest.approx(0.64)


def test_reference_against_itself():
    """The reference's own row: ratio 1, p = 1, and its implicit reward is 0 everywhere, so no correlation."""
    ref = _frame([5, 6, 7, 8], [2, 2], logp=[-3.0, -4.0, -5.0, -6.0], ref_logp=[-3.0, -4.0, -5.0, -6.0])
    m = length_metrics(ref, ref, beta=0.1)
    assert (m["gen/length_ratio"], m["gen/length_pvalue"], m["gen/greedy_length_ratio"]) == (1.0, 1.0, 1.0)
    assert m["gen/reward_length_spearman"] is None and m["gen/reward_length_r2"] is None


def test_generation_metrics_cover_metric_info_and_are_finite():
    """Every gen/* name appears in METRIC_INFO with a unit and a bad direction, and a table gives each a value."""
    df = _frame([1, 2, 3, 4], [3, 5], logp=[1.0, 3.0, 2.0, 4.0]).with_columns(
        pl.Series("token_ids", [[1, 2], [3, 4], [5], [6, 7, 8], [1, 1, 1], [2] * 5]),
        pl.lit(0.5).alias("kl"), pl.lit(0.4).alias("kl_k1"), pl.lit(0.6).alias("kl_k3"),
        pl.lit(2.0).alias("entropy"), pl.lit(0.3).alias("topk_mass"), pl.lit(True).alias("finished"),
        pl.Series("text", ["a b", "c d", "e", "f g h", "i i i", "j j j j j"]))
    df = pl.concat([df, df.with_columns(sample_idx=pl.col("sample_idx") + 2)])  # two samples per prompt
    m = generation_metrics(df, df.clone(), beta=0.1, vocab_size=50, answers=[("a b", "exact")] * 4)  # a verifiable suite; a reference apart from the checkpoint (its own p-value is None)
    reference_only = {"task/chance", "task/informative"}  # the probe stage adds them from informativeness()
    assert set(m) | {"drift/kl_on_data_per_token"} == {k for k in METRIC_INFO if not k.startswith("judge/")} - reference_only
    assert all(v is not None and math.isfinite(v) for v in m.values())
    assert all(info["bad"] in ("low", "high", None) and info["unit"] for info in METRIC_INFO.values())


def test_truncated_frac_counts_sampled_rows_cut_at_the_cap_and_dpo101_says_lower_bound():
    """3 of 4 sampled rows never reached EOS (the greedy row is not counted): 0.75. Samples cached before the
    `finished` column existed give None. DPO101 then calls its length ratio a lower bound."""
    from dpo_doctor.rules import RULES
    from dpo_doctor.rules.records import make_facts

    policy = _frame([1, 2, 3, 4], [3], logp=[0.0] * 4).with_columns(
        finished=pl.Series([True, False, False, False, True]))
    ref = _frame([1, 2, 3, 4], [3], logp=[0.0] * 4)
    assert length_metrics(policy, ref, beta=0.1)["gen/truncated_frac"] == 0.75
    assert length_metrics(ref, ref, beta=0.1)["gen/truncated_frac"] is None
    facts = {"gen/length_ratio": 1.7, "rewards/accuracies": 0.9, "rewards/margins": 1.0}
    cut = RULES["DPO101"].run(make_facts({**facts, "gen/truncated_frac": 0.75}))
    whole = RULES["DPO101"].run(make_facts({**facts, "gen/truncated_frac": 0.0}))
    assert "at least: 75% of them hit the --max-new-tokens cap" in cut.message
    assert "at least" not in whole.message
