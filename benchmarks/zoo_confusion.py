"""Does the rule catalogue name the failure each zoo scenario injects? Prints ONE JSON line: both zoos' confusion.

    python benchmarks/zoo_confusion.py                 # both zoos: build if missing, scan what has no report yet
    python benchmarks/zoo_confusion.py --zoo tiny      # one zoo (tiny | smollm2)
    python benchmarks/zoo_confusion.py --rescan        # scan every scenario again (generation probes on)

Steps: `dpo_doctor.zoo.build.build` (cached: a finished scenario is kept), then for each scenario the scan
`dpo-doctor zoo measure` runs (held-out eval pairs, generation probes, the scenario's scan reference), cached as
examples/zoo/reports/<name>/report.json. The rules are then re-run on each report's metrics and training log with
the CURRENT catalogue (rules are a pure function of those, so a threshold change needs no re-scan).

Output keys: `confusion` {injected kind: {kind of the first (most severe) diagnosis, or "healthy": count}},
`scenarios` {name: {"injected", "reported": [kind of every diagnosis with severity >= warning, in report order],
"info": [...], "codes": [...], "first": kind}}, `healthy_clean` (no warning or error on the healthy run),
`injected_first` (on every scenario the injected kind is the first diagnosis), `best_gap` (below), under one key
per zoo ("tiny", "smollm2"); `seconds`.

`best_gap`: is the checkpoint the doctor ships the truly best one? Every zoo run carries `truth.jsonl`, held-out
questions that neither training nor any scan probes (tiny zoo 64, SmolLM2 zoo 32); `dpo_doctor.zoo.measure.grade_run`
scans every checkpoint again on them (independent samples, same settings) and their graded `task/accuracy` is the
checkpoint's true quality (SmolLM2 zoo: the exact result; tiny zoo: within 9 of it, the task's own notion of right,
`zoo.tiny.task.TOLERANCE`). `true` = the best-graded trained checkpoint. Two picks are checked against it:
* `suite`: `best_checkpoint` with a verifiable probe suite, i.e. by `task/accuracy` on the scan's own probe prompts
  (other questions than truth.jsonl). The SmolLM2 zoo's scan has that suite; for the tiny zoo
  `zoo.measure.suite_scan` scans the run again with a suite of the same 32 prompts its plain scan probes (samples
  from the cache), since the tiny zoo's own scan has none (see zoo/tiny/build.py for why);
* `blind`: the pick without any quality signal (task/* and judge/* removed): what a user with neither a suite nor
  a judge gets.
`*_gap_points` = 100 x (true quality of `true` - of the pick); `best_suite_gap_points` / `best_blind_gap_points`:
mean and max over scenarios.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def diagnose_report(report_dir: Path) -> list:
    """The current catalogue over a finished scan's metrics and training log (no model, no re-scan)."""
    import polars as pl

    from dpo_doctor.rules import facts_from_report, run_rules

    report = json.loads((report_dir / "report.json").read_text())
    log_path = report_dir / "train_log.parquet"
    train_log = pl.read_parquet(log_path) if log_path.exists() else None
    return run_rules(facts_from_report(report, train_log))


def ensure_scans(runs: Path, reports: Path, rescan: bool) -> list[tuple[str, str, Path]]:
    """(name, injected kind, report dir) per built scenario; scans the ones without a report (or all)."""
    from dpo_doctor.zoo.measure import scan_run

    out = []
    for scenario in sorted(runs.glob("*/scenario.json")):
        record = json.loads(scenario.read_text())
        report_dir = reports / record["name"]
        if rescan or not (report_dir / "report.json").exists():
            scan_run(scenario.parent, reports)
        out.append((record["name"], record["kind"], report_dir))
    return out


def confusion(rows: list[tuple[str, str, list]]) -> dict:
    table: dict[str, dict[str, int]] = {}
    per: dict[str, dict] = {}
    for name, kind, diagnoses in rows:
        loud = [d for d in diagnoses if d.severity != "info"]
        first = loud[0].kind if loud else "healthy"
        table.setdefault(kind, {}).setdefault(first, 0)
        table[kind][first] += 1
        per[name] = {"injected": kind, "first": first, "reported": [d.kind for d in loud],
                     "info": [d.kind for d in diagnoses if d.severity == "info"], "codes": [d.code for d in diagnoses]}
    healthy = [p for p in per.values() if p["injected"] == "healthy"]
    return {"confusion": table, "scenarios": per,
            "healthy_clean": bool(healthy) and all(not p["reported"] for p in healthy),
            "injected_first": all(p["first"] == p["injected"] for p in per.values())}


