"""Evaluate the rule catalogue on the calibration corpus, leave-one-family-out. Prints ONE JSON line.

    python benchmarks/corpus/evaluate.py --corpus /work/corpus            # scans what is missing, then evaluates
    python benchmarks/corpus/evaluate.py --corpus /work/corpus --rescan   # scan every run again (same cache)

Steps:
1. truth: every run's outcome.json is recomputed from its measures.json (outcome.py), so the truth is the measured
   outcome, never the injected data kind;
2. scans: each run is scanned twice with `dpo-doctor scan` (plain: held-out pairs and generation probes on their
   prompts; suite: the same plus `--probe-suite suite.jsonl`, the corpus's verifiable questions, apart from the
   grading questions), into CORPUS/reports/<run>/{plain,suite}/, score cache CORPUS/cache (a scan that exists is
   reused unless --rescan);
3. rules are re-run on each report's facts (`facts_from_report` + `run_rules(..., overrides=...)`): refitting a
   threshold needs no re-scan;
4. leave-one-family-out: for each family F, each fitted threshold is chosen on the other two families (the value
   with the best detection rate minus false-alarm rate, ties to the shipped default) and the catalogue with those
   values is scored on F. Held-out numbers pool the three folds.
Reported per rule: detection rate (runs whose truth has the rule's kind and where the rule fires, warning or worse),
false-alarm rate (truth-healthy runs where it fires) and wrong-kind rate (runs whose truth lacks its kind), fitted (in-sample) and held out; the confusion table
(primary truth vs the kind of the first-ranked diagnosis); and the best-checkpoint gap (graded quality of the
truly best trained checkpoint minus that of the checkpoint `best_checkpoint` ships, in points) with the suite scan
(quality signal) and the plain scan (none).
Writes CORPUS/evaluation-<folds>.md (tables) and .json and, with --calibration PATH, the per-rule held-out rates as JSON (the
package's dpo_doctor/rules/calibration.json, which `dpo-doctor explain CODE` prints).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import outcome as corpus_outcome  # noqa: E402

FOLDS = {"family": "family", "model": "model"}  # what a held-out fold is: a model family, or one model
# The thresholds fitted on the corpus (the few that decide most findings), with their candidate values.
FIT = {
    "DPO101": {"max_length_ratio": (1.2, 1.3, 1.4, 1.5, 1.75, 2.0)},
    "DPO102": {"kl_budget_share": (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0), "blowup_factor": (2.0, 3.0, 5.0, 10.0)},
    "DPO104": {"max_drop": (0.2, 0.25, 0.33, 0.4, 0.5)},
    "DPO105": {"min_negative_frac": (0.1, 0.15, 0.2, 0.3)},
    "DPO106": {"min_drop_nats": (2.0, 5.0, 10.0, 20.0, 40.0)},
    "DPO107": {"min_accuracy": (0.55, 0.6, 0.65, 0.7)},
    "DPO110": {"min_drop": (0.03, 0.05, 0.1, 0.15)},
}
# Rules scored (every DPO1xx failure rule; DPO0xx / DPO2xx are reported through the confusion table).
SCORED = ("DPO101", "DPO102", "DPO103", "DPO104", "DPO105", "DPO106", "DPO107", "DPO108", "DPO109", "DPO110")


def load_runs(root: Path, truth=None, write: bool = True) -> list[dict]:
    """Every built run with its truth (`truth`: an outcome module, default outcome.py), written to outcome.json
    unless `write` is False (a comparison under another truth leaves the corpus's files alone)."""
    import build as corpus_build

    truth_mod = truth or corpus_outcome
    runs = []
    for spec_path in sorted((root / "runs").glob("*/spec.json")):
        run = spec_path.parent
        if not (run / "measures.json").exists():
            continue
        spec = json.loads(spec_path.read_text())
        measures = json.loads((run / "measures.json").read_text())
        truth = truth_mod.label(measures, corpus_build.graded_pairs(run, spec))
        rec = {"name": spec["name"], "family": spec["family"], "task": spec["task"], "kind": spec["kind"], **truth}
        if write:
            (run / "outcome.json").write_text(json.dumps(rec, indent=1))
        runs.append({"spec": spec, "truth": truth, "dir": run})
    return runs


def ensure_scans(root: Path, runs: list[dict], rescan: bool, modes: tuple[str, ...] = ("plain", "suite")) -> None:
    import build as corpus_build

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for r in runs:
        for mode in modes:
            out = root / "reports" / r["spec"]["name"] / mode
            if (out / "report.json").exists() and not rescan:
                continue
            out.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            p = subprocess.run(corpus_build.scan_cmd(r["dir"], r["spec"], out, root / "cache", mode == "suite"),
                               env=env, stdout=open(out.parent / f"scan-{mode}.log", "w"), stderr=subprocess.STDOUT)
            print(json.dumps({"scan": r["spec"]["name"], "mode": mode, "rc": p.returncode,
                              "seconds": round(time.time() - t0, 1)}), file=sys.stderr, flush=True)


def facts_of(report_dir: Path):
    import polars as pl

    from dpo_doctor.rules import facts_from_report

    path = report_dir / "report.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    log = report_dir / "train_log.parquet"
    return facts_from_report(report, pl.read_parquet(log) if log.exists() else None)


def loud(diagnoses) -> list:
    return [d for d in diagnoses if d.severity in ("warning", "error")]


def fires(facts, code: str, overrides: dict) -> bool:
    from dpo_doctor.rules import run_rules

    return any(d.code == code for d in loud(run_rules(facts, select={code}, overrides=overrides)))


def rule_kind(code: str) -> str:
    from dpo_doctor.rules import RULES

    return RULES[code].kind


def rates(runs: list[dict], facts: dict, code: str, overrides: dict) -> dict:
    """Detection (truth has the rule's kind) and false alarm (truth healthy) counts of one rule."""
    kind = rule_kind(code)
    pos = [r for r in runs if kind in r["truth"]["labels"] and facts.get(r["spec"]["name"]) is not None]
    neg = [r for r in runs if r["truth"]["primary"] == "healthy" and facts.get(r["spec"]["name"]) is not None]
    other = [r for r in runs if kind not in r["truth"]["labels"] and facts.get(r["spec"]["name"]) is not None]
    det = sum(fires(facts[r["spec"]["name"]], code, overrides) for r in pos)
    fa = sum(fires(facts[r["spec"]["name"]], code, overrides) for r in neg)
    oa = sum(fires(facts[r["spec"]["name"]], code, overrides) for r in other)
    return {"detected": det, "positives": len(pos), "false_alarms": fa, "healthy": len(neg), "other_alarms": oa,
            "others": len(other)}


def score(c: dict) -> float:
    """Detection rate minus the rate of firing on runs whose truth lacks the rule's kind (healthy or another
    failure: a rule that fires everywhere is no help in either case)."""
    d = c["detected"] / c["positives"] if c["positives"] else 0.0
    f = c["other_alarms"] / c["others"] if c["others"] else 0.0
    return d - f


def fit(runs: list[dict], facts: dict) -> dict:
    """Per fitted rule, the candidate thresholds with the best detection minus false-alarm rate on `runs` (ties:
    the shipped default, then the candidate nearest it). Rules with no positive run keep their defaults."""
    import itertools

    from dpo_doctor.rules import RULES

    chosen: dict[str, dict] = {}
    for code, grid in FIT.items():
        defaults = {p: RULES[code].params[p] for p in grid}
        if not any(rule_kind(code) in r["truth"]["labels"] for r in runs):
            continue
        best, best_key = None, None
        for values in itertools.product(*grid.values()):
            cand = dict(zip(grid, values))
            c = rates(runs, facts, code, {code: cand})
            dist = sum(abs(cand[p] - defaults[p]) / max(abs(defaults[p]), 1e-9) for p in grid)
            key = (score(c), -dist)
            if best_key is None or key > best_key:
                best, best_key = cand, key
        if best != defaults:
            chosen[code] = best
    return chosen


def first_kind(facts, overrides: dict) -> str:
    from dpo_doctor.rules import run_rules

    d = loud(run_rules(facts, overrides=overrides))
    return d[0].kind if d else "healthy"


def strip_quality(facts):
    """The facts without task/* and judge/* metrics: what the rules see with no quality signal."""
    import dataclasses

    return dataclasses.replace(facts, checkpoints=tuple(
        dataclasses.replace(c, metrics={k: v for k, v in c.metrics.items() if not k.startswith(("task/", "judge/"))})
        for c in facts.checkpoints))


def _grading_scores(r: dict) -> dict[str, list[float]]:
    """Per checkpoint, the graded score of each grading question (measures.json `per_question`)."""
    models = json.loads((r["dir"] / "measures.json").read_text())["models"]
    return {k: v.get("per_question") or [] for k, v in models.items() if k != "reference"}


def _equivalent(r: dict, pick: str, best: str) -> bool:
    """The pick is not significantly worse than the truly best checkpoint on the grading questions (exact paired
    sign test over questions, two-sided 5%): the truth itself is a finite sample (64 questions x 3 answers here),
    so a gap it cannot resolve is not a miss."""
    from dpo_doctor.metrics.paired import paired

    if pick == best:
        return True
    scores = _grading_scores(r)
    res = paired(scores.get(pick, []), scores.get(best, []))
    return res is None or not (res.significant and res.diff < 0)


def pick_gap(r: dict, facts, overrides: dict, strip: bool) -> dict:
    from dpo_doctor.rules import run_rules
    from dpo_doctor.rules.best import choose_best

    graded = {k: v for k, v in r["truth"]["quality"].items() if k != "reference"}
    true_best = max(graded.values())
    best_name = max(graded, key=graded.get)
    if strip:
        facts = strip_quality(facts)
    pick = (choose_best(facts, run_rules(facts, overrides=overrides)) or {}).get("name")
    if pick not in graded:
        return {"pick": pick, "gap": None}
    first = min(graded, key=lambda k: int(k.rsplit("-", 1)[1]))  # baseline: always ship the first checkpoint
    out = {"pick": pick, "gap": round(100 * (true_best - graded[pick]), 1),
           "first_checkpoint_gap": round(100 * (true_best - graded[first]), 1)}
    out["equivalent"] = out["gap"] <= 2.0 or _equivalent(r, pick, best_name)
    if not strip:  # the ceiling of the quality signal itself: its own argmax, no rule
        acc = {c.name: c.get("task/accuracy") for c in facts.trained if c.get("task/accuracy") is not None}
        if acc:
            top = max(acc, key=lambda k: (acc[k], -next(c.step for c in facts.trained if c.name == k)))
            out["signal_argmax_gap"] = round(100 * (true_best - graded.get(top, 0.0)), 1)
    return out


def summarize_gaps(rows: list[dict]) -> dict:
    gaps = [g["gap"] for g in rows if g["gap"] is not None]
    if not gaps:
        return {"n": 0}
    out = {"n": len(gaps), "no_pick": sum(1 for g in rows if g["gap"] is None),
           "mean": round(sum(gaps) / len(gaps), 1), "max": max(gaps),
           "within_2": sum(1 for g in gaps if g <= 2.0), "within_5": sum(1 for g in gaps if g <= 5.0),
           # within 2 points, or not significantly worse than the best on the grading questions (paired sign test)
           "within_2_or_indistinguishable": sum(1 for g in rows if g.get("equivalent"))}
    firsts = [g["first_checkpoint_gap"] for g in rows if g.get("first_checkpoint_gap") is not None]
    if firsts:  # the baseline any pick should beat: ship the first checkpoint, whatever the run
        out["first_checkpoint_mean"] = round(sum(firsts) / len(firsts), 1)
    ceiling = [g["signal_argmax_gap"] for g in rows if g.get("signal_argmax_gap") is not None]
    if ceiling:  # the quality signal's own argmax: what any rule reading that signal could at best do
        out["signal_argmax"] = {"mean": round(sum(ceiling) / len(ceiling), 1),
                                "within_2": sum(1 for g in ceiling if g <= 2.0), "n": len(ceiling)}
    return out


def add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b[k] for k in b}


