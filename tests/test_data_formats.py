"""Other trainers' preference formats (data/formats.py): each read with the prompt its trainer builds.

Unit level: every layout becomes the TRL rows a user would have written by hand, and tokenizes to the same ids.
Console level: `dpo-doctor scan` on each layout gives the per-pair margins of the same pairs written in TRL's format
(1e-6), the detected layout lands in report.json, an unmapped system column is a warning there, and bad mappings
are one line, exit 2.
"""

import json

import polars as pl
import pytest

from dpo_doctor.data.formats import DataSpec, parse_columns, to_trl
from dpo_doctor.data.pairs import load_pairs
from dpo_doctor.errors import UserError
from tests.conftest import make_pairs
from tests.hostile.conftest import assert_user_error, run_cli

BASE = make_pairs(6, seed=3)  # prompt / chosen / rejected strings


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


def system(text):
    return [{"role": "system", "content": text}]


def lf_prompt(i, r):
    """What LLaMA-Factory's alpaca converter makes of instruction=r.prompt and input (every other row): joined by \\n."""
    return r["prompt"] + ("\nanswer briefly" if i % 2 else "")


# (layout, spec, trainer rows, the same pairs as TRL rows)
LAYOUTS = {
    "llamafactory-alpaca": (
        DataSpec(),
        [{"instruction": r["prompt"], "input": "answer briefly" if i % 2 else "", "chosen": r["chosen"],
          "rejected": r["rejected"]} for i, r in enumerate(BASE)],
        [{"prompt": user(lf_prompt(i, r)), "chosen": assistant(r["chosen"]), "rejected": assistant(r["rejected"])}
         for i, r in enumerate(BASE)]),
    "llamafactory-alpaca-system-history": (
        DataSpec(),
        [{"instruction": r["prompt"], "input": "", "system": "be kind", "history": [["hi", "hello"]],
          "chosen": r["chosen"], "rejected": r["rejected"]} for r in BASE],
        [{"prompt": system("be kind") + user("hi") + assistant("hello") + user(r["prompt"]),
          "chosen": assistant(r["chosen"]), "rejected": assistant(r["rejected"])} for r in BASE]),
    "llamafactory-sharegpt": (
        DataSpec(),
        [{"conversations": [{"from": "system", "value": "be kind"}, {"from": "human", "value": r["prompt"]}],
          "chosen": {"from": "gpt", "value": r["chosen"]}, "rejected": {"from": "gpt", "value": r["rejected"]}}
         for r in BASE],
        [{"prompt": system("be kind") + user(r["prompt"]), "chosen": assistant(r["chosen"]),
          "rejected": assistant(r["rejected"])} for r in BASE]),
    "llamafactory-sharegpt-openai": (
        DataSpec(data_format="llamafactory-sharegpt"),
        [{"messages": user(r["prompt"]), "system": "be kind", "chosen": assistant(r["chosen"])[0],
          "rejected": assistant(r["rejected"])[0]} for r in BASE],
        [{"prompt": system("be kind") + user(r["prompt"]), "chosen": assistant(r["chosen"]),
          "rejected": assistant(r["rejected"])} for r in BASE]),
    "ms-swift-response": (
        DataSpec(),
        [{"messages": system("be kind") + user(r["prompt"]) + assistant(r["chosen"]), "rejected_response": r["rejected"]}
         for r in BASE],
        [{"prompt": system("be kind") + user(r["prompt"]), "chosen": assistant(r["chosen"]),
          "rejected": assistant(r["rejected"])} for r in BASE]),
    "ms-swift-messages": (
        DataSpec(),
        [{"messages": user("hi") + assistant("hello") + user(r["prompt"]) + assistant(r["chosen"]),
          "rejected_messages": user("hi") + assistant("hello") + user(r["prompt"]) + assistant(r["rejected"])}
         for r in BASE],
        [{"prompt": user("hi") + assistant("hello") + user(r["prompt"]), "chosen": assistant(r["chosen"]),
          "rejected": assistant(r["rejected"])} for r in BASE]),
    "openrlhf-template": (
        DataSpec(input_template="User: {}\nAssistant: "),
        [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in BASE],
        [{"prompt": f"User: {r['prompt']}\nAssistant: ", "chosen": r["chosen"], "rejected": r["rejected"]}
         for r in BASE]),
    "openrlhf-no-prompt-key": (
        DataSpec(data_format="openrlhf"),
        [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in BASE],
        [{"prompt": "", "chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in BASE]),
    "openrlhf-messages-no-prompt-key": (
        DataSpec(data_format="openrlhf"),
        [{"chosen": user(r["prompt"]) + assistant(r["chosen"]), "rejected": user(r["prompt"]) + assistant(r["rejected"])}
         for r in BASE],
        [{"prompt": user(r["prompt"]), "chosen": assistant(r["chosen"]), "rejected": assistant(r["rejected"])}
         for r in BASE]),
    "columns": (
        DataSpec(columns="prompt=question,chosen=good,rejected=bad"),
        [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "id": i} for i, r in enumerate(BASE)],
        BASE),
    "columns-system": (
        DataSpec(columns="prompt=question,chosen=good,rejected=bad,system=sys"),
        [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "sys": "be kind"} for r in BASE],
        [{"prompt": system("be kind") + user(r["prompt"]), "chosen": assistant(r["chosen"]),
          "rejected": assistant(r["rejected"])} for r in BASE]),
}
DETECTED = {"llamafactory-alpaca": "llamafactory-alpaca", "llamafactory-alpaca-system-history": "llamafactory-alpaca",
            "llamafactory-sharegpt": "llamafactory-sharegpt", "llamafactory-sharegpt-openai": "llamafactory-sharegpt",
            "ms-swift-response": "ms-swift", "ms-swift-messages": "ms-swift", "openrlhf-template": "openrlhf",
            "openrlhf-no-prompt-key": "openrlhf", "openrlhf-messages-no-prompt-key": "openrlhf",
            "columns": "columns", "columns-system": "columns"}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(tiny_dir)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_becomes_the_trl_rows(tmp_path, layout):
    spec, rows, trl = LAYOUTS[layout]
    out = to_trl(rows, [f"line {i + 1}" for i in range(len(rows))], tmp_path / "d.jsonl", spec)
    assert out.rows == trl
    assert out.data_format == DETECTED[layout]
    assert out.detected == (spec == DataSpec())
    assert not out.warnings, out.warnings


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_tokenizes_like_its_trl_twin(tmp_path, tok, layout):
    """Same token ids (so the same scores, bit for bit) as the pairs written in TRL's format."""
    spec, rows, trl = LAYOUTS[layout]
    ours = load_pairs(write(tmp_path / "ours.jsonl", rows), tok, spec=spec)
    twin = load_pairs(write(tmp_path / "twin.jsonl", trl), tok)
    assert ours.tokens == twin.tokens and ours.format == twin.format
    assert ours.data_format == DETECTED[layout] and twin.data_format == "trl"


def test_without_chat_template_single_turns_are_plain_strings(tmp_path):
    """LLaMA-Factory's `empty` template (its choice without a chat template): prompt "instruction\\ninput"."""
    spec, rows, _ = LAYOUTS["llamafactory-alpaca"]
    out = to_trl(rows, [f"line {i + 1}" for i in range(len(rows))], tmp_path / "d.jsonl", spec, chat=False)
    assert out.rows == [{"prompt": lf_prompt(i, r), "chosen": r["chosen"], "rejected": r["rejected"]}
                        for i, r in enumerate(BASE)]
    spec, rows, trl = LAYOUTS["llamafactory-alpaca-system-history"]  # a system turn needs the chat template
    assert to_trl(rows, ["line 1"] * len(rows), tmp_path / "d.jsonl", spec, chat=False).rows == trl


def test_alpaca_was_misread_before(tmp_path, tok):
    """The bug of issue 21: read as TRL's implicit format, the instruction vanished from the prompt."""
    _, rows, _ = LAYOUTS["llamafactory-alpaca"]
    pairs = load_pairs(write(tmp_path / "d.jsonl", rows), tok)
    assert all(r["prompt"] in text[0] for r, text in zip(BASE, pairs.texts))


@pytest.mark.parametrize("rows,spec,match", [
    ([{"question": "q?", "chosen": "q? a", "rejected": "q? b"}], DataSpec(),
     r"column\(s\) question look like the prompt.*--columns prompt="),
    ([{"instruction": "i", "conversations": [], "chosen": "a", "rejected": "b"}], DataSpec(),
     r"fit several formats \(llamafactory-alpaca, llamafactory-sharegpt\).*columns found: chosen, conversations"),
    ([{"text": "a", "score": 1}], DataSpec(), r"cannot tell the preference format; columns found: score, text\. "
     r"Accepted: trl .*--data-format NAME"),
    ([{"q": "a", "good": "b", "bad": "c"}], DataSpec(columns="prompt=question,chosen=good,rejected=bad"),
     r"--columns prompt=question: no such column .* columns found: bad, good, q"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}], DataSpec(data_format="llamafactory-alpaca"),
     r"--data-format llamafactory-alpaca expects instruction.*columns found: chosen, prompt, rejected"),
    ([{"conversations": [{"from": "human", "value": "q"}], "chosen": [{"from": "gpt", "value": "a"}],
       "rejected": {"from": "gpt", "value": "b"}}], DataSpec(), r"line 1, field chosen: found a list.*ONE message"),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
       "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}], DataSpec(),
     r"line 1, field conversations: roles \['user', 'assistant'\]"),
    ([{"messages": user("q") + assistant("a"), "rejected_messages": user("other") + assistant("b")}], DataSpec(),
     r"line 1: rejected_messages and messages differ before the last user turn"),
    ([{"instruction": 5, "chosen": "a", "rejected": "b"}], DataSpec(), r"line 1, field instruction: found int 5"),
    ([{"instruction": "i", "chosen": "a", "rejected": "b", "history": [["only one"]]}], DataSpec(),
     r"line 1, field history\[0\]: .*expected \[query, answer\]"),
])
def test_bad_layouts(tmp_path, rows, spec, match):
    with pytest.raises(UserError, match=match):
        to_trl(rows, ["line 1"], tmp_path / "d.jsonl", spec)


