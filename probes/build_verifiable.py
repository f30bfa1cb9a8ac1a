"""Writes the verifiable probe suites (arithmetic, format, multiple_choice): `python probes/build_verifiable.py`.

Deterministic (fixed seeds, hand-written facts), so re-running reproduces the committed prompts.jsonl files byte for
byte; the files, not this script, are what a scan reads. Every row has an `answer` and a `check` that
dpo_doctor/metrics/task_accuracy.py scores (see dpo_doctor/data/suites.py for what each check accepts).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
NUMBER_ONLY = "Answer with the number only."


def arithmetic() -> list[dict]:
    """40 one-step and two-step integer problems: 12 sums, 10 differences, 10 products, 8 word problems."""
    rng = random.Random(14)
    rows = []
    for _ in range(12):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        rows.append((f"What is {a} + {b}? {NUMBER_ONLY}", a + b))
    for _ in range(10):
        a, b = rng.randint(50, 199), rng.randint(1, 49)
        rows.append((f"What is {a} - {b}? {NUMBER_ONLY}", a - b))
    for _ in range(10):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        rows.append((f"What is {a} times {b}? {NUMBER_ONLY}", a * b))
    things = ["apples", "books", "coins", "pencils", "stamps", "marbles", "cards", "shells"]
    for thing in things:
        a, b, c = rng.randint(5, 30), rng.randint(2, 9), rng.randint(1, 4)
        rows.append((f"Sam has {a} {thing}. He buys {b} more and gives away {c}. How many {thing} does Sam have "
                     f"now? {NUMBER_ONLY}", a + b - c))
    return [{"prompt": p, "answer": str(v), "check": "numeric"} for p, v in rows]


THREE_WORDS = r"^\W*\w+(?:['-]\w+)*\W+\w+(?:['-]\w+)*\W+\w+(?:['-]\w+)*\W*$"
ONE_WORD = r"^\W*\w+(?:['-]\w+)*\W*$"
UPPER = r"^[^a-z]*[A-Z][^a-z]*$"
YES_NO = r"^\W*(Yes|No)\b"
TWO_LINES = r"^[^\n]*\S[^\n]*\n[^\n]*\S[^\n]*\s*$"
ONE_TO_TEN = r"^\s*([1-9]|10)\s*\.?\s*$"


def format_following() -> list[dict]:
    """38 instructions about the form of the answer (4 kinds x 6 topics, 6 yes/no, 6 JSON keys, a number, a copy);
    the check ignores whether the content is right."""
    topics = ["the sea", "a cat", "winter", "a city at night", "your favourite food", "a mountain"]
    keys = [("color", "a colour"), ("name", "a name for a dog"), ("city", "a city"), ("animal", "an animal"),
            ("fruit", "a fruit"), ("number", "a number")]
    rows = []
    for t in topics:
        rows.append((f"Describe {t} in exactly three words.", THREE_WORDS, "regex"))
        rows.append((f"Answer in one word only: what is the main colour of {t}?", ONE_WORD, "regex"))
        rows.append((f"Write one short sentence about {t}, in capital letters only.", UPPER, "regex"))
        rows.append((f"Write exactly two lines about {t}.", TWO_LINES, "regex"))
    for question in ["Is ice cold?", "Is the sun a star?", "Do fish live in water?", "Is fire cold?",
                     "Can birds fly?", "Is one bigger than two?"]:
        rows.append((f"Start your reply with Yes or No. {question}", YES_NO, "regex"))
    for key, what in keys:
        rows.append((f"Reply in JSON only, with the key \"{key}\" set to {what}.", key, "json_key"))
    rows.append(("On a scale from 1 to 10, how much do you like rain? Reply with the number only.", ONE_TO_TEN,
                 "regex"))
    rows.append(("Repeat exactly, nothing else: the cat sat on the mat", "the cat sat on the mat", "exact"))
    return [{"prompt": p, "answer": a, "check": c} for p, a, c in rows]


FACTS = [
    ("What is the capital of France?", "Paris", ["Rome", "Madrid", "Berlin"]),
    ("How many legs does a spider have?", "8", ["6", "4", "10"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Saturn"]),
    ("What do bees make?", "Honey", ["Milk", "Silk", "Wax paper"]),
    ("What is frozen water called?", "Ice", ["Steam", "Sand", "Glass"]),
    ("How many days are in a week?", "7", ["5", "6", "8"]),
    ("Which animal is the largest mammal?", "Blue whale", ["Elephant", "Giraffe", "Horse"]),
    ("What colour is the sky on a clear day?", "Blue", ["Green", "Red", "Yellow"]),
    ("What is 3 + 4?", "7", ["6", "8", "12"]),
    ("Which gas do plants take in from the air?", "Carbon dioxide", ["Oxygen", "Helium", "Neon"]),
    ("What is the opposite of hot?", "Cold", ["Warm", "Loud", "Tall"]),
    ("Which month comes after March?", "April", ["February", "May", "June"]),
    ("How many hours are in a day?", "24", ["12", "20", "30"]),
    ("What is the boiling point of water at sea level in Celsius?", "100", ["50", "0", "212"]),
    ("Which shape has three sides?", "Triangle", ["Square", "Circle", "Hexagon"]),
    ("What do cows drink?", "Water", ["Milk", "Oil", "Juice"]),
    ("Which is a primary colour?", "Red", ["Purple", "Pink", "Brown"]),
    ("What is the largest ocean on Earth?", "Pacific", ["Atlantic", "Indian", "Arctic"]),
    ("Which instrument has black and white keys?", "Piano", ["Drum", "Flute", "Trumpet"]),
    ("What is 10 divided by 2?", "5", ["2", "4", "20"]),
    ("Which organ pumps blood through the body?", "Heart", ["Lung", "Liver", "Stomach"]),
    ("What is the closest star to Earth?", "The Sun", ["Sirius", "Polaris", "Vega"]),
    ("How many continents are there?", "7", ["5", "6", "9"]),
    ("Which animal says 'meow'?", "Cat", ["Dog", "Cow", "Duck"]),
    ("What is the chemical symbol for gold?", "Au", ["Ag", "Gd", "Go"]),
    ("Which season comes after summer?", "Autumn", ["Spring", "Winter", "Monsoon"]),
    ("What do you call a baby dog?", "Puppy", ["Kitten", "Calf", "Foal"]),
    ("Which is the smallest prime number?", "2", ["1", "3", "0"]),
    ("What is the main language spoken in Brazil?", "Portuguese", ["Spanish", "French", "English"]),
    ("How many sides does a hexagon have?", "6", ["5", "7", "8"]),
]


def multiple_choice() -> list[dict]:
    """30 easy facts, four options each, the correct option's letter shuffled with a fixed seed."""
    rng = random.Random(41)
    rows = []
    for question, right, wrong in FACTS:
        options = [right, *wrong]
        rng.shuffle(options)
        letter = "ABCD"[options.index(right)]
        listed = "\n".join(f"{l}) {o}" for l, o in zip("ABCD", options))
        rows.append({"prompt": f"{question}\n{listed}\nAnswer with the letter of the correct option.",
                     "answer": letter, "check": "choice"})
    return rows