def fmt_rate(c: dict, num: str, den: str) -> str:
    return f"{c[num]}/{c[den]}" + (f" ({100 * c[num] / c[den]:.0f}%)" if c[den] else "")


def evaluate(root: Path, runs: list[dict], fold_by: str = "family") -> dict:
    from dpo_doctor.rules import RULES

    out: dict = {"runs": len(runs), "folds_by": fold_by}
    groups = sorted({r["spec"][FOLDS[fold_by]] for r in runs})
    for mode in ("plain", "suite"):
        facts = {r["spec"]["name"]: facts_of(root / "reports" / r["spec"]["name"] / mode) for r in runs}
        fallback = []
        if mode == "plain":  # a run scanned only with the suite: the same scan with every quality metric removed
            for r in runs:
                n = r["spec"]["name"]
                if facts[n] is None:
                    suite = facts_of(root / "reports" / n / "suite")
                    facts[n] = strip_quality(suite) if suite is not None else None
                    fallback.append(n)
        default = {code: rates(runs, facts, code, {}) for code in SCORED}
        fitted_in: dict[str, dict] = {}
        held: dict[str, dict] = {}
        confusion_default: dict[str, dict[str, int]] = {}
        confusion_held: dict[str, dict[str, int]] = {}
        gaps_default, gaps_held, per_run = [], [], {}
        folds = {}
        for fam in groups:
            train = [r for r in runs if r["spec"][FOLDS[fold_by]] != fam]
            test = [r for r in runs if r["spec"][FOLDS[fold_by]] == fam]
            if not test:
                continue
            chosen = fit(train, facts)
            folds[fam] = chosen
            for code in SCORED:
                fitted_in[code] = add(fitted_in.get(code, {}), rates(train, facts, code, chosen))
                held[code] = add(held.get(code, {}), rates(test, facts, code, chosen))
            for r in test:
                f = facts[r["spec"]["name"]]
                if f is None:
                    continue
                t = r["truth"]["primary"]
                k_def, k_held = first_kind(f, {}), first_kind(f, chosen)
                confusion_default.setdefault(t, {}).setdefault(k_def, 0)
                confusion_default[t][k_def] += 1
                confusion_held.setdefault(t, {}).setdefault(k_held, 0)
                confusion_held[t][k_held] += 1
                g_def = pick_gap(r, f, {}, strip=(mode == "plain"))
                g_held = pick_gap(r, f, chosen, strip=(mode == "plain"))
                gaps_default.append(g_def)
                gaps_held.append(g_held)
                per_run[r["spec"]["name"]] = {"family": fam, "truth": t, "labels": r["truth"]["labels"],
                                              "first_default": k_def, "first_heldout": k_held,
                                              "pick_default": g_def, "pick_heldout": g_held}
        out[mode] = {"plain_from_suite_scan": fallback if mode == "plain" else [], "default": default, "fitted_in_sample": fitted_in, "held_out": held, "folds": folds,
                     "confusion_default": confusion_default, "confusion_held_out": confusion_held,
                     "gap_default": summarize_gaps(gaps_default), "gap_held_out": summarize_gaps(gaps_held),
                     "per_run": per_run,
                     "first_correct_default": sum(1 for p in per_run.values() if p["first_default"] == p["truth"]),
                     "first_correct_held_out": sum(1 for p in per_run.values() if p["first_heldout"] == p["truth"]),
                     # the first-ranked kind is ONE of the run's measured failures (or healthy on a healthy run)
                     "first_in_labels_held_out": sum(1 for p in per_run.values()
                                                     if p["first_heldout"] in (p["labels"] or ["healthy"])),
                     "first_in_labels_default": sum(1 for p in per_run.values()
                                                    if p["first_default"] in (p["labels"] or ["healthy"])),
                     "scored_runs": len(per_run)}
    out["rules"] = {c: RULES[c].name for c in SCORED}
    return out