@pytest.mark.parametrize("spec,match", [
    (DataSpec(columns="prompt=q,chosen"), r"'chosen' is not ROLE=COLUMN"),
    (DataSpec(columns="promt=q,chosen=a,rejected=b"), r"unknown role 'promt' \(did you mean prompt\?\)"),
    (DataSpec(columns="prompt=q,rejected=b"), r"chosen not mapped"),
    (DataSpec(columns="chosen=a,chosen=b,rejected=c"), r"chosen is mapped twice"),
    (DataSpec(data_format="alpacca"), r"--data-format 'alpacca' is not a format; did you mean alpaca\?"),
    (DataSpec(data_format="ms-swift", columns="chosen=a,rejected=b"), r"ms-swift files use fixed column names"),
    (DataSpec(input_template="User: "), r"has no \{\}; OpenRLHF ignores such a template"),
    (DataSpec(data_format="columns"), r"--data-format columns reads the columns that --columns names"),
    (DataSpec(template="qwen"), r"--template 'qwen'.*empty and default"),
    (DataSpec(data_format="alpaca", input_template="{}"), r"--input-template is OpenRLHF's"),
])
def test_bad_flags(spec, match):
    from dpo_doctor.data.formats import check_spec

    with pytest.raises(UserError, match=match):
        check_spec(spec)


