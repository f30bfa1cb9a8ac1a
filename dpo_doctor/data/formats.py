"""Other trainers' preference formats, turned into TRL rows with the prompt each trainer builds.

Every file is read as one of these layouts (`--data-format NAME` forces one; otherwise it is detected from the
columns, and a layout that fits none, or several, is an error that lists the columns found):

- `trl`: TRL's four formats (`prompt` optional, `chosen`, `rejected`; strings or message lists). Read by data/pairs.
- `llamafactory-alpaca` (LLaMA-Factory `data/README.md`, `converter.py: AlpacaDatasetConverter`): `instruction`,
  optional `input`, `system`, `history` ([[query, answer], ...]) and `chosen` / `rejected` strings. The user turn is
  `instruction + "\\n" + input` (the non-empty ones, joined by a newline, as LLaMA-Factory joins them), after the
  history turns and the system message.
- `llamafactory-sharegpt` (`SharegptDatasetConverter`): `conversations` (or `messages`) as `{from, value}` (or
  `{role, content}`) messages ending on a user turn, `chosen` / `rejected` ONE message object each, optional `system`
  column or a leading system message.
- `openrlhf` (`openrlhf/datasets/reward_dataset.py: preprocess_data`): keys prompt / chosen / rejected (OpenRLHF's
  `--data.prompt_key/--data.chosen_key/--data.rejected_key`: map other names with `--columns`), `--input-template`
  ("User: {}\\nAssistant: ") applied to string prompts with `str.format`; without a prompt key the prompt is empty
  (strings: the whole text is the response) or every message but the last (message lists). Never detected: its
  columns are TRL's, so say `--data-format openrlhf` or pass `--input-template`.
- `ms-swift` (docs `Customization/Custom-dataset.md`, DPO): `messages` ending on the chosen answer, plus
  `rejected_response` (a string or messages that replace what follows the last user turn) or `rejected_messages`
  (the whole rejected conversation, same prompt).
- `columns` (`--columns prompt=COL,chosen=COL,rejected=COL[,system=COL]`): any other names, read as TRL reads them;
  a system column becomes a system message (the row turns conversational).

A message-based trainer format with one user turn and no system message is scored as TRL's standard strings when the
tokenizer has no chat template: what LLaMA-Factory's `empty` template (its choice without a chat template) renders.
A column that looks like a prompt or system message and that the format does not read is a warning naming it, or an
error when the prompt would otherwise be guessed (TRL's implicit prompt): never silence.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dpo_doctor.data.jsonl import describe
from dpo_doctor.errors import UserError

Row = dict[str, Any]
ROLES = ("prompt", "chosen", "rejected", "system")  # what --columns may map
PROMPT_LIKE = ("instruction", "input", "query", "question", "context", "history", "conversations", "messages",
               "system", "system_prompt", "prompt", "tools", "chat_history", "dialog", "dialogue", "problem")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True)
class DataSpec:
    """How to read the columns of --data: `--data-format`, `--columns`, `--input-template` (all optional)."""

    data_format: str | None = None  # None: detect from the columns
    columns: str | None = None  # "prompt=COL,chosen=COL,rejected=COL[,system=COL]"
    input_template: str | None = None  # OpenRLHF's input_template, "{}" standing for the prompt
    template: str | None = None  # LLaMA-Factory template to tokenize with (data.llamafactory); None: TRL's way


@dataclass(frozen=True)
class Converted:
    """Rows in TRL's shape (prompt optional, chosen, rejected), the format they came in, and what to tell the user."""

    rows: list[Row]
    data_format: str
    detected: bool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Format:
    """One layout: what it needs, the columns it reads, and its row converter (None: rows are already TRL's)."""

    name: str
    shape: str  # the columns, for error messages
    needs: Callable[[set[str]], bool]  # detection: do these columns look like this format?
    reads: tuple[str, ...]  # columns it uses (besides --columns)
    convert: Callable[[Row, str, DataSpec, bool], Row] | None


# ---- small checks shared by the converters -------------------------------------------------------------------


def _text(row: Row, key: str, where: str, optional: bool = False) -> str:
    value = row.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{where}, field {key}: found {describe(value)}; expected a string")
    return value


