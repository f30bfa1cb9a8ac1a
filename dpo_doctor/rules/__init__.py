"""The rule catalogue: which known DPO failure a run shows, with evidence and what to change.

One rule per file (`dpo<code>_<problem>.py`), each with a docstring under fixed headings, thresholds as keyword
defaults of its `check`, and executable examples. Codes group by what a finding means for everything else:
- DPO0xx: the measurement itself is broken (NaN, nothing trained, wrong reference): errors, listed first;
- DPO1xx: failures of training read from checkpoint metrics (and the log where it helps);
- DPO2xx: the same failures read from the training log alone (for log-only verdicts). A log rule's finding is
  dropped when a DPO0xx/1xx rule already reported that kind from the checkpoints, so a problem is named once.
- DPO3xx: risks in the preference data before any training (`dpo-doctor data`, source "data"): they read the data
  audit's statistics only and run in the data audit, not in a scan (a scan's report carries the same statistics).
Diagnoses are ordered by severity (error first), then causes before the symptoms they explain, then by code:
lower codes name causes that explain later ones (a wrong reference explains odd margins; over-optimization explains
a falling chosen likelihood). Where the causal order depends on the measurements, a finding names the kinds that
would explain it (`Finding.explained_by`): length growth from length-balanced data is a symptom of a KL blow-up
(SimPO README, princeton-nlp/SimPO; Rafailov, Chittepu, Park et al. 2024, Scaling Laws for Reward Model
Overoptimization in DAAs, arXiv:2406.02900) when over-optimization is also found, so it is listed after it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping

from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.rules import dpo004_trainer_metrics_mismatch
from dpo_doctor.rules import (dpo001_numerical_instability, dpo002_no_learning, dpo003_reference_mismatch,
                              dpo101_length_exploitation, dpo102_over_optimization, dpo103_overfitting,
                              dpo104_mode_collapse, dpo105_label_noise, dpo106_likelihood_displacement,
                              dpo107_underfitting, dpo108_distribution_shift, dpo201_log_loss_at_ln2,
                              dpo202_log_early_saturation, dpo203_log_chosen_falling)
from dpo_doctor.rules import dpo109_degeneration, dpo110_capability_regression
from dpo_doctor.rules import (dpo301_length_bias, dpo302_likelihood_displacement_risk, dpo303_mode_collapse_risk,
                              dpo304_duplicate_pairs, dpo305_contradictory_pairs, dpo306_truncated_pairs,
                              dpo307_reference_disfavours, dpo308_degenerate_pairs)
from dpo_doctor.rules.records import (CheckpointFacts, Diagnosis, Evidence, Example, Finding, Recommendation, Rule,
                                      RunFacts, SEVERITY_RANK, make_facts)

_MODULES = (dpo001_numerical_instability, dpo002_no_learning, dpo003_reference_mismatch,
            dpo004_trainer_metrics_mismatch, dpo101_length_exploitation,
            dpo102_over_optimization, dpo103_overfitting, dpo104_mode_collapse, dpo105_label_noise,
            dpo106_likelihood_displacement, dpo107_underfitting, dpo108_distribution_shift, dpo201_log_loss_at_ln2,
            dpo202_log_early_saturation, dpo203_log_chosen_falling, dpo109_degeneration,
            dpo110_capability_regression, dpo301_length_bias, dpo302_likelihood_displacement_risk,
            dpo303_mode_collapse_risk, dpo304_duplicate_pairs, dpo305_contradictory_pairs, dpo306_truncated_pairs,
            dpo307_reference_disfavours, dpo308_degenerate_pairs)
RULES: dict[str, Rule] = {m.RULE.code: m.RULE for m in _MODULES}

__all__ = ["RULES", "CheckpointFacts", "Diagnosis", "Evidence", "Example", "Finding", "Recommendation", "Rule",
           "RunFacts", "facts_from_report", "get_rule", "make_facts", "order", "parse_set_option", "run_rules",
           "verdict_of"]


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    """Codes read the letter O typed for a zero as the zero (DPO1O1 -> DPO101, not its tie DPO110)."""
    if word.upper().startswith("DPO"):
        word = word[:3] + word[3:].upper().replace("O", "0")
    return did_you_mean(word, options)


def get_rule(code: str) -> Rule:
    """A rule by code (case-insensitive); unknown codes raise a UserError with the nearest match."""
    key = code.strip().upper()
    if key not in RULES:
        raise UserError(f"unknown rule {code}{_did_you_mean(key, RULES)} (list them with: dpo-doctor rules)")
    return RULES[key]


def _expand(codes: set[str] | None, flag: str) -> set[str] | None:
    """Codes or code prefixes (ruff-style: DPO1 = every DPO1xx rule) -> exact codes; unknown -> UserError."""
    if codes is None:
        return None
    out: set[str] = set()
    for code in codes:
        key = code.strip().upper()
        hits = {c for c in RULES if c.startswith(key)} if key else set()
        if not hits:
            raise UserError(f"{flag} {code}: unknown rule{_did_you_mean(key, RULES)} (list them with: dpo-doctor rules)")
        out |= hits
    return out


def _check_overrides(overrides: Mapping[str, Mapping[str, float]]) -> None:
    for code, params in overrides.items():
        rule = get_rule(code)
        for param in params:
            if param not in rule.params:
                raise UserError(f"--set {code}.{param}: {rule.code} has no parameter {param}"
                                f"{_did_you_mean(param, rule.params)} (its parameters: {', '.join(rule.params)})")


def run_rules(facts: RunFacts, select: set[str] | None = None, ignore: set[str] | None = None,
              overrides: dict[str, dict[str, float]] | None = None) -> list[Diagnosis]:
    """Every selected rule over the facts, ordered error -> warning -> info, then by code."""
    overrides = {k.upper(): v for k, v in (overrides or {}).items()}
    _check_overrides(overrides)
    chosen = _expand(select, "--select")
    skipped = _expand(ignore, "--ignore") or set()
    found = []
    for code, rule in sorted(RULES.items()):
        if (chosen is not None and code not in chosen) or code in skipped:
            continue
        if (rule.source == "data") != facts.data_audit or (facts.log_only and rule.source == "metrics"):
            continue
        diagnosis = rule.run(facts, overrides.get(code))
        if diagnosis is not None:
            found.append(diagnosis)
    from_metrics = {d.kind for d in found if d.source != "log"}
    found = [d for d in found if d.source != "log" or d.kind not in from_metrics]
    return order(found)


def order(found: list[Diagnosis]) -> list[Diagnosis]:
    """Most severe first; within a severity, causes before the findings they explain, then by code."""
    kinds = {d.kind for d in found}
    return sorted(found, key=lambda d: (-SEVERITY_RANK[d.severity], bool(set(d.explained_by) & (kinds - {d.kind})),
                                        d.code))


def parse_set_option(text: str) -> tuple[str, str, float]:
    """`DPO101.max_corr=0.4` -> ("DPO101", "max_corr", 0.4), checked against the rule's keyword parameters."""
    head, eq, value = text.partition("=")
    code, dot, param = head.strip().partition(".")
    if not eq or not dot or not param:
        raise UserError(f"--set {text!r}: expected CODE.PARAM=VALUE, e.g. --set DPO101.max_corr=0.4")
    rule = get_rule(code)
    param = param.strip()
    if param not in rule.params:
        raise UserError(f"--set {text}: {rule.code} has no parameter {param}{_did_you_mean(param, rule.params)} "
                        f"(its parameters: {', '.join(rule.params)})")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"--set {text}: {value.strip()!r} is not a number") from None
    return rule.code, param, number


