"""`dpo-doctor repro`: does the recommended fix work? Re-train the run with it, re-scan, compare.

Reads a finished scan's report.json, takes a diagnosis's recommendation (beta and/or variant with its params),
re-runs the same training recipe from the same reference on the same data with only that change (the run must
carry the built-in trainer's `dpo_doctor_config.json`, which records the whole recipe), scans the new run with the
original scan's settings, and prints before/after for every evidence metric of the diagnosis.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.report_model import DiagnosisRecord, Recommendation, ScanReport

from dpo_doctor.train.config import LOSS_NAMES  # a recommendation's variant is the trainer's loss name

# recommendation params -> TrainConfig fields
PARAM_FIELDS = {"alpha": "r_dpo_alpha", "r_dpo_alpha": "r_dpo_alpha", "label_smoothing": "label_smoothing",
                "epsilon": "label_smoothing", "dpop_lambda": "dpop_lambda", "lambda": "dpop_lambda",
                "rpo_alpha": "rpo_alpha", "gamma": "simpo_gamma", "simpo_gamma": "simpo_gamma",
                "f_divergence": "f_divergence", "divergence": "f_divergence", "f_alpha": "f_alpha",
                "learning_rate": "learning_rate", "epochs": "epochs"}


@dataclass(frozen=True)
class ReproConfig:
    report_dir: Path
    code: str | None = None  # which diagnosis; default: the most severe one with a usable recommendation
    out: Path | None = None  # default: <report_dir>/repro-<code>/
    beta: float | None = None  # override the recommendation's beta
    variant: str | None = None  # override the recommendation's variant


def pick_diagnosis(report: ScanReport, code: str | None) -> DiagnosisRecord:
    diags = report.diagnoses
    if code:
        found = [d for d in diags if d.code == code.upper()]
        if not found:
            raise UserError(f"no diagnosis {code} in this report; it has: {', '.join(d.code for d in diags) or 'none'}")
        return found[0]
    usable = [d for d in diags if d.recommendation.beta or d.recommendation.variant in LOSS_NAMES]
    if not usable:
        raise UserError("no diagnosis in this report recommends a beta or a trainable variant; nothing to reproduce")
    return usable[0]


def changed_config(train_cfg: dict, rec: Recommendation, cfg: ReproConfig, out: Path):
    """The original TrainConfig with only the recommended change applied."""
    from dpo_doctor.train.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: (tuple(v) if isinstance(v, list) else v) for k, v in train_cfg.items() if k in names}
    change: dict = {"output_dir": str(out)}
    beta = cfg.beta if cfg.beta is not None else rec.beta
    variant = cfg.variant or rec.variant
    if beta:
        change["beta"] = float(beta)
    if variant:
        if variant not in LOSS_NAMES:
            raise UserError(f"variant {variant!r} is not in the built-in trainer{did_you_mean(variant, LOSS_NAMES)} "
                            f"trainable: {', '.join(LOSS_NAMES)}")
        change["loss"] = variant
        for k, v in rec.params.items():
            if k in PARAM_FIELDS:
                change[PARAM_FIELDS[k]] = v
    if len(change) == 1:
        raise UserError("the recommendation changes neither beta nor the loss; pass --beta or --variant")
    return dataclasses.replace(TrainConfig(**base), **change), {k: v for k, v in change.items() if k != "output_dir"}


def run_repro(cfg: ReproConfig) -> dict:
    """Train with the fix, scan, and return {"change", "before", "after"} for the evidence metrics."""
    from dpo_doctor.report import load_report
    from dpo_doctor.scan.pipeline import ScanConfig, scan
    from dpo_doctor.train.trainer import train

    report = load_report(cfg.report_dir).doc
    if report.kind != "scan" or report.data is None or report.reference is None:
        raise UserError(f"{cfg.report_dir} is a log-only report; repro needs a scan with --data")
    diag = pick_diagnosis(report, cfg.code)
    run_dir = Path(report.run.path or "")
    conf_path = run_dir / "dpo_doctor_config.json"
    if not conf_path.exists():
        raise UserError(f"{run_dir} was not trained by dpo-doctor's trainer (no dpo_doctor_config.json), so its recipe "
                        "is unknown; re-train it yourself with the recommendation: " + diag.recommendation.text)
    out = Path(cfg.out or Path(cfg.report_dir) / f"repro-{diag.code}")
    train_cfg, change = changed_config(json.loads(conf_path.read_text()), diag.recommendation, cfg, out / "run")
    train(train_cfg)
    s = report.settings or {}
    same = ScanConfig(run_dir=out / "run")  # the scan's defaults, then the original scan's settings
    new = scan(dataclasses.replace(
        same, data=Path(report.data.path or ""), ref=Path(report.reference.path), beta=report.run.beta,
        out=out / "report", max_length=report.data.max_length, generate=bool(s.get("generate")),
        samples_per_prompt=s.get("samples_per_prompt", same.samples_per_prompt),
        max_new_tokens=s.get("max_new_tokens", same.max_new_tokens), seed=s.get("seed", same.seed)))
    after_report = load_report(new).doc
    keys = list(diag.evidence) + [k for k in ("gen/length_ratio", "gen/kl_mean", "rewards/accuracies")
                                  if k not in diag.evidence]
    return {"diagnosis": diag.code, "kind": diag.kind, "change": change, "before": evidence_values(report, keys),
            "after": evidence_values(after_report, keys), "after_diagnoses": [d.code for d in after_report.diagnoses],
            "report": str(new)}


def evidence_values(report: ScanReport, keys: list[str]) -> dict:
    """The last checkpoint's value of each metric; data statistics (length/mean_ratio...) live under data.stats,
    not in the checkpoints (they describe the pairs, so they do not change with the fix)."""
    metrics = report.checkpoints[-1].metrics
    stats = report.data.stats if report.data else {}
    return {k: metrics.get(k, stats.get(k)) for k in keys}

