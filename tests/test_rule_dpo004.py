"""DPO004 trainer-metrics-mismatch: which cause each pattern of trainer-vs-scan differences names, the tolerances,
and `settings.data_is_eval` reaching the rule through facts_from_report."""

import pytest

from dpo_doctor.rules import RULES, facts_from_report
from dpo_doctor.rules.dpo004_trainer_metrics_mismatch import KEYS, check
from dpo_doctor.rules.records import make_facts

RULE = RULES["DPO004"]


def scan_metrics(margin, logps, ref=(-39.0, -41.0), beta=0.1):
    """Consistent scan metrics: rewards = beta * (logps - ref)."""
    chosen, rejected = beta * (logps[0] - ref[0]), beta * (logps[1] - ref[1])
    return {"rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/margins": chosen - rejected,
            "rewards/accuracies": 0.75, "logps/chosen": logps[0], "logps/rejected": logps[1],
            "ref_logps/chosen": ref[0], "ref_logps/rejected": ref[1]}


A, B = scan_metrics(0.2, (-42.0, -47.0)), scan_metrics(0.4, (-45.0, -53.0))


def facts(edit=lambda step, row: row, data_is_eval=True):
    log = [{"step": s, "split": "eval", **edit(s, {k: m[k] for k in KEYS})} for s, m in ((2, A), (4, B))]
    return make_facts(A, B, steps=(2, 4), log=log, data_is_eval=data_is_eval)


def test_identical_numbers_and_small_noise_are_silent():
    assert check(facts()) is None
    assert check(facts(lambda s, r: {k: v * 1.001 for k, v in r.items()})) is None


@pytest.mark.parametrize("edit,cause", [
    (lambda s, r: {**r, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/margins": 0.0}, "exactly 0"),
    (lambda s, r: {**r, "logps/chosen": -39.0, "logps/rejected": -41.0}, "equal the scan's reference log-probs"),
    (lambda s, r: {**r, **{k: 2 * r[k] for k in ("rewards/chosen", "rewards/rejected", "rewards/margins")}},
     "used beta = 0.2"),
    (lambda s, r: {**r, "logps/chosen": r["logps/chosen"] - 3, "logps/rejected": r["logps/rejected"] - 3},
     "differ by a constant -3 nats"),
    (lambda s, r: {**r, "rewards/margins": r["rewards/margins"] + (1.0 if s == 2 else -2.0)}, "no simple pattern"),
])
def test_pattern_names_the_cause(edit, cause):
    found = check(facts(edit))
    assert found is not None and cause in found.message, found and found.message
    assert found.checkpoint in ("checkpoint-2", "checkpoint-4")


def test_needs_the_trainers_eval_set_and_a_checkpoint_step():
    zero = lambda s, r: {**r, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/margins": 0.0}
    assert check(facts(zero, data_is_eval=False)) is None
    off_steps = make_facts(A, B, steps=(3, 5), log=[{"step": 2, "split": "eval", "rewards/margins": 0.0}],
                           data_is_eval=True)
    assert check(off_steps) is None


def test_tolerances_are_overridable():
    shifted = facts(lambda s, r: {**r, "rewards/margins": r["rewards/margins"] + 0.1})
    assert RULE.run(shifted) is not None
    assert RULE.run(shifted, {"rewards_atol": 0.2}) is None


def test_data_is_eval_comes_from_report_settings():
    report = {"run": {"beta": 0.1}, "checkpoints": [{"name": "checkpoint-2", "step": 2, "metrics": A}],
              "settings": {"data_is_eval": True}}
    assert facts_from_report(report).data_is_eval is True
    assert facts_from_report({**report, "settings": {}}).data_is_eval is False
