"""Best-checkpoint choice: highest held-out accuracy inside the KL budget and the other limits diagnoses set."""

from dpo_doctor.rules.best import choose_best
from dpo_doctor.rules import run_rules
from dpo_doctor.rules.records import make_facts


def _ck(acc, margin=1.0, **extra):
    return {"rewards/accuracies": acc, "rewards/margins": margin, **extra}


def test_healthy_picks_best_accuracy_then_margin_then_latest():
    facts = make_facts(_ck(0.80), _ck(0.94, 1.2), _ck(0.94, 1.5), _ck(0.94, 1.5))
    best = choose_best(facts, run_rules(facts))
    assert best["name"] == "checkpoint-400" and best["step"] == 400
    assert "0.94" in best["reason"] and "1.5" in best["reason"]


REF = {"gen/length_mean": 25.0}  # the reference's answers: 25 tokens, so the default budget is 2 x 25 = 50 nats


def test_hump_stays_inside_the_kl_budget():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}), reference=REF)
    diagnoses = run_rules(facts)
    assert "over_optimization" in {d.kind for d in diagnoses}
    best = choose_best(facts, diagnoses)
    assert best["name"] == "checkpoint-200"  # 0.76 at step 300 is past the 50-nat budget
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
    assert over.recommendation.params["ship_step"] == best["step"] == 200


def test_budget_override_moves_the_choice():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}), reference=REF)
    diagnoses = run_rules(facts, overrides={"DPO102": {"kl_budget_per_token": 3.6}})  # 90 nats per completion
    assert choose_best(facts, diagnoses)["name"] == "checkpoint-300"


def test_every_checkpoint_past_the_budget_takes_the_closest():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 100.0}), _ck(0.80, **{"gen/kl_mean": 200.0}), beta=0.01,
                       reference=REF)
    best = choose_best(facts, run_rules(facts))
    assert best["name"] == "checkpoint-100" and "least KL" in best["reason"]


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


def test_task_accuracy_hump_is_preferred_and_confidence_reported():
    """Task accuracy peaks at step 200 then falls while KL keeps rising: ship the hump. Its interval (0.62-0.85)
    overlaps the runner-up's (step 300: 0.45-0.75), so the choice is 'within noise'."""
    facts = make_facts(_q("task/accuracy", 0.50, 0.35, 0.65, 10), _q("task/accuracy", 0.75, 0.62, 0.85, 20),
                       _q("task/accuracy", 0.60, 0.45, 0.75, 35), _q("task/accuracy", 0.55, 0.40, 0.70, 45, acc=0.9),
                       reference={"task/accuracy": 0.52})
    best = choose_best(facts, run_rules(facts))
    assert best["name"] == "checkpoint-200" and best["signal"] == "task/accuracy"
    assert best["confidence"] == "within noise" and "hump" in best["reason"] and "0.52" in best["reason"]


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
    assert "DPO102 suggested step 200" in best["reason"]


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
