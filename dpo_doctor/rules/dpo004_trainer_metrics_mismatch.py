"""DPO004 trainer-metrics-mismatch: the trainer's own eval metrics disagree with the scan of the same checkpoint.

What it detects
    When the scanned pairs are the trainer's eval set (`settings.data_is_eval`, set by `DoctorCallback` when it
    scores the trainer's `eval_dataset`), every logged eval row at a checkpoint's step (`eval_rewards/*`,
    `eval_logps/*`) must equal the scan's metrics of that checkpoint: same pairs, same formula. It fires when one of
    them differs by more than `atol + rtol * |scan value|` (`rewards_atol`, `logps_atol`; accuracies `acc_atol`),
    and names the likely cause from the pattern of the differences:
    * the trainer's rewards are exactly 0 (|r| <= `zero_atol`) at every compared step after 0: the trainer's
      reference was the policy itself;
    * the trainer's policy log-probs equal the scan's reference log-probs: the trainer evaluated the starting
      weights, or the scan's `--ref` is the trained model;
    * the rewards differ by one constant factor while the log-probs agree: another beta;
    * the log-probs (policy or reference side) differ by one constant: the same pairs tokenized differently.

Why it matters
    The curves a user watches during training (`eval_rewards/margins`, `eval_rewards/accuracies`) are the trainer's
    numbers. If they disagree with an independent measurement of the same checkpoints on the same pairs, either the
    trainer optimized against a wrong reference (every reward it logged, and the KL anchor itself, are off) or the
    scan's reference is not the one training used; in both cases one of the two sets of curves is fiction.

Evidence
    `eval_<key>`: the trainer's logged value at the worst checkpoint, its tolerance, and the scan's value as the
    reference value; `pattern/constant_offset` or `pattern/beta_ratio` when that pattern names the cause.

Recommended fix
    Depends on the cause: give the trainer a reference distinct from the policy (TRL: omit `ref_model` or pass a
    separate copy; with PEFT let it disable the adapters; do not sync the reference); scan with `--ref` set to the
    weights training started from; pass the trainer's `--beta`; tokenize the same way (EOS, chat template,
    `--max-length`).

References
    huggingface/trl#1148 (rewards stuck at exactly 0: the reference was the policy); huggingface/trl#1311,
    huggingface/trl#1627, OpenRLHF/OpenRLHF#364, Yifan-Song793/ETO#14 (policy == reference); hiyouga/LlamaFactory#1447
    and modelscope/ms-swift#4441 (offline rewards that differ from the training log need identical tokenization);
    TRL's `DPOTrainer` source, huggingface/trl `trl/trainer/dpo_trainer.py` (how TRL's eval keys are computed).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import (CheckpointFacts, Evidence, Example, Finding, Recommendation, Rule, RunFacts,
                                      fmt, make_facts)

REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/margins")
LOGPS = ("logps/chosen", "logps/rejected")
KEYS = (*REWARDS, "rewards/accuracies", *LOGPS)
FIXES = {
    "zero": Recommendation("Give the trainer a reference distinct from the policy: in TRL omit ref_model (it loads a "
                           "frozen copy) or pass a separate copy, let PEFT disable the adapters for the reference, "
                           "and do not sync the reference to the policy; then retrain."),
    "reference": Recommendation("Check which weights the trainer evaluated (adapters enabled?) and that --ref is the "
                                "model training started from, not a trained checkpoint."),
    "beta": Recommendation("Scan with --beta set to the trainer's beta (DPOConfig.beta)."),
    "offset": Recommendation("Tokenize the pairs as the trainer did: same EOS/BOS handling, chat template and "
                             "--max-length (TRL's max_length); the scan follows TRL's DPOTrainer by default."),
    "other": Recommendation("Scan the trainer's exact eval set with the trainer's reference and beta; if the numbers "
                            "still differ, the trainer's reference was not the model training started from."),
}
Rows = list[tuple[CheckpointFacts, dict[str, tuple[float, float]]]]


def compared(facts: RunFacts) -> Rows:
    """(checkpoint, {key: (trainer's logged eval value, scan value)}) for every checkpoint with an eval row."""
    logged = {k: dict(facts.log(k, split="eval")) for k in KEYS}
    rows = []
    for c in facts.checkpoints:
        both = {k: (logged[k][c.step], c.get(k)) for k in KEYS if c.step in logged[k] and c.get(k) is not None}
        if both:
            rows.append((c, both))
    return rows


def _tol(key: str, scan: float, rewards_atol: float, logps_atol: float, rtol: float, acc_atol: float) -> float:
    if key == "rewards/accuracies":
        return acc_atol
    return (logps_atol if key in LOGPS else rewards_atol) + rtol * abs(scan)


def _all_zero(rows: Rows, zero_atol: float) -> bool:
    values = [v[0] for c, both in rows if c.step > 0 for k, v in both.items() if k in REWARDS]
    return bool(values) and all(abs(x) <= zero_atol for x in values)


def _logps_are_reference(rows: Rows, tol: float) -> bool:
    hits = [abs(both[k][0] - ref) <= tol < abs(both[k][1] - ref)
            for c, both in rows for k in LOGPS if k in both and (ref := c.get("ref_" + k)) is not None]
    return bool(hits) and all(hits)


def _spread(values: list[float]) -> float:
    return max(values) - min(values) if values else float("inf")


def _beta_ratio(rows: Rows, tol: float, rtol: float) -> float | None:
    """The trainer/scan ratio of every reward, when it is one constant != 1 and the log-probs agree."""
    ratios = [v[0] / v[1] for _, both in rows for k, v in both.items() if k in REWARDS and abs(v[1]) > 1e-6]
    logps_ok = all(abs(v[0] - v[1]) <= tol for _, both in rows for k, v in both.items() if k in LOGPS)
    if len(ratios) < 2 or not logps_ok or _spread(ratios) > rtol * abs(sum(ratios) / len(ratios)):
        return None
    mean = sum(ratios) / len(ratios)
    return mean if abs(mean - 1) > rtol else None


def _offset(rows: Rows, beta: float, tol: float) -> tuple[str, float] | None:
    """("policy" | "reference", offset) when one side's log-probs differ by one constant at every step."""
    policy = [v[0] - v[1] for _, both in rows for k, v in both.items() if k in LOGPS]
    reference = [(both[lp][0] - both[rw][0] / beta) - (both[lp][1] - both[rw][1] / beta)
                 for _, both in rows for lp, rw in zip(LOGPS, REWARDS) if lp in both and rw in both]
    for side, diffs in (("policy", policy), ("reference", reference)):
        if len(diffs) >= 2 and _spread(diffs) <= tol and abs(sum(diffs) / len(diffs)) > tol:
            return side, sum(diffs) / len(diffs)
    return None


def _cause(facts: RunFacts, rows: Rows, zero_atol: float, logps_atol: float, rtol: float):
    """(cause key, sentence, extra evidence) from the pattern of the differences."""
    if _all_zero(rows, zero_atol):
        return "zero", ("the trainer's eval rewards are exactly 0 at every compared step while the scan measures "
                        "real margins: during training the reference was the policy itself (ref_model is the "
                        "model being trained, a reference synced to the policy, or adapters never disabled; "
                        "trl#1148)"), ()
    if _logps_are_reference(rows, logps_atol):
        return "reference", ("the trainer's eval log-probs equal the scan's reference log-probs: the trainer "
                             "evaluated the starting weights (adapters disabled, an untrained copy), or --ref is "
                             "the trained model"), ()
    ratio = _beta_ratio(rows, logps_atol, rtol)
    if ratio is not None:
        return "beta", (f"the trainer's rewards are {fmt(ratio)} x the scan's while the log-probs agree: the trainer "
                        f"used beta = {fmt(ratio * facts.beta)}, the scan {fmt(facts.beta)}"), \
            (Evidence("pattern/beta_ratio", ratio, rtol, 1.0),)
    offset = _offset(rows, facts.beta, logps_atol)
    if offset is not None:
        side, value = offset
        return "offset", (f"the {side} log-probs differ by a constant {fmt(value)} nats at every step: the same "
                          f"pairs were tokenized differently (EOS/BOS, chat template, truncation)"), \
            (Evidence("pattern/constant_offset", value, logps_atol, 0.0),)
    return "other", ("no simple pattern: different eval pairs (a subset, another split), a different reference or "
                     "another beta"), ()


def check(facts: RunFacts, *, rewards_atol: float = 0.05, logps_atol: float = 1.0, rtol: float = 0.02,
          acc_atol: float = 0.1, zero_atol: float = 1e-6) -> Finding | None:
    if not facts.data_is_eval:
        return None
    rows = compared(facts)
    worst, excess = None, 1.0
    for c, both in rows:
        for k, (trainer, scan) in both.items():
            tol = _tol(k, scan, rewards_atol, logps_atol, rtol, acc_atol)
            if abs(trainer - scan) > excess * tol:
                worst, excess = (c, both, k), abs(trainer - scan) / tol
    if worst is None:
        return None
    ckpt, both, key = worst
    cause, why, extra = _cause(facts, rows, zero_atol, logps_atol, rtol)
    evidence = tuple(Evidence(f"eval_{k}", t, _tol(k, s, rewards_atol, logps_atol, rtol, acc_atol), s)
                     for k, (t, s) in both.items()) + extra
    message = (f"the trainer logged eval_{key} = {fmt(both[key][0])} at step {ckpt.step}, but scanning {ckpt.name} "
               f"on the same eval pairs gives {fmt(both[key][1])} ({len(rows)} checkpoint(s) compared): {why}.")
    return Finding(message, evidence, FIXES[cause], ckpt.name)


def _scan(margin: float, chosen: float, logps: tuple[float, float], ref: tuple[float, float]) -> dict:
    return {"rewards/chosen": chosen, "rewards/rejected": chosen - margin, "rewards/margins": margin,
            "rewards/accuracies": 0.75, "logps/chosen": logps[0], "logps/rejected": logps[1],
            "ref_logps/chosen": ref[0], "ref_logps/rejected": ref[1]}


def _eval(step: int, scan: dict, **changed) -> dict:
    row = {k: scan[k] for k in KEYS}
    row.update({k.replace("__", "/"): v for k, v in changed.items()})
    return {"step": step, "split": "eval", **row}


_A = _scan(0.4, -0.1, (-42.0, -47.0), (-39.0, -41.0))
_B = _scan(0.9, -0.3, (-45.0, -53.0), (-39.0, -41.0))
_ZERO = {"rewards__chosen": 0.0, "rewards__rejected": 0.0, "rewards__margins": 0.0, "rewards__accuracies": 0.0}
EXAMPLES = (
    Example("trainer rewards exactly 0 at every eval: reference = policy (trl#1148)",
            make_facts(_A, _B, steps=(2, 4), log=[_eval(2, _A, **_ZERO), _eval(4, _B, **_ZERO)], data_is_eval=True),
            True),
    Example("trainer logps equal the scan's reference logps",
            make_facts(_A, _B, steps=(2, 4), data_is_eval=True,
                       log=[_eval(2, _A, logps__chosen=-39.0, logps__rejected=-41.0, rewards__margins=0.0),
                            _eval(4, _B, logps__chosen=-39.0, logps__rejected=-41.0, rewards__margins=0.0)]), True),
    Example("constant 3-nat offset in the policy log-probs (an extra EOS)",
            make_facts(_A, _B, steps=(2, 4), data_is_eval=True,
                       log=[_eval(2, _A, logps__chosen=-45.0, logps__rejected=-50.0),
                            _eval(4, _B, logps__chosen=-48.0, logps__rejected=-56.0)]), True),
    Example("trainer numbers equal the scan's: silent",
            make_facts(_A, _B, steps=(2, 4), log=[_eval(2, _A), _eval(4, _B, logps__chosen=-45.01)],
                       data_is_eval=True), False),
    Example("not the trainer's eval set: nothing to compare",
            make_facts(_A, _B, steps=(2, 4), log=[_eval(2, _A, **_ZERO), _eval(4, _B, **_ZERO)]), False),
)

RULE = Rule("DPO004", "trainer-metrics-mismatch", "reference_mismatch", "error", check, __doc__, EXAMPLES,
            reads=(*KEYS, "ref_logps/chosen", "ref_logps/rejected"), log_reads=KEYS, source="both")
