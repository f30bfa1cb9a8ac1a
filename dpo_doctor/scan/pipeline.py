"""`dpo-doctor scan`: the pipeline, in one direction.

discover -> data -> engine (reference once, then each checkpoint; cached) -> table -> metrics -> rules -> report
-> views. Scanning K checkpoints costs K+1 passes over the pairs, and a re-scan only scores what is new.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from dpo_doctor.errors import UserError

ProgressFn = Callable[[str, int, int], None]  # (stage description, done, total)


@dataclass(frozen=True)
class ScanConfig:
    """Every flag of `dpo-doctor scan`, one field each (see `dpo-doctor scan --help` for units and defaults)."""

    run_dir: Path
    data: Path | None  # None: diagnose from the training log alone (log-only verdict)
    ref: Path | None = None
    base: Path | None = None
    beta: float | None = None
    out: Path | None = None
    max_pairs: int | None = None
    max_length: int | None = 1024
    batch_size: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path | None = None
    device_map: str | None = None  # "auto": shard a model larger than one device (accelerate)
    seed: int = 0
    trust_pickles: bool = False
    trust_remote_code: bool = False
    generate: bool = True
    prompts: Path | None = None
    probe_suite: str | None = None
    max_prompts: int = 32
    samples_per_prompt: int = 4
    max_new_tokens: int = 64
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    rule_settings: tuple[str, ...] = ()
    render: bool = True
    checkpoint_filter: tuple[str, ...] = field(default=())


# ---- devices ------------------------------------------------------------------------------------------------


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for CUDA but no CUDA device is visible; use --device cpu")
    return device


def resolve_dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64}
    if name not in table:
        raise UserError(f"--dtype {name!r} unknown; use auto, float32, bfloat16, float16 or float64")
    return table[name]


def run_name(run_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_dir.resolve().name) or "run"


# ---- scoring with the cache ----------------------------------------------------------------------------------


def _budget(cfg: ScanConfig, pairs) -> tuple[int | None, int]:
    """(token budget, max rows per pass): --batch-size N means N pairs (2N sequences) per pass."""
    if cfg.batch_size == "auto":
        return None, 256
    try:
        n = int(cfg.batch_size)
        assert n > 0
    except (ValueError, AssertionError):
        raise UserError(f"--batch-size {cfg.batch_size!r}: use a positive integer (pairs per pass) or auto") from None
    return 10**9, 2 * n


def score_spec(spec, label: str, pairs, tokenizer, cfg: ScanConfig, ctx: dict, progress: ProgressFn | None):
    """Scores of one model on the pairs: from the cache if finished, else scored (resuming a partial entry)."""
    from dpo_doctor.cache import score_key
    from dpo_doctor.engine.loading import load_model, weights_fingerprint
    from dpo_doctor.engine.distributed import merge, shard_mask
    from dpo_doctor.engine.pairs import PairScores, score_pairs

    key = score_key(weights_fingerprint(spec), ctx["pairs_fp"], str(ctx["dtype"]), ctx["device"].type)
    cached = ctx["cache"].load(key)
    scores = PairScores(**cached) if cached is not None and len(cached["logp_chosen"]) == len(pairs.tokens) else None
    if scores is not None and scores.complete:
        ctx["cached"].append(label)
        return scores, None
    scores = scores or PairScores.empty(len(pairs.tokens))
    model = load_model(spec, ctx["device"], ctx["dtype"], trust_remote_code=cfg.trust_remote_code,
                       device_map=cfg.device_map)
    check_finite_weights(model, spec.path)
    d = ctx["dist"]
    mine = shard_mask(len(pairs.tokens), d)
    work = PairScores(**{k: np.where(mine, v, 0) if k.startswith("logp") else v.copy()
                         for k, v in scores.arrays().items()})  # other ranks' pairs look finished here
    total = 2 * int(mine.sum())
    done = [total - int(np.isnan(work.logp_chosen).sum() + np.isnan(work.logp_rejected).sum())]

    def tick(n: int) -> None:
        done[0] += n
        if progress and d.is_main:
            progress(f"scoring {label}", done[0], total)

    budget, rows = _budget(cfg, pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        score_pairs(model, pairs.tokens, pad, ctx["device"], work, token_budget=budget, max_rows=rows,
                    progress=tick)
    finally:  # on Ctrl-C too: keep every finished batch
        if not d.active:
            ctx["cache"].save(key, work.arrays())
    if d.active:
        work = PairScores(**merge(work.arrays(), mine, d))
        if d.is_main:
            ctx["cache"].save(key, work.arrays())
    scores = work
    ctx["scored"].append(label)
    return scores, model


def check_finite_weights(model, path: Path) -> None:
    import torch

    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise UserError(f"{path}: weight {name} contains NaN/Inf; this checkpoint is broken (training diverged?). "
                            "Exclude it or scan an earlier one")


def _free(model) -> None:
    del model
    gc.collect()


# ---- the pipeline --------------------------------------------------------------------------------------------


def scan(cfg: ScanConfig, progress: ProgressFn | None = None) -> Path:
    """Run the whole scan; returns the report directory."""
    if cfg.data is None:
        return scan_log_only(cfg)
    import torch

    from dpo_doctor import discover as disc
    from dpo_doctor.engine import distributed
    from dpo_doctor.cache import ScoreCache, default_cache_dir
    from dpo_doctor.data.pairs import load_pairs
    from dpo_doctor.engine.loading import load_tokenizer, tokenizers_compatible

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars instead of one tqdm bar per weight load
    torch.manual_seed(cfg.seed)
    run = disc.discover(Path(cfg.run_dir), ref=cfg.ref, base=cfg.base, trust_pickles=cfg.trust_pickles)
    if run.reference is None:
        raise UserError(f"cannot tell the reference model of {run.path}: pass --ref PATH (the model DPO started from)")
    checkpoints = [c for c in run.checkpoints if not cfg.checkpoint_filter or c.name in cfg.checkpoint_filter]
    warnings = list(run.warnings)
    beta, beta_source = resolve_beta(cfg, run.train_config)

    ref_tok_dir = tokenizer_dir(run.reference)
    tokenizer, tok_warn = load_tokenizer(ref_tok_dir, fallback=None)
    warnings += tok_warn
    for ckpt in checkpoints[:1] + checkpoints[-1:]:
        if disc.has_tokenizer(ckpt.spec.path):
            ck_tok, _ = load_tokenizer(ckpt.spec.path, fallback=ref_tok_dir)
            reason = tokenizers_compatible(tokenizer, ck_tok)
            if reason:
                raise UserError(f"tokenizer of {ckpt.spec.path} differs from the reference's ({reason}); scores would "
                                "be meaningless. Pass the --ref this run was trained from")

    pairs = load_pairs(Path(cfg.data), tokenizer, max_length=cfg.max_length, max_pairs=cfg.max_pairs, seed=cfg.seed)
    warnings += pairs.warnings
    d = distributed.init()
    device = resolve_device(cfg.device if not (d.active and cfg.device == "auto" and torch.cuda.is_available())
                            else f"cuda:{d.local_rank}")
    ctx = {"dist": d, "device": device, "dtype": resolve_dtype(cfg.dtype, device), "pairs_fp": pairs.fingerprint(),
           "cache": ScoreCache(cfg.cache_dir or default_cache_dir()), "cached": [], "scored": []}

    ref_scores, ref_model = score_spec(run.reference, "reference", pairs, tokenizer, cfg, ctx, progress)
    frames, ckpt_entries = [], []
    # Pair scoring and generation probes are both sharded across ranks (pairs, prompts); rank 0 writes the report.
    gen = generation_stage(cfg, pairs, tokenizer, ctx) if cfg.generate else None
    if gen is not None:
        ref_model = gen.start(run.reference, ref_model)
    elif ref_model is not None:
        _free(ref_model)
        ref_model = None
    from dpo_doctor.scan.table import checkpoint_table

    for ckpt in checkpoints:
        scores, model = score_spec(ckpt.spec, ckpt.name, pairs, tokenizer, cfg, ctx, progress)
        df = checkpoint_table(ckpt.name, ckpt.step, pairs.pair_ids, scores, ref_scores, beta, pairs.identical)
        frames.append(df)
        if gen is not None:
            model = gen.checkpoint(ckpt, model)
        if model is not None:
            _free(model)
        ckpt_entries.append({"name": ckpt.name, "step": ckpt.step, "path": str(ckpt.spec.path),
                             "kind": ckpt.spec.kind, "metrics": {}})
    long = pl.concat(frames) if frames else None
    out = Path(cfg.out) if cfg.out else Path("reports") / run_name(run.path)
    if not d.is_main:
        return out
    return finish(cfg, run, pairs, long, ckpt_entries, ref_scores, beta, beta_source, warnings, gen, ctx)


def scan_log_only(cfg: ScanConfig) -> Path:
    """No pairs given: diagnose from trainer_state.json / trainer_log.jsonl alone, and say the verdict is log-only."""
    from dpo_doctor import report as rep
    from dpo_doctor.discover import read_train_config
    from dpo_doctor.trainlog import detect_framework, read_train_log

    run_dir = Path(cfg.run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir} does not exist; pass a training output dir")
    train_log = read_train_log(run_dir)
    if train_log is None:
        raise UserError(f"{run_dir}: no trainer_state.json or trainer_log.jsonl to read, and no --data given; pass "
                        "--data PAIRS (and --ref REF) to score the checkpoints")
    train_config, warnings = read_train_config(run_dir, [], cfg.trust_pickles)
    beta, beta_source = resolve_beta(cfg, train_config)
    report = {
        **rep.header(),
        "run": {"name": run_dir.resolve().name, "path": str(run_dir.resolve()), "beta": beta,
                "beta_source": beta_source, "loss_type": train_config.get("loss_type"),
                "framework": detect_framework(train_log, run_dir)},
        "reference": None, "data": None, "settings": {"log_only": True}, "checkpoints": [], "metric_info": {},
        "train_log": {"file": "train_log.parquet", "n_rows": train_log.height,
                      "keys": [c for c in train_log.columns if c not in ("step", "epoch", "split")]},
        "warnings": warnings + ["log-only verdict: no --data given, so no checkpoint was scored; the diagnoses "
                                "below come from the training curves alone"],
    }
    report.update(diagnose(report, train_log, cfg))
    report["log_only"] = True
    out = Path(cfg.out) if cfg.out else Path("reports") / run_name(run_dir)
    rep.write_report(out, report, {"pairs": None, "pair_texts": None, "samples": None, "train_log": train_log})
    if cfg.render:
        render_views(out)
    return out


def tokenizer_dir(spec) -> Path:
    """Adapters often carry no tokenizer: use their base's."""
    from dpo_doctor.discover import has_tokenizer

    return spec.path if has_tokenizer(spec.path) or spec.base is None else Path(spec.base)