def best_gap(run: Path, report_dir: Path, diagnoses: list, rescan: bool = False) -> dict | None:
    """The checkpoint the doctor ships vs the truly best one, graded on questions it never saw (module doc)."""
    import dataclasses

    from dpo_doctor.rules import run_rules
    from dpo_doctor.rules.best import choose_best
    from dpo_doctor.zoo.measure import grade_run, suite_scan

    graded = {k: v for k, v in grade_run(run, report_dir.parent, rescan).items() if v is not None}
    facts = _facts(report_dir)
    trained = [c.name for c in facts.trained if c.name in graded]
    if not trained:
        return None
    true = max(trained, key=lambda n: graded[n])
    gap = lambda n: None if n not in graded else round(100 * (graded[true] - graded[n]), 1)  # noqa: E731
    blind = dataclasses.replace(facts, checkpoints=tuple(
        dataclasses.replace(c, metrics={k: v for k, v in c.metrics.items() if not k.startswith(("task/", "judge/"))})
        for c in facts.checkpoints))
    blind_pick = (choose_best(blind, diagnoses) or {}).get("name")
    suite_dir = suite_scan(run, report_dir.parent, rescan)  # tiny zoo: the same scan with a suite
    suite_facts = _facts(suite_dir) if suite_dir else facts
    suite = choose_best(suite_facts, run_rules(suite_facts) if suite_dir else diagnoses) or {}
    has_suite = any(c.get("task/accuracy") is not None for c in suite_facts.checkpoints)
    return {"true": true, "graded": {n: round(graded[n], 3) for n in ["reference", *trained] if n in graded},
            "blind": blind_pick, "blind_gap_points": gap(blind_pick),
            "suite": suite.get("name") if has_suite else None, "suite_signal": suite.get("signal"),
            "suite_confidence": suite.get("confidence"),
            "suite_gap_points": gap(suite.get("name")) if has_suite else None}


def _facts(report_dir: Path):
    import polars as pl

    from dpo_doctor.rules import facts_from_report

    log_path = report_dir / "train_log.parquet"
    return facts_from_report(json.loads((report_dir / "report.json").read_text()),
                             pl.read_parquet(log_path) if log_path.exists() else None)


def zoo_result(zoo: str, rescan: bool) -> dict:
    from dpo_doctor.zoo.build import build
    from dpo_doctor.zoo.measure import DEFAULT_OUT

    runs, reports = DEFAULT_OUT[zoo]
    t0 = time.time()
    if zoo == "smollm2":
        import torch

        torch.set_num_threads(1)  # as the CLI does (cli._one_thread): two threads ran 3x slower on 2 busy cores
    build(runs, progress=False, model=zoo)  # cached: only missing scenarios train
    scans = ensure_scans(runs, reports, rescan)
    rows = [(name, kind, diagnose_report(d)) for name, kind, d in scans]
    result = confusion(rows)
    for (name, _, d), (_, _, diagnoses) in zip(scans, rows):
        result["scenarios"][name]["best"] = best_gap(runs / name, d, diagnoses, rescan)
    for key in ("suite_gap_points", "blind_gap_points"):
        gaps = [p["best"][key] for p in result["scenarios"].values() if p.get("best") and p["best"][key] is not None]
        result[f"best_{key}"] = {"mean": round(sum(gaps) / len(gaps), 1), "max": max(gaps)} if gaps else None
    result["seconds"] = round(time.time() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", choices=("both", "tiny", "smollm2"), default="both")
    ap.add_argument("--rescan", action="store_true", help="scan every scenario again even if a report exists")
    args = ap.parse_args(argv)
    t0 = time.time()
    zoos = ("tiny", "smollm2") if args.zoo == "both" else (args.zoo,)
    result = {**{z: zoo_result(z, args.rescan) for z in zoos}, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
