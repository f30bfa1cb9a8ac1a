"""The rule catalogue: every rule's own examples through one parametrized test, plus catalogue-wide checks
(unique codes, docstring headings, metrics that exist in the scan), option parsing, ordering and the CLI."""

import json
import math
import re

import pytest

from dpo_doctor import rules as R
from dpo_doctor.errors import UserError
from dpo_doctor.rules.records import KINDS, SEVERITIES, VARIANTS, make_facts

HEADINGS = ("What it detects", "Why it matters", "Evidence", "Recommended fix", "References")
TRL_LOG_KEYS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "grad_norm"}
CASES = [(code, i) for code, rule in sorted(R.RULES.items()) for i in range(len(rule.examples))]


def scan_metric_names() -> set[str]:
    """Every metric name the scan or the data audit writes: pair metrics, generation metrics, data statistics
    (the audit's, which a scan's data section shares), the reference's view of the pairs."""
    from dpo_doctor.metrics import data_audit, data_reference, data_stats, metric_info
    from dpo_doctor.metrics.generation import METRIC_INFO

    return (set(metric_info()) | set(METRIC_INFO) | set(data_stats.INFO) | set(data_audit.info())
            | set(data_reference.INFO))


@pytest.mark.parametrize("code,index", CASES, ids=[f"{c}-{i}" for c, i in CASES])
def test_rule_example(code, index):
    rule = R.RULES[code]
    ex = rule.examples[index]
    found = rule.run(ex.facts)
    assert (found is not None) == ex.fires, f"{code} example {ex.title!r}: fired={found is not None}"
    if found is None:
        return
    d = found.to_dict()
    assert set(d) == {"code", "name", "kind", "severity", "checkpoint", "message", "evidence", "recommendation",
                      "explanation"}
    assert set(d["recommendation"]) == {"beta", "variant", "params", "text"}
    assert d["kind"] in KINDS and d["severity"] in SEVERITIES and d["recommendation"]["variant"] in VARIANTS + (None,)
    assert d["evidence"] and all(set(e) == {"value", "threshold", "reference_value"} for e in d["evidence"].values())
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN/Inf leaks into report.json
    assert d["message"] and d["recommendation"]["text"] and d["message"] != d["recommendation"]["text"]
    if ex.beta is not None:
        assert d["recommendation"]["beta"] == pytest.approx(ex.beta, rel=1e-3)
    if ex.variant is not None:
        assert d["recommendation"]["variant"] == ex.variant


def test_codes_unique_and_well_formed():
    modules = R._MODULES
    codes = [m.RULE.code for m in modules]
    assert len(codes) == len(set(codes)) == len(R.RULES)
    names = [m.RULE.name for m in modules]
    assert len(names) == len(set(names))
    for m in modules:
        assert re.fullmatch(r"DPO\d{3}", m.RULE.code)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", m.RULE.name)
        assert m.__name__.rsplit(".", 1)[1] == f"{m.RULE.code.lower()}_{m.RULE.name.replace('-', '_')}"


@pytest.mark.parametrize("code", sorted(R.RULES))
def test_docstring_headings_and_examples(code):
    rule = R.RULES[code]
    positions = [rule.doc.find(f"\n{h}\n") for h in HEADINGS]
    assert all(p > 0 for p in positions) and positions == sorted(positions), f"{code}: headings missing/out of order"
    assert rule.doc.startswith(f"{code} {rule.name}:")
    assert any(e.fires for e in rule.examples) and any(not e.fires for e in rule.examples)
    assert rule.params and all(isinstance(v, (int, float)) for v in rule.params.values())


def test_every_metric_a_rule_reads_is_produced_by_the_scan():
    produced = scan_metric_names()
    for code, rule in R.RULES.items():
        assert set(rule.reads) <= produced, f"{code} reads unknown metrics {set(rule.reads) - produced}"
        assert set(rule.log_reads) <= TRL_LOG_KEYS, f"{code} reads unknown log keys"
        if rule.source == "log":
            assert not rule.reads
        else:
            assert rule.reads or code == "DPO001"  # DPO001 scans every metric for NaN/Inf


def test_kind_vocabulary_is_the_contract():
    assert KINDS == ("length_exploitation", "likelihood_displacement", "over_optimization", "overfitting",
                     "mode_collapse", "label_noise", "underfitting", "no_learning", "reference_mismatch",
                     "distribution_shift", "numerical_instability", "degeneration", "capability_regression",
                     "length_bias", "likelihood_displacement_risk", "mode_collapse_risk", "duplicates",
                     "contradictions", "truncation", "reference_disfavours", "degenerate_pairs")
    assert set(KINDS) == {r.kind for r in R.RULES.values()}  # every kind has at least one rule


