"""Hugging Face Hub ids where a path is expected: `org/name` or `org/name@revision`, resolved offline-first.

An existing local path always wins. Otherwise a Hub id becomes the snapshot folder of `huggingface_hub`'s cache
(`models--org--name/snapshots/<commit>/`), which callers then read exactly like a local folder. Offline
(HF_HUB_OFFLINE=1, what tests and CI run with) only the cache is read; online `snapshot_download` fetches what is
missing (optimizer states and other frameworks' weights skipped). Nothing here runs repository code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dpo_doctor.errors import UserError

# org/name: what the Hub accepts (letters, digits, . _ -; no leading . or -), optionally @revision
HUB_ID_RE = re.compile(r"^(?P<repo>[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*)(?:@(?P<rev>[^\s@]+))?\Z")
# not fetched online: training state and other frameworks' weights (a checkpoint's optimizer.pt is 2x the model)
SKIP_DOWNLOAD = ("optimizer.pt", "*/optimizer.pt", "scheduler.pt", "*/scheduler.pt", "rng_state*.pth",
                 "*/rng_state*.pth", "global_step*/*", "*/global_step*/*", "*.h5", "*.msgpack", "*.onnx", "*.gguf",
                 "*.ot", "*.tflite")
_TRUE = {"1", "on", "yes", "true"}


def parse_hub_id(text) -> tuple[str, str | None] | None:
    """(repo, revision or None) when `text` reads as a Hub id `org/name[@rev]`; None for anything path-like."""
    m = HUB_ID_RE.match(str(text))
    if m is None:
        return None
    repo = m.group("repo")
    if "--" in repo or ".." in repo or repo.endswith((".", "-")):
        return None
    return repo, m.group("rev")


def offline_vars(repo_type: str = "model") -> list[str]:
    """The offline switches that are on (read now, so a test or a caller can set them after import)."""
    from huggingface_hub import constants

    names = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"] + (["HF_DATASETS_OFFLINE"] if repo_type == "dataset" else [])
    on = [n for n in names if os.environ.get(n, "").strip().lower() in _TRUE]
    return on or (["HF_HUB_OFFLINE"] if constants.HF_HUB_OFFLINE else [])


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, from the environment as it is now (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def fetch_command(repo: str, rev: str | None, repo_type: str = "model") -> str:
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return f"hf download {repo}{f' --revision {rev}' if rev else ''}{kind}"


def snapshot(repo: str, rev: str | None, flag: str, repo_type: str = "model", local_only: bool = False) -> Path:
    """The cached (offline, or `local_only`) or downloaded snapshot folder of a Hub repo; a failure is one UserError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    offline = offline_vars(repo_type)
    what = f"{flag} {repo}{f'@{rev}' if rev else ''}"
    fetch = f"fetch it with `{fetch_command(repo, rev, repo_type)}`"
    try:
        return Path(snapshot_download(repo, repo_type=repo_type, revision=rev, cache_dir=hub_cache_dir(),
                                      local_files_only=bool(offline) or local_only,
                                      ignore_patterns=list(SKIP_DOWNLOAD)))
    except IncompleteSnapshotError as exc:
        raise UserError(f"{what}: the cached snapshot is incomplete ({_first_line(exc)}); {fetch} again") from None
    except LocalEntryNotFoundError:
        why = (f"offline: {offline[0]}=1" if offline else "cache only" if local_only
               else "the Hub could not be reached")
        todo = f"{fetch}, or unset {' and '.join(offline)}" if offline else fetch
        raise UserError(f"{what}: no such local path, and Hub {repo_type} {repo} (revision {rev or 'main'}) is not "
                        f"in the Hugging Face cache {hub_cache_dir()} ({why}); {todo}") from None
    except RevisionNotFoundError:
        raise UserError(f"{what}: Hub {repo_type} {repo} has no revision {rev}; pass a branch, tag or commit of "
                        "it") from None
    except RepositoryNotFoundError:  # GatedRepoError is one too
        raise UserError(f"{what}: no such local path, and no Hub {repo_type} {repo} you can read (private or gated "
                        "repos need `hf auth login`); check the spelling") from None
    except (HFValidationError, OSError) as exc:  # a bad id the regex let through; a network or disk failure
        raise UserError(f"{what}: cannot resolve it on the Hub ({type(exc).__name__}: {_first_line(exc)}); pass "
                        f"a local folder, or {fetch}") from None


def resolve_model_path(text, flag: str, local_only: bool = False) -> Path:
    """A model or run folder: `text` as a path when it exists here, else a Hub id's snapshot folder.

    A text that is no Hub id comes back as a Path unchanged, so the caller's own "does not exist" error names it.
    `local_only`: only a snapshot already cached, never a download (UserError when there is none).
    """
    path = Path(str(text)).expanduser()
    parsed = None if path.exists() else parse_hub_id(text)
    return path if parsed is None else snapshot(*parsed, flag, local_only=local_only)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


REVISION_STEP_RE = re.compile(r"^(?:checkpoint-|step-?|global_step)([0-9]+)$")


def checkpoint_revisions(repo: str) -> list[tuple[int, str]]:
    """(step, revision) of every branch or tag named like a checkpoint (`checkpoint-500`, `step500`, `step-500`):
    a run pushed as one revision per checkpoint. Offline: the revisions the cache knows; online: the Hub's refs."""
    names: list[str] = []
    if offline_vars("model"):
        refs = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "refs"
        names = [p.name for p in refs.iterdir() if p.is_file()] if refs.is_dir() else []
    else:
        from huggingface_hub import HfApi

        try:
            found = HfApi().list_repo_refs(repo)
            names = [r.name for r in (*found.branches, *found.tags)]
        except Exception:  # unreachable Hub: the snapshot's own checkpoint folders are all there is
            names = []
    hits = [(int(m.group(1)), n) for n in names if (m := REVISION_STEP_RE.match(n))]
    return sorted(hits)