def resolve_beta(cfg: ScanConfig, train_config: dict) -> tuple[float, str]:
    if cfg.beta is not None:
        if cfg.beta <= 0:
            raise UserError(f"--beta {cfg.beta}: beta must be > 0 (TRL's default is 0.1)")
        return cfg.beta, "cli"
    if isinstance(train_config.get("beta"), (int, float)) and train_config["beta"] > 0:
        return float(train_config["beta"]), "run_config"
    return 0.1, "default"


def generation_stage(cfg, pairs, tokenizer, ctx):
    """The generation probes, when their module is installed (see dpo_doctor.scan.probes)."""
    try:
        from dpo_doctor.scan.probes import GenerationStage
    except ImportError:
        return None
    return GenerationStage(cfg, pairs, tokenizer, ctx)


def finish(cfg, run, pairs, long, ckpt_entries, ref_scores, beta, beta_source, warnings, gen, ctx) -> Path:
    """Metrics, sanity checks, rules, report.json + tables, views."""
    from dpo_doctor import report as rep
    from dpo_doctor.metrics import data_stats, metric_info, pair_metrics
    from dpo_doctor.trainlog import detect_framework, read_train_log

    for entry in ckpt_entries:
        entry["metrics"] = pair_metrics(long.filter(pl.col("checkpoint") == entry["name"]), beta)
    info = metric_info()
    ref_metrics, samples = {}, None
    if gen is not None:
        ref_metrics, samples = gen.finish(ckpt_entries, beta)
        info.update(gen.metric_info())
    warnings += sanity_checks(long, ckpt_entries)
    train_log = read_train_log(run.path)
    stats = data_stats.compute(long.filter(pl.col("checkpoint") == ckpt_entries[0]["name"])) if ckpt_entries else {}
    info.update({k: v.to_dict() for k, v in data_stats.INFO.items()})
    report = {
        **rep.header(),
        "run": {"name": run.name, "path": str(run.path), "beta": beta, "beta_source": beta_source,
                "loss_type": run.train_config.get("loss_type"),
                "framework": detect_framework(train_log, run.path) if train_log is not None else "unknown"},
        "reference": {"path": str(run.reference.path), "kind": run.reference.kind,
                      "base": str(run.reference.base) if run.reference.base else None,
                      "source": run.reference_source, "metrics": ref_metrics},
        "data": {"path": str(pairs.path), "format": pairs.format, "n_pairs": len(pairs.tokens),
                 "n_source_rows": pairs.n_source_rows, "n_excluded": int(sum(pairs.identical)),
                 "n_dropped_too_long": pairs.n_dropped_too_long, "max_length": pairs.max_length, "stats": stats},
        "settings": {"batch_size": cfg.batch_size, "device": str(ctx["device"]), "dtype": str(ctx["dtype"]),
                     "seed": cfg.seed, "max_pairs": cfg.max_pairs, "generate": gen is not None,
                     "samples_per_prompt": cfg.samples_per_prompt, "max_new_tokens": cfg.max_new_tokens,
                     "scored": ctx["scored"], "from_cache": ctx["cached"]},
        "checkpoints": ckpt_entries,
        "metric_info": info,
        "train_log": {"file": "train_log.parquet", "n_rows": train_log.height,
                      "keys": [c for c in train_log.columns if c not in ("step", "epoch", "split")]}
        if train_log is not None else None,
        "warnings": warnings,
    }
    report.update(diagnose(report, train_log, cfg))
    texts = pl.DataFrame({"pair_id": list(pairs.pair_ids), "prompt": [t[0] for t in pairs.texts],
                          "chosen": [t[1] for t in pairs.texts], "rejected": [t[2] for t in pairs.texts]})
    out = Path(cfg.out) if cfg.out else Path("reports") / run_name(run.path)
    rep.write_report(out, report, {"pairs": long, "pair_texts": texts, "samples": samples, "train_log": train_log})
    if cfg.render:
        render_views(out)
    return out


