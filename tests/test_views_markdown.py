"""report.md: contents (verdict, diagnoses table, per-checkpoint table, recommendations), escaping of untrusted
text (rendered through a CommonMark parser with GFM tables: no link, image or HTML from data), size bound."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from dpo_doctor.report import load_report
from dpo_doctor.views.markdown import LIMIT, MAX_ROWS, ZWSP, md, render_markdown
from tests.fixtures.report_fixture import write_fixture_report

HOSTILE = ("<script>alert(1)</script> </script><img src=x onerror=alert(1)> [click](javascript:alert(1)) "
           "![x](http://evil/) <https://evil.example> www.evil.com @octocat #123 `code` *em* _u_ a|b $x$")


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.tables = set(), [], []  # tables: cells per row, per table

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += attrs
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.tables[-1][-1] += 1


def rendered(text: str) -> Elements:
    """The HTML a CommonMark + GFM-tables renderer (raw HTML allowed, as GitHub's sanitizer allows <sub>) makes."""
    markdown_it = pytest.importorskip("markdown_it")
    parser = markdown_it.MarkdownIt("commonmark").enable("table").enable("strikethrough")
    out = Elements()
    out.feed(parser.render(text))
    return out


@pytest.mark.parametrize("text, expected", [
    ("[click](javascript:alert(1))", "\\[click\\]\\(javascript:alert\\(1\\)\\)"),
    ("![x](http://evil/)", f"\\!\\[x\\]\\(http:{ZWSP}//evil/\\)"),
    ("<script>alert(1)</script>", "&lt;script&gt;alert\\(1\\)&lt;/script&gt;"),
    ("a | b\nc", "a \\| b c"),
    ("`x` *y* _z_ ~s~ $m$", "\\`x\\` \\*y\\* \\_z\\_ \\~s\\~ \\$m\\$"),
    ("# title", "\\# title"), ("- item", "\\- item"), ("12. item", "12\\. item"),
    ("mail bob@example.com or see www.x.org, #42", f"mail bob@{ZWSP}example.com or see w{ZWSP}ww.x.org, #{ZWSP}42"),
    ("checkpoint-100: fine.", "checkpoint-100: fine."),  # ordinary punctuation stays readable
])
def test_md_escapes(text, expected):
    assert md(text) == expected


def test_contents(tmp_path):
    b = load_report(write_fixture_report(tmp_path / "rep"))
    text = render_markdown(b)
    assert text.startswith("## dpo-doctor: exp-length — **🔴 ERROR**")
    assert "| severity | code | name | checkpoint | finding | evidence (value / threshold) |" in text
    for d in b.raw["diagnoses"]:
        assert f"| {d['code']} |" in text and md(d["recommendation"]["text"]) in text
    assert "gen/length\\_ratio 2 / 1.3" in text
    assert "(beta → 0.3; variant dpop; dpop\\_lambda = 50)" in text
    assert "(variant r\\_dpo; r\\_dpo\\_alpha = 0.05)" in text
    for c in b.raw["checkpoints"]:
        assert f"| {md(c['name'])} | {c['step']} | {c['metrics']['rewards/margins']:.4g} |" in text
    assert "| reference | – |" in text and "**Best checkpoint:** checkpoint-50" in text
    html = rendered(text)
    assert {"table", "h2", "h3", "ul"} <= html.tags


def test_untrusted_text_renders_inert(tmp_path):
    out = write_fixture_report(tmp_path / "bad", texts=HOSTILE, run_name=HOSTILE)
    r = json.loads((out / "report.json").read_text())
    for d in r["diagnoses"]:
        d["name"] = d["code"] = d["checkpoint"] = HOSTILE
        d["recommendation"].update(variant=HOSTILE, params={HOSTILE: HOSTILE})
        d["evidence"][HOSTILE] = {"value": 2.0, "threshold": None}  # numbers only (schema)
    r["checkpoints"][0]["name"] = r["run"]["beta_source"] = r["run"]["loss_type"] = HOSTILE
    (out / "report.json").write_text(json.dumps(r))
    text = render_markdown(load_report(out))
    assert "<script" not in text and "<img" not in text and "<https" not in text
    assert "](javascript:" not in text and "](http" not in text and "http://" not in text and "www.evil" not in text
    assert "@octocat" not in text and "#123" not in text  # no mention, no issue cross-reference
    html = rendered(text)
    assert html.tags <= {"h2", "h3", "p", "strong", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "code",
                         "sub"}, html.tags
    assert not any(k in ("href", "src") or k.startswith("on") for k, _ in html.attrs), html.attrs
    assert [set(rows) for rows in html.tables] == [{6}, {13}]  # escaped pipes never split a table cell


def test_healthy_and_log_only(tmp_path):
    out = write_fixture_report(tmp_path / "rep")
    r = json.loads((out / "report.json").read_text())
    r.update(diagnoses=[], verdict="healthy", checkpoints=[], log_only=True, best_checkpoint=None)
    (out / "report.json").write_text(json.dumps(r))
    text = render_markdown(load_report(out))
    assert "🟢 HEALTHY" in text and "every rule passed" in text and "log-only verdict" in text
    assert "No checkpoint was scored" in text and "What to change" not in text


def test_size_bound_with_many_checkpoints_and_long_messages(tmp_path):
    out = write_fixture_report(tmp_path / "big", n_checkpoints=60, n_pairs=20)
    r = json.loads((out / "report.json").read_text())
    r["diagnoses"] = r["diagnoses"] * 40
    for d in r["diagnoses"]:
        d["message"] = "very long message " * 200
    (out / "report.json").write_text(json.dumps(r))
    text = render_markdown(load_report(out))
    assert len(text) <= LIMIT and text.rstrip().endswith("see report.html)")
    assert " … | " in text  # cells are clipped before the whole comment is cut
    small = render_markdown(load_report(write_fixture_report(tmp_path / "mid", n_checkpoints=60, n_pairs=20)))
    assert sum(ln.startswith("| checkpoint-") for ln in small.splitlines()) == MAX_ROWS
    assert "36 of 60 checkpoints omitted" in small
