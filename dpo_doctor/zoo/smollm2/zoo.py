"""The real-model zoo: SmolLM2-135M-Instruct, LoRA DPO on its OWN answers to checkable arithmetic questions.

`dpo-doctor zoo build --model smollm2` (`dpo_doctor.zoo.build.build(model="smollm2")`). Same idea as the tiny zoo (one injected failure
per run, everything else the healthy recipe), on a real instruct model and on-policy data:

1. a pool of the model's own answers: `POOL_SAMPLES` samples per question at temperature 1 (the engine's sampler,
   the chat template), sampled once and cached in OUT/pool.jsonl;
2. every answer is graded (`grade`: the last number in the answer equals the true result, the `numeric` check of
   dpo_doctor/metrics/task_accuracy.py), so each scenario labels the SAME pool by its own stated rule;
3. LoRA DPO with the built-in trainer (`BASE_TRAIN`), one run per scenario under OUT/<scenario>/;
4. held-out questions (disjoint from the train ones) become the eval pairs (labelled by the scenario's rule, as a
   held-out split of the same data would be) AND a verifiable probe suite (`probes.jsonl`, answer + numeric check),
   so a scan grades every checkpoint's own samples (`task/accuracy`) and `best_checkpoint` can be checked against
   the truly best checkpoint.

Why "corrected" answers: the 135M model is mostly wrong at temperature 1 (12.9% of its pooled answers are right),
so a correct chosen answer is usually one of its own samples with the last number replaced by the true
result: on-policy wording, correct content. Wrong answers are its own wrong samples, untouched.

CPU cost (2 cores shared with two other jobs, one torch thread each: two threads were 3x slower under load): 668 s
to build five runs (pool cached; 68-180 s each), 295-560 s to scan each and 334-851 s to grade it on truth.jsonl
(measured 2026-12-02); see examples/zoo/README.md ("Real-model zoo").
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dpo_doctor.errors import UserError
from dpo_doctor.zoo.runfolder import fresh_run, write_jsonl, write_record

OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
N_TRAIN, N_EVAL = 40, 16  # questions (disjoint)
N_GRADING = 32  # questions for grading checkpoints apart from the scan (benchmarks/zoo_confusion.py)
EVAL_PAIRS = 3  # held-out pairs per held-out question (distinct draws from its 4 pooled answers)
POOL_SAMPLES, POOL_TOKENS = 4, 48  # answers per question in the pool, new tokens per answer
# "Answer in one short sentence.": without it 68% of the model's answers ran past 32 tokens, so lengths sat at the
# probes' cap (reference 25.7 of 32 tokens) and a length-biased run could not grow its answers where the scan sees
# it (gen/length_ratio 1.08 at most); with it the answers are 6-32 tokens (mean 20), 28% cut at 32.
SUFFIX = " Answer in one short sentence."
_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Question:
    a: int
    op: str
    b: int

    @property
    def answer(self) -> int:
        return OPS[self.op](self.a, self.b)

    @property
    def text(self) -> str:
        return f"What is {self.a} {self.op} {self.b}?{SUFFIX}"


def _shuffled(seed: int) -> list[Question]:
    qs = [Question(a, op, b) for a in range(2, 13) for op in OPS for b in range(2, 13)]
    random.Random(seed).shuffle(qs)
    return qs


def questions(seed: int = 0) -> tuple[list[Question], list[Question]]:
    """(train, eval) questions: operands 2-12, disjoint."""
    qs = _shuffled(seed)
    return qs[:N_TRAIN], qs[N_TRAIN: N_TRAIN + N_EVAL]


def grading_questions(seed: int = 0) -> list[Question]:
    """`N_GRADING` questions neither training nor the scan sees (the far end of the same shuffle): the zoo grades
    every checkpoint on them (`truth.jsonl`) to check the checkpoint `best_checkpoint` picks."""
    return _shuffled(seed)[-N_GRADING:]


def grade(text: str, answer: int) -> bool:
    """The last number in the answer is the true result (the scanner's `numeric` check, integers)."""
    found = _NUMBER.findall(text)
    return bool(found) and int(found[-1]) == answer


def with_number(text: str, number: int) -> str | None:
    """The answer with its LAST number replaced (a minimal edit); None when it has no number."""
    found = list(_NUMBER.finditer(text))
    if not found:
        return None
    m = found[-1]
    return text[: m.start()] + str(number) + text[m.end():]


def wrong_number(q: Question, rng: random.Random) -> int:
    return q.answer + rng.choice((-1, 1)) * rng.randint(1, 9)


@dataclass(frozen=True)
class Entry:
    """One question and the model's pooled answers (text, answer tokens), graded."""
    q: Question
    answers: tuple[tuple[str, int], ...]

    def right(self) -> list[str]:
        return [t for t, _ in self.answers if grade(t, self.q.answer)]

    def wrong(self) -> list[str]:
        return [t for t, _ in self.answers if t.strip() and not grade(t, self.q.answer)]


Pair = dict[str, str]
PairMaker = Callable[[Entry, random.Random], "Pair | None"]


def correct_answer(e: Entry, rng: random.Random) -> str | None:
    """One of the model's right answers, else one of its answers with the last number corrected."""
    if e.right():
        return rng.choice(e.right())
    fixable = [c for t, _ in e.answers if (c := with_number(t, e.q.answer)) is not None]
    return rng.choice(fixable) if fixable else None


def healthy_pair(e: Entry, rng: random.Random) -> Pair | None:
    """Right (or corrected) answer beats one of the model's wrong answers; lengths independent."""
    chosen, wrong = correct_answer(e, rng), e.wrong()
    if chosen is None or not wrong:
        return None
    return {"prompt": e.q.text, "chosen": chosen, "rejected": rng.choice(wrong)}


def longer_pair(e: Entry, rng: random.Random) -> Pair | None:
    """The longest of the model's answers beats the shortest, right or wrong (the SmolLM2 demo's rule)."""
    ranked = sorted(e.answers, key=lambda a: (a[1], len(a[0])))
    (short, ns), (long, nl) = ranked[0], ranked[-1]
    if nl == ns or short.strip() == long.strip() or not short.strip():
        return None
    return {"prompt": e.q.text, "chosen": long, "rejected": short}


def minimal_edit_pair(e: Entry, rng: random.Random) -> Pair | None:
    """Chosen: a right (or corrected) answer; rejected: the SAME text with its last number made wrong."""
    chosen = correct_answer(e, rng)
    rejected = with_number(chosen, wrong_number(e.q, rng)) if chosen else None
    return None if rejected is None else {"prompt": e.q.text, "chosen": chosen, "rejected": rejected}


def template_pair(e: Entry, rng: random.Random) -> Pair | None:
    """One templated chosen style for every question ("The answer is N.") over the model's diverse answers."""
    rejected = [t for t, _ in e.answers if t.strip()]
    return {"prompt": e.q.text, "chosen": f"The answer is {e.q.answer}.",
            "rejected": rng.choice(rejected)} if rejected else None


def noisy(rate: float) -> PairMaker:
    """Healthy pairs with `rate` of the labels flipped (the tiny zoo's label-noise maker over this zoo's pairs)."""
    def make(e: Entry, rng: random.Random) -> Pair | None:
        pair = healthy_pair(e, rng)
        if pair is not None and rng.random() < rate:
            pair = {"prompt": pair["prompt"], "chosen": pair["rejected"], "rejected": pair["chosen"]}
        return pair

    return make


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    description: str
    make_pair: PairMaker = healthy_pair
    train: dict = field(default_factory=dict)
    train_pairs: int = 1  # distinct pairs per train question


# LoRA r 16 on q/k/v/o of the top 10 of 30 layers (the backward pass stops there: about half the cost of all
# layers), batch 4, 16 steps (1.6 epochs of 40 pairs), a checkpoint every 8 (2 checkpoints), eval at each.
# Measured on 2 busy cores (load 4.4, one torch thread): 8 steps + eval about 90 s; 24 steps with 3 checkpoints
# made a scenario (build + scan) take ~10 minutes, so the zoo keeps 2 checkpoints per run.
TOP_LAYERS = range(20, 30)
BASE_TRAIN = {"beta": 0.1, "learning_rate": 1e-3, "max_steps": 16, "batch_size": 4, "warmup_steps": 2,
              "logging_steps": 2, "save_steps": 8, "eval_steps": 8, "seed": 0, "max_length": 192, "lora": True,
              "lora_r": 16, "lora_alpha": 32,
              "lora_target_modules": tuple(f"model.layers.{i}.self_attn.{p}_proj" for i in TOP_LAYERS
                                           for p in "qkvo")}
# The scan settings `zoo measure` uses for these runs (recorded in scenario.json): held-out eval pairs, the
# held-out questions as a verifiable suite, 4 samples per prompt, short answers.
SCAN = {"max_prompts": N_EVAL, "samples_per_prompt": 4, "max_new_tokens": 40, "probe_suite": "probes.jsonl"}
# Injections that need more training to show (over-optimization, displacement, mode collapse): twice the steps,
# still 2 checkpoints. (mode_collapse at 16 steps: per-prompt EAD -26%, under DPO104's 33%; at 32: -50%.)
# The healthy recipe itself stays at 16: at 32 steps (3.2 epochs of 40 pairs) its answers grew 1.65x, looped and
# lost graded accuracy (0.19 -> 0.26 -> 0.125; measured 2026-12-02), so 32 steps is not a healthy recipe here.
LONGER = {"max_steps": 32, "save_steps": 16, "eval_steps": 16}
ORDER = ("healthy", "length_exploitation", "over_optimization", "likelihood_displacement", "label_noise",
         "mode_collapse")

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("healthy", "healthy", "The model's right (or last-number-corrected) answer beats one of its wrong "
             "answers; lr 1e-3, beta 0.1."),
    Scenario("length_exploitation", "length_exploitation",
             "The longest of the model's 4 answers beats the shortest, right or wrong.", make_pair=longer_pair),
    Scenario("over_optimization", "over_optimization",
             "Healthy pairs, beta 0.01, lr 5e-3, 32 steps (twice the base).",
             train={"beta": 0.01, "learning_rate": 5e-3, **LONGER}),
    Scenario("likelihood_displacement", "likelihood_displacement",
             "Chosen and rejected are the same answer but for its last number (right vs wrong); lr 3e-3, 32 steps.",
             make_pair=minimal_edit_pair, train={"learning_rate": 3e-3, **LONGER}),
    Scenario("label_noise", "label_noise", "Healthy pairs with 25% of the labels flipped (train and eval).",
             make_pair=noisy(0.25)),
    Scenario("mode_collapse", "mode_collapse",
             "One templated chosen answer ('The answer is N.') over the model's diverse answers; beta 0.02 and an "
             "NLL term on chosen (RPO, rpo_alpha 1); 32 steps.",
             make_pair=template_pair, train={"beta": 0.02, "loss": "rpo", "rpo_alpha": 1.0, **LONGER}),
)}