def test_unused_prompt_like_columns_warn(tmp_path):
    rows = [{**r, "system": "be kind", "context": "ctx"} for r in BASE]
    out = to_trl(rows, ["line 1"] * len(rows), tmp_path / "d.jsonl")
    assert len(out.warnings) == 1 and "column(s) context, system" in out.warnings[0]
    assert "--columns prompt=COL,chosen=COL,rejected=COL,system=COL" in out.warnings[0]
    # an empty column, or one that repeats prompt + chosen (UltraFeedback's `messages`), says nothing new
    conv = LAYOUTS["ms-swift-response"][2]
    rows = [{**r, "messages": r["prompt"] + r["chosen"], "input": ""} for r in conv]
    assert not to_trl(rows, ["line 1"] * len(rows), tmp_path / "d.jsonl").warnings
    # with --columns the mapped roles decide what repeats what; an unmapped system-like column is named
    spec, rows, _ = LAYOUTS["columns"]
    rows = [{**r, "system_prompt": "be kind", "text": r["question"]} for r in rows]
    out = to_trl(rows, ["line 1"] * len(rows), tmp_path / "d.jsonl", spec)
    assert len(out.warnings) == 1 and "column(s) system_prompt" in out.warnings[0]
    # forcing TRL turns the implicit-prompt error into the same warning
    rows = [{"question": "q", "chosen": "q a", "rejected": "q b"}]
    forced = to_trl(rows, ["line 1"], tmp_path / "d.jsonl", DataSpec(data_format="trl"))
    assert "column(s) question" in forced.warnings[0]


