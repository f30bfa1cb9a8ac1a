"""`dpo-doctor compare`: several runs of one reference, scanned alike, judged together.

check runs and flags -> one reference for all -> `scan.pipeline.scan` per run with ONE ScanConfig (only run_dir
and out differ, by `dataclasses.replace`; the shared cache scores the reference once and each checkpoint once) ->
per-prompt quality from each scan's samples -> frontier, best checkpoint, next beta / lr (`compare.choose`) ->
OUT/report.json of kind "compare" (+ OUT/runs/<name>/, each a full scan report). Like scan, it never renders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import polars as pl

from dpo_doctor import report as rep
from dpo_doctor.compare import choose, quality
from dpo_doctor.compare.runs import check_one_reference, expand_runs, run_hparams, run_names
from dpo_doctor.errors import UserError
from dpo_doctor.scan.config import ScanConfig, check_config, check_out
from dpo_doctor.scan.pipeline import ProgressFn, scan

KIND = "compare"
RUN_METRICS = ("rewards/accuracies", "rewards/margins", "accuracy/ranking", "gen/kl_mean", "gen/length_ratio",
               "gen/length_mean", "gen/ead_per_input", "task/accuracy", "task/accuracy_low", "task/accuracy_high",
               "judge/win_rate", "judge/win_rate_low", "judge/win_rate_high", "length/margin_spearman")


@dataclass(frozen=True)
class CompareConfig:
    """`dpo-doctor compare RUN... --data PAIRS [scan flags] [--out DIR]`: the runs and the one scan setting."""

    runs: tuple[Path, ...]
    scan: ScanConfig  # every run is scanned with this config (run_dir and out replaced)
    out: Path = Path("reports/compare")


def check_compare(cfg: CompareConfig) -> list[Path]:
    """The run dirs, after every check that needs no model (bad flags, missing dirs, one run)."""
    if cfg.scan.data is None:
        raise UserError("compare needs --data PAIRS: every run is scored on the same held-out pairs")
    if cfg.scan.log is not None:
        raise UserError(f"--log {cfg.scan.log} names one run's log; compare reads each run's own log from its "
                        "folder (trainer_state.json, W&B, TensorBoard). Drop --log")
    runs = expand_runs(cfg.runs)
    for run, name in zip(runs, run_names(runs)):
        check_config(replace(cfg.scan, run_dir=run, out=Path(cfg.out) / "runs" / name))
    check_out(Path(cfg.out))
    return runs


def compare(cfg: CompareConfig, progress: ProgressFn | None = None) -> Path:
    """Scan every run alike and write the compare report; returns its folder."""
    runs = check_compare(cfg)
    s = cfg.scan
    reference = check_one_reference(runs, s.ref, s.base, s.trust_pickles)
    out = Path(cfg.out)
    names = run_names(runs)
    dirs = []
    for i, (run, name) in enumerate(zip(runs, names)):
        tick = (lambda stage, done, total, i=i, name=name: progress(f"[{i + 1}/{len(runs)} {name}] {stage}", done,
                                                                   total)) if progress else None
        dirs.append(scan(replace(s, run_dir=run, out=out / "runs" / name), progress=tick))
    bundles = [rep.load_report(d) for d in dirs]
    doc, tables = build_compare(cfg, runs, names, bundles, reference)
    rep.write_report(out, doc, tables)
    return out


def _run_record(name: str, run: Path, bundle, out: Path, trust_pickles: bool) -> dict:
    r = bundle.doc
    hp = run_hparams(run, r.run.beta, r.run.beta_source or "default", bundle.train_log, trust_pickles)
    log = bundle.train_log
    best = bundle.raw.get("best_checkpoint")  # copied into the compare report as the scan wrote it
    return {"name": name, "path": str(run), "report": str(bundle.path.relative_to(out)),
            "beta": hp.beta, "beta_source": hp.beta_source, "learning_rate": hp.learning_rate,
            "lr_source": hp.lr_source, "loss_type": r.run.loss_type,
            "framework": r.run.framework, "verdict": r.verdict,
            "summary": r.summary, "diagnoses": bundle.raw.get("diagnoses") or [], "best_checkpoint": best,
            "train_log": r.train_log.source if r.train_log is not None and log is not None else None,
            "checkpoints": [{"name": c.name, "step": c.step,
                             "metrics": {k: c.metrics[k] for k in RUN_METRICS if k in c.metrics}}
                            for c in r.checkpoints]}


def _scores(bundles, names, signal, answers) -> dict:
    out = {}
    for name, b in zip(names, bundles):
        for c in b.checkpoints:
            per = quality.per_prompt(b.samples, c.name, signal, answers) if signal else None
            if per is not None:
                out[(name, c.name)] = per
    return out


def build_compare(cfg: CompareConfig, runs, names, bundles, reference: str) -> tuple[dict, dict]:
    """report.json's content and the tables (points: one row per run x checkpoint; train_log: every run's)."""
    out = Path(cfg.out)
    s = cfg.scan
    records = [_run_record(n, r, b, out, s.trust_pickles) for n, r, b in zip(names, runs, bundles)]
    signal, label = quality.pick_signal(bundles)
    answers = quality.suite_answers(s.probe_suite) if signal == "task/accuracy" else None
    points = [p for n, b in zip(names, bundles) for p in choose.points_of(n, b.doc, signal)]
    first = bundles[0].doc
    ref_metrics = first.reference.metrics if first.reference else {}
    # the reference against itself: a judge win rate of 0.5 by definition; implicit-reward accuracy at chance
    ref_y = ref_metrics.get(signal, 0.5 if signal == "judge/win_rate" else None) if signal else 0.5
    if signal == "judge/win_rate" and ref_y is None:
        ref_y = 0.5
    best = None
    if signal:
        best = choose.choose_by_quality(points, _scores(bundles, names, signal, answers), label, ref_y, seed=s.seed)
        if best is not None:
            best["signal"] = signal
    if best is None:
        best = choose.choose_by_hump(points, records)
    warnings = [f"{r['name']}: beta not found in the run's config; TRL's default 0.1 was assumed for its implicit "
                "rewards (pass --trust-pickles to read training_args.bin, or keep our trainer's config)"
                for r in records if r["beta_source"].startswith("not found")]
    if signal is None:
        warnings.append("no quality signal: the pick uses implicit-reward accuracy and the KL budget (the hump "
                        "heuristic); pass a verifiable --probe-suite or --judge for a measured choice")
    doc = rep.clean({
        **rep.header(), "kind": KIND, "name": out.resolve().name,
        "reference": {"path": reference, "metrics": {k: ref_metrics.get(k) for k in RUN_METRICS if k in ref_metrics}},
        "data": {"path": first.data.path if first.data else None, "format": first.data.format if first.data else None,
                 "n_pairs": first.data.n_pairs if first.data else 0},
        "quality": {"signal": signal, "label": label or "held-out implicit-reward accuracy (a proxy)",
                    "source": s.judge or s.probe_suite, "reference": ref_y},
        "settings": {k: v for k, v in asdict(s).items() if k not in ("run_dir", "out", "ref", "data")},
        "runs": records, "frontier": choose.frontier(points, signal, ref_y), "best": best,
        "recommendation": choose.recommend(points, records, best, signal), "warnings": warnings,
        "checkpoints": [], "diagnoses": []})
    table = pl.DataFrame([{"run": p.run, "checkpoint": p.checkpoint, "step": p.step, "kl": p.kl,
                           "sqrt_kl": p.sqrt_kl, "quality": p.quality, "quality_low": p.quality_low,
                           "quality_high": p.quality_high, "accuracy": p.accuracy, "margin": p.margin,
                           "length_ratio": p.length_ratio, "degenerate": p.degenerate} for p in points],
                         schema={"run": pl.String, "checkpoint": pl.String, "step": pl.Int64, "kl": pl.Float64,
                                 "sqrt_kl": pl.Float64, "quality": pl.Float64, "quality_low": pl.Float64,
                                 "quality_high": pl.Float64, "accuracy": pl.Float64, "margin": pl.Float64,
                                 "length_ratio": pl.Float64, "degenerate": pl.Boolean})
    logs = [b.train_log.with_columns(run=pl.lit(n)) for n, b in zip(names, bundles) if b.train_log is not None]
    return doc, {"points": table, "train_log": pl.concat(logs, how="diagonal_relaxed") if logs else None}
