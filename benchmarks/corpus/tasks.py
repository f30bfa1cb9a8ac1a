"""The corpus's tasks: prompts with a programmatic grader, and the pair makers of each data kind.

Three tasks, each split ONCE (seeded) into disjoint question sets:
    train    the DPO train pairs' prompts
    eval     the held-out pairs (`eval.jsonl`) the scan scores and whose prompts its plain generation probes use
    suite    the corpus's verifiable probe suite for a scan WITH a quality signal (documented suite format)
    grading  the truth: every checkpoint is graded on these, which neither training nor any scan sees

* `tinyqa`   the zoo's synthetic arithmetic task (dpo_doctor/zoo/tiny/task.py) for the tiny models: right = the last
             number within 9 of the result (the zoo's notion of right for a 2-layer model), numeric check;
* `arith`    "Question: What is 7 times 8?\nAnswer:" for the pretrained models: right = the last number of the
             answer's FIRST line is the exact result (a base model keeps writing after its answer: the first line
             is the answer), regex check;
* `capitals` "Question: What is the capital of France?\nAnswer:": right = the first line names the capital.

Data kinds (a pair maker per kind and task): clean (right beats wrong, lengths independent), length (the longer
answer wins, correctness a coin flip), minimal (chosen and rejected differ only in the number / the capital),
flipN (clean with N% of labels flipped, train and eval), collapse (one canned chosen answer for every prompt).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from dpo_doctor.zoo.tiny import scenarios as zoo_scenarios
from dpo_doctor.zoo.tiny import task as zoo_task

Pair = dict[str, str]


@dataclass(frozen=True)
class Item:
    """One question: its prompt, the expected answer (text) and the regex / numeric check that grades it."""
    prompt: str
    answer: str
    key: object  # the task's own question object (pair makers use it)


@dataclass(frozen=True)
class Task:
    name: str
    items: tuple[Item, ...]
    sizes: tuple[int, int, int, int]  # train, eval, suite, grading
    make: dict[str, Callable[[Item, random.Random], Pair]]
    grade: Callable[[str, Item], bool]
    suite_row: Callable[[Item], dict]
    max_new_tokens: int

    def split(self, seed: int = 0) -> dict[str, list[Item]]:
        items = list(self.items)
        random.Random(seed).shuffle(items)
        out, start = {}, 0
        for name, n in zip(("train", "eval", "suite", "grading"), self.sizes):
            out[name] = items[start:start + n]
            start += n
        assert start <= len(items), (self.name, start, len(items))
        return out


def pairs(task: Task, kind: str, items: list[Item], seed: int, per_item: int = 1) -> list[Pair]:
    """Pairs of data kind `kind` (clean, length, minimal, flipNN, collapse) for these items."""
    rng = random.Random(seed)
    if kind.startswith("flip"):
        rate = int(kind[4:]) / 100
        base = task.make["clean"]
        make = lambda it, r: _flip(base(it, r), r, rate)  # noqa: E731
    else:
        make = task.make[kind]
    return [make(it, rng) for it in items for _ in range(per_item)]


def _flip(p: Pair, rng: random.Random, rate: float) -> Pair:
    return {"prompt": p["prompt"], "chosen": p["rejected"], "rejected": p["chosen"]} if rng.random() < rate else p


# ---------------------------------------------------------------- tinyqa: the zoo's task
def _tiny_item(q: zoo_task.Question) -> Item:
    return Item(q.text, str(q.answer), q)


def _tiny_grade(text: str, item: Item) -> bool:
    from dpo_doctor.metrics.task_accuracy import check_numeric

    return check_numeric(text, item.answer, zoo_task.TOLERANCE)


TINYQA = Task(
    "tinyqa", tuple(_tiny_item(q) for q in zoo_task.all_questions()), (256, 48, 32, 64),
    make={"clean": lambda it, r: zoo_scenarios.correctness_pair(it.key, r),
          "length": lambda it, r: zoo_scenarios.length_pair(it.key, r),
          "minimal": lambda it, r: zoo_scenarios.near_identical_pair(it.key, r),
          "collapse": lambda it, r: zoo_scenarios.canned_pair(it.key, r)},
    grade=_tiny_grade,
    suite_row=lambda it: {"prompt": it.prompt, "answer": it.answer, "check": "numeric",
                          "tolerance": zoo_task.TOLERANCE},
    max_new_tokens=48)


# ---------------------------------------------------------------- arith and capitals: the pretrained models
FILLERS = (" I worked it out carefully.", " Let me double-check: yes.", " This one is simple.",
           " I am sure about it.", " That is the final answer.")


def _first_line_regex(answer_pattern: str) -> str:
    """Right = the FIRST line of the stripped answer ends its numbers / names with the expected one."""
    return r"\A[^\n]*" + answer_pattern


def _number_pattern(n: int) -> str:
    # the last number of the first line is n (nothing numeric after it on that line)
    return r"(?<![\d-])" + re.escape(str(n)) + r"(?![\d])[^\d\n]*(?:\n|\Z)"


def _with_fillers(core: str, k: int, start: int) -> str:
    return " " + core + "".join(FILLERS[(start + i) % len(FILLERS)] for i in range(k))


@dataclass(frozen=True)
class ArithQ:
    a: int
    op: str
    b: int

    @property
    def value(self) -> int:
        return zoo_task.OPS[self.op](self.a, self.b)


ARITH_CORES = ("The answer is {n}.", "{a} {op} {b} is {n}.", "It is {n}.", "{n}.")


def _arith_resp(q: ArithQ, n: int, k: int, core: int, start: int) -> str:
    return _with_fillers(ARITH_CORES[core].format(a=q.a, op=q.op, b=q.b, n=n), k, start)


def _arith_wrong(q: ArithQ, rng: random.Random) -> int:
    return q.value + rng.choice((-1, 1)) * rng.randint(1, 9)


def _arith_clean(it: Item, rng: random.Random) -> Pair:
    q = it.key
    return {"prompt": it.prompt,
            "chosen": _arith_resp(q, q.value, rng.randint(0, 3), rng.randrange(4), rng.randrange(5)),
            "rejected": _arith_resp(q, _arith_wrong(q, rng), rng.randint(0, 3), rng.randrange(4), rng.randrange(5))}


def _arith_length(it: Item, rng: random.Random) -> Pair:
    q = it.key
    num = lambda: q.value if rng.random() < 0.5 else _arith_wrong(q, rng)  # noqa: E731
    return {"prompt": it.prompt, "chosen": _arith_resp(q, num(), rng.randint(3, 4), rng.randrange(3), rng.randrange(5)),
            "rejected": _arith_resp(q, num(), 0, rng.randrange(4), rng.randrange(5))}


def _arith_minimal(it: Item, rng: random.Random) -> Pair:
    q = it.key
    k, core, start = rng.randint(0, 3), rng.randrange(4), rng.randrange(5)
    return {"prompt": it.prompt, "chosen": _arith_resp(q, q.value, k, core, start),
            "rejected": _arith_resp(q, _arith_wrong(q, rng), k, core, start)}


def _arith_collapse(it: Item, rng: random.Random) -> Pair:
    q = it.key
    right = rng.random() < 0.7
    return {"prompt": it.prompt, "chosen": " The answer is 4.",
            "rejected": _arith_resp(q, q.value if right else _arith_wrong(q, rng), rng.randint(0, 3),
                                    rng.randrange(4), rng.randrange(5))}


def _arith_items() -> tuple[Item, ...]:
    qs = [ArithQ(a, op, b) for a in range(2, 13) for op in ("plus", "minus", "times") for b in range(2, 13)]
    return tuple(Item(f"Question: What is {q.a} {q.op} {q.b}?\nAnswer:", str(q.value), q) for q in qs)


def _regex_grade(text: str, item: Item) -> bool:
    return re.search(item.answer, text.strip()) is not None


ARITH = Task(
    "arith", tuple(Item(i.prompt, _first_line_regex(_number_pattern(i.key.value)), i.key) for i in _arith_items()),
    (96, 24, 16, 40),
    make={"clean": _arith_clean, "length": _arith_length, "minimal": _arith_minimal, "collapse": _arith_collapse},
    grade=_regex_grade, suite_row=lambda it: {"prompt": it.prompt, "answer": it.answer, "check": "regex"},
    max_new_tokens=24)

CAPITALS_LIST = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Hungary", "Budapest"),
    ("Czechia", "Prague"), ("Belgium", "Brussels"), ("the Netherlands", "Amsterdam"), ("Kenya", "Nairobi"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Argentina", "Buenos Aires"), ("Colombia", "Bogota"),
    ("Venezuela", "Caracas"), ("Cuba", "Havana"), ("Mexico", "Mexico City"), ("Canada", "Ottawa"),
    ("the United States", "Washington"), ("the United Kingdom", "London"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("the Philippines", "Manila"),
    ("India", "New Delhi"), ("Pakistan", "Islamabad"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Turkey", "Ankara"), ("Saudi Arabia", "Riyadh"), ("Israel", "Jerusalem"), ("Lebanon", "Beirut"),
    ("Syria", "Damascus"), ("Jordan", "Amman"), ("Afghanistan", "Kabul"), ("Nepal", "Kathmandu"),
    ("Bangladesh", "Dhaka"), ("Sri Lanka", "Colombo"), ("Australia", "Canberra"), ("New Zealand", "Wellington"),
    ("Brazil", "Brasilia"), ("Ecuador", "Quito"), ("Bolivia", "La Paz"), ("Uruguay", "Montevideo"),
    ("Paraguay", "Asuncion"), ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"),
    ("Morocco", "Rabat"), ("Algeria", "Algiers"), ("Tunisia", "Tunis"), ("Libya", "Tripoli"), ("Sudan", "Khartoum"),
    ("Senegal", "Dakar"), ("Uganda", "Kampala"), ("Tanzania", "Dodoma"), ("Zimbabwe", "Harare"),
    ("Zambia", "Lusaka"), ("Angola", "Luanda"), ("Ukraine", "Kyiv"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Slovakia", "Bratislava"),
    ("Slovenia", "Ljubljana"), ("Iceland", "Reykjavik"), ("Estonia", "Tallinn"), ("Latvia", "Riga"),
    ("Lithuania", "Vilnius"), ("Belarus", "Minsk"), ("Switzerland", "Bern"), ("Luxembourg", "Luxembourg"),
    ("Malaysia", "Kuala Lumpur"), ("Singapore", "Singapore"), ("Mongolia", "Ulaanbaatar"),
    ("Kazakhstan", "Astana"), ("Uzbekistan", "Tashkent"), ("Georgia", "Tbilisi"), ("Armenia", "Yerevan"),
    ("Azerbaijan", "Baku"), ("Qatar", "Doha"), ("Kuwait", "Kuwait City"), ("Oman", "Muscat"),
    ("Yemen", "Sanaa"), ("Jamaica", "Kingston"), ("Panama", "Panama City"), ("Costa Rica", "San Jose"),
)
CAPITAL_CORES = ("The capital of {c} is {x}.", "It is {x}.", "{x}.", "The answer is {x}.")
CAPITAL_FILLERS = (" It is a well-known city.", " I am sure about it.", " Many people live there.",
                   " I learned this in school.", " That is the final answer.")


def _cap_resp(country: str, capital: str, k: int, core: int, start: int) -> str:
    text = CAPITAL_CORES[core].format(c=country, x=capital)
    return " " + text + "".join(CAPITAL_FILLERS[(start + i) % len(CAPITAL_FILLERS)] for i in range(k))


def _cap_wrong(q: tuple[str, str], rng: random.Random) -> str:
    while True:
        other = rng.choice(CAPITALS_LIST)[1]
        if other != q[1]:
            return other


def _cap_clean(it: Item, rng: random.Random) -> Pair:
    c, x = it.key
    return {"prompt": it.prompt,
            "chosen": _cap_resp(c, x, rng.randint(0, 3), rng.randrange(4), rng.randrange(5)),
            "rejected": _cap_resp(c, _cap_wrong(it.key, rng), rng.randint(0, 3), rng.randrange(4), rng.randrange(5))}


def _cap_length(it: Item, rng: random.Random) -> Pair:
    c, x = it.key
    name = lambda: x if rng.random() < 0.5 else _cap_wrong(it.key, rng)  # noqa: E731
    return {"prompt": it.prompt, "chosen": _cap_resp(c, name(), rng.randint(3, 4), rng.randrange(4), rng.randrange(5)),
            "rejected": _cap_resp(c, name(), 0, rng.randrange(4), rng.randrange(5))}


def _cap_minimal(it: Item, rng: random.Random) -> Pair:
    c, x = it.key
    k, core, start = rng.randint(0, 3), rng.randrange(4), rng.randrange(5)
    return {"prompt": it.prompt, "chosen": _cap_resp(c, x, k, core, start),
            "rejected": _cap_resp(c, _cap_wrong(it.key, rng), k, core, start)}


def _cap_collapse(it: Item, rng: random.Random) -> Pair:
    c, x = it.key
    right = rng.random() < 0.7
    return {"prompt": it.prompt, "chosen": " The capital is London.",
            "rejected": _cap_resp(c, x if right else _cap_wrong(it.key, rng), rng.randint(0, 3), rng.randrange(4),
                                  rng.randrange(5))}


CAPITALS = Task(
    "capitals",
    tuple(Item(f"Question: What is the capital of {c}?\nAnswer:",
               _first_line_regex(r"(?i:\b" + re.escape(x) + r"\b)"), (c, x)) for c, x in CAPITALS_LIST),
    (44, 16, 12, 28),
    make={"clean": _cap_clean, "length": _cap_length, "minimal": _cap_minimal, "collapse": _cap_collapse},
    grade=_regex_grade, suite_row=lambda it: {"prompt": it.prompt, "answer": it.answer, "check": "regex"},
    max_new_tokens=24)

TASKS = {t.name: t for t in (TINYQA, ARITH, CAPITALS)}
