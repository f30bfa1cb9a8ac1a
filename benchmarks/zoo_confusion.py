"""Does the rule catalogue name the failure each zoo scenario injects? Prints ONE JSON line: the confusion table.

    python benchmarks/zoo_confusion.py                 # build the zoo if missing, scan what has no report yet
    python benchmarks/zoo_confusion.py --rescan        # scan every scenario again (generation probes on)

Steps: `dpo_doctor.zoo.build.build` (cached: a finished scenario is kept), then for each scenario the scan
`dpo-doctor zoo measure` runs (held-out eval pairs, generation probes, the scenario's scan reference), cached as
examples/zoo/reports/<name>/report.json. The rules are then re-run on each report's metrics and training log with
the CURRENT catalogue (rules are a pure function of those, so a threshold change needs no re-scan).

Output keys: `confusion` {injected kind: {kind of the first (most severe) diagnosis, or "healthy": count}},
`scenarios` {name: {"injected", "reported": [kind of every diagnosis with severity >= warning, in report order],
"info": [...], "codes": [...], "first": kind}}, `healthy_clean` (no warning or error on the healthy run),
`injected_first` (on every scenario the injected kind is the first diagnosis), `seconds`.
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("examples/zoo/runs"))
    ap.add_argument("--reports", type=Path, default=Path("examples/zoo/reports"))
    ap.add_argument("--rescan", action="store_true", help="scan every scenario again even if a report exists")
    args = ap.parse_args(argv)
    t0 = time.time()
    from dpo_doctor.zoo.build import build

    build(args.runs, progress=False)  # cached: only missing scenarios train
    rows = [(name, kind, diagnose_report(d)) for name, kind, d in ensure_scans(args.runs, args.reports, args.rescan)]
    result = {**confusion(rows), "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
