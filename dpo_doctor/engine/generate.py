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
from typing import Any, Sequence

import torch

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

    def fingerprint(self) -> dict[str, Any]:
        return asdict(self)


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
        kw = {f.name: row[f.name] for f in fields(cls)}
        kw["prompt_ids"], kw["token_ids"] = tuple(int(t) for t in kw["prompt_ids"]), tuple(int(t) for t in kw["token_ids"])
        return cls(int(kw.pop("prompt_id")), int(kw.pop("sample_idx")), bool(kw.pop("greedy")), **kw)


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


def prompt_token_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Prompt ids exactly as the pairs are tokenized (`data._ids`): chat template with generation prompt for
    conversations, the plain tokenizer otherwise."""
    from dpo_doctor.data import _ids

    if isinstance(prompt, list):
        return _ids(tokenizer, prompt, add_generation_prompt=True)
    return _ids(tokenizer, prompt)


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


def _pick(logits: torch.Tensor, u: torch.Tensor, greedy: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
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
        res = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, past_key_values=past,
                    use_cache=True, logits_to_keep=1)
        past = res.past_key_values
        nxt = _pick(res.logits[:, -1], u[:, t], greedy, cfg.temperature, cfg.top_p)
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


def sample(model, tokenizer, prompts: list[str | list[dict]], cfg: GenConfig, device) -> list[Sample]:
    """samples_per_prompt sampled completions (+ one greedy) per prompt, ordered by (prompt_id, sample_idx).

    Rows are sorted by prompt length before batching so left padding stays small."""
    device = torch.device(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = eos_ids(model, tokenizer)
    encoded = [prompt_token_ids(tokenizer, p) for p in prompts]
    n_rows = cfg.samples_per_prompt + int(cfg.greedy)
    rows = [(p, s, s == cfg.samples_per_prompt, encoded[p]) for p in range(len(prompts)) for s in range(n_rows)]
    rows.sort(key=lambda r: len(r[3]))
    was_training = model.training
    model.eval()
    samples = []
    for start in range(0, len(rows), cfg.batch_size):
        batch = rows[start: start + cfg.batch_size]
        for (p, s, g, pids), (toks, fin) in zip(batch, _generate_batch(model, batch, cfg, eos, pad_id, device)):
            answer = toks[:-1] if fin else toks
            text = tokenizer.decode(answer, skip_special_tokens=True)
            samples.append(Sample(p, s, g, tuple(pids), tuple(toks), fin, text))
    model.train(was_training)
    return sorted(samples, key=lambda x: (x.prompt_id, x.sample_idx))


# ---- exact KL, entropy, top-k mass over the vocabulary -------------------------------------------------------


def token_kl_stats(logits: torch.Tensor, ref_logits: torch.Tensor, vocab_chunk: int = 8192,
                   row_chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: exact KL(pi || pi_ref), entropy H(pi) and top-10 mass of pi, in float32.

    logits, ref_logits (N, V) -> three (N,) tensors. KL = sum_v p_v (log p_v - log q_v), computed as
    sum over vocabulary chunks of exp(lp) * (lp - lq) with lp = x - logsumexp(x): never a full (N, V) float32 copy
    beyond (row_chunk, vocab_chunk)."""
    kls, ents, tops = [], [], []
    for x, y in zip(logits.split(row_chunk), ref_logits.split(row_chunk)):
        lse_x = torch.logsumexp(x.float(), dim=-1, keepdim=True)  # (n, 1)
        lse_y = torch.logsumexp(y.float(), dim=-1, keepdim=True)
        kl = torch.zeros(x.shape[0], device=x.device)
        ent = torch.zeros(x.shape[0], device=x.device)
        for xc, yc in zip(x.split(vocab_chunk, dim=-1), y.split(vocab_chunk, dim=-1)):
            lp, lq = xc.float() - lse_x, yc.float() - lse_y  # (n, c)
            p = lp.exp()
            kl += (p * (lp - lq)).sum(-1)
            ent -= (p * lp).sum(-1)
        kls.append(kl.clamp_(min=0.0))  # KL >= 0; rounding can leave -1e-9
        ents.append(ent)
        tops.append((x.topk(min(TOPK, x.shape[-1]), dim=-1).values.float() - lse_x).exp().sum(-1))
    return torch.cat(kls), torch.cat(ents), torch.cat(tops)


