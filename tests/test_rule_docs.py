"""Rule docstrings (what `dpo-doctor explain CODE` prints) cite sources a user can look up: no internal notes."""

from __future__ import annotations

import re

import pytest

from dpo_doctor import rules as R

INTERNAL_NOTES = ("dpo-literature", "trainers-and-formats", ".md section")
# a bare pointer into those notes' tables ("literature section 10 row 15", "section 4, rows 6 and 7")
TABLE_ROW = re.compile(r"\bsections? \d+[a-z]?(?:-\d*[a-z]?)?,? (?:and \d+[a-z]? )?rows? \d")


@pytest.mark.parametrize("code", sorted(R.RULES))
def test_doc_cites_no_internal_notes(code):
    doc = R.RULES[code].doc
    found = [s for s in INTERNAL_NOTES if s in doc]
    assert not found, f"{code}: docstring cites files users do not have: {found}"
    row = TABLE_ROW.search(" ".join(doc.split()))
    assert row is None, f"{code}: docstring points into a table users do not have: {row.group(0)!r}"


@pytest.mark.parametrize("code", sorted(R.RULES))
def test_doc_has_nonempty_references(code):
    doc = R.RULES[code].doc
    head = "\nReferences\n"
    assert head in doc, f"{code}: no References heading"
    body = doc.split(head, 1)[1].split("\n\n", 1)[0]
    assert body.strip(), f"{code}: References heading is empty"
    assert all(line.startswith("    ") for line in body.strip("\n").splitlines()), f"{code}: References not indented"
