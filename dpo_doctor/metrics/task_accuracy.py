"""Verifiable task accuracy (`task/*`): does the checkpoint still answer checkable prompts right?

On a verifiable probe suite (dpo_doctor/data/suites.py: arithmetic, format, multiple_choice, or a user's) every
prompt has an answer and a check. Each sample's text is checked by `CHECKERS[check](text, answer)`; a prompt's
score is the share of its answers (the greedy one and the sampled ones) that pass; `task/accuracy` is the mean over
prompts. Prompts, not samples, are the independent units (samples of one prompt are correlated), so the Wilson 95%
interval is taken over prompts, with a prompt's fractional score counted as a fractional success. Against the
reference the comparison is paired (same prompts): `task/accuracy_vs_ref` is the mean per-prompt difference with
a Student-t 95% interval, so a drop whose interval lies below 0 is a real capability regression (DPO110), not
sampling noise. Low accuracy is bad; chance depends on the suite (25% on multiple_choice).
"""

from __future__ import annotations

import json
import math
import re
from typing import Callable, Sequence

import numpy as np
import polars as pl
from scipy import stats

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.paired import paired
from dpo_doctor.metrics.proportions import wilson

INFO = {
    "task/accuracy": MetricInfo("fraction", "low", "share of answers that pass the suite's check, per prompt, mean "
                                                   "over prompts (greedy and sampled answers)"),
    "task/accuracy_low": MetricInfo("fraction", "low", "lower end of the Wilson 95% interval of task/accuracy "
                                                       "(prompts as units)"),
    "task/accuracy_high": MetricInfo("fraction", "low", "upper end of the Wilson 95% interval of task/accuracy"),
    "task/greedy_accuracy": MetricInfo("fraction", "low", "share of prompts whose greedy answer passes the check"),
    "task/n_prompts": MetricInfo("prompts", None, "verifiable prompts scored"),
    "task/accuracy_vs_ref": MetricInfo("fraction", "low", "mean per-prompt accuracy minus the reference's on the same "
                                                          "prompts (paired)"),
    "task/accuracy_vs_ref_low": MetricInfo("fraction", "low", "lower end of the Student-t 95% interval of "
                                                              "task/accuracy_vs_ref"),
    "task/accuracy_vs_ref_high": MetricInfo("fraction", "low", "upper end of the Student-t 95% interval of "
                                                               "task/accuracy_vs_ref"),
    "task/accuracy_vs_ref_p": MetricInfo("p-value", None, "exact two-sided sign test over prompts of this checkpoint "
                                                          "against the reference (metrics/paired.py; < 0.05: a "
                                                          "significant difference)"),
    "task/chance": MetricInfo("fraction", None, "the accuracy an answer that ignores its prompt gets: each prompt's "
                                                "check applied to the reference's answers to the OTHER prompts, mean "
                                                "over prompts (reference only)"),
    "task/informative": MetricInfo("flag", None, "1 when the reference scores significantly (sign test) and at least "
                                                 "10 points above task/chance, so a fall can be measured; 0 when not "
                                                 "(reference only)"),
}
INFORMATIVE_MARGIN = 0.10  # the reference must clear chance by this much for the suite to measure a fall

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CHOICE = (re.compile(r"(?i:answer|option)\s*(?:is|:)?\s*\(?([A-Z])\b"),  # "The answer is B", "Answer: (C)"
           re.compile(r"^\W*?\(?([A-Z])(?:[).:\s]|$)"),  # "B", "B) Paris", "(B)", "B. Paris"
           re.compile(r"\(([A-Z])\)|\b([A-Z])\)"))  # "... so (B)" / "... B)" anywhere


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def check_exact(text: str, answer: str) -> bool:
    """The whole answer equals the expected text, ignoring case, punctuation and spacing."""
    return _norm(text) == _norm(answer)


def check_contains(text: str, answer: str) -> bool:
    """The expected text appears as whole words in the answer, ignoring case, punctuation and spacing."""
    want = _norm(answer)
    return bool(want) and f" {want} " in f" {_norm(text)} "


def check_numeric(text: str, answer: str, tolerance: float = 0.0) -> bool:
    """The last number in the answer (thousands commas allowed) equals the expected number (rel. 1e-6), or is
    within `tolerance` of it."""
    found = _NUMBER.findall(text)
    if not found:
        return False
    got, want = float(found[-1].replace(",", "")), float(answer.replace(",", ""))
    return abs(got - want) <= tolerance or math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)


def picked_letter(text: str) -> str | None:
    """The option letter an answer picks: "the answer is B", a leading "B)" / "(B)" / "B.", else the first "(B)"."""
    for pattern in _CHOICE:
        m = pattern.search(text.strip())
        if m:
            return next(g for g in m.groups() if g)
    return None


def check_choice(text: str, answer: str) -> bool:
    return picked_letter(text) == answer.strip()


def check_regex(text: str, answer: str) -> bool:
    """The expected regular expression is found in the stripped answer (the suite anchors it with ^...$)."""
    return re.search(answer, text.strip()) is not None


