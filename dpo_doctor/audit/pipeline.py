"""`dpo-doctor data`: the data audit, in one direction.

check flags -> read the pairs with the one reader (tokenized as `scan` does when a tokenizer is known) -> the pair
table -> the no-model statistics (`metrics.data_audit`, shared with `scan`) -> with --ref one forward pass per
answer through the engine (reference log-probs and summed hidden states: CHES) -> the data rules (DPO3xx) ->
report.json (kind data_audit), audit_pairs.parquet, pair_texts.parquet, filter_ids.jsonl. Never renders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import polars as pl

from dpo_doctor import report as rep
from dpo_doctor.audit import table
from dpo_doctor.audit.config import AuditConfig, audit_out_dir, check_audit_config
from dpo_doctor.files import write_atomic

ProgressFn = Callable[[str, int, int], None]
# filter_ids.jsonl: per-pair flag -> the reason written for it (pairs a user may want to drop before training)
FILTER_REASONS = {"exact_duplicate": "duplicate", "near_duplicate": "near_duplicate", "contradiction": "contradiction",
                  "empty_answer": "empty_answer", "identical": "identical", "over_max_length": "over_max_length",
                  "dropped": "dropped", "min_edit": "min_edit", "displacement_risk": "displacement_risk",
                  "canned_chosen": "canned_chosen"}


@dataclass(frozen=True)
class Loaded:
    """The pairs as the audit reads them: the table, the tokens the trainer would see, what to report about them."""

    frame: pl.DataFrame
    texts: list[tuple[str, str, str]]
    trained: list[Any] | None  # truncated PairTokens (None = dropped) when a tokenizer is known
    info: rep.DataInfo
    unit: str  # "tokens" or "words"
    warnings: list[str]


def _tokenizer(cfg: AuditConfig, warnings: list[str]):
    """(tokenizer or None, the reference's ModelSpec or None): --tokenizer wins, else --ref's own tokenizer."""
    from dpo_doctor import discover as disc
    from dpo_doctor.hub import resolve_model_path

    spec = None
    if cfg.ref is not None:
        spec = disc.model_spec(resolve_model_path(cfg.ref, "--ref"), None, None)
    source = resolve_model_path(cfg.tokenizer, "--tokenizer") if cfg.tokenizer is not None else None
    if source is None and spec is not None:
        source = spec.path if disc.has_tokenizer(spec.path) or spec.base is None else Path(spec.base)
    if source is None:
        return None, None  # no model, no torch import: the no-model audit stays light
    from dpo_doctor.engine.loading import load_tokenizer

    tok, notes = load_tokenizer(source, trust_remote_code=cfg.trust_remote_code)
    warnings += notes
    return tok, spec


def _info(path: Path, fmt: str, n: int, n_rows: int, n_identical: int, n_dropped: int, cfg: AuditConfig) -> rep.DataInfo:
    return rep.DataInfo(path=str(path), format=fmt, n_pairs=n, n_source_rows=n_rows, n_excluded=n_identical,
                        n_dropped_too_long=n_dropped, max_length=cfg.max_length)


def load(cfg: AuditConfig, tokenizer) -> Loaded:
    """Read the pairs with the public reader functions `scan` uses (`data.pairs`), never a copy of them."""
    from dpo_doctor.data.pairs import load_pairs, read_normalized, render, subset_indices, truncate

    path = Path(cfg.data)
    if tokenizer is not None:  # untruncated first (to measure truncation), then cut exactly as the trainer cuts
        pairs = load_pairs(path, tokenizer, max_length=None, max_pairs=cfg.max_pairs, seed=cfg.seed)
        trained = [truncate(t, cfg.max_length) for t in pairs.tokens]
        conv = pairs.format.startswith("conversational")
        frame = table.from_tokens(pairs.pair_ids, pairs.texts, conv, pairs.tokens, trained, pairs.identical)
        dropped = sum(t is None for t in trained)
        info = _info(path, pairs.format, len(pairs.tokens), pairs.n_source_rows, sum(pairs.identical), dropped, cfg)
        return Loaded(frame, list(pairs.texts), trained, info, "tokens", list(pairs.warnings))
    data = read_normalized(path, chat=False)  # every layout scan reads (TRL, LLaMA-Factory, OpenRLHF, ...)
    fmt, triples = data.format, list(data.triples)
    keep = subset_indices(len(triples), cfg.max_pairs, cfg.seed)
    texts = [tuple(render(v) for v in triples[i]) for i in keep]
    identical = [triples[i][1] == triples[i][2] for i in keep]
    frame = table.from_words(keep, texts, fmt.startswith("conversational"), identical, cfg.max_length)
    info = _info(path, fmt, len(keep), len(triples), sum(identical), int(frame["dropped"].sum()), cfg)
    return Loaded(frame, texts, None, info, "words", list(data.warnings))


def reference_pass(cfg: AuditConfig, spec, tokenizer, loaded: Loaded, progress: ProgressFn | None
                   ) -> tuple[dict[str, float | None], pl.DataFrame]:
    """The reference's log-probs and CHES for every trained pair: one forward pass per answer (engine)."""
    import torch
    from transformers.utils import logging as hf_logging

    from dpo_doctor.engine.devices import pad_id, resolve_device, resolve_dtype
    from dpo_doctor.engine.loading import check_token_range, load_model
    from dpo_doctor.engine.pairs import HiddenSums, PairScores, score_pairs
    from dpo_doctor.metrics import data_reference

    hf_logging.disable_progress_bar()  # our own progress instead of a tqdm bar per weight load
    rows = [i for i, t in enumerate(loaded.trained) if t is not None]
    tokens = [loaded.trained[i] for i in rows]
    device = resolve_device(cfg.device)
    top = max((max((*t.prompt_ids, *t.chosen_ids, *t.rejected_ids), default=0) for t in tokens), default=0)
    model = load_model(spec, device, resolve_dtype(cfg.dtype, device), trust_remote_code=cfg.trust_remote_code)
    check_token_range(model, tokenizer, top, str(spec.path))
    width = int(model.get_output_embeddings().weight.shape[1])
    scores, hidden = PairScores.empty(len(tokens)), HiddenSums.empty(len(tokens), width)
    done, total = [0], 2 * len(tokens)

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress("reference: log-probs and hidden states", done[0], total)

    budget, max_rows = (None, 256) if cfg.batch_size == "auto" else (10**9, 2 * int(cfg.batch_size))
    with torch.inference_mode():
        score_pairs(model, tokens, pad_id(tokenizer), device, scores, token_budget=budget, max_rows=max_rows,
                    progress=tick, hidden=hidden)
    identical = loaded.frame["excluded"].to_numpy()[rows]
    stats, cols = data_reference.compute(scores.logp_chosen, scores.logp_rejected, scores.len_chosen,
                                         scores.len_rejected, hidden.chosen, hidden.rejected, identical)
    ids = loaded.frame["pair_id"].to_numpy()[rows]
    return stats, pl.DataFrame({"pair_id": ids, **cols})


def filter_rows(pairs: pl.DataFrame, canned_min_prompts: float) -> list[dict]:
    """filter_ids.jsonl's rows: every pair with at least one reason to drop it, and its reasons."""
    flags = pairs.with_columns(canned_chosen=pl.col("chosen_cluster_prompts") >= canned_min_prompts)
    present = [k for k in FILTER_REASONS if k in flags.columns]
    out = []
    for row in flags.select("pair_id", *present).iter_rows(named=True):
        reasons = [FILTER_REASONS[k] for k in present if row[k]]
        if reasons:
            out.append({"pair_id": int(row["pair_id"]), "reasons": reasons})
    return out


def diagnose(stats: dict, n_pairs: int, cfg: AuditConfig) -> dict:
    from types import MappingProxyType

    from dpo_doctor.rules import parse_settings, run_rules, verdict_of
    from dpo_doctor.rules.records import RunFacts

    facts = RunFacts(checkpoints=(), data_stats=MappingProxyType(dict(stats)), n_pairs=n_pairs, data_audit=True)
    found = run_rules(facts, select=set(cfg.select) or None, ignore=set(cfg.ignore) or None,
                      overrides=parse_settings(cfg.rule_settings))
    verdict, summary = verdict_of(found)
    if verdict == "healthy" and not found:
        summary = "No known risk found in the preference data."
    return {"diagnoses": [d.to_dict() for d in found], "verdict": verdict, "summary": summary}


def canned_threshold(stats: dict) -> float:
    """Prompts a chosen-answer cluster must serve to count as canned: DPO303's thresholds."""
    from dpo_doctor.rules import RULES

    params = RULES["DPO303"].params
    return max(params["min_prompts"], params["max_top_prompt_share"] * (stats.get("data/n_prompts") or 0))


def run_audit(cfg: AuditConfig, progress: ProgressFn | None = None) -> Path:
    """The whole audit; writes the report folder and returns it."""
    from dpo_doctor.metrics import data_audit, data_reference

    start = time.perf_counter()
    check_audit_config(cfg)
    warnings: list[str] = []
    tokenizer, spec = _tokenizer(cfg, warnings)
    if progress:
        progress("reading pairs", 0, 1)
    loaded = load(cfg, tokenizer)
    warnings += loaded.warnings
    audit = data_audit.compute(loaded.frame, cfg.max_length, progress)
    stats, pairs = dict(audit.stats), audit.pairs
    info = {k: v.to_dict() for k, v in data_audit.info().items()}
    if spec is not None:
        ref_stats, ref_cols = reference_pass(cfg, spec, tokenizer, loaded, progress)
        stats.update(ref_stats)
        pairs = pairs.join(ref_cols, on="pair_id", how="left")
        info.update({k: v.to_dict() for k, v in data_reference.INFO.items()})
    if cfg.max_length is not None and loaded.unit == "words":
        warnings.append(f"no tokenizer given: lengths and --max-length={cfg.max_length} are counted in whitespace "
                        "words (a lower bound on tokens); pass --ref or --tokenizer for the model's tokens")
    out = audit_out_dir(cfg)
    filters = filter_rows(pairs, canned_threshold(stats))
    write_atomic(out / "filter_ids.jsonl", "".join(json.dumps(r) + "\n" for r in filters))
    by_reason: dict[str, int] = {}
    for r in filters:
        for reason in r["reasons"]:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    reference = None if spec is None else rep.ReferenceInfo(
        path=str(spec.path), kind=spec.kind, base=str(spec.base) if spec.base else None, source="cli")
    settings = {"length_unit": loaded.unit, "tokenizer": getattr(tokenizer, "name_or_path", None),
                "max_pairs": cfg.max_pairs, "seed": cfg.seed, "max_length": cfg.max_length,
                "wall_s": round(time.perf_counter() - start, 3)}
    audit_section = {"filter": {"file": "filter_ids.jsonl", "n_pairs": len(filters), "by_reason": by_reason},
                     "length_unit": loaded.unit}
    report = rep.build_data_audit_report(
        data=rep.DataInfo(**{**loaded.info.__dict__, "stats": stats}), reference=reference, settings=settings,
        metric_info=info, warnings=warnings, diagnosis=diagnose(stats, loaded.info.n_pairs, cfg), audit=audit_section)
    texts = pl.DataFrame({"pair_id": loaded.frame["pair_id"], "prompt": [t[0] for t in loaded.texts],
                          "chosen": [t[1] for t in loaded.texts], "rejected": [t[2] for t in loaded.texts]})
    rep.write_report(out, report, {"audit_pairs": pairs, "pair_texts": texts})
    return out

