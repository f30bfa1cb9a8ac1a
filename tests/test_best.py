"""Best-checkpoint choice: highest held-out accuracy inside the KL budget and the other limits diagnoses set."""

from dpo_doctor.rules.best import choose_best
from dpo_doctor.rules import run_rules
from dpo_doctor.rules.records import make_facts


def _ck(acc, margin=1.0, **extra):
    return {"rewards/accuracies": acc, "rewards/margins": margin, **extra}


def test_without_quality_the_pick_is_the_earliest_with_most_of_the_gain():
    """Changed on purpose (issue 20): not the highest implicit-reward accuracy but the quality-vs-KL hump. Gains over
    a coin: 0.30, 0.44, 0.44, 0.44; 80% of 0.44 = 0.352, first reached at step 200 (0.94), not the later ties."""
    facts = make_facts(_ck(0.80), _ck(0.94, 1.2), _ck(0.94, 1.5), _ck(0.94, 1.5))
    best = choose_best(facts, run_rules(facts))
    assert best["name"] == "checkpoint-200" and best["step"] == 200
    assert best["confidence"] == "low: no quality signal" and "0.94" in best["reason"]
    assert "no answer-quality signal" in best["reason"]


def test_without_quality_kl_past_4x_the_first_checkpoints_is_not_shipped():
    """KL 10, 20, 45, 90 nats: the limit is 4 x 10 = 40 (the run's own scale). Within it accuracies 0.70, 0.74:
    gains 0.20, 0.24, 80% of 0.24 = 0.192, reached at step 100 (0.20). Without KL the same accuracies 0.70, 0.74,
    0.90, 0.95 would pick step 300 (80% of 0.45 = 0.36: 0.90 is the first at or above 0.86)."""
    accs, kls = (0.70, 0.74, 0.90, 0.95), (10.0, 20.0, 45.0, 90.0)
    facts = make_facts(*[_ck(a, **{"gen/kl_mean": k}) for a, k in zip(accs, kls)])
    best = choose_best(facts, [])
    assert best["step"] == 100 and "4x the first checkpoint's" in best["reason"]
    blind = make_facts(*[_ck(a) for a in accs])
    assert choose_best(blind, [])["step"] == 300


REF = {"gen/length_mean": 25.0}  # the reference's answers: 25 tokens, so the default budget is 2 x 25 = 50 nats


def test_hump_stays_inside_the_kl_budget():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}), reference=REF)
    diagnoses = run_rules(facts)
    assert "over_optimization" in {d.kind for d in diagnoses}
    best = choose_best(facts, diagnoses)
    # 0.76 at step 300 is past the 50-nat budget; within it 0.70 already has 80% of the 0.24 gain (changed on
    # purpose, issue 20: the earliest checkpoint with most of the gain, not the most accurate)
    assert best["name"] == "checkpoint-100"
    assert "KL budget" in best["reason"] and "hump" in best["reason"]


def test_rule_message_and_best_checkpoint_name_the_same_checkpoint():
    """One source of truth: DPO102's "Ship checkpoint-N" is the checkpoint best_checkpoint ships."""
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}),
                       _ck(0.72, **{"gen/kl_mean": 160.0, "gen/length_ratio": 2.0}), data={"length/mean_ratio": 1.0},
                       reference=REF)
    diagnoses = run_rules(facts)
    over = next(d for d in diagnoses if d.code == "DPO102")
    best = choose_best(facts, diagnoses)
    assert f"Ship {best['name']} " in over.recommendation.text
    assert over.recommendation.params["ship_step"] == best["step"] == 100


def test_budget_override_moves_the_choice():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}), reference=REF)
    diagnoses = run_rules(facts, overrides={"DPO102": {"kl_budget_per_token": 3.6}})  # 90 nats per completion
    # within 90 nats: 0.70, 0.74, 0.76; 80% of the 0.26 gain = 0.208 -> 0.74 at step 200 is the first to reach it
    assert choose_best(facts, diagnoses)["name"] == "checkpoint-200"


