"""How far dpo-doctor's recomputed rewards sit from what a LLaMA-Factory run computes, and why (issue 21).

LLaMA-Factory 0.9.5 cannot run here (it pins trl<=0.24 and transformers<=5.6; this environment has trl 1.16 and
transformers 5.x), so its logged eval rewards cannot be produced. Instead this script takes LLaMA-Factory's token
ids for the same alpaca pairs (dpo-doctor's `--template`, data/llamafactory.py, rewritten from its source) and scores
them and TRL's ids with the same engine, reference and policy (beta 0.1, float64):

  trl       : dpo-doctor's default reading of the alpaca file (prompt "instruction\\ninput", TRL tokenization,
              keep_start truncation to --max-length, pairs whose prompt fills it dropped);
  lf_empty  : `--template empty`: LLaMA-Factory with template unset on a tokenizer without chat template, with
              cutoff_len = the same length;
  lf_default: `--template default` ("Human: ...<eos>\\nAssistant:").

When LLaMA-Factory's own modules import (`pip download --no-deps llamafactory`, unzipped on PYTHONPATH with an empty
`torchaudio` package beside it), its `Template.encode_oneturn` and `infer_seqlen` run on every pair too and must give
the same ids ("llamafactory_code_checked": true), else the script stops.

usage: python benchmarks/llamafactory_parity.py [--pairs 32] [--cutoff 1024 --cutoff 40]   (prints ONE JSON line)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def world(work: Path, n: int):
    """A tiny tokenizer WITHOUT chat template, a reference model, a nudged policy, and alpaca pairs."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from dpo_doctor.zoo import tiny
    from tests.conftest import make_pairs

    corpus = [p["prompt"] + p["chosen"] + p["rejected"] for p in make_pairs(200, seed=1)]
    tok = tiny.build_tokenizer(corpus, vocab_size=300)
    ref_dir = tiny.save(tiny.build_model(tok, hidden=32, layers=2, heads=2), tok, work / "ref")
    (ref_dir / "chat_template.jinja").unlink(missing_ok=True)
    tok = PreTrainedTokenizerFast.from_pretrained(ref_dir)
    tok.chat_template = None
    policy = AutoModelForCausalLM.from_pretrained(ref_dir)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    rng = random.Random(0)
    rows = [{"instruction": r["prompt"], "input": " ".join(rng.sample(r["prompt"].split(), 2)) if i % 2 else "",
             "chosen": r["chosen"], "rejected": r["rejected"]} for i, r in enumerate(make_pairs(n, seed=11))]
    data = work / "alpaca.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tok, AutoModelForCausalLM.from_pretrained(ref_dir), policy, rows, data


def margins(ref, policy, tok, pairs, beta: float = 0.1):
    import numpy as np
    import torch

    from dpo_doctor.engine.pairs import PairScores, score_pairs

    def score(model):
        out = PairScores.empty(len(pairs))
        score_pairs(model.double(), pairs, tok.pad_token_id or 0, torch.device("cpu"), out, token_budget=4096)
        return out
    r, p = score(ref), score(policy)
    return beta * ((p.logp_chosen - r.logp_chosen) - (p.logp_rejected - r.logp_rejected)), np.array(
        [beta * (p.logp_chosen - r.logp_chosen), beta * (p.logp_rejected - r.logp_rejected)])


def lf_official(tok, template: str, prompt: list[dict], chosen: str, rejected: str, cutoff: int):
    """LLaMA-Factory's own code, when importable: the template's encode_oneturn and infer_seqlen."""
    from llamafactory.data.processor.processor_utils import infer_seqlen
    from llamafactory.data.template import TEMPLATES

    t = TEMPLATES[template]
    p, c = t.encode_oneturn(tok, prompt + [{"role": "assistant", "content": chosen}], "", None)
    _, r = t.encode_oneturn(tok, prompt + [{"role": "assistant", "content": rejected}], "", None)
    s, n = infer_seqlen(len(p), max(len(c), len(r)), cutoff)
    return p[:s], c[:n], r[:n]


def main() -> None:
    import numpy as np

    from dpo_doctor.data.formats import DataSpec
    from dpo_doctor.data.pairs import load_pairs

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--cutoff", type=int, action="append")
    args = ap.parse_args()
    try:
        import llamafactory.data.template  # noqa: F401
        official = True
    except Exception:  # not installed, or its imports fail here: the rewrite alone is measured
        official = False
    result = {"pairs": args.pairs, "beta": 0.1, "llamafactory_code_checked": official}
    with tempfile.TemporaryDirectory() as tmp:
        tok, ref, policy, rows, data = world(Path(tmp), args.pairs)
        for cutoff in args.cutoff or [1024, 40]:
            ours = load_pairs(data, tok, max_length=cutoff)
            keep = list(ours.pair_ids)
            m_trl, _ = margins(ref, policy, tok, list(ours.tokens))
            entry = {"trl_pairs_kept": len(keep), "trl_mean_margin": float(np.mean(m_trl))}
            for template in ("empty", "default"):
                lf_pairs = load_pairs(data, tok, max_length=cutoff, spec=DataSpec(template=template))
                ids = [lf_pairs.tokens[lf_pairs.pair_ids.index(i)] for i in keep]
                for i in keep if official else ():
                    row = rows[i]
                    prompt = [{"role": "user", "content": "\n".join(t for t in (row["instruction"], row["input"]) if t)}]
                    theirs = lf_official(tok, template, prompt, row["chosen"], row["rejected"], cutoff)
                    if tuple(map(tuple, theirs)) != tuple(vars(ids[keep.index(i)]).values()):
                        raise SystemExit(f"--template {template} differs from LLaMA-Factory's code on pair {i}")
                m_lf, _ = margins(ref, policy, tok, ids)
                same = sum(a == b for a, b in zip(ids, ours.tokens))
                entry[f"lf_{template}"] = {
                    "mean_margin": float(np.mean(m_lf)), "max_abs_margin_diff": float(np.max(np.abs(m_lf - m_trl))),
                    "mean_abs_margin_diff": float(np.mean(np.abs(m_lf - m_trl))),
                    "pairs_with_identical_ids": same,
                    "pairs_differing_only_by_trl_eos": sum(
                        a.prompt_ids == b.prompt_ids and a.chosen_ids + (tok.eos_token_id,) == b.chosen_ids
                        and a.rejected_ids + (tok.eos_token_id,) == b.rejected_ids for a, b in zip(ids, ours.tokens)),
                    "pairs_with_truncated_prompt": sum(
                        len(a.prompt_ids) < len(b.prompt_ids) for a, b in zip(ids, ours.tokens))}
            result[f"cutoff_{cutoff}"] = entry
    print(json.dumps(result))


if __name__ == "__main__":
    main()
