"""The failure zoo: the task grammar injects what each scenario claims, and a cheap scenario builds and loads."""

import dataclasses
import json
import random
import re

from dpo_doctor.zoo.tiny import scenarios, sft, task
from dpo_doctor.zoo.tiny.build import build_one


def says(text: str, n: int) -> bool:
    """The response states the number n (not as part of another number, e.g. 7 inside 17 or -7)."""
    return re.search(rf"(?<![\d-]){n}\.", text) is not None


def test_wrong_answers_are_never_right():
    rng = random.Random(0)
    assert all(task.wrong_answer(q, rng) != q.answer for q in task.all_questions())


def test_train_and_eval_questions_are_disjoint():
    tr, ev = task.split_questions(0, 256, 64)
    assert len(tr) == 256 and len(ev) == 64 and not set(tr) & set(ev)


def test_healthy_prefers_the_right_answer():
    tr, _ = scenarios.make_pairs(scenarios.SCENARIOS["healthy"])
    questions, _ = task.split_questions(0, 256, 64)
    assert all(says(p["chosen"], q.answer) and not says(p["rejected"], q.answer) for q, p in zip(questions, tr))


def test_length_scenario_prefers_longer_answers_only():
    tr, _ = scenarios.make_pairs(scenarios.SCENARIOS["length_exploitation"])
    assert all(len(p["chosen"]) > len(p["rejected"]) for p in tr)


def test_near_identical_pairs_differ_only_in_the_number():
    tr, _ = scenarios.make_pairs(scenarios.SCENARIOS["likelihood_displacement"])
    strip = lambda s: "".join(c for c in s if not c.isdigit() and c != "-")  # noqa: E731
    assert all(strip(p["chosen"]) == strip(p["rejected"]) and p["chosen"] != p["rejected"] for p in tr)


def test_label_noise_flips_about_35_percent():
    """Flipped pairs are those whose chosen states a wrong number; 256 draws at p=0.35 -> 0.35 +- 0.09 (3 sd)."""
    s = scenarios.SCENARIOS["label_noise"]
    tr, _ = scenarios.make_pairs(s)
    questions, _ = task.split_questions(0, s.n_train, s.n_eval)
    flipped = sum(not says(p["chosen"], q.answer) for q, p in zip(questions, tr))
    assert abs(flipped / len(tr) - 0.35) < 0.09


def test_cheap_scenario_builds_and_loads(tmp_path):
    """A 20-step SFT reference, then the no_learning scenario on 16 pairs: TRL layout, scenario.json, loadable."""
    from transformers import AutoModelForCausalLM

    ref = sft.train_reference(tmp_path / "reference", steps=20, batch_size=8)
    assert sft.train_reference(tmp_path / "reference", steps=20, batch_size=8) == ref  # cached: same settings
    s = dataclasses.replace(scenarios.SCENARIOS["no_learning"], n_train=16, n_eval=8)
    run = build_one(s, tmp_path / "runs", ref, ref, progress=False)
    record = json.loads((run / "scenario.json").read_text())
    assert record["name"] == "no_learning" and record["kind"] == "no_learning"
    assert record["settings"]["learning_rate"] == 0.0
    assert len((run / "train.jsonl").read_text().splitlines()) == 16
    ckpts = sorted(run.glob("checkpoint-*"))
    assert [c.name for c in ckpts] == ["checkpoint-8"]  # 16 pairs / batch 8 x 4 epochs
    model = AutoModelForCausalLM.from_pretrained(ckpts[0])
    base = AutoModelForCausalLM.from_pretrained(ref)
    assert all((a == b).all() for a, b in zip(model.parameters(), base.parameters()))  # lr 0: unchanged
    log = json.loads((run / "trainer_state.json").read_text())["log_history"]
    assert any("eval_loss" in r for r in log)


# ---- the SmolLM2 zoo's labelling rules (pure functions of a pool of graded answers; no model) -------------------

def _pool():
    """A hand-made pool: per question two wrong answers of different lengths, one right, one without a number."""
    from dpo_doctor.zoo.smollm2 import zoo as z

    train, _ = z.questions()
    return [z.Entry(q, ((f"{q.a} {q.op} {q.b} is {q.answer}.", 8), (f"It is {q.answer + 3}.", 4),
                        (f"Well, {q.a} {q.op} {q.b} is a classic question and it equals {q.answer - 2}.", 20),
                        ("Numbers are fun.", 4))) for q in train]


def test_smollm2_grading_and_minimal_edit():
    from dpo_doctor.zoo.smollm2 import zoo as z

    q = z.Question(7, "minus", 9)
    assert z.grade("7 - 9 = -2", -2) and not z.grade("-2 or maybe 5", -2) and not z.grade("no number", -2)
    assert z.with_number("7 - 9 = 16, I think.", -2) == "7 - 9 = -2, I think." and z.with_number("none", 1) is None
    train, held = z.questions()
    assert len(train) == z.N_TRAIN and len(held) == z.N_EVAL and not set(train) & set(held) and q.answer == -2


def test_smollm2_scenarios_label_the_pool_as_they_claim():
    import random

    from dpo_doctor.zoo.smollm2 import zoo as z

    pool, rng = _pool(), random.Random(0)
    healthy = [z.healthy_pair(e, rng) for e in pool]
    assert all(z.grade(p["chosen"], e.q.answer) and not z.grade(p["rejected"], e.q.answer)
               for e, p in zip(pool, healthy))
    longer = [z.longer_pair(e, rng) for e in pool]
    assert all(len(p["chosen"]) > len(p["rejected"]) for p in longer)
    edits = [z.minimal_edit_pair(e, rng) for e in pool]
    strip = lambda s: "".join(c for c in s if not c.isdigit() and c != "-")  # noqa: E731
    assert all(strip(p["chosen"]) == strip(p["rejected"]) and z.grade(p["chosen"], e.q.answer)
               and not z.grade(p["rejected"], e.q.answer) for e, p in zip(pool, edits))
    templated = {z.template_pair(e, rng)["chosen"].replace(str(e.q.answer), "N") for e in pool}
    assert templated == {"The answer is N."}
    noisy = [z.noisy(0.4)(e, random.Random(i)) for i, e in enumerate(pool * 5)]
    flipped = sum(not z.grade(p["chosen"], e.q.answer) for e, p in zip(pool * 5, noisy)) / len(noisy)
    assert abs(flipped - 0.4) < 0.15  # 200 draws at p = 0.4: 3 sd = 0.10


def test_smollm2_held_out_pairs_are_distinct_and_grading_questions_are_unseen():
    """Up to EVAL_PAIRS distinct pairs per held-out question (more held-out pairs, narrower intervals); the grading
    questions (truth.jsonl) are neither train nor held-out questions."""
    from dpo_doctor.zoo.smollm2 import zoo as z

    pool = _pool()
    train, held = pool[:30], pool[30:]
    tr, ev = z.make_pairs(z.SCENARIOS["healthy"], train, held)
    assert len(tr) == len(train)
    keys = [(p["prompt"][0]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in ev]
    assert len(set(keys)) == len(keys)
    # each hand-made question has one right answer and three wrong ones (two wrong numbers, one without a number)
    per_q = {}
    for prompt, _, _ in keys:
        per_q[prompt] = per_q.get(prompt, 0) + 1
    assert set(per_q.values()) == {z.EVAL_PAIRS} and len(per_q) == len(held)
    tq, eq = z.questions()
    grading = z.grading_questions()
    assert len(grading) == z.N_GRADING and not set(grading) & (set(tq) | set(eq))
