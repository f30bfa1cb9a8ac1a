"""Send a scan's key metrics and diagnoses to the experiment trackers a training run already uses.

Only trackers named in `TrainingArguments.report_to` AND already imported by the run (found in `sys.modules`) are
touched: this module never imports a tracker, so a user who did not enable W&B never loads it. Each adapter is a
few lines over the tracker's public API: `wandb.log` / `wandb.alert`, `trackio.log` / `trackio.alert`, a
TensorBoard `SummaryWriter` in `logging_dir`, `mlflow.log_metrics` / `mlflow.log_text`. Alerts go out for NEW
warnings and errors only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

PREFIX = "dpo-doctor/"
# The figures worth a chart next to the training curves (whichever the scan measured).
TRACKED = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "accuracy/beta_free",
           "drift/chosen", "drift/rejected", "margins_per_token", "gen/kl_mean", "gen/length_mean",
           "gen/length_ratio", "gen/entropy_mean")
MODULES = {"wandb": "wandb", "trackio": "trackio", "tensorboard": "torch.utils.tensorboard", "mlflow": "mlflow"}


def enabled(report_to) -> list[str]:
    """The tracker names `report_to` asks for ("all" = every one already imported), normalized like HF does."""
    if report_to is None or report_to in ("none", ["none"]):
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if "all" in names:
        return [n for n, mod in MODULES.items() if mod in sys.modules]
    return [n for n in names if n in MODULES]


def diagnoses_text(diagnoses: list[dict]) -> str:
    return "\n".join(f"{d['code']} {d['name']} ({d['severity']}): {d['message']}" for d in diagnoses) or "no findings"


@dataclass
class Trackers:
    """The active trackers of one run; `log` after each scan."""

    report_to: object
    logging_dir: str | None = None
    _writers: dict = field(default_factory=dict)

    def log(self, step: int, metrics: dict, diagnoses: list[dict], new: list[dict]) -> list[str]:
        """Log metrics + diagnoses (and alerts for new warnings/errors); returns the trackers written to."""
        numbers = {PREFIX + k: float(metrics[k]) for k in TRACKED if isinstance(metrics.get(k), (int, float))}
        numbers[PREFIX + "errors"] = float(sum(d["severity"] == "error" for d in diagnoses))
        numbers[PREFIX + "warnings"] = float(sum(d["severity"] == "warning" for d in diagnoses))
        alerts = [d for d in new if d["severity"] in ("warning", "error")]
        done = []
        for name in enabled(self.report_to):
            module = sys.modules.get(MODULES[name])
            if module is not None and ADAPTERS[name](self, module, step, numbers, diagnoses, alerts):
                done.append(name)
        return done


def _alert_level(module, severity: str):
    levels = getattr(module, "AlertLevel", None)
    return getattr(levels, "ERROR" if severity == "error" else "WARN", None) if levels is not None else None


def _wandb(t: Trackers, wandb, step, numbers, diagnoses, alerts) -> bool:
    if getattr(wandb, "run", None) is None:
        return False
    extra = {}
    if hasattr(wandb, "Table"):
        extra[PREFIX + "diagnoses"] = wandb.Table(columns=["step", "code", "severity", "message"],
                                                  data=[[step, d["code"], d["severity"], d["message"]]
                                                        for d in diagnoses])
    wandb.log({**numbers, **extra, "train/global_step": step})  # HF's WandbCallback steps on train/global_step
    for d in alerts:
        wandb.alert(title=f"dpo-doctor {d['code']} {d['name']}", text=d["message"],
                    level=_alert_level(wandb, d["severity"]))
    return True


def _trackio(t: Trackers, trackio, step, numbers, diagnoses, alerts) -> bool:
    trackio.log(numbers, step=step)
    for d in alerts:
        if hasattr(trackio, "alert"):
            trackio.alert(title=f"dpo-doctor {d['code']} {d['name']}", text=d["message"],
                          level=_alert_level(trackio, d["severity"]))
    return True


def _tensorboard(t: Trackers, tb, step, numbers, diagnoses, alerts) -> bool:
    if t.logging_dir is None:
        return False
    writer = t._writers.get("tb") or t._writers.setdefault("tb", tb.SummaryWriter(log_dir=t.logging_dir))
    for key, value in numbers.items():
        writer.add_scalar(key, value, step)
    writer.add_text(PREFIX + "diagnoses", diagnoses_text(diagnoses), step)
    writer.flush()
    return True


def _mlflow(t: Trackers, mlflow, step, numbers, diagnoses, alerts) -> bool:
    if mlflow.active_run() is None:
        return False
    mlflow.log_metrics(numbers, step=step)
    mlflow.log_text(diagnoses_text(diagnoses), f"dpo-doctor/diagnoses-step-{step}.txt")
    return True


ADAPTERS = {"wandb": _wandb, "trackio": _trackio, "tensorboard": _tensorboard, "mlflow": _mlflow}