def _message(m: Any, where: str, field: str, tags: tuple[str, str]) -> Row:
    """A {role, content} message from one {from, value} (or {role, content}) object, its role mapped."""
    role_tag, content_tag = tags
    if not isinstance(m, dict) or role_tag not in m or content_tag not in m:
        raise UserError(f"{where}, field {field}: found {describe(m)}; expected a message object "
                        f'{{"{role_tag}": ..., "{content_tag}": ...}}')
    role, content = m[role_tag], m[content_tag]
    if role not in SHAREGPT_ROLES:
        raise UserError(f"{where}, field {field}: role {role!r} is not one dpo-doctor scores (human/user, gpt/"
                        "assistant, system); tool and function turns are not supported yet: leave those rows out")
    if not isinstance(content, str):
        raise UserError(f"{where}, field {field}.{content_tag}: found {describe(content)}; expected a string")
    return {"role": SHAREGPT_ROLES[role], "content": content}


def _last_user(messages: list[Row], where: str, field: str) -> int:
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise UserError(f"{where}, field {field}: no user message; the prompt is the conversation up to the last "
                        "user turn")
    return users[-1]


def _messages(value: Any, where: str, field: str) -> list[Row]:
    if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
        raise UserError(f"{where}, field {field}: found {describe(value)}; expected a non-empty list of "
                        '{"role": ..., "content": ...} messages')
    return value


def _plain(prompt: list[Row], chosen: list[Row], rejected: list[Row], chat: bool) -> Row:
    """TRL row: conversational, or standard strings when there is no chat template and one user turn says it all."""
    single = len(prompt) == 1 and prompt[0]["role"] == "user" and len(chosen) == len(rejected) == 1
    if not chat and single:
        return {"prompt": prompt[0]["content"], "chosen": chosen[0]["content"], "rejected": rejected[0]["content"]}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _assistant(text: str) -> list[Row]:
    return [{"role": "assistant", "content": text}]


# ---- the converters ------------------------------------------------------------------------------------------


def from_alpaca(row: Row, where: str, spec: DataSpec, chat: bool) -> Row:
    """LLaMA-Factory alpaca: [system] + history turns + user "instruction\\ninput"; chosen/rejected strings."""
    prompt: list[Row] = []
    system = _text(row, "system", where, optional=True)
    if system:
        prompt.append({"role": "system", "content": system})
    history = row.get("history")
    if isinstance(history, list):  # LLaMA-Factory skips a history that is not a list
        for i, turn in enumerate(history):
            if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise UserError(f"{where}, field history[{i}]: found {describe(turn)}; expected [query, answer] "
                                "(two strings)")
            prompt += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    query = [t for t in (_text(row, "instruction", where, optional=True), _text(row, "input", where, optional=True))
             if t]
    if not query:
        raise UserError(f"{where}: instruction and input are both empty; LLaMA-Factory's prompt is "
                        "instruction + \"\\n\" + input")
    prompt.append({"role": "user", "content": "\n".join(query)})
    chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
    return _plain(prompt, _assistant(chosen), _assistant(rejected), chat)


def from_sharegpt(row: Row, where: str, spec: DataSpec, chat: bool) -> Row:
    """LLaMA-Factory sharegpt (or its openai variant): conversation ending on a user turn + one chosen/rejected
    message each; a leading system message or the `system` column becomes the system message."""
    key = "conversations" if "conversations" in row else "messages"
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise UserError(f"{where}, field {key}: found {describe(turns)}; expected a non-empty list of "
                        '{"from": ..., "value": ...} messages')
    tags = ("from", "value") if isinstance(turns[0], dict) and "from" in turns[0] else ("role", "content")
    messages = [_message(m, where, f"{key}[{i}]", tags) for i, m in enumerate(turns)]
    system = _text(row, "system", where, optional=True)
    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(messages))]
    if [m["role"] for m in messages] != expected or len(messages) % 2 == 0:
        raise UserError(f"{where}, field {key}: roles {[m['role'] for m in messages]}; LLaMA-Factory expects user "
                        "and assistant turns alternating from a user turn and ending on one (it skips such rows); "
                        "fix or drop the row")
    responses = []
    for field in ("chosen", "rejected"):
        value = row.get(field)
        if isinstance(value, list):
            raise UserError(f"{where}, field {field}: found a list; LLaMA-Factory's sharegpt format takes ONE "
                            f'message object, e.g. {{"{tags[0]}": "gpt", "{tags[1]}": "..."}}')
        message = _message(value, where, field, tags)
        if message["role"] != "assistant":
            raise UserError(f"{where}, field {field}: role {value.get(tags[0])!r}; the answer must be an assistant "
                            f"(gpt) message")
        responses.append([message])
    prompt = ([{"role": "system", "content": system}] if system else []) + messages
    return _plain(prompt, responses[0], responses[1], chat)


