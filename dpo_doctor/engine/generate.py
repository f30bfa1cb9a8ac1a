"""Generation probes: sample from a model, then score the samples under the policy and the reference.

What a checkpoint actually says is only visible in its own samples (length growth, KL budget, collapse), so this
is the one place besides `pairs` that runs a model.

* `sample`: batched, KV-cached, left-padded sampling that stops at EOS. Randomness is per row: each
  (prompt, sample) draws its uniforms from its own generator seeded by (seed, prompt_id, sample_idx) and samples by
  inverse CDF, so a sample does not depend on batch size, batch order or which other rows are cached already.
* `score_samples`: summed log-probs under policy and reference, the EXACT per-token KL(pi || pi_ref) over the
  full vocabulary at each sampled position (Rao-Blackwellised sequence KL, literature section 7), the k1/k3
  estimators, mean policy entropy and top-k mass. Logits are only kept for completion positions
  (`logits_to_keep` on left-padded rows) and the vocabulary sums run in (rows x vocab) chunks.
* `data_kl_per_token`: the same exact KL on fixed pair texts ("drift on data", not the KL budget).

Token counting: `token_ids` are the generated tokens including the EOS that stopped the row; the answer
(`answer_ids`, `n_tokens`, `text`) excludes that EOS. KL, k1, k3, logp sum over all generated tokens (stopping is
a decision of the policy too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, NamedTuple, Sequence

import torch

from dpo_doctor.engine.compat import cache_kwargs, keep_kwargs, output_cache
from dpo_doctor.engine.devices import pad_id

TOPK = 10


@dataclass(frozen=True)
class GenConfig:
    """Generation probe settings. Sampled rows use temperature/top_p (1.0/1.0: unbiased for KL and diversity)."""

    samples_per_prompt: int = 4  # sampled completions per prompt
    max_new_tokens: int = 64  # tokens generated at most per completion (EOS included)
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = True  # also one greedy completion per prompt (for length)
    seed: int = 0
    batch_size: int = 16  # rows per generation / scoring batch
    kl_vocab_chunk: int = 8192  # vocabulary columns per chunk of the exact-KL sums

    def __post_init__(self):
        from dpo_doctor.errors import UserError

        checks = {"samples_per_prompt": self.samples_per_prompt >= 0, "max_new_tokens": self.max_new_tokens >= 1,
                  "temperature": self.temperature > 0, "top_p": 0 < self.top_p <= 1,
                  "batch_size": self.batch_size >= 1, "kl_vocab_chunk": self.kl_vocab_chunk >= 1}
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"generation setting {name}={getattr(self, name)!r} is out of range; use "
                                "samples_per_prompt >= 0, max_new_tokens >= 1, temperature > 0, 0 < top_p <= 1, "
                                "batch_size >= 1")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the samples (cache key). batch_size and kl_vocab_chunk are left out: each row
        draws from its own generator, so samples do not depend on batching, and chunking does not change sums
        beyond float rounding."""
        return {k: v for k, v in asdict(self).items() if k not in ("batch_size", "kl_vocab_chunk")}


@dataclass(frozen=True)
class Sample:
    """One completion. sample_idx: 0..S-1 sampled, S for the greedy row."""

    prompt_id: int
    sample_idx: int
    greedy: bool
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]  # generated tokens, the stopping EOS included
    finished: bool  # True if the row stopped at EOS (False: cut at max_new_tokens)
    text: str  # decoded answer, special tokens skipped

    @property
    def answer_ids(self) -> tuple[int, ...]:
        return self.token_ids[:-1] if self.finished else self.token_ids

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["prompt_ids"], row["token_ids"] = list(self.prompt_ids), list(self.token_ids)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Sample":
        return cls(int(row["prompt_id"]), int(row["sample_idx"]), bool(row["greedy"]),
                   tuple(int(t) for t in row["prompt_ids"]), tuple(int(t) for t in row["token_ids"]),
                   bool(row["finished"]), str(row["text"]))


@dataclass(frozen=True)
class ScoredSample:
    """A sample with its scores, all summed over generated tokens (nats) except entropy / topk_mass (means)."""

    sample: Sample
    logp: float
    ref_logp: float
    kl: float  # exact sum_t KL(pi(.|s_t) || pi_ref(.|s_t))
    kl_k1: float  # sum_t log pi(y_t) - log pi_ref(y_t)
    kl_k3: float  # sum_t (r_t - 1) - log r_t, r_t = pi_ref(y_t) / pi(y_t)
    entropy: float  # mean_t H(pi(.|s_t))
    topk_mass: float  # mean_t of the top-10 probability mass of pi(.|s_t)

    def to_row(self) -> dict[str, Any]:
        row = self.sample.to_row()
        row.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "sample"})
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ScoredSample":
        scores = {f.name: float(row[f.name]) for f in fields(cls) if f.name != "sample"}
        return cls(sample=Sample.from_row(row), **scores)


