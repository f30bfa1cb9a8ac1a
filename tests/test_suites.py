"""Verifiable probe suites (data.suites) and task accuracy (metrics.task_accuracy): the shipped suites load and
their answers pass their own checks; user suites are validated row by row; hand-worked accuracies and intervals."""

import json

import polars as pl
import pytest

from dpo_doctor.data.prompts import load_suite as prompts_load_suite
from dpo_doctor.data.suites import CHECKS, load_suite, suite_names
from dpo_doctor.errors import UserError
from dpo_doctor.metrics.generation import METRIC_INFO
from dpo_doctor.metrics.proportions import wilson
from dpo_doctor.metrics.task_accuracy import CHECKERS, picked_letter, task_metrics

VERIFIABLE = ("arithmetic", "format", "multiple_choice")


def test_checkers_match_the_suite_vocabulary():
    assert set(CHECKERS) == set(CHECKS)


@pytest.mark.parametrize("name", VERIFIABLE)
def test_shipped_suites_load_and_their_answers_pass(name):
    suite = load_suite(name)
    assert suite is not None and name in suite_names() and suite.verifiable
    assert 30 <= len(suite.prompts) <= 60
    assert suite.manifest["n_prompts"] == len(suite.prompts) == len(suite.answers)
    assert len(set(suite.prompts)) == len(suite.prompts)
    assert prompts_load_suite(name).answers == suite.answers  # prompts.py delegates here


GOLD = {"arithmetic": lambda a: f"The answer is {a}.", "multiple_choice": lambda a: f"{a}) because"}
FORMAT_GOLD = {"Describe the sea in exactly three words.": "Vast, blue, deep.",
               "Start your reply with Yes or No. Is ice cold?": "Yes, it is.",
               "Write exactly two lines about a cat.": "A cat sleeps.\nIt dreams of fish.",
               "Reply in JSON only, with the key \"color\" set to a colour.": "{\"color\": \"red\"}"}


def test_gold_answers_pass_and_wrong_ones_fail():
    for name, gold in GOLD.items():
        for t in load_suite(name).tasks:
            assert CHECKERS[t.check](gold(t.answer), t.answer), (name, t)
            assert not CHECKERS[t.check]("I do not know.", t.answer)
    tasks = {t.prompt: t for t in load_suite("format").tasks}
    for prompt, text in FORMAT_GOLD.items():
        t = tasks[prompt]
        assert CHECKERS[t.check](text, t.answer) and not CHECKERS[t.check]("no " * 30, t.answer), prompt


def test_checkers_hand_cases():
    assert CHECKERS["numeric"]("17 + 25 = 42", "42") and not CHECKERS["numeric"]("42 is not 17 + 25", "42")
    assert CHECKERS["numeric"]("about 1,234.0 apples", "1234") and not CHECKERS["numeric"]("no idea", "3")
    assert [picked_letter(t) for t in ("The answer is C.", "(B) Paris", "D", "b) lower", "none")] == \
        ["C", "B", "D", None, None]
    assert CHECKERS["exact"]("The cat sat on the mat.", "the cat sat on the mat")
    assert not CHECKERS["exact"]("the cat sat on the mat again", "the cat sat on the mat")
    assert CHECKERS["json_key"]('Sure: {"a": {"b": 1}, "x": 2} ok', "x") and not CHECKERS["json_key"]("{a: 1}", "a")
    assert CHECKERS["regex"]("  YES  ", r"^[^a-z]*$")