def from_swift(row: Row, where: str, spec: DataSpec, chat: bool) -> Row:
    """ms-swift: `messages` ends on the chosen answer; the prompt is everything up to the last user turn."""
    messages = _messages(row.get("messages"), where, "messages")
    cut = _last_user(messages, where, "messages") + 1
    prompt, chosen = messages[:cut], messages[cut:]
    if not chosen:
        raise UserError(f"{where}, field messages: ends on a user turn; ms-swift's messages end on the chosen answer")
    if row.get("rejected_messages") is not None:
        other = _messages(row["rejected_messages"], where, "rejected_messages")
        cut_r = _last_user(other, where, "rejected_messages") + 1
        if other[:cut_r] != prompt:
            raise UserError(f"{where}: rejected_messages and messages differ before the last user turn; a pair "
                            "shares its prompt")
        rejected = other[cut_r:]
    else:
        value = row.get("rejected_response")
        if isinstance(value, str):
            rejected = _assistant(value)
        elif isinstance(value, list):
            rejected = _messages(value, where, "rejected_response")
        else:
            raise UserError(f"{where}, field rejected_response: found {describe(value)}; expected a string or a "
                            "message list (or give rejected_messages)")
    if not rejected:
        raise UserError(f"{where}, field rejected_messages: nothing after the last user turn; expected the "
                        "rejected answer there")
    if all(m.get("role") == "assistant" and isinstance(m.get("content"), str) for m in chosen + rejected):
        return _plain(prompt, chosen, rejected, chat)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def from_openrlhf(row: Row, where: str, spec: DataSpec, chat: bool) -> Row:
    """OpenRLHF `preprocess_data`: input_template.format(prompt); no prompt key: empty prompt (strings) or every
    message but the last (message lists)."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if row.get("prompt") is None:
        if isinstance(chosen, list) and isinstance(rejected, list) and chosen and rejected:
            if chosen[:-1] != rejected[:-1]:
                raise UserError(f"{where}: chosen and rejected differ before their last message; without a prompt "
                                "key OpenRLHF takes the prompt from chosen[:-1], so both must share it")
            return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}
        return {"prompt": "", "chosen": chosen, "rejected": rejected}
    prompt = row["prompt"]
    if spec.input_template and isinstance(prompt, str):
        try:
            prompt = spec.input_template.format(prompt)
        except (IndexError, KeyError, ValueError) as exc:
            raise UserError(f"--input-template {spec.input_template!r}: str.format fails ({type(exc).__name__}: "
                            f"{exc}); OpenRLHF fills one {{}} with the prompt, write other braces as {{{{ }}}}") from None
    elif spec.input_template:
        raise UserError(f"{where}, field prompt: a message list, but --input-template applies to string prompts "
                        "(OpenRLHF uses the chat template for messages); drop --input-template")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def from_columns(row: Row, where: str, spec: DataSpec, chat: bool) -> Row:
    """--columns with a system column: the system message goes before the prompt (strings become messages)."""
    system = row.pop("system", None)
    if system in (None, ""):
        return row
    if not isinstance(system, str):
        raise UserError(f"{where}, field system: found {describe(system)}; expected a string")
    if "prompt" not in row:
        raise UserError(f"{where}: --columns maps system but not prompt; map both, e.g. "
                        "--columns prompt=question,system=system,chosen=...,rejected=...")
    wrap = lambda v, role: [{"role": role, "content": v}] if isinstance(v, str) else v  # noqa: E731
    return {"prompt": [{"role": "system", "content": system}, *wrap(row["prompt"], "user")],
            "chosen": wrap(row["chosen"], "assistant"), "rejected": wrap(row["rejected"], "assistant")}


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("trl", "prompt (optional), chosen, rejected",
           lambda c: {"chosen", "rejected"} <= c, ("prompt", "chosen", "rejected"), None),
    Format("llamafactory-alpaca", "instruction, input (optional), system, history, chosen, rejected",
           lambda c: {"instruction", "chosen", "rejected"} <= c,
           ("instruction", "input", "system", "history", "chosen", "rejected"), from_alpaca),
    Format("llamafactory-sharegpt", "conversations ({from, value} messages), chosen, rejected (one message each), "
           "system, tools", lambda c: {"conversations", "chosen", "rejected"} <= c,
           ("conversations", "messages", "system", "chosen", "rejected"), from_sharegpt),
    Format("openrlhf", "prompt (optional), chosen, rejected, with --input-template",
           lambda c: False, ("prompt", "chosen", "rejected"), from_openrlhf),
    Format("ms-swift", "messages + rejected_response or rejected_messages",
           lambda c: "messages" in c and bool({"rejected_response", "rejected_messages"} & c),
           ("messages", "rejected_response", "rejected_messages"), from_swift),
    Format("columns", "--columns prompt=COL,chosen=COL,rejected=COL[,system=COL]",
           lambda c: False, ("prompt", "chosen", "rejected", "system"), from_columns),
)}
ALIASES = {"alpaca": "llamafactory-alpaca", "sharegpt": "llamafactory-sharegpt", "swift": "ms-swift",
           "llamafactory": "llamafactory", "llama-factory": "llamafactory"}  # llamafactory: alpaca or sharegpt
ACCEPTED = "; ".join(f"{f.name} ({f.shape})" for f in FORMATS.values())


# ---- flags -----------------------------------------------------------------------------------------------------


def format_name(name: str | None) -> str | None:
    """The canonical --data-format name (aliases resolved); unknown names suggest the nearest one."""
    if name is None:
        return None
    key = name.strip().lower().replace("_", "-")
    if key in FORMATS or key in ALIASES:
        return ALIASES.get(key, key)
    close = difflib.get_close_matches(key, [*FORMATS, *ALIASES], n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ";"
    raise UserError(f"--data-format {name!r} is not a format{hint} use one of {', '.join(FORMATS)} (or alpaca, "
                    "sharegpt, llamafactory, swift)")


def parse_columns(text: str | None) -> dict[str, str]:
    """`prompt=COL,chosen=COL,rejected=COL[,system=COL]` -> {role: column}; a malformed entry is a UserError."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        role, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not role or not column:
            raise UserError(f"--columns {text!r}: {part.strip()!r} is not ROLE=COLUMN; write e.g. "
                            "--columns prompt=question,chosen=good,rejected=bad")
        if role not in ROLES:
            close = difflib.get_close_matches(role, ROLES, n=1)
            raise UserError(f"--columns {text!r}: unknown role {role!r}{f' (did you mean {close[0]}?)' if close else ''}"
                            f"; the roles are {', '.join(ROLES)}")
        if role in out:
            raise UserError(f"--columns {text!r}: {role} is mapped twice; map each role once")
        out[role] = column
    missing = [r for r in ("chosen", "rejected") if r not in out]
    if missing:
        raise UserError(f"--columns {text!r}: {' and '.join(missing)} not mapped; --columns needs at least "
                        "chosen=COL,rejected=COL (prompt=COL and system=COL optional)")
    return out


