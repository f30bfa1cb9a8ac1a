"""The one JSON / JSONL reader: strict UTF-8, one-line errors naming file and line, no lone surrogates.

Every JSON-ish input dpo-doctor reads from a user (pairs, prompt files; trainer logs may adopt it) goes through here,
so a bad file ends in the same kind of `UserError` whatever reads it:

- bytes are decoded as strict UTF-8 (a leading BOM is dropped); a bad byte is named by line and byte offset;
- a line that is not JSON, nests deeper than Python can parse (`[[[[...`), or holds an integer too long to convert
  is named by line;
- a lone UTF-16 surrogate (a `\\ud800` escape, which json accepts but tokenizers and Arrow reject) is named by
  line and field.

API: `read_text(path)`, `read_jsonl(path, what) -> list[Line]` (objects only, blank lines skipped),
`read_json(path) -> Any`, `loads(text, where)`, `describe(value)` (a type and short repr for messages).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dpo_doctor.errors import UserError

_MAYBE_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")  # only \u escapes can make a surrogate after strict UTF-8
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Line:
    """One JSON object of a JSONL file and its 1-based line number."""

    lineno: int
    obj: dict[str, Any]


def read_bytes(path: Path, what: str = "file") -> bytes:
    """The file's bytes; a missing, unreadable or folder path becomes a one-line UserError."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder; pass a file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}; check its permissions") from None


def decode(data: bytes, path: Path) -> str:
    """Strict UTF-8 (BOM dropped); a bad byte names its line and byte offset and how to re-encode."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.start + 1].hex()
        raise UserError(f"{path}: line {line}, byte offset {exc.start} is not valid UTF-8 (0x{bad}). Re-encode the "
                        f"file as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: Path, what: str = "file") -> str:
    """Read and strictly decode a text file (see `decode`)."""
    return decode(read_bytes(path, what), Path(path))


def describe(value: Any) -> str:
    """A type and a short repr for error messages: `null`, `int 5`, `dict {"a": 1}`, `str 'abc...'`."""
    if value is None:
        return "null"
    try:
        shown = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{type(value).__name__} {shown}"


def field_path(path: tuple) -> str:
    """('chosen', 1, 'content') -> 'chosen[1].content' (a surrogate in a key shown as its escape)."""
    out = ""
    for key in path:
        key = key if isinstance(key, int) else str(key).encode("utf-8", "backslashreplace").decode()
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(top level)"


def find_surrogate(obj: Any) -> tuple | None:
    """Path of the first string (value or key) holding a lone surrogate, or None. Iterative: no depth limit."""
    stack: list[tuple[tuple, Any]] = [((), obj)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return where
        elif isinstance(value, dict):
            for k, v in reversed(list(value.items())):
                if isinstance(k, str) and _SURROGATE.search(k):
                    return (*where, k)
                stack.append(((*where, k), v))
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(value))))
    return None


def loads(text: str, where: str) -> Any:
    """json.loads with every failure a UserError naming `where` ("FILE: line N"); lone surrogates rejected."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if "\n" in text.strip() else f"column {exc.colno}"
        raise UserError(f"{where}: not valid JSON ({exc.msg} at {at}); fix or delete it") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply to parse (thousands of [ or {{); that is not data, fix or "
                        "delete it") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts (4300 digits)
        raise UserError(f"{where}: unreadable JSON value ({str(exc).split(':')[0][:100]}); fix or delete it") from None
    if _MAYBE_SURROGATE.search(text):
        bad = find_surrogate(obj)
        if bad is not None:
            raise UserError(f"{where}, field {field_path(bad)}: a lone UTF-16 surrogate escape (\\ud800-\\udfff) that "
                            "tokenizers cannot encode; remove it or fix the escape (emoji need a \\ud83d\\ude00-style "
                            "pair)")
    return obj


def read_jsonl(path: Path, what: str = "file", on_error: Callable[[int, str], None] | None = None) -> list[Line]:
    """The JSON objects of a JSONL file with their line numbers; blank lines skipped, anything else named.

    A bad line raises a UserError naming it; with `on_error(lineno, message)` it is reported there and skipped
    instead (training logs: a broken line must never end a scan)."""
    path = Path(path)
    lines = []
    for lineno, line in enumerate(read_text(path, what).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = loads(line, f"{path}: line {lineno}")
            if not isinstance(obj, dict):
                raise UserError(f"{path}: line {lineno}: expected a JSON object ({{...}}) per line, found "
                                f"{describe(obj)}; wrap each record in an object")
        except UserError as exc:
            if on_error is None:
                raise
            on_error(lineno, str(exc))
            continue
        lines.append(Line(lineno, obj))
    return lines


def read_json(path: Path, what: str = "file") -> Any:
    """A whole .json file, with the same decoding and error treatment as JSONL."""
    return loads(read_text(path, what), str(path))