def _write(tmp_path, rows, name="suite.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_user_suite_by_path_and_folder(tmp_path):
    path = _write(tmp_path, [{"prompt": "2+2?", "answer": 4, "check": "numeric"},
                             {"prompt": "Pick", "answer": "B", "check": "choice"}])
    suite = load_suite(str(path))
    assert suite.name == "suite" and suite.answers == (("4", "numeric", 0.0), ("B", "choice", 0.0))
    folder = tmp_path / "mine"
    folder.mkdir()
    _write(folder, [{"prompt": "3+3?", "answer": "6"}], "rows.jsonl")
    (folder / "manifest.json").write_text(json.dumps({"name": "mine", "file": "rows.jsonl", "checker": "numeric"}))
    assert load_suite(str(folder)).answers == (("6", "numeric", 0.0),)
    plain = _write(tmp_path, [{"prompt": "Tell me a story."}], "plain.jsonl")
    assert not load_suite(str(plain)).verifiable


@pytest.mark.parametrize("rows,needle", [
    ([{"prompt": "a", "answer": "x", "check": "numerc"}], "did you mean numeric"),
    ([{"prompt": "a", "answer": "four", "check": "numeric"}], "is not a number"),
    ([{"prompt": "a", "answer": "b", "check": "choice"}], "one capital letter"),
    ([{"prompt": "a", "answer": "([", "check": "regex"}], "does not compile"),
    ([{"prompt": "a", "check": "exact"}], "needs an \"answer\""),
    ([{"prompt": "", "answer": "1", "check": "numeric"}], "non-empty string"),
    ([{"prompt": "a", "answer": "1", "check": "numeric"}, {"prompt": "b"}], "some rows have an answer"),
    ([{"prompt": "a"}, "{not json"], "not valid JSON"),
    ([{"prompt": "a", "answer": "B", "check": "choice", "tolerance": 1}], "numeric checks only"),
    ([{"prompt": "a", "answer": "1", "check": "numeric", "tolerance": -1}], "finite number >= 0"),
    ([{"prompt": "a", "answer": "1", "check": "numeric", "tolerance": "9"}], "finite number >= 0"),
])
def test_user_suite_errors_name_file_and_line(tmp_path, rows, needle):
    path = _write(tmp_path, rows)
    with pytest.raises(UserError, match="suite.jsonl: line") as err:
        load_suite(str(path))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_and_missing_paths():
    with pytest.raises(UserError, match="did you mean arithmetic"):
        load_suite("arithmetc")
    with pytest.raises(UserError, match="not found"):
        load_suite("nowhere/suite.jsonl")


ANSWERS = (("4", "numeric"), ("B", "choice"), ("6", "numeric"))


def _samples(texts):
    """texts[prompt_id] = [greedy text, sampled texts...]"""
    rows = [(pid, i, i == 0, t) for pid, ts in enumerate(texts) for i, t in enumerate(ts)]
    return pl.DataFrame({"prompt_id": [r[0] for r in rows], "sample_idx": [r[1] for r in rows],
                         "greedy": [r[2] for r in rows], "text": [r[3] for r in rows]})


REF = _samples([["4", "4", "4", "4"], ["B", "B", "B", "A"], ["6", "6", "6", "6"]])
CKPT = _samples([["4", "4", "5", "5"], ["A", "A", "A", "A"], ["6", "6", "6", "7"]])


def test_numeric_tolerance_accepts_near_answers_only(tmp_path):
    """A row's "tolerance" widens the numeric check to |got - answer| <= tolerance (the tiny zoo's "right")."""
    path = _write(tmp_path, [{"prompt": "What is 7 times 8?", "answer": 56, "check": "numeric", "tolerance": 9}])
    answers = load_suite(str(path)).answers
    assert answers == (("56", "numeric", 9.0),)
    texts = [["It is 65.", "It is 47.", "It is 66.", "46", "no number"]]
    marks = task_metrics(_samples(texts), _samples(texts), answers)
    assert marks["task/accuracy"] == pytest.approx(2 / 5)  # 65 and 47 are within 9 of 56; 66, 46 and none are not
    assert task_metrics(_samples(texts), _samples(texts), (("56", "numeric"),))["task/accuracy"] == 0.0


def test_task_accuracy_hand_values():
    """Reference per prompt: 4/4, 3/4, 4/4 -> accuracy (1 + 0.75 + 1) / 3 = 0.9167; greedy 3/3.
    Checkpoint: 2/4, 0/4, 3/4 -> (0.5 + 0 + 0.75) / 3 = 0.4167; greedy 2/3 (prompt 1's greedy 'A' is wrong).
    Wilson over 3 prompts with 1.25 successes: p = 0.4167, z^2 = 3.8415: centre (0.4167 + 3.8415/6) / (1 + 3.8415/3)
    = 1.0569 / 2.2805 = 0.4635. Paired differences -0.5, -0.75, -0.25: mean -0.5, sd 0.25, t(0.975, 2) = 4.3027,
    half-width 4.3027 * 0.25 / sqrt(3) = 0.6210 -> (-1.121, 0.121): on three prompts the drop is not significant."""
    m = task_metrics(CKPT, REF, ANSWERS)
    assert m["task/accuracy"] == pytest.approx(1.25 / 3)
    assert m["task/greedy_accuracy"] == pytest.approx(2 / 3) and m["task/n_prompts"] == 3
    low, high = wilson(1.25, 3)
    assert (m["task/accuracy_low"], m["task/accuracy_high"]) == (low, high)
    assert (low + high) / 2 == pytest.approx(1.0569 / 2.2805, abs=1e-4)
    assert m["task/accuracy_vs_ref"] == pytest.approx(-0.5)
    assert m["task/accuracy_vs_ref_low"] == pytest.approx(-0.5 - 0.6210, abs=1e-3)
    assert m["task/accuracy_vs_ref_high"] == pytest.approx(-0.5 + 0.6210, abs=1e-3)
    ref = task_metrics(REF, REF, ANSWERS)
    assert ref["task/accuracy"] == pytest.approx(2.75 / 3) and ref["task/accuracy_vs_ref"] == 0.0
    assert set(m) <= set(METRIC_INFO)


def test_wilson_known_values():
    """Wilson (1927) for 8 of 10: (0.4902, 0.9433); 0 of 10: (0, 0.2775)."""
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