# ---- sampling ------------------------------------------------------------------------------------------------


def eos_ids(model, tokenizer) -> set[int]:
    """Every token that ends a completion: the tokenizer's EOS and the generation config's."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
    return ids


def _row_uniforms(seed: int, prompt_id: int, sample_idx: int, n: int) -> torch.Tensor:
    """(n,) uniforms of one row from its own generator: the row's randomness is independent of batching."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + prompt_id) * 1_009 + sample_idx)
    return torch.rand(n, generator=gen, dtype=torch.float64)


def _pick(logits: torch.Tensor, u: torch.Tensor, greedy: torch.Tensor, temperature: float,
          top_p: float) -> torch.Tensor:
    """Next token per row: argmax where greedy, else inverse-CDF sampling at temperature / top-p.

    logits (B, V), u (B,) uniforms in [0, 1), greedy (B,) bool -> (B,) int64."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # smallest prefix with mass >= top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    cdf = probs.double().cumsum(-1)  # (B, V)
    target = (u.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
    sampled = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)
    return torch.where(greedy.to(logits.device), logits.argmax(-1), sampled)


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def _forward(model, keep: int, **inputs):
    """model(**inputs) computing logits for the last `keep` positions only (`logits_to_keep`: the (B, T, V)
    logits of long prompts dominate memory); models without that argument compute all of them."""
    return model(**inputs, **keep_kwargs(model, keep))


@torch.inference_mode()
def _generate_batch(model, rows: list[tuple[int, int, bool, list[int]]], cfg: GenConfig, eos: set[int],
                    pad_id: int, device) -> list[tuple[list[int], bool]]:
    """KV-cached decoding of left-padded rows (prompt_id, sample_idx, greedy, prompt ids) until all hit EOS."""
    ids, mask = _left_pad([r[3] for r in rows], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    u = torch.stack([_row_uniforms(cfg.seed, p, s, cfg.max_new_tokens) for p, s, _, _ in rows])  # (B, N)
    greedy = torch.tensor([g for _, _, g, _ in rows])
    eos_t = torch.tensor(sorted(eos) or [-1], device=device)
    out = torch.full((len(rows), cfg.max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(len(rows), dtype=torch.bool, device=device)
    lengths = torch.full((len(rows),), cfg.max_new_tokens, dtype=torch.long, device=device)
    pos = (mask.cumsum(-1) - 1).clamp_(min=0)  # (B, T): positions ignore the left padding
    past, step_ids, step_pos = None, ids, pos
    for t in range(cfg.max_new_tokens):
        res = _forward(model, 1, input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                       use_cache=True, **cache_kwargs(model, past))
        past = output_cache(res)
        nxt = _pick(res.logits[:, -1], u[:, t].to(device), greedy, cfg.temperature, cfg.top_p)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out[:, t] = nxt
        hit = torch.isin(nxt, eos_t) & ~done
        lengths[hit] = t + 1
        done |= hit
        if bool(done.all()):
            break
        step_ids, step_pos = nxt.unsqueeze(-1), step_pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
    out, lengths, done = out.cpu(), lengths.cpu(), done.cpu()
    return [(out[i, : lengths[i]].tolist(), bool(done[i])) for i in range(len(rows))]


def sample(model, tokenizer, prompt_ids: Sequence[Sequence[int]], cfg: GenConfig, device,
           only: Sequence[int] | None = None, progress: Callable[[int, int], None] | None = None) -> list[Sample]:
    """samples_per_prompt sampled completions (+ one greedy) per prompt, ordered by (prompt_id, sample_idx).

    prompt_ids: each prompt already tokenized (`data.tokens.encode_prompts`: chat template for conversations).

    only: the prompt ids to sample (default all). A row's randomness depends on (seed, prompt_id, sample_idx)
    alone, so a shard of the prompts gets exactly the samples a full run gives them (distributed scans).
    Rows are sorted by prompt length before batching so left padding stays small."""
    device = torch.device(device)
    pad = pad_id(tokenizer)
    eos = eos_ids(model, tokenizer)
    ids = range(len(prompt_ids)) if only is None else only
    encoded = {p: list(prompt_ids[p]) for p in ids}
    n_rows = cfg.samples_per_prompt + int(cfg.greedy)
    rows = [(p, s, s == cfg.samples_per_prompt, encoded[p]) for p in ids for s in range(n_rows)]
    rows.sort(key=lambda r: len(r[3]))
    was_training = model.training
    model.eval()
    samples = []
    for start in range(0, len(rows), cfg.batch_size):
        batch = rows[start: start + cfg.batch_size]
        for (p, s, g, pids), (toks, fin) in zip(batch, _generate_batch(model, batch, cfg, eos, pad, device)):
            answer = toks[:-1] if fin else toks
            text = tokenizer.decode(answer, skip_special_tokens=True)
            samples.append(Sample(p, s, g, tuple(pids), tuple(toks), fin, text))
        if progress:
            progress(len(samples), len(rows))  # (rows sampled, rows in all)
    model.train(was_training)
    return sorted(samples, key=lambda x: (x.prompt_id, x.sample_idx))


# ---- exact KL, entropy, top-k mass over the vocabulary -------------------------------------------------------


class TokenStats(NamedTuple):
    """Per scored position (N,) float32: log-probs of the target under both models, exact KL, entropy, top-k."""

    logp: torch.Tensor
    ref_logp: torch.Tensor
    kl: torch.Tensor
    entropy: torch.Tensor
    topk_mass: torch.Tensor


def token_stats(logits: torch.Tensor, ref_logits: torch.Tensor, targets: torch.Tensor, vocab_chunk: int = 8192,
                row_chunk: int = 64) -> TokenStats:
    """Exact KL(pi || pi_ref), entropy H(pi), top-10 mass of pi and both target log-probs at each position.

    logits, ref_logits (N, V) in any float dtype, targets (N,). KL = sum_v p_v (log p_v - log q_v) is summed over
    vocabulary chunks of exp(lp) * (lp - lq), lp = x - logsumexp(x), in float32: no float32 copy larger than
    (row_chunk, vocab_chunk) besides the (row_chunk, V) logsumexp input."""
    parts: list[tuple[torch.Tensor, ...]] = []
    for x, y, t in zip(logits.split(row_chunk), ref_logits.split(row_chunk), targets.split(row_chunk)):
        lse_x = torch.logsumexp(x.float(), dim=-1, keepdim=True)  # (n, 1)
        lse_y = torch.logsumexp(y.float(), dim=-1, keepdim=True)
        kl = torch.zeros(x.shape[0], device=x.device)
        ent = torch.zeros(x.shape[0], device=x.device)
        for xc, yc in zip(x.split(vocab_chunk, dim=-1), y.split(vocab_chunk, dim=-1)):
            lp, lq = xc.float() - lse_x, yc.float() - lse_y  # (n, c)
            p = lp.exp()
            kl += (p * (lp - lq)).sum(-1)
            ent -= (p * lp).sum(-1)
        top = (x.topk(min(TOPK, x.shape[-1]), dim=-1).values.float() - lse_x).exp().sum(-1)
        logp = x.gather(-1, t[:, None]).float() - lse_x  # (n, 1)
        ref_logp = y.gather(-1, t[:, None]).float() - lse_y
        parts.append((logp[:, 0], ref_logp[:, 0], kl.clamp_(min=0.0), ent, top))  # KL >= 0; rounding gives -1e-9
    if not parts:
        empty = torch.zeros(0, device=logits.device)
        return TokenStats(empty, empty, empty, empty, empty)
    return TokenStats(*(torch.cat(cols) for cols in zip(*parts)))


def _forward_tail(model, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last `keep` positions of left-padded rows, positions counted from the first real token."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = _forward(model, keep, input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return out.logits[:, -keep:]


@torch.inference_mode()
def _score_batch(policy, reference, batch: list[Sample], pad_id: int, cfg: GenConfig, device) -> list[ScoredSample]:
    ids, mask = _left_pad([s.prompt_ids + s.token_ids for s in batch], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    n_max = max(len(s.token_ids) for s in batch)
    # the last n_max + 1 positions predict the last n_max tokens; drop the final one (it predicts past the end)
    x_all = _forward_tail(policy, ids, mask, n_max + 1)[:, :-1]  # (B, n_max, V)
    y_all = _forward_tail(reference, ids, mask, n_max + 1)[:, :-1]
    valid = torch.zeros((len(batch), n_max), dtype=torch.bool, device=ids.device)
    for i, s in enumerate(batch):
        valid[i, n_max - len(s.token_ids):] = True
    st = token_stats(x_all[valid], y_all[valid], ids[:, -n_max:][valid], cfg.kl_vocab_chunk)  # rows: (N,)
    log_r = (st.ref_logp - st.logp).double()  # log pi_ref/pi of the sampled token
    cols = [c.double().cpu() for c in (st.logp, st.ref_logp, st.kl, log_r.exp() - 1 - log_r, st.entropy,
                                       st.topk_mass)]
    out, start = [], 0
    for s in batch:
        lp, lq, kl, k3, ent, top = (c[start: start + len(s.token_ids)] for c in cols)
        start += len(s.token_ids)
        out.append(ScoredSample(s, float(lp.sum()), float(lq.sum()), float(kl.sum()), float((lp - lq).sum()),
                                float(k3.sum()), float(ent.mean()), float(top.mean())))
    return out


def score_samples(policy, reference, samples: Sequence[Sample], tokenizer, cfg: GenConfig,
                  device) -> list[ScoredSample]:
    """Score every sample under policy and reference (same order as `samples`); rows batched by length.
    An empty completion (EOS-less zero-token row, only possible with max_new_tokens=0) scores all zeros."""
    device = torch.device(device)
    pad = pad_id(tokenizer)
    todo = sorted((i for i, s in enumerate(samples) if s.token_ids),
                  key=lambda i: len(samples[i].prompt_ids) + len(samples[i].token_ids))
    scored = {i: ScoredSample(s, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0) for i, s in enumerate(samples) if not s.token_ids}
    modes = (policy.training, reference.training)
    policy.eval(), reference.eval()
    for start in range(0, len(todo), cfg.batch_size):
        idx = todo[start: start + cfg.batch_size]
        scored.update(zip(idx, _score_batch(policy, reference, [samples[i] for i in idx], pad, cfg, device)))
    policy.train(modes[0]), reference.train(modes[1])
    return [scored[i] for i in range(len(samples))]


# ---- drift on data -------------------------------------------------------------------------------------------


@torch.inference_mode()
def data_kl_sums(policy, reference, batch: dict[str, torch.Tensor], vocab_chunk: int = 8192) -> tuple[float, int]:
    """(sum of exact per-token KL(pi || pi_ref), number of tokens) over the response tokens of a collated pair
    batch (`collate_pairs`: right-padded input_ids, attention_mask, completion_mask). Sum over batches and divide
    once to get the per-token mean of a whole data set."""
    ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    device = next(policy.parameters(), torch.empty(0)).device
    ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
    keep = comp[:, 1:].bool()  # logits[:, t] predict ids[:, t+1]
    x = policy(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1][keep]  # (N, V)
    y = reference(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1][keep]
    kl = token_stats(x, y, ids[:, 1:][keep], vocab_chunk).kl
    return float(kl.double().sum()), int(keep.sum())


def data_kl_per_token(policy, reference, batch: dict[str, torch.Tensor]) -> float:
    """Drift on data: mean exact per-token KL(pi || pi_ref) on the pair texts of one batch (nats/token).
    Not the KL budget (the texts are not the policy's samples); see literature section 7, point 3."""
    total, n = data_kl_sums(policy, reference, batch)
    return total / n if n else 0.0


# ---- the samples table ---------------------------------------------------------------------------------------

SAMPLE_COLUMNS = ("checkpoint", "step", "prompt_id", "prompt", "sample_idx", "greedy", "text", "n_tokens", "n_chars",
                  "logp", "ref_logp", "kl", "kl_k1", "kl_k3", "entropy", "topk_mass", "token_ids", "finished")


def samples_frame(checkpoint_name: str, step: int, prompt_texts: Sequence[str], scored: Sequence[ScoredSample]):
    """samples.parquet rows of one checkpoint (`"reference"`, step -1 for the reference).

    Besides the README columns: `topk_mass` (mean top-10 mass) and `token_ids` (answer ids, EOS excluded), which
    the diversity metrics read (they count n-grams of token ids), and `finished` (False: cut at max_new_tokens)."""
    import polars as pl


    rows = [{
        "checkpoint": checkpoint_name, "step": step, "prompt_id": s.sample.prompt_id,
        "prompt": prompt_texts[s.sample.prompt_id], "sample_idx": s.sample.sample_idx, "greedy": s.sample.greedy,
        "text": s.sample.text, "n_tokens": len(s.sample.answer_ids), "n_chars": len(s.sample.text),
        "logp": s.logp, "ref_logp": s.ref_logp, "kl": s.kl, "kl_k1": s.kl_k1, "kl_k3": s.kl_k3,
        "entropy": s.entropy, "topk_mass": s.topk_mass, "token_ids": list(s.sample.answer_ids),
        "finished": s.sample.finished,
    } for s in scored]
    schema = {"checkpoint": pl.String, "step": pl.Int64, "prompt_id": pl.Int64, "prompt": pl.String,
              "sample_idx": pl.Int64, "greedy": pl.Boolean, "text": pl.String, "n_tokens": pl.Int64,
              "n_chars": pl.Int64, **{c: pl.Float64 for c in SAMPLE_COLUMNS[9:16]}, "token_ids": pl.List(pl.Int64),
              "finished": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)
