"""Hostile data and prompt files through the installed console script: one clear line and exit 2, never a traceback.

Every case runs `dpo-doctor scan MODEL --ref MODEL --data BAD --no-generate` in a subprocess; validation happens
before any model weights load, so each case costs about the CLI's start-up time.
"""

import json
import shutil

import polars as pl
import pytest

from tests.conftest import make_pairs
from tests.hostile.conftest import assert_user_error, run_cli

GOOD = {"prompt": "what is the cat?", "chosen": " the cat sat.", "rejected": " a dog ran."}
GOOD2 = {"prompt": "why is it red?", "chosen": " it is red.", "rejected": " no."}


def msgs(role, content):
    return [{"role": role, "content": content}]


CONV = {"prompt": msgs("user", "hi?"), "chosen": msgs("assistant", "yes."), "rejected": msgs("assistant", "no.")}
CONV2 = {"prompt": msgs("user", "why?"), "chosen": msgs("assistant", "it is."), "rejected": msgs("assistant", "no.")}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def with_(row, **fields):
    return {**row, **fields}


def without(row, *keys):
    return {k: v for k, v in row.items() if k not in keys}


def parquet(rows):
    return lambda path: pl.DataFrame(rows).write_parquet(path)


# (id, file name, content: str | bytes | callable(path), needles the one-line error must contain)
CASES = [
    ("latin1-byte", "d.jsonl", jsonl(GOOD).encode() + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n',
     ["d.jsonl", "line 2", "byte offset", "not valid UTF-8", "0xe9", "iconv"]),
    ("bad-json-line", "d.jsonl", jsonl(GOOD, GOOD2, '{"prompt": "x", "chosen": '),
     ["d.jsonl", "line 3", "not valid JSON"]),
    ("nesting-bomb", "d.jsonl", jsonl(GOOD, "[" * 100_000), ["d.jsonl", "line 2", "nested too deeply"]),
    ("huge-int", "d.jsonl", jsonl(GOOD, '{"chosen": ' + "9" * 5000 + "}"), ["line 2", "unreadable JSON value"]),
    ("lone-surrogate", "d.jsonl", jsonl(GOOD, '{"prompt": "a", "chosen": "x\\ud800y", "rejected": "b"}'),
     ["line 2", "field chosen", "surrogate", "remove it or fix the escape"]),
    ("surrogate-in-message", "d.jsonl",
     jsonl(CONV, '{"chosen": [{"role": "assistant", "content": "\\udfff"}], "rejected": [], "prompt": []}'),
     ["line 2", "chosen[0].content", "surrogate"]),
    ("line-not-object", "d.jsonl", jsonl(GOOD, [1, 2]), ["line 2", "expected a JSON object", "list"]),
    ("chosen-null", "d.jsonl", jsonl(GOOD, with_(GOOD2, chosen=None)), ["line 2", "field chosen", "null", "expected"]),
    ("rejected-int", "d.jsonl", jsonl(GOOD, with_(GOOD2, rejected=5)), ["line 2", "field rejected", "int 5"]),
    ("prompt-float", "d.jsonl", jsonl(with_(GOOD, prompt=1.5), GOOD2), ["line 1", "field prompt", "float 1.5"]),
    ("chosen-dict", "d.jsonl", jsonl(GOOD, with_(GOOD2, chosen={"text": "x"})),
     ["line 2", "field chosen", "dict", '"role": str']),
    ("message-no-role", "d.jsonl", jsonl(CONV, with_(CONV2, chosen=[{"content": "x"}])),
     ["line 2", "chosen[0]", "no role"]),
    ("message-content-int", "d.jsonl", jsonl(CONV, with_(CONV2, rejected=[{"role": "assistant", "content": 3}])),
     ["line 2", "rejected[0].content", "int 3", "expected a string"]),
    ("message-not-object", "d.jsonl", jsonl(with_(CONV, prompt=["hi"]), CONV2),
     ["line 1", "prompt[0]", "str", "message object"]),
    ("empty-message-list", "d.jsonl", jsonl(CONV, with_(CONV2, chosen=[])), ["line 2", "chosen", "empty message list"]),
    ("mixed-formats", "d.jsonl", jsonl(GOOD, GOOD2, CONV), ["line 3", "conversational", "line 1", "one format"]),
    ("chosen-rejected-kinds", "d.jsonl", jsonl(with_(CONV, rejected="no.")), ["line 1", "both strings or both"]),
    ("prompt-kind-differs", "d.jsonl", jsonl(with_(CONV, prompt="hi?")), ["line 1", "prompt is standard"]),
    ("prompt-missing-some-rows", "d.jsonl", jsonl(GOOD, without(GOOD2, "prompt")), ["line 2", "no prompt field"]),
    ("missing-columns", "d.jsonl", jsonl({"prompt": "a", "chosen": "b", "rejectd": "c"}),
     ["line 1", "missing column", "rejected", "misspelling of 'rejected'"]),
    ("all-identical", "d.jsonl", jsonl(with_(GOOD, rejected=GOOD["chosen"]), with_(GOOD2, rejected=GOOD2["chosen"])),
     ["every pair has chosen == rejected", "2 of 2"]),
    ("empty-file", "d.jsonl", "", ["d.jsonl", "empty"]),
    ("blank-lines-only", "d.jsonl", "\n  \n\n", ["d.jsonl", "empty"]),
    ("unknown-extension", "d.txt", jsonl(GOOD), ["d.txt", "unknown data format", ".jsonl"]),
    ("misspelled-extension", "d.jsnl", jsonl(GOOD), ["did you mean .jsonl"]),
    ("missing-file", None, None, ["nope.jsonl"]),
    ("plain-folder", "folder", lambda path: (path.mkdir(), (path / "weights.bin").write_text("x")),
     ["folder", "not a datasets.save_to_disk folder"]),
    ("broken-saved-dataset", "saved", lambda path: (path.mkdir(), (path / "dataset_info.json").write_text("{}")),
     ["saved", "cannot load"]),
    ("csv-missing-column", "d.csv", "prompt,chosen\nq,a\n", ["d.csv", "row index 0", "missing column", "rejected"]),
    ("csv-latin1", "d.csv", b"prompt,chosen,rejected\nq,caf\xe9,b\n", ["d.csv", "line 2", "byte offset", "UTF-8"]),
    ("parquet-missing-column", "d.parquet", parquet([{"prompt": "q", "chosen": "a"}]),
     ["d.parquet", "missing column", "rejected"]),
    ("parquet-null-chosen", "d.parquet", parquet([GOOD, with_(GOOD2, chosen=None)]),
     ["d.parquet", "row index 1", "field chosen", "null"]),
    ("parquet-garbage", "d.parquet", b"PAR1 not really parquet", ["d.parquet", "cannot read as PARQUET"]),
    ("json-nesting-bomb", "d.json", "[" * 100_000, ["d.json", "nested too deeply"]),
    ("json-latin1", "d.json", b'[{"prompt": "\xff"}]', ["d.json", "line 1", "byte offset 13", "UTF-8"]),
    ("json-surrogate", "d.json", '[{"prompt": "a", "chosen": "b", "rejected": "\\udc00"}]',
     ["d.json", "[0].rejected", "surrogate"]),
    ("json-syntax", "d.json", '[\n{"prompt": "a",\n "chosen": }\n]', ["d.json", "line 3", "not valid JSON"]),
    ("json-scalar", "d.json", "42", ["d.json", "int 42", "expected a JSON list"]),
    ("json-row-not-object", "d.json", json.dumps([GOOD, "oops"]), ["d.json", "row index 1", "str"]),
    ("json-columns-uneven", "d.json", json.dumps({"prompt": ["a", "b"], "chosen": ["c"], "rejected": ["d", "e"]}),
     ["d.json", "different lengths"]),
]