def test_every_checkpoint_past_the_budget_takes_the_early_pick_among_all():
    # entropy 1 nat/token: budget 0.2 nats/token (5 nats), blow-up past 50 nats: both checkpoints are past it;
    # 80% of the 0.3 gain over a coin is 0.74: the first checkpoint with it is step 200
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 100.0}), _ck(0.80, **{"gen/kl_mean": 200.0}), beta=0.01,
                       reference={**REF, "gen/entropy_mean": 1.0})
    best = choose_best(facts, run_rules(facts))
    assert best["name"] == "checkpoint-200" and "among all" in best["reason"]


def test_noisy_kl_does_not_ship_the_last_checkpoint_for_its_dip():
    """Sampled KL goes up and down between checkpoints; "the least KL" shipped the last checkpoint of corpus runs
    whose first was their best. The same accuracy everywhere: the earliest checkpoint is the hump's."""
    facts = make_facts(_ck(0.80, **{"gen/kl_mean": 100.0}), _ck(0.80, **{"gen/kl_mean": 300.0}),
                       _ck(0.80, **{"gen/kl_mean": 90.0}), beta=0.01, reference={**REF, "gen/entropy_mean": 1.0})
    diagnoses = run_rules(facts)
    assert any(d.code == "DPO102" for d in diagnoses)
    assert choose_best(facts, diagnoses)["name"] == "checkpoint-100"


def test_the_over_optimization_pick_is_never_a_collapsed_checkpoint():
    """DPO102's hump checkpoint (step 200) has collapsed (past DPO104's allowed drop): DPO102 names the early pick
    among the checkpoints that did not collapse, and best_checkpoint ships that same one (no contradiction)."""
    div = {"gen/ead_per_input": 0.9}
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 100.0}, **div),
                       _ck(0.90, **{"gen/kl_mean": 200.0, "gen/ead_per_input": 0.3}),
                       _ck(0.91, **{"gen/kl_mean": 220.0, "gen/ead_per_input": 0.3}), beta=0.01,
                       reference={**REF, "gen/entropy_mean": 1.0, **div})
    diagnoses = run_rules(facts)
    codes = [d.code for d in diagnoses]
    assert "DPO102" in codes and "DPO104" in codes
    assert codes.index("DPO104") < codes.index("DPO102")  # the collapse is the more specific finding: first
    over = next(d for d in diagnoses if d.code == "DPO102")
    best = choose_best(facts, diagnoses)
    assert over.recommendation.params["ship_step"] == best["step"] == 100
    assert f"Ship {best['name']} " in over.recommendation.text
    # without the diversity measurements the same run's hump is step 200
    plain = make_facts(_ck(0.70, **{"gen/kl_mean": 100.0}), _ck(0.90, **{"gen/kl_mean": 200.0}),
                       _ck(0.91, **{"gen/kl_mean": 220.0}), beta=0.01, reference={**REF, "gen/entropy_mean": 1.0})
    assert next(d for d in run_rules(plain) if d.code == "DPO102").recommendation.params["ship_step"] == 200


def test_nothing_to_ship():
    zero = {"drift/chosen": 0.0, "drift/rejected": 0.0, "rewards/margins": 0.0, "rewards/accuracies": 0.0}
    facts = make_facts(zero, zero)
    assert choose_best(facts, run_rules(facts)) is None
    assert choose_best(make_facts(log=[{"step": 1, "loss": 0.6}], log_only=True), []) is None


def test_nan_checkpoint_is_never_chosen():
    facts = make_facts(_ck(0.80), _ck(0.95, float("nan")))
    assert choose_best(facts, run_rules(facts))["name"] == "checkpoint-100"


def test_wrong_reference_ranks_by_reference_free_accuracy():
    a = _ck(0.60, **{"accuracy/ranking": 0.93, "drift_per_token/chosen": 1.5, "drift_per_token/rejected": 1.0})
    b = _ck(0.65, **{"accuracy/ranking": 0.88, "drift_per_token/chosen": 1.6, "drift_per_token/rejected": 0.9})
    facts = make_facts(a, b)
    diagnoses = run_rules(facts)
    assert diagnoses[0].kind == "reference_mismatch"
    best = choose_best(facts, diagnoses)
    assert best["name"] == "checkpoint-100" and "reference-free" in best["reason"]


