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
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: not valid JSON"):
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


# ---- the one JSONL reader and field checks (unit level; the CLI side is tests/hostile/test_data_inputs.py) ----


def test_jsonl_reader_keeps_what_splitlines_would_break(tmp_path):
    """BOM dropped, CRLF accepted, U+2028 inside a string is not a line break, escaped emoji pairs are fine."""
    from dpo_doctor.data.jsonl import read_jsonl

    path = tmp_path / "d.jsonl"
    path.write_bytes("\ufeff".encode() + b'{"a": "x\xe2\x80\xa8y"}\r\n\r\n{"b": "\\ud83d\\ude00"}\n')
    lines = read_jsonl(path)
    assert [ln.lineno for ln in lines] == [1, 3]
    assert lines[0].obj == {"a": "x\u2028y"} and lines[1].obj == {"b": "\U0001F600"}


@pytest.mark.parametrize("content,match", [
    (b'{"a": 1}\n{"b": "\xe9"}\n', r"line 2, byte offset 16 is not valid UTF-8 \(0xe9\).*iconv"),
    (b'{"a": 1}\n' + b"[" * 50_000 + b"\n", r"line 2: JSON nested too deeply"),
    (b'{"a": {"k": ["ok", "\\udc01"]}}\n', r"line 1, field a\.k\[1\]: a lone UTF-16 surrogate"),
    (b'{"\\ud800": 1}\n', r"line 1, field \\ud800: a lone UTF-16 surrogate"),
    (b'"just a string"\n', r"line 1: expected a JSON object .* found str \"just a string\""),
])
def test_jsonl_reader_errors(tmp_path, content, match):
    from dpo_doctor.data.jsonl import read_jsonl

    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        read_jsonl(path)


def test_describe_is_short():
    from dpo_doctor.data.jsonl import describe

    assert describe(None) == "null" and describe(5) == "int 5" and describe(1.5) == "float 1.5"
    assert describe({"a": "b"}) == 'dict {"a": "b"}'
    long = describe("x" * 500)
    assert long.startswith('str "xxx') and long.endswith("...") and len(long) < 70


def test_field_checks_name_row_and_field(tmp_path, tok):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({**ROWS[1], "rejected": ["no"]}) + "\n")
    with pytest.raises(UserError, match=r"line 2, field rejected\[0\]: found str \"no\"; expected a message object"):
        load_pairs(path, tok)
    path.write_text(json.dumps(conv(ROWS)[0]) + "\n" + json.dumps({**conv(ROWS)[1], "prompt": None}) + "\n")
    with pytest.raises(UserError, match=r"line 2, field prompt: found null while other rows have prompts"):
        load_pairs(path, tok)


def test_csv_keeps_numbers_as_text_and_table_rows_are_indexed(tmp_path, tok):
    """A CSV answer "42" must stay the string "42" (not int 42); a null cell names its row index."""
    path = tmp_path / "d.csv"
    path.write_text('prompt,chosen,rejected\n"what is 6*7?",42,41\n')
    ps = load_pairs(path, tok)
    assert ps.texts[0][1:] == ("42", "41")
    pl.DataFrame([ROWS[0], {**ROWS[1], "rejected": None}]).write_parquet(tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"row index 1, field rejected: found null"):
        load_pairs(tmp_path / "d.parquet", tok)


def test_all_identical_is_an_error_and_repeats_warn(tmp_path, tok):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({**r, "rejected": r["chosen"]}) + "\n" for r in ROWS))
    with pytest.raises(UserError, match="every pair has chosen == rejected"):
        load_pairs(path, tok)
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS + ROWS + ROWS[:1]))
    warnings = load_pairs(path, tok).warnings
    assert any("3 of 5 row(s) (60%) repeat an earlier row" in w and "2 distinct" in w and "up to 3x" in w
               and "first at line 1" in w for w in warnings), warnings
