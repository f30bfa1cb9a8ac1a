"""Preference data read by `datasets.load_dataset`: a Hub dataset id, or a local folder of data files.

`--data org/prefs[@rev][:config][:split]`, or `--data FOLDER[:config][:split]` for a folder of parquet/jsonl/json/
csv files (a repo snapshot with data/ files, a README with `configs:`...). A Hub id is first turned into its snapshot
folder by `dpo_doctor.hub` (the huggingface_hub cache offline, the Hub online), then that folder is read like a
local one. Going through the snapshot rather than `load_dataset("org/prefs")` is what makes offline work: datasets'
own offline path needs its own cache, filled by an earlier online load, while a snapshot from `hf download` is
enough here. Rows are streamed (no Arrow copy written) and then go through the same checks as a local file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpo_doctor.errors import UserError
from dpo_doctor.hub import parse_hub_id, snapshot

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".tsv", ".txt")  # a file name, never a Hub id
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json")  # a datasets.save_to_disk folder: pairs.py reads it


@dataclass(frozen=True)
class DataSource:
    """What `load_dataset` reads: `folder`, with the `:config:split` parts given; `name` as the user wrote it."""

    name: str
    folder: Path
    parts: tuple[str, ...]  # (), (config or split,), (config, split)
    from_hub: bool


def _spec(text: str) -> tuple[str, tuple[str, ...]] | None:
    """(source, [config, split] parts) of `SOURCE[:a][:b]`; None when `text` is no load_dataset source."""
    source, *parts = text.split(":")
    if len(parts) > 2 or not all(p.strip() for p in parts):
        return None
    folder = Path(source).expanduser()
    if folder.is_dir():
        return None if any((folder / m).exists() for m in SAVED_MARKERS) else (source, tuple(parts))
    if folder.exists() or source.lower().endswith(FILE_SUFFIXES) or parse_hub_id(source) is None:
        return None
    return source, tuple(parts)


def is_dataset_source(path) -> bool:
    """True for a Hub dataset id or a folder of data files (not a save_to_disk folder, not a file)."""
    return _spec(str(path)) is not None


def resolve_source(path, flag: str = "--data") -> DataSource:
    """The folder to read and the config/split asked for; a Hub id not cached offline is a UserError."""
    text = str(path)
    spec = _spec(text)
    if spec is None:
        raise UserError(f"{flag} {text}: not a Hub dataset id (org/name[:config][:split]) or a folder of data files")
    source, parts = spec
    folder = Path(source).expanduser()
    from_hub = not folder.is_dir()
    if from_hub:
        folder = snapshot(*parse_hub_id(source), flag, repo_type="dataset")
    return DataSource(name=text, folder=folder, parts=parts, from_hub=from_hub)


def resolve_data_path(path, flag: str = "--data") -> Path:
    """The local path `--data` stands for: the folder load_dataset reads, or `path` itself (which may be missing)."""
    return resolve_source(path, flag).folder if is_dataset_source(path) else Path(path)


def read_dataset(path, flag: str = "--data") -> list[dict[str, Any]]:
    """Every row of one split, as plain dicts (split: the one asked for, else "test", else the first)."""
    import datasets

    src = resolve_source(path, flag)
    try:
        config, split = _config_split(src)
        ds = datasets.load_dataset(str(src.folder), config, split=split, streaming=True)
        if isinstance(ds, datasets.IterableDatasetDict):
            if not ds:
                raise UserError(f"{src.name}: the dataset has no splits; add data files with preference pairs")
            ds = ds["test" if "test" in ds else next(iter(ds))]
        return [dict(row) for row in ds]
    except UserError:
        raise
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, arrow and json errors here
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        what = (f": datasets.load_dataset cannot read its snapshot {src.folder}" if src.from_hub else " is not a "
                "datasets.save_to_disk folder (no dataset_info.json), and datasets.load_dataset cannot read it")
        raise UserError(f"{flag} {src.name}{what} ({why}); pass a data file, a folder of .parquet/.jsonl/.json/.csv "
                        "files or a Hub dataset id org/name[:config][:split]") from None


def _config_split(src: DataSource) -> tuple[str | None, str | None]:
    """(config, split): one part is a config when the data has a config by that name, else a split (`org/prefs:test`).

    Several configs and no default among them: a UserError listing them (datasets would raise a longer one)."""
    import datasets

    if len(src.parts) == 2:
        return src.parts
    names = datasets.get_dataset_config_names(str(src.folder))
    if src.parts and src.parts[0] in names:
        return src.parts[0], None
    if len(names) > 1 and datasets.get_dataset_default_config_name(str(src.folder)) is None:
        raise UserError(f"{src.name} has {len(names)} configs ({', '.join(names[:8])}) and no default; name one, e.g. "
                        f"--data {src.name.split(':')[0]}:{names[0]}{''.join(':' + p for p in src.parts)}")
    return None, (src.parts[0] if src.parts else None)