def markdown(res: dict, runs: list[dict]) -> str:
    from collections import Counter

    lines = [f"Runs: {res['runs']}; held-out folds by {res['folds_by']}. Truth (primary, from measured outcomes): "
             + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['truth']['primary'] for r in runs).items())) + "."]
    fams = Counter((r["spec"]["family"], r["spec"]["task"], r["spec"]["kind"]) for r in runs)
    lines += ["", "| family | task | data kind | runs |", "|---|---|---|---|"]
    lines += [f"| {f} | {t} | {k} | {n} |" for (f, t, k), n in sorted(fams.items())]
    for mode, title in (("plain", "without a quality signal (plain scan)"),
                        ("suite", "with the corpus's verifiable suite (--probe-suite)")):
        m = res[mode]
        lines += ["", f"### Per rule, {title}", "",
                  "| rule | kind | detection, defaults (all runs) | false alarms, defaults | detection, fitted "
                  "(in-sample) | false alarms, fitted | detection, held-out | false alarms, held-out | fires without its kind, "
                  "held-out |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for code in SCORED:
            d, fi, h = m["default"][code], m["fitted_in_sample"].get(code), m["held_out"].get(code)
            if fi is None:
                continue
            lines.append(f"| {code} | {res['rules'][code]} | {fmt_rate(d, 'detected', 'positives')} | "
                         f"{fmt_rate(d, 'false_alarms', 'healthy')} | {fmt_rate(fi, 'detected', 'positives')} | "
                         f"{fmt_rate(fi, 'false_alarms', 'healthy')} | {fmt_rate(h, 'detected', 'positives')} | "
                         f"{fmt_rate(h, 'false_alarms', 'healthy')} | {fmt_rate(h, 'other_alarms', 'others')} |")
        lines += ["", f"Thresholds chosen per held-out family: `{json.dumps(m['folds'])}`", ""]
        kinds = sorted({k for row in m["confusion_held_out"].values() for k in row}
                       | {k for row in m["confusion_default"].values() for k in row})
        lines += [f"Confusion ({title}, held-out thresholds): rows = truth, columns = first-ranked diagnosis", "",
                  "| truth \\ first | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        for t, row in sorted(m["confusion_held_out"].items()):
            lines.append(f"| {t} | " + " | ".join(str(row.get(k, "")) for k in kinds) + " |")
        lines += ["", f"First-ranked diagnosis is one of the run's measured failures (healthy: no warning): "
                      f"{m['first_in_labels_held_out']}/{m['scored_runs']} held-out thresholds, "
                      f"{m['first_in_labels_default']}/{m['scored_runs']} shipped defaults; first-ranked diagnosis = "
                      f"the primary truth: {m['first_correct_held_out']}/{m['scored_runs']} held-out thresholds, "
                      f"{m['first_correct_default']}/{m['scored_runs']} shipped defaults.",
                  "Per family (held-out thresholds): " + "; ".join(
                      f"{fam} {sum(p['first_heldout'] in (p['labels'] or ['healthy']) for p in rows)}/{len(rows)} "
                      f"first-ranked in its failures, pick gap mean "
                      f"{sum(p['pick_heldout']['gap'] for p in rows) / len(rows):.1f}"
                      for fam in sorted({p['family'] for p in m['per_run'].values()})
                      for rows in [[p for p in m['per_run'].values() if p['family'] == fam
                                    and p['pick_heldout']['gap'] is not None]]) + ".",
                  f"Best-checkpoint gap (points): held-out thresholds {json.dumps(m['gap_held_out'])}; "
                  f"defaults {json.dumps(m['gap_default'])}"]
    lines += ["", "### Per run", "", "| run | truth labels | first (plain) | first (suite) | pick gap plain | "
              "pick gap suite | graded quality ref / checkpoints |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        n = r["spec"]["name"]
        p, s = res["plain"]["per_run"].get(n), res["suite"]["per_run"].get(n)
        q = " / ".join(f"{v:.2f}" for v in r["truth"]["quality"].values())
        lines.append(f"| {n} | {', '.join(r['truth']['labels']) or 'healthy'} | "
                     f"{p['first_heldout'] if p else '-'} | {s['first_heldout'] if s else '-'} | "
                     f"{p['pick_heldout']['gap'] if p else '-'} | {s['pick_heldout']['gap'] if s else '-'} | {q} |")
    return "\n".join(lines) + "\n"


def calibration(res: dict) -> dict:
    """Per rule: held-out detection / false-alarm counts (both scan modes) and the corpus it was measured on."""
    out = {"source": f"benchmarks/corpus/evaluate.py --folds {res['folds_by']} (leave-one-{res['folds_by']}-out "
                     f"over the calibration corpus)", "runs": res["runs"], "folds_by": res["folds_by"], "rules": {}}
    for code in SCORED:
        row = {}
        for mode in ("plain", "suite"):
            h = res[mode]["held_out"].get(code)
            d = res[mode]["default"].get(code)
            if h:
                row[mode] = {"held_out": h, "defaults_all_runs": d}
        out["rules"][code] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    ap.add_argument("--rescan", action="store_true", help="scan every run again (the score cache is reused)")
    ap.add_argument("--no-scan", action="store_true",
                    help="scan nothing: evaluate the scans that exist (a run without a plain scan is read from its "
                         "suite scan with the quality metrics removed)")
    ap.add_argument("--modes", default="plain,suite",
                    help="which scans to make: plain, suite or both (a run without a plain scan is read from its suite "
                         "scan with the quality metrics removed); default plain,suite")
    ap.add_argument("--scan-only", action="store_true", help="make the scans, evaluate nothing")
    ap.add_argument("--md", type=Path, default=None, help="markdown tables (default CORPUS/evaluation.md)")
    ap.add_argument("--folds", choices=sorted(FOLDS), default="family",
                    help="held-out unit: a model family (tiny, smollm2, gemma3) or one model (tiny-llama, tiny-qwen3, "
                         "...); default family")
    ap.add_argument("--calibration", type=Path, default=None, help="write the per-rule held-out rates here")
    ap.add_argument("--outcome", type=Path, default=None,
                    help="read the truth with this outcome module instead of outcome.py (e.g. an earlier version: "
                         "git show REV:benchmarks/corpus/outcome.py > /tmp/outcome_old.py); outcome.json files and "
                         "the calibration are then left alone and the tables go to CORPUS/evaluation-<folds>-<name>.md")
    args = ap.parse_args()
    t0 = time.time()
    truth = None
    if args.outcome:
        import importlib.util

        if not args.outcome.is_file():
            ap.error(f"--outcome {args.outcome}: no such file (write one with: git show REV:benchmarks/corpus/"
                     f"outcome.py > {args.outcome})")

        spec = importlib.util.spec_from_file_location(f"outcome_{args.outcome.stem}", args.outcome)
        truth = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(truth)
        if args.calibration:
            ap.error("--calibration is written from outcome.py's truth only; leave it out with --outcome")
    runs = load_runs(args.corpus, truth, write=truth is None)
    if not args.no_scan:
        ensure_scans(args.corpus, runs, args.rescan, tuple(args.modes.split(",")))
    if args.scan_only:
        return
    res = evaluate(args.corpus, runs, args.folds)
    stem = f"evaluation-{args.folds}" + (f"-{args.outcome.stem}" if args.outcome else "")
    (args.md or args.corpus / f"{stem}.md").write_text(markdown(res, runs))
    (args.corpus / f"{stem}.json").write_text(json.dumps(res, indent=1))
    if args.calibration:
        args.calibration.write_text(json.dumps(calibration(res), indent=1, sort_keys=True) + "\n")
    summary = {"runs": res["runs"], "folds_by": args.folds, "seconds": round(time.time() - t0, 1)}
    for mode in ("plain", "suite"):
        m = res[mode]
        summary[mode] = {"first_correct_held_out": f"{m['first_correct_held_out']}/{m['scored_runs']}",
                         "first_in_labels_default": f"{m['first_in_labels_default']}/{m['scored_runs']}",
                         "first_correct_default": f"{m['first_correct_default']}/{m['scored_runs']}",
                         "first_in_labels_held_out": f"{m['first_in_labels_held_out']}/{m['scored_runs']}",
                         "gap_held_out": m["gap_held_out"], "folds": m["folds"],
                         "held_out": {c: f"det {v['detected']}/{v['positives']} fa {v['false_alarms']}/{v['healthy']} "
                                         f"other {v['other_alarms']}/{v['others']}"
                                      for c, v in m["held_out"].items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