def test_parse_set_option():
    assert R.parse_set_option("DPO101.max_corr=0.4") == ("DPO101", "max_corr", 0.4)
    assert R.parse_set_option("dpo106.min_drop_nats = 2") == ("DPO106", "min_drop_nats", 2.0)
    with pytest.raises(UserError, match="did you mean DPO101"):
        R.parse_set_option("DPO1O1.max_corr=0.4")
    with pytest.raises(UserError, match="did you mean max_corr"):
        R.parse_set_option("DPO101.max_cor=0.4")
    with pytest.raises(UserError, match="not a number"):
        R.parse_set_option("DPO101.max_corr=high")
    with pytest.raises(UserError, match="CODE.PARAM=VALUE"):
        R.parse_set_option("DPO101=0.4")


DISPLACED = make_facts({"drift_per_token/chosen": -2.75, "drift_per_token/rejected": -4.19,
                        "drift/chosen_fell_frac": 1.0, "rewards/margins": 4.3, "rewards/accuracies": 0.89,
                        "ref_logps/chosen": -7.5, "logps/chosen": -62.5})  # chosen 55 nats less likely


def test_overrides_change_the_outcome_and_are_checked():
    assert [d.code for d in R.run_rules(DISPLACED)] == ["DPO106"]
    assert R.run_rules(DISPLACED, overrides={"DPO106": {"min_drop_nats": 60.0}}) == []
    with pytest.raises(UserError, match="has no parameter"):
        R.run_rules(DISPLACED, overrides={"DPO106": {"max_drop": 3.0}})


def test_select_and_ignore_with_prefixes():
    assert R.run_rules(DISPLACED, ignore={"DPO106"}) == []
    assert R.run_rules(DISPLACED, select={"DPO0"}) == []
    assert [d.code for d in R.run_rules(DISPLACED, select={"DPO1"})] == ["DPO106"]
    with pytest.raises(UserError, match="did you mean DPO106"):
        R.run_rules(DISPLACED, select={"DPO1O6"})


def _ln2_log():
    return [{"step": 10 * i, "loss": math.log(2), "rewards/margins": 0.0, "rewards/accuracies": 0.0}
            for i in range(1, 9)]


def test_order_severity_then_code_and_log_rules_deduplicated():
    zero = {"drift/chosen": 0.0, "drift/rejected": 0.0, "rewards/margins": 0.0, "margins_per_token": 0.0,
            "drift_per_token/chosen": 0.0, "drift_per_token/rejected": 0.0, "rewards/accuracies": 0.0,
            "gen/length_ratio": 1.8}
    found = R.run_rules(make_facts(zero, zero, log=_ln2_log()))
    codes = [d.code for d in found]
    assert codes == ["DPO002", "DPO101"]  # DPO201 (same kind, from the log) is dropped; the error comes first
    assert R.verdict_of(found)[0] == "error"
    log_only = R.run_rules(make_facts(log=_ln2_log(), log_only=True))
    assert [d.code for d in log_only] == ["DPO201"]


def test_order_puts_the_cause_before_the_symptom_it_explains():
    """Zoo over_optimization: KL blow-up (227 nats) with samples 2.1x longer from length-balanced data: the KL
    blow-up explains the length growth (literature section 10 row 15), so DPO102 comes before DPO101. With
    length-skewed data (zoo length_exploitation) length is the cause and keeps its code order."""
    ck = lambda kl, acc: {"gen/kl_mean": kl, "rewards/accuracies": acc, "gen/length_ratio": 2.1,  # noqa: E731
                          "rewards/margins": 0.9}
    cks = (ck(144, 0.70), ck(82, 0.78), ck(218, 0.80), ck(227, 0.83))
    # 227 nats over 21.2-token reference answers: 10.7 nats/token, a blow-up past 10 x the 0.13 budget (0.2 x 0.65)
    ref = {"gen/length_mean": 21.2, "gen/entropy_mean": 0.65}
    balanced = R.run_rules(make_facts(*cks, beta=0.01, reference=ref, data={"length/mean_ratio": 1.0,
                                                                             "length/chosen_longer_frac": 0.5}))
    assert [d.code for d in balanced] == ["DPO102", "DPO101"]
    skewed = R.run_rules(make_facts(*cks, beta=0.01, reference=ref, data={"length/mean_ratio": 3.0,
                                                                           "length/chosen_longer_frac": 1.0,
                                                            "length/chosen_mean": 32.0, "length/rejected_mean": 10.5}))
    assert [d.code for d in skewed] == ["DPO101", "DPO102"]