def _write(tmp_path, name, content):
    path = tmp_path / (name or "nope.jsonl")
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("name,content,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_exit_2(tiny_dir, tmp_path, name, content, needles):
    data = _write(tmp_path, name, content)
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", data, "--no-generate", "--out", tmp_path / "out")
    assert_user_error(proc, *needles)


@pytest.fixture(scope="module")
def odd_templates(tiny_dir, tmp_path_factory):
    """Copies of the tiny model: one without a chat template, one the sandbox refuses, one that raises."""
    root = tmp_path_factory.mktemp("templates")
    dirs = {}
    for name, template in [("none", None), ("unsafe", "{{ messages.__class__.__mro__ }}"),
                           ("raises", "{{ raise_exception('Conversation roles must alternate') }}")]:
        dirs[name] = shutil.copytree(tiny_dir, root / name)
        (dirs[name] / "chat_template.jinja").unlink()
        if template:
            (dirs[name] / "chat_template.jinja").write_text(template)
    return dirs


@pytest.mark.parametrize("which,needles", [
    ("none", ["no chat template", "none", "plain strings"]),
    ("unsafe", ["line 1", "SecurityError", "unsafe", "original template"]),
    ("raises", ["line 1", "TemplateError", "roles must alternate"]),
])
def test_chat_template_problems(odd_templates, tmp_path, which, needles):
    data = _write(tmp_path, "conv.jsonl", jsonl(CONV, CONV2))
    model = odd_templates[which]
    proc = run_cli("scan", model, "--ref", model, "--data", data, "--no-generate", "--out", tmp_path / "out")
    assert_user_error(proc, str(model), *needles)


@pytest.mark.parametrize("content,needles", [
    (jsonl({"prompt": 5}), ["p.jsonl", "line 1", "field prompt", "int 5"]),
    (b'{"prompt": "\xe9"}\n', ["p.jsonl", "line 1", "byte offset", "UTF-8"]),
    (jsonl({"prompt": "ok"}, {"promt": "x"}), ["line 2", "no \"prompt\" key", "misspelling of 'prompt'"]),
], ids=["prompt-int", "prompt-latin1", "prompt-key-typo"])
def test_bad_prompt_file(tiny_dir, tmp_path, content, needles):
    """--prompts goes through the same reader and field checks (read when generation starts)."""
    data = _write(tmp_path, "d.jsonl", jsonl(*make_pairs(4)))
    prompts = _write(tmp_path, "p.jsonl", content)
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", data, "--prompts", prompts, "--max-new-tokens", "2",
                   "--max-prompts", "2", "--out", tmp_path / "out")
    assert_user_error(proc, *needles)


def test_good_data_still_scans_and_warns_on_repeats(tiny_dir, tmp_path):
    """Good data exits 0; repeated rows reach report.json's warnings with counts."""
    rows = make_pairs(6)
    data = _write(tmp_path, "d.jsonl", "\ufeff" + jsonl(*rows, rows[0], rows[0], rows[1]) + "\n\n")
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", data, "--no-generate", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    warnings = json.loads((tmp_path / "out" / "report.json").read_text())["warnings"]
    assert any("3 of 9 row(s)" in w and "repeat an earlier row" in w and "up to 3x" in w for w in warnings), warnings