def _q(key, value, low, high, kl, acc=0.8):
    return {"rewards/accuracies": acc, "rewards/margins": 1.0, "gen/kl_mean": kl, key: value,
            f"{key}_low": low, f"{key}_high": high}


def test_task_accuracy_peak_without_per_prompt_scores_compares_intervals_and_claims_no_hump():
    """Task accuracy peaks at step 200 then falls while KL keeps rising. Without per-prompt scores (an old report)
    the intervals (0.62-0.85 vs 0.45-0.75) overlap: 'within noise'; no paired test, so no DPO111 finding, and the
    reason claims no fall (issue 20: the pick never names a fall the diagnoses do not)."""
    facts = make_facts(_q("task/accuracy", 0.50, 0.35, 0.65, 10), _q("task/accuracy", 0.75, 0.62, 0.85, 20),
                       _q("task/accuracy", 0.60, 0.45, 0.75, 35), _q("task/accuracy", 0.55, 0.40, 0.70, 45, acc=0.9),
                       reference={"task/accuracy": 0.52})
    diagnoses = run_rules(facts)
    best = choose_best(facts, diagnoses)
    assert best["name"] == "checkpoint-200" and best["signal"] == "task/accuracy"
    assert best["confidence"] == "within noise" and "0.52" in best["reason"]
    assert "DPO111" not in {d.code for d in diagnoses} and "fell" not in best["reason"]


# The case, hand-worked: 24 prompts x 5 samples. A scores 65/120 = 0.542, B 38/120 = 0.317.
# A ahead on 12 prompts (6 x 0.6 and 6 x 0.8 against 10 x 0.2 and 2 x 0.4), behind on 1 (0.2 vs 0.4), 11 tied
# (0.4 each). Sign test: 13 untied prompts, 1 against: p = 2 x (C(13,0) + C(13,1)) / 2^13 = 2 x 14 / 8192 = 0.00342.
A_SCORES = [0.6] * 6 + [0.8] * 6 + [0.2] + [0.4] * 11
B_SCORES = [0.2] * 10 + [0.4] * 2 + [0.4] + [0.4] * 11


def test_paired_sign_test_hand_worked():
    from dpo_doctor.metrics.paired import paired, sign_test_p

    assert abs(sum(A_SCORES) / 24 - 65 / 120) < 1e-12 and abs(sum(B_SCORES) / 24 - 38 / 120) < 1e-12
    test = paired(A_SCORES, B_SCORES)
    assert (test.ahead, test.behind, test.n) == (12, 1, 24)
    assert abs(test.p_value - 28 / 8192) < 1e-12 and test.significant
    assert sign_test_p(0, 0) == 1.0 and abs(sign_test_p(3, 3) - 1.0) < 1e-12
    assert abs(sign_test_p(5, 0) - 2 / 32) < 1e-12  # 5 of 5: p = 2 x 1/32 = 0.0625, not significant


def test_0542_vs_0317_is_not_within_noise_when_the_pairing_says_so():
    """The issue's numbers: independent Wilson intervals overlap, the paired test says the difference is real."""
    from dpo_doctor.metrics.proportions import wilson

    a_low, a_high = wilson(sum(A_SCORES), 24)
    b_low, b_high = wilson(sum(B_SCORES), 24)
    assert a_low < b_high  # the old criterion would have said "within noise"
    facts = make_facts(_q("task/accuracy", 65 / 120, a_low, a_high, 10), _q("task/accuracy", 38 / 120, b_low, b_high, 30),
                       per_prompt=[{"task/accuracy": A_SCORES}, {"task/accuracy": B_SCORES}])
    diagnoses = run_rules(facts)
    best = choose_best(facts, diagnoses)
    assert best["step"] == 100 and best["confidence"] == "clear" and "p=0.0034" in best["reason"]
    fall = next(d for d in diagnoses if d.code == "DPO111")  # the fall after the peak is a finding
    assert fall.recommendation.params["ship_step"] == 100 and fall.kind == "over_optimization"  # KL 10 -> 30
    assert "DPO111" in best["reason"] and "fell" in best["reason"]