def check_spec(spec: DataSpec) -> DataSpec:
    """Flag-level checks (no file read): names, --columns syntax, where --columns and --input-template apply."""
    name = format_name(spec.data_format)
    parse_columns(spec.columns)
    if name == "columns" and not spec.columns:
        raise UserError("--data-format columns reads the columns that --columns names; add --columns "
                        "prompt=COL,chosen=COL,rejected=COL[,system=COL]")
    if spec.columns and name not in (None, "trl", "openrlhf", "columns"):
        raise UserError(f"--columns with --data-format {spec.data_format}: {name} files use fixed column names; "
                        "drop --columns, or rename the columns to that format's")
    if "system" in parse_columns(spec.columns) and name not in (None, "trl", "columns"):
        raise UserError(f"--columns system=...: {name} has no system column (OpenRLHF puts everything in the prompt "
                        "or its messages); drop system= or use --data-format trl")
    if spec.template is not None:
        from dpo_doctor.data.llamafactory import check_template

        check_template(spec.template)
        if name not in (None, "llamafactory", "llamafactory-alpaca", "llamafactory-sharegpt"):
            raise UserError(f"--template {spec.template} is LLaMA-Factory's; it does not apply to --data-format "
                            f"{spec.data_format}")
    if spec.input_template is not None:
        if name not in (None, "openrlhf"):
            raise UserError(f"--input-template is OpenRLHF's; it does not apply to --data-format {spec.data_format}")
        if "{}" not in spec.input_template:
            raise UserError(f"--input-template {spec.input_template!r} has no {{}}; OpenRLHF ignores such a template "
                            "(it warns and sets it to None), so drop the flag, or put {} where the prompt goes")
    return spec