def sanity_checks(long: pl.DataFrame, entries: list[dict]) -> list[str]:
    """Problems real users hit: a checkpoint identical to the reference, NaN/Inf scores."""
    found = []
    for e in entries:
        rows = long.filter(pl.col("checkpoint") == e["name"])
        if not np.isfinite(rows["logp_chosen"].to_numpy()).all() or not np.isfinite(rows["logp_rejected"].to_numpy()).all():
            found.append(f"{e['name']}: NaN/Inf log-probs (numerical instability in the weights or the forward pass)")
        elif (rows["logp_chosen"] == rows["ref_logp_chosen"]).all() and (rows["logp_rejected"] == rows["ref_logp_rejected"]).all():
            found.append(f"{e['name']} scores exactly like the reference: nothing was trained (or --ref is this checkpoint)")
    return found


def diagnose(report: dict, train_log, cfg: ScanConfig) -> dict:
    """The rule catalogue over the finished metrics (rules never see raw rows)."""
    try:
        from dpo_doctor.rules import facts_from_report, run_rules
        from dpo_doctor.rules.best import choose_best
    except ImportError:
        return {"diagnoses": [], "verdict": "healthy", "summary": "no rules installed", "log_only": False,
                "best_checkpoint": None}
    from dpo_doctor.rules import verdict_of

    facts = facts_from_report(report, train_log)
    diagnoses = run_rules(facts, select=set(cfg.select) or None, ignore=set(cfg.ignore) or None,
                          overrides=parse_settings(cfg.rule_settings))
    verdict, summary = verdict_of(diagnoses)
    return {"diagnoses": [d.to_dict() for d in diagnoses], "verdict": verdict, "summary": summary,
            "log_only": facts.log_only, "best_checkpoint": choose_best(facts, diagnoses)}


def parse_settings(items: tuple[str, ...]) -> dict[str, dict[str, float]]:
    from dpo_doctor.rules import parse_set_option

    out: dict[str, dict[str, float]] = {}
    for item in items:
        code, param, value = parse_set_option(item)
        out.setdefault(code, {})[param] = value
    return out


def render_views(out: Path) -> None:
    try:
        from dpo_doctor.views import render_all
    except ImportError:
        return
    render_all(out)