def test_displacement_is_listed_before_the_kl_blow_up_it_explains():
    """SmolLM2 zoo likelihood_displacement (minimal-edit pairs, lr 3e-3): sampled KL 69 nats over 18.5-token reference
    answers (3.7 nats/token) and graded accuracy 0.19 -> 0 make DPO102 fire, but the margin gained 1.9 nats while
    the chosen answers lost 46: the KL went to answers in neither set, so displacement (DPO106) is the cause and
    comes first. The zoo's over_optimization run gained 38.8 nats of margin for 110 lost (0.35 > 0.15): DPO102
    stays first."""
    def ck(kl, task, margin, lost, beta):
        return {"gen/kl_mean": kl, "rewards/accuracies": 0.54, "task/accuracy": task, "rewards/margins": margin,
                "ref_logps/chosen": -42.3, "logps/chosen": -42.3 - lost, "drift_per_token/chosen": -2.28,
                "drift_per_token/rejected": -2.37, "drift/chosen_fell_frac": 1.0}
    ref = {"gen/length_mean": 18.5, "task/accuracy": 0.1875, "task/n_prompts": 16}
    displaced = R.run_rules(make_facts(ck(52, 0.025, -0.08, 33, 0.1), ck(69, 0.0, 0.189, 46, 0.1), reference=ref,
                                       n_pairs=48))
    assert [d.code for d in displaced][:2] == ["DPO106", "DPO102"]
    over = R.run_rules(make_facts(ck(42, 0.0, 0.628, 164, 0.01), ck(40, 0.0, 0.388, 110, 0.01), reference=ref,
                                  beta=0.01, n_pairs=48))
    assert [d.code for d in over][:2] == ["DPO102", "DPO106"]


def test_verdict_healthy_only_when_quality_was_measured():
    assert R.verdict_of([], quality_measured=True) == ("healthy", "No known DPO failure found, and answer quality held.")
    verdict, summary = R.verdict_of([])
    assert verdict == "no-failure-found" and "healthy" not in summary.lower()
    assert summary == ("No failure found in implicit rewards, drift, KL, length and diversity; answer quality not "
                       "measured: add --probe-suite or --judge.")
    verdict, summary = R.verdict_of(R.run_rules(DISPLACED))
    assert verdict == "warning" and "likelihood displacement" in summary


def test_facts_from_report_orders_checkpoints_and_flags_log_only():
    report = {"run": {"beta": 0.2, "loss_type": "sigmoid"}, "reference": {"metrics": {"gen/length_mean": 40.0}},
              "data": {"stats": {"length/mean_ratio": 1.1}},
              "checkpoints": [{"name": "checkpoint-20", "step": 20, "metrics": {"rewards/margins": 0.3}},
                              {"name": "checkpoint-10", "step": 10, "metrics": {"rewards/margins": 0.1}}]}
    facts = R.facts_from_report(report)
    assert [c.step for c in facts.checkpoints] == [10, 20] and facts.beta == 0.2 and not facts.log_only
    assert facts.ref("gen/length_mean") == 40.0 and facts.data("length/mean_ratio") == 1.1
    assert R.facts_from_report({**report, "checkpoints": []}).log_only


def test_cli_rules_and_explain(capsys):
    from dpo_doctor.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["rules"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(code in out for code in R.RULES) and "length_exploitation" in out
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "dpo101"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "What it detects" in out and "max_corr=0.5" in out
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "DPO1O1"])
    assert exit_.value.code == 2 and "did you mean DPO101" in capsys.readouterr().err


def test_underfitting_is_listed_before_the_label_noise_it_explains():
    """A run that learned next to nothing keeps about half its pairs negative whatever the labels (SmolLM2 corpus
    run at beta 0.5, lr 1e-4): DPO107 is the finding, DPO105 follows it."""
    from dpo_doctor.rules import run_rules as run
    from dpo_doctor.rules.records import make_facts as facts_of

    ck = {"margins/negative_frac": 0.45, "rewards/margins": 0.02, "rewards/accuracies": 0.6, "margins_per_token": 0.1}
    codes = [d.code for d in run(facts_of(ck, ck, ck))]
    assert codes == ["DPO107", "DPO105"]
    noisy = {**ck, "rewards/margins": 0.4, "rewards/accuracies": 0.7}  # learning, yet 45% stay negative: noise first
    assert [d.code for d in run(facts_of(noisy, noisy, noisy))][0] == "DPO105"