def test_parse_columns():
    assert parse_columns(" prompt = q , chosen=a,rejected=b,system=s") == {"prompt": "q", "chosen": "a",
                                                                          "rejected": "b", "system": "s"}
    assert parse_columns(None) == {}


# ---- through the console script ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy(tiny_dir, tmp_path_factory):
    """The tiny model with every weight nudged: a 'trained' checkpoint whose margins are not zero."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("policy") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    model.save_pretrained(out)
    PreTrainedTokenizerFast.from_pretrained(tiny_dir).save_pretrained(out)
    return out


def scan_margins(policy, ref, data, out, *flags):
    proc = run_cli("scan", policy, "--ref", ref, "--data", data, "--no-generate", "--out", out,
                   "--cache-dir", out / "cache", *flags, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    margins = pl.read_parquet(out / "pairs.parquet").sort("pair_id")["margin"].to_list()
    layout = report["data"]["data_format"]
    assert (f"read as {layout}" in " ".join(proc.stdout.split())) == (layout != "trl"), proc.stdout  # the summary says so
    return report, margins


TWINS = {"conv": LAYOUTS["llamafactory-alpaca"][2], "conv-system": LAYOUTS["llamafactory-sharegpt"][2],
         "standard": BASE, "template": LAYOUTS["openrlhf-template"][2]}
assert TWINS["conv-system"] == LAYOUTS["ms-swift-response"][2]
CLI_CASES = [  # (layout, its flags, the TRL file it must agree with)
    ("llamafactory-alpaca", [], "conv"),
    ("llamafactory-sharegpt", [], "conv-system"),
    ("ms-swift-response", [], "conv-system"),
    ("openrlhf-template", ["--input-template", "User: {}\nAssistant: "], "template"),
    ("columns", ["--columns", "prompt=question,chosen=good,rejected=bad"], "standard"),
]


@pytest.fixture(scope="module")
def twin_margins(policy, tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("twins")
    cache = {}

    def get(name, rows):
        if name not in cache:
            cache[name] = scan_margins(policy, tiny_dir, write(root / f"{name}.jsonl", rows), root / name)[1]
        return cache[name]
    return get


@pytest.mark.parametrize("layout,flags,twin", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_scan_margins_equal_the_trl_twin(policy, tiny_dir, tmp_path, twin_margins, layout, flags, twin):
    spec, rows, trl = LAYOUTS[layout]
    if layout == "columns":  # plus a system-like column nobody maps: named in report.json's warnings
        rows = [{**r, "system_prompt": "be kind"} for r in rows]
    report, margins = scan_margins(policy, tiny_dir, write(tmp_path / "d.jsonl", rows), tmp_path / "out", *flags)
    expected = twin_margins(twin, TWINS[twin])
    assert report["data"]["data_format"] == DETECTED[layout]
    assert len(margins) == len(BASE) and max(abs(m) for m in margins) > 1e-3  # the policy moved
    assert margins == pytest.approx(expected, abs=1e-6)
    unused = [w for w in report["warnings"] if "does not read them" in w]
    assert [("column(s) system_prompt" in w) for w in unused] == ([True] if layout == "columns" else [])


@pytest.mark.parametrize("rows,flags,needles", [
    ([{"question": "q?", "chosen": "q? a", "rejected": "q? b"}], [], ["d.jsonl", "question", "--columns prompt="]),
    ([{"text": "a"}], [], ["cannot tell the preference format", "columns found: text", "llamafactory-alpaca"]),
    (BASE, ["--columns", "prompt=question,chosen=chosen,rejected=rejected"],
     ["--columns prompt=question", "no such column", "columns found: chosen, prompt, rejected"]),
    (BASE, ["--columns", "prompt:question"], ["--columns", "not ROLE=COLUMN"]),
    (BASE, ["--data-format", "alpacca"], ["--data-format", "did you mean alpaca"]),
    (BASE, ["--data-format", "sharegpt"], ["--data-format llamafactory-sharegpt expects", "columns found"]),
    (BASE, ["--input-template", "User:"], ["--input-template", "no {}"]),
], ids=["unmapped-prompt-column", "unknown-layout", "mapped-column-missing", "columns-syntax", "format-typo",
        "format-does-not-fit", "template-without-braces"])
def test_bad_mappings_are_one_line_exit_2(tiny_dir, tmp_path, rows, flags, needles):
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", write(tmp_path / "d.jsonl", rows), "--no-generate",
                   "--out", tmp_path / "out", *flags)
    assert_user_error(proc, *needles)


# ---- LLaMA-Factory's own tokenization (--template) -----------------------------------------------------------


@pytest.fixture(scope="module")
def plain_tok(tiny_dir):
    """The tiny tokenizer without a chat template: what LLaMA-Factory's `empty` template is used with."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(tiny_dir)
    tok.chat_template = None
    return tok


