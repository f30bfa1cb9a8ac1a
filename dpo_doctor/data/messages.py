"""What a text field of a data row must look like: a string, or a list of `{"role": str, "content": str}` messages.

Shared by the pairs and the prompt files, so a bad value reads the same wherever it is: the place (file and line or
row), the field, what was found (type and short repr) and what is expected.
"""

from __future__ import annotations

import difflib
from typing import Any

from dpo_doctor.data.jsonl import describe
from dpo_doctor.errors import UserError

EXPECTED = 'a string or a list of {"role": str, "content": str} messages'


def misspelled(expected: list[str], found) -> str:
    """' (rejectd looks like a misspelling of rejected)' when a found key is close to a missing one, else ''."""
    for want in expected:
        close = difflib.get_close_matches(want, [str(k) for k in found], n=1, cutoff=0.6)
        if close:
            return f" ({close[0]!r} looks like a misspelling of {want!r}; rename it)"
    return ""


def check_messages(value: list, where: str, field: str) -> list[dict]:
    """A non-empty list of dicts with string role and content (extra keys kept for the chat template)."""
    if not value:
        raise UserError(f"{where}, field {field}: empty message list; expected at least one "
                        '{"role": ..., "content": ...} message')
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise UserError(f"{where}, field {field}[{i}]: found {describe(m)}; expected a message object "
                            '{"role": str, "content": str}')
        missing = [k for k in ("role", "content") if k not in m]
        if missing:
            raise UserError(f"{where}, field {field}[{i}]: message has no {' or '.join(missing)} (keys: "
                            f"{sorted(map(str, m))}); every message needs \"role\" and \"content\"")
        for key in ("role", "content"):
            if not isinstance(m[key], str):
                raise UserError(f"{where}, field {field}[{i}].{key}: found {describe(m[key])}; expected a string")
    return value


def check_text(value: Any, where: str, field: str) -> str | list[dict]:
    """`value` if it is a string or a valid message list, else a UserError naming where, field, what and why."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return check_messages(value, where, field)
    raise UserError(f"{where}, field {field}: found {describe(value)}; expected {EXPECTED}")
