"""On-policy preference pairs: sample answers from the model itself, label each prompt's pair by a stated rule.

Why: a real-model demo needs preference data without a hub, a judge or a human. Sampling from the model keeps
the pairs on-policy (the setting DPO's theory assumes), and labelling by a transparent rule makes the resulting
failure known in advance: with the rule "longer" the data rewards length and nothing else, so a policy that learns
it can only learn to talk longer (length exploitation, DPO101).

Rules (pure functions of two `Sample`s, in `LABELLING_RULES`; each returns (chosen, rejected) or None for "no preference"):
* `longer`: the answer with more tokens wins (the stopping EOS not counted). Ties in tokens: more characters
  wins. A full tie, or two identical texts, gives no pair.
* `shorter`: the reverse (for the opposite story, or a control).

Rows are TRL's conversational explicit-prompt format:
    {"prompt": [{"role": "user", "content": ...}], "chosen": [{"role": "assistant", "content": ...}],
     "rejected": [{"role": "assistant", "content": ...}]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from dpo_doctor.data.tokens import encode_prompts
from dpo_doctor.engine.generate import GenConfig, Sample
from dpo_doctor.errors import UserError


def _size(s: Sample) -> tuple[int, int]:
    return len(s.answer_ids), len(s.text)


def longer_wins(a: Sample, b: Sample) -> tuple[Sample, Sample] | None:
    """(chosen, rejected) = (longer, shorter) by answer tokens, then characters; None on a tie or equal texts."""
    if a.text.strip() == b.text.strip() or _size(a) == _size(b):
        return None
    return (a, b) if _size(a) > _size(b) else (b, a)


def shorter_wins(a: Sample, b: Sample) -> tuple[Sample, Sample] | None:
    """The mirror of `longer_wins`."""
    pair = longer_wins(a, b)
    return None if pair is None else (pair[1], pair[0])


LABELLING_RULES: dict[str, Callable[[Sample, Sample], tuple[Sample, Sample] | None]] = {
    "longer": longer_wins,
    "shorter": shorter_wins,
}


def as_messages(prompt: str | list[dict]) -> list[dict]:
    """A plain prompt becomes one user turn; a conversation passes through."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def label_pairs(prompts: Sequence[str | list[dict]], samples: Sequence[Sample], rule: str = "longer") -> list[dict]:
    """One row per prompt whose samples the rule separates: the rule's winner and loser among the prompt's
    samples (with more than two samples, the extremes: rule-sorted first and last)."""
    if rule not in LABELLING_RULES:
        raise UserError(f"unknown labelling rule {rule!r}; choose one of {', '.join(LABELLING_RULES)}")
    by_prompt: dict[int, list[Sample]] = {}
    for s in samples:
        if not s.greedy:
            by_prompt.setdefault(s.prompt_id, []).append(s)
    rows = []
    for pid in sorted(by_prompt):
        group = by_prompt[pid]
        best, worst = max(group, key=_size), min(group, key=_size)
        pair = LABELLING_RULES[rule](best, worst)
        if pair is None:
            continue
        chosen, rejected = pair
        rows.append({"prompt": as_messages(prompts[pid]),
                     "chosen": [{"role": "assistant", "content": chosen.text}],
                     "rejected": [{"role": "assistant", "content": rejected.text}]})
    return rows


def build_onpolicy_pairs(model_dir: Path | str, prompts: Sequence[str | list[dict]], n_samples: int = 2,
                         max_new_tokens: int = 48, rule: str = "longer", seed: int = 0) -> list[dict]:
    """Sample `n_samples` answers per prompt from the model in `model_dir` (temperature 1, its chat template,
    the engine's sampler) and label them by `rule`. Prompts whose samples tie are dropped, so the result can
    be shorter than `prompts`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dpo_doctor.engine.generate import sample
    from dpo_doctor.engine.devices import resolve_device

    if n_samples < 2:
        raise UserError(f"n_samples={n_samples}: a pair needs at least 2 samples per prompt")
    if rule not in LABELLING_RULES:
        raise UserError(f"unknown labelling rule {rule!r}; choose one of {', '.join(LABELLING_RULES)}")
    device = resolve_device("auto")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    messages = [as_messages(p) for p in prompts]
    cfg = GenConfig(samples_per_prompt=n_samples, max_new_tokens=max_new_tokens, greedy=False, seed=seed)
    return label_pairs(messages, sample(model, tokenizer, encode_prompts(tokenizer, messages), cfg, device), rule)
