"""The generation-probe stage of a scan: what each checkpoint actually says.

Samples from the reference and every checkpoint on the same prompts (seeded), scores each sample under the
policy and the reference (exact KL, k1/k3, entropy), measures drift on the pair texts, then turns the samples
table into `gen/*` metrics. Scored samples are cached per (policy, reference, prompts, settings), so a re-scan
loads them instead of generating again.

Under torchrun every rank samples and scores its shard of the prompts (prompt i on rank i % world; a sample's
randomness depends on its prompt and sample index only, so the shards are the single-process samples), the
shards are gathered into the full table on every rank, and drift on data sums its batches over ranks. Only rank
0 writes the cache; a table any rank finds in its cache is sent to the others (each machine may have its own).
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
DEFAULT_SUITE = "default"  # the capability suite a scan runs unless --no-quality, --probe-suite or --judge


def _pair_prompts(pairs) -> list:
    unique, seen = [], set()
    for p in pairs.prompts:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _prompts(cfg, pairs, suite) -> list:
    """The run's own probe prompts: --prompts, else a prompt-only --probe-suite, else the held-out pairs' prompts
    (deduplicated, in file order). A verifiable suite is sampled apart (`quality_suite`), never instead of them."""
    from dpo_doctor.data.prompts import resolve_prompts

    spec = suite if suite is not None and not suite.verifiable else None
    found = resolve_prompts(cfg.prompts, spec, _pair_prompts(pairs), conversational=pairs.format.startswith("conv"))
    return list(found)[: cfg.max_prompts]


def quality_suite(cfg, given=None):
    """(suite, is_default) of the verifiable suite a scan grades answers on, or (None, False): the user's
    --probe-suite when it has answers (`given`: already read by the pipeline), else the shipped `default` suite
    unless --no-quality or --judge."""
    from dpo_doctor.data.suites import load_suite

    if cfg.probe_suite is not None:
        suite = given if given is not None else load_suite(cfg.probe_suite)
        return (suite, False) if suite.verifiable else (None, False)
    if not cfg.quality or cfg.judge is not None:
        return None, False
    return load_suite(DEFAULT_SUITE), True


@dataclass(frozen=True)
class PromptSet:
    """One set of prompts the stage samples: the run's own ("run") or the capability suite's ("suite")."""
    label: str
    prompts: tuple
    prompt_ids: tuple
    texts: tuple
    fingerprint: str


@dataclass(frozen=True)
class ProbeResult:
    """What the probes add to a scan: per-checkpoint `gen/*` (+ `task/*`) metrics, the reference's, the samples
    table, and each model's per-prompt quality scores (checkpoint name or "reference" -> key -> [score by id])."""

    metrics: dict[str, dict[str, float | None]]  # checkpoint name -> gen/* and drift metrics
    reference_metrics: dict[str, float | None]
    samples: pl.DataFrame
    info: dict  # metric name -> MetricInfo dict (for report.json's metric_info)
    per_prompt: dict = None  # name -> {"task/accuracy" | "judge/win_rate": [score or None per prompt id]}
    quality: dict = None  # what was graded: suite name, default or not, informative, reference score, chance


