"""`dpo-doctor data`: data sets made to carry one problem each are flagged with that kind (as a warning), a clean
set of the same task gets none of those kinds; CHES against a float64 hand computation from the model's hidden
states; the engine's hidden-state sums leave the log-probs unchanged; the scan's data section is the audit's."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import WORDS, make_pairs
from dpo_doctor.audit.config import AuditConfig
from dpo_doctor.audit.pipeline import run_audit
from dpo_doctor.report import load_report

PROBLEM_KINDS = {"length_bias", "likelihood_displacement_risk", "mode_collapse_risk", "duplicates", "contradictions",
                 "truncation", "degenerate_pairs"}


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def clean(n: int = 60, seed: int = 3) -> list[dict]:
    return make_pairs(n, seed=seed)


def length_biased(n: int = 60, seed: int = 3) -> list[dict]:
    """Chosen longer in 90% of pairs: 12-20 words against 2-8."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        long, short = " " + words(rng, 12, 20) + ".", " " + words(rng, 2, 8) + "."
        prompt = words(rng, 3, 8) + "?"
        rows.append({"prompt": prompt, "chosen": long, "rejected": short} if i % 10 else
                    {"prompt": prompt, "chosen": short, "rejected": long})
    return rows


def one_token_apart(n: int = 60, seed: int = 3) -> list[dict]:
    """Rejected = chosen with one word replaced."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        toks = words(rng, 4, 15).split()
        k = rng.randrange(len(toks))
        other = toks.copy()
        other[k] = rng.choice([w for w in WORDS if w != toks[k]])
        rows.append({"prompt": words(rng, 3, 8) + "?", "chosen": " " + " ".join(toks) + ".",
                     "rejected": " " + " ".join(other) + "."})
    return rows


def canned(n: int = 60, seed: int = 3) -> list[dict]:
    """One canned chosen answer for every prompt."""
    return [{**r, "chosen": " I am sorry, I can not help with that."} for r in clean(n, seed)]


def duplicated(n: int = 60, seed: int = 3) -> list[dict]:
    """A third of the rows copy earlier rows (some with changed case and spacing)."""
    rows = clean(40, seed)
    copies = [dict(r) for r in rows[:20:2]] + [{k: v.upper() + " " for k, v in r.items()} for r in rows[1:20:2]]
    return rows + copies


def contradicted(n: int = 60, seed: int = 3) -> list[dict]:
    """Six pairs also appear with chosen and rejected swapped."""
    rows = clean(54, seed)
    return rows + [{"prompt": r["prompt"], "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows[:6]]


def long_answers(n: int = 60, seed: int = 3) -> list[dict]:
    """Answers of 130-180 words: over a max_length of 128 (words or tokens; the clean set stays under 90 tokens)."""
    rng = random.Random(seed)
    return [{"prompt": words(rng, 3, 8) + "?", "chosen": " " + words(rng, 130, 180) + ".",
             "rejected": " " + words(rng, 130, 180) + "."} for _ in range(n)]


def audit(tmp_path: Path, rows: list[dict], name: str, **kw):
    data = write(tmp_path / f"{name}.jsonl", rows)
    return load_report(run_audit(AuditConfig(data=data, out=tmp_path / f"out-{name}", **kw)))


def kinds(bundle) -> dict[str, str]:
    return {d.kind: d.severity for d in bundle.diagnoses}


CASES = [("length_bias", length_biased, {}), ("likelihood_displacement_risk", one_token_apart, {}),
         ("mode_collapse_risk", canned, {}), ("duplicates", duplicated, {}), ("contradictions", contradicted, {}),
         ("truncation", long_answers, {"max_length": 128})]


@pytest.mark.parametrize("kind,make,kw", CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_flagged_and_the_clean_set_is_not(tmp_path, kind, make, kw):
    found = kinds(audit(tmp_path, make(), kind, **kw))
    assert found.get(kind) == "warning", found
    assert found.keys() <= {kind, "degenerate_pairs", "duplicates"} if kind == "duplicates" else True
    healthy = kinds(audit(tmp_path, clean(), "clean", **kw))
    assert not (set(healthy) & PROBLEM_KINDS), healthy


def test_problem_sets_with_the_reference_tokenizer(tmp_path, tiny_dir):
    """Token lengths (the tiny tokenizer) give the same verdicts; truncation counted in tokens."""
    for kind, make, kw in CASES:
        found = kinds(audit(tmp_path, make(), kind, tokenizer=tiny_dir, **kw))
        assert found.get(kind) == "warning", (kind, found)
    healthy = audit(tmp_path, clean(), "clean", tokenizer=tiny_dir, max_length=128)
    assert not (set(kinds(healthy)) & PROBLEM_KINDS), kinds(healthy)
    assert healthy.raw["settings"]["length_unit"] == "tokens"


def test_filter_ids_list_the_duplicates_and_contradictions(tmp_path):
    b = audit(tmp_path, duplicated(), "dup")
    rows = [json.loads(x) for x in (b.path / "filter_ids.jsonl").read_text().splitlines()]
    dup_ids = {r["pair_id"] for r in rows if "duplicate" in r["reasons"]}
    assert dup_ids == set(range(40, 60))  # every copy, never the first of a pair
    b = audit(tmp_path, contradicted(), "con")
    rows = [json.loads(x) for x in (b.path / "filter_ids.jsonl").read_text().splitlines()]
    assert {r["pair_id"] for r in rows if "contradiction" in r["reasons"]} == set(range(6)) | set(range(54, 60))
    assert b.raw["audit"]["filter"]["by_reason"]["contradiction"] == 12


def test_length_statistics_hand_worked(tmp_path):
    """Chosen/rejected words (3,1), (2,2), (1,4), (6,2): chosen longer in 2 of 4 -> 0.5; longer wins 2 + 0.5 tie = 2.5/4;
    mean ratio 12/9; median of ratios (3, 1, 0.25, 3) = 2; margin mean(log 3, 0, log .25, log 3) = 0.2027."""
    rows = [{"prompt": "p1?", "chosen": "a b c", "rejected": "x"}, {"prompt": "p2?", "chosen": "a b", "rejected": "x y"},
            {"prompt": "p3?", "chosen": "a", "rejected": "w x y z"},
            {"prompt": "p4?", "chosen": "a b c d e f", "rejected": "x y"}]
    s = audit(tmp_path, rows, "len").raw["data"]["stats"]
    assert s["length/chosen_longer_frac"] == pytest.approx(0.5)
    assert s["length/longer_wins_accuracy"] == pytest.approx(2.5 / 4)
    assert s["length/mean_ratio"] == pytest.approx(12 / 9)
    assert s["length/median_ratio"] == pytest.approx(2.0)
    assert s["length/longer_wins_margin"] == pytest.approx((2 * np.log(3) + np.log(0.25)) / 4)


def test_bounded_levenshtein_matches_full_dp():
    from dpo_doctor.metrics.data_edits import bounded_levenshtein

    def full(a, b):
        d = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            prev, d[0] = d[0], i
            for j, y in enumerate(b, 1):
                prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
        return d[-1]

    rng = random.Random(0)
    for _ in range(300):
        a = [rng.randrange(4) for _ in range(rng.randint(0, 9))]
        b = [rng.randrange(4) for _ in range(rng.randint(0, 9))]
        cap = rng.randint(1, 5)
        want = full(a, b)
        assert bounded_levenshtein(a, b, cap) == (want if want <= cap else None)


def test_near_duplicates_found_and_distinct_pairs_not(tmp_path):
    """A pair copied with one word of its chosen answer changed is a near duplicate, not an exact one."""
    rows = clean(30)
    rng = random.Random(7)
    base = dict(rows[0], chosen=" " + words(rng, 40, 40) + ".", rejected=" " + words(rng, 40, 40) + ".")
    toks = base["chosen"].split()
    toks[20] = "zebra"  # one word of 80: true Jaccard of the tagged shingle sets about 0.93
    near = dict(base, chosen=" " + " ".join(toks))
    b = audit(tmp_path, [base] + rows[1:] + [near], "near")
    p = b.audit_pairs
    assert p.filter(pl.col("near_duplicate"))["pair_id"].to_list() == [30]
    assert not p["exact_duplicate"].any()


def test_ches_matches_a_float64_hand_computation(tmp_path, tiny_dir):
    """CHES and length-normalized CHES from the engine's one pass equal sums of the model's own last-layer hidden
    states over the positions predicting each answer (last prompt token .. second-to-last answer token), in
    float64, each answer run alone and unpadded (Razin et al. 2024, ches.py)."""
    from dpo_doctor.data.pairs import load_pairs
    from dpo_doctor.engine.loading import load_tokenizer

    rows = one_token_apart(12)
    b = audit(tmp_path, rows, "ches", ref=tiny_dir)
    from transformers import AutoModelForCausalLM

    tok, _ = load_tokenizer(tiny_dir)
    pairs = load_pairs(tmp_path / "ches.jsonl", tok, max_length=1024)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.float32).eval()
    got = b.audit_pairs.sort("pair_id")
    for i, t in enumerate(pairs.tokens):
        sums = []
        for resp in (t.chosen_ids, t.rejected_ids):
            ids = torch.tensor([list(t.prompt_ids) + list(resp)])
            with torch.no_grad():
                h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double().numpy()
            n_p = len(t.prompt_ids)
            sums.append((h[n_p - 1:n_p - 1 + len(resp)].sum(axis=0), len(resp)))
        (sc, nc), (sr, nr) = sums
        want = sc @ sr - sc @ sc
        want_norm = (sc / nc) @ (sr / nr) - (sc / nc) @ (sc / nc)
        assert got["ches"][i] == pytest.approx(want, rel=1e-4, abs=1e-4)
        assert got["ches_norm"][i] == pytest.approx(want_norm, rel=1e-4, abs=1e-6)
    assert got["ref_margin"].to_numpy() == pytest.approx(
        (got["ref_logp_chosen"] - got["ref_logp_rejected"]).to_numpy())


def test_hidden_sums_leave_logps_unchanged_on_both_head_paths(tiny_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from dpo_doctor.engine import logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 5, 9, 2, 0, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    comp = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    with torch.no_grad():
        lp, n = logprobs.sequence_logps(model, ids, attn, comp)
        lp2, n2, hs = logprobs.sequence_logps(model, ids, attn, comp, hidden_sums=True)
        monkeypatch.setattr(logprobs, "_has_plain_head", lambda m: False)
        lp3, n3, hs3 = logprobs.sequence_logps(model, ids, attn, comp, hidden_sums=True)
        h = model(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states[-1].double()
    assert torch.equal(lp, lp2) and torch.equal(n, n2)
    assert torch.allclose(lp, lp3, atol=1e-5)
    want = torch.stack([h[0, 1:5].sum(0), h[1, 1:3].sum(0)])  # positions predicting the response tokens
    assert torch.allclose(hs, want, atol=1e-6) and torch.allclose(hs3, want, atol=1e-6)


def test_scan_data_section_is_the_audit(tmp_path, tiny_dir):
    """The scan's data statistics come from the audit's function on the scan's pairs: same tokenizer, same
    max_length, so every no-model statistic of `dpo-doctor data --tokenizer` agrees with the scan's."""
    from dpo_doctor.scan.pipeline import ScanConfig, scan

    rows = duplicated()
    data = write(tmp_path / "pairs.jsonl", rows)
    out = scan(ScanConfig(run_dir=tiny_dir, data=data, ref=tiny_dir, out=tmp_path / "scan", generate=False,
                          cache_dir=tmp_path / "cache", max_length=128))
    scan_stats = load_report(out).raw["data"]["stats"]
    audit_stats = audit(tmp_path, rows, "same", tokenizer=tiny_dir, max_length=128).raw["data"]["stats"]
    assert scan_stats["data/duplicate_frac"] == pytest.approx(1 / 3)
    for key, value in scan_stats.items():
        if key.startswith(("length/", "data/")) and not key.startswith(("data/over_max", "data/dropped",
                                                                         "data/full_length")):
            assert value == pytest.approx(audit_stats[key], nan_ok=True), key


def test_ches_ranks_one_token_apart_pairs_above_a_clean_set(tmp_path, tiny_dir):
    """With the reference, DPO302 fires on the one-token-apart set from CHES alone and not on the clean set
    (measured with the tiny test model: 0.33 of pairs with CHES_norm > 0 against 0.10; threshold 0.2)."""
    near = audit(tmp_path, one_token_apart(), "ota", ref=tiny_dir, select=("DPO302",),
                 rule_settings=("DPO302.max_min_edit_frac=1.0",))
    far = audit(tmp_path, clean(), "far", ref=tiny_dir, select=("DPO302",))
    s_near, s_far = near.raw["data"]["stats"], far.raw["data"]["stats"]
    assert s_near["ches/risk_frac"] > 0.2 >= s_far["ches/risk_frac"]
    assert s_near["ches/norm_median"] > s_far["ches/norm_median"]
    assert kinds(near) == {"likelihood_displacement_risk": "warning"} and kinds(far) == {}