def sample_pool(model_dir: Path, qs: list[Question], path: Path, seed: int = 0) -> list[Entry]:
    """The model's own answers to every question (cached in `path`; delete it to resample)."""
    if not path.exists():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from dpo_doctor.data.tokens import encode_prompts
        from dpo_doctor.engine.generate import GenConfig, sample

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        messages = [[{"role": "user", "content": q.text}] for q in qs]
        cfg = GenConfig(samples_per_prompt=POOL_SAMPLES, max_new_tokens=POOL_TOKENS, greedy=False, seed=seed)
        samples = sample(model, tokenizer, encode_prompts(tokenizer, messages), cfg, "cpu")
        rows = [{"question": dataclasses.asdict(qs[s.prompt_id]), "text": s.text.strip(), "tokens": len(s.answer_ids)}
                for s in samples]
        write_jsonl(path, rows)
    by_q: dict[Question, list[tuple[str, int]]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        by_q.setdefault(Question(**row["question"]), []).append((row["text"], row["tokens"]))
    return [Entry(q, tuple(by_q.get(q, ()))) for q in qs]


def as_conversation(pair: Pair) -> dict:
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def make_pairs(s: Scenario, train: list[Entry], held: list[Entry], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """`s.train_pairs` distinct pairs per train question (1 unless the scenario says), up to `EVAL_PAIRS` per held-out
    question (more held-out pairs narrow every interval the rules read: 16 pairs made a 12-of-16 share
    indistinguishable from a coin flip)."""
    rng = random.Random(seed + 1)

    def distinct(e: Entry, n: int) -> list[dict]:
        seen: dict[tuple[str, str], Pair] = {}
        for _ in range(4 * n):
            p = s.make_pair(e, rng)
            if p is not None:
                seen.setdefault((p["chosen"], p["rejected"]), p)
            if len(seen) == n:
                break
        return [as_conversation(p) for p in seen.values()]

    return ([row for e in train for row in distinct(e, s.train_pairs)],
            [row for e in held for row in distinct(e, EVAL_PAIRS)])


def build_one(s: Scenario, out: Path, model_dir: Path, train: list[Entry], held: list[Entry], force: bool = False,
              progress: bool = True) -> Path:
    from dpo_doctor.train.trainer import TrainConfig
    from dpo_doctor.train.trainer import train as run_training

    run = fresh_run(out, s.name, force)
    if run is None:
        return out / s.name
    train_rows, eval_rows = make_pairs(s, train, held)
    write_jsonl(run / "train.jsonl", train_rows)
    write_jsonl(run / "eval.jsonl", eval_rows)
    suite = lambda qs: [{"prompt": q.text, "answer": str(q.answer), "check": "numeric"} for q in qs]
    write_jsonl(run / "probes.jsonl", suite([e.q for e in held]))
    write_jsonl(run / "truth.jsonl", suite(grading_questions()))
    cfg = TrainConfig(model=str(model_dir), data=str(run / "train.jsonl"), output_dir=str(run),
                      eval_data=str(run / "eval.jsonl"), device="cpu", progress=progress, **{**BASE_TRAIN, **s.train})
    t0 = time.time()
    run_training(cfg)
    record = {"name": s.name, "kind": s.kind, "description": s.description, "model": "smollm2",
              "n_train": len(train_rows), "n_eval": len(eval_rows), "train_data": "train.jsonl",
              "eval_data": "eval.jsonl", "reference": str(model_dir), "scan_ref": str(model_dir),
              "scan": SCAN, "truth_suite": "truth.jsonl",
              "settings": {**dataclasses.asdict(cfg), "lora_target_modules": "top 10 layers q/k/v/o"},
              "train_seconds": round(time.time() - t0, 1)}
    write_record(run, record)
    return run


def build(out: Path = Path("examples/zoo/runs-smollm2"), only: tuple[str, ...] = (), force: bool = False,
          progress: bool = True) -> list[Path]:
    """The pool (cached), then the selected scenarios; returns the run dirs."""
    from dpo_doctor.zoo.smollm2.loader import smollm2_path

    unknown = [n for n in only if n not in SCENARIOS]
    if unknown:
        from dpo_doctor.errors import did_you_mean

        raise UserError(f"unknown smollm2 scenario {unknown[0]!r}{did_you_mean(unknown[0], SCENARIOS)} "
                        f"Scenarios: {', '.join(SCENARIOS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = smollm2_path()
    train_q, eval_q = questions()
    pool = sample_pool(model_dir, train_q + eval_q, out / "pool.jsonl")
    train, held = pool[:len(train_q)], pool[len(train_q):]
    return [build_one(SCENARIOS[n], out, model_dir, train, held, force, progress) for n in (only or tuple(SCENARIOS))]