# ---- reading a file's rows -----------------------------------------------------------------------------------


def _columns(rows: list[Row]) -> set[str]:
    found: set[str] = set()
    for row in rows:
        found.update(str(k) for k in row)
    return found


def _listing(columns: set[str]) -> str:
    shown = sorted(columns)
    return ", ".join(shown[:20]) + (f" (+{len(shown) - 20} more)" if len(shown) > 20 else "")


def detect(columns: set[str], path: Path) -> str:
    """The format these columns fit; several (or none, where no TRL column is there either) is a UserError."""
    fits = [f.name for f in FORMATS.values() if f.name != "trl" and f.needs(columns)]
    if len(fits) > 1:
        raise UserError(f"{path}: the columns fit several formats ({', '.join(fits)}); columns found: "
                        f"{_listing(columns)}; pass --data-format NAME")
    if fits:
        return fits[0]
    if columns & {"prompt", "chosen", "rejected"}:
        return "trl"  # TRL's reader names what is missing, row by row
    raise UserError(f"{path}: cannot tell the preference format; columns found: {_listing(columns)}. Accepted: "
                    f"{ACCEPTED}. Pass --data-format NAME or --columns prompt=COL,chosen=COL,rejected=COL")


def _resolve(columns: set[str], spec: DataSpec, path: Path) -> tuple[str, bool]:
    """(format, detected)."""
    name = format_name(spec.data_format)
    if name == "llamafactory":
        lf = [n for n in ("llamafactory-sharegpt", "llamafactory-alpaca") if FORMATS[n].needs(columns)]
        if len(lf) != 1:
            raise UserError(f"{path}: --data-format llamafactory, but the columns fit "
                            f"{' and '.join(lf) if lf else 'neither its alpaca nor its sharegpt layout'}; columns "
                            f"found: {_listing(columns)}. Accepted: {FORMATS['llamafactory-alpaca'].shape} or "
                            f"{FORMATS['llamafactory-sharegpt'].shape}")
        return lf[0], False
    if name == "trl" and spec.columns:
        return "columns", False  # TRL's reading of mapped columns, with the system column applied
    if name == "llamafactory-sharegpt" and {"messages", "chosen", "rejected"} <= columns:
        return name, False  # its openai variant: {role, content} messages under `messages`
    if name is not None:
        if name not in ("trl", "openrlhf", "columns") and not FORMATS[name].needs(columns):
            raise UserError(f"{path}: --data-format {name} expects {FORMATS[name].shape}; columns found: "
                            f"{_listing(columns)}")
        return name, False
    if spec.input_template is not None:
        return "openrlhf", False
    if spec.columns:
        return "columns", False
    return detect(columns, path), True


def _mapped(rows: list[Row], labels: list[str], mapping: dict[str, str], path: Path) -> list[Row]:
    """Rows with the --columns sources renamed to their roles (other columns dropped: they are checked apart)."""
    found = _columns(rows)
    absent = [f"{role}={col}" for role, col in mapping.items() if col not in found]
    if absent:
        raise UserError(f"--columns {','.join(absent)}: no such column in {path}; columns found: {_listing(found)}")
    out = []
    for row, label in zip(rows, labels):
        missing = [col for col in mapping.values() if col not in row]
        if missing:
            raise UserError(f"{path}: {label}: no column {missing[0]!r} (named by --columns); found "
                            f"{sorted(map(str, row))}")
        out.append({role: row[col] for role, col in mapping.items()})
    return out