def parse_settings(items: Iterable[str]) -> dict[str, dict[str, float]]:
    """Every `--set CODE.PARAM=VALUE` -> {code: {param: value}}, each checked against its rule."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        code, param, value = parse_set_option(item)
        out.setdefault(code, {})[param] = value
    return out


def check_selection(select: Iterable[str], ignore: Iterable[str], settings: Iterable[str]) -> None:
    """Validate --select/--ignore/--set before any work (a typo must not cost a scan)."""
    _expand(set(select) or None, "--select")
    _expand(set(ignore) or None, "--ignore")
    parse_settings(settings)


def verdict_of(diagnoses: list[Diagnosis]) -> tuple[str, str]:
    """("healthy"|"warning"|"error", one sentence). Info-level findings alone leave a run healthy."""
    if not diagnoses:
        return "healthy", "No known DPO failure found."
    worst = max(diagnoses, key=lambda d: SEVERITY_RANK[d.severity])
    verdict = "healthy" if worst.severity == "info" else worst.severity
    top = diagnoses[0]
    where = f" at {top.checkpoint}" if top.checkpoint else ""
    more = f" (+{len(diagnoses) - 1} more finding{'s' if len(diagnoses) > 2 else ''})" if len(diagnoses) > 1 else ""
    if verdict == "healthy":
        return verdict, f"No warning or error; {len(diagnoses)} informational note(s), first: {top.name}."
    lead = f"{top.kind.replace('_', ' ')}{where}"
    text = top.message if top.message.lower().startswith(top.kind.replace("_", " ")) else f"{lead}: {top.message}"
    return verdict, f"{text}{more}"


def facts_from_report(report: Mapping, train_log=None) -> RunFacts:
    """The rules' view of a report.json dict (plus its train_log table): metrics only, never raw rows."""
    ckpts = tuple(sorted((CheckpointFacts(c["name"], int(c["step"]), MappingProxyType(dict(c.get("metrics") or {})))
                          for c in report.get("checkpoints", [])), key=lambda c: c.step))
    run = report.get("run", {})
    return RunFacts(
        checkpoints=ckpts,
        reference_metrics=MappingProxyType(dict((report.get("reference") or {}).get("metrics") or {})),
        data_stats=MappingProxyType(dict((report.get("data") or {}).get("stats") or {})),
        beta=float(run.get("beta") or 0.1), loss_type=run.get("loss_type"), train_log=train_log,
        log_only=bool(report.get("log_only")) or not ckpts,
        n_pairs=(report.get("data") or {}).get("n_pairs"),
        data_is_eval=bool((report.get("settings") or {}).get("data_is_eval")))
