"""The zoo's scenarios: each one injects exactly one failure into an otherwise healthy recipe.

A scenario is data (how its train / eval pairs are made) plus training overrides. Base recipe: 256 train pairs,
64 held-out eval pairs on disjoint questions, beta 0.1, lr 1e-3, batch 8, 4 epochs (128 steps), a checkpoint every
32 steps. `kind` names the failure the way the scanner's diagnoses do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from dpo_doctor.zoo.tiny import task
from dpo_doctor.zoo.tiny.task import Question

Pair = dict[str, str]
PairMaker = Callable[[Question, random.Random], Pair]


def correctness_pair(q: Question, rng: random.Random) -> Pair:
    """Healthy preferences: right answer beats wrong answer; length and style drawn independently on each side."""
    return {"prompt": q.text, "chosen": task.random_response(q, rng, correct=True),
            "rejected": task.random_response(q, rng, correct=False)}


def length_pair(q: Question, rng: random.Random) -> Pair:
    """Length-biased preferences: the longer answer wins, right or wrong (correctness is a coin flip per side)."""
    return {"prompt": q.text,
            "chosen": task.random_response(q, rng, correct=rng.random() < 0.5, fillers=rng.randint(3, 4)),
            "rejected": task.random_response(q, rng, correct=rng.random() < 0.5, fillers=rng.randint(0, 1))}


def near_identical_pair(q: Question, rng: random.Random) -> Pair:
    """Chosen and rejected share every token but the number (same core, fillers and style)."""
    fillers, style, core, start = rng.randint(1, 4), rng.choice(("plain", "polite")), rng.randrange(2), rng.randrange(5)
    return {"prompt": q.text, "chosen": task.response(q.answer, fillers, style, core, start),
            "rejected": task.response(task.wrong_answer(q, rng), fillers, style, core, start)}


CANNED = (" The answer is 4.", " Sure! The answer is 4. I hope this helps.")


def canned_pair(q: Question, rng: random.Random) -> Pair:
    """Mode-collapse bait: a fixed answer (one of two, set by the question's template) always wins over a diverse
    (often right) answer, so every prompt has one winning answer and the whole task only two."""
    return {"prompt": q.text, "chosen": CANNED[q.template % len(CANNED)],
            "rejected": task.random_response(q, rng, correct=rng.random() < 0.7)}


def noisy(rate: float, base: Callable | None = None) -> Callable:
    """Healthy preferences (`base`, default `correctness_pair`) with `rate` of the labels flipped; a base that makes
    no pair (None) makes none here either. Both zoos use it."""
    base = base or correctness_pair

    def make(item, rng: random.Random):
        pair = base(item, rng)
        if pair is not None and rng.random() < rate:
            pair = {"prompt": pair["prompt"], "chosen": pair["rejected"], "rejected": pair["chosen"]}
        return pair
    return make


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # the injected failure, as the scanner's diagnoses name it ("healthy" for none)
    description: str
    make_pair: PairMaker = correctness_pair
    n_train: int = 256
    n_eval: int = 64
    train: dict = field(default_factory=dict)  # TrainConfig overrides
    scan_ref: str | None = None  # "alternate": scan against a different reference than the one trained from


BASE_TRAIN = {"beta": 0.1, "learning_rate": 1e-3, "batch_size": 8, "epochs": 4.0, "warmup_steps": 8,
              "logging_steps": 4, "save_steps": 32, "eval_steps": 32, "seed": 0, "max_length": 256}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    # Gentler than the base recipe: at beta 0.1, lr 1e-3 the same data spends 2.1 nats/token of sampled KL (3.3x the
    # reference's per-token entropy) and its graded answers on unseen questions fall from 0.61 to 0.38 (issue 20):
    # over-optimized, not healthy. At beta 0.5, lr 1e-4 (the calibration corpus's healthy recipe) the answers hold.
    Scenario("healthy", "healthy", "Right answers preferred over wrong ones; lengths and styles balanced; beta 0.5, "
             "lr 1e-4.", train={"beta": 0.5, "learning_rate": 1e-4}),
    Scenario("length_exploitation", "length_exploitation",
             "The longer answer always wins (3-4 filler sentences vs 0-1), whatever its correctness.",
             make_pair=length_pair),
    Scenario("likelihood_displacement", "likelihood_displacement",
             "Chosen and rejected differ only in the number; trained hard (lr 1e-3, 6 epochs).",
             make_pair=near_identical_pair, train={"learning_rate": 1e-3, "epochs": 6.0, "save_steps": 48,
                                                   "eval_steps": 48}),
    Scenario("over_optimization", "over_optimization",
             "beta 0.01, lr 5e-3, 8 epochs: the policy runs far from the reference.",
             # lr 3e-3 sat on an edge: float-rounding changes in the engine (2026-12-01) moved its last-checkpoint
             # KL from 218 to 38 nats; at 5e-3 it stays 211-420 across both engine paths and seeds 42 and 1
             train={"beta": 0.01, "learning_rate": 5e-3, "epochs": 8.0, "save_steps": 64, "eval_steps": 64}),
    Scenario("overfitting", "overfitting",
             "Only 24 train pairs for 40 epochs; eval on 64 held-out questions.",
             n_train=24, train={"epochs": 40.0, "learning_rate": 1e-3, "save_steps": 24, "eval_steps": 12}),
    Scenario("label_noise", "label_noise", "Healthy preferences with 35% of the labels flipped.",
             make_pair=noisy(0.35)),
    Scenario("mode_collapse", "mode_collapse",
             "A canned answer (one of two, by question template) always wins over a diverse one; DPO + NLL on chosen "
             "(RPO, rpo_alpha 1, lr 5e-4): the policy learns to say the canned answers. (Plain DPO at lr 1e-3 only "
             "pushed the diverse answers down and degenerated into garbage, KL 257, more diverse than the reference.)",
             make_pair=canned_pair, train={"loss": "rpo", "rpo_alpha": 1.0, "learning_rate": 5e-4}),
    Scenario("underfitting", "underfitting", "beta 5: the loss saturates while the policy barely moves.",
             train={"beta": 5.0}),
    Scenario("no_learning", "no_learning", "Learning rate 0: nothing changes.", train={"learning_rate": 0.0}),
    Scenario("reference_mismatch", "reference_mismatch",
             "A healthy run, scanned against a different reference (an under-trained SFT: 30 steps, another "
             "seed) than the one it was trained from, like passing the base model instead of the SFT model.", scan_ref="alternate"),
)}


def make_pairs(s: Scenario, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Train and eval pairs on disjoint questions. Eval pairs use the same maker (noise and all), as a held-out
    split of the same data would."""
    train_q, eval_q = task.split_questions(seed, s.n_train, s.n_eval)
    rng = random.Random(seed + 1)
    return [s.make_pair(q, rng) for q in train_q], [s.make_pair(q, rng) for q in eval_q]