def check_json_key(text: str, answer: str) -> bool:
    """The first JSON object in the answer has the expected key."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        return isinstance(obj, dict) and answer in obj
    return False


CHECKERS: dict[str, Callable[[str, str], bool]] = {
    "exact": check_exact, "contains": check_contains, "numeric": check_numeric, "choice": check_choice, "regex": check_regex,
    "json_key": check_json_key,
}


def _check(text: str, answer: str, check: str, tolerance: float = 0.0) -> bool:
    return check_numeric(text, answer, tolerance) if check == "numeric" else CHECKERS[check](text, answer)


def scored(samples: pl.DataFrame, answers: Sequence[tuple]) -> pl.DataFrame:
    """The samples' prompt_id and greedy columns with `correct` (bool): each text checked against its prompt's
    (answer, check[, tolerance])."""
    ids, texts = samples["prompt_id"].to_list(), samples["text"].to_list()
    if any(i < 0 or i >= len(answers) for i in ids):
        raise ValueError(f"samples have prompt ids outside the suite's {len(answers)} answers")
    correct = [_check(t, *answers[i]) for i, t in zip(ids, texts)]
    return samples.select("prompt_id", "greedy").with_columns(correct=pl.Series(correct, dtype=pl.Boolean))


def _per_prompt(marks: pl.DataFrame) -> pl.DataFrame:
    return marks.group_by("prompt_id").agg(pl.col("correct").cast(pl.Float64).mean().alias("acc")).sort("prompt_id")


def _paired(diff: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean of per-prompt differences and its Student-t 95% interval (a zero-spread difference is exact)."""
    if len(diff) == 0:
        return None, None, None
    mean = float(diff.mean())
    if len(diff) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
    return mean, mean - half, mean + half


def task_metrics(samples: pl.DataFrame, ref_samples: pl.DataFrame, answers: Sequence[tuple]
                 ) -> dict[str, float | None]:
    """task/* of one checkpoint's samples on a verifiable suite (`answers[prompt_id] = (answer, check)`), paired
    with the reference's samples of the same prompts (pass the reference's rows as both for the reference)."""
    marks = scored(samples, answers)
    per = _per_prompt(marks)
    n = per.height
    acc = float(per["acc"].mean()) if n else None
    low, high = wilson(float(per["acc"].sum()), n) if n else (None, None)
    greedy = marks.filter(pl.col("greedy"))
    ref_per = per if ref_samples is samples else _per_prompt(scored(ref_samples, answers))
    both = per.join(ref_per, on="prompt_id", suffix="_ref")
    diff, diff_low, diff_high = _paired((both["acc"] - both["acc_ref"]).to_numpy())
    test = paired(both["acc"].to_list(), both["acc_ref"].to_list())
    return {
        "task/accuracy": acc, "task/accuracy_low": low, "task/accuracy_high": high,
        "task/greedy_accuracy": None if greedy.is_empty() else float(greedy["correct"].cast(pl.Float64).mean()),
        "task/n_prompts": float(n),
        "task/accuracy_vs_ref": diff, "task/accuracy_vs_ref_low": diff_low, "task/accuracy_vs_ref_high": diff_high,
        "task/accuracy_vs_ref_p": test.p_value if test is not None and ref_samples is not samples else None,
    }


def per_prompt(samples: pl.DataFrame, answers: Sequence[tuple]) -> list[float | None]:
    """Each prompt's score (share of its answers that pass), indexed by prompt id; None where it has no sample.
    What the paired comparisons between checkpoints read (report.json `per_prompt["task/accuracy"]`)."""
    out: list[float | None] = [None] * len(answers)
    for pid, acc in _per_prompt(scored(samples, answers)).iter_rows():
        out[int(pid)] = float(acc)
    return out


def chance_per_prompt(samples: pl.DataFrame, answers: Sequence[tuple]) -> list[float | None]:
    """Per prompt i, the share of the model's answers to the OTHER prompts that pass prompt i's check: the score
    of an answer that ignores its prompt (a model that always answers "B" gets the suite's share of B answers on a
    multiple-choice suite; an arithmetic answer matches another question's number only by accident; a format
    constraint the model meets anyway counts as met by chance)."""
    by_prompt: dict[int, list[str]] = {}
    for pid, text in samples.select("prompt_id", "text").iter_rows():
        by_prompt.setdefault(int(pid), []).append(text)
    out: list[float | None] = [None] * len(answers)
    for i, spec in enumerate(answers):
        others = [t for j, texts in by_prompt.items() if j != i for t in texts]
        if others and i in by_prompt:
            out[i] = sum(_check(t, *spec) for t in others) / len(others)
    return out


def informativeness(samples: pl.DataFrame, answers: Sequence[tuple],
                    margin: float = INFORMATIVE_MARGIN) -> dict[str, float | None]:
    """task/chance and task/informative of the reference's own samples: is the suite above chance for this model
    (sign test over prompts, p < 0.05, and at least `margin` above), so that a fall could be measured?"""
    acc, chance = per_prompt(samples, answers), chance_per_prompt(samples, answers)
    test = paired(acc, chance)
    known = [c for c in chance if c is not None]
    mean_chance = sum(known) / len(known) if known else None
    ok = test is not None and test.significant and test.diff > 0 and test.diff >= margin
    return {"task/chance": mean_chance, "task/informative": 1.0 if ok else 0.0}
