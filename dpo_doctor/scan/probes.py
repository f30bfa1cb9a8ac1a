"""The generation-probe stage of a scan: what each checkpoint actually says.

Samples from the reference and every checkpoint on the same prompts (seeded), scores each sample under the
policy and the reference (exact KL, k1/k3, entropy), measures drift on the pair texts, then turns the samples
table into `gen/*` metrics. Scored samples are cached per (policy, reference, prompts, settings), so a re-scan
loads them instead of generating again.

Under torchrun every rank samples and scores its shard of the prompts (prompt i on rank i % world; a sample's
randomness depends on its prompt and sample index only, so the shards are the single-process samples), the
shards are gathered into the full table on every rank, and drift on data sums its batches over ranks. Only rank
0 writes the cache; a cached table is used only when every rank finds it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dpo_doctor.engine import distributed

DATA_KL_PAIRS = 64  # pairs used for "drift on data" (exact per-token KL on the pair texts)


def _prompts(cfg, pairs, suite) -> list:
    """--prompts, else --probe-suite, else the held-out pairs' prompts (deduplicated, in file order)."""
    from dpo_doctor.data.prompts import resolve_prompts

    unique, seen = [], set()
    for p in pairs.prompts:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    found = resolve_prompts(cfg.prompts, suite, unique, conversational=pairs.format.startswith("conv"))
    return list(found)[: cfg.max_prompts]


@dataclass(frozen=True)
class ProbeResult:
    """What the probes add to a scan: per-checkpoint `gen/*` metrics, the reference's, the samples table."""

    metrics: dict[str, dict[str, float | None]]  # checkpoint name -> gen/* and drift metrics
    reference_metrics: dict[str, float | None]
    samples: pl.DataFrame
    info: dict  # metric name -> MetricInfo dict (for report.json's metric_info)


