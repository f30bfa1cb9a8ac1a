"""Preference data: the four TRL formats from every file type, TRL-identical tokenization, and bad input."""

import json

import polars as pl
import pytest

from dpo_doctor.data.pairs import extract_prompt, load_pairs, read_rows, subset_indices
from dpo_doctor.errors import UserError


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(tiny_dir)


ROWS = [{"prompt": "what is the cat?", "chosen": " the cat sat.", "rejected": " a dog ran."},
        {"prompt": "why is it red?", "chosen": " it is red.", "rejected": " no."}]


def conv(rows):
    return [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]


def implicit(rows):
    return [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in rows]


def conv_implicit(rows):
    return [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in conv(rows)]


@pytest.mark.parametrize("make,fmt", [(lambda r: r, "standard_explicit"), (implicit, "standard_implicit"),
                                      (conv, "conversational_explicit"), (conv_implicit, "conversational_implicit")])
def test_formats_tokenize_like_trl(tmp_path, tok, make, fmt):
    """Prompt tokens masked, EOS appended to standard responses, chat template for conversations: same ids as TRL."""
    from trl.data_utils import maybe_extract_prompt

    rows = make(ROWS)
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ps = load_pairs(path, tok, max_length=None)
    assert ps.format == fmt
    for row, pair in zip(rows, ps.tokens):
        ex = maybe_extract_prompt(dict(row))
        if fmt.startswith("standard"):
            full_c = tok(ex["prompt"] + ex["chosen"] + tok.eos_token)["input_ids"]
            prompt = tok(ex["prompt"])["input_ids"]
        else:
            full_c = tok.apply_chat_template(ex["prompt"] + ex["chosen"], tokenize=True, return_dict=True)["input_ids"]
            prompt = tok.apply_chat_template(ex["prompt"], tokenize=True, return_dict=True,
                                             add_generation_prompt=True)["input_ids"]
        assert list(pair.prompt_ids) + list(pair.chosen_ids) == list(full_c)
        assert list(pair.prompt_ids) == list(prompt)[: len(pair.prompt_ids)]
        assert pair.chosen_ids[-1] == tok.eos_token_id


def test_extract_prompt_matches_trl():
    from trl.data_utils import extract_prompt as trl_extract

    for c, r in [("Q: hi A: yes", "Q: hi A: no"), ("ab", "abc"), ("same", "same"), ("x y", "z")]:
        ours = extract_prompt(c, r)
        theirs = trl_extract({"chosen": c, "rejected": r})
        assert ours == (theirs["prompt"], theirs["chosen"], theirs["rejected"])


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet", "csv", "saved"])
def test_file_types(tmp_path, tok, suffix):
    path = tmp_path / f"d.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif suffix == "json":
        path.write_text(json.dumps(ROWS))
    elif suffix == "parquet":
        pl.DataFrame(ROWS).write_parquet(path)
    elif suffix == "csv":
        pl.DataFrame(ROWS).write_csv(path)
    else:
        import datasets

        datasets.Dataset.from_list(ROWS).save_to_disk(str(path))
    assert len(load_pairs(path, tok).tokens) == 2


def test_bad_input_messages(tmp_path, tok):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match="does not exist"):
        read_rows(missing)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="empty"):
        read_rows(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: malformed"):
        read_rows(bad)
    cols = tmp_path / "cols.jsonl"
    cols.write_text(json.dumps({"prompt": "a", "answer": "b"}) + "\n")
    with pytest.raises(UserError, match="missing column.*chosen.*rejected"):
        load_pairs(cols, tok)
    with pytest.raises(UserError, match="max-length"):
        p = tmp_path / "ok.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
        load_pairs(p, tok, max_length=2)


def test_identical_pairs_flagged_and_truncation(tmp_path, tok):
    rows = ROWS + [{"prompt": "same?", "chosen": " yes.", "rejected": " yes."}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ps = load_pairs(path, tok, max_length=None)
    assert ps.identical == (False, False, True)
    assert any("chosen == rejected" in w for w in ps.warnings)
    longest_prompt = max(len(t.prompt_ids) for t in ps.tokens)
    cut = load_pairs(path, tok, max_length=longest_prompt + 2)
    assert len(cut.tokens) == 3
    for t in cut.tokens:
        assert len(t.prompt_ids) + max(len(t.chosen_ids), len(t.rejected_ids)) <= longest_prompt + 2


def test_subset_is_deterministic():
    a = subset_indices(100, 10, seed=3)
    assert a == subset_indices(100, 10, seed=3) and a == sorted(a) and len(set(a)) == 10
    assert subset_indices(5, 10, 0) == [0, 1, 2, 3, 4]