def test_a_fall_within_noise_is_no_finding_and_no_hump_clause():
    """3 prompts of 24 lower, none higher: p = 2/8 = 0.25: no DPO111, so the pick names no fall."""
    facts = make_facts(_q("task/accuracy", 0.6, 0.4, 0.8, 10), _q("task/accuracy", 0.55, 0.35, 0.75, 40),
                       per_prompt=[{"task/accuracy": [1.0] * 3 + [0.5] * 21},
                                   {"task/accuracy": [0.6] * 3 + [0.5] * 21}])
    diagnoses = run_rules(facts)
    best = choose_best(facts, diagnoses)
    assert not diagnoses and best["step"] == 100 and best["confidence"] == "within noise"
    assert "fell" not in best["reason"] and "hump" not in best["reason"]


def test_clear_winner_and_ties_take_less_kl():
    """0.9 (0.8-0.95) clears 0.5 (0.4-0.6): confidence clear. Equal win rates: the one with less KL (the earlier
    hump) is shipped."""
    facts = make_facts(_q("judge/win_rate", 0.5, 0.4, 0.6, 10), _q("judge/win_rate", 0.9, 0.8, 0.95, 20))
    best = choose_best(facts, run_rules(facts))
    assert best["name"] == "checkpoint-200" and best["confidence"] == "clear" and best["signal"] == "judge/win_rate"
    tied = make_facts(_q("judge/win_rate", 0.7, 0.6, 0.8, 30), _q("judge/win_rate", 0.7, 0.6, 0.8, 12))
    assert choose_best(tied, run_rules(tied))["name"] == "checkpoint-200"


def test_judge_outranks_task_accuracy_and_dpo102s_accuracy_hump():
    """DPO102 ships step 200 from implicit-reward accuracy; the judge prefers step 300 (past the KL budget): the
    judge wins and the reason says DPO102 suggested otherwise. Task accuracy, present too, is not used."""
    rows = [_q("judge/win_rate", 0.55, 0.45, 0.65, 20, acc=0.70), _q("judge/win_rate", 0.60, 0.5, 0.7, 45, acc=0.74),
            _q("judge/win_rate", 0.72, 0.62, 0.8, 80, acc=0.73), _q("judge/win_rate", 0.58, 0.48, 0.68, 120, acc=0.71)]
    for r in rows:
        r["task/accuracy"] = 0.9 if r["gen/kl_mean"] == 20 else 0.5
    facts = make_facts(*rows, reference=REF)
    diagnoses = run_rules(facts)
    assert any(d.code == "DPO102" for d in diagnoses)
    best = choose_best(facts, diagnoses)
    assert best["name"] == "checkpoint-300" and best["signal"] == "judge/win_rate"
    assert "DPO102 suggested step 100" in best["reason"]


def test_degenerate_checkpoints_are_not_shipped():
    """DPO109 fires from step 300 (30 of 128 answers loop vs 4): the best task accuracy there is skipped."""
    degen = {"gen/degen/n": 128, "gen/degen/repeat_4gram_rate": 0.1, "gen/degen/invalid_char_rate": 0.0}
    rows = [_q("task/accuracy", 0.6, 0.5, 0.7, 10), _q("task/accuracy", 0.65, 0.55, 0.75, 15),
            _q("task/accuracy", 0.7, 0.6, 0.8, 20)]
    for r, count in zip(rows, (4, 5, 30)):
        r.update(degen, **{"gen/degen/count": count, "gen/degen/frac": count / 128})
    facts = make_facts(*rows, reference={**degen, "gen/degen/count": 4, "gen/degen/frac": 4 / 128})
    diagnoses = run_rules(facts)
    assert [d.code for d in diagnoses if d.code == "DPO109"] == ["DPO109"]
    best = choose_best(facts, diagnoses)
    assert best["name"] == "checkpoint-200" and "DPO109" in best["reason"]


def test_without_a_quality_signal_the_accuracy_rule_is_named():
    facts = make_facts(_ck(0.80), _ck(0.94))
    assert choose_best(facts, run_rules(facts))["signal"] == "rewards/accuracies"