class GenerationStage:
    """Driven by `scan`: start(reference) once, checkpoint(...) per checkpoint, finish(beta) for the metrics."""

    def __init__(self, ctx, progress=None, suite=None):
        """`suite`: the --probe-suite, already read by the pipeline (None: none given)."""
        from dpo_doctor.engine.generate import GenConfig

        cfg = ctx.cfg
        self.ctx, self.dist, self.progress = ctx, ctx.dist, progress
        self.suite, self.default_suite = quality_suite(cfg, suite)
        self.gen = GenConfig(samples_per_prompt=cfg.samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                             seed=cfg.seed)
        conversational = ctx.pairs.format.startswith("conv")
        self.run_set = self._set("run", _prompts(cfg, ctx.pairs, suite))
        self.suite_set = None
        self.answers = None  # prompt_id -> (answer, check, tolerance) of the suite
        if self.suite is not None:
            from dpo_doctor.data.prompts import as_messages

            prompts = list(self.suite.prompts)
            self.suite_set = self._set("suite", as_messages(prompts) if conversational else prompts)
            self.answers = self.suite.answers
        self.suite_active = self.suite_set is not None  # False once the reference shows the default suite is mute
        self.frames: dict[str, pl.DataFrame] = {}
        self.suite_frames: dict[str, pl.DataFrame] = {}
        self.data_kl: dict[str, float] = {}
        self.ref_model = None
        self.judge = None
        self.ref_fp = ""
        self.informative: dict = {}

    @property
    def prompts(self) -> list:
        return list(self.run_set.prompts)

    def _set(self, label: str, prompts: list) -> PromptSet:
        from dpo_doctor.data.pairs import render
        from dpo_doctor.data.tokens import encode_prompts

        prompt_fp = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()
        fp = hashlib.sha256(json.dumps([prompt_fp, self.gen.fingerprint(), str(self.ctx.dtype),
                                        self.ctx.device.type, self.ctx.pairs_fp]).encode()).hexdigest()
        return PromptSet(label, tuple(prompts), tuple(encode_prompts(self.ctx.tokenizer, prompts)),
                         tuple(render(p) for p in prompts), fp)

    # ---- cache ----
    def _cache_path(self, model_fp: str, pset: PromptSet) -> Path:
        # gen-v2: samples tables gained the `finished` column (gen/truncated_frac); v1 entries are not mixed in
        key = hashlib.sha256(f"gen-v2|{model_fp}|{self.ref_fp}|{pset.fingerprint}".encode()).hexdigest()[:32]
        return self.ctx.cache.dir.parent / "samples" / f"{key}.parquet"

    def _load_cached(self, model_fp: str, pset: PromptSet):
        """(samples table, drift on data) from the cache, or None. Under torchrun a table any rank finds is sent
        to every rank (rank 0 keeps a copy), so all ranks sample or none does (see distributed.share_hit)."""
        frame = self._read_cache(model_fp, pset)
        if self.dist.active:
            buf = io.BytesIO()
            if frame is not None:
                frame.write_ipc(buf)
            shared = distributed.share_hit(buf.getvalue() if frame is not None else None, self.dist)
            if shared is not None and frame is None:
                frame = pl.read_ipc(io.BytesIO(shared))
                if self.dist.is_main:
                    self._write_cache(model_fp, pset, frame)
        if frame is None:
            return None
        return frame, float(frame["data_kl_per_token"][0]) if "data_kl_per_token" in frame.columns else None

    def _read_cache(self, model_fp: str, pset: PromptSet):
        path = self._cache_path(model_fp, pset)
        if not path.exists():
            return None
        try:
            return pl.read_parquet(path)
        except Exception:  # a damaged cache entry counts as missing: sampled again and replaced
            note = f"samples cache entry {path.name} was damaged; sampled again and replaced"
            self.ctx.cache.notes.append(note)
            return None

    def _save(self, model_fp: str, pset: PromptSet, frame: pl.DataFrame, data_kl: float | None) -> None:
        if self.dist.is_main:
            self._write_cache(model_fp, pset, frame.with_columns(data_kl_per_token=pl.lit(data_kl, pl.Float64)))

    def _write_cache(self, model_fp: str, pset: PromptSet, frame: pl.DataFrame) -> None:
        from dpo_doctor.files import atomic_path, ensure_dir

        path = self._cache_path(model_fp, pset)
        ensure_dir(path.parent, "cache folder")
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)

    # ---- stages ----
    def _ensure_ref(self):
        if self.ref_model is None:
            self.ref_model = self.ctx.load(self.ref_spec, "reference")
        return self.ref_model

    def _run(self, name: str, step: int, model, pset: PromptSet):
        from dpo_doctor.engine.generate import sample, samples_frame, score_samples

        mine = distributed.owned(len(pset.prompts), self.dist) if self.dist.active else None
        what = f"sampling {name}" + (" (quality suite)" if pset.label == "suite" else "")
        tick = (lambda done, total: self.progress(what, done, total)) \
            if self.progress is not None and self.dist.is_main else None
        with self.ctx.clock("sampling", name):
            samples = sample(model, self.ctx.tokenizer, list(pset.prompt_ids), self.gen, self.ctx.device, only=mine,
                             progress=tick)
        with self.ctx.clock("kl_scoring", name):
            scored = score_samples(model, self.ref_model, samples, self.ctx.tokenizer, self.gen, self.ctx.device)
        frame = samples_frame(name, step, list(pset.texts), scored)
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

    def _sampled(self, fp: str, name: str, step: int, model, pset: PromptSet, data_kl: bool):
        """(samples, data KL) of one model on one prompt set, from the cache or sampled now; (frame, kl, model)."""
        with self.ctx.clock("cache", name):
            cached = self._load_cached(fp, pset)
        if cached is None:
            if model is None:
                model = self._ensure_ref() if name == "reference" else self.ctx.load(self._spec[name], name)
            self._ensure_ref()
            frame = self._run(name, step, model, pset)
            with self.ctx.clock("kl_scoring", name):
                cached = (frame, self._data_kl(model) if data_kl else 0.0)
            with self.ctx.clock("cache", name):
                self._save(fp, pset, *cached)
        return cached[0], cached[1], model

    def start(self, ref_spec, ref_model) -> None:
        """Sample the reference (its own scores: KL 0) on the run's prompts and the quality suite; the default
        suite is dropped here when the reference itself does not score above chance on it (then no checkpoint
        samples it). Keeps the reference loaded for the checkpoints."""
        from dpo_doctor.engine.loading import weights_fingerprint
        from dpo_doctor.metrics.task_accuracy import informativeness

        self.ref_model, self.ref_spec = ref_model, ref_spec
        self._spec = {"reference": ref_spec}
        self.ref_fp = weights_fingerprint(ref_spec)
        self.frames["reference"], _, _ = self._sampled(self.ref_fp, "reference", -1, self.ref_model, self.run_set,
                                                       False)
        if self.suite_set is not None:
            frame, _, _ = self._sampled(self.ref_fp, "reference", -1, self.ref_model, self.suite_set, False)
            self.suite_frames["reference"] = frame
            self.informative = informativeness(frame, self.answers)
            self.suite_active = not self.default_suite or bool(self.informative["task/informative"])

    def checkpoint(self, ckpt, model):
        """Sample one checkpoint and score its samples under it and the reference; returns the (maybe loaded) model."""
        from dpo_doctor.engine.loading import weights_fingerprint

        fp = weights_fingerprint(ckpt.spec)
        self._spec[ckpt.name] = ckpt.spec
        frame, data_kl, model = self._sampled(fp, ckpt.name, ckpt.step, model, self.run_set, True)
        self.frames[ckpt.name] = self._label(frame, ckpt)
        self.data_kl[ckpt.name] = data_kl
        if self.suite_active:
            frame, _, model = self._sampled(fp, ckpt.name, ckpt.step, model, self.suite_set, False)
            self.suite_frames[ckpt.name] = self._label(frame, ckpt)
        return model

    @staticmethod
    def _label(frame: pl.DataFrame, ckpt) -> pl.DataFrame:
        return frame.with_columns(checkpoint=pl.lit(ckpt.name), step=pl.lit(ckpt.step, pl.Int64)).drop(
            "data_kl_per_token", strict=False)

    def close(self) -> None:
        self.ref_model = None

    def finish(self, beta: float) -> ProbeResult:
        """The `gen/*` (+ `task/*`, `judge/*`) metrics of every checkpoint sampled, the reference's, the samples."""
        from dpo_doctor.metrics.generation import METRIC_INFO, generation_metrics

        vocab = len(self.ctx.tokenizer)
        ref = self.frames["reference"].drop("data_kl_per_token", strict=False)
        names = [n for n in self.frames if n != "reference"]
        per_prompt: dict[str, dict] = {}
        metrics = {}
        for n in names:
            judged, per_prompt[n] = self._judge(n, ref)
            metrics[n] = {**generation_metrics(self.frames[n], ref, beta, vocab),
                          "drift/kl_on_data_per_token": self.data_kl.get(n), **judged, **self._task(n, per_prompt[n])}
        ref_metrics = generation_metrics(ref, ref, beta, vocab)
        if self.suite_set is not None:
            per_prompt["reference"] = {}
            ref_metrics.update(self._task("reference", per_prompt["reference"]))
            ref_metrics.update(self.informative)
        n_run = len(self.run_set.prompts)
        run_frames = [ref] + [self.frames[n] for n in names]
        suite_frames = [f.drop("data_kl_per_token", strict=False).with_columns(pl.col("prompt_id") + n_run)
                        for f in self.suite_frames.values()]
        samples = pl.concat([f.with_columns(probe_set=pl.lit("run")) for f in run_frames]
                            + [f.with_columns(probe_set=pl.lit("suite")) for f in suite_frames],
                            how="diagonal_relaxed")  # judge_win: policy only
        return ProbeResult(metrics=metrics, reference_metrics=ref_metrics, samples=samples, info=dict(METRIC_INFO),
                           per_prompt=per_prompt, quality=self._quality(ref_metrics))

    def _task(self, name: str, per_prompt: dict) -> dict:
        """task/* of one model on the quality suite (paired with the reference's samples), and its per-prompt
        scores into `per_prompt`; {} when the suite was not sampled for it."""
        from dpo_doctor.metrics.task_accuracy import per_prompt as scores, task_metrics

        if name not in self.suite_frames:
            return {}
        ref = self.suite_frames["reference"]
        frame = self.suite_frames[name]
        per_prompt["task/accuracy"] = scores(frame, self.answers)
        return task_metrics(frame, ref if name != "reference" else frame, self.answers)

    def _quality(self, ref_metrics: dict) -> dict:
        """settings["quality"]: which answer-quality signal the scan measured, for the verdict record."""
        if self.ctx.cfg.judge is not None:
            return {"signal": "judge/win_rate", "suite": None, "default_suite": False, "informative": True}
        if self.suite is None:
            return {"signal": None, "suite": None, "default_suite": False, "informative": None,
                    "why": "--no-quality" if not self.ctx.cfg.quality else "no verifiable suite"}
        return {"signal": "task/accuracy" if self.suite_active else None, "suite": self.suite.name,
                "default_suite": self.default_suite, "n_prompts": len(self.suite.prompts),
                "informative": bool(ref_metrics.get("task/informative")),
                "reference_accuracy": ref_metrics.get("task/accuracy"), "chance": ref_metrics.get("task/chance")}

    def _judge(self, name: str, ref: pl.DataFrame) -> tuple[dict, dict]:
        """`judge/*`: the --judge's win rate of this checkpoint's answers over the reference's, prompt by prompt,
        and the per-prompt win shares ({"judge/win_rate": [...]})."""
        if self.ctx.cfg.judge is None:
            return {}, {}
        from dpo_doctor.engine.judge import load_judge
        from dpo_doctor.metrics.judge_win import judge_metrics, judge_wins, rate_of_wins

        if self.judge is None:
            self.judge = load_judge(self.ctx.cfg.judge, self.ctx.device, trust_remote_code=self.ctx.cfg.trust_remote_code)
        wins = judge_wins(self.judge, self.frames[name], ref)  # per answer: kept for paired comparisons (compare)
        self.frames[name] = self.frames[name].join(wins, on=["prompt_id", "sample_idx"], how="left")
        shares: list[float | None] = [None] * len(self.run_set.prompts)
        for pid, share in wins.group_by("prompt_id").agg(pl.col("judge_win").mean()).iter_rows():
            if 0 <= pid < len(shares):
                shares[int(pid)] = float(share)
        return judge_metrics(rate_of_wins(wins)), {"judge/win_rate": shares}
