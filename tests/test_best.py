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


def test_hump_stays_inside_the_kl_budget():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}))
    diagnoses = run_rules(facts)
    assert "over_optimization" in {d.kind for d in diagnoses}
    best = choose_best(facts, diagnoses)
    assert best["name"] == "checkpoint-200"  # 0.76 at step 300 is past the 50-nat budget
    assert "KL budget" in best["reason"] and "hump" in best["reason"]


def test_rule_message_and_best_checkpoint_name_the_same_checkpoint():
    """One source of truth: DPO102's "Ship checkpoint-N" is the checkpoint best_checkpoint ships."""
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}),
                       _ck(0.72, **{"gen/kl_mean": 160.0, "gen/length_ratio": 2.0}), data={"length/mean_ratio": 1.0})
    diagnoses = run_rules(facts)
    over = next(d for d in diagnoses if d.code == "DPO102")
    best = choose_best(facts, diagnoses)
    assert f"Ship {best['name']} " in over.recommendation.text
    assert over.recommendation.params["ship_step"] == best["step"] == 200


def test_budget_override_moves_the_choice():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 20.0}), _ck(0.74, **{"gen/kl_mean": 45.0}),
                       _ck(0.76, **{"gen/kl_mean": 80.0}), _ck(0.71, **{"gen/kl_mean": 120.0}))
    diagnoses = run_rules(facts, overrides={"DPO102": {"kl_budget": 90.0}})
    assert choose_best(facts, diagnoses)["name"] == "checkpoint-300"


def test_every_checkpoint_past_the_budget_takes_the_closest():
    facts = make_facts(_ck(0.70, **{"gen/kl_mean": 100.0}), _ck(0.80, **{"gen/kl_mean": 200.0}), beta=0.01)
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
