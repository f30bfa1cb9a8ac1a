"""The calibration corpus's truth (benchmarks/corpus/outcome.py) and graders (benchmarks/corpus/tasks.py): the truth
is read from measured outcomes with a paired test, checked here on hand-made measurements against scipy."""

import importlib.util
import random
import sys
from pathlib import Path

import pytest
from scipy import stats

CORPUS = Path(__file__).resolve().parent.parent / "benchmarks" / "corpus"


def _load(name):
    sys.path.insert(0, str(CORPUS))
    try:
        spec = importlib.util.spec_from_file_location(f"corpus_{name}", CORPUS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(CORPUS))


outcome = _load("outcome")
tasks = _load("tasks")


def test_paired_interval_matches_scipy():
    rng = random.Random(0)
    a = [rng.choice((0, 0.5, 1)) for _ in range(40)]
    b = [min(1, x + rng.choice((0, 0, 0.5))) for x in a]
    mean, lo, hi = outcome.paired(b, a)
    d = [y - x for x, y in zip(a, b)]
    ci = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert mean == pytest.approx(sum(d) / len(d))
    assert lo == pytest.approx(ci.low, abs=2e-3) and hi == pytest.approx(ci.high, abs=2e-3)


def _model(q, step=None, kl=1.0, gen_len=10.0, d2=0.8, answers=0.9, chosen=-0.5, margin=0.5):
    m = {"quality": sum(q) / len(q), "per_question": q, "kl": kl, "gen_len": gen_len, "distinct2": d2,
         "distinct_answers": answers, "drift_chosen": chosen, "drift_rejected": -2.0, "margin": margin,
         "reward_acc": 0.8}
    if step is not None:
        m["step"] = step
    return m


def _measures(ref, *cks):
    return {"models": {"reference": ref, **{f"checkpoint-{c['step']}": c for c in cks}}}


N = 40
GOOD = [1.0] * 30 + [0.0] * 10
WORSE = [1.0] * 18 + [0.0] * 22  # 12 of the 30 right answers lost: a paired fall of 30 points


def test_healthy_when_quality_holds():
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10), _model(GOOD, 20)))
    assert t["primary"] == "healthy" and not t["quality_fell"] and t["labels"] == []


def test_fall_after_peak_with_kl_rise_is_over_optimization():
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10, kl=2.0), _model(WORSE, 20, kl=9.0)))
    assert t["quality_fell"] and t["primary"] == "over_optimization" and t["fall_points"] == pytest.approx(30.0)


def test_fall_with_the_chosen_answers_falling_is_displacement():
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10, chosen=-0.5),
                                _model(WORSE, 20, chosen=-4.0, kl=1.5)))
    assert t["primary"] == "likelihood_displacement"


def test_kl_rising_with_the_fall_names_over_optimization_before_displacement():
    """The issue's order: over-optimization when KL rose with the fall, then displacement, then regression."""
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10, chosen=-0.5),
                                _model(WORSE, 20, chosen=-4.0, kl=3.0)))
    assert t["primary"] == "over_optimization" and t["mechanism"] == "over_optimization"
    assert t["labels"] == ["over_optimization", "likelihood_displacement"]  # both hold: both are labels


def test_fall_without_kl_or_chosen_drop_is_capability_regression():
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10, kl=2.0), _model(WORSE, 20, kl=2.5)))
    assert t["primary"] == "capability_regression"


def test_a_fall_within_noise_is_not_a_failure():
    one_lost = [1.0] * 29 + [0.0] * 11
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10), _model(one_lost, 20)))
    assert not t["quality_fell"] and t["primary"] == "healthy"


def test_below_the_reference_the_reference_is_the_best_point():
    """The reference is the run's step 0 (KL 0): a run below it at every checkpoint fell from it, and the KL it
    spent rose with the fall (over-optimization); without KL spent and without the chosen answers falling it is a
    capability regression."""
    t = outcome.label(_measures(_model(GOOD), _model(WORSE, 10), _model(WORSE, 20)))
    assert t["quality_fell"] and t["below_reference"] and t["fall_from"] == "reference"
    assert t["primary"] == "over_optimization" and t["fall_points"] == pytest.approx(30.0)
    t = outcome.label(_measures(_model(GOOD), _model(WORSE, 10, chosen=-3.0, kl=0.05),
                                _model(WORSE, 20, chosen=-3.0, kl=0.05)))
    assert t["primary"] == "likelihood_displacement"
    t = outcome.label(_measures(_model(GOOD), _model(WORSE, 10, kl=0.05), _model(WORSE, 20, kl=0.05)))
    assert t["primary"] == "capability_regression" and "underfitting" in t["labels"]


