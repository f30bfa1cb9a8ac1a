"""`dpo-doctor scan`: the pipeline, in one direction.

check flags -> discover -> data -> engine (reference once, then each checkpoint; cached) -> table -> metrics ->
rules -> report.json. Scanning K checkpoints costs K+1 passes over the pairs, and a re-scan only scores what is
new. The pipeline never renders: the CLI composes scan, then the views.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from dpo_doctor import report as rep
from dpo_doctor.errors import UserError
from dpo_doctor.scan.config import ScanConfig, check_config, data_spec, out_dir, run_name  # noqa: F401 (re-exported)
from dpo_doctor.scan.timing import StageClock

ProgressFn = Callable[[str, int, int], None]  # (stage description, done, total)


# ---- the context every stage reads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanContext:
    """What the stages of one scan share, fixed once the data is loaded."""

    cfg: ScanConfig
    dist: Any  # engine.distributed.Dist
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    tokenizer: Any
    pairs: Any  # data.pairs.PairSet
    pairs_fp: str
    cache: Any  # cache.ScoreCache
    clock: StageClock  # where the time goes (report.json's timings)

    def load(self, spec, label: str):
        """The one model-loading call of a scan (pair scoring and the probes both use it); `label` names the model
        in the timings (reference or the checkpoint's name)."""
        from dpo_doctor.engine.loading import load_model

        with self.clock("loading", label):
            model = load_model(spec, self.device, self.dtype, trust_remote_code=self.cfg.trust_remote_code,
                               device_map=self.cfg.device_map, cache_dir=self.cfg.cache_dir)
            check_finite_weights(model, spec.path)
        return model


@dataclass(frozen=True)
class Scored:
    """One model's pair scores; `model` is kept loaded when it had to be loaded (the probes reuse it)."""

    scores: Any  # engine.pairs.PairScores
    model: Any | None
    from_cache: bool


def check_finite_weights(model, path: Path) -> None:
    import torch

    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise UserError(f"{path}: weight {name} contains NaN/Inf; this checkpoint is broken (training diverged?). "
                            f"Leave it out with --skip-checkpoint {Path(path).name}, or scan an earlier one")


def _free(model) -> None:
    del model
    gc.collect()


# ---- scoring with the cache ----------------------------------------------------------------------------------


def _budget(cfg: ScanConfig) -> tuple[int | None, int]:
    """(token budget, max rows per pass): --batch-size N means N pairs (2N sequences) per pass."""
    if cfg.batch_size == "auto":
        return None, 256
    return 10**9, 2 * int(cfg.batch_size)


def score_spec(spec, label: str, ctx: ScanContext, progress: ProgressFn | None) -> Scored:
    """Scores of one model on the pairs: from the cache if finished, else scored (resuming a partial entry)."""
    from dpo_doctor.cache import score_key
    from dpo_doctor.engine.devices import pad_id
    from dpo_doctor.engine.distributed import merge, shard_mask
    from dpo_doctor.engine.loading import weights_fingerprint
    from dpo_doctor.engine.pairs import PairScores, score_pairs

    n = len(ctx.pairs.tokens)
    with ctx.clock("cache", label):  # the weights' digest and the cache lookup
        key = score_key(weights_fingerprint(spec), ctx.pairs_fp, str(ctx.dtype), ctx.device.type)
        cached = ctx.cache.load(key, length=n)
    scores = PairScores(**cached) if cached is not None else None
    finished = complete_on_every_rank(scores, key, ctx)
    if finished is not None:
        return Scored(finished, None, True)
    scores = scores or PairScores.empty(n)  # a partial entry: this rank resumes its own shard from it
    model = ctx.load(spec, label)
    d = ctx.dist
    mine = shard_mask(n, d)
    work = PairScores(**{k: np.where(mine, v, 0) if k.startswith("logp") else v.copy()
                         for k, v in scores.arrays().items()})  # other ranks' pairs look finished here
    total = 2 * int(mine.sum())
    done = [total - int(np.isnan(work.logp_chosen).sum() + np.isnan(work.logp_rejected).sum())]

    def tick(k: int) -> None:
        done[0] += k
        if progress and d.is_main:
            progress(f"scoring {label}", done[0], total)

    budget, rows = _budget(ctx.cfg)
    try:
        with ctx.clock("pair_scoring", label):
            score_pairs(model, ctx.pairs.tokens, pad_id(ctx.tokenizer), ctx.device, work, token_budget=budget,
                        max_rows=rows, progress=tick)
    finally:  # on Ctrl-C too: keep every finished batch
        if not d.active:
            with ctx.clock("cache", label):
                ctx.cache.save(key, work.arrays())
    if d.active:
        work = PairScores(**merge(work.arrays(), mine, d))
        if d.is_main:
            with ctx.clock("cache", label):
                ctx.cache.save(key, work.arrays())
    return Scored(work, model, False)


def complete_on_every_rank(scores, key: str, ctx: ScanContext):
    """The finished cache entry if any rank has one (sent to the ranks that miss it; rank 0 keeps a copy), else None
    on every rank: the ranks never split between returning from the cache and waiting in the scoring's all_reduce,
    even when each machine has its own --cache-dir."""
    from dpo_doctor.cache import pack, unpack
    from dpo_doctor.engine.distributed import share_hit
    from dpo_doctor.engine.pairs import PairScores

    mine = scores if scores is not None and scores.complete else None
    if not ctx.dist.active:
        return mine
    shared = share_hit(pack(mine.arrays()) if mine is not None else None, ctx.dist)
    if shared is None or mine is not None:
        return mine if shared is not None else None
    arrays = unpack(shared)
    if ctx.dist.is_main:
        ctx.cache.save(key, arrays)
    return PairScores(**arrays)


# ---- the pipeline --------------------------------------------------------------------------------------------


def _context(cfg: ScanConfig, run, warnings: list[str], clock: StageClock) -> ScanContext:
    """Tokenizer (checked against the checkpoints'), pairs, devices, cache: everything before the first model."""
    import torch

    from dpo_doctor.cache import ScoreCache, default_cache_dir
    from dpo_doctor.data.pairs import load_pairs
    from dpo_doctor.engine import distributed
    from dpo_doctor.engine.devices import resolve_device, resolve_dtype
    from dpo_doctor.engine.loading import (
        check_same_rows, check_token_range, load_tokenizer, model_config, native_auto_map, tokenizers_compatible,
    )
    from dpo_doctor.weights import has_tokenizer

    trust = cfg.trust_remote_code
    ref_tok_dir = tokenizer_dir(run.reference)
    tokenizer, tok_warn = load_tokenizer(ref_tok_dir, fallback=None, trust_remote_code=trust)
    warnings += tok_warn
    for ckpt in run.checkpoints[:1] + run.checkpoints[-1:]:
        if has_tokenizer(ckpt.spec.path):
            ck_tok, _ = load_tokenizer(ckpt.spec.path, fallback=ref_tok_dir, trust_remote_code=trust)
            reason = tokenizers_compatible(tokenizer, ck_tok)
            if reason:
                raise UserError(f"tokenizer of {ckpt.spec.path} differs from the reference's ({reason}); scores would "
                                "be meaningless. Pass the --ref this run was trained from")
    pairs = load_pairs(Path(cfg.data), tokenizer, max_length=cfg.max_length, max_pairs=cfg.max_pairs, seed=cfg.seed,
                       spec=data_spec(cfg))
    warnings += pairs.warnings
    top = max((max((*t.prompt_ids, *t.chosen_ids, *t.rejected_ids), default=0) for t in pairs.tokens), default=0)
    ref_config = model_config(run.reference)
    for spec in (run.reference, *(c.spec for c in run.checkpoints)):  # an id past the embedding: caught before a forward
        check_token_range(model_config(spec), tokenizer, top, str(spec.path))
        if cfg.generate:
            check_same_rows(model_config(spec), ref_config, str(spec.path), str(run.reference.path))
        note = native_auto_map(Path(spec.base) if spec.kind in ("adapter", "zero", "fsdp") and spec.base else spec.path)
        if note and not cfg.trust_remote_code and note not in warnings:
            warnings.append(note)
    d = distributed.init()
    device = resolve_device(cfg.device if not (d.active and cfg.device == "auto" and torch.cuda.is_available())
                            else f"cuda:{d.local_rank}")
    return ScanContext(cfg=cfg, dist=d, device=device, dtype=resolve_dtype(cfg.dtype, device), tokenizer=tokenizer,
                       pairs=pairs, pairs_fp=pairs.fingerprint(),
                       cache=ScoreCache(cfg.cache_dir or default_cache_dir()), clock=clock)


def _discover(cfg: ScanConfig):
    from dpo_doctor import discover as disc

    run = disc.discover(Path(cfg.run_dir), ref=cfg.ref, base=cfg.base, trust_pickles=cfg.trust_pickles)
    refuse_reference_free(run.path, run.train_config, run.train_config_source)
    if run.reference is None:
        raise UserError(f"cannot tell the reference model of {run.path}: pass --ref PATH (the model DPO started from)")
    if cfg.checkpoint_filter or cfg.skip_checkpoints:
        from dataclasses import replace

        run = replace(run, checkpoints=disc.select_checkpoints(run.checkpoints, cfg.checkpoint_filter,
                                                                cfg.skip_checkpoints))
    return run


def scan(cfg: ScanConfig, progress: ProgressFn | None = None, checked: bool = False) -> Path:
    """Run the whole scan and write report.json + tables; returns the report directory.

    `checked=True`: `cfg` already passed `check_config` (the CLI's watch checks once, then rescans)."""
    clock = StageClock()
    if cfg.data is None:
        with clock("startup"):
            if not checked:
                check_config(cfg)
        return scan_log_only(cfg, clock)
    with clock("startup"):
        if not checked:
            check_config(cfg)
        import torch
        from transformers.utils import logging as hf_logging

        from dpo_doctor.metrics import across_checkpoints, pair_metrics
        from dpo_doctor.scan.table import checkpoint_table
        from dpo_doctor.trainlog import load_train_log

    hf_logging.disable_progress_bar()  # our own progress bars instead of one tqdm bar per weight load
    torch.manual_seed(cfg.seed)
    with clock("discovery"):
        run = _discover(cfg)
    warnings = list(run.warnings)
    beta, beta_source = resolve_beta(cfg, run.train_config, run.train_config_source)
    warnings += loss_notes(run.train_config)
    with clock("data"):  # every input is read once, here, before any model loads
        log = load_train_log(run.path, cfg.log)
        suite = _suite(cfg)
        ctx = _context(cfg, run, warnings, clock)
    scored, cached = [], []

    probes = None
    if cfg.generate:  # the probe prompts are read (and checked) before any model is scored
        from dpo_doctor.scan.probes import GenerationStage

        with clock("data"):
            probes = GenerationStage(ctx, progress, suite)
    ref = score_spec(run.reference, "reference", ctx, progress)
    (cached if ref.from_cache else scored).append("reference")
    if probes is not None:
        probes.start(run.reference, ref.model)
    elif ref.model is not None:
        _free(ref.model)
    frames, pair_m = [], {}
    for ckpt in run.checkpoints:
        res = score_spec(ckpt.spec, ckpt.name, ctx, progress)
        (cached if res.from_cache else scored).append(ckpt.name)
        with clock("metrics_rules"):
            frame = checkpoint_table(ckpt.name, ckpt.step, ctx.pairs.pair_ids, res.scores, ref.scores, beta,
                                     ctx.pairs.identical)
            frames.append(frame)
            pair_m[ckpt.name] = pair_metrics(frame, beta)
        model = probes.checkpoint(ckpt, res.model) if probes is not None else res.model
        if model is not None:
            _free(model)
    out = out_dir(cfg)
    if not ctx.dist.is_main:
        return out
    gen = probes.finish(beta) if probes is not None else None
    if probes is not None:
        probes.close()
    with clock("metrics_rules"):
        long = pl.concat(frames) if frames else None
        for c, extra in zip(run.checkpoints, across_checkpoints(frames)):
            pair_m[c.name].update(extra)
    records = [rep.CheckpointRecord(name=c.name, step=c.step, path=str(c.spec.path), kind=c.spec.kind,
                                    metrics={**pair_m[c.name], **(gen.metrics[c.name] if gen else {})},
                                    per_prompt=(gen.per_prompt or {}).get(c.name, {}) if gen else {})
               for c in run.checkpoints]
    settings = {"batch_size": cfg.batch_size, "device": str(ctx.device), "dtype": str(ctx.dtype), "seed": cfg.seed,
                "max_pairs": cfg.max_pairs, "generate": gen is not None,
                "samples_per_prompt": cfg.samples_per_prompt, "max_new_tokens": cfg.max_new_tokens,
                "scored": scored, "from_cache": cached, "data_is_eval": cfg.data_is_eval,
                "data_format": cfg.data_format, "columns": cfg.columns, "input_template": cfg.input_template,
                "template": cfg.template,
                "quality": (gen.quality if gen else None) or {"signal": None, "why": "generation probes off"}}
    return write_scan(cfg, run, ctx, long, records, beta, beta_source, warnings + list(log.warnings), settings, gen,
                      log)


def _suite(cfg: ScanConfig):
    """The --probe-suite, read once before any model (None without one or without probes). A suite with answers
    combines with --prompts (its answers are graded, the prompts probe the run); a prompt-only suite cannot."""
    if not cfg.generate or cfg.probe_suite is None:
        return None
    from dpo_doctor.data.suites import load_suite

    suite = load_suite(cfg.probe_suite)  # a bad user suite -> UserError, row by row, before any model
    if cfg.prompts is not None and not suite.verifiable:
        raise UserError(f"--prompts {cfg.prompts} and --probe-suite {cfg.probe_suite} both name the prompts to "
                        f"sample, and {cfg.probe_suite} has no answers to grade; pass one of them (a suite with "
                        f"answers combines with --prompts: its answers are graded, your prompts probe the run)")
    return suite


def write_scan(cfg, run, ctx: ScanContext, long, records, beta, beta_source, warnings, settings, gen, log) -> Path:
    """Data statistics, sanity checks, rules, then report.json + tables."""
    from dpo_doctor.audit.table import from_pairset
    from dpo_doctor.metrics import data_audit, metric_info
    from dpo_doctor.trainlog import detect_framework

    pairs = ctx.pairs
    train_log = log.frame
    loss_type = run.train_config.get("loss_type")
    framework = detect_framework(train_log, run.path) if train_log is not None else "unknown"
    if framework == "llama-factory" and cfg.template is None:
        warnings = warnings + [
            "LLaMA-Factory trained this run; its tokenization differs from TRL's, used here (its `empty` template adds "
            "no EOS, cutoff_len cuts prompts too), so rewards can differ from its log: pass --template empty|default "
            "and --max-length CUTOFF_LEN for its own ids (README: Other trainers' data)"]
    with ctx.clock("metrics_rules"):
        info = metric_info()
        info.update(gen.info if gen else {})
        info.update({k: v.to_dict() for k, v in data_audit.info().items()})
        warnings = warnings + sanity_checks(long, records) + list(ctx.cache.notes)
        # the data section is the data audit's no-model part (`dpo-doctor data`), on the pairs as scored
        stats = data_audit.compute(from_pairset(pairs), cfg.max_length).stats
        facts = run_facts(records, gen.reference_metrics if gen else {}, stats, len(pairs.tokens), beta, loss_type,
                          train_log, cfg.data_is_eval,
                          reference_per_prompt=(gen.per_prompt or {}).get("reference", {}) if gen else {},
                          quality=(gen.quality if gen else None) or {})
        diagnosis = run_diagnosis(facts, cfg)
    report = rep.build_report(
        run=rep.RunInfo(name=run.name, path=str(run.path), beta=beta, beta_source=beta_source, loss_type=loss_type,
                        framework=framework),
        reference=rep.ReferenceInfo(path=str(run.reference.path), kind=run.reference.kind,
                                    base=str(run.reference.base) if run.reference.base else None,
                                    source=run.reference_source, metrics=gen.reference_metrics if gen else {},
                                    per_prompt=(gen.per_prompt or {}).get("reference", {}) if gen else {}),
        data=rep.DataInfo(path=str(pairs.path), format=pairs.format, n_pairs=len(pairs.tokens),
                          n_source_rows=pairs.n_source_rows, n_excluded=int(sum(pairs.identical)),
                          n_dropped_too_long=pairs.n_dropped_too_long, max_length=pairs.max_length, stats=stats,
                          data_format=pairs.data_format),
        settings=settings, checkpoints=records, metric_info=info, train_log=rep.TrainLogInfo.of(log),
        warnings=warnings + beta_warning(beta_source), diagnosis=with_beta_caveat(diagnosis, beta_source),
        timings=ctx.clock.to_dict())
    texts = pl.DataFrame({"pair_id": list(pairs.pair_ids), "prompt": [t[0] for t in pairs.texts],
                          "chosen": [t[1] for t in pairs.texts], "rejected": [t[2] for t in pairs.texts]})
    out = out_dir(cfg)
    rep.write_report(out, report, {"pairs": long, "pair_texts": texts, "samples": gen.samples if gen else None,
                                   "train_log": train_log})
    return out


def scan_log_only(cfg: ScanConfig, clock: StageClock | None = None) -> Path:
    """No pairs given: diagnose from trainer_state.json / trainer_log.jsonl alone, and say the verdict is log-only."""
    from dpo_doctor.discover import run_train_config
    from dpo_doctor.hub import resolve_model_path
    from dpo_doctor.trainlog import detect_framework, load_train_log

    clock = clock or StageClock()
    with clock("discovery"):
        run_dir = resolve_model_path(cfg.run_dir, "RUN_DIR")
        settings = run_train_config(run_dir)
    with clock("data"):
        log = load_train_log(run_dir, cfg.log)
    train_log = log.frame
    if train_log is None:
        why = f" ({log.warnings[0]})" if log.warnings else ""
        raise UserError(f"{run_dir}: no trainer_state.json or other training log to read{why}, and no --data given; pass --data PAIRS (and --ref "
                        "REF) to score the checkpoints, or --log PATH to name the log")
    train_config, warnings = settings.values, list(log.warnings) + list(settings.warnings)
    if settings.values.get("reference_free") is True or str(train_config.get("loss_type")) in REFERENCE_FREE:
        warnings.append(f"reference-free run ({train_config.get('loss_type') or 'reference_free=True'}): its loss "
                        "has no fixed value at zero margin, so DPO201 judges it by the logged margins alone")
    beta, beta_source = resolve_beta(cfg, train_config, settings.source)
    with clock("metrics_rules"):
        facts = run_facts([], {}, {}, None, beta, train_config.get("loss_type"), train_log, False, log_only=True)
        diagnosis = run_diagnosis(facts, cfg)
    report = rep.build_report(
        run=rep.RunInfo(name=run_dir.resolve().name, path=str(run_dir.resolve()), beta=beta, beta_source=beta_source,
                        loss_type=train_config.get("loss_type"), framework=detect_framework(train_log, run_dir)),
        reference=None, data=None, settings={"log_only": True}, checkpoints=[], metric_info={},
        train_log=rep.TrainLogInfo.of(log),
        warnings=warnings + beta_warning(beta_source) + [
            "log-only verdict: no --data given, so no checkpoint was scored; the diagnoses below come from the "
            "training curves alone"],
        diagnosis=with_beta_caveat(diagnosis, beta_source), log_only=True, timings=clock.to_dict())
    out = out_dir(cfg)
    rep.write_report(out, report, {"pairs": None, "pair_texts": None, "samples": None, "train_log": train_log})
    return out


def loss_notes(train_config: dict) -> list[str]:
    """Where the run's loss makes TRL's logged numbers differ from the rewards scored here (beta x summed log-ratio,
    which TRL logs for every loss_type)."""
    notes = []
    if isinstance(train_config.get("ld_alpha"), (int, float)) and not isinstance(train_config["ld_alpha"], bool):
        notes.append(f"the run used ld_alpha={train_config['ld_alpha']:g} (LD-DPO): TRL's logged rewards and logps "
                     "down-weight tokens past the shorter response; the rewards here sum every token, so they differ "
                     "from the trainer's log")
    return notes


REFERENCE_FREE = {"simpo": "SimPO", "orpo": "ORPO", "cpo": "CPO"}


def refuse_reference_free(run_dir: Path, train_config: dict, source: str | None) -> None:
    """SimPO, ORPO, CPO (or reference_free=True) train without a reference: a reward of beta x log(pi / pi_ref) is
    not what they optimised, so a scored scan would measure the wrong thing. One line, exit 2."""
    loss = str(train_config.get("loss_type") or "")
    named = [REFERENCE_FREE[p] for p in loss.split("+") if p in REFERENCE_FREE]
    if not named and train_config.get("reference_free") is not True:
        return
    what = named[0] if named else "reference_free=True"
    raise UserError(f"{run_dir} was trained with {what} (from {source or 'the run config'}), which has no reference "
                    "model: its rewards are not beta x log(pi/pi_ref), so scoring checkpoints against a reference "
                    "would measure something it never optimised; run `dpo-doctor scan` without --data for a "
                    "diagnosis from the training log alone")


def tokenizer_dir(spec) -> Path:
    """Adapters often carry no tokenizer: use their base's."""
    from dpo_doctor.weights import has_tokenizer

    return spec.path if has_tokenizer(spec.path) or spec.base is None else Path(spec.base)


DEFAULT_BETA_SOURCE = "default 0.1"  # TRL's default, used when neither --beta nor the run names a beta


def resolve_beta(cfg: ScanConfig, train_config: dict, source: str | None = None) -> tuple[float, str]:
    """beta and where it came from: "--beta", the run's settings file (runconfig.py), or "default 0.1"."""
    if cfg.beta is not None:
        return cfg.beta, "--beta"
    beta = train_config.get("beta")
    if isinstance(beta, (int, float)) and not isinstance(beta, bool) and beta > 0:
        return float(beta), source or "run config"
    return 0.1, DEFAULT_BETA_SOURCE


BETA_CAVEAT = ("beta was not found in the run's files, so rewards are scored at TRL's default 0.1 (they scale with "
               "beta): pass --beta")


def beta_warning(beta_source: str) -> list[str]:
    """The defaulted-beta warning, only when neither --beta nor the run gave one."""
    return [BETA_CAVEAT] if beta_source == DEFAULT_BETA_SOURCE else []


def with_beta_caveat(diagnosis: dict, beta_source: str) -> dict:
    """The verdict line (summary) says when beta was defaulted, not only the warnings list."""
    if beta_source != DEFAULT_BETA_SOURCE:
        return diagnosis
    summary = str(diagnosis.get("summary") or "").rstrip(". ")
    return {**diagnosis, "summary": f"{summary}. Caveat: {BETA_CAVEAT}." if summary else f"Caveat: {BETA_CAVEAT}."}


def sanity_checks(long: pl.DataFrame | None, records: list) -> list[str]:
    """Problems real users hit: a checkpoint identical to the reference, NaN/Inf scores."""
    found = []
    for r in records:
        rows = long.filter(pl.col("checkpoint") == r.name)
        if not np.isfinite(rows["logp_chosen"].to_numpy()).all() or not np.isfinite(rows["logp_rejected"].to_numpy()).all():
            found.append(f"{r.name}: NaN/Inf log-probs (numerical instability in the weights or the forward pass)")
        elif (rows["logp_chosen"] == rows["ref_logp_chosen"]).all() and (rows["logp_rejected"] == rows["ref_logp_rejected"]).all():
            found.append(f"{r.name} scores exactly like the reference: nothing was trained (or --ref is this checkpoint)")
    return found


def run_facts(records, reference_metrics, stats, n_pairs, beta, loss_type, train_log, data_is_eval,
              log_only: bool = False, reference_per_prompt=None, quality=None):
    """The rules' input, built from the typed records (rules never see raw rows); the same RunFacts that
    `rules.facts_from_report` reads back from a saved report.json."""
    from types import MappingProxyType

    from dpo_doctor.rules import CheckpointFacts, RunFacts

    def scores(per_prompt) -> MappingProxyType:
        return MappingProxyType({k: tuple(v) for k, v in (per_prompt or {}).items()})

    ckpts = tuple(sorted((CheckpointFacts(r.name, r.step, MappingProxyType(dict(r.metrics)),
                                          scores(getattr(r, "per_prompt", None))) for r in records),
                         key=lambda c: c.step))
    return RunFacts(checkpoints=ckpts, reference_metrics=MappingProxyType(dict(reference_metrics)),
                    data_stats=MappingProxyType(dict(stats)), beta=beta, loss_type=loss_type, train_log=train_log,
                    log_only=log_only or not ckpts, n_pairs=n_pairs, data_is_eval=data_is_eval,
                    reference_per_prompt=scores(reference_per_prompt), quality=MappingProxyType(dict(quality or {})))


def run_diagnosis(facts, cfg: ScanConfig) -> dict:
    """The rule catalogue over the finished metrics, and the checkpoint to ship."""
    from dpo_doctor.rules import parse_settings, run_rules, verdict_record
    from dpo_doctor.rules.best import choose_best

    diagnoses = run_rules(facts, select=set(cfg.select) or None, ignore=set(cfg.ignore) or None,
                          overrides=parse_settings(cfg.rule_settings))
    record = verdict_record(diagnoses, facts)
    return {"diagnoses": [d.to_dict() for d in diagnoses], "verdict": record["verdict"], "summary": record["text"],
            "verdict_record": record,
            "log_only": facts.log_only, "best_checkpoint": choose_best(facts, diagnoses)}
