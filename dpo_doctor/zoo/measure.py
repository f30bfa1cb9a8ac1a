"""Scan every built zoo run with the real scanner and collect the symptoms it measured (never assumed).

For each scenario: `dpo_doctor.scan.scan` on the run's held-out eval pairs, against the scenario's `scan_ref`
(the true reference, except for reference_mismatch), generation probes on. The symptom numbers of the last
checkpoint, the diagnoses and the train/eval log end-points go to `<run>/symptoms.json`; `markdown_table` renders
them for examples/zoo/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpo_doctor.files import write_atomic

# Columns of the README table: (metric key in report.json checkpoints[-1].metrics, header)
SYMPTOMS = (
    ("rewards/accuracies", "acc"),
    ("rewards/margins", "margin"),
    ("drift_per_token/chosen", "drift/tok chosen"),
    ("drift_per_token/rejected", "drift/tok rejected"),
    ("length/margin_spearman", "len~margin rho"),
    ("gen/length_ratio", "gen len ratio"),
    ("gen/kl_mean", "gen KL"),
    ("gen/distinct_2", "distinct-2"),
)


def scan_run(run: Path, reports: Path, generate: bool = True) -> dict:
    """Scan one zoo run; returns (and writes) its symptoms record."""
    from dpo_doctor.report import load_report
    from dpo_doctor.scan.pipeline import ScanConfig, scan
    from dpo_doctor.views import render_all

    record = json.loads((run / "scenario.json").read_text())
    cfg = ScanConfig(run_dir=run, data=run / record["eval_data"], ref=Path(record["scan_ref"]),
                     out=reports / record["name"], device="cpu", max_prompts=32, samples_per_prompt=4,
                     max_new_tokens=64, cache_dir=reports / ".cache", generate=generate)
    out = scan(cfg)
    render_all(out)
    report = load_report(out).report
    last = report["checkpoints"][-1]
    symptoms = {
        "name": record["name"], "kind": record["kind"], "checkpoint": last["name"], "verdict": report["verdict"],
        "metrics": {k: last["metrics"].get(k) for k, _ in SYMPTOMS},
        "reference_metrics": {k: report.get("reference", {}).get("metrics", {}).get(k) for k, _ in SYMPTOMS},
        "diagnoses": [f"{d['code']} {d['name']}" for d in report["diagnoses"]],  # report order: most severe first
        "train_log": log_endpoints(run),
        "report": str(out / "report.html"),
    }
    write_atomic(run / "symptoms.json", json.dumps(symptoms, indent=2, sort_keys=True) + "\n")
    return symptoms


def log_endpoints(run: Path) -> dict:
    """Last logged train accuracy / loss and the first and last eval loss (overfitting shows here)."""
    log = json.loads((run / "trainer_state.json").read_text())["log_history"]
    train = [r for r in log if "loss" in r]
    evals = [r for r in log if "eval_loss" in r]
    out = {"train_acc": train[-1]["rewards/accuracies"], "train_loss": train[-1]["loss"]} if train else {}
    if evals:
        out.update(eval_loss_first=evals[0]["eval_loss"], eval_loss_min=min(r["eval_loss"] for r in evals),
                   eval_loss_last=evals[-1]["eval_loss"], eval_acc_last=evals[-1]["eval_rewards/accuracies"])
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def markdown_table(records: list[dict]) -> str:
    """One row per scenario: the last checkpoint's symptoms, log end-points and the diagnoses the scanner made."""
    head = ["scenario", "injected"] + [h for _, h in SYMPTOMS] + ["train acc", "eval loss first/min/last",
                                                                  "diagnoses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        t = r["train_log"]
        evals = "/".join(_fmt(t.get(k)) for k in ("eval_loss_first", "eval_loss_min", "eval_loss_last"))
        cells = [r["name"], r["kind"], *[_fmt(r["metrics"][k]) for k, _ in SYMPTOMS], _fmt(t.get("train_acc")),
                 evals, ", ".join(r["diagnoses"]) or "none"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_all(out: Path, reports: Path, generate: bool = True) -> list[dict]:
    runs = sorted(p.parent for p in Path(out).glob("*/scenario.json"))
    return [scan_run(r, Path(reports), generate) for r in runs]
