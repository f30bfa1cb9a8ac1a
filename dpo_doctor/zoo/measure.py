"""Scan every built zoo run with the real scanner and collect the symptoms it measured (never assumed).

For each scenario: `dpo_doctor.scan.scan` on the run's held-out eval pairs, against the scenario's `scan_ref`
(the true reference, except for reference_mismatch), generation probes on (the run's own scan settings when its
scenario.json has a `scan` block: the SmolLM2 zoo probes its held-out questions as a verifiable suite, so every
checkpoint's samples are graded, `task/accuracy`). The symptom numbers of the last
checkpoint, the diagnoses and the train/eval log end-points go to `<run>/symptoms.json`; `markdown_table` renders
them for examples/zoo/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpo_doctor.files import write_atomic
from dpo_doctor.zoo.runfolder import log_endpoints, read_record, runs_in, write_jsonl

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
TASK = (("task/accuracy", "task acc"),)  # SmolLM2 zoo only: share of the checkpoint's samples graded right
DEFAULT_OUT = {"tiny": (Path("examples/zoo/runs"), Path("examples/zoo/reports")),
               "smollm2": (Path("examples/zoo/runs-smollm2"), Path("examples/zoo/reports-smollm2"))}


def scan_config(run: Path, record: dict, reports: Path, out: Path, **override):
    """The one ScanConfig of a zoo scan: the run's held-out pairs against its scan reference, its own probe settings
    (scenario.json `scan`, else 32 prompts x 4 samples x 64 tokens), the shared cache in `reports`; `override`
    replaces any of them (another suite, its prompt count)."""
    from dpo_doctor.scan.pipeline import ScanConfig

    probe = {"max_prompts": 32, "samples_per_prompt": 4, "max_new_tokens": 64, **record.get("scan", {})}
    if probe.get("probe_suite"):  # a file in the run dir
        probe["probe_suite"] = str(run / probe["probe_suite"])
    return ScanConfig(run_dir=run, data=run / record["eval_data"], ref=Path(record["scan_ref"]), out=out,
                      device="cpu", cache_dir=reports / ".cache", **{**probe, **override})


def scan_run(run: Path, reports: Path, generate: bool = True) -> dict:
    """Scan one zoo run; returns (and writes) its symptoms record."""
    from dpo_doctor.report import load_report
    from dpo_doctor.scan.pipeline import scan
    from dpo_doctor.views import render_all

    record = read_record(run)
    out = scan(scan_config(run, record, reports, reports / record["name"], generate=generate))
    render_all(out)
    report = load_report(out).doc
    last = report.checkpoints[-1]
    ref_metrics = report.reference.metrics if report.reference else {}
    symptoms = {
        "name": record["name"], "kind": record["kind"], "checkpoint": last.name, "verdict": report.verdict,
        "metrics": {k: last.metrics.get(k) for k, _ in SYMPTOMS + TASK},
        "reference_metrics": {k: ref_metrics.get(k) for k, _ in SYMPTOMS + TASK},
        "task_accuracy": {c.name: c.metrics.get("task/accuracy") for c in report.checkpoints},
        "best_checkpoint": report.best_checkpoint.name if report.best_checkpoint else None,
        "diagnoses": [f"{d.code} {d.name}" for d in report.diagnoses],  # report order: most severe first
        "train_log": log_endpoints(run),
        "report": str(out / "report.html"),
    }
    write_atomic(run / "symptoms.json", json.dumps(symptoms, indent=2, sort_keys=True) + "\n")
    return symptoms


def suite_scan(run: Path, reports: Path, rescan: bool = False) -> Path | None:
    """Tiny zoo: the run scanned again WITH a verifiable suite of the very prompts its plain scan probes (the first
    32 held-out questions; right = within `task.TOLERANCE` of the result), into reports-suite/<name>/: what a user
    with a suite gets (task/accuracy, the pick by it, DPO110). Same prompts, seed and settings as the plain scan, so
    scores and samples come from its cache. None for a run that is not a tiny-zoo run."""
    from dpo_doctor.scan.pipeline import scan
    from dpo_doctor.zoo.tiny import task

    record = read_record(run)
    if record.get("model", "tiny") != "tiny" or "n_train" not in record:
        return None
    out = reports.parent / f"{reports.name}-suite" / record["name"]
    if rescan or not (out / "report.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        questions = task.split_questions(0, record["n_train"], record["n_eval"])[1][:32]
        suite = write_jsonl(out / "probes.jsonl", task.suite_rows(questions))
        scan(scan_config(run, record, reports, out, probe_suite=str(suite)))
    return out


def grade_run(run: Path, reports: Path, rescan: bool = False) -> dict[str, float | None]:
    """`task/accuracy` of the reference and every checkpoint on the run's `truth_suite`: questions that neither
    training nor the scan's own probes saw, sampled apart from the scan (same settings otherwise), so the checkpoint
    the scan picks can be checked against an independent grade. Scanned into reports-grading/<name>/ (pair scores
    come from the scan's cache). {} when the run has no truth suite."""
    from dpo_doctor.report import load_report
    from dpo_doctor.scan.pipeline import scan

    record = read_record(run)
    if not record.get("truth_suite"):
        return {}
    suite = run / record["truth_suite"]
    out = reports.parent / f"{reports.name}-grading" / record["name"]
    if rescan or not (out / "report.json").exists():
        n = sum(1 for line in suite.open() if line.strip())
        scan(scan_config(run, record, reports, out, probe_suite=str(suite), max_prompts=n))
    report = load_report(out).doc
    ref = {"reference": report.reference.metrics.get("task/accuracy")} if report.reference else {}
    return {**ref, **{c.name: c.metrics.get("task/accuracy") for c in report.checkpoints}}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def markdown_table(records: list[dict]) -> str:
    """One row per scenario: the last checkpoint's symptoms, log end-points and the diagnoses the scanner made
    (plus `task acc` when the runs were probed with a verifiable suite)."""
    task = [t for t in TASK if any(r["metrics"].get(t[0]) is not None for r in records)]
    cols = SYMPTOMS + tuple(task)
    head = ["scenario", "injected"] + [h for _, h in cols] + ["train acc", "eval loss first/min/last", "diagnoses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        t = r["train_log"]
        evals = "/".join(_fmt(t.get(k)) for k in ("eval_loss_first", "eval_loss_min", "eval_loss_last"))
        cells = [r["name"], r["kind"], *[_fmt(r["metrics"].get(k)) for k, _ in cols], _fmt(t.get("train_acc")),
                 evals, ", ".join(r["diagnoses"]) or "none"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_all(out: Path | None = None, reports: Path | None = None, generate: bool = True,
                model: str = "tiny") -> list[dict]:
    """Scan every built run of the `model` zoo ("tiny" or "smollm2"; out / reports default per model)."""
    if model not in DEFAULT_OUT:
        from dpo_doctor.errors import UserError, did_you_mean

        raise UserError(f"unknown zoo model {model!r}{did_you_mean(model, DEFAULT_OUT)} "
                        f"Choose one of: {', '.join(DEFAULT_OUT)}")
    out, reports = Path(out or DEFAULT_OUT[model][0]), Path(reports or DEFAULT_OUT[model][1])
    runs = runs_in(out)
    return [scan_run(r, reports, generate) for r in runs]