class GenerationStage:
    """Driven by `scan`: start(reference) once, checkpoint(...) per checkpoint, finish(beta) for the metrics."""

    def __init__(self, ctx, progress=None, suite=None):
        """`suite`: the --probe-suite, already read by the pipeline (None: --prompts or the pairs' prompts)."""
        from dpo_doctor.data.pairs import render
        from dpo_doctor.data.tokens import encode_prompts
        from dpo_doctor.engine.generate import GenConfig

        cfg = ctx.cfg
        self.ctx, self.dist, self.progress = ctx, ctx.dist, progress
        self.prompts = _prompts(cfg, ctx.pairs, suite)
        self.answers = suite.answers if suite is not None and suite.verifiable else None  # prompt_id -> (answer, check)
        self.prompt_ids = encode_prompts(ctx.tokenizer, self.prompts)
        self.prompt_texts = [render(p) for p in self.prompts]
        self.gen = GenConfig(samples_per_prompt=cfg.samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                             seed=cfg.seed)
        self.frames: dict[str, pl.DataFrame] = {}
        self.data_kl: dict[str, float] = {}
        self.ref_model = None
        self.judge = None
        self.ref_fp = ""
        prompt_fp = hashlib.sha256(json.dumps(self.prompts, sort_keys=True).encode()).hexdigest()
        self.settings_fp = hashlib.sha256(json.dumps([prompt_fp, self.gen.fingerprint(), str(ctx.dtype),
                                                      ctx.device.type, ctx.pairs_fp]).encode()).hexdigest()

    # ---- cache ----
    def _cache_path(self, model_fp: str) -> Path:
        # gen-v2: samples tables gained the `finished` column (gen/truncated_frac); v1 entries are not mixed in
        key = hashlib.sha256(f"gen-v2|{model_fp}|{self.ref_fp}|{self.settings_fp}".encode()).hexdigest()[:32]
        return self.ctx.cache.dir.parent / "samples" / f"{key}.parquet"

    def _load_cached(self, model_fp: str):
        cached = self._read_cache(model_fp)
        return cached if distributed.all_true(cached is not None, self.dist) else None

    def _read_cache(self, model_fp: str):
        path = self._cache_path(model_fp)
        if not path.exists():
            return None
        try:
            frame = pl.read_parquet(path)
            return frame, float(frame["data_kl_per_token"][0]) if "data_kl_per_token" in frame.columns else None
        except Exception:  # a damaged cache entry counts as missing: sampled again and replaced
            note = f"samples cache entry {path.name} was damaged; sampled again and replaced"
            self.ctx.cache.notes.append(note)
            return None

    def _save(self, model_fp: str, frame: pl.DataFrame, data_kl: float | None) -> None:
        from dpo_doctor.files import atomic_path, ensure_dir

        if not self.dist.is_main:
            return
        path = self._cache_path(model_fp)
        ensure_dir(path.parent, "cache folder")
        with atomic_path(path) as tmp:
            frame.with_columns(data_kl_per_token=pl.lit(data_kl, pl.Float64)).write_parquet(tmp)

    # ---- stages ----
    def _ensure_ref(self):
        if self.ref_model is None:
            self.ref_model = self.ctx.load(self.ref_spec, "reference")
        return self.ref_model

    def _run(self, name: str, step: int, model):
        from dpo_doctor.engine.generate import sample, samples_frame, score_samples

        mine = distributed.owned(len(self.prompts), self.dist) if self.dist.active else None
        tick = (lambda done, total: self.progress(f"sampling {name}", done, total)) \
            if self.progress is not None and self.dist.is_main else None
        with self.ctx.clock("sampling", name):
            samples = sample(model, self.ctx.tokenizer, self.prompt_ids, self.gen, self.ctx.device, only=mine,
                             progress=tick)
        with self.ctx.clock("kl_scoring", name):
            scored = score_samples(model, self.ref_model, samples, self.ctx.tokenizer, self.gen, self.ctx.device)
        frame = samples_frame(name, step, self.prompt_texts, scored)
        if not self.dist.active:
            return frame
        buf = io.BytesIO()
        frame.write_ipc(buf)
        parts = [pl.read_ipc(io.BytesIO(b)) for b in distributed.gather_bytes(buf.getvalue(), self.dist)]
        return pl.concat(parts).sort("prompt_id", "sample_idx")

    def _data_kl(self, model) -> float:
        from dpo_doctor.engine.devices import pad_id
        from dpo_doctor.engine.generate import data_kl_sums
        from dpo_doctor.engine.logprobs import collate_pairs

        total, n = 0.0, 0
        tokens = self.ctx.pairs.tokens[:DATA_KL_PAIRS]
        pad = pad_id(self.ctx.tokenizer)
        starts = list(range(0, len(tokens), 8))
        for j in distributed.owned(len(starts), self.dist):
            batch = collate_pairs(tokens[starts[j]: starts[j] + 8], pad)
            t, k = data_kl_sums(model, self.ref_model, batch, self.gen.kl_vocab_chunk)
            total, n = total + t, n + k
        total, n = distributed.all_sum([total, float(n)], self.dist)
        return total / n if n else 0.0

    def start(self, ref_spec, ref_model) -> None:
        """Sample the reference (its own scores: KL 0). Keeps the reference loaded for the checkpoints."""
        from dpo_doctor.engine.loading import weights_fingerprint

        self.ref_model, self.ref_spec = ref_model, ref_spec
        with self.ctx.clock("cache", "reference"):
            self.ref_fp = weights_fingerprint(ref_spec)
            cached = self._load_cached(self.ref_fp)
        if cached is None:
            cached = (self._run("reference", -1, self._ensure_ref()), 0.0)
            with self.ctx.clock("cache", "reference"):
                self._save(self.ref_fp, *cached)
        self.frames["reference"] = cached[0]

    def checkpoint(self, ckpt, model):
        """Sample one checkpoint and score its samples under it and the reference; returns the (maybe loaded) model."""
        from dpo_doctor.engine.loading import weights_fingerprint

        with self.ctx.clock("cache", ckpt.name):
            fp = weights_fingerprint(ckpt.spec)
            cached = self._load_cached(fp)
        if cached is None:
            model = model if model is not None else self.ctx.load(ckpt.spec, ckpt.name)
            self._ensure_ref()
            frame = self._run(ckpt.name, ckpt.step, model)
            with self.ctx.clock("kl_scoring", ckpt.name):
                cached = (frame, self._data_kl(model))
            with self.ctx.clock("cache", ckpt.name):
                self._save(fp, *cached)
        frame = cached[0].with_columns(checkpoint=pl.lit(ckpt.name), step=pl.lit(ckpt.step, pl.Int64))
        self.frames[ckpt.name] = frame.drop("data_kl_per_token", strict=False)
        self.data_kl[ckpt.name] = cached[1]
        return model

    def close(self) -> None:
        self.ref_model = None

    def finish(self, beta: float) -> ProbeResult:
        """The `gen/*` metrics of every checkpoint sampled, the reference's, and the samples table."""
        from dpo_doctor.metrics.generation import METRIC_INFO, generation_metrics

        vocab = len(self.ctx.tokenizer)
        ref = self.frames["reference"].drop("data_kl_per_token", strict=False)
        names = [n for n in self.frames if n != "reference"]
        judged = {n: self._judge(n, ref) for n in names}
        with self.ctx.clock("metrics_rules"):
            metrics = {n: {**generation_metrics(self.frames[n], ref, beta, vocab, answers=self.answers),
                           "drift/kl_on_data_per_token": self.data_kl.get(n), **judged[n]} for n in names}
        samples = pl.concat([ref] + [self.frames[n] for n in names], how="diagonal_relaxed")  # judge_win: policy only
        return ProbeResult(metrics=metrics,
                           reference_metrics=generation_metrics(ref, ref, beta, vocab, answers=self.answers),
                           samples=samples, info=dict(METRIC_INFO))

    def _judge(self, name: str, ref: pl.DataFrame) -> dict:
        """`judge/*`: the --judge's win rate of this checkpoint's answers over the reference's, prompt by prompt."""
        if self.ctx.cfg.judge is None:
            return {}
        from dpo_doctor.engine.judge import load_judge
        from dpo_doctor.metrics.judge_win import judge_metrics, judge_wins, rate_of_wins

        with self.ctx.clock("judging", name):
            if self.judge is None:
                self.judge = load_judge(self.ctx.cfg.judge, self.ctx.device,
                                        trust_remote_code=self.ctx.cfg.trust_remote_code)
            wins = judge_wins(self.judge, self.frames[name], ref)  # per answer: kept for paired comparisons (compare)
        self.frames[name] = self.frames[name].join(wins, on=["prompt_id", "sample_idx"], how="left")
        return judge_metrics(rate_of_wins(wins))