@pytest.mark.parametrize("source,target,cutoff,expected", [
    (10, 30, 24, (10, 14)),  # short prompt: only the response is cut, to cutoff - prompt
    (30, 5, 24, (19, 5)),  # short response: the prompt is cut
    (20, 30, 24, (10, 14)),  # both long: int(24 * 30 / 50) = 14 for the response, the rest for the prompt
    (3, 4, 1024, (3, 4)),
])
def test_infer_seqlen_hand_worked(source, target, cutoff, expected):
    from dpo_doctor.data.llamafactory import infer_seqlen

    assert infer_seqlen(source, target, cutoff) == expected


def test_template_ids_hand_worked(plain_tok):
    """Each slot encoded alone, no special tokens added; `empty` adds no EOS, `default` adds EOS and a newline."""
    from dpo_doctor.data.llamafactory import pair_ids

    enc = lambda s: plain_tok.encode(s, add_special_tokens=False)  # noqa: E731
    eos = plain_tok.eos_token_id
    prompt = [{"role": "user", "content": "why is it red?\nsay it"}]
    assert pair_ids(plain_tok, "empty", prompt, " it is red.", " no.") == (enc("why is it red?\nsay it"),
                                                                         enc(" it is red."), enc(" no."))
    p, c, r = pair_ids(plain_tok, "default", prompt, " it is red.", " no.", system="be kind")
    assert p == enc("System: be kind") + [eos] + enc("\n") + enc("Human: why is it red?\nsay it") + [eos] + enc(
        "\nAssistant:")
    assert c == enc(" it is red.") + [eos] + enc("\n") and r == enc(" no.") + [eos] + enc("\n")