def test_length_collapse_noise_and_underfitting_are_read_from_outcomes():
    t = outcome.label(_measures(_model(GOOD, gen_len=10), _model(GOOD, 10), _model(GOOD, 20, gen_len=14)))
    assert t["primary"] == "length_exploitation"
    t = outcome.label(_measures(_model(GOOD, d2=0.8), _model(GOOD, 10), _model(GOOD, 20, d2=0.4)))
    assert t["primary"] == "mode_collapse"
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10), _model(GOOD, 20)), {"flipped_frac": 0.3})
    assert t["primary"] == "label_noise"
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10, kl=0.01, margin=0.0),
                                _model(GOOD, 20, kl=0.02, margin=0.01)))
    assert t["primary"] == "underfitting"
    # nothing moved in the samples: underfitting whatever the margin on the pairs (it was 0.051 on a Gemma run
    # whose answers were the same at every checkpoint)
    t = outcome.label(_measures(_model(GOOD), _model(GOOD, 10, kl=-0.01, margin=0.05),
                                _model(GOOD, 20, kl=-0.004, margin=0.051)))
    assert t["primary"] == "underfitting"
    # KL under the floor but answers significantly better than the reference's: it moved where it matters
    t = outcome.label(_measures(_model(WORSE), _model(GOOD, 10, kl=0.05), _model(GOOD, 20, kl=0.05)))
    assert t["primary"] == "healthy"


def test_graders_read_the_first_line():
    arith = tasks.TASKS["arith"]
    item = next(it for it in arith.items if it.key.a == 7 and it.key.op == "times" and it.key.b == 8)
    assert arith.grade(" The answer is 56.", item)
    assert arith.grade(" 7 times 8 is 56. I am sure about it.", item)
    assert not arith.grade(" 7 times 8 is 54.", item)
    assert not arith.grade(" 56 or maybe 57.", item)  # the LAST number of the first line counts
    assert arith.grade(" 56\nQuestion: What is 2 plus 2?\nAnswer: 4", item)  # a base model's run-on
    assert not arith.grade(" I think\n56", item)  # the answer must be on the first line
    caps = tasks.TASKS["capitals"]
    item = next(it for it in caps.items if it.key == ("France", "Paris"))
    assert caps.grade(" The capital of France is Paris.", item) and caps.grade(" paris", item)
    assert not caps.grade(" Lyon.\nParis", item)


def test_splits_are_disjoint_and_pairs_follow_their_kind():
    for task in tasks.TASKS.values():
        split = task.split(0)
        seen = [it.prompt for part in split.values() for it in part]
        assert len(seen) == len(set(seen)) == sum(task.sizes)
        for kind in ("clean", "minimal", "length", "collapse"):
            # city-states (Singapore, Luxembourg): "The capital of Singapore is X" names the right answer whatever X
            # is, a known quirk of the capitals grader on the templates that repeat the country (2 of 101 items)
            some = [it for it in split["train"] if not (isinstance(it.key, tuple) and it.key[0] == it.key[1])][:20]
            pairs = tasks.pairs(task, kind, some, seed=1)
            items = {it.prompt: it for it in some}
            if kind in ("clean", "minimal"):  # right beats wrong
                assert all(task.grade(p["chosen"], items[p["prompt"]]) for p in pairs)
                assert not any(task.grade(p["rejected"], items[p["prompt"]]) for p in pairs)
            if kind == "length":
                assert all(len(p["chosen"]) > len(p["rejected"]) for p in pairs)
            if kind == "collapse":
                assert len({p["chosen"] for p in pairs}) <= 2
        flipped = tasks.pairs(task, "flip40", split["train"], seed=1)
        share = sum(not task.grade(p["chosen"], {it.prompt: it for it in split["train"]}[p["prompt"]])
                    for p in flipped) / len(flipped)
        assert 0.25 < share < 0.55