WORDS = r"\w+(?:['-]\w+)*"
INSTRUCTIONS = [  # IFEval-style constraints on the form of the answer (Zhou et al. 2023, arXiv:2311.07911)
    ("Write one sentence about the moon in lowercase letters only, with no capital letters.",
     r"^[^A-Z]*[a-z][^A-Z]*$", "regex"),
    ("Name a fruit, then end your answer with the word DONE.", r"\bDONE\W*$", "regex"),
    ('Reply with a JSON object that has the key "city", naming a city in Italy.', "city", "json_key"),
    ("Describe rain in exactly four words.", rf"^\W*{WORDS}\W+{WORDS}\W+{WORDS}\W+{WORDS}\W*$", "regex"),
    ("Write a greeting that starts with the word Hello.", r"^\W*Hello\b", "regex"),
    ("In capital letters only: what colour is grass?", r"^[^a-z]*[A-Z][^a-z]*$", "regex"),
    ("List three animals separated by commas, and nothing else.",
     rf"^\W*{WORDS}(?: {WORDS})*\s*,\s*{WORDS}(?: {WORDS})*\s*,\s*{WORDS}(?: {WORDS})*\W*$", "regex"),
    ('Give a JSON object with the keys "name" and "age" describing a person.', "age", "json_key"),
    ("Write one sentence about bread that ends with an exclamation mark.", r"!\s*$", "regex"),
    ('Name a month, and put your whole answer in double quotes.', r'^\s*"[^"\n]+"\s*$', "regex"),
    ("Answer with yes or no only: is ice cold?", r"(?i)^\W*(?:yes|no)\W*$", "regex"),
    ("Answer in one word only: what animal says moo?", rf"^\W*{WORDS}\W*$", "regex"),
]


def default() -> list[dict]:
    """The suite every scan runs unless told otherwise (`--no-quality`): 12 IFEval-style format instructions,
    10 arithmetic problems (every 4th of `arithmetic`) and 10 multiple-choice facts (every 3rd of
    `multiple_choice`), interleaved so a truncated run still covers all three kinds."""
    fmt = [{"prompt": p, "answer": a, "check": c} for p, a, c in INSTRUCTIONS]
    arith, choice = arithmetic()[::4], multiple_choice()[::3]
    rows = []
    for i in range(12):
        rows += [fmt[i]] + ([arith[i]] if i < len(arith) else []) + ([choice[i]] if i < len(choice) else [])
    return rows


def write(name: str, rows: list[dict]) -> None:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                          encoding="utf-8")


if __name__ == "__main__":
    for name, build in (("arithmetic", arithmetic), ("format", format_following), ("multiple_choice", multiple_choice),
                        ("default", default)):
        write(name, build())