def test_template_empty_differs_from_trl_by_the_eos_only(tmp_path, plain_tok):
    """The measured gap at a cutoff that cuts nothing (README): TRL appends EOS to the responses, LLaMA-Factory's
    `empty` template does not; prompts agree. A short cutoff cuts the prompt too (TRL never does)."""
    _, rows, _ = LAYOUTS["llamafactory-alpaca"]
    path = write(tmp_path / "d.jsonl", rows)
    trl = load_pairs(path, plain_tok)
    lf = load_pairs(path, plain_tok, spec=DataSpec(template="empty"))
    assert trl.format == lf.format == "standard_explicit"
    for a, b in zip(lf.tokens, trl.tokens):
        assert a.prompt_ids == b.prompt_ids
        assert a.chosen_ids + (plain_tok.eos_token_id,) == b.chosen_ids
        assert a.rejected_ids + (plain_tok.eos_token_id,) == b.rejected_ids
    cut = load_pairs(path, plain_tok, max_length=8, spec=DataSpec(template="empty"))
    assert len(cut.tokens) == len(rows)  # nothing dropped
    assert all(len(t.prompt_ids) + max(len(t.chosen_ids), len(t.rejected_ids)) <= 8 for t in cut.tokens)
    assert any(len(a.prompt_ids) < len(b.prompt_ids) for a, b in zip(cut.tokens, trl.tokens))


def test_template_matches_llamafactory_code(plain_tok):
    """Against LLaMA-Factory's own modules where they import (not in CI: it pins trl<=0.24; see
    benchmarks/llamafactory_parity.py for how to run it beside this environment)."""
    lf_template = pytest.importorskip("llamafactory.data.template")
    from llamafactory.data.processor.processor_utils import infer_seqlen

    from dpo_doctor.data.llamafactory import pair_ids

    for name in ("empty", "default"):
        for r in BASE:
            prompt = [{"role": "user", "content": r["prompt"]}]
            t = lf_template.TEMPLATES[name]
            p, c = t.encode_oneturn(plain_tok, prompt + [{"role": "assistant", "content": r["chosen"]}], "be kind")
            _, j = t.encode_oneturn(plain_tok, prompt + [{"role": "assistant", "content": r["rejected"]}], "be kind")
            s, n = infer_seqlen(len(p), max(len(c), len(j)), 16)
            assert pair_ids(plain_tok, name, prompt, r["chosen"], r["rejected"], "be kind", 16) == (p[:s], c[:n], j[:n])


@pytest.mark.parametrize("flags,needles", [
    (["--template", "qwen"], ["--template 'qwen'", "empty and default", "leave --template out"]),
    (["--template", "empty", "--data-format", "ms-swift"], ["--template empty is LLaMA-Factory's"]),
    (["--template", "empty"], ["--template empty", "read as trl", "--data-format llamafactory-alpaca"]),
], ids=["unknown-template", "template-other-format", "template-on-trl-data"])
def test_bad_template_is_one_line_exit_2(tiny_dir, tmp_path, flags, needles):
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", write(tmp_path / "d.jsonl", BASE), "--no-generate",
                   "--out", tmp_path / "out", *flags)
    assert_user_error(proc, *needles)


def test_llamafactory_run_gets_told_about_its_tokenization(policy, tiny_dir, tmp_path):
    """A run with LLaMA-Factory's trainer_log.jsonl: the scan says its rewards follow TRL's tokenization unless
    --template is given; with --template empty the warning goes and the ids are LLaMA-Factory's."""
    import shutil

    from dpo_doctor.scan.pipeline import ScanConfig, scan

    run = shutil.copytree(policy, tmp_path / "run")
    (run / "trainer_log.jsonl").write_text(json.dumps({"current_steps": 5, "total_steps": 50, "loss": 0.69}) + "\n")
    data = write(tmp_path / "d.jsonl", LAYOUTS["llamafactory-alpaca"][1])
    reports = {}
    for template in (None, "empty"):
        out = scan(ScanConfig(run_dir=run, data=data, ref=tiny_dir, out=tmp_path / f"rep-{template}", template=template,
                              cache_dir=tmp_path / "cache", generate=False, render=False))
        reports[template] = json.loads((out / "report.json").read_text())
    told = [[w for w in r["warnings"] if "LLaMA-Factory trained this run" in w] for r in reports.values()]
    assert [len(t) for t in told] == [1, 0] and "--template empty|default" in told[0][0]
    assert reports["empty"]["settings"]["template"] == "empty"
    assert reports[None]["checkpoints"][-1]["metrics"]["rewards/margins"] != pytest.approx(
        reports["empty"]["checkpoints"][-1]["metrics"]["rewards/margins"], abs=1e-9)  # other ids, other margins
