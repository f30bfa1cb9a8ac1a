"""DPO203 log-chosen-falling: the logged chosen rewards fall almost as fast as the rejected ones.

What it detects
    From the train rows of the log: the chosen log-ratio, `rewards/chosen` / beta (summed nats; the mean of the
    last `tail` rows), fell below -`max_chosen_drop` nats, lower than at the start, and the rejected side
    (`rewards/rejected` / beta) did not fall at least `normal_ratio` (2) times as much.

Why it matters
    The log-only view of likelihood displacement (DPO106): users report "rewards/chosen negative and decreasing"
    (huggingface/trl#800; hiyouga/LlamaFactory#6153, hiyouga/LlamaFactory#7643; OpenRLHF/OpenRLHF#1054). Some fall
    is normal (Rafailov et al. 2024); chosen falling nearly as fast as rejected moves probability to responses in
    neither set. Logged sums are length-confounded, so the threshold is in summed nats, not per token: prefer a full
    scan when a model can be loaded.

Evidence
    `rewards/chosen` and `rewards/rejected` at the end of the log, divided by beta (nats); reference value: the
    chosen log-ratio at the start.

Recommended fix
    As DPO106: an NLL term on chosen (RPO, rpo_alpha 1; LlamaFactory `pref_ftx`; DPOP the alternative), and beta
    raised by the measured overshoot, beta_new = beta * |chosen drop| / max_chosen_drop.

References
    eric-mitchell/direct-preference-optimization#32 and #36 (chosen log-probs fall after SFT on chosen);
    huggingface/trl#800 (add an NLL term); hiyouga/LlamaFactory#6153, hiyouga/LlamaFactory#7643 and
    OpenRLHF/OpenRLHF#1054 (set `pref_ftx`); princeton-nlp/SimPO#42 (larger beta or lower LR); Pal et al. 2024
    (Smaug / DPOP, arXiv:2402.13228); Pang et al. 2024 (RPO, arXiv:2404.19733); Rafailov, Hejna, Park, Finn 2024
    (From r to Q*, arXiv:2404.12358); Razin et al. 2025 (Likelihood Displacement in DPO, arXiv:2410.08847); Feng et
    al. 2024 (Limitations of DPO, arXiv:2404.04626).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.dpo106_likelihood_displacement import displacement_fix
from dpo_doctor.rules.records import Evidence, Example, Finding, RunFacts, Rule, fmt, make_facts


def _mean(rows: list) -> float | None:
    return sum(v for _, v in rows) / len(rows) if rows else None


def check(facts: RunFacts, *, max_chosen_drop: float = 20.0, normal_ratio: float = 2.0,
          tail: float = 3) -> Finding | None:
    chosen, rejected = facts.log("rewards/chosen"), facts.log("rewards/rejected")
    n = int(tail)
    if len(chosen) < 2 * n or not rejected or facts.beta <= 0:
        return None
    c_start, c_end = _mean(chosen[:n]) / facts.beta, _mean(chosen[-n:]) / facts.beta
    r_end = _mean(rejected[-n:]) / facts.beta
    if c_end >= -max_chosen_drop or c_end >= c_start or r_end / c_end >= normal_ratio:
        return None
    evidence = (Evidence("rewards/chosen", c_end * facts.beta, -max_chosen_drop * facts.beta, c_start * facts.beta),
                Evidence("rewards/rejected", r_end * facts.beta, normal_ratio * c_end * facts.beta, None))
    message = (f"the logged chosen log-ratio fell to {fmt(c_end)} nats (rewards/chosen / beta) while rejected fell "
               f"only {fmt(r_end / c_end)}x as far ({fmt(r_end)} nats): likelihood displacement (from the training "
               f"log; sums, not per token).")
    return Finding(message, evidence, displacement_fix(facts.beta, -c_end, max_chosen_drop, "summed nats"), None)


def _log(chosen, rejected):
    return [{"step": 10 * (i + 1), "rewards/chosen": c, "rewards/rejected": r} for i, (c, r) in
            enumerate(zip(chosen, rejected))]


EXAMPLES = (
    Example("chosen -72 nats, rejected -114 (zoo likelihood_displacement, beta 0.1 x 72/20)",
            make_facts(log=_log([0.0, -0.1, -0.2, -7.0, -7.3, -7.3], [0.0, -0.2, -0.4, -11.4, -11.5, -11.4]),
                       log_only=True), True, beta=0.36, variant="rpo"),
    Example("healthy: chosen -8 nats, rejected -25", make_facts(log=_log([0, -0.1, -0.2, -0.8, -0.8, -0.8],
                                                                        [0, -0.2, -0.4, -2.5, -2.5, -2.5]),
                                                               log_only=True), False),
    Example("big chosen drop but rejected falls 3x as far (over-optimization's normal dynamics)",
            make_facts(log=_log([0, -0.1, -0.2, -0.77, -0.77, -0.77], [0, -0.2, -0.3, -2.3, -2.3, -2.3]), beta=0.01,
                       log_only=True), False),
)

RULE = Rule("DPO203", "log-chosen-falling", "likelihood_displacement", "warning", check, __doc__, EXAMPLES,
            log_reads=("rewards/chosen", "rewards/rejected"), source="log")