def _has_value(rows: list[Row], column: str) -> bool:
    return any(row.get(column) not in (None, "", [], {}) for row in rows)


def _redundant(rows: list[Row], mapped: list[Row], column: str) -> bool:
    """A column that only repeats the prompt, the chosen answer, or the prompt + chosen conversation (UltraFeedback's
    `messages`); `mapped` holds the same rows with the prompt and answers under their roles."""
    def same(row: Row, roles: Row) -> bool:
        value, prompt, chosen = row.get(column), roles.get("prompt"), roles.get("chosen")
        if value in (None, "", []) or value == prompt or value == chosen:
            return True
        both = (str, list)
        return any(isinstance(prompt, t) and isinstance(chosen, t) for t in both) and value == prompt + chosen
    return all(same(row, roles) for row, roles in zip(rows, mapped))


def unused_columns(rows: list[Row], mapped: list[Row], used: set[str], path: Path, name: str, detected: bool,
                   implicit: bool) -> list[str]:
    """Warnings for prompt- or system-like columns the format does not read; an error when the prompt would be
    guessed (TRL's implicit prompt) while such a column holds text and the format was not forced."""
    unused = sorted(c for c in _columns(rows) - used
                    if c.lower() in PROMPT_LIKE and _has_value(rows, c) and not _redundant(rows, mapped, c))
    if not unused:
        return []
    names = ", ".join(unused)
    if implicit and detected:
        raise UserError(f"{path}: column(s) {names} look like the prompt, but without a prompt column the prompt is "
                        f"guessed as the common start of chosen and rejected (TRL's implicit format) and {names} "
                        "would be dropped; map it: --columns prompt=COLUMN,chosen=COLUMN,rejected=COLUMN, or "
                        "--data-format NAME (accepted: " + ", ".join(FORMATS) + ")")
    how = ("--columns prompt=COL,chosen=COL,rejected=COL,system=COL" if name in ("trl", "columns", "openrlhf")
           else "rename them to what the format reads")
    return [f"column(s) {names} of {path} look like a prompt or system message, but the {name} format does not "
            f"read them: the pairs are scored without them. If they belong in the prompt, use {how}"]


def to_trl(rows: list[Row], labels: list[str], path: Path, spec: DataSpec = DataSpec(), chat: bool = True) -> Converted:
    """Every row in TRL's shape, converted as its trainer builds the prompt; the format and the warnings with it."""
    spec = check_spec(spec)
    name, detected = _resolve(_columns(rows), spec, path)
    fmt = FORMATS[name]
    mapping = parse_columns(spec.columns)
    source = _mapped(rows, labels, mapping, path) if mapping else rows
    warnings = []
    if mapping:
        used = set(mapping.values())
    else:
        used = set(fmt.reads) | ({"tools"} if name == "llamafactory-sharegpt" else set())
    implicit = name == "trl" and not any(r.get("prompt") is not None for r in source)
    warnings += unused_columns(rows, source, used, path, name, detected, implicit)
    if name == "llamafactory-sharegpt" and _has_value(rows, "tools"):
        warnings.append(f"{path}: the tools column is not applied (LLaMA-Factory puts tool descriptions in the "
                        "system message with its own template): pairs are scored without them")
    if spec.input_template and "\\n" in spec.input_template:
        warnings.append(f"--input-template {spec.input_template!r} holds a backslash-n, not a newline (as OpenRLHF "
                        "warns); kept as written, which is what OpenRLHF trained on if you passed it the same way")
    if spec.template is not None and not name.startswith("llamafactory"):
        raise UserError(f"--template {spec.template} tokenizes as LLaMA-Factory does, but {path} was read as {name}; "
                        "pass --data-format llamafactory-alpaca or llamafactory-sharegpt, or drop --template")
    if fmt.convert is not None:
        source = [fmt.convert(dict(row), f"{path}: {label}", spec, chat) for row, label in zip(source, labels)]
    return Converted(rows=source, data_format=name, detected=detected, warnings=tuple(warnings))