def _forward_tail(model, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last `keep` positions of left-padded rows (B, keep, V), positions counted from the first
    real token."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=keep).logits


@torch.inference_mode()
def _score_batch(policy, reference, batch: list[Sample], pad_id: int, cfg: GenConfig, device) -> list[ScoredSample]:
    ids, mask = _left_pad([s.prompt_ids + s.token_ids for s in batch], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    n_max = max(len(s.token_ids) for s in batch)
    # the last n_max + 1 positions predict the last n_max tokens; drop the final (it predicts past the end)
    lp_all = _forward_tail(policy, ids, mask, n_max + 1)[:, :-1]  # (B, n_max, V)
    lq_all = _forward_tail(reference, ids, mask, n_max + 1)[:, :-1]
    targets = ids[:, -n_max:]  # (B, n_max)
    valid = torch.zeros_like(targets, dtype=torch.bool)
    for i, s in enumerate(batch):
        valid[i, n_max - len(s.token_ids):] = True
    x, y, tgt = lp_all[valid], lq_all[valid], targets[valid]  # (N, V), (N, V), (N,)
    kl, ent, top = token_kl_stats(x, y, cfg.kl_vocab_chunk)
    logp = x.float().gather(-1, tgt[:, None]).squeeze(-1) - torch.logsumexp(x.float(), -1)
    ref_logp = y.float().gather(-1, tgt[:, None]).squeeze(-1) - torch.logsumexp(y.float(), -1)
    log_r = (ref_logp - logp).double()  # log pi_ref/pi of the sampled token
    k3 = log_r.exp() - 1 - log_r
    cols = [c.double().cpu() for c in (logp, ref_logp, kl, ent, top, k3)]
    out, start = [], 0
    for s in batch:
        n = len(s.token_ids)
        lp, lq, k, e, tk, c3 = (c[start: start + n] for c in cols)
        start += n
        mean = (lambda v: float(v.mean()) if n else 0.0)
        out.append(ScoredSample(s, float(lp.sum()), float(lq.sum()), float(k.sum()), float((lp - lq).sum()),
                                float(c3.sum()), mean(e), mean(tk)))
    return out


def score_samples(policy, reference, samples: Sequence[Sample], tokenizer, cfg: GenConfig, device) -> list[ScoredSample]:
    """Score every sample under policy and reference (same order as `samples`). Rows are batched by length."""
    device = torch.device(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].prompt_ids) + len(samples[i].token_ids))
    scored: dict[int, ScoredSample] = {}
    modes = (policy.training, reference.training)
    policy.eval(), reference.eval()
    for start in range(0, len(order), cfg.batch_size):
        idx = [i for i in order[start: start + cfg.batch_size] if samples[i].token_ids]
        for i, s in zip(idx, _score_batch(policy, reference, [samples[i] for i in idx], pad_id, cfg, device)):
            scored[i] = s
        for i in order[start: start + cfg.batch_size]:
            scored.setdefault(i, ScoredSample(samples[i], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))  # empty completion
    policy.train(modes[0]), reference.train(modes[1])
    return [scored[i] for i in range(len(samples))]


# ---- drift on data -------------------------------------------------------------------------------------------


@torch.inference_mode()
def data_kl_sums(policy, reference, batch: dict[str, torch.Tensor], vocab_chunk: int = 8192) -> tuple[float, int]:
    """(sum of exact per-token KL(pi || pi_ref), number of tokens) over the response tokens of a collated pair
    batch (`collate_pairs`: right-padded input_ids, attention_mask, completion_mask). Sum over batches and divide
    once to get the per-token mean of a whole data set."""
    ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    device = next(policy.parameters()).device
    ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
    keep = comp[:, 1:].bool()  # logits[:, t] predict ids[:, t+1]
    x = policy(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1][keep]  # (N, V)
    y = reference(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1][keep]
    kl, _, _ = token_kl_stats(x, y, vocab_chunk)
    return float(kl.double().sum()), int(keep.sum())


def data_kl_per_token(policy, reference, batch: dict[str, torch.Tensor]) -> float:
    """Drift on data: mean exact per-token KL(pi || pi_ref) on the pair texts of one batch (nats/token).
    Not the KL budget (the texts are not the policy's samples); see literature section 7, point 3."""
    total, n = data_kl_sums(policy, reference, batch)
    return total / n if n else 0.0


# ---- the samples table ---------------------------------------------------------------------------------------

SAMPLE_COLUMNS = ("checkpoint", "step", "prompt_id", "prompt", "sample_idx", "greedy", "text", "n_tokens", "n_chars",
                  "logp", "ref_logp", "kl", "kl_k1", "kl_k3", "entropy", "topk_mass", "token_ids")


def samples_frame(checkpoint_name: str, step: int, prompts: Sequence[str | list[dict]],
                  scored: Sequence[ScoredSample]):
    """samples.parquet rows of one checkpoint (`"reference"`, step -1 for the reference).

    Besides the README columns: `topk_mass` (mean top-10 mass) and `token_ids` (answer ids, EOS excluded), which
    the diversity metrics read (they count n-grams of token ids)."""
    import polars as pl

    from dpo_doctor.data import render

    rows = [{
        "checkpoint": checkpoint_name, "step": step, "prompt_id": s.sample.prompt_id,
        "prompt": render(prompts[s.sample.prompt_id]), "sample_idx": s.sample.sample_idx, "greedy": s.sample.greedy,
        "text": s.sample.text, "n_tokens": len(s.sample.answer_ids), "n_chars": len(s.sample.text),
        "logp": s.logp, "ref_logp": s.ref_logp, "kl": s.kl, "kl_k1": s.kl_k1, "kl_k3": s.kl_k3,
        "entropy": s.entropy, "topk_mass": s.topk_mass, "token_ids": list(s.sample.answer_ids),
    } for s in scored]
    schema = {"checkpoint": pl.String, "step": pl.Int64, "prompt_id": pl.Int64, "prompt": pl.String,
              "sample_idx": pl.Int64, "greedy": pl.Boolean, "text": pl.String, "n_tokens": pl.Int64,
              "n_chars": pl.Int64, **{c: pl.Float64 for c in SAMPLE_COLUMNS[9:16]}, "token_ids": pl.List(pl.Int64)}
    return pl.DataFrame(rows, schema=schema)
